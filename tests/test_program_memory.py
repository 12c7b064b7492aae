# amaranth: UnusedElaboratable=no
"""Tests of the program check's parts in ``rtl/program_memory.py`` against Python,
exhaustive over small counts (the whole check runs in tests/test_engine_rtl.py)."""

import pytest
from amaranth.hdl import Module, Signal

from rtl.program_memory import tiles_match

from .test_logic import sweep


@pytest.mark.parametrize("size", [1, 2, 4, 32, 3, 6, 24])
@pytest.mark.parametrize("tabled", [False, True], ids=["direct", "tables"])
def test_tiles_match_is_the_tile_count_rule(size, tabled):
    """``tiles == ceil(count / size) >= 1`` for every count 0..127 and tiles 0..15, by the
    adder (sizes a power of two) or by products from multipliers or tables."""
    m = Module()
    count, tiles = Signal(17), Signal(13)
    low, n = (tiles[:4], 16) if tabled else (None, None)
    ok = tiles_match(m, count, tiles, size, low, n, "t")

    def check(vector, got):
        c, t = vector
        assert got == [int(t >= 1 and (t - 1) * size < c <= t * size)], vector

    sweep(m, [count, tiles], [ok], [(c, t) for c in range(128) for t in range(16)], check)
