"""Analog device models (models/devices.py): SRAM bit-plane readout and ReRAM crossbars.

Expected values come from the definitions in docs/DEVICE_MODELS.md (ideal dot products,
the discharge curve's closed form), never from the code under test.
"""

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.chip import ChipConfig, sample_chip, sample_chips
from models.devices import (
    discharge_curve, rram_levels, rram_mac, rram_program, sram_column, sram_mac,
    sram_readout, variation,
)
from models.dfp import slice_weights

R, C, K = 40, 12, 8
ROOT = Path(__file__).resolve().parent.parent


def _signed(w):
    return 2 * np.asarray(w, dtype=np.int64) - 1


# --- shared pieces ---------------------------------------------------------------------

@pytest.mark.parametrize("shape", ["tanh", "exp"])
@pytest.mark.parametrize("vmax", [3.0, 17.0, 64.0])
def test_discharge_curve_is_odd_monotonic_and_saturating(shape, vmax):
    n = np.arange(-300, 301, dtype=np.float32)
    f = discharge_curve(n, vmax, shape).astype(np.float64)
    assert np.array_equal(f, -f[::-1])                      # odd
    assert np.all(np.diff(f) >= 0)                          # monotonic
    core = np.abs(n[1:]) <= 2 * vmax                        # (float32 tanh rounds to vmax beyond)
    assert np.all(np.diff(f)[core] > 0)                     # strictly where it can be
    assert np.all(np.abs(f) < vmax + 1e-4)                  # saturates below vmax
    pos = n > 0
    assert np.all(f[pos] < n[pos])                          # compresses
    expect = vmax * np.tanh(n / vmax) if shape == "tanh" else \
        np.sign(n) * vmax * (1 - np.exp(-np.abs(n) / vmax))
    assert np.allclose(f, expect, rtol=1e-5, atol=1e-4)
    slope = discharge_curve(np.float32(1e-3), vmax, shape) / 1e-3
    assert abs(slope - 1) < 1e-3                            # one cell = one unit near 0
    # Compression grows with the count: the increments shrink.
    assert np.all(np.diff(f[pos]) <= 1 + 1e-6) and np.diff(f[pos])[-1] < np.diff(f[pos])[0]


def test_discharge_curve_linear_when_vmax_is_infinite():
    n = np.arange(-50, 51, dtype=np.float32)
    assert np.array_equal(discharge_curve(n, math.inf, "tanh"), n)
    with pytest.raises(ValueError, match="shape"):
        discharge_curve(n, 10.0, "cubic")
    with pytest.raises(ValueError, match="vmax"):
        discharge_curve(n, 0.0)


def test_variation_shapes(rng):
    eps = rng.standard_normal(200_000).astype(np.float32)
    normal, logn = variation(eps, 0.2, "normal"), variation(eps, 0.2, "lognormal")
    assert np.allclose(normal, np.maximum(1 + 0.2 * eps, 0), rtol=1e-6)
    assert np.allclose(np.log(logn), 0.2 * eps, atol=1e-5)
    assert np.all(variation(eps, 0, "normal") == 1)
    assert np.all(variation(-np.full(4, 10.0), 0.5, "normal") == 0)   # clipped at 0
    with pytest.raises(ValueError, match="dist"):
        variation(eps, 0.1, "uniform")


# --- SRAM ----------------------------------------------------------------------------

def _random_case(rng, m=30, rows=R, cols=C, bits=5):
    x = rng.integers(0, 1 << bits, (m, rows))
    w = rng.integers(0, 2, (rows, cols))
    comp = 2 * rng.integers(0, K + 1, cols) - K
    return x, w, comp


def test_sram_ideal_readout_is_the_exact_column_sum(rng):
    chip = sample_chip(ChipConfig(), 1, R, C, K)
    x, w, comp = _random_case(rng)
    plane = x & 1
    v = sram_readout(plane, w, chip, comp)
    assert v.dtype == np.int32
    assert np.array_equal(v, plane @ _signed(w) + comp)
    # Balanced compensation by default; one input vector drops the batch axis.
    assert np.array_equal(sram_readout(plane[3], w, chip), plane[3] @ _signed(w))
    assert np.array_equal(sram_column(plane, w, chip, comp), plane @ _signed(w) + comp)


