"""cocotb testbench of ``rtl/calibration_fsm.py`` against ``models.macro.calibrate``.

The FSM is run against a stand-in for the compute array written in Python: after every
rising edge the testbench reads each lane's ``comp`` and answers with the readout the
golden chain gives for it with the data rows off (``models.macro.readout``, s = 0),
before the next edge samples it, as the real combinational array does. Every group is
compared with the golden search read for read (the readout of each of the S search
reads and of the verification read), and its final thermometer word and flags; the
section 4 bounds (residual in [-2, 1] inside the range, CALFLAG and a pinned n outside
it) and the section 7 timing (busy for S + 1 cycles, done in the last of them, comp 0
while idle, a start while busy ignored) are checked directly.
"""

from __future__ import annotations

import dataclasses

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, RisingEdge

from models.macro import calibrate, readout, thermometer
from rtl.calibration_fsm import CalState

from .tb import TB, PhaseMonitor, context

TIMEOUT_US = 50_000
STATE_NAMES = {s.value: s.name for s in CalState}


class FsmBench(TB):
    """The FSM with a Python stand-in array answering ``comp`` with a readout chain."""

    def __init__(self, dut, ctx):
        super().__init__(dut, ctx)
        self.chain = {}            # keyword arguments of models.macro.readout
        self.last_readout = None

    def respond(self) -> np.ndarray:
        p = self.p
        P = p.cols_per_cycle
        comp = self.get_lanes("comp", p.comp_bits, signed=True)
        v = readout(p, np.zeros(p.rows, np.int64), np.zeros((p.rows, P), np.int64), comp,
                    **self.chain)
        self.set_lanes("readout", v, p.readout_bits)
        self.last_readout = v
        return v

    async def cycle(self) -> None:
        """One clock cycle; the stand-in answers the new ``comp`` before the next edge."""
        await RisingEdge(self.clk)
        await FallingEdge(self.clk)
        self.respond()
        await self.settle()

    async def group(self, restart_at=()) -> dict:
        """Pulse ``start``, follow the FSM to idle, check the timing, return the trace."""
        p = self.p
        S, K, P = p.comp_steps, p.comp_rows, p.cols_per_cycle
        cov = self.ctx.coverage

        def assert_idle(when):
            assert self.get("state") == CalState.IDLE.value, when
            assert (self.get("busy"), self.get("done")) == (0, 0), when
            assert np.all(self.get_lanes("comp", p.comp_bits, signed=True) == 0), \
                f"{when}: comp must be 0 while idle"

        assert_idle("before start")
        self.set("start", 1)
        await self.cycle()
        self.set("start", 0)
        trace = []
        cycle = 1
        while self.get("busy") and cycle <= S + 8:
            row = dict(state=self.get("state"), done=self.get("done"),
                       reads=self.last_readout.copy(),
                       comp=self.get_lanes("comp", p.comp_bits, signed=True))
            if row["done"]:
                row["therm"] = self.get_lanes("therm", K)
                flags = self.get("flags")
                row["flags"] = np.array([(flags >> i) & 1 for i in range(P)])
            trace.append(row)
            restart = cycle in restart_at
            self.set("start", int(restart))
            if restart:
                cov.hit("cal_fsm.transition", "start_while_busy")
            await self.cycle()
            self.set("start", 0)
            cycle += 1
        assert len(trace) == S + 1, f"busy for {len(trace)} cycles, the contract says S + 1 = {S + 1}"
        assert [r["state"] for r in trace] == [CalState.SEARCH.value] * S + [CalState.VERIFY.value]
        assert [r["done"] for r in trace] == [0] * S + [1]
        assert_idle("after done")
        for r in trace:
            assert np.all((np.abs(r["comp"]) <= K) & ((r["comp"] + K) % 2 == 0)), r["comp"]
        last = trace[-1]
        return dict(reads=[r["reads"] for r in trace], comp=last["comp"], therm=last["therm"],
                    flags=last["flags"])

    def check(self, got, where: str) -> np.ndarray:
        """Compare a group with the golden search; returns the final n per lane."""
        p = self.p
        # The golden search over exactly the P lanes of one group.
        lanes = dataclasses.replace(p, cols=p.cols_per_cycle)
        n, flags, reads = calibrate(lanes, **self.chain)
        for step, (g, w) in enumerate(zip(got["reads"], reads)):
            assert np.array_equal(g, np.broadcast_to(w, g.shape)), \
                f"{where}: read {step} {g.tolist()} != golden {np.asarray(w).tolist()}"
        assert np.array_equal(got["comp"], 2 * n - p.comp_rows), f"{where}: comp {got['comp']} vs n {n}"
        assert np.array_equal(got["therm"], thermometer(p, n)), f"{where}: therm {got['therm']}"
        assert np.array_equal(got["flags"], flags), f"{where}: flags {got['flags']} != {flags}"
        return n


