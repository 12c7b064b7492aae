"""Batch-norm folding, tiling, integer inference and the exported file format."""

import json

import numpy as np
import pytest

from models.bnn import BNN, TrainConfig, bn_affine, train
from models.export import (
    FoldedLayer, FoldedNet, acc_range, check_fits, export_model, fold_model, fold_threshold,
    infer_folded, layer_acc, load_folded, macro_hook, save_folded, tile_weights,
)
from models.params import MacroParams


# Small matrices (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_blas_thread")


def folded_decision(acc, theta, flip):
    return (acc >= theta).astype(np.uint8) ^ flip


def check_fold_exhaustive(gamma, beta, mean, var, eps, lo, hi):
    """Folded rule == float64 batch-norm decision on every integer of every column's range."""
    theta, flip = fold_threshold(gamma, beta, mean, var, eps, lo, hi)
    assert theta.dtype == np.int64 and flip.dtype == np.uint8
    assert np.all(theta >= lo) and np.all(theta <= hi + 1)
    for c in range(len(gamma)):
        acc = np.arange(lo[c], hi[c] + 1)
        want = bn_affine(acc.astype(np.float64), gamma[c], beta[c], mean[c], var[c], eps) >= 0
        got = folded_decision(acc, theta[c], flip[c])
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, (f"column {c}: gamma={gamma[c]!r} beta={beta[c]!r} mean={mean[c]!r} "
                               f"var={var[c]!r} theta={theta[c]} flip={flip[c]} first bad acc={acc[bad[0]]}")
    return theta, flip


def test_fold_threshold_random_exhaustive(rng):
    n = 400
    kind = rng.integers(0, 4, n)
    gamma = rng.uniform(0.01, 3, n) * np.where(rng.random(n) < 0.5, -1, 1)
    gamma[kind == 1] *= 1e-7                                   # nearly constant output
    gamma[kind == 2] = rng.choice([0.0, -0.0], (kind == 2).sum())
    beta = rng.normal(0, 2, n)
    mean = rng.uniform(-300, 300, n)
    var = rng.uniform(0.01, 5000, n)
    lo = -rng.integers(0, 400, n)
    hi = rng.integers(0, 400, n)
    theta, flip = check_fold_exhaustive(gamma, beta, mean, var, 1e-4, lo, hi)
    assert np.all(flip[gamma < 0] == 1) and np.all(flip[gamma > 0] == 0)
    # Sanity that the sample covers every branch, including both constant outputs.
    zero = gamma == 0
    assert zero.any() and (beta[zero] >= 0).any() and (beta[zero] < 0).any()


