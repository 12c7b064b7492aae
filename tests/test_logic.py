# amaranth: UnusedElaboratable=no
"""Tests of ``rtl/logic.py`` (the components' logic helpers) against Python, exhaustive
over small widths.

Each test builds one module holding the helper for every case of a sweep (every
constant, count, width), drives every input value in simulation and compares each
output with the Python expression the helper's docstring names.
"""

import numpy as np
import pytest
from amaranth.hdl import Const, Module, Signal
from amaranth.sim import Simulator

from models.params import Region
from rtl.logic import (any_per_block, clog2, eq_const, lt_const, onehot, or_words, region_name,
                       register, select, select_packed)


def sweep(m, inputs, outputs, values, check):
    """Simulate module ``m``: for each input vector of ``values`` (ints for the signals
    of ``inputs``), read ``outputs`` (a list of values) and ``check(vector, got)``."""
    sim = Simulator(m)

    async def testbench(ctx):
        for vector in values:
            for signal, value in zip(inputs, vector):
                ctx.set(signal, value)
            check(vector, [ctx.get(out) for out in outputs])

    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_eq_const(width):
    m = Module()
    value = Signal(width)
    consts = range(-1, (1 << (width + 1)) + 1)
    outputs = [eq_const(value, c) for c in consts]

    def check(vector, got):
        assert got == [int(vector[0] == c) for c in consts], vector

    sweep(m, [value], outputs, [(v,) for v in range(1 << width)], check)


@pytest.mark.parametrize("const, equal", [(0, 1), (1, 0), (2, 0), (7, 0)])
def test_eq_const_of_an_empty_value(const, equal):
    """A zero-width value is 0: equal to 0 only."""
    assert eq_const(Signal(0), const).value == equal


@pytest.mark.parametrize("width", [0, 1, 2, 3, 4])
def test_lt_const(width):
    m = Module()
    value = Signal(width)
    bounds = range(0, (1 << (width + 1)) + 1)
    outputs = [lt_const(value, b) for b in bounds]

    def check(vector, got):
        assert got == [int(vector[0] < b) for b in bounds], vector

    sweep(m, [value], outputs, [(v,) for v in range(1 << width)], check)


@pytest.mark.parametrize("width", [0, 1, 2, 3])
def test_onehot(width):
    m = Module()
    value = Signal(width)
    counts = range(1, (1 << width) + 3)
    outputs = [onehot(m, value, count, f"hit{count}") for count in counts]

    def check(vector, got):
        v = vector[0]
        assert got == [(1 << v) if v < count else 0 for count in counts], vector
        assert all(len(out) == count for out, count in zip(outputs, counts))

    sweep(m, [value], outputs, [(v,) for v in range(1 << width)], check)


@pytest.mark.parametrize("width", [0, 1, 2, 3])
def test_select(width, rng):
    """Lists shorter than and as long as the index's range, and dicts with gaps:
    ``items[index]``, 0 for other indices."""
    m = Module()
    index = Signal(width)
    item_width = 5
    cases = []
    for n in range(1, (1 << width) + 1):
        cases.append(list(int(x) for x in rng.integers(0, 1 << item_width, size=n)))
    keys = sorted(int(k) for k in rng.choice(1 << width, size=(1 << width) // 2 + 1,
                                              replace=False))
    cases.append({k: int(rng.integers(0, 1 << item_width)) for k in keys})
    outputs = [select(m, index, {k: Const(v, item_width) for k, v in
                                 (items.items() if isinstance(items, dict) else enumerate(items))},
                      item_width, f"sel{j}")
               for j, items in enumerate(cases)]

    def expected(items, i):
        if isinstance(items, dict):
            return items.get(i, 0)
        return items[i] if i < len(items) else 0

    def check(vector, got):
        assert got == [expected(items, vector[0]) for items in cases], vector

    sweep(m, [index], outputs, [(i,) for i in range(1 << width)], check)


