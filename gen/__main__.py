"""``python -m gen``: see :mod:`gen.cli`."""

import sys

from models.cmdline import main_entry


def _load():
    from .cli import main
    return main


if __name__ == "__main__":
    sys.exit(main_entry("gen", _load))
