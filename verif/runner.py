"""Build and run the cocotb testbenches per design, parameter set and simulator.

A *design* is one Verilog top under test: the whole macro (``cim_macro``) or one block
(``compute_array``, ``shift_accumulate``, ``batchnorm_binarize``, ``calibration_fsm``),
elaborated from one of the named parameter sets of :data:`PARAM_SETS`. :func:`build`
converts it with Amaranth, wraps it in the generated harness of
:mod:`verif.cocotb.harness` and compiles it with ``cocotb_tools.runner`` into
``build/cocotb/<sim>/<paramset>/<design>/``, once: a stamp of everything that went into
the build (Verilog, harness, flags) skips the compile when nothing changed, so a
Verilator model is compiled once per parameter set, not once per test. :func:`run` runs
one cocotb test module on it and raises :class:`CocotbFailure` with the seed, the
parameter set and the command that re-runs exactly that test when anything fails.

Command line (the re-run command a failure prints)::

    python -m verif.runner --sim verilator --design cim_macro:32x96 \\
        --module verif.cocotb.tb_cim_macro --test random_traffic --seed 7
    WAVES=1 python -m verif.runner ...      # also write an FST waveform (folder kept)
    CIM_KEEP_RUNS=1 python -m verif.runner ...   # keep the log of a passing run
    python -m verif.runner --list           # parameter sets and designs

Simulator notes (measured on this project's Verilog):

* Icarus is compiled with ``-g2005``. cocotb's runner passes ``-g2012``, under which
  Icarus applies declaration initialisers without an event, so the ``always @*``
  blocks Yosys emits (with their ``if (dump_module$N) begin end`` trigger) never run
  until one of their inputs changes, and e.g. the readout quantiser mask stays X
  (reads of ACC and COMP return X). Verilog-2005 semantics give the intended time-0
  evaluation.
* Verilator is built without ``--public-flat-rw`` (only the harness's own signals are
  public, by metacomment), with ``--timing`` for the harness clock: the public
  everything build compiles several times slower and simulates several times slower.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from models.params import NONIDEALITIES, MacroParams

__all__ = ["ROOT", "BUILD_ROOT", "SIMULATORS", "PARAM_SETS", "DESIGNS", "Design", "Build",
           "RunResult", "CocotbFailure", "design", "verilog_of", "build", "run",
           "rerun_command", "collect", "main"]

ROOT = Path(__file__).resolve().parent.parent
BUILD_ROOT = ROOT / "build" / "cocotb"
SIMULATORS = ("icarus", "verilator")
_ALL = tuple(NONIDEALITIES)

#: Named parameter sets. Together they cover the paper's 32 x 96 macro, tiny macros,
#: non-power-of-two and folded columns, 1 and 8 input bits, K = 2 and K = 16, several
#: row chunks, several packed words and every non-ideality (and none).
PARAM_SETS = {
    "32x96": dict(rows=32, cols=96),
    "2x3-all": dict(rows=2, cols=3, nonideal=_ALL),
    "1x1-B1-K2-all": dict(rows=1, cols=1, input_bits=1, comp_rows=2, nonideal=_ALL),
    "24x10-P5-B8-all": dict(rows=24, cols=10, input_bits=8, cols_per_cycle=5, nonideal=_ALL),
    "64x7-K16-all": dict(rows=64, cols=7, comp_rows=16, nonideal=_ALL),
    "16x12-P4-B1-K2": dict(rows=16, cols=12, input_bits=1, comp_rows=2, cols_per_cycle=4),
    "8x40-P8-K4-none": dict(rows=8, cols=40, comp_rows=4, cols_per_cycle=8, nonideal=()),
    "32x96-P12-all": dict(rows=32, cols=96, cols_per_cycle=12, nonideal=_ALL),
    # Pipelined readout (the FPGA builds): for the macro testbench only, the block
    # testbenches drive the combinational blocks.
    "16x12-P4-all-L2": dict(rows=16, cols=12, cols_per_cycle=4, nonideal=_ALL, pipeline=2,
                            counters=True),
    "32x96-L1": dict(rows=32, cols=96, pipeline=1),
}

#: Design kind -> (module of the Amaranth class, class name).
DESIGNS = {
    "cim_macro": ("rtl.cim_macro", "CimMacro"),
    "compute_array": ("rtl.compute_array", "ComputeArray"),
    "shift_accumulate": ("rtl.shift_accumulate", "ShiftAccumulate"),
    "batchnorm_binarize": ("rtl.batchnorm_binarize", "BatchnormBinarize"),
    "calibration_fsm": ("rtl.calibration_fsm", "CalibrationFSM"),
}

#: Internal state exposed to the coverage monitors: name -> (width, path below dut,
#: owning submodule or None for the top, register name).
_MACRO_PROBES = {
    "phase": (3, "sequencer.phase", "sequencer", "phase"),
    "cal_state": (2, "lanes.calibration.state", "lanes.calibration", "state"),
}


@dataclasses.dataclass(frozen=True)
class Design:
    """One Verilog top under test.

    Members
    -------
    kind : str
        A key of :data:`DESIGNS`.
    paramset : str
        A key of :data:`PARAM_SETS`, or a name for ``params``.
    params : MacroParams
    """

    kind: str
    paramset: str
    params: MacroParams

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.paramset}"

    def to_json(self) -> str:
        return json.dumps(dict(kind=self.kind, paramset=self.paramset,
                               params=self.params.to_dict()))


def design(kind: str, paramset: str, params: MacroParams | None = None) -> Design:
    """The :class:`Design` of ``kind`` for a named parameter set (or explicit ``params``)."""
    if kind not in DESIGNS:
        raise ValueError(f"kind must be one of {', '.join(DESIGNS)}, not {kind!r}")
    if params is None:
        if paramset not in PARAM_SETS:
            raise ValueError(f"paramset must be one of {', '.join(PARAM_SETS)}, not {paramset!r}")
        params = MacroParams(**PARAM_SETS[paramset])
    return Design(kind, paramset, params)


def _source_digest() -> str:
    """Hash of everything the emitted Verilog depends on."""
    import amaranth
    h = hashlib.sha256(amaranth.__version__.encode())
    for path in sorted((ROOT / "rtl").glob("*.py")) + [ROOT / "models" / "params.py"]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def verilog_of(d: Design) -> str:
    """The design's Verilog (module named ``d.kind``), cached on disk by source hash."""
    key = hashlib.sha256(f"{_source_digest()} {d.kind} {d.params.to_dict()}".encode()).hexdigest()[:20]
    cache = BUILD_ROOT / "verilog" / f"{d.kind}-{key}.v"
    if cache.exists():
        return cache.read_text()
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    import importlib

    from amaranth.back import verilog
    module, cls = DESIGNS[d.kind]
    top = getattr(importlib.import_module(module), cls)(d.params)
    text = verilog.convert(top, name=d.kind, emit_src=False)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(cache)
    return text


