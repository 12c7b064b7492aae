"""``python -m models``: see :mod:`models.cli`."""

import sys

from .blas_env import set_blas_environment

# BLAS threads and kernel (models/blas_env.py): set before numpy loads.
set_blas_environment()

from .cmdline import main_entry  # noqa: E402


def _load():
    from .cli import main
    return main


if __name__ == "__main__":
    sys.exit(main_entry("models", _load))
