# amaranth: UnusedElaboratable=no
"""Tests of ``rtl/shift_accumulate.py`` against section 2 and the port row of section 7.

RUNs of random readouts (biased to the extremes ``-2^(W-1)`` and ``M``) are stepped
through the tile register, most significant plane first; after every step the tile is
compared with the golden model :func:`models.macro.shift_accumulate` over the planes
stepped so far, and at the end ``acc`` and ``saturated`` are compared with the model for
random ``acc_prev`` near and at the accumulator's limits, with and without ACCUMULATE.
A small configuration is swept exhaustively.
"""

import numpy as np
import pytest
from amaranth.hdl import Shape, Value
from amaranth.sim import Simulator

from models.macro import shift_accumulate as model_shift_accumulate
from models.params import MacroParams
from rtl.shift_accumulate import ShiftAccumulate
from .lane_words import pack, unpack_signed

PARAMS = {
    "2x3": dict(rows=2, cols=3),
    "32x96-P12": dict(rows=32, cols=96, cols_per_cycle=12),
    "32x96-P8-B8-A32": dict(rows=32, cols=96, cols_per_cycle=8, input_bits=8, acc_bits=32),
    "64x10-K16": dict(rows=64, cols=10, comp_rows=16),
    "16x4-K2-B1-Amin": dict(rows=16, cols=4, comp_rows=2, input_bits=1, acc_bits=7),
    "5x3-W12": dict(rows=5, cols=3, readout_bits=12, input_bits=3),
}
RUNS = 40