@dataclasses.dataclass
class Build:
    """A compiled design: the cocotb runner and where it built."""

    design: Design
    sim: str
    waves: bool
    runner: object
    build_dir: Path
    seconds: float
    cached: bool


@dataclasses.dataclass
class RunResult:
    """Outcome of one cocotb test module run."""

    tests: int
    failed: int
    seconds: float
    test_dir: Path
    log: Path
    coverage: dict | None
    stats: dict | None


class CocotbFailure(AssertionError):
    """A cocotb test failed; the message says how to re-run it."""


def _runner(sim: str):
    from cocotb_tools.runner import Verilator, get_runner
    if sim == "verilator":
        class _Verilator(Verilator):
            # The harness marks its own signals public; a public design is much slower
            # to compile and to simulate (see the module docstring).
            def _build_command(self):
                cmds = super()._build_command()
                cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
                return cmds
        return _Verilator()
    if sim == "icarus":
        return get_runner("icarus")
    raise ValueError(f"sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")


#: Verilator's C++ optimisation: -O1 simulates this design as fast as the default -Os
#: (measured on 32x96) and compiles faster; the run-once code needs none.
_VERILATOR_MAKEFLAGS = "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1"


def _fst_supported() -> bool:
    """Verilator's FST writer needs the lz4 headers (Debian ``liblz4-dev``)."""
    return any(Path(d, "lz4.h").exists() for d in ("/usr/include", "/usr/local/include"))


