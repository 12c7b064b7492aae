"""``python -m models``: see :mod:`models.cli`."""

import os
import sys

# BLAS threads spin against each other on the 2-core machines this runs on (and against
# the vectorised chip stacks); one thread is faster. Must be set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .cmdline import main_entry  # noqa: E402


def _load():
    from .cli import main
    return main


if __name__ == "__main__":
    sys.exit(main_entry("models", _load))