def test_sram_ideal_mac_is_the_exact_dot_product(rng):
    chips = sample_chips(ChipConfig(), 3, R, C, K)
    x, w, _ = _random_case(rng)
    expect = x @ _signed(w)
    assert np.array_equal(sram_mac(x, w, chips[0], 5), expect)
    out = sram_mac(x, w, chips, 5)
    assert out.shape == (3, len(x), C)
    assert all(np.array_equal(o, expect) for o in out)
    # Extremes of the 5-bit range, and binary inputs with one plane.
    xe = np.full((2, R), 31)
    xe[1] = 0
    assert np.array_equal(sram_mac(xe, w, chips[1], 5), xe @ _signed(w))
    xb = x & 1
    assert np.array_equal(sram_mac(xb, w, chips[2], 1), xb @ _signed(w))


def test_sram_mac_is_the_shift_accumulation_of_plane_readouts(rng, seed):
    cfg = ChipConfig(offset_sigma=3.0, cell_sigma=0.1, gain_sigma=0.05, bl_vmax=20.0, qshift=1)
    chip = sample_chip(cfg, seed, R, C, K)
    x, w, comp = _random_case(rng)
    tile = sum(sram_readout((x >> b) & 1, w, chip, comp).astype(np.int64) << b for b in range(5))
    assert np.array_equal(sram_mac(x, w, chip, 5, comp), tile)


def _typical_noiseless():
    return ChipConfig.typical("sram", read_noise=0.0, bl_vmax=30.0, stuck_prob=0.02)


def _assert_same_readout(batched_analog, loop_analog, batched, loop):
    # Float sums may associate differently in one big product and in N small ones; the
    # integer readouts can then differ only where the analog value sits on a rounding edge.
    assert np.allclose(batched_analog, loop_analog, rtol=1e-5, atol=1e-4)
    edge = np.abs((loop_analog + 0.5) - np.round(loop_analog + 0.5)) < 1e-3
    assert np.array_equal(batched[~edge], loop[~edge])


@pytest.mark.parametrize("mode", ["column", "bitline"])
def test_sram_stack_equals_loop_over_chips(rng, mode):
    cfg = dataclasses.replace(_typical_noiseless(), bl_mode=mode)
    n = 5
    chips = sample_chips(cfg, n, R, C, K)
    x, w, comp = _random_case(rng)
    plane = x & 1
    analog = sram_column(plane, w, chips, comp)
    v = sram_readout(plane, w, chips, comp)
    mac = sram_mac(x, w, chips, 5, comp)
    assert analog.shape == v.shape == mac.shape == (n, len(x), C)
    for i in range(n):
        a_i = sram_column(plane, w, chips[i], comp)
        _assert_same_readout(analog[i], a_i, v[i], sram_readout(plane, w, chips[i], comp))
        # A rounding-edge flip in one of the 5 planes would change the tile; they are rare.
        assert np.mean(mac[i] != sram_mac(x, w, chips[i], 5, comp)) < 1e-3


def test_sram_per_chip_inputs_weights_and_comp_equal_loop(rng):
    n = 4
    chips = sample_chips(_typical_noiseless(), [(s, 3) for s in range(n)], R, C, K)
    x = rng.integers(0, 2, (n, 25, R))
    w = rng.integers(0, 2, (n, R, C))
    comp = 2 * rng.integers(0, K + 1, (n, C)) - K
    analog = sram_column(x, w, chips, comp)
    v = sram_readout(x, w, chips, comp)
    for i in range(n):
        _assert_same_readout(analog[i], sram_column(x[i], w[i], chips[i], comp[i]),
                             v[i], sram_readout(x[i], w[i], chips[i], comp[i]))


def test_sram_chunking_does_not_change_results(rng):
    chips = sample_chips(_typical_noiseless(), 3, R, C, K)
    x, w, comp = _random_case(rng, m=50)
    big = sram_mac(x, w, chips, 5, comp)
    assert np.array_equal(big, sram_mac(x, w, chips, 5, comp, max_elements=1))
    assert np.array_equal(big, sram_mac(x, w, chips, 5, comp, max_elements=3 * 7 * C))


