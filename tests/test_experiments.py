"""Chip-in-the-loop glue (models/chip_readout.py) and the experiments (models/experiments.py).

The readout adapter is checked against the references it must agree with: the ideal
folded inference (``models.export.infer_folded``) on ideal chips, the analog model
against the bit-true macro where both are exact (float offsets, no noise), the
calibration's residual bound of docs/ARCHITECTURE.md section 4, and instance identity
independent of how chips are stacked or chunked.
"""

import os

import numpy as np
import pytest

from models import experiments as E
from models.bnn import BNN, TrainConfig, accuracy, train
from models.chip import ChipConfig
from models.chip_readout import ChipReadout, macro_params_for, predict_chips, trim_reads, trim_record
from models.datasets import load_dataset
from models.dfp import dfp_frac, fixed_frac, to_fixed
from models.export import export_model, infer_folded


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def small_net(digits):
    """A digits BNN trained for a few epochs on an 32x16 macro (2 row tiles, 2 column
    tiles in the hidden layers: every tiling path is exercised)."""
    model = BNN((64, 24, 24, 10), seed=1)
    train(model, digits.x_train, digits.y_train, config=TrainConfig(epochs=4, seed=1))
    return export_model(model, 32, 16)


def test_ideal_chip_equals_folded_inference(small_net, digits):
    x = digits.x_val[:150]
    ref = infer_folded(small_net, x)
    for backend in ("macro", "analog"):
        pred = predict_chips(small_net, ChipConfig(), [0, 3], x, backend=backend)
        assert pred.shape == (2, len(x))
        assert np.array_equal(pred, np.stack([ref, ref])), backend


def test_macro_and_analog_agree_on_offsets(small_net, digits, rng):
    # The ADC rounds s + o half up, s integer: the same as OFFSET = round_half_up(o).
    x = digits.x_val[:100]
    cfg = ChipConfig(offset_sigma=float(rng.uniform(1, 5)))
    seeds = [int(s) for s in rng.integers(0, 1000, 3)]
    for cal in (False, True):
        a = predict_chips(small_net, cfg, seeds, x, backend="macro", calibrate=cal)
        b = predict_chips(small_net, cfg, seeds, x, backend="analog", calibrate=cal)
        assert np.array_equal(a, b)


def test_instance_independent_of_stack_and_chunks(small_net, digits):
    x = digits.x_val[:60]
    cfg = ChipConfig(offset_sigma=3.0, cell_sigma=0.1)
    full = predict_chips(small_net, cfg, [4, 5, 6], x, calibrate=True)
    alone = predict_chips(small_net, cfg, [5], x, calibrate=True)
    chunked = predict_chips(small_net, cfg, [4, 5, 6], x, calibrate=True, max_rows=len(x))
    assert np.array_equal(full[1], alone[0])
    assert np.array_equal(full, chunked)


@pytest.mark.parametrize("backend", ["macro", "analog"])
def test_calibration_residual_bound(small_net, backend, rng):
    # Section 4: every column whose offset lies in [-K, K-1] ends with o + 2n - K in [-2, 1].
    K = 8
    cfg = ChipConfig(offset_sigma=4.0)
    seeds = [int(s) for s in rng.integers(0, 10_000, 4)]
    cr = ChipReadout(small_net, cfg, seeds, comp_rows=K, backend=backend, calibrate=True)
    p = cr.params
    checked = 0
    for key, chips in cr.chips.items():
        offset = np.floor(chips.offset.astype(np.float64) + 0.5)
        residual = offset + cr.comp[key]
        inside = (offset >= -K) & (offset <= K - 1)
        assert np.all((residual[inside] >= -2) & (residual[inside] <= 1))
        assert np.all(cr.calflags[key][inside] == 0)
        assert np.all(cr.calflags[key][~inside] == 1)
        checked += inside.sum()
    assert checked > 0 and p.comp_rows == K