def test_fold_threshold_exact_integer_boundaries(rng):
    """t = mean - beta*sigma/gamma lands exactly on (or within rounding of) integers."""
    n = 300
    gamma = rng.choice([-1, 1], n) * rng.uniform(0.1, 2, n)
    var = rng.integers(1, 400, n).astype(np.float64)
    mean = rng.integers(-50, 50, n).astype(np.float64) + rng.choice([0, 0.5, 0.1, 1 / 3], n)
    eps = 1e-4
    k = rng.integers(-20, 20, n)
    # beta chosen so that the decision boundary is mean + k up to float rounding, and
    # for a third of the columns beta = 0 so that h(acc = mean) is exactly zero.
    beta = -gamma * (k / np.sqrt(var + eps))
    beta[: n // 3] = 0.0
    mean[: n // 3] = np.round(mean[: n // 3])
    lo, hi = np.full(n, -120), np.full(n, 120)
    theta, flip = check_fold_exhaustive(gamma, beta, mean, var, eps, lo, hi)
    # h == 0 exactly at acc == mean: ties give 1 (acc >= theta) before the flip.
    z = slice(0, n // 3)
    pos = gamma[z] > 0
    np.testing.assert_array_equal(theta[z][pos], mean[z][pos])
    np.testing.assert_array_equal(theta[z][~pos], mean[z][~pos] + 1)


def test_fold_threshold_far_outside_range():
    gamma = np.array([1.0, 1.0, -1.0, -1.0])
    beta = np.array([1e6, -1e6, 1e6, -1e6])
    theta, flip = check_fold_exhaustive(gamma, beta, np.zeros(4), np.ones(4), 1e-4,
                                        np.full(4, -10), np.full(4, 10))
    # Always 1, always 0, always 1, always 0, with theta clamped to the range.
    np.testing.assert_array_equal(theta, [-10, 11, 11, -10])
    np.testing.assert_array_equal(flip, [0, 0, 1, 1])


def test_fold_threshold_constant_gamma_zero():
    theta, flip = fold_threshold([0.0, -0.0, 0.0], [0.0, 2.0, -1.0], [5, 5, 5], [1, 1, 1],
                                 1e-4, [-7, -7, -7], [9, 9, 9])
    np.testing.assert_array_equal(theta, [-7, -7, -7])
    np.testing.assert_array_equal(flip, [0, 0, 1])   # beta >= 0 -> always 1, else always 0


def test_fold_threshold_rejects_nan():
    with pytest.raises(ValueError, match="batch-norm gamma must be finite"):
        fold_threshold([np.nan], [0], [0], [1], 1e-4, [-1], [1])


def test_acc_range():
    wb = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 1]], np.uint8)
    lo, hi = acc_range(wb, 31)
    np.testing.assert_array_equal(lo, [-31, -93, -31])
    np.testing.assert_array_equal(hi, [62, 0, 62])


# --- models ------------------------------------------------------------------------------

def random_model(rng, sizes, input_bits):
    model = BNN(sizes, input_bits=input_bits, seed=int(rng.integers(1 << 30)), init_scale=1.0)
    x = rng.integers(0, 1 << input_bits, (64, sizes[0]))
    for l in range(model.layers - 1):
        model.params[f"gamma{l}"] = (rng.uniform(0.2, 2, sizes[l + 1])
                                     * rng.choice([-1, 1], sizes[l + 1])).astype(np.float32)
        model.params[f"beta{l}"] = rng.normal(0, 0.7, sizes[l + 1]).astype(np.float32)
    model.recompute_bn_stats(x)
    for l in range(model.layers - 1):     # move thresholds off the data's own mean
        model.buffers[f"mean{l}"] += rng.normal(0, 1, sizes[l + 1]).astype(np.float32)
    model.params["log_scale"] = np.array([rng.normal(-1, 0.3)], np.float32)
    return model


MAPPINGS = [(32, 96), (32, 32), (7, 5), (64, 16), (1, 1), (128, 200)]


@pytest.mark.parametrize("rows,cols", MAPPINGS)
def test_infer_folded_equals_float_inference(rng, rows, cols):
    for _ in range(3):
        depth = int(rng.integers(1, 4))
        sizes = tuple(int(s) for s in rng.integers(3, 70, depth + 1))
        bits = int(rng.integers(1, 9))
        model = random_model(rng, sizes, bits)
        x = rng.integers(0, 1 << bits, (200, sizes[0]))
        net = export_model(model, rows, cols)
        pred, trace = infer_folded(net, x, return_trace=True)
        ref = model.trace(x)
        for l, (a, b) in enumerate(zip(trace, ref)):
            np.testing.assert_array_equal(a["acc"], b["acc"], err_msg=f"layer {l} acc")
            if "y" in b:
                np.testing.assert_array_equal(a["y"], b["y"], err_msg=f"layer {l} bits")
        np.testing.assert_array_equal(pred, model.predict(x))
        # No saturation with the width the export says is enough.
        np.testing.assert_array_equal(infer_folded(net, x, acc_bits=net.min_acc_bits), pred)
        # The hidden decisions are not trivial (both values occur).
        if depth > 1:
            assert 0 < trace[0]["y"].mean() < 1