def test_sram_offset_and_gain_enter_as_documented(rng, seed):
    chip = sample_chip(ChipConfig(offset_sigma=2.5, gain_sigma=0.1), seed, R, C, K)
    x, w, comp = _random_case(rng)
    plane = x & 1
    expect = (plane @ _signed(w) + comp + chip.offset.astype(np.float64)) * chip.gain
    assert np.allclose(sram_column(plane, w, chip, comp), expect, rtol=1e-5, atol=1e-4)
    v = sram_readout(plane, w, chip, comp)
    edge = np.abs(expect + 0.5 - np.round(expect + 0.5)) < 1e-3
    assert np.array_equal(v[~edge], np.floor(expect + 0.5)[~edge])


def test_sram_cell_current_weights_each_cell(rng, seed):
    chip = sample_chip(ChipConfig(cell_sigma=0.2, cell_dist="normal"), seed, R, C, K)
    x, w, comp = _random_case(rng)
    plane = x & 1
    cells = chip.cell_current.astype(np.float64)
    comp_cells = chip.comp_current.astype(np.float64)
    n_on = (comp + K) // 2
    therm = np.arange(K)[:, None] < n_on[None, :]
    expect = plane @ (cells * _signed(w)) + np.sum(comp_cells * np.where(therm, 1, -1), axis=0)
    assert np.allclose(sram_column(plane, w, chip, comp), expect, rtol=1e-5, atol=1e-4)


def test_sram_stuck_cells_override_weights(rng, seed):
    chip = sample_chip(ChipConfig(stuck_prob=0.3, stuck_high=0.5), seed, R, C, K)
    assert chip.stuck_mask.any() and chip.stuck_value.any()
    x, w, comp = _random_case(rng)
    w_eff = np.where(chip.stuck_mask, chip.stuck_value, w)
    assert np.array_equal(sram_mac(x, w, chip, 5, comp), x @ _signed(w_eff) + 31 * comp)


@pytest.mark.parametrize("shape", ["tanh", "exp"])
def test_sram_nonlinearity_compresses_large_column_values(shape):
    vmax = 12.0
    chip = sample_chip(ChipConfig(bl_vmax=vmax, bl_shape=shape), 0, R, 1, K)
    w = np.ones((R, 1), dtype=int)
    # Plane with the first n rows on: s = n exactly, for every n.
    planes = (np.arange(R)[None, :] < np.arange(R + 1)[:, None]).astype(int)
    v = sram_readout(planes, w, chip)[:, 0]
    n = np.arange(R + 1)
    expect = vmax * np.tanh(n / vmax) if shape == "tanh" else vmax * (1 - np.exp(-n / vmax))
    assert np.array_equal(v, np.floor(expect + 0.5))
    assert np.all(np.diff(v) >= 0) and v[-1] < R and v[-1] <= vmax
    assert np.array_equal(sram_readout(planes, 1 - w, chip)[:, 0], -v)   # odd


