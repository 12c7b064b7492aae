"""``python -m models``: see :mod:`models.cli`."""

import os
import sys

# BLAS threads spin against each other on the 2-core machines this runs on (and against
# the vectorised chip stacks); one thread is faster. Must be set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
