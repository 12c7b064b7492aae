"""cocotb testbench of ``rtl/compute_array.py`` against ``models.macro.readout``.

Seeded constrained-random stimulus on every port of the block (the plane, weights,
stuck cells, compensation values, offsets, gains, SAT, QSHIFT and the transfer table,
as built), with the values biased to the corners (empty and full planes, extreme
offsets and gains, SAT 0 and M, quantisation shifts beyond W), and a scoreboard that
compares every lane's readout with the golden model. The transfer table is loaded and
read back through its bus port (one-cycle read latency, old data on a read during a
write).
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, RisingEdge

from models.macro import readout as model_readout
from models.params import GAIN_BITS, GAIN_FRAC_BITS, QSHIFT_BITS

from rtl.replicas import lane_blocks  # the plane port's layout: a copy per block of lanes

from .tb import TB, context

TIMEOUT_US = 20_000


def _bits(rng, shape, style):
    if style == 0:
        return np.zeros(shape, np.int64)
    if style == 1:
        return np.ones(shape, np.int64)
    return (rng.random(shape) < rng.choice([0.1, 0.5, 0.9])).astype(np.int64)


def _stimulus(p, rng):
    """One constrained-random input vector of the block (a dict of arrays and ints)."""
    R, P, K, W, M = p.rows, p.cols_per_cycle, p.comp_rows, p.readout_bits, p.readout_max
    s = dict(plane=_bits(rng, R, rng.integers(6)), weights=_bits(rng, (R, P), rng.integers(6)))
    s["comp"] = 2 * rng.integers(0, K + 1, P) - K
    if p.has("stuck"):
        s["stuck_mask"] = _bits(rng, (R, P), rng.integers(4))
        s["stuck_value"] = _bits(rng, (R, P), rng.integers(4))
    if p.has("offset"):
        lo = -(1 << (W - 1))
        small = rng.integers(-K - 2, K + 3, P)
        full = rng.integers(lo, M + 1, P)
        s["offset"] = np.clip(np.where(rng.random(P) < 0.5, small, full), lo, M)
    if p.has("gain"):
        near_one = rng.integers(48, 81, P)
        full = rng.integers(0, 1 << GAIN_BITS, P)
        s["gain"] = np.where(rng.random(P) < 0.5, near_one, full)
    if p.has("readout"):
        s["sat"] = int(rng.choice([M, 0, rng.integers(0, M + 1)], p=[0.5, 0.1, 0.4]))
        s["qshift"] = int(rng.choice([0, rng.integers(0, 1 << QSHIFT_BITS)], p=[0.6, 0.4]))
    return s


def _clamp_events(p, s, coverage):
    """Saturation bins: the gain output ``g`` beyond the limit, from the contract's steps."""
    x = s["plane"]
    w = s["weights"]
    if p.has("stuck"):
        w = np.where(s["stuck_mask"] == 1, s["stuck_value"], w)
    a = x @ (2 * w - 1) + s["comp"] + s.get("offset", 0)
    g = (a * s["gain"] + (1 << (GAIN_FRAC_BITS - 1))) >> GAIN_FRAC_BITS if p.has("gain") else a
    limit = s["sat"] if p.has("readout") else p.readout_max
    if np.any(g > limit):
        coverage.hit("saturation", "readout_high")
    if np.any(g < -limit):
        coverage.hit("saturation", "readout_low")


class ArrayBench(TB):
    """The block's ports as numpy arrays."""

    def apply(self, s) -> None:
        p = self.p
        R, W = p.rows, p.readout_bits
        plane = int(sum(int(b) << r for r, b in enumerate(s["plane"])))
        self.set("plane", sum(plane << (k * R) for k in range(lane_blocks(p.cols_per_cycle))))
        for name in ("weights", "stuck_mask", "stuck_value"):
            if name in s:
                cols = [int(sum(int(b) << r for r, b in enumerate(s[name][:, i])))
                        for i in range(p.cols_per_cycle)]
                self.set_lanes(name, cols, R)
        self.set_lanes("comp", s["comp"], p.comp_bits)
        if "offset" in s:
            self.set_lanes("offset", s["offset"], W)
        if "gain" in s:
            self.set_lanes("gain", s["gain"], GAIN_BITS)
        if "sat" in s:
            self.set("sat", s["sat"])
            self.set("qshift", s["qshift"])

    def readout(self) -> np.ndarray:
        return self.get_lanes("readout", self.p.readout_bits, signed=True)