def test_calibration_helps_and_trim_restores_ideal(small_net, digits):
    x, y = digits.x_val, digits.y_val
    rows = E.offset_experiment(small_net, x, y, sigmas=(4.0,), chips=6)
    by = {m: [r["accuracy"] for r in rows if r["method"] == m] for m in
          ("ideal", "none", "calibrated", "calibrated+trim")}
    assert len(by["ideal"]) == 1 and all(len(by[m]) == 6 for m in E.OFFSET_METHODS)
    assert np.mean(by["calibrated"]) >= np.mean(by["none"])
    # With integer offsets and no saturation the trimmed macro computes the ideal ACC.
    assert by["calibrated+trim"] == pytest.approx([by["ideal"][0]] * 6)


def test_trim_is_exact_on_the_bit_true_macro(small_net, digits):
    x = digits.x_val[:120]
    pred = predict_chips(small_net, ChipConfig(offset_sigma=6.0), range(3), x, calibrate=True,
                         trim=True)
    assert np.array_equal(pred, np.tile(infer_folded(small_net, x), (3, 1)))


def test_trim_reads_argument():
    assert [trim_reads(t) for t in (None, False, 0, True, 1, 4, 256)] == [0, 0, 0, 1, 1, 4, 256]
    # Model files: booleans for none and one read (as before T existed), else T.
    assert [trim_record(t) for t in (None, 0, 1, True, 2, 16)] == [False, False, True, True, 2, 16]
    for bad in (3, 6, 512, -1, 2.0, "4"):
        with pytest.raises(ValueError, match=f"power of two in 1..256.*not {bad!r}"):
            trim_reads(bad)


@pytest.mark.parametrize("backend, config", [
    ("macro", ChipConfig.typical("sram", read_noise=0.0)),
    ("analog", ChipConfig(offset_sigma=3.0, cell_sigma=0.1)),
], ids=["bit-true macro", "analog, no read noise"])
def test_trim_of_several_reads_without_noise_is_the_single_read(small_net, digits, backend, config):
    one = ChipReadout(small_net, config, [4, 9], backend=backend, calibrate=True, trim=True)
    many = ChipReadout(small_net, config, [4, 9], backend=backend, calibrate=True, trim=8)
    assert one.residual.keys() == many.residual.keys()
    for key, r in one.residual.items():
        assert many.residual[key].dtype == np.int64
        np.testing.assert_array_equal(many.residual[key], r)
    x = digits.x_val[:100]
    np.testing.assert_array_equal(many.predict(x), one.predict(x))


def test_trim_residual_is_the_mean_of_its_reads(small_net):
    """With read noise, trim T subtracts (read 16 + ... + read 16+T-1) / T: the first read
    is the whole single-read trim, and the mean moves in steps of 1/T."""
    cfg = ChipConfig(offset_sigma=3.0, read_noise=0.5)
    one = ChipReadout(small_net, cfg, [1, 2, 3], backend="analog", calibrate=True, trim=True)
    four = ChipReadout(small_net, cfg, [1, 2, 3], backend="analog", calibrate=True, trim=4)
    zeros = np.zeros((3, 1, small_net.rows), np.uint8)
    for key, r4 in four.residual.items():
        weights = small_net.layers[key[0]].weights[key[1], key[2]]
        reads = [four._read(key, zeros, weights, 0,
                            four._calibration_source(key, ChipReadout.TRIM_READ + i))[:, 0]
                 for i in range(4)]
        np.testing.assert_array_equal(reads[0], one.residual[key])
        np.testing.assert_array_equal(np.asarray(r4) * 4, np.sum(reads, axis=0))
    assert any(r.dtype == np.float64 for r in four.residual.values())


