# amaranth: UnusedElaboratable=no
"""Tests of ``rtl/batchnorm_binarize.py`` against section 3 and the port row of section 7.

Outputs are compared with the golden model :func:`models.macro.binarize`, on random
accumulators and thresholds biased to ties and to the ends of the signed A-bit range,
and exhaustively for the narrowest accumulator.
"""

import numpy as np
import pytest
from amaranth.hdl import Shape, Value
from amaranth.sim import Simulator

from models.macro import binarize as model_binarize
from models.params import MacroParams
from rtl.batchnorm_binarize import BatchnormBinarize
from .lane_words import pack

PARAMS = {
    "2x3": dict(rows=2, cols=3),
    "32x96-P12": dict(rows=32, cols=96, cols_per_cycle=12),
    "32x96-P96-A32": dict(rows=32, cols=96, input_bits=8, acc_bits=32),
    "64x10-K16": dict(rows=64, cols=10, comp_rows=16),
}
VECTORS = 200


def run(dut, testbench):
    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()


def bits(word, count):
    return [word >> i & 1 for i in range(count)]


@pytest.mark.parametrize("bad", [None, 1.5, dict(rows=2, cols=3)])
def test_rejects_non_params(bad):
    with pytest.raises(TypeError, match="MacroParams"):
        BatchnormBinarize(bad)


def test_ports_follow_section_7():
    p = MacroParams(rows=32, cols=12, cols_per_cycle=6, acc_bits=22)
    members = BatchnormBinarize(p).signature.members
    assert set(members.keys()) == {"acc", "theta", "flip", "y"}
    for name in ("acc", "theta"):
        assert members[name].flow.name == "In"
        assert members[name].shape.length == 6
        assert Shape.cast(members[name].shape.elem_shape) == Shape(22, signed=True)
    assert (members["flip"].flow.name, Shape.cast(members["flip"].shape)) == ("In", Shape(6))
    assert (members["y"].flow.name, Shape.cast(members["y"].shape)) == ("Out", Shape(6))


@pytest.mark.parametrize("key", sorted(PARAMS))
def test_random_against_model(key, rng):
    p = MacroParams(**PARAMS[key])
    P, A = p.cols_per_cycle, p.acc_bits
    lo, hi = -(1 << (A - 1)), (1 << (A - 1)) - 1
    dut = BatchnormBinarize(p)
    failures = []
    ties = 0

    async def testbench(ctx):
        nonlocal ties
        for n in range(VECTORS):
            acc = rng.integers(lo, hi + 1, size=P)
            acc = np.where(rng.random(P) < 0.2, rng.choice([lo, hi, -1, 0], size=P), acc)
            theta = rng.integers(lo, hi + 1, size=P)
            # A third ties, a third one step either side, a third anywhere.
            kind = rng.integers(0, 3, size=P)
            step = rng.choice([-1, 1], size=P)
            theta = np.where(kind == 0, acc, np.where(kind == 1, np.clip(acc + step, lo, hi), theta))
            flip = rng.integers(0, 2, size=P)
            ties += int(np.sum(acc == theta))
            ctx.set(Value.cast(dut.acc), pack(acc, A))
            ctx.set(Value.cast(dut.theta), pack(theta, A))
            ctx.set(dut.flip, pack(flip, 1))
            got = bits(ctx.get(dut.y), P)
            want = model_binarize(acc, theta, flip).tolist()
            if got != want:
                failures.append((n, acc, theta, flip, got, want))

    run(dut, testbench)
    assert not failures, f"{len(failures)} of {VECTORS} differ; first: {failures[0]}"
    assert ties > 0


def test_exhaustive_narrowest_accumulator():
    """A = 4 (W = 3, B = 1): every acc, theta and flip, on two lanes at once."""
    p = MacroParams(rows=1, cols=2, comp_rows=2, input_bits=1, acc_bits=4)
    A = p.acc_bits
    dut = BatchnormBinarize(p)
    values = range(-(1 << (A - 1)), 1 << (A - 1))

    async def testbench(ctx):
        for acc in values:
            ctx.set(Value.cast(dut.acc), pack([acc, acc], A))
            for theta in values:
                ctx.set(Value.cast(dut.theta), pack([theta, theta], A))
                ctx.set(dut.flip, 0b10)    # lane 1 flipped, lane 0 not
                want = model_binarize([acc, acc], [theta, theta], [0, 1]).tolist()
                assert bits(ctx.get(dut.y), 2) == want, (acc, theta)
                assert want[0] == int(acc >= theta) and want[1] == 1 - want[0]

    run(dut, testbench)


# --- pipelined macros: the margin form, every value of the narrowest accumulator -------

@pytest.mark.parametrize("pipeline", [1, 2])
def test_pipelined_margin_form_is_exhaustively_the_clamped_comparison(pipeline):
    # A = W + B = 4 bits: every accumulator base, threshold and tile (16^3 cases), each
    # with flip 0 and 1, against the golden clamp-then-compare. Captures the margin in
    # one cycle and compares in the next, so the registered path is what is checked;
    # the lowest threshold (-8), where the clamped sum always reaches it, is included.
    p = MacroParams(rows=1, cols=2, input_bits=1, comp_rows=2, acc_bits=4, nonideal=(),
                    pipeline=pipeline)
    A, T = p.acc_bits, p.tile_bits
    assert (A, T) == (4, 4)
    dut = BatchnormBinarize(p)
    assert {"acc_base", "tile", "capture"} <= set(dut.signature.members)
    assert "acc" not in dut.signature.members
    lo, hi = -(1 << (A - 1)), (1 << (A - 1))
    tlo, thi = -(1 << (T - 1)), (1 << (T - 1))
    cases = [(b, t, x) for b in range(lo, hi) for t in range(lo, hi) for x in range(tlo, thi)]
    got, want = [], []

    async def testbench(ctx):
        for base, theta, tile in cases:
            # lane 0 flip 0, lane 1 flip 1, same values
            ctx.set(Value.cast(dut.acc_base), pack([base, base], A))
            ctx.set(Value.cast(dut.theta), pack([theta, theta], A))
            ctx.set(dut.capture, 0b11)
            await ctx.tick()
            ctx.set(dut.capture, 0)
            # The inputs the margin came from change: y must not depend on them now.
            ctx.set(Value.cast(dut.acc_base), pack([-base - 1, ~base], A))
            ctx.set(Value.cast(dut.theta), pack([~theta, theta ^ 5], A))
            ctx.set(Value.cast(dut.tile), pack([tile, tile], T))
            ctx.set(dut.flip, 0b10)
            got.append(bits(ctx.get(dut.y), 2))
            acc = min(max(base + tile, lo), hi - 1)
            want.append(model_binarize([acc, acc], [theta, theta], [0, 1]).tolist())

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    bad = [(c, g, w) for c, g, w in zip(cases, got, want) if g != w]
    assert not bad, f"{len(bad)} of {len(cases)} differ; first (base, theta, tile), got, want: {bad[0]}"
