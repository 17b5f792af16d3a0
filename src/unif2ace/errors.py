"""User-facing errors: one clear message naming the fix, never a traceback (DESIGN.md)."""


class UserError(Exception):
    """An error the user caused and can fix (bad path, unknown attribute, wrong config key).

    The CLI prints ``str(err)`` alone and exits with status 2.
    """
