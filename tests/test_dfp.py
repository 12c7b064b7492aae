"""Fixed point, dynamic fixed point and ReRAM bit-slicing (models/dfp.py)."""

import itertools

import numpy as np
import pytest

from models.chip import ChipConfig, sample_chip
from models.devices import rram_mac
from models.dfp import (
    MAX_FRAC, cells_per_weight, dfp_frac, dfp_quantise, fixed_frac, from_fixed, qmax,
    quantise, slice_weights, to_fixed, unslice, unused_msbs,
)


def test_to_fixed_rounds_half_up_and_saturates():
    bits, frac = 4, 1                                  # codes -7..7, step 0.5
    w = np.arange(-5.0, 5.0001, 0.25)
    q = to_fixed(w, bits, frac)
    expect = [max(-7, min(7, int(np.floor(v * 2 + 0.5)))) for v in w]
    assert q.tolist() == expect
    assert to_fixed([0.25, -0.25, 0.75, -0.75], bits, frac).tolist() == [1, 0, 2, -1]
    assert np.array_equal(from_fixed(q, frac), q / 2)
    assert np.array_equal(quantise(w, bits, frac), q / 2)
    assert qmax(8) == 127 and qmax(2) == 1
    with pytest.raises(ValueError, match="bits"):
        to_fixed(w, 1, 0)
    with pytest.raises(TypeError, match="frac"):
        to_fixed(w, 8, 1.5)


def test_quantisation_error_is_at_most_half_a_step(rng):
    for bits, frac in itertools.product((3, 6, 8), (-2, 0, 3, 9)):
        top = qmax(bits) * 2.0 ** -frac
        w = rng.uniform(-top, top, 1000)
        assert np.max(np.abs(quantise(w, bits, frac) - w)) <= 2.0 ** -frac / 2 + 1e-12


@pytest.mark.parametrize("bits", [2, 3, 5, 8, 12, 16])
def test_dfp_frac_is_the_largest_non_saturating_radix_point(rng, bits):
    top = qmax(bits)
    for scale in 2.0 ** rng.uniform(-20, 20, 40):
        w = rng.standard_normal(50) * scale
        frac = dfp_frac(w, bits)
        q = to_fixed(w, bits, frac)
        scaled = np.floor(w * 2.0 ** frac + 0.5)
        assert np.array_equal(q, scaled)                 # nothing saturates at frac
        assert np.max(np.abs(np.floor(w * 2.0 ** (frac + 1) + 0.5))) > top   # frac + 1 would
        assert unused_msbs(q, bits) == 0                 # so the top magnitude bit is used
        assert np.max(np.abs(q)) >= 1 << (bits - 2)
        codes, f2 = dfp_quantise(w, bits)
        assert f2 == frac and np.array_equal(codes, q)


def test_dfp_frac_edge_cases():
    assert dfp_frac(np.zeros(5), 8) == MAX_FRAC
    assert dfp_frac([0.5], 8) == 7                     # 0.5 * 2^7 = 64 <= 127; 2^8 gives 128
    assert dfp_frac([127.0], 8) == 0
    assert dfp_frac([127.5], 8) == -1                  # rounds to 128 at frac 0
    assert dfp_frac([-1.0], 8) == 6                    # symmetric range: -128 is not a code
    with pytest.raises(ValueError, match="finite"):
        dfp_frac([np.inf, 1.0], 8)


def test_fixed_point_leaves_small_layers_unused_msbs(rng):
    bits = 8
    wide = rng.uniform(-1, 1, (64, 32))
    small = rng.uniform(-0.05, 0.05, (64, 32))
    frac = fixed_frac([wide, small], bits)
    assert frac == dfp_frac(np.concatenate([wide.ravel(), small.ravel()]), bits) == dfp_frac(wide, bits)
    assert unused_msbs(to_fixed(small, bits, frac), bits) >= 4
    assert unused_msbs(to_fixed(small, bits, dfp_frac(small, bits)), bits) == 0
    # Without devices, DFP's finer grid already wins on the small layer.
    err_fixed = np.abs(quantise(small, bits, frac) - small).mean()
    err_dfp = np.abs(quantise(small, bits, dfp_frac(small, bits)) - small).mean()
    assert err_dfp < err_fixed / 8
    with pytest.raises(ValueError, match="layers"):
        fixed_frac([], bits)