def _build_args(sim: str, waves: bool) -> list[str]:
    if sim == "icarus":
        return ["-g2005"]
    args = ["--timing", "-CFLAGS", "-fcoroutines", "-Wno-fatal", "-Wno-lint", "-Wno-style"]
    if waves and _fst_supported():
        args.append("--trace-fst")
    return args


_BUILDS: dict = {}


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_dir_of(d: Design, sim: str, waves: bool = False) -> Path:
    return BUILD_ROOT / sim / d.paramset / (d.kind + ("-waves" if waves else ""))


def build(d: Design, sim: str, waves: bool | None = None) -> Build:
    """Compile ``d`` for ``sim`` (once per process, and only when its inputs changed)."""
    from verif.toolchain import apply_tool_env

    from .cocotb import harness
    if waves is None:
        waves = os.environ.get("WAVES", "0") not in ("", "0")
    key = (d, sim, waves)
    if key in _BUILDS:
        return _BUILDS[key]
    apply_tool_env()
    start = time.perf_counter()
    text = verilog_of(d)
    ports = harness.parse_ports(text, d.kind)
    engine_bits = d.params.addr_bits if d.kind == "cim_macro" else None
    probes = harness.find_probes(text, d.kind, _MACRO_PROBES) if d.kind == "cim_macro" else {}
    top = harness.wrapper(d.kind, ports, engine_addr_bits=engine_bits, probes=probes)
    if waves and sim == "icarus":
        top = top.replace("endmodule", "    initial begin\n        $dumpfile(\"tb_top.fst\");\n"
                          "        $dumpvars(0, tb_top);\n    end\nendmodule")
    out = build_dir_of(d, sim, waves)
    args = _build_args(sim, waves)
    sources = {"design.v": text, "tb_top.v": top}
    if engine_bits is not None:
        sources["wb_burst.v"] = harness.ENGINE_SOURCE.read_text()
    stamp = hashlib.sha256(json.dumps([sources, args, sim, waves, _VERILATOR_MAKEFLAGS]).encode()).hexdigest()
    runner = _runner(sim)
    binary = out / ("sim.vvp" if sim == "icarus" else "tb_top")
    with _locked(out.with_name(out.name + ".lock")):
        stamp_file = out / "build.stamp"
        cached = stamp_file.exists() and stamp_file.read_text() == stamp and binary.exists()
        if not cached:
            out.mkdir(parents=True, exist_ok=True)
            for name, body in sources.items():
                path = out / name
                if not path.exists() or path.read_text() != body:
                    path.write_text(body)
            stamp_file.unlink(missing_ok=True)
            log = out / "build.log"
            saved_makeflags = os.environ.get("MAKEFLAGS")
            # The runner reads WAVES itself and would add its SystemVerilog dump module to
            # an Icarus build; waves are this function's decision.
            saved_waves = os.environ.pop("WAVES", None)
            if waves and sim == "verilator" and not _fst_supported():
                print(f"note: {d.label}: no lz4.h (apt-get install liblz4-dev), so Verilator "
                      f"writes a VCD (dump.vcd) instead of an FST", file=sys.stderr)
            if sim == "verilator":
                os.environ["MAKEFLAGS"] = f"{saved_makeflags or ''} {_VERILATOR_MAKEFLAGS}".strip()
            try:
                runner.build(sources=[out / n for n in sources], hdl_toplevel="tb_top",
                             build_dir=out, build_args=args, timescale=("1ns", "1ps"),
                             waves=waves and sim == "verilator", always=True, log_file=log)
            except (RuntimeError, SystemExit) as e:
                tail = "\n".join(log.read_text().splitlines()[-40:]) if log.exists() else ""
                raise RuntimeError(f"{sim} build of {d.label} failed ({e}); log {log}:\n{tail}") from None
            finally:
                if saved_waves is not None:
                    os.environ["WAVES"] = saved_waves
                if saved_makeflags is None:
                    os.environ.pop("MAKEFLAGS", None)
                else:
                    os.environ["MAKEFLAGS"] = saved_makeflags
            stamp_file.write_text(stamp)
        else:
            # The runner object needs the build state that test() reads.
            runner.build_dir = out
            runner.hdl_toplevel = "tb_top"
            runner.timescale = ("1ns", "1ps")
            runner.waves = waves and sim == "verilator"
    result = Build(d, sim, waves, runner, out, time.perf_counter() - start, cached)
    _BUILDS[key] = result
    return result


