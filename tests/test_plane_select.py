# amaranth: UnusedElaboratable=no
"""Tests of ``rtl/plane_select.py`` (PlaneSelect and BlockPlaneSelect) alone, against
the port rows of section 7 of ``docs/ARCHITECTURE.md``.

``PlaneSelect`` (L < 4): the plane of each cycle is INPUT's plane ``plane_next`` of the
cycle before when ``planes_next`` was high, else 0, in every block's copy.
``BlockPlaneSelect`` (L = 4): each block's plane is INPUT's plane picked by the one-hot
select two cycles before (0 when the select was 0), and ``plane_ones`` its number of
ones. INPUT cannot change while a command runs, and the first plane of a command comes
7 cycles after an INPUT write lands at the earliest (the write lands 3 cycles after its
access; the CMD access follows the ack, 6 cycles after it, and its first plane comes 4
cycles after that), so the ones count is checked wherever INPUT was stable over the 7
cycles before. Small spaces are swept exhaustively, larger ones at random.
"""

import itertools

import pytest
from amaranth.sim import Simulator

from models.params import MacroParams
from rtl.compute_array import count_bits
from rtl.plane_select import BlockPlaneSelect, PlaneSelect
from rtl.replicas import lane_blocks
from .component_bench import Inputs, random_bits

PARAMS = {
    "2x3-B2": dict(rows=2, cols=3, input_bits=2, comp_rows=2),
    "7x12-B3": dict(rows=7, cols=12, input_bits=3),
    # Five blocks of copies (two first-level copies of the counts' tree), 64 rows.
    "64x40-B5": dict(rows=64, cols=40, input_bits=5),
}
#: Cycles from an INPUT change to the first plane cycle that can use it (L = 4).
INPUT_TO_PLANE = 7


def planes_of(p, inputs):
    R = p.rows
    return [inputs >> (b * R) & ((1 << R) - 1) for b in range(p.input_bits)]


def copies(p, word, width):
    """The block copies of ``word`` as the port packs them (block-major)."""
    return [word >> (k * width) & ((1 << width) - 1) for k in range(lane_blocks(p.cols_per_cycle))]


def run(dut, p, stimulus, check):
    """Drive ``stimulus`` (a list of input dicts, one a cycle) and ``check(k, ctx)``."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def testbench(ctx):
        inputs = Inputs(p, {name: getattr(dut, name) for name in stimulus[0]})
        for k, values in enumerate(stimulus):
            inputs.values.update(values)
            inputs.apply(ctx)
            check(k, ctx)
            await ctx.tick()

    sim.add_testbench(testbench)
    sim.run()


def plane_select_stimulus(p, rng):
    B, R = p.input_bits, p.rows
    if B * R + B.bit_length() + 1 <= 10:
        # Exhaustive: every INPUT word with every plane, in and outside plane cycles.
        return [dict(inputs=x, plane_next=b, planes_next=on)
                for x, b, on in itertools.product(range(1 << (B * R)), range(B), (0, 1))]
    return [dict(inputs=random_bits(rng, B * R), plane_next=int(rng.integers(0, B)),
                 planes_next=int(rng.random() < 0.7)) for _ in range(400)]


@pytest.mark.parametrize("key", sorted(PARAMS))
def test_plane_select(key, rng):
    p = MacroParams(**PARAMS[key])
    stimulus = plane_select_stimulus(p, rng)
    dut = PlaneSelect(p)

    def check(k, ctx):
        if k == 0:
            assert ctx.get(dut.plane) == 0
            return
        before = stimulus[k - 1]
        expected = planes_of(p, before["inputs"])[before["plane_next"]] if before["planes_next"] else 0
        got = copies(p, ctx.get(dut.plane), p.rows)
        assert got == [expected] * len(got), f"cycle {k}: {before}"

    run(dut, p, stimulus, check)


def block_plane_select_stimulus(p, rng):
    """INPUT held for random stretches (some shorter than INPUT_TO_PLANE), the select
    one-hot or 0 at random each cycle."""
    B, R = p.input_bits, p.rows
    exhaustive = B * R <= 4
    words = list(range(1 << (B * R))) if exhaustive else [random_bits(rng, B * R) for _ in range(40)]
    words += [0, (1 << (B * R)) - 1]
    stimulus = []
    for x in words:
        hold = int(rng.integers(1, INPUT_TO_PLANE + 6))
        for _ in range(hold):
            sel = int(rng.integers(-1, B))
            stimulus.append(dict(inputs=x, select=0 if sel < 0 else 1 << sel))
    return stimulus


@pytest.mark.parametrize("key", sorted(PARAMS))
def test_block_plane_select(key, rng):
    p = MacroParams(**PARAMS[key], pipeline=4)
    stimulus = block_plane_select_stimulus(p, rng)
    dut = BlockPlaneSelect(p)
    checked = dict(ones=0)

    def check(k, ctx):
        if k < 2:
            return
        before = stimulus[k - 2]
        sel = before["select"]
        expected = planes_of(p, before["inputs"])[sel.bit_length() - 1] if sel else 0
        planes = copies(p, ctx.get(dut.plane), p.rows)
        assert planes == [expected] * len(planes), f"cycle {k}: plane"
        stable = k >= INPUT_TO_PLANE and all(
            stimulus[j]["inputs"] == before["inputs"] for j in range(k - INPUT_TO_PLANE, k - 1))
        if stable:
            ones = copies(p, ctx.get(dut.plane_ones), count_bits(p.rows))
            assert ones == [bin(expected).count("1")] * len(ones), f"cycle {k}: plane_ones"
            checked["ones"] += 1

    run(dut, p, stimulus, check)
    assert checked["ones"] > 20