def test_tile_weights_index_map(rng):
    wb = rng.integers(0, 2, (37, 23)).astype(np.uint8)
    t = tile_weights(wb, 8, 5)
    assert t.shape == (5, 5, 8, 5)
    for i, j, r, c in np.ndindex(t.shape):
        row, col = i * 8 + r, j * 5 + c
        assert t[i, j, r, c] == (wb[row, col] if row < 37 and col < 23 else 0)


def test_layer_acc_plane_order_and_tiles(rng):
    calls = []

    def readout(layer, rt, ct, plane, bits, wbits):
        calls.append((layer, rt, ct, plane))
        return np.full((bits.shape[0], wbits.shape[1]), plane + 10 * rt, np.int64)

    tiles = tile_weights(rng.integers(0, 2, (20, 9)).astype(np.uint8), 8, 4)
    acc = layer_acc(np.zeros((2, 20), np.int64), tiles, 3, layer=4, readout=readout)
    # Column tile by column tile, row tiles in order, planes MSB first.
    assert calls == [(4, rt, ct, p) for ct in range(3) for rt in range(3) for p in (2, 1, 0)]
    # Horner: sum_b 2^b v_b per row tile, summed over row tiles.
    per_tile = [sum((1 << p) * (p + 10 * rt) for p in range(3)) for rt in range(3)]
    np.testing.assert_array_equal(acc, np.full((2, 12), sum(per_tile)))


def test_layer_acc_offset_readout(rng):
    wb = rng.integers(0, 2, (40, 6)).astype(np.uint8)
    x = rng.integers(0, 32, (15, 40))
    tiles = tile_weights(wb, 16, 6)
    off = rng.integers(-4, 5, 6)

    def offset_readout(layer, rt, ct, plane, bits, wbits):
        return bits.astype(np.int64) @ (2 * wbits.astype(np.int64) - 1) + off

    ideal = x @ (2 * wb.astype(np.int64) - 1)
    np.testing.assert_array_equal(layer_acc(x, tiles, 5), ideal)
    np.testing.assert_array_equal(layer_acc(x, tiles, 5, readout=offset_readout),
                                  ideal + 3 * 31 * off)       # 3 row tiles x (2^5 - 1)


def test_layer_acc_saturates_after_each_tile():
    tiles = np.zeros((2, 1, 4, 2), np.uint8)
    tiles[:, :, :, 0] = 1                 # column 0: +1 everywhere -> +124 per tile
    tiles[0, 0, :, 1] = 1                 # column 1: +124 then -124
    x = np.full((1, 8), 31)
    np.testing.assert_array_equal(layer_acc(x, tiles, 5), [[248, 0]])
    # 7 bits: -64..63; clamp after tile 0, then add tile 1 to the clamped value.
    np.testing.assert_array_equal(layer_acc(x, tiles, 5, acc_bits=7), [[63, 63 - 124]])
    np.testing.assert_array_equal(layer_acc(x, 1 - tiles, 5, acc_bits=7), [[-64, -64 + 124]])
    np.testing.assert_array_equal(layer_acc(x, tiles, 5, acc_bits=9), [[248, 0]])


def test_argmax_ties_go_to_lowest_index():
    # One raw layer, 3 inputs, 4 classes; classes 1 and 3 share the best weights.
    w = np.array([[0, 1, 0, 1], [0, 1, 1, 1], [1, 1, 0, 1]], np.uint8)
    layer = FoldedLayer(3, 4, 2, "unsigned", False, tile_weights(w, 4, 4), None, None, -9, 9)
    net = FoldedNet(4, 4, 2, [layer])
    x = np.array([[3, 3, 3], [0, 0, 0], [0, 3, 0]])
    pred, trace = infer_folded(net, x, return_trace=True)
    np.testing.assert_array_equal(trace[0]["acc"], [[-3, 9, -3, 9], [0, 0, 0, 0], [-3, 3, 3, 3]])
    np.testing.assert_array_equal(pred, [1, 0, 1])


