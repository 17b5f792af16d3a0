"""The ``unif2ace`` command line.

Commands live beside the code they drive: each module in ``COMMAND_MODULES`` exposes
``register(groups)`` that adds its sub-commands to the command groups (``data``, ``train``,
and ``top`` for top-level commands such as ``generate``). Heavy imports happen inside the
command handlers, so ``unif2ace --help`` is instant.

Every handler receives the parsed ``argparse.Namespace`` and returns an exit code (or None).
A :class:`~unif2ace.errors.UserError` ends in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserError

GROUPS: dict[str, str] = {
    "data": "build, inspect, import and pretokenise face data sets",
    "train": "train the image tokenizer, the text tokenizer and the model",
}

# Modules that add commands; each defines ``register(groups: dict[str, subparsers])``.
COMMAND_MODULES: tuple[str, ...] = (
    "unif2ace.data.cli",
    "unif2ace.data.importers.cli",
    "unif2ace.tokenizer.cli",
    "unif2ace.tokenizer.export",
    "unif2ace.train.cli",
    "unif2ace.train.encoders_cli",
    "unif2ace.eval.judge_cli",
    "unif2ace.eval.refine_cli",
    "unif2ace.demo",
    "unif2ace.infer_cli",
    "unif2ace.bench",
    "unif2ace.recipe",
    "unif2ace.export",
    "unif2ace.eval.eval_cli",
    "unif2ace.ablate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unif2ace",
        description="UniF²ace: describe faces and draw them from text, in one model.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"unif2ace {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {"top": top}
    for name, help_text in GROUPS.items():
        p = top.add_parser(name, help=help_text, description=help_text)
        groups[name] = p.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
        p.set_defaults(func=_group_help(p))
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(groups)
    return parser


def _group_help(p: argparse.ArgumentParser):
    def show(_args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    return show


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except UserError as err:
        print(f"unif2ace: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unif2ace: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
