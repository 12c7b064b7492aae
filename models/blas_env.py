"""The BLAS environment of the project's processes, set before numpy loads OpenBLAS.

Imports nothing but the standard library: the entry points (``python -m models``, the
test suite) call :func:`set_blas_environment` before their first numpy import, since
OpenBLAS reads both variables once, when it loads.

* ``OPENBLAS_NUM_THREADS=1``: BLAS threads spin against each other on the 2-core machines
  this runs on (and against the vectorised chip stacks); one thread is faster.
* ``OPENBLAS_CORETYPE=SkylakeX`` where the CPU runs that kernel (AVX-512 F, CD, BW, DQ
  and VL): training's float32 products sum in the kernel's order, and a rounding apart
  early in training ends in other weights, so the same seed and recipe give the same
  network only with the same kernel. The recorded training figures (README,
  docs/EXPERIMENTS.md) were measured with this one; OpenBLAS picks Haswell's on an AMD
  EPYC (Zen 4) that runs SkylakeX's just as well. It replaces a kernel the environment
  names (this project's machines set ``OPENBLAS_CORETYPE=Haswell``). On a CPU without
  AVX-512 the environment's or OpenBLAS's own choice stays, and trainings land elsewhere
  within the seeds' spread. A model file records the kernel that trained it
  (``training.blas``, docs/MODEL_FORMAT.md).
"""

import os

__all__ = ["RECORDED_KERNEL", "KERNEL_FLAGS", "set_blas_environment", "cpu_flags"]

#: The OpenBLAS kernel of the recorded figures.
RECORDED_KERNEL = "SkylakeX"
#: The CPU flags (``/proc/cpuinfo``) that kernel needs.
KERNEL_FLAGS = frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})


def cpu_flags(path="/proc/cpuinfo") -> frozenset:
    """The first CPU's flags as Linux lists them; empty where the file is missing."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def set_blas_environment(flags=None) -> None:
    """Set ``OPENBLAS_NUM_THREADS`` (unless already set) and, where the CPU runs the
    recorded kernel, ``OPENBLAS_CORETYPE`` (module docstring); ``flags``: the CPU's
    (default :func:`cpu_flags`)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if KERNEL_FLAGS <= (cpu_flags() if flags is None else frozenset(flags)):
        os.environ["OPENBLAS_CORETYPE"] = RECORDED_KERNEL