def rerun_command(d: Design, sim: str, module: str, testcase: str | None, seed: int,
                  args: dict | None) -> str:
    """The shell command that re-runs one test exactly (from the project root)."""
    cmd = [".venv/bin/python", "-m", "verif.runner", "--sim", sim, "--design", d.label,
           "--module", module, "--seed", str(seed)]
    if d.paramset not in PARAM_SETS or MacroParams(**PARAM_SETS[d.paramset]) != d.params:
        cmd += ["--params", json.dumps(d.params.to_dict(), separators=(",", ":"))]
    if testcase:
        cmd += ["--test", testcase]
    if args:
        cmd += ["--args", json.dumps(args, separators=(",", ":"))]
    return shlex.join(cmd)


def _parse_results(path: Path) -> tuple[int, list[tuple[str, str]]]:
    tree = ET.parse(path)
    tests, failures = 0, []
    for case in tree.iter("testcase"):
        tests += 1
        for tag in ("failure", "error"):
            for node in case.findall(tag):
                failures.append((case.get("name", "?"), node.get("message", "") or (node.text or "")))
    return tests, failures


def run(d: Design, sim: str, module: str, *, testcase: str | None = None, seed: int = 0,
        args: dict | None = None, waves: bool | None = None, label: str | None = None,
        expect_tests: int | None = None) -> RunResult:
    """Run the cocotb test module ``module`` on ``d`` under ``sim``.

    Parameters
    ----------
    d : Design
    sim : {"icarus", "verilator"}
    module : str
        Dotted name of the cocotb test module (``verif.cocotb.tb_cim_macro``).
    testcase : str or None
        Only this ``@cocotb.test`` (default: all of the module).
    seed : int
        Seed of every random choice of the testbench (``CIM_SEED``).
    args : dict or None
        JSON-ready arguments of the testbench (``CIM_ARGS``).
    waves : bool or None
        Write an FST waveform into the test folder (default: the ``WAVES`` variable).
    label : str or None
        Name of the test folder (default: module and testcase).
    expect_tests : int or None
        Fail unless exactly this many cocotb tests ran.

    Raises
    ------
    CocotbFailure
        A test failed, the simulator crashed, or no test ran; the message has the seed,
        the parameter set, the log tail and the command that re-runs the test.
    """
    b = build(d, sim, waves)
    short = module.rsplit(".", 1)[-1]
    # One folder per process, so that two sessions sharing build/ never mix their files;
    # it is deleted after a pass (unless waves were asked for or CIM_KEEP_RUNS is set).
    test_dir = b.build_dir / "runs" / f"{label or short + '-' + (testcase or 'all')}-{os.getpid()}"
    test_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("results.xml", "coverage.json", "stats.json", "sim.log"):
        (test_dir / stale).unlink(missing_ok=True)
    # cocotb's runner lays os.environ over extra_env, so the project root goes there.
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + paths)
    env = {
        "CIM_DESIGN": d.to_json(),
        "CIM_SIM": sim,
        "CIM_SEED": str(seed),
        "CIM_ARGS": json.dumps(args or {}),
        "CIM_COVERAGE_FILE": str(test_dir / "coverage.json"),
        "CIM_STATS_FILE": str(test_dir / "stats.json"),
        "AMARANTH_USE_YOSYS": "builtin",
        "OPENBLAS_NUM_THREADS": "1",
    }
    results = test_dir / "results.xml"
    log = test_dir / "sim.log"
    start = time.perf_counter()
    # Outside pytest's bookkeeping: the runner would sys.exit() on a failure under pytest;
    # the results file is read here instead, so the failure message can say more.
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    crashed = None
    try:
        b.runner.test(test_module=module, hdl_toplevel="tb_top", hdl_toplevel_lang="verilog",
                      build_dir=b.build_dir,
                      test_dir=test_dir, testcase=testcase, seed=seed, extra_env=env,
                      results_xml=str(results), waves=b.waves, log_file=log,
                      timescale=("1ns", "1ps"))
    except (SystemExit, RuntimeError, OSError) as e:
        crashed = f"{type(e).__name__}: {e}"
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
    seconds = time.perf_counter() - start
    tests, failures = _parse_results(results) if results.exists() else (0, [])
    problems = []
    if crashed:
        problems.append(f"simulator run ended abnormally ({crashed})")
    if not results.exists():
        problems.append("no results file: the simulation did not finish")
    elif tests == 0:
        problems.append("no cocotb test ran")
    elif expect_tests is not None and tests != expect_tests:
        problems.append(f"{tests} cocotb tests ran, expected {expect_tests}")
    problems += [f"{name} FAILED: {msg.strip()[:2000]}" for name, msg in failures]
    if problems:
        tail = ""
        if log.exists():
            lines = log.read_text(errors="replace").splitlines()
            tail = "\n".join(lines[-60:])
        raise CocotbFailure(
            f"cocotb {module}{'::' + testcase if testcase else ''} on {sim}, design {d.label} "
            f"({d.params.to_dict()}), seed {seed}:\n  " + "\n  ".join(problems) +
            f"\nre-run: {rerun_command(d, sim, module, testcase, seed, args)}"
            f"\n        (prefix WAVES=1 for an FST waveform in the test folder)"
            f"\nlog: {log}\n--- log tail ---\n{tail}")
    coverage = json.loads((test_dir / "coverage.json").read_text()) \
        if (test_dir / "coverage.json").exists() else None
    stats = json.loads((test_dir / "stats.json").read_text()) \
        if (test_dir / "stats.json").exists() else None
    if not b.waves and os.environ.get("CIM_KEEP_RUNS", "0") in ("", "0"):
        shutil.rmtree(test_dir, ignore_errors=True)
    return RunResult(tests, 0, seconds, test_dir, log, coverage, stats)


