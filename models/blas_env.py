"""The BLAS environment of the project's processes, set before numpy loads OpenBLAS.

Imports nothing but the standard library at load (:func:`blas_in_use` imports numpy when
called): the entry points (``python -m models``, the
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

__all__ = ["RECORDED_KERNEL", "KERNEL_FLAGS", "set_blas_environment", "cpu_flags",
           "blas_in_use"]

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


def blas_in_use() -> dict:
    """The BLAS behind numpy's float32 products in this process: ``library``,
    ``version``, ``kernel`` (OpenBLAS picks its kernel for the CPU when it loads, or
    takes ``OPENBLAS_CORETYPE``) and ``threads``, each None when unknown: what a model
    file records of its training (module docstring)."""
    import numpy as np
    from threadpoolctl import threadpool_info

    # numpy's own library (its wheel's numpy.libs, or inside the package) first: scipy,
    # which scikit-learn loads, brings an OpenBLAS of its own.
    package = os.path.dirname(np.__file__)
    own = (package + os.sep, package + ".libs" + os.sep)
    blas = sorted((i for i in threadpool_info() if i.get("user_api") == "blas"),
                  key=lambda i: not str(i.get("filepath", "")).startswith(own))
    if not blas:
        return {"library": None, "version": None, "kernel": None, "threads": None}
    return {"library": blas[0].get("internal_api"), "version": blas[0].get("version"),
            "kernel": blas[0].get("architecture"), "threads": blas[0].get("num_threads")}