def test_readout_rejects_bad_combinations(small_net):
    rram = ChipConfig(technology="rram", cell_sigma=0.1)
    with pytest.raises(ValueError, match="backend='analog'"):
        ChipReadout(small_net, rram, [0], backend="macro")
    with pytest.raises(ValueError, match="ReRAM chips have neither"):
        ChipReadout(small_net, rram, [0], backend="analog", calibrate=True)
    with pytest.raises(ValueError, match="backend must be one of"):
        ChipReadout(small_net, ChipConfig(), [0], backend="spice")
    with pytest.raises(ValueError, match="chip seeds"):
        ChipReadout(small_net, ChipConfig(), [-1])
    with pytest.raises(TypeError, match="ChipConfig"):
        ChipReadout(small_net, {"offset_sigma": 1}, [0])


def test_rram_binary_readout_ideal(small_net, digits):
    x = digits.x_val[:80]
    cfg = ChipConfig(technology="rram")
    pred = predict_chips(small_net, cfg, [0, 1], x, backend="analog")
    assert np.array_equal(pred, np.tile(infer_folded(small_net, x), (2, 1)))


def test_macro_params_widen_accumulator(small_net):
    p = macro_params_for(small_net, 16)
    assert p.comp_rows == 16 and p.acc_bits >= small_net.min_acc_bits
    assert (p.rows, p.cols) == (small_net.rows, small_net.cols)


# --- ReRAM MLP, DFP, DVA -----------------------------------------------------------------

@pytest.fixture(scope="module")
def mlp(digits):
    return E.train_mlp(digits.x_train, digits.y_train, (64, 32, 10), epochs=6, seed=0)


def test_train_mlp_learns(mlp, digits):
    z = digits.x_val.astype(np.float32)
    for l in range(mlp.layers):
        z = z @ mlp.params[f"W{l}"] + mlp.params[f"b{l}"]
        z = np.maximum(z, 0) if l < mlp.layers - 1 else z
    assert accuracy(np.argmax(z, 1), digits.y_val) > 0.85


def test_train_mlp_dva_is_seeded(digits):
    a = E.train_mlp(digits.x_train[:300], digits.y_train[:300], (64, 16, 10), epochs=1,
                    dva_sigma=0.3, seed=5)
    b = E.train_mlp(digits.x_train[:300], digits.y_train[:300], (64, 16, 10), epochs=1,
                    dva_sigma=0.3, seed=5)
    c = E.train_mlp(digits.x_train[:300], digits.y_train[:300], (64, 16, 10), epochs=1,
                    dva_sigma=0.0, seed=5)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["W0"], c.params["W0"])


def test_fracs_fixed_versus_dfp(mlp):
    fixed = E.mlp_fracs(mlp, 8, dfp=False)
    dfp = E.mlp_fracs(mlp, 8, dfp=True)
    assert len(set(fixed)) == 1 and fixed[0] == fixed_frac(mlp.weights(), 8)
    assert dfp == [dfp_frac(w, 8) for w in mlp.weights()]
    assert all(d >= f for d, f in zip(dfp, fixed)) and min(dfp) == fixed[0]


def test_mlp_accuracy_sigma_zero_is_quantised_float(mlp, digits):
    fracs = E.mlp_fracs(mlp, 8, dfp=True)
    setup = E.RramSetup()
    z = digits.x_val.astype(np.float64)
    for l in range(mlp.layers):
        q = to_fixed(mlp.params[f"W{l}"], 8, fracs[l])
        z = z @ (q * 2.0 ** -fracs[l]) + mlp.params[f"b{l}"]
        z = np.maximum(z, 0) if l < mlp.layers - 1 else z
    ref = accuracy(np.argmax(z, 1), digits.y_val)
    acc = E.mlp_accuracy(mlp, digits.x_val, digits.y_val, fracs, setup, 0.0, [0, 1])
    assert acc == pytest.approx([ref, ref])
    # An ideal ReRAM chip (infinite on/off ratio, no spread) gives the same up to float rounding.
    ideal = E.RramSetup(on_off_ratio=float("inf"))
    acc_chip = E.mlp_accuracy(mlp, digits.x_val, digits.y_val, fracs, ideal, 1e-12, [0])
    assert abs(acc_chip[0] - ref) <= 2 / len(digits.y_val)