@pytest.mark.parametrize("mapping", ["differential", "offset"])
@pytest.mark.parametrize("cell_bits", [1, 2])
def test_dfp_beats_fixed_point_under_rram_variation(seed, mapping, cell_bits):
    """DATE 2019's claim: with one radix point for all layers, a small-range layer pays for
    high-order slices it does not use; its own radix point removes that error."""
    rng = np.random.default_rng(seed)
    bits, rows, cols = 8, 64, 48
    wide = rng.uniform(-1, 1, (rows, cols))
    small = rng.uniform(-0.06, 0.06, (rows, cols))
    x = rng.random((100, rows))
    cfg = ChipConfig.typical("rram", weight_bits=bits, cell_bits=cell_bits, mapping=mapping,
                             stuck_prob=0.0)
    chip = sample_chip(cfg, seed, rows, cols)

    def error(frac):
        y = rram_mac(x, to_fixed(small, bits, frac), chip) * 2.0 ** -frac
        return float(np.sqrt(np.mean((y - x @ small) ** 2)))

    fixed, dynamic = fixed_frac([wide, small], bits), dfp_frac(small, bits)
    assert dynamic > fixed
    assert error(dynamic) < 0.5 * error(fixed)


@pytest.mark.parametrize("mapping", ["differential", "offset"])
@pytest.mark.parametrize("cell_bits", [1, 2])
@pytest.mark.parametrize("bits", range(1, 9))
def test_slicing_round_trips_every_code(bits, cell_bits, mapping):
    q = np.array([-1, 1]) if bits == 1 else np.arange(-qmax(bits), qmax(bits) + 1)
    levels, coef, bias = slice_weights(q, bits, cell_bits, mapping)
    assert levels.shape == q.shape + (cells_per_weight(bits, cell_bits, mapping),)
    assert levels.dtype == np.uint8 and levels.max() < 1 << cell_bits
    assert np.array_equal(unslice(levels, coef, bias), q)
    # Most significant slice first; differential: a positive and a negative half.
    half = coef[: len(coef) // 2] if mapping == "differential" else coef
    assert np.all(np.diff(np.abs(half)) <= 0)
    if mapping == "differential":
        assert np.array_equal(coef[len(coef) // 2:], -half) and bias == 0
        pos, neg = np.split(levels, 2, axis=-1)
        assert not np.any(pos.any(axis=-1) & neg.any(axis=-1))   # one side is all HRS
        if bits > 1:
            assert half[0] == 1 << (cell_bits * (len(half) - 1))
    else:
        assert bias == (1 if bits == 1 else qmax(bits))


def test_binary_weight_mapping():
    levels, coef, bias = slice_weights(np.array([1, -1]), 1, 1, "differential")
    assert levels.tolist() == [[1, 0], [0, 1]] and coef.tolist() == [1, -1] and bias == 0
    levels, coef, bias = slice_weights(np.array([1, -1]), 1, 2, "offset")
    assert levels.tolist() == [[1], [0]] and coef.tolist() == [2] and bias == 1


def test_slicing_checks():
    with pytest.raises(ValueError, match="codes"):
        slice_weights(np.array([8]), 4, 1, "offset")
    with pytest.raises(ValueError, match="binary"):
        slice_weights(np.array([0]), 1, 1, "offset")
    with pytest.raises(TypeError):
        slice_weights(np.array([0.5]), 4, 1, "offset")
    with pytest.raises(ValueError, match="mapping"):
        slice_weights(np.array([1]), 4, 1, "twos")
    with pytest.raises(ValueError, match="cell_bits"):
        cells_per_weight(4, 3, "offset")
    assert cells_per_weight(8, 2, "differential") == 8      # 7 magnitude bits -> 4 slices x 2
    assert cells_per_weight(8, 2, "offset") == 4
    assert cells_per_weight(1, 1, "differential") == 2
