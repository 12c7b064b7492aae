"""Chip-instance sampling and the mapping onto the RTL's non-idealities (models/chip.py).

The statistics tests bound every sample statistic by five standard errors of the
configured distribution, so they hold for any seed with overwhelming probability.
"""

import dataclasses
import math
import time

import numpy as np
import pytest

from models.chip import ChipConfig, chip_to_rtl, rtl_fidelity, rtl_table, sample_chip, sample_chips
from models.devices import discharge_curve, sram_mac, sram_readout
from models.params import MacroParams

ALL = ("offset", "gain", "readout", "table", "stuck")


def _close_mean(samples, mean, sigma):
    samples = np.asarray(samples, dtype=np.float64).ravel()
    return abs(samples.mean() - mean) < 5 * sigma / math.sqrt(samples.size)


def _close_std(samples, sigma):
    samples = np.asarray(samples, dtype=np.float64).ravel()
    return abs(samples.std() / sigma - 1) < 5 / math.sqrt(2 * samples.size)


# --- ChipConfig ------------------------------------------------------------------------

def test_default_config_is_ideal_and_typical_is_not():
    assert ChipConfig().is_ideal and ChipConfig(technology="rram").is_ideal
    for tech in ("sram", "rram"):
        typical = ChipConfig.typical(tech)
        assert typical.technology == tech and not typical.is_ideal
    assert ChipConfig.typical("sram", offset_sigma=5.0).offset_sigma == 5.0
    assert not ChipConfig(bl_vmax=50.0).is_ideal and not ChipConfig(qshift=1).is_ideal


@pytest.mark.parametrize("kw, err, match", [
    (dict(technology="flash"), ValueError, "technology"),
    (dict(technology=1), TypeError, "technology"),
    (dict(cell_sigma=-0.1), ValueError, "cell_sigma"),
    (dict(cell_sigma="0.1"), TypeError, "cell_sigma"),
    (dict(read_noise=math.nan), ValueError, "read_noise"),
    (dict(stuck_prob=1.5), ValueError, "stuck_prob"),
    (dict(cell_dist="uniform"), ValueError, "cell_dist"),
    (dict(bl_vmax=0.0), ValueError, "bl_vmax"),
    (dict(bl_mode="wordline"), ValueError, "bl_mode"),
    (dict(qshift=16), ValueError, "qshift"),
    (dict(sat=2.5), TypeError, "sat"),
    (dict(on_off_ratio=1.0), ValueError, "on_off_ratio"),
    (dict(cell_bits=3), ValueError, "cell_bits"),
    (dict(weight_bits=True), TypeError, "weight_bits"),
    (dict(mapping="twos"), ValueError, "mapping"),
])
def test_config_validation(kw, err, match):
    with pytest.raises(err, match=match):
        ChipConfig(**kw)


def test_sample_chip_validation():
    with pytest.raises(TypeError, match="config"):
        sample_chip(dict(), 0, 4, 4)
    with pytest.raises(TypeError, match="seed"):
        sample_chip(ChipConfig(), -1, 4, 4)
    with pytest.raises(TypeError, match="seed"):
        sample_chip(ChipConfig(), 1.5, 4, 4)
    with pytest.raises(ValueError, match="rows"):
        sample_chip(ChipConfig(), 0, 0, 4)
    with pytest.raises(ValueError, match="number of chips"):
        sample_chips(ChipConfig(), 0, 4, 4)


# --- sampled statistics ---------------------------------------------------------------

@pytest.mark.parametrize("dist", ["normal", "lognormal"])
def test_cell_current_statistics(seed, dist):
    sigma = 0.15
    chip = sample_chip(ChipConfig(cell_sigma=sigma, cell_dist=dist), seed, 256, 200, 16)
    for cells in (chip.cell_current, chip.comp_current):
        x = cells.astype(np.float64) if dist == "normal" else np.log(cells.astype(np.float64))
        center = 1.0 if dist == "normal" else 0.0
        assert _close_mean(x, center, sigma) and _close_std(x, sigma)
    assert chip.cell_current.dtype == np.float32 and chip.cell_current.shape == (256, 200)
    assert chip.comp_current.shape == (16, 200)