def test_infer_folded_input_checks(rng):
    net = export_model(random_model(rng, (5, 4, 3), 3), 4, 4)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 5\)"):
        infer_folded(net, np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="x must be in 0..7"):
        infer_folded(net, np.full((2, 5), 8))
    with pytest.raises(TypeError, match="integers"):
        infer_folded(net, np.zeros((2, 5)))


def test_macro_hook_ideal_equals_no_hook(rng):
    model = random_model(rng, (23, 17, 11, 4), 5)
    x = rng.integers(0, 32, (30, 23))
    hook = macro_hook(8, 5, 5)
    a = model.trace(x)
    b = model.trace(x, hook=hook)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u["acc"], v["acc"])


def test_macro_hook_column_offsets_land_on_neurons(rng):
    model = random_model(rng, (10, 7, 3), 2)
    x = rng.integers(0, 4, (12, 10))
    off = np.arange(4)                    # physical column c adds c to every plane readout

    def readout(layer, rt, ct, plane, bits, wbits):
        return bits.astype(np.int64) @ (2 * wbits.astype(np.int64) - 1) + off

    ideal = model.trace(x)[0]["acc"]
    chip = model.trace(x, hook=macro_hook(4, 4, 2, readout))[0]["acc"]
    neuron_col = np.arange(7) % 4         # neuron j sits in column j % cols
    np.testing.assert_array_equal(chip - ideal, np.broadcast_to(3 * 3 * neuron_col, ideal.shape))


# --- a trained model: every test input and every reachable acc -----------------------------

@pytest.fixture(scope="module")
def trained_digits():
    from models.datasets import load_dataset

    d = load_dataset("digits", seed=0)
    model = BNN((64, 40, 32, 10), seed=0)
    train(model, d.x_train, d.y_train, config=TrainConfig(epochs=3, seed=0))
    # Negate a third of the scales (and shifts) to exercise flip = 1 on real statistics.
    for l in range(model.layers - 1):
        g = model.params[f"gamma{l}"]
        g[::3] *= -1
    return model, np.concatenate([d.x_train, d.x_val])


def test_trained_fold_on_every_input_and_every_acc(trained_digits):
    model, x = trained_digits
    folded = fold_model(model)
    trace = model.trace(x)
    for l, d in enumerate(folded[:-1]):
        bn = model.bn(l)
        assert (bn["gamma"] < 0).any() and (bn["gamma"] > 0).any()
        # Every data-set input.
        got = folded_decision(trace[l]["acc"].astype(np.int64), d["theta"], d["flip"])
        np.testing.assert_array_equal(got, trace[l]["y"])
        # Every integer in each column's reachable range.
        check_fold_exhaustive(bn["gamma"], bn["beta"], bn["mean"], bn["var"], bn["eps"],
                              d["acc_min"], d["acc_max"])
    net = export_model(model, 32, 16)
    np.testing.assert_array_equal(infer_folded(net, x), model.predict(x))


# --- files ---------------------------------------------------------------------------------

def exported(rng, tmp_path, rows=32, cols=16):
    model = random_model(rng, (30, 20, 12, 5), 4)
    meta = dict(preprocessing=dict(input_bits=4, normalisation="minmax"),
                training=TrainConfig(epochs=1).to_dict(), accuracy=dict(val=0.5))
    net = export_model(model, rows, cols, input_bits=5, meta=meta)
    jpath, npath = save_folded(net, tmp_path / "net")
    return model, net, jpath, npath


