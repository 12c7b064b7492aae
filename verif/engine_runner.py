"""Build and run the engine's cocotb testbench (``verif/cocotb/tb_cim_engine.py``) on
Icarus and Verilator, one build folder per engine parameter set.

The engine's counterpart of :mod:`verif.runner` (which builds macros and blocks from
``MacroParams``): the same simulator settings (Icarus with ``-g2005``, Verilator without
public signals), the same harness (:mod:`verif.cocotb.harness`, with the falling-edge
copies of ``ack`` and ``dat_r`` the per-edge master needs), a build stamp so that each
parameter set compiles once, and a failure message with the seed and the command that
re-runs the test::

    python -m verif.engine_runner --sim icarus --engine 8x6-P2-all --test networks \\
        --args ARGS.json --seed 7
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from models.engine import EngineParams
from models.params import NONIDEALITIES, MacroParams

from . import runner

__all__ = ["ENGINE_SETS", "engine_to_dict", "engine_from_dict", "build", "run", "main"]

_ALL = tuple(NONIDEALITIES)
_CAPACITY = ("weight_banks", "layers", "image_slots", "max_width")

#: Named engines: the macro and the capacity.
ENGINE_SETS = {
    "8x6-P2-all": dict(macro=dict(rows=8, cols=6, input_bits=3, cols_per_cycle=2, nonideal=_ALL),
                       weight_banks=24, layers=4, image_slots=3, max_width=24),
    # tests/test_engine_bus.py's PARAMS (its error table's addresses).
    "32x12-P4-all": dict(macro=dict(rows=32, cols=12, input_bits=5, cols_per_cycle=4,
                                    nonideal=_ALL),
                         weight_banks=6, layers=3, image_slots=3, max_width=70),
    "32x96-B5": dict(macro=dict(rows=32, cols=96, input_bits=5), weight_banks=10, layers=3,
                     image_slots=200, max_width=100),
}


def engine_to_dict(ep: EngineParams) -> dict:
    return dict(macro=ep.macro.to_dict(), **{k: getattr(ep, k) for k in _CAPACITY})


def engine_from_dict(d: dict) -> EngineParams:
    macro = d["macro"]
    macro = MacroParams.from_dict(macro) if "derived" in macro else MacroParams(**macro)
    return EngineParams(macro, **{k: d[k] for k in _CAPACITY})


def engine_of(name: str) -> EngineParams:
    if name not in ENGINE_SETS:
        raise ValueError(f"engine must be one of {', '.join(ENGINE_SETS)}, not {name!r}")
    return engine_from_dict(ENGINE_SETS[name])


def _resolve(engine, label):
    """(EngineParams, folder label) of a set name or of explicit parameters."""
    if isinstance(engine, EngineParams):
        if not label:
            raise ValueError("label (a folder name) is needed with explicit EngineParams")
        return engine, label
    return engine_of(engine), label or engine


def _verilog(ep: EngineParams) -> str:
    key = hashlib.sha256(f"{runner._source_digest()} engine "
                         f"{json.dumps(engine_to_dict(ep), sort_keys=True)}".encode()).hexdigest()[:20]
    cache = runner.BUILD_ROOT / "verilog" / f"cim_engine-{key}.v"
    if cache.exists():
        return cache.read_text()
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    from amaranth.back import verilog

    from rtl.engine import CimEngine
    text = verilog.convert(CimEngine(ep), name="cim_engine", emit_src=False)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(cache)
    return text


_BUILDS: dict = {}


def build(engine, sim: str, label: str | None = None):
    """Compile ``engine`` (a key of :data:`ENGINE_SETS`, or an :class:`EngineParams` with
    a folder ``label``) for ``sim`` into ``build/cocotb/<sim>/engine-<label>/`` (once:
    skipped when its Verilog, harness and flags are unchanged). Returns the cocotb
    runner and the folder."""
    from verif.toolchain import apply_tool_env

    from .cocotb import harness
    ep, name = _resolve(engine, label)
    if (ep, name, sim) in _BUILDS:
        return _BUILDS[ep, name, sim]
    apply_tool_env()
    text = _verilog(ep)
    ports = harness.parse_ports(text, "cim_engine")
    # The burst engine's falling-edge copies of ack and dat_r serve the per-edge master.
    top = harness.wrapper("cim_engine", ports, engine_addr_bits=ep.addr_bits)
    sources = {"design.v": text, "tb_top.v": top, "wb_burst.v": harness.ENGINE_SOURCE.read_text()}
    args = runner._build_args(sim, False)
    out = runner.BUILD_ROOT / sim / f"engine-{name}" / "cim_engine"
    stamp = hashlib.sha256(json.dumps([sources, args, sim, runner._VERILATOR_MAKEFLAGS])
                           .encode()).hexdigest()
    sim_runner = runner._runner(sim)
    binary = out / ("sim.vvp" if sim == "icarus" else "tb_top")
    with runner._locked(out.with_name(out.name + ".lock")):
        stamp_file = out / "build.stamp"
        if stamp_file.exists() and stamp_file.read_text() == stamp and binary.exists():
            sim_runner.build_dir = out
            sim_runner.hdl_toplevel = "tb_top"
            sim_runner.timescale = ("1ns", "1ps")
            sim_runner.waves = False
        else:
            out.mkdir(parents=True, exist_ok=True)
            for file, body in sources.items():
                (out / file).write_text(body)
            stamp_file.unlink(missing_ok=True)
            saved = os.environ.get("MAKEFLAGS")
            if sim == "verilator":
                os.environ["MAKEFLAGS"] = f"{saved or ''} {runner._VERILATOR_MAKEFLAGS}".strip()
            log = out / "build.log"
            try:
                sim_runner.build(sources=[out / f for f in sources], hdl_toplevel="tb_top",
                                 build_dir=out, build_args=args, timescale=("1ns", "1ps"),
                                 waves=False, always=True, log_file=log)
            except (RuntimeError, SystemExit) as e:
                tail = "\n".join(log.read_text().splitlines()[-40:]) if log.exists() else ""
                raise RuntimeError(f"{sim} build of engine {name} failed ({e}); log {log}:\n"
                                   f"{tail}") from None
            finally:
                if saved is None:
                    os.environ.pop("MAKEFLAGS", None)
                else:
                    os.environ["MAKEFLAGS"] = saved
            stamp_file.write_text(stamp)
    _BUILDS[ep, name, sim] = (sim_runner, out)
    return _BUILDS[ep, name, sim]


def run(engine, sim: str, test: str, *, seed: int = 0, args: dict | None = None,
        label: str | None = None, module: str = "verif.cocotb.tb_cim_engine") -> "runner.RunResult":
    """Run ``@cocotb.test`` ``test`` of ``verif.cocotb.tb_cim_engine`` on ``engine`` (as
    :func:`build` takes it) under ``sim``. Returns a :class:`verif.runner.RunResult`
    whose ``stats`` are what the test saved (``verif.cocotb.tb.save_stats``). Raises
    :class:`runner.CocotbFailure` with the seed and the re-run command when it fails."""
    ep, name = _resolve(engine, label)
    sim_runner, out = build(ep, sim, name)
    test_dir = out / "runs" / f"{test}-{os.getpid()}"
    test_dir.mkdir(parents=True, exist_ok=True)
    args_file = test_dir / "args.json"
    args_file.write_text(json.dumps(args or {}))
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(runner.ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(runner.ROOT)] + paths)
    stats_file = test_dir / "stats.json"
    env = {"CIM_ENGINE": json.dumps(engine_to_dict(ep)), "CIM_SEED": str(seed),
           "CIM_ARGS": args_file.read_text(), "CIM_STATS_FILE": str(stats_file),
           "AMARANTH_USE_YOSYS": "builtin", "OPENBLAS_NUM_THREADS": "1"}
    results, log = test_dir / "results.xml", test_dir / "sim.log"
    results.unlink(missing_ok=True)
    stats_file.unlink(missing_ok=True)
    start = time.perf_counter()
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    crashed = None
    try:
        sim_runner.test(test_module=module, hdl_toplevel="tb_top",
                        hdl_toplevel_lang="verilog", build_dir=out, test_dir=test_dir,
                        testcase=test, seed=seed, extra_env=env, results_xml=str(results),
                        waves=False, log_file=log, timescale=("1ns", "1ps"))
    except (SystemExit, RuntimeError, OSError) as e:
        crashed = f"{type(e).__name__}: {e}"
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
    seconds = time.perf_counter() - start
    tests, failures = runner._parse_results(results) if results.exists() else (0, [])
    problems = ([f"simulator run ended abnormally ({crashed})"] if crashed else [])
    if tests != 1:
        problems.append(f"{tests} cocotb tests ran, expected 1")
    problems += [f"{n} FAILED: {msg.strip()[:2000]}" for n, msg in failures]
    if problems:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:]) \
            if log.exists() else ""
        raise runner.CocotbFailure(
            f"cocotb tb_cim_engine::{test} on {sim}, engine {name}, seed {seed}:\n  "
            + "\n  ".join(problems)
            + f"\nre-run: {_rerun(engine, name, sim, test, seed, args_file)}"
              f"\nlog: {log}\n--- log tail ---\n{tail}")
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else None
    if os.environ.get("CIM_KEEP_RUNS", "0") in ("", "0"):
        shutil.rmtree(test_dir, ignore_errors=True)
    return runner.RunResult(tests, 0, seconds, test_dir, log, None, stats)


def _rerun(engine, name, sim, test, seed, args_file) -> str:
    what = f"--engine {name}" if not isinstance(engine, EngineParams) else \
        f"--params '{json.dumps(engine_to_dict(engine), separators=(',', ':'))}' --label {name}"
    return (f".venv/bin/python -m verif.engine_runner --sim {sim} {what} --test {test} "
            f"--seed {seed} --args {args_file}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verif.engine_runner",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--sim", choices=runner.SIMULATORS, default="verilator")
    parser.add_argument("--engine", choices=sorted(ENGINE_SETS))
    parser.add_argument("--params", help="explicit engine parameters as JSON (with --label)")
    parser.add_argument("--label", help="build folder name for --params")
    parser.add_argument("--test", choices=("networks", "errors"), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--args", type=Path, help="JSON file of the testbench's arguments")
    opts = parser.parse_args(argv)
    args = json.loads(opts.args.read_text()) if opts.args else {}
    if (opts.engine is None) == (opts.params is None):
        parser.error("give one of --engine and --params")
    engine = opts.engine or engine_from_dict(json.loads(opts.params))
    try:
        result = run(engine, opts.sim, opts.test, seed=opts.seed, args=args, label=opts.label)
    except (runner.CocotbFailure, ValueError) as e:
        print(e, file=sys.stderr)
        return 1 if isinstance(e, runner.CocotbFailure) else 2
    print(f"1 passed ({result.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