def test_offset_and_gain_statistics(seed):
    cfg = ChipConfig(offset_mean=0.5, offset_sigma=2.0, gain_sigma=0.03)
    chips = sample_chips(cfg, [(seed, i) for i in range(40)], 8, 256)
    assert chips.offset.shape == chips.gain.shape == (40, 256)
    assert _close_mean(chips.offset, 0.5, 2.0) and _close_std(chips.offset, 2.0)
    assert _close_mean(chips.gain, 1.0, 0.03) and _close_std(chips.gain, 0.03)


@pytest.mark.parametrize("technology", ["sram", "rram"])
def test_stuck_statistics(seed, technology):
    p, high = 0.05, 0.3
    chip = sample_chip(ChipConfig(technology=technology, stuck_prob=p, stuck_high=high,
                                  weight_bits=4), seed, 300, 300)
    n = chip.stuck_mask.size
    assert abs(chip.stuck_mask.mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    stuck = chip.stuck_mask.sum()
    assert abs(chip.stuck_value[chip.stuck_mask].mean() - high) < 5 * math.sqrt(high * (1 - high) / stuck)
    assert not np.any(chip.stuck_value & ~chip.stuck_mask)


@pytest.mark.parametrize("dist", ["normal", "lognormal"])
def test_rram_cell_factor_statistics(seed, dist):
    sigma = 0.25
    cfg = ChipConfig(technology="rram", cell_sigma=sigma, cell_dist=dist, weight_bits=6,
                     cell_bits=2, mapping="differential")
    chip = sample_chip(cfg, seed, 128, 64)
    assert chip.cell_factor.shape == (128, 64, 6)       # 5 magnitude bits -> 3 slices x 2 sides
    assert chip.cell_current is None and chip.offset is None
    f = chip.cell_factor.astype(np.float64)
    if dist == "normal":
        assert _close_mean(f, 1.0, sigma) and _close_std(f, sigma)
    else:
        assert _close_mean(np.log(f), 0.0, sigma) and _close_std(np.log(f), sigma)


def test_ideal_chip_arrays():
    chip = sample_chip(ChipConfig(), 3, 16, 8, 4)
    assert np.all(chip.cell_current == 1) and np.all(chip.comp_current == 1)
    assert np.all(chip.offset == 0) and np.all(chip.gain == 1)
    assert not chip.stuck_mask.any() and not chip.stuck_value.any()
    rram = sample_chip(ChipConfig(technology="rram"), 3, 16, 8)
    assert np.all(rram.cell_factor == 1) and rram.cell_factor.shape == (16, 8, 2)


# --- seeds ------------------------------------------------------------------------------

def _arrays(chip):
    return {k: getattr(chip, k) for k in chip._ARRAYS if getattr(chip, k) is not None}


def _same(a, b):
    ea, eb = _arrays(a), _arrays(b)
    return ea.keys() == eb.keys() and all(np.array_equal(ea[k], eb[k]) for k in ea)


@pytest.mark.parametrize("technology", ["sram", "rram"])
def test_seeds_reproduce_chips(seed, technology):
    cfg = ChipConfig.typical(technology, stuck_prob=0.1)
    a, b = sample_chip(cfg, seed, 20, 10), sample_chip(cfg, seed, 20, 10)
    assert _same(a, b)
    assert not _same(a, sample_chip(cfg, seed + 1, 20, 10))
    assert not _same(sample_chip(cfg, (seed, 0), 20, 10), sample_chip(cfg, (seed, 1), 20, 10))
    assert _same(sample_chip(cfg, (seed,), 20, 10), sample_chip(cfg, (seed,), 20, 10))


STACKED_CONFIGS = {
    "typical, stuck": ChipConfig.typical("sram", stuck_prob=0.05),
    "offsets": ChipConfig(offset_sigma=4.0, offset_mean=0.5),
    "gain, normal cells": ChipConfig(gain_sigma=0.1, cell_sigma=0.2, cell_dist="normal"),
    "ideal": ChipConfig(),
    "offset mean only": ChipConfig(offset_mean=0.75),
}


@pytest.mark.parametrize("name", STACKED_CONFIGS)
def test_stack_equals_individual_chips(seed, name):
    cfg = STACKED_CONFIGS[name]
    seeds = [seed, seed + 7, (seed, 2)]
    chips = sample_chips(cfg, seeds, 12, 6, 4)
    assert len(chips) == 3 and chips.batch == 3 and chips.seed == (seed, seed + 7, (seed, 2))
    assert chips.cell_current.shape == (3, 12, 6) and chips.offset.shape == (3, 6)
    for i, s in enumerate(seeds):
        assert chips[i].batch is None and chips[i].seed == s
        one = sample_chip(cfg, s, 12, 6, 4)
        assert _same(chips[i], one)
        assert all(getattr(chips, k).dtype == getattr(one, k).dtype
                   for k in ("cell_current", "comp_current", "offset", "gain", "stuck_mask"))
    assert _same(sample_chips(cfg, 3, 12, 6, 4)[2], sample_chip(cfg, 2, 12, 6, 4))
    sub = chips[1:]
    assert sub.batch == 2 and _same(sub[0], chips[1])
    with pytest.raises(TypeError):
        chips[0][0]


def test_spreads_scale_common_draws_and_streams_are_independent(seed):
    base = sample_chip(ChipConfig(cell_sigma=0.1, cell_dist="normal", offset_sigma=1.0), seed, 30, 20)
    double = sample_chip(ChipConfig(cell_sigma=0.2, cell_dist="normal", offset_sigma=1.0), seed, 30, 20)
    assert np.allclose(double.cell_current - 1, 2 * (base.cell_current - 1), atol=1e-6)
    assert np.array_equal(double.offset, base.offset)
    other = sample_chip(ChipConfig(cell_sigma=0.1, cell_dist="normal", offset_sigma=3.0,
                                   gain_sigma=0.1, stuck_prob=0.2), seed, 30, 20)
    assert np.array_equal(other.cell_current, base.cell_current)
    assert np.allclose(other.offset, 3 * base.offset, atol=1e-5)


# --- chip_to_rtl --------------------------------------------------------------------------

def _params(nonideal=ALL, rows=32, cols=24, comp_rows=8):
    return MacroParams(rows=rows, cols=cols, comp_rows=comp_rows, nonideal=nonideal)


def test_chip_to_rtl_values_are_in_range(seed):
    p = _params()
    W = p.readout_bits
    cfg = ChipConfig.typical("sram", offset_sigma=200.0, gain_sigma=5.0, bl_vmax=10.0,
                             stuck_prob=0.1, sat=20, qshift=3)
    rtl = chip_to_rtl(sample_chip(cfg, seed, p.rows, p.cols, p.comp_rows), p)
    assert set(rtl) == {"offset", "gain", "table", "stuck_mask", "stuck_value", "sat", "qshift"}
    lo, hi = -(1 << (W - 1)), (1 << (W - 1)) - 1
    assert rtl["offset"].shape == (p.cols,) and lo <= rtl["offset"].min() and rtl["offset"].max() <= hi
    assert rtl["offset"].min() == lo and rtl["offset"].max() == hi      # sigma 200 clips
    assert rtl["gain"].shape == (p.cols,) and rtl["gain"].min() >= 0 and rtl["gain"].max() <= 255
    assert rtl["gain"].min() == 0 or rtl["gain"].max() == 255         # sigma 5 clips
    assert rtl["table"].shape == (1 << W,) and lo <= rtl["table"].min() and rtl["table"].max() <= hi
    assert rtl["stuck_mask"].shape == (p.rows, p.cols) and set(np.unique(rtl["stuck_mask"])) == {0, 1}
    assert rtl["sat"] == 20 and rtl["qshift"] == 3


def test_chip_to_rtl_ideal_is_the_reset_state():
    p = _params()
    rtl = chip_to_rtl(sample_chip(ChipConfig(), 0, p.rows, p.cols, p.comp_rows), p)
    W = p.readout_bits
    identity = np.arange(1 << W)
    assert np.array_equal(rtl["table"], np.where(identity < 1 << (W - 1), identity, identity - (1 << W)))
    assert np.all(rtl["gain"] == 64) and np.all(rtl["offset"] == 0)
    assert rtl["sat"] == p.readout_max and rtl["qshift"] == 0 and not rtl["stuck_mask"].any()
    # Nothing built: everything None, which readout() treats as ideal.
    bare = chip_to_rtl(sample_chip(ChipConfig(), 0, p.rows, p.cols, p.comp_rows), _params(()))
    assert bare == dict(offset=None, gain=None, table=None, stuck_mask=None, stuck_value=None,
                        sat=None, qshift=0)


def test_chip_to_rtl_rounding():
    p = _params()
    chip = sample_chip(ChipConfig(), 0, p.rows, p.cols, p.comp_rows)
    offs = np.linspace(-3.5, 3.5, p.cols).astype(np.float32)
    gains = np.linspace(0.25, 4.5, p.cols).astype(np.float32)
    rtl = chip_to_rtl(dataclasses.replace(chip, offset=offs, gain=gains), p)
    assert np.array_equal(rtl["offset"], np.floor(offs.astype(np.float64) + 0.5))
    assert np.array_equal(rtl["gain"], np.minimum(np.floor(64 * gains.astype(np.float64) + 0.5), 255))
    # Per-cell currents enter the gain as their column mean.
    cells = np.ones((p.rows, p.cols), np.float32)
    cells[:, 0] = 1.25
    cells[:16, 1] = 0.5
    rtl = chip_to_rtl(dataclasses.replace(chip, cell_current=cells), p)
    assert rtl["gain"][:3].tolist() == [80, 48, 64]


def test_rtl_table_matches_the_curve():
    cfg = ChipConfig(bl_vmax=9.0, bl_shape="exp")
    W = 7
    table = rtl_table(cfg, W, 0)
    for k in range(-(1 << (W - 1)), 1 << (W - 1)):
        expect = math.floor(math.copysign(9.0 * (1 - math.exp(-abs(k) / 9.0)), k) + 0.5)
        assert table[k % (1 << W)] == expect
    bitline = rtl_table(dataclasses.replace(cfg, bl_mode="bitline"), W, 20)
    f = lambda n: discharge_curve(np.float32(n), 9.0, "exp")           # noqa: E731
    assert bitline[5] == math.floor(f(12.5) - f(7.5) + 0.5)
    assert bitline[0] == 0 and np.all(np.diff(bitline[: 1 << (W - 1)]) >= 0)


def test_chip_to_rtl_strict_and_checks(seed):
    p = _params(("readout",))
    chip = sample_chip(ChipConfig(offset_sigma=3.0), seed, p.rows, p.cols, p.comp_rows)
    with pytest.raises(ValueError, match="offset"):
        chip_to_rtl(chip, p)
    assert chip_to_rtl(chip, p, strict=False)["offset"] is None
    with pytest.raises(ValueError, match="rows"):
        chip_to_rtl(sample_chip(ChipConfig(), 0, 16, p.cols, p.comp_rows), p)
    with pytest.raises(ValueError, match="SRAM"):
        chip_to_rtl(sample_chip(ChipConfig(technology="rram"), 0, p.rows, p.cols), p)
    with pytest.raises(ValueError, match="sat"):
        chip_to_rtl(sample_chip(ChipConfig(sat=p.readout_max + 1), 0, p.rows, p.cols, p.comp_rows), p)
    with pytest.raises(TypeError):
        chip_to_rtl(chip, dict(rows=32))


def test_chip_to_rtl_of_a_stack_stacks_the_instances(seed):
    p = _params()
    cfg = ChipConfig.typical("sram", stuck_prob=0.05)
    chips = sample_chips(cfg, [seed % 1000, 3, 77], p.rows, p.cols, p.comp_rows)
    stack = chip_to_rtl(chips, p)
    for i in range(3):
        one = chip_to_rtl(chips[i], p)
        for name in ("offset", "gain", "stuck_mask", "stuck_value"):
            assert np.array_equal(stack[name][i], one[name])
        assert np.array_equal(stack["table"], one["table"])
        assert (stack["sat"], stack["qshift"]) == (one["sat"], one["qshift"])


# --- the RTL reproduces exact chips bit for bit ------------------------------------------

macro = pytest.importorskip("models.macro")


def _exact_chips(seed, p):
    """Chips whose every effect lies on the RTL's grid, one kind of effect at a time and mixed."""
    rng = np.random.default_rng(seed)
    base = sample_chip(ChipConfig(), seed, p.rows, p.cols, p.comp_rows)
    offsets = rng.integers(-6, 7, p.cols).astype(np.float32)
    gains = (rng.integers(20, 140, p.cols) / 64).astype(np.float32)
    stuck = sample_chip(ChipConfig(stuck_prob=0.15, stuck_high=0.5), seed, p.rows, p.cols, p.comp_rows)
    return {
        "offset": dataclasses.replace(base, offset=offsets),
        "offset+readout": dataclasses.replace(
            sample_chip(ChipConfig(sat=13, qshift=2), seed, p.rows, p.cols, p.comp_rows), offset=offsets),
        "gain": dataclasses.replace(base, gain=gains),
        "gain+offset+stuck": dataclasses.replace(stuck, gain=gains, offset=offsets),
        "table": dataclasses.replace(
            sample_chip(ChipConfig(bl_vmax=11.0, stuck_prob=0.1, sat=30), seed, p.rows, p.cols,
                        p.comp_rows), offset=offsets),
        "table-exp": sample_chip(ChipConfig(bl_vmax=25.0, bl_shape="exp", qshift=1), seed,
                                 p.rows, p.cols, p.comp_rows),
    }


def test_exact_chips_match_the_rtl_readout(seed):
    p = _params()
    rng = np.random.default_rng(seed + 1)
    planes = rng.integers(0, 2, (300, p.rows))
    planes[:8] = 0                                       # the calibration's read
    planes[8:16] = 1
    w = rng.integers(0, 2, (p.rows, p.cols))
    for name, chip in _exact_chips(seed, p).items():
        status = rtl_fidelity(chip)
        assert not {"approximate", "statistical"} & set(status.values()), (name, status)
        assert "exact" in status.values(), name
        rtl = chip_to_rtl(chip, p)
        for comp in (np.zeros(p.cols, int), 2 * rng.integers(0, p.comp_rows + 1, p.cols) - p.comp_rows):
            analog = sram_readout(planes, w, chip, comp)
            golden = macro.readout(p, planes, w, comp, **rtl)
            assert np.array_equal(analog, golden), name
        if name == "table":
            # Guard against a vacuous match: the curve really bends the readout here.
            assert not np.array_equal(analog, sram_readout(planes, w, dataclasses.replace(
                chip, config=dataclasses.replace(chip.config, bl_vmax=math.inf)), comp))


def test_exact_chips_match_the_rtl_over_a_whole_mac(seed):
    """Five planes shift-accumulated: the analog MAC equals the golden model's planes."""
    p = _params()
    rng = np.random.default_rng(seed + 2)
    x = rng.integers(0, 32, (100, p.rows))
    w = rng.integers(0, 2, (p.rows, p.cols))
    comp = 2 * rng.integers(0, p.comp_rows + 1, p.cols) - p.comp_rows
    chip = _exact_chips(seed, p)["gain+offset+stuck"]
    rtl = chip_to_rtl(chip, p)
    golden = sum(macro.readout(p, (x >> b) & 1, w, comp, **rtl) << b for b in range(5))
    assert np.array_equal(sram_mac(x, w, chip, 5, comp), golden)


def test_fidelity_reports_approximations(seed):
    p = _params()
    chip = sample_chip(ChipConfig.typical("sram"), seed, p.rows, p.cols, p.comp_rows)
    status = rtl_fidelity(chip)
    assert status["read_noise"] == "statistical" and status["comp_current"] == "statistical"
    assert status["cell_current"] == "approximate" and status["curve"] == "approximate"
    assert status["offset"] == "approximate" and status["stuck"] == "absent"
    assert set(rtl_fidelity(sample_chip(ChipConfig(), 0, 4, 4)).values()) == {"absent"}
    gain_and_table = dataclasses.replace(
        sample_chip(ChipConfig(bl_vmax=20.0), 0, p.rows, p.cols, p.comp_rows),
        gain=np.full(p.cols, 1.5, np.float32))
    assert rtl_fidelity(gain_and_table)["gain"] == "approximate"
    assert rtl_fidelity(sample_chip(ChipConfig(bl_vmax=20.0, bl_mode="bitline"), 0, 8, 8))["curve"] \
        == "approximate"


def test_approximate_mapping_stays_close(seed):
    """Typical spreads without noise: the RTL's per-column summary tracks the analog chip."""
    p = _params()
    cfg = ChipConfig.typical("sram", read_noise=0.0)
    chip = sample_chip(cfg, seed, p.rows, p.cols, p.comp_rows)
    rng = np.random.default_rng(seed)
    planes = rng.integers(0, 2, (400, p.rows))
    w = rng.integers(0, 2, (p.rows, p.cols))
    comp = np.zeros(p.cols, int)
    diff = sram_readout(planes, w, chip, comp) - macro.readout(p, planes, w, comp, **chip_to_rtl(chip, p))
    # Cell variation of 10 % over about 16 active cells: about 0.4 cell units of spread, +-0.5 rounding.
    assert np.abs(diff).mean() < 1.0 and np.abs(diff).max() <= 6


# --- the throughput target --------------------------------------------------------

@pytest.mark.slow
def test_benchmark_100_chips_2000_inputs_three_layers():
    """100 chip instances x 2000 inputs through 100->96->96->10 (5-bit input planes, then
    binary activations), typical SRAM spreads with read noise: target < 30 s on 2 cores."""
    n, m = 100, 2000
    cfg = ChipConfig.typical("sram")
    rng = np.random.default_rng(0)
    shapes = [(100, 96), (96, 96), (96, 10)]
    weights = [rng.integers(0, 2, s) for s in shapes]
    chips = [sample_chips(cfg, [(i, layer) for i in range(n)], r, c) for layer, (r, c) in enumerate(shapes)]
    x = rng.integers(0, 32, (m, 100))
    start = time.perf_counter()
    acc = sram_mac(x, weights[0], chips[0], 5, rng=rng)
    h = (acc >= 0).astype(np.uint8)
    acc = sram_mac(h, weights[1], chips[1], 1, rng=rng)
    h = (acc >= 0).astype(np.uint8)
    out = sram_mac(h, weights[2], chips[2], 1, rng=rng)
    elapsed = time.perf_counter() - start
    print(f"100 chips x 2000 inputs, 3 layers: {elapsed:.2f} s")
    assert out.shape == (n, m, 10)
    assert elapsed < 30