def test_export_round_trip(rng, tmp_path):
    model, net, jpath, npath = exported(rng, tmp_path)
    assert (jpath.name, npath.name) == ("net.json", "net.npz")
    for name in ("net", "net.json", "net.npz"):
        back = load_folded(tmp_path / name)
        assert (back.rows, back.cols, back.input_bits) == (32, 16, 5)
        assert back.meta["accuracy"] == {"val": 0.5}
        assert back.meta["training"]["epochs"] == 1
        for a, b in zip(net.layers, back.layers):
            np.testing.assert_array_equal(a.weights, b.weights)
            if a.binarized:
                np.testing.assert_array_equal(a.thresh, b.thresh)
                np.testing.assert_array_equal(a.flip, b.flip)
            assert (a.inputs, a.outputs, a.planes, a.input_encoding, a.binarized) == \
                   (b.inputs, b.outputs, b.planes, b.input_encoding, b.binarized)
    doc = json.loads(jpath.read_text())
    assert doc["macro"] == dict(rows=32, cols=16, input_bits=5, min_acc_bits=net.min_acc_bits)
    assert [l["planes"] for l in doc["layers"]] == [4, 1, 1]
    assert [(l["row_tiles"], l["col_tiles"]) for l in doc["layers"]] == [(1, 2), (1, 1), (1, 1)]
    x = rng.integers(0, 16, (50, 30))
    np.testing.assert_array_equal(infer_folded(load_folded(jpath), x), model.predict(x))


def rewrite_json(jpath, edit):
    doc = json.loads(jpath.read_text())
    edit(doc)
    jpath.write_text(json.dumps(doc))


def rewrite_npz(npath, edit):
    with np.load(npath) as f:
        arrays = {k: f[k] for k in f.files}
    edit(arrays)
    np.savez(npath, **arrays)


JSON_FAULTS = [
    (lambda d: d.update(format="other"), "format must be 'cim-bnn-model'"),
    (lambda d: d.update(version=99), "version 99 is not supported"),
    (lambda d: d.pop("macro"), "net.json: macro is missing"),
    (lambda d: d["macro"].update(rows="32"), "macro.rows must be an integer"),
    (lambda d: d["macro"].update(cols=0), "macro.cols must be >= 1"),
    (lambda d: d.update(layers=[]), r"layers must have at least 1 item\(s\), not 0"),
    (lambda d: d["layers"][1].update(inputs=21), r"layers\[1\].inputs must equal layers\[0\].outputs=20"),
    (lambda d: d["layers"][0].update(row_tiles=2), r"layers\[0\] tiling 2x2 does not match"),
    (lambda d: d["layers"][1].update(planes=2), r"layers\[1\].planes must be 1"),
    (lambda d: d["layers"][0].update(planes=6), r"layers\[0\].planes must be <= macro.input_bits=5"),
    (lambda d: d["layers"][2].update(output="binary"), r"layers\[2\].output must be 'acc'"),
    (lambda d: d["layers"][0].update(input_encoding="bit"), r"layers\[0\].input_encoding must be 'unsigned'"),
    (lambda d: d["layers"][1]["arrays"].update(weights="nope"), "array 'nope' of layers\\[1\\] is missing"),
    (lambda d: d.update(classes=7), "classes=7 differs"),
    (lambda d: d.update(arrays_file="x.npz"), "arrays_file 'x.npz' does not match"),
]


@pytest.mark.parametrize("edit,message", JSON_FAULTS)
def test_load_rejects_bad_json(rng, tmp_path, edit, message):
    _, _, jpath, _ = exported(rng, tmp_path)
    rewrite_json(jpath, edit)
    with pytest.raises(ValueError, match=message) as info:
        load_folded(jpath)
    assert "\n" not in str(info.value) and "net." in str(info.value)


NPZ_FAULTS = [
    (lambda a: a.pop("layer1_thresh"), "array 'layer1_thresh' of layers\\[1\\] is missing"),
    (lambda a: a.update(layer0_weights=a["layer0_weights"][:, :1]), "layer0_weights has shape"),
    (lambda a: a.update(layer2_weights=a["layer2_weights"] * 2), "layer2_weights must hold only 0 and 1"),
    (lambda a: a.update(layer0_flip=a["layer0_flip"].astype(np.float32)), "layer0_flip must hold integers"),
    (lambda a: a["layer0_thresh"].__setitem__((0, 0), 10 ** 6), "layer0_thresh leaves the range"),
]