def test_sram_bitline_mode(rng):
    vmax = 15.0
    x, w, comp = _random_case(rng)
    plane = x & 1
    linear = sample_chip(ChipConfig(bl_mode="bitline"), 0, R, C, K)
    assert np.array_equal(sram_readout(plane, w, linear, comp), plane @ _signed(w) + comp)
    chip = sample_chip(ChipConfig(bl_mode="bitline", bl_vmax=vmax), 0, R, C, K)
    n_pos = plane @ w + (comp + K) // 2
    n_neg = plane @ (1 - w) + (K - (comp + K) // 2)
    f = lambda n: vmax * np.tanh(n / vmax)                   # noqa: E731
    assert np.allclose(sram_column(plane, w, chip, comp), f(n_pos) - f(n_neg), atol=1e-4)
    # The same signed value reads smaller when more cells discharge on both lines.
    one = np.zeros((2, R), dtype=int)
    one[0, :3] = 1
    one[1, :9] = 1
    wcol = np.zeros((R, 1), dtype=int)
    wcol[:6] = 1                         # rows 0..5 +1, the rest -1: plane 1 has 6 - 3 = 3
    column_chip = sample_chip(ChipConfig(bl_mode="bitline", bl_vmax=vmax), 0, R, 1, K)
    few_active, many_active = sram_column(one, wcol, column_chip)[:, 0]
    assert few_active == pytest.approx(f(3 + K / 2) - f(K / 2), abs=1e-4)
    assert many_active == pytest.approx(f(6 + K / 2) - f(3 + K / 2), abs=1e-4)
    assert 0 < many_active < few_active


def test_sram_saturation_and_quantisation(rng):
    chip = sample_chip(ChipConfig(sat=10, qshift=2), 0, R, C, K)
    x, w, comp = _random_case(rng)
    plane = x & 1
    s = plane @ _signed(w) + comp
    assert np.array_equal(sram_readout(plane, w, chip, comp), np.floor(np.clip(s, -10, 10) / 4) * 4)
    # Call arguments override the config; the shift saturates at W - 1.
    W = int(np.ceil(np.log2(R + K + 1))) + 1
    v = sram_readout(plane, w, chip, comp, sat=(1 << (W - 1)) - 1, qshift=15)
    assert set(np.unique(v)) <= {0, -(1 << (W - 1))}
    with pytest.raises(ValueError, match="sat"):
        sram_readout(plane, w, chip, comp, sat=1 << W)


def test_sram_read_noise_statistics(rng):
    sigma = 0.7
    chips = sample_chips(ChipConfig(read_noise=sigma), 4, R, C, K)
    plane = rng.integers(0, 2, (500, R))
    w = rng.integers(0, 2, (R, C))
    a = sram_column(plane, w, chips, rng=rng)
    err = (a - plane @ _signed(w)).ravel()
    n = err.size
    assert abs(err.mean()) < 5 * sigma / math.sqrt(n)
    assert abs(err.std() / sigma - 1) < 5 / math.sqrt(2 * n)
    # Fresh noise at every read; the rng is required.
    assert not np.array_equal(a, sram_column(plane, w, chips, rng=rng))
    with pytest.raises(ValueError, match="rng"):
        sram_column(plane, w, chips)


def test_sram_argument_checks(rng):
    chip = sample_chip(ChipConfig(), 0, R, C, K)
    chips = sample_chips(ChipConfig(), 2, R, C, K)
    x, w, comp = _random_case(rng)
    with pytest.raises(ValueError, match="0 and 1"):
        sram_readout(x, w, chip)
    with pytest.raises(ValueError, match="shape"):
        sram_readout(x & 1, w[:-1], chip)
    with pytest.raises(ValueError, match="chip axis"):
        sram_readout(np.stack([x & 1] * 3), w, chips)
    with pytest.raises(ValueError, match="2n-K"):
        sram_readout(x & 1, w, chip, comp + 1)
    with pytest.raises(ValueError, match="x must lie"):
        sram_mac(x, w, chip, 4)
    with pytest.raises(TypeError):
        sram_mac(x.astype(float), w, chip, 5)
    with pytest.raises(ValueError, match="technology"):
        sram_readout(x & 1, w, sample_chip(ChipConfig(technology="rram"), 0, R, C))


# --- ReRAM ---------------------------------------------------------------------------

def _rram(seed=0, rows=R, cols=C, **kw):
    return sample_chip(ChipConfig(technology="rram", **kw), seed, rows, cols)


def _weights(rng, bits, shape=(R, C)):
    if bits == 1:
        return 2 * rng.integers(0, 2, shape) - 1
    top = (1 << (bits - 1)) - 1
    return rng.integers(-top, top + 1, shape)


def test_rram_levels():
    assert np.allclose(rram_levels(10.0, 1), [0.1, 1.0])
    assert np.allclose(rram_levels(4.0, 2), [0.25, 0.5, 0.75, 1.0])
    assert np.allclose(rram_levels(math.inf, 2), [0, 1 / 3, 2 / 3, 1])
    with pytest.raises(ValueError):
        rram_levels(1.0, 1)


@pytest.mark.parametrize("mapping", ["differential", "offset"])
@pytest.mark.parametrize("cell_bits", [1, 2])
@pytest.mark.parametrize("bits", [1, 4, 8])
@pytest.mark.parametrize("ratio", [math.inf, 5.0])
def test_rram_ideal_gives_the_dot_product(rng, mapping, cell_bits, bits, ratio):
    chip = _rram(weight_bits=bits, cell_bits=cell_bits, mapping=mapping, on_off_ratio=ratio)
    q = _weights(rng, bits)
    x = rng.integers(0, 4, (20, R)).astype(float)
    expect = x @ q
    got = rram_mac(x, q, chip)
    # Division by the level step is not exact in float32; the rounded result is.
    assert np.abs(got - expect).max() < 1e-3 * max(1, np.abs(expect).max())
    assert np.array_equal(np.rint(got), expect)


def test_rram_program_applies_factors_and_stuck_cells(rng, seed):
    chip = _rram(seed=seed, cell_sigma=0.3, stuck_prob=0.2, on_off_ratio=8.0, cell_bits=2, weight_bits=5)
    levels, _, _ = slice_weights(_weights(rng, 5), 5, 2, "differential")
    g = rram_program(levels, chip)
    nominal = np.array([1 / 8, 1 / 8 + 7 / 24, 1 / 8 + 14 / 24, 1.0])[levels]
    nominal = np.where(chip.stuck_mask, np.where(chip.stuck_value, 1.0, 1 / 8), nominal)
    assert np.allclose(g, nominal * chip.cell_factor, rtol=1e-6)
    assert chip.stuck_mask.any() and (chip.stuck_mask & ~chip.stuck_value).any()


def _rram_rms_error(rng_seed, rows=64, cols=128, **kw):
    """RMS error of the weights read back through the crossbar (one-hot inputs).

    One-hot inputs make every output one weight, so the estimate averages over all
    rows x cols independent weights (a dense input would sum each column's errors and
    leave only ``cols`` independent samples).
    """
    rng = np.random.default_rng(rng_seed)
    bits = kw.get("weight_bits", 1)
    chip = _rram(seed=rng_seed, rows=rows, cols=cols, **kw)
    q = _weights(rng, bits, (rows, cols))
    return float(np.sqrt(np.mean((rram_mac(np.eye(rows), q, chip) - q) ** 2)))


@pytest.mark.parametrize("mapping", ["differential", "offset"])
def test_rram_lower_on_off_ratio_gives_larger_error(seed, mapping):
    # Same seed: the same standard normal draws scaled the same way (common random numbers).
    errors = [_rram_rms_error(seed, cell_sigma=0.1, on_off_ratio=r, mapping=mapping, weight_bits=4)
              for r in (2.0, 4.0, 10.0, 100.0)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors


def test_rram_error_grows_with_spread(seed):
    errors = [_rram_rms_error(seed, cell_sigma=s, on_off_ratio=10.0) for s in (0.0, 0.05, 0.1, 0.3)]
    assert errors[0] < 1e-4 and all(a < b for a, b in zip(errors, errors[1:])), errors


@pytest.mark.parametrize("mapping", ["differential", "offset"])
@pytest.mark.parametrize("dist", ["lognormal", "normal"])
def test_rram_multilevel_cells_have_larger_error(seed, mapping, dist):
    kw = dict(cell_sigma=0.1, cell_dist=dist, on_off_ratio=10.0, mapping=mapping, weight_bits=5)
    one = _rram_rms_error(seed, cell_bits=1, **kw)
    two = _rram_rms_error(seed, cell_bits=2, **kw)
    assert two > 1.1 * one, (one, two)
    # The dot product inherits it. Zero-mean inputs (a model-only convenience) average
    # over every cell instead of over each column's summed error.
    rng = np.random.default_rng(seed)
    q = _weights(rng, 5, (64, 128))
    x = rng.uniform(-1, 1, (256, 64))
    dense = [float(np.sqrt(np.mean((rram_mac(x, q, _rram(seed, 64, 128, cell_bits=cb, **kw)) - x @ q) ** 2)))
             for cb in (1, 2)]
    assert dense[1] > 1.1 * dense[0], dense


def test_rram_stack_equals_loop_and_per_chip_inputs(rng):
    n = 4
    chips = sample_chips(ChipConfig.typical("rram", weight_bits=4, cell_bits=2), n, R, C)
    q = _weights(rng, 4)
    x = rng.random((15, R))
    out = rram_mac(x, q, chips)
    assert out.shape == (n, 15, C)
    xs = rng.random((n, 15, R))
    qs = np.stack([_weights(rng, 4) for _ in range(n)])
    per = rram_mac(xs, qs, chips)
    for i in range(n):
        assert np.allclose(out[i], rram_mac(x, q, chips[i]), rtol=1e-5, atol=1e-3)
        assert np.allclose(per[i], rram_mac(xs[i], qs[i], chips[i]), rtol=1e-5, atol=1e-3)
    assert np.allclose(out, rram_mac(x, q, chips, max_elements=1), rtol=1e-5, atol=1e-3)


# The images a call holds at once (max_elements) must not change a result under any BLAS
# kernel: OpenBLAS blocks a float32 product's rows by the kernel's tile, and rounds the
# images of a smaller call otherwise under some kernels (Haswell's). The suite itself runs
# the recorded kernel (models/blas_env.py), so each kernel gets a process of its own.
_KERNEL_FLAGS = {"Prescott": {"pni"}, "Sandybridge": {"avx"}, "Haswell": {"avx2", "fma"},
                 "SkylakeX": {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}}
_CHUNKS_SCRIPT = """
import sys
import numpy as np
from models.chip import ChipConfig, sample_chips
from models.devices import rram_mac, sram_mac
from models.sampler import ReadNoise
rng = np.random.default_rng(int(sys.argv[1]))
x = rng.integers(0, 32, (50, 32))
q = 2 * rng.integers(0, 2, (32, 8)) - 1
for cfg in (ChipConfig(technology="rram", read_noise=0.2, cell_sigma=0.1),
            ChipConfig.typical("rram", weight_bits=4, cell_bits=2)):
    chips = sample_chips(cfg, [2, 3], 32, 8)
    w = q if cfg.weight_bits == 1 else rng.integers(-7, 8, (32, 8))
    for xs in (x, rng.random((50, 32))):
        key = lambda: ReadNoise([2, 3]).at((0, 0, 0)) if cfg.read_noise else None
        whole = rram_mac(xs, w, chips, noise=key())
        for elements in (64, 8 * 24 * 7):
            print("rram", int(np.sum(whole != rram_mac(xs, w, chips, noise=key(), max_elements=elements))))
chips = sample_chips(ChipConfig.typical("sram", read_noise=0.5), [4, 9, 1], 32, 24, 8)
w = rng.integers(0, 2, (32, 24))
whole = sram_mac(x, w, chips, 5, noise=ReadNoise(chips.seed).at((0, 0, 0)))
part = sram_mac(x, w, chips, 5, noise=ReadNoise(chips.seed).at((0, 0, 0)), max_elements=3 * 24 * 7)
print("sram", int(np.sum(whole != part)))
"""


@pytest.mark.parametrize("kernel", sorted(_KERNEL_FLAGS))
def test_device_results_do_not_depend_on_chunks_under_any_blas_kernel(seed, kernel):
    from models.blas_env import cpu_flags
    if not _KERNEL_FLAGS[kernel] <= cpu_flags():
        pytest.skip(f"this CPU does not run OpenBLAS's {kernel} kernel")
    env = dict(os.environ, OPENBLAS_CORETYPE=kernel, OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", _CHUNKS_SCRIPT, str(seed)], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    counts = [line.split() for line in done.stdout.splitlines()]
    assert len(counts) == 9 and all(n == "0" for _, n in counts), done.stdout


def test_rram_read_noise(rng):
    sigma = 0.05
    chip = _rram(read_noise=sigma, weight_bits=1, mapping="offset", on_off_ratio=math.inf)
    q = _weights(rng, 1)
    x = rng.random((2000, R))
    err = (rram_mac(x, q, chip, rng=rng) - x @ q).ravel()
    # Offset mapping: one column current per weight, decoded as 2 I - sum(x): noise x 2.
    assert abs(err.std() / (2 * sigma) - 1) < 5 / math.sqrt(2 * err.size)
    with pytest.raises(ValueError, match="rng"):
        rram_mac(x, q, chip)


def test_rram_argument_checks(rng):
    chip = _rram(weight_bits=4)
    with pytest.raises(ValueError, match="codes"):
        rram_mac(np.ones((2, R)), np.full((R, C), 8), chip)
    with pytest.raises(ValueError, match="shape"):
        rram_mac(np.ones((2, R)), np.zeros((R, C + 1), int), chip)
    with pytest.raises(ValueError, match="technology"):
        rram_mac(np.ones((2, R)), np.zeros((R, C), int), sample_chip(ChipConfig(), 0, R, C))
    with pytest.raises(ValueError, match="levels"):
        rram_program(np.full((R, C, 6), 2), chip)