def test_rram_experiment_rows_and_degradation(digits):
    rows, info = E.rram_experiment(digits, sigmas=(0.0, 0.3), chips=2, epochs=3, hidden=(32,))
    assert len(rows) == len(E.RRAM_METHODS) * 2 * 2
    assert set(info["fracs"]) == set(E.RRAM_METHODS)
    summary = {(s["method"], s["sigma"]): s["mean"] for s in E.summarize(rows)}
    assert summary[("fixed", 0.3)] < summary[("fixed", 0.0)]


# --- results ---------------------------------------------------------------------------

def test_summarize_csv_png(tmp_path, rng):
    rows = [dict(experiment="offset", method=m, sigma=s, chip_seed=c, accuracy=float(rng.random()))
            for m in ("none", "calibrated") for s in (0.0, 2.0) for c in range(3)]
    rows.append(dict(experiment="offset", method="ideal", sigma=0.0, chip_seed=-1, accuracy=0.9))
    summary = E.summarize(rows)
    for s in summary:
        accs = [r["accuracy"] for r in rows if (r["method"], r["sigma"]) == (s["method"], s["sigma"])]
        assert s["mean"] == pytest.approx(np.mean(accs)) and s["std"] == pytest.approx(np.std(accs))
        assert s["n"] == len(accs)
    path = tmp_path / "sweep.csv"
    E.write_csv(rows, path)
    back = E.read_csv(path)
    assert [tuple(r[k] for k in E.CSV_COLUMNS[:4]) for r in back] == \
        [tuple(r[k] for k in E.CSV_COLUMNS[:4]) for r in rows]
    assert [r["accuracy"] for r in back] == pytest.approx([r["accuracy"] for r in rows], abs=1e-6)
    assert path.read_text().splitlines()[0] == ",".join(E.CSV_COLUMNS)
    png = tmp_path / "offset.png"
    E.plot_sweep(rows, "offset", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["offset.png", "sweep.csv"]
    with pytest.raises(ValueError, match="no rows of experiment"):
        E.png_bytes(rows, "rram")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    E.atomic_write_bytes(target, b"old")
    with pytest.raises(TypeError):
        E.atomic_write_bytes(target, 12345)      # not bytes: the write fails
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_read_noise_experiment_rows_own_chip_and_plot(small_net, digits):
    x, y = digits.x_val[:80], digits.y_val[:80]
    nets = {"a": small_net, "b": small_net}
    base = ChipConfig(offset_sigma=2.0, cell_sigma=0.05)
    rows = E.read_noise_experiment(nets, x, y, base=base, noises=(0.0, 0.5), chips=3,
                                   own_chips={"b": 1})
    ideal = accuracy(infer_folded(small_net, x), y)
    refs = [r for r in rows if r["chip_seed"] == -1]
    assert [r["method"] for r in refs] == ["a: ideal hardware", "b: ideal hardware"]
    assert all(r["accuracy"] == ideal for r in refs)
    for noise in (0.0, 0.5):
        at = [r for r in rows if r["sigma"] == noise and r["chip_seed"] >= 0]
        assert sorted(r["chip_seed"] for r in at if r["method"] == "a") == [0, 1, 2]
        assert [r["chip_seed"] for r in at if r["method"] == "b, own chip"] == [1]
        assert sorted(r["chip_seed"] for r in at if r["method"] == "b, other chips") == [0, 2]
    # Without read noise the analog chips are deterministic: the same network gives the
    # same accuracy on the same chip whatever group it is counted in.
    quiet = {(r["method"], r["chip_seed"]): r["accuracy"] for r in rows if r["sigma"] == 0.0}
    assert quiet[("b, own chip", 1)] == quiet[("a", 1)]
    assert quiet[("b, other chips", 2)] == quiet[("a", 2)]
    assert E.png_bytes(rows, "noise")[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="own_chips names networks not in nets"):
        E.read_noise_experiment(nets, x, y, base=base, own_chips={"c": 0})