@pytest.mark.parametrize("edit,message", NPZ_FAULTS)
def test_load_rejects_bad_arrays(rng, tmp_path, edit, message):
    _, _, _, npath = exported(rng, tmp_path)
    rewrite_npz(npath, edit)
    with pytest.raises(ValueError, match=message) as info:
        load_folded(tmp_path / "net")
    assert "\n" not in str(info.value) and "net.npz" in str(info.value)


def test_load_rejects_missing_and_garbage_files(rng, tmp_path):
    with pytest.raises(ValueError, match="net.json: no such file"):
        load_folded(tmp_path / "net")
    _, _, jpath, npath = exported(rng, tmp_path)
    npath.unlink()
    with pytest.raises(ValueError, match="net.npz: no such file"):
        load_folded(jpath)
    npath.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="net.npz: not an .npz file .*not a zip archive"):
        load_folded(jpath)
    jpath.write_text("{ not json")
    with pytest.raises(ValueError, match="net.json: not valid JSON"):
        load_folded(jpath)


def test_check_fits(rng, tmp_path):
    _, net, _, _ = exported(rng, tmp_path)
    check_fits(net, MacroParams(rows=32, cols=16, input_bits=5))
    with pytest.raises(ValueError, match="mapped for a 32x16 macro, not 32x32"):
        check_fits(net, MacroParams(rows=32, cols=32))
    with pytest.raises(ValueError, match="needs input_bits >= 4"):
        check_fits(net, MacroParams(rows=32, cols=16, input_bits=3))
    big = random_model(rng, (300, 4, 3), 8)
    big.params["W0"][:, 0] = 1.0                           # one column of all +1 weights
    wide = export_model(big, 32, 16)
    assert wide.min_acc_bits == 18                         # |acc| <= 300 * 255 = 76500
    check_fits(wide, MacroParams(rows=32, cols=16, input_bits=8))          # A = 7 + 8 + 4
    with pytest.raises(ValueError, match="needs acc_bits >= 18, the macro has 15"):
        check_fits(wide, MacroParams(rows=32, cols=16, input_bits=8, acc_bits=15))


def test_export_validation(rng):
    model = random_model(rng, (6, 4, 3), 5)
    with pytest.raises(ValueError, match="input_bits must be >= the model's 5"):
        export_model(model, 8, 8, input_bits=4)
    with pytest.raises(ValueError, match="rows must be >= 1, not 0"):
        export_model(model, 0, 8)
    with pytest.raises(TypeError, match="cols must be an integer"):
        export_model(model, 8, 8.0)


def test_chip_in_the_loop_recovers_column_offsets():
    """Per-column readout offsets (an uncalibrated chip) hurt an ideally trained model;
    fine-tuning with the chip's forward pass in the loop recovers on-chip accuracy."""
    from models.bnn import accuracy
    from models.datasets import load_dataset

    d = load_dataset("digits", seed=0)
    model = BNN((64, 96, 96, 10), seed=0)
    train(model, d.x_train, d.y_train, config=TrainConfig(epochs=10, seed=0))
    off = np.random.default_rng(11).normal(0, 3, 32).round().astype(np.int64)

    def chip(layer, rt, ct, plane, bits, wbits):
        return bits.astype(np.int64) @ (2 * wbits.astype(np.int64) - 1) + off

    def on_chip(m):
        return accuracy(infer_folded(export_model(m, 32, 32), d.x_val, readout=chip), d.y_val)

    ideal = accuracy(infer_folded(export_model(model, 32, 32), d.x_val), d.y_val)
    before = on_chip(model)
    train(model, d.x_train, d.y_train, hook=macro_hook(32, 32, 5, chip),
          config=TrainConfig(epochs=4, lr=1e-3, seed=1))
    after = on_chip(model)
    print(f"ideal {ideal:.3f}, chip before {before:.3f}, after chip-in-the-loop {after:.3f}")
    assert before < ideal - 0.1
    assert after > ideal - 0.03