def run(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def lanes(ctx, port, width, p):
    return unpack_signed(ctx.get(Value.cast(port)), width, p.cols_per_cycle)


def random_readouts(p, rng, planes):
    W, M = p.readout_bits, p.readout_max
    lo = -(1 << (W - 1))
    values = rng.integers(lo, M + 1, size=(planes, p.cols_per_cycle))
    corner = rng.random(values.shape) < 0.4
    return np.where(corner, rng.choice([lo, -1, 0, 1, M], size=values.shape), values)


def random_acc_prev(p, rng):
    A = p.acc_bits
    lo, hi = -(1 << (A - 1)), (1 << (A - 1)) - 1
    values = rng.integers(lo, hi + 1, size=p.cols_per_cycle)
    # Near the limits, where adding a tile saturates (or just does not).
    near = rng.random(p.cols_per_cycle) < 0.5
    edge = np.where(rng.random(p.cols_per_cycle) < 0.5, lo, hi) \
        - np.sign(rng.random(p.cols_per_cycle) - 0.5).astype(np.int64) \
        * rng.integers(0, 1 << p.tile_bits, size=p.cols_per_cycle)
    return np.where(near, np.clip(edge, lo, hi), values)


def every_lane(p):
    """The value of a one-bit-per-lane control that drives every lane."""
    return (1 << p.cols_per_cycle) - 1


async def do_run(ctx, dut, p, readouts):
    """Clear, then step the planes MSB first; returns the tile after every step."""
    ctx.set(dut.clear, every_lane(p))
    await ctx.tick()
    ctx.set(dut.clear, 0)
    tiles = [lanes(ctx, dut.tile, p.tile_bits, p)]
    for b in range(len(readouts) - 1, -1, -1):
        ctx.set(Value.cast(dut.readout), pack(readouts[b], p.readout_bits))
        ctx.set(dut.step, every_lane(p))
        await ctx.tick()
        tiles.append(lanes(ctx, dut.tile, p.tile_bits, p))
    ctx.set(dut.step, 0)
    return tiles


@pytest.mark.parametrize("bad", [None, 7, dict(rows=2, cols=3)])
def test_rejects_non_params(bad):
    with pytest.raises(TypeError, match="MacroParams"):
        ShiftAccumulate(bad)


def test_ports_follow_section_7():
    p = MacroParams(rows=32, cols=12, cols_per_cycle=4, input_bits=6, acc_bits=20)
    P, W, A = p.cols_per_cycle, p.readout_bits, p.acc_bits
    expect = {"readout": ("In", W, True, P), "clear": ("In", P, False, None),
              "step": ("In", P, False, None), "acc_prev": ("In", A, True, P),
              "accumulate": ("In", P, False, None), "tile": ("Out", W + 6, True, P),
              "acc": ("Out", A, True, P), "saturated": ("Out", P, False, None)}
    members = ShiftAccumulate(p).signature.members
    assert set(members.keys()) == set(expect)
    for name, (flow, width, is_signed, count) in expect.items():
        shape = members[name].shape
        assert members[name].flow.name == flow, name
        if count is not None:
            assert shape.length == count, name
            shape = shape.elem_shape
        shape = Shape.cast(shape)
        assert (shape.width, shape.signed) == (width, is_signed), name


@pytest.mark.parametrize("key", sorted(PARAMS))
def test_random_runs_against_model(key, rng):
    p = MacroParams(**PARAMS[key])
    dut = ShiftAccumulate(p)
    failures = []
    saturations = []

    async def testbench(ctx):
        for n in range(RUNS):
            planes = int(rng.integers(1, p.input_bits + 1))
            readouts = random_readouts(p, rng, planes)
            tiles = await do_run(ctx, dut, p, readouts)
            assert tiles[0] == [0] * p.cols_per_cycle, "clear"
            for j in range(1, planes + 1):
                # After j steps the tile holds the j most significant planes.
                want, _ = model_shift_accumulate(p, readouts[planes - j:])
                if tiles[j] != want.tolist():
                    failures.append(("tile", n, j, readouts, tiles[j], want.tolist()))
            for accumulate in (False, True):
                acc_prev = random_acc_prev(p, rng)
                ctx.set(Value.cast(dut.acc_prev), pack(acc_prev, p.acc_bits))
                ctx.set(dut.accumulate, every_lane(p) if accumulate else 0)
                want_acc, want_sat = model_shift_accumulate(p, readouts, acc_prev, accumulate)
                got_acc = lanes(ctx, dut.acc, p.acc_bits, p)
                got_sat = [ctx.get(dut.saturated) >> i & 1 for i in range(p.cols_per_cycle)]
                saturations.extend(got_sat)
                if (got_acc, got_sat) != (want_acc.tolist(), want_sat.astype(int).tolist()):
                    failures.append(("acc", n, accumulate, readouts, acc_prev,
                                     got_acc, got_sat, want_acc.tolist(), want_sat.tolist()))

    run(dut, testbench)
    assert not failures, f"{len(failures)} mismatches; first: {failures[0]}"
    # Both outcomes of the clamp occurred, so the comparison covered saturation.
    assert 0 in saturations and 1 in saturations


def test_clear_wins_and_step_low_holds(rng):
    p = MacroParams(rows=8, cols=2, input_bits=4)
    dut = ShiftAccumulate(p)
    v = random_readouts(p, rng, 3)

    async def testbench(ctx):
        assert lanes(ctx, dut.tile, p.tile_bits, p) == [0, 0], "reset value"
        ctx.set(Value.cast(dut.readout), pack(v[0], p.readout_bits))
        ctx.set(dut.step, every_lane(p))
        await ctx.tick()
        assert lanes(ctx, dut.tile, p.tile_bits, p) == v[0].tolist()
        ctx.set(dut.step, 0)
        ctx.set(Value.cast(dut.readout), pack(v[1], p.readout_bits))
        await ctx.tick()
        await ctx.tick()
        assert lanes(ctx, dut.tile, p.tile_bits, p) == v[0].tolist(), "step low holds"
        ctx.set(dut.step, every_lane(p))
        await ctx.tick()
        assert lanes(ctx, dut.tile, p.tile_bits, p) == (2 * v[0] + v[1]).tolist()
        ctx.set(dut.clear, every_lane(p))
        await ctx.tick()
        assert lanes(ctx, dut.tile, p.tile_bits, p) == [0, 0], "clear wins over step"
        ctx.set(dut.clear, 0)
        ctx.set(Value.cast(dut.readout), pack(v[2], p.readout_bits))
        await ctx.tick()
        assert lanes(ctx, dut.tile, p.tile_bits, p) == v[2].tolist()

    run(dut, testbench)


def test_exhaustive_small():
    """W = 3, B = 2, A = 5, one lane: every pair of readouts, acc_prev and ACCUMULATE."""
    p = MacroParams(rows=1, cols=1, comp_rows=2, input_bits=2, acc_bits=5)
    assert (p.readout_bits, p.tile_bits) == (3, 5)
    dut = ShiftAccumulate(p)
    W, A = p.readout_bits, p.acc_bits
    values = range(-(1 << (W - 1)), 1 << (W - 1))

    async def testbench(ctx):
        for v1 in values:
            for v0 in values:
                readouts = np.array([[v0], [v1]])
                tiles = await do_run(ctx, dut, p, readouts)
                assert tiles[-1] == [2 * v1 + v0]
                for prev in range(-(1 << (A - 1)), 1 << (A - 1)):
                    ctx.set(Value.cast(dut.acc_prev), pack([prev], A))
                    for accumulate in (False, True):
                        ctx.set(dut.accumulate, every_lane(p) if accumulate else 0)
                        want, sat = model_shift_accumulate(p, readouts, [prev], accumulate)
                        assert lanes(ctx, dut.acc, A, p) == want.tolist()
                        assert ctx.get(dut.saturated) == int(sat[0])

    run(dut, testbench)


def test_controls_act_per_lane(rng):
    """Each lane follows its own bit of clear, step and accumulate (the macro drives them
    from copies per block of lanes)."""
    p = MacroParams(rows=8, cols=3, input_bits=4)
    dut = ShiftAccumulate(p)
    v = random_readouts(p, rng, 2)
    acc_prev = rng.integers(-(1 << (p.acc_bits - 1)), 1 << (p.acc_bits - 1), size=3)

    async def testbench(ctx):
        ctx.set(Value.cast(dut.readout), pack(v[0], p.readout_bits))
        ctx.set(dut.step, 0b011)
        await ctx.tick()
        assert lanes(ctx, dut.tile, p.tile_bits, p) == [v[0][0], v[0][1], 0]
        ctx.set(Value.cast(dut.readout), pack(v[1], p.readout_bits))
        ctx.set(dut.step, 0b110)
        ctx.set(dut.clear, 0b010)
        await ctx.tick()
        tile = [v[0][0], 0, v[1][2]]
        assert lanes(ctx, dut.tile, p.tile_bits, p) == tile
        ctx.set(dut.step, 0)
        ctx.set(dut.clear, 0)
        ctx.set(Value.cast(dut.acc_prev), pack(acc_prev, p.acc_bits))
        ctx.set(dut.accumulate, 0b101)
        got = lanes(ctx, dut.acc, p.acc_bits, p)
        want = [model_shift_accumulate(p, np.array([[t]]), np.array([a]), bool(acc))[0][0]
                for t, a, acc in zip(tile, acc_prev, (1, 0, 1))]
        assert got == [int(w) for w in want]

    run(dut, testbench)