def _ideal_chain(p, offsets) -> dict:
    """The ideal readout chain of section 4: offsets only, gain 1.0, identity, SAT = M."""
    return dict(offset=np.asarray(offsets, np.int64))


async def _start(dut, name):
    ctx = context(name)
    tb = FsmBench(dut, ctx)
    monitor = PhaseMonitor(tb, dut.state, ctx.coverage, "cal_fsm", STATE_NAMES)
    tb.chain = _ideal_chain(ctx.p, np.zeros(ctx.p.cols_per_cycle))
    await tb.reset()
    tb.respond()
    cocotb.start_soon(monitor.run())
    return ctx, tb, monitor


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def every_offset(dut):
    """Every offset in [-K-3, K+3] (within W): golden trace, residual bound, range flags."""
    ctx, tb, monitor = await _start(dut, "every_offset")
    p, rng = ctx.p, ctx.rng
    K, P, S, W = p.comp_rows, p.cols_per_cycle, p.comp_steps, p.readout_bits
    lo, hi = -(1 << (W - 1)), p.readout_max
    offsets = np.arange(max(lo, -K - 3), min(hi, K + 3) + 1)
    # P offsets per group; lanes beyond the list repeat it from the start.
    for start in range(0, len(offsets), P):
        lane_offsets = np.resize(offsets[start:start + P], P)
        tb.chain = _ideal_chain(p, lane_offsets)
        for _ in range(int(rng.integers(0, 3))):
            await tb.cycle()
        restart = () if rng.integers(2) else (int(rng.integers(1, S + 2)),)
        got = await tb.group(restart_at=restart)
        n = tb.check(got, f"offsets {lane_offsets.tolist()}, restart {restart}")
        for lane, o in enumerate(lane_offsets):
            residual = o + 2 * n[lane] - K
            if -K <= o <= K - 1:
                assert -2 <= residual <= 1 and got["flags"][lane] == 0, \
                    f"offset {o}: residual {residual}, flag {got['flags'][lane]}"
                ctx.coverage.hit("calibration", "in_range")
            else:
                assert got["flags"][lane] == 1, f"offset {o}: CALFLAG clear outside the range"
                assert n[lane] == (0 if o > 0 else K), f"offset {o}: n = {n[lane]} not pinned"
                ctx.coverage.hit("calibration", "above_range" if o > 0 else "below_range")
    monitor.running = False
    ctx.save()


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def nonideal_chains(dut):
    """Random gain, SAT, QSHIFT and transfer tables per group (``CIM_ARGS`` ``groups``)."""
    ctx, tb, monitor = await _start(dut, "nonideal_chains")
    p, rng = ctx.p, ctx.rng
    K, P, W, M = p.comp_rows, p.cols_per_cycle, p.readout_bits, p.readout_max
    index = np.arange(1 << W)
    identity = np.where(index >= 1 << (W - 1), index - (1 << W), index)
    for g in range(int(ctx.args.get("groups", 40))):
        kind = rng.integers(3)
        table = identity if kind == 0 else np.clip(identity + rng.integers(-1, 2, 1 << W),
                                                   -(1 << (W - 1)), M) if kind == 1 else \
            rng.integers(-(1 << (W - 1)), M + 1, 1 << W)
        tb.chain = dict(
            offset=np.clip(rng.integers(-K - 4, K + 5, P), -(1 << (W - 1)), M),
            gain=rng.integers(0, 192, P), sat=int(rng.integers(0, M + 1)),
            qshift=int(rng.integers(0, 4)), table=table)
        got = await tb.group()
        tb.check(got, f"group {g}, chain { {k: np.asarray(v).tolist() for k, v in tb.chain.items()} }")
    monitor.running = False
    ctx.save()


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def start_held_high(dut):
    """A start held high starts a new group only when idle: one group per S + 2 cycles."""
    ctx, tb, monitor = await _start(dut, "start_held_high")
    p = ctx.p
    S = p.comp_steps
    tb.chain = _ideal_chain(p, np.full(p.cols_per_cycle, p.comp_rows - 1))
    tb.set("start", 1)
    states, dones = [], 0
    for _ in range(3 * (S + 2)):
        await tb.cycle()
        states.append(tb.get("state"))
        dones += tb.get("done")
    tb.set("start", 0)
    period = [CalState.SEARCH.value] * S + [CalState.VERIFY.value, CalState.IDLE.value]
    assert states == period * 3, states
    assert dones == 3
    for _ in range(3):
        await tb.cycle()    # idle cycles: IDLE -> IDLE
    monitor.running = False
    ctx.save()