def collect(d: Design, sim: str, module: str, *, testcase: str | None = None, seed: int = 0,
            args: dict | None = None, label: str | None = None) -> RunResult:
    """:func:`run`, then merge the run's coverage into ``verif.coverage.SESSION``."""
    from verif import coverage
    result = run(d, sim, module, testcase=testcase, seed=seed, args=args, label=label)
    if result.coverage:
        coverage.SESSION.merge(result.coverage)
    coverage.SESSION_RUNS.append((d.kind, d.paramset, sim, module, testcase))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verif.runner", description=__doc__.split("\n")[0])
    parser.add_argument("--sim", choices=SIMULATORS, default="verilator")
    parser.add_argument("--design", help="KIND:PARAMSET, e.g. cim_macro:32x96")
    parser.add_argument("--params", help="explicit MacroParams as JSON (overrides the set)")
    parser.add_argument("--module", help="cocotb test module, e.g. verif.cocotb.tb_cim_macro")
    parser.add_argument("--test", help="one @cocotb.test of the module")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--args", help="JSON arguments of the testbench")
    parser.add_argument("--list", action="store_true", help="list parameter sets and designs")
    opts = parser.parse_args(argv)
    if opts.list or not opts.design:
        for name, kw in PARAM_SETS.items():
            print(f"{name:20s} {MacroParams(**kw).to_dict()}")
        print("designs:", ", ".join(DESIGNS))
        return 0
    kind, _, paramset = opts.design.partition(":")
    params = MacroParams.from_dict(json.loads(opts.params)) if opts.params else None
    d = design(kind, paramset, params)
    try:
        result = run(d, opts.sim, opts.module, testcase=opts.test, seed=opts.seed,
                     args=json.loads(opts.args) if opts.args else None)
    except CocotbFailure as e:
        print(e, file=sys.stderr)
        return 1
    kept = f"; folder {result.test_dir}" if result.test_dir.exists() else ""
    print(f"{result.tests} passed, 0 failed ({result.seconds:.1f} s{kept})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