async def _write_table(tb, table) -> None:
    """Write every entry through the bus port (one per clock edge)."""
    W = tb.p.readout_bits
    await FallingEdge(tb.clk)
    for i, v in enumerate(table):
        tb.set("table_addr", i)
        tb.set("table_wdata", int(v) & ((1 << W) - 1))
        tb.set("table_we", 1)
        await FallingEdge(tb.clk)
    tb.set("table_we", 0)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def random_readouts(dut):
    """Random vectors (``CIM_ARGS`` ``vectors``, default 1000) against the golden readout."""
    ctx = context("random_readouts")
    tb = ArrayBench(dut, ctx)
    p, rng = ctx.p, ctx.rng
    W, M = p.readout_bits, p.readout_max
    await tb.reset()
    vectors = int(ctx.args.get("vectors", 1000))
    table = None
    checked = 0
    for n in range(vectors):
        if p.has("table") and n % 100 == 0:
            # A new transfer curve every 100 vectors: identity, noisy identity or arbitrary.
            index = np.arange(1 << W)
            identity = np.where(index >= 1 << (W - 1), index - (1 << W), index)
            kind = n // 100 % 3
            table = identity if kind == 0 else np.clip(
                identity + rng.integers(-2, 3, 1 << W), -(1 << (W - 1)), M) if kind == 1 else \
                rng.integers(-(1 << (W - 1)), M + 1, 1 << W)
            await _write_table(tb, table)
        s = _stimulus(p, rng)
        tb.apply(s)
        await tb.settle()
        got = tb.readout()
        want = model_readout(p, s["plane"], s["weights"], s["comp"], offset=s.get("offset"),
                             gain=s.get("gain"), sat=s.get("sat"), qshift=s.get("qshift"),
                             table=table, stuck_mask=s.get("stuck_mask"),
                             stuck_value=s.get("stuck_value"))
        assert np.array_equal(got, want), (
            f"vector {n}: readout {got.tolist()} != golden {want.tolist()}\nstimulus "
            f"{ {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in s.items()} }")
        assert np.all(got >= -(1 << (W - 1))) and np.all(got <= M)
        _clamp_events(p, s, ctx.coverage)
        checked += 1
    dut._log.info(f"{checked} vectors x {p.cols_per_cycle} lanes match the golden readout")
    ctx.save()


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def table_port(dut):
    """TABLE bus port: random writes and reads against a Python copy (section 7 timing)."""
    ctx = context("table_port")
    tb = ArrayBench(dut, ctx)
    p, rng = ctx.p, ctx.rng
    if not p.has("table"):
        dut._log.info("table not built: nothing to test")
        ctx.save()
        return
    W = p.readout_bits
    depth = 1 << W
    await tb.reset()
    index = np.arange(depth)
    shadow = np.where(index >= 1 << (W - 1), index - depth, index)  # reset: identity
    await FallingEdge(tb.clk)
    for n in range(int(ctx.args.get("table_ops", 300))):
        addr = int(rng.integers(0, depth))
        write = bool(rng.integers(2))
        value = int(rng.integers(-(1 << (W - 1)), 1 << (W - 1)))
        tb.set("table_addr", addr)
        tb.set("table_we", int(write))
        tb.set("table_wdata", value & (depth - 1))
        await RisingEdge(tb.clk)
        old = int(shadow[addr])
        if write:
            shadow[addr] = value
        await FallingEdge(tb.clk)
        tb.set("table_we", 0)
        got = tb.get("table_rdata", signed_bits=W)
        # The read is not transparent: a read in the cycle of a write returns the old entry.
        assert got == old, f"op {n}: TABLE[{addr}] read {got}, expected {old} (write={write})"
    ctx.save()
