"""Board tops: iCEBreaker (iCE40 UP5K) and ULX3S 85F (ECP5) around :class:`fpga.top.BoardCore`.

A board top adds what depends on the board to the core: the clock (the board
oscillator, or a PLL when the design clock differs from it), a power-on reset held until
the PLL locks (and, on iCE40, for 15 us more: iCE40 block RAMs read as 0 for a few
microseconds after configuration; on a PLL-clocked ECP5 the reset reaches the design
through a ``DCCA`` global buffer), the UART pins of the on-board FTDI, and the LEDs.

PLL settings come from the YoWASP ``icepll`` and ``ecppll`` tools (the IceStorm and
Trellis PLL calculators), which print the dividers for a requested frequency; the top
instantiates ``SB_PLL40_PAD`` or ``EHXPLLL`` with them.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import tempfile
from pathlib import Path

from amaranth.hdl import (ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module,
                          ResetSignal, Signal)
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

__all__ = ["Board", "BOARDS", "BoardTop", "pll_config"]


@dataclasses.dataclass(frozen=True)
class Board:
    """What the flow needs to know about one board.

    Members
    -------
    name : str
        The CLI name (``icebreaker``, ``ulx3s``).
    family : str
        ``ice40`` or ``ecp5``.
    platform : str
        ``module:Class`` of the amaranth-boards platform.
    clock_hz : float
        The on-board oscillator.
    leds : tuple of str
        The StatusLeds field each LED shows, in LED resource order.
    resources : dict
        Device resources for the fit check: nextpnr cell type -> (label, available).
    """
    name: str
    family: str
    platform: str
    clock_hz: float
    leds: tuple
    resources: dict

    def make_platform(self):
        module, cls = self.platform.split(":")
        mod = __import__(module, fromlist=[cls])
        return getattr(mod, cls)()


BOARDS = {
    "icebreaker": Board(
        name="icebreaker", family="ice40", platform="amaranth_boards.icebreaker:ICEBreakerPlatform",
        clock_hz=12e6,
        # LED 0 is red, LED 1 green.
        leds=("error", "ready"),
        resources={"ICESTORM_LC": ("logic cells (LCs)", 5280), "ICESTORM_RAM": ("block RAMs", 30),
                   "ICESTORM_DSP": ("DSPs", 8), "ICESTORM_SPRAM": ("SPRAMs", 4)},
    ),
    "ulx3s": Board(
        name="ulx3s", family="ecp5", platform="amaranth_boards.ulx3s:ULX3S_85F_Platform",
        clock_hz=25e6,
        leds=("error", "busy", "done", "link", "ready", "timeout"),
        resources={"TRELLIS_COMB": ("LUT4s", 83640), "TRELLIS_FF": ("flip-flops", 83640),
                   "DP16KD": ("block RAMs", 208), "MULT18X18D": ("DSPs", 156)},
    ),
}


def _run_tool(args, cwd):
    # YoWASP tools see only the folder they run in: write outputs by relative name.
    result = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout + result.stderr


def pll_config(family: str, clock_hz: float, target_hz: float, tool_dir=None) -> dict:
    """PLL parameters for ``target_hz`` from ``clock_hz``, from icepll or ecppll.

    Returns ``{"achieved_hz": f, "params": {...}}`` with the primitive's parameters
    (iCE40: DIVR, DIVF, DIVQ, FILTER_RANGE; ECP5: CLKI_DIV, CLKFB_DIV, CLKOP_DIV,
    CLKOP_CPHASE, CLKOP_FPHASE). Raises ValueError when the tool finds no setting within
    1% of the target.
    """
    import shutil
    import sys
    # The YoWASP commands live beside this Python (an unactivated venv has them off PATH).
    tool_dir = Path(sys.executable).parent if tool_dir is None else Path(tool_dir)
    prefix = f"{tool_dir}/"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pll.v"
        if family == "ice40":
            tool = shutil.which(f"{prefix}yowasp-icepll") or "yowasp-icepll"
            log = _run_tool([tool, "-i", f"{clock_hz / 1e6:g}", "-o", f"{target_hz / 1e6:g}",
                             "-m", "-f", out.name], tmp)
            text = out.read_text()
            achieved = float(re.search(r"F_PLLOUT:\s+([\d.]+) MHz \(achieved\)", log).group(1)) * 1e6
            params = {k: int(v, 2) for k, v in
                      re.findall(r"\.(DIVR|DIVF|DIVQ|FILTER_RANGE)\(\d+'b([01]+)\)", text)}
        elif family == "ecp5":
            tool = shutil.which(f"{prefix}yowasp-ecppll") or "yowasp-ecppll"
            log = _run_tool([tool, "-i", f"{clock_hz / 1e6:g}", "-o", f"{target_hz / 1e6:g}",
                             "-f", out.name], tmp)
            text = out.read_text()
            achieved = float(re.search(r"clkout0 frequency: ([\d.]+) MHz", log).group(1)) * 1e6
            params = {k: int(v) for k, v in re.findall(
                r"\.(CLKI_DIV|CLKFB_DIV|CLKOP_DIV|CLKOP_CPHASE|CLKOP_FPHASE)\((\d+)\)", text)}
        else:
            raise ValueError(f"family must be ice40 or ecp5, not {family!r}")
    if abs(achieved - target_hz) > 0.01 * target_hz:
        raise ValueError(f"no PLL setting gives {target_hz / 1e6:g} MHz from "
                         f"{clock_hz / 1e6:g} MHz (nearest {achieved / 1e6:g} MHz)")
    return {"achieved_hz": achieved, "params": params}


class BoardTop(Elaboratable):
    """A :class:`fpga.top.BoardCore` on a board: clock, reset, UART pins, LEDs.

    Parameters
    ----------
    board : Board
    core : fpga.top.BoardCore
        Built for ``clock_hz`` (its UART divisor and timeout count cycles of it).
    clock_hz : float
        The design clock: ``board.clock_hz`` (no PLL) or a PLL output.
    pll : dict or None
        :func:`pll_config` result when ``clock_hz`` differs from the board clock.
    """

    def __init__(self, board: Board, core, clock_hz: float, pll: dict | None = None):
        if (pll is None) != (clock_hz == board.clock_hz):
            raise ValueError("a PLL setting is needed exactly when the design clock differs "
                             "from the board clock")
        self.board = board
        self.core = core
        self.clock_hz = clock_hz
        self.pll = pll

    def _clocking(self, m, platform):
        board = self.board
        clk_io = platform.request(platform.default_clk, dir="-")
        m.domains.sync = cd_sync = ClockDomain("sync")
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        clk = Signal()
        locked = Signal()
        if self.pll is None:
            m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
            m.d.comb += [clk.eq(clk_buf.i), locked.eq(1)]
        elif board.family == "ice40":
            p = self.pll["params"]
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE",
                p_DIVR=Const(p["DIVR"], 4), p_DIVF=Const(p["DIVF"], 7),
                p_DIVQ=Const(p["DIVQ"], 3), p_FILTER_RANGE=Const(p["FILTER_RANGE"], 3),
                i_PACKAGEPIN=clk_io.io, i_RESETB=Const(1), i_BYPASS=Const(0),
                o_PLLOUTGLOBAL=clk, o_LOCK=locked)
            platform.add_clock_constraint(clk, self.clock_hz)
        else:
            p = self.pll["params"]
            m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{board.clock_hz / 1e6:g}",
                a_FREQUENCY_PIN_CLKOP=f"{self.clock_hz / 1e6:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
                p_CLKI_DIV=p["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
                p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=p["CLKOP_FPHASE"],
                p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p["CLKFB_DIV"],
                i_RST=Const(0), i_STDBY=Const(0), i_CLKI=clk_buf.i, i_CLKFB=clk,
                i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
                i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
                i_ENCLKOP=Const(0), o_CLKOP=clk, o_LOCK=locked)
            platform.add_clock_constraint(clk, self.clock_hz)

        # Power-on reset: 15 us of the design clock after lock (iCE40 block RAMs read 0
        # for ~3 us after configuration), counted up because FPGA flip-flops start at 0.
        delay = max(16, int(15e-6 * self.clock_hz))
        timer = Signal(range(delay + 1))
        por_done = Signal()
        m.d.comb += ClockSignal("por").eq(clk)
        with m.If(~locked):
            m.d.por += [timer.eq(0), por_done.eq(0)]
        with m.Elif(timer == delay):
            m.d.por += por_done.eq(1)
        with m.Else():
            m.d.por += timer.eq(timer + 1)
        m.d.comb += ClockSignal("sync").eq(clk)
        if board.family == "ecp5" and self.pll is not None:
            # A PLL-clocked ECP5 build takes its reset from a register through a global
            # buffer: from one flip-flop in the fabric, the reset of a fully parallel
            # macro's lanes was a 11-15 ns wire across the die. por_done is already a
            # register of this clock, so no synchroniser is needed.
            reset_q = Signal(init=1, name="reset_q")
            reset_global = Signal(name="reset_global")
            m.d.por += reset_q.eq(~por_done)
            m.submodules.reset_buf = Instance("DCCA", i_CLKI=reset_q, i_CE=Const(1),
                                              o_CLKO=reset_global)
            m.d.comb += ResetSignal("sync").eq(reset_global)
        else:
            m.submodules.reset_sync = ResetSynchronizer(~por_done, domain="sync")
        return cd_sync

    def elaborate(self, platform):
        m = Module()
        self._clocking(m, platform)
        m.submodules.core = core = self.core

        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx)]
        for index, field in enumerate(self.board.leds):
            led = io.Buffer("o", platform.request("led", index, dir="-"))
            m.submodules[f"led_{field}"] = led
            m.d.comb += led.o.eq(getattr(core.leds, field))
        return m
