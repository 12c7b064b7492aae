"""Chip sampling's streams seeded in bulk (models/streams.py) against numpy's own
``Generator(PCG64(SeedSequence(entropy, spawn_key=(stream,))))``: the same PCG64 state and
the same draws, for single integers, tuples, zeros, entropy longer than the pool and
integers wider than 32 bits."""

import numpy as np
import pytest

from models.chip import ChipConfig, sample_chip, sample_chips
from models.devices import variation
from models.streams import StreamSet, entropy_words


def _numpy_generator(seed, stream):
    entropy = list(seed) if isinstance(seed, tuple) else seed
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(stream,)))


def _seeds(rng):
    fixed = [0, 1, 7, 2**32 - 1, 2**32, 2**40 + 5, (0,), (3, 0, 1, 2), (1, 2, 3, 4, 5, 6),
             (2**33 + 1, 0, 9), (0, 0, 0, 0)]
    drawn = [tuple(int(v) for v in rng.integers(0, 1 << 20, int(rng.integers(1, 7))))
             for _ in range(40)]
    return fixed + drawn + [int(v) for v in rng.integers(0, 1 << 62, 10)]


def test_states_and_draws_equal_numpys(rng):
    seeds = _seeds(rng)
    streams = [1, 2, 5, 7, 1 << 33]
    bulk = StreamSet(seeds, streams)
    for seed in seeds:
        for stream in streams:
            ref = _numpy_generator(seed, stream)
            mine = bulk.generator(seed, stream)
            assert mine.bit_generator.state == ref.bit_generator.state, (seed, stream)
            np.testing.assert_array_equal(mine.standard_normal(7, dtype=np.float32),
                                          ref.standard_normal(7, dtype=np.float32))
            np.testing.assert_array_equal(mine.random(3), ref.random(3))


def test_entropy_words_follow_seed_sequence():
    assert entropy_words(5, 1) == (5, 0, 0, 0, 1)
    assert entropy_words((2**32 + 3, 0), 2) == (3, 1, 0, 0, 2)
    assert entropy_words((1, 2, 3, 4, 5), 0) == (1, 2, 3, 4, 5, 0)
    with pytest.raises(ValueError, match="non-negative, not -1"):
        entropy_words((1, -1), 1)


@pytest.mark.parametrize("config", [ChipConfig.typical("sram"),
                                    ChipConfig.typical("rram"),
                                    ChipConfig(offset_sigma=2.0, stuck_prob=0.05)],
                         ids=["sram", "rram", "offsets, stuck"])
def test_chips_equal_the_ones_numpys_streams_give(config):
    """A stack equals its instances, and an instance's arrays equal the draws of numpy's
    own generators of the documented streams."""
    seeds = [(4, 1, 0, 2), 9, (0, 0, 0, 0)]
    stack = sample_chips(config, seeds, 8, 6, 4)
    for i, seed in enumerate(seeds):
        one = sample_chip(config, seed, 8, 6, 4)
        for name in ("cell_current", "comp_current", "offset", "gain", "stuck_mask",
                     "stuck_value", "cell_factor"):
            a, b = getattr(stack, name), getattr(one, name)
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a[i], b)
    if config.technology == "sram":
        one = sample_chip(config, seeds[0], 8, 6, 4)
        eps = _numpy_generator(seeds[0], 1).standard_normal((8, 6), dtype=np.float32)
        expected = variation(eps, config.cell_sigma, config.cell_dist)
        np.testing.assert_array_equal(one.cell_current, expected)
        if config.offset_sigma:
            off = _numpy_generator(seeds[0], 3).standard_normal(6, dtype=np.float32)
            np.testing.assert_array_equal(one.offset, np.float32(config.offset_sigma) * off
                                          + np.float32(config.offset_mean))
