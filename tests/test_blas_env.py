"""The BLAS environment of the entry points (models/blas_env.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.blas_env import KERNEL_FLAGS, RECORDED_KERNEL, cpu_flags, set_blas_environment

ROOT = Path(__file__).resolve().parent.parent

CASES = [
    # (CPU flags, environment before, OPENBLAS_CORETYPE after)
    (KERNEL_FLAGS | {"sse2"}, {}, RECORDED_KERNEL),
    (KERNEL_FLAGS, {"OPENBLAS_CORETYPE": "Haswell"}, RECORDED_KERNEL),
    (KERNEL_FLAGS - {"avx512vl"}, {"OPENBLAS_CORETYPE": "Haswell"}, "Haswell"),
    (frozenset({"avx2", "fma"}), {}, None),
]


@pytest.mark.parametrize("flags, before, after", CASES)
def test_kernel_is_the_recorded_one_where_the_cpu_runs_it(monkeypatch, flags, before, after):
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    for name, value in before.items():
        monkeypatch.setenv(name, value)
    set_blas_environment(flags)
    assert os.environ.get("OPENBLAS_CORETYPE") == after
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"


def test_threads_already_set_are_kept(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    set_blas_environment(frozenset())
    assert os.environ["OPENBLAS_NUM_THREADS"] == "2"


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f sse2\nbugs\t\t: none\n")
    assert cpu_flags(info) == {"fpu", "avx512f", "sse2"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_models_command_loads_that_kernel():
    # A process started with another kernel in its environment, as this machine's are.
    env = dict(os.environ, OPENBLAS_CORETYPE="Prescott")
    code = ("import models.__main__\n"
            "import numpy, threadpoolctl\n"
            "print([i['architecture'] for i in threadpoolctl.threadpool_info()"
            " if i['user_api'] == 'blas'][0])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    expected = RECORDED_KERNEL if KERNEL_FLAGS <= cpu_flags() else "Prescott"
    assert out[-1] == expected
