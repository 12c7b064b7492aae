"""cocotb testbench of ``rtl/shift_accumulate.py`` against ``models.macro.shift_accumulate``.

Random RUN-like sequences: a clear (sometimes together with a step, which the clear
must win), 1..B plane steps with random readouts biased to the extremes of the signed
W-bit range, idle cycles in between (the tile must hold), then several accumulator
updates of the finished tile with random ``acc_prev`` values near the saturation limits
and both values of ``accumulate``. The tile is checked after every edge against the
Horner sum and the accumulator and its saturation flags against the golden model.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, RisingEdge

from models.macro import shift_accumulate

from .tb import TB, context

TIMEOUT_US = 50_000


def _readouts(p, rng, n):
    W = p.readout_bits
    lo, hi = -(1 << (W - 1)), (1 << (W - 1)) - 1
    extremes = rng.choice([lo, hi, 0, -1, 1], size=(n, p.cols_per_cycle))
    anything = rng.integers(lo, hi + 1, size=(n, p.cols_per_cycle))
    return np.where(rng.random((n, p.cols_per_cycle)) < 0.3, extremes, anything)


def _acc_prev(p, rng):
    A = p.acc_bits
    lo, hi = -(1 << (A - 1)), (1 << (A - 1)) - 1
    edge = rng.choice([lo, hi], size=p.cols_per_cycle)
    inward = rng.integers(0, 1 << min(A - 1, p.tile_bits), size=p.cols_per_cycle)
    near = np.where(edge == lo, edge + inward, edge - inward)
    anything = rng.integers(lo, hi + 1, size=p.cols_per_cycle)
    return np.clip(np.where(rng.random(p.cols_per_cycle) < 0.5, near, anything), lo, hi)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def random_runs(dut):
    """Random plane sequences (``CIM_ARGS`` ``runs``, default 300) against the golden model."""
    ctx = context("random_runs")
    tb = TB(dut, ctx)
    p, rng = ctx.p, ctx.rng
    P, W, A, T = p.cols_per_cycle, p.readout_bits, p.acc_bits, p.tile_bits
    await tb.reset()
    # The tile register resets to 0.
    assert np.all(tb.get_lanes("tile", T, signed=True) == 0)
    await FallingEdge(tb.clk)
    every = (1 << P) - 1        # the controls have one bit per lane; the macro sets all
    for run in range(int(ctx.args.get("runs", 300))):
        nplanes = int(rng.integers(1, p.input_bits + 1))
        v = _readouts(p, rng, nplanes)
        # Clear (with a simultaneous step half of the time: clear wins).
        tb.set("clear", every)
        tb.set("step", every * int(rng.integers(2)))
        tb.set_lanes("readout", v[-1], W)
        await RisingEdge(tb.clk)
        await FallingEdge(tb.clk)
        tb.set("clear", 0)
        assert np.all(tb.get_lanes("tile", T, signed=True) == 0), f"run {run}: clear"
        tile = np.zeros(P, np.int64)
        for b in range(nplanes - 1, -1, -1):
            if rng.random() < 0.2:
                # An idle cycle: neither clear nor step, the tile holds.
                tb.set("step", 0)
                await RisingEdge(tb.clk)
                await FallingEdge(tb.clk)
                assert np.array_equal(tb.get_lanes("tile", T, signed=True), tile), \
                    f"run {run}: tile changed without step"
            tb.set_lanes("readout", v[b], W)
            tb.set("step", every)
            await RisingEdge(tb.clk)
            await FallingEdge(tb.clk)
            tile = 2 * tile + v[b]
            got = tb.get_lanes("tile", T, signed=True)
            assert np.array_equal(got, tile), f"run {run}, plane {b}: tile {got} != {tile}"
        tb.set("step", 0)
        for _ in range(3):
            prev = _acc_prev(p, rng)
            accumulate = bool(rng.integers(2))
            tb.set_lanes("acc_prev", prev, A)
            tb.set("accumulate", every if accumulate else 0)
            await tb.settle()
            want, sat = shift_accumulate(p, v, acc_prev=prev, accumulate=accumulate)
            got = tb.get_lanes("acc", A, signed=True)
            flags = tb.get("saturated")
            got_sat = np.array([(flags >> i) & 1 for i in range(P)], bool)
            assert np.array_equal(got, want), (
                f"run {run}: acc {got} != golden {want} (readouts {v.tolist()}, "
                f"acc_prev {prev.tolist()}, accumulate {accumulate})")
            assert np.array_equal(got_sat, sat), f"run {run}: saturated {got_sat} != {sat}"
            if np.any(sat & (want > 0)):
                ctx.coverage.hit("saturation", "acc_high")
            if np.any(sat & (want < 0)):
                ctx.coverage.hit("saturation", "acc_low")
        await FallingEdge(tb.clk)
    dut._log.info("tile and accumulator match the golden model")
    ctx.save()