@pytest.mark.parametrize("width", [0, 1, 2, 3])
def test_select_packed(width, rng):
    """Item ``index`` of ``count`` packed items, 0 for ``index >= count``; every count
    the index reaches and item widths 1 to 3."""
    m = Module()
    index = Signal(width)
    cases = [(count, item_width) for count in range(1, (1 << width) + 1)
             for item_width in (1, 2, 3)]
    packed = [Signal(count * item_width, name=f"packed{j}")
              for j, (count, item_width) in enumerate(cases)]
    outputs = [select_packed(m, index, value, count, item_width, f"item{j}")
               for j, (value, (count, item_width)) in enumerate(zip(packed, cases))]
    vectors = [(i, *(int(rng.integers(0, 1 << len(v))) for v in packed))
               for _ in range(6) for i in range(1 << width)]

    def check(vector, got):
        i = vector[0]
        for (count, item_width), word, out in zip(cases, vector[1:], got):
            expected = (word >> (i * item_width)) & ((1 << item_width) - 1) if i < count else 0
            assert out == expected, (vector, count, item_width)

    sweep(m, [index, *packed], outputs, vectors, check)


@pytest.mark.parametrize("count, width", [(1, 3), (2, 1), (3, 2), (4, 3)])
def test_or_words(count, width):
    m = Module()
    value = Signal(count * width)
    total_bits = count * width

    def check(vector, got):
        words = [(vector[0] >> (j * width)) & ((1 << width) - 1) for j in range(count)]
        expected = 0
        for w in words:
            expected |= w
        assert got == [expected], vector

    sweep(m, [value], [or_words(value, count, width)],
          [(v,) for v in range(1 << total_bits)], check)


@pytest.mark.parametrize("lanes", [1, 7, 8, 9, 16, 20])
def test_any_per_block(lanes, rng):
    """One bit per block of 8 lanes (the last one short): exhaustive up to 9 lanes,
    every single bit and random words beyond."""
    m = Module()
    bits = Signal(lanes)
    if lanes <= 9:
        values = range(1 << lanes)
    else:
        values = [0, (1 << lanes) - 1, *(1 << i for i in range(lanes)),
                  *(int(v) for v in rng.integers(0, 1 << lanes, size=64))]
    out = any_per_block(bits)
    blocks = -(-lanes // 8)

    def check(vector, got):
        v = vector[0]
        assert got == [sum(int(bool((v >> (8 * b)) & 0xFF)) << b for b in range(blocks))], vector
        assert len(out) == blocks

    sweep(m, [bits], [out], [(v,) for v in values], check)


def test_register_delays_by_one_cycle(rng):
    m = Module()
    value = Signal(6)
    delayed = register(m, value + 1, "delayed")
    sim = Simulator(m)
    sim.add_clock(1e-6)
    stimulus = [int(v) for v in rng.integers(0, 64, size=40)]

    async def testbench(ctx):
        previous = 0                   # the register's reset value
        for v in stimulus:
            ctx.set(value, v)
            assert ctx.get(delayed) == previous
            await ctx.tick()
            previous = (v + 1) & 0x7F
        assert len(delayed) == 7

    sim.add_testbench(testbench)
    sim.run()


def test_clog2():
    assert [clog2(n) for n in range(1, 18)] == [max(0, (n - 1).bit_length()) for n in range(1, 18)]
    assert [clog2(n) for n in (1, 2, 3, 4, 5, 8, 9, 1024)] == [0, 1, 2, 2, 3, 3, 4, 10]


def test_region_name():
    assert [region_name(n) for n in range(14)] == [
        "csr", "weight", "comp", "thresh", "flip", "input", "acc", "out", "calflag", "offset",
        "gain", "table", "stuck_mask", "stuck_value"]
    with pytest.raises(ValueError, match="^no region numbered 14$"):
        region_name(14)
    assert Region.BITS == 4 and region_name(Region.STUCK_VALUE) == "stuck_value"


def test_sweep_helper_sees_a_wrong_answer():
    """The harness itself fails on a mismatch (a check that cannot fail proves nothing)."""
    m = Module()
    value = Signal(2)
    with pytest.raises(AssertionError):
        sweep(m, [value], [eq_const(value, 1)], [(v,) for v in range(4)],
              lambda vector, got: np.testing.assert_equal(got, [int(vector[0] == 2)]))
