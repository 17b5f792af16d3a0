"""unif2ace: an open implementation of UniF²ace (fine-grained face understanding and generation).

Nothing is imported or configured at import time; import the submodules you need.
"""

__version__ = "0.1.0"
