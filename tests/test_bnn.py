"""BNN training: STE gradients, batch norm, DVA noise, forward hook, Adam, a short digits run."""

import time

import numpy as np
import pytest

from models import bnn
from models.bnn import BNN, Adam, TrainConfig, accuracy, squared_hinge, train


# Small matrices (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_blas_thread")


def random_model(rng, sizes=(6, 5, 4, 3), input_bits=3):
    model = BNN(sizes, input_bits=input_bits, seed=int(rng.integers(1 << 30)), init_scale=0.9)
    for l in range(model.layers - 1):
        model.params[f"gamma{l}"] = rng.uniform(-1.5, 1.5, sizes[l + 1]).astype(np.float32)
        model.params[f"beta{l}"] = rng.normal(0, 0.5, sizes[l + 1]).astype(np.float32)
    model.params["log_scale"] = np.array([rng.normal(-1, 0.3)], np.float32)
    model.params["out_bias"] = np.array([rng.normal(0, 0.3)], np.float32)
    return model


def random_x(rng, model, n):
    return rng.integers(0, 1 << model.input_bits, (n, model.sizes[0])).astype(np.uint8)


def test_sign_ties_go_to_plus_one():
    z = np.array([-2.0, -1e-30, 0.0, -0.0, 1e-30, 3.0], np.float32)
    np.testing.assert_array_equal(bnn.binarize_activations(z), [-1, -1, 1, 1, 1, 1])
    np.testing.assert_array_equal(bnn.binarize_weights(z), [-1, -1, 1, 1, 1, 1])
    np.testing.assert_array_equal(bnn.weight_bits(z), [0, 0, 1, 1, 1, 1])


def test_constructor_validation():
    with pytest.raises(ValueError, match="at least the input and output"):
        BNN((10,))
    with pytest.raises(ValueError, match=r"sizes\[1\] must be >= 1, not 0"):
        BNN((10, 0, 3))
    with pytest.raises(TypeError, match="input_bits must be an integer"):
        BNN((4, 2), input_bits=2.0)
    with pytest.raises(ValueError, match="input_bits must be in 1..8, not 9"):
        BNN((4, 2), input_bits=9)
    with pytest.raises(ValueError, match="init_scale"):
        BNN((4, 2), init_scale=0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 4\)"):
        BNN((4, 2)).predict(np.zeros((3, 5), np.uint8))
    with pytest.raises(ValueError, match="x must hold integers in 0..31"):
        BNN((4, 2)).predict(np.full((3, 4), 32))


def test_preactivation_is_the_macro_accumulator(rng):
    model = random_model(rng)
    x = random_x(rng, model, 20)
    trace = model.trace(x)
    w = [2 * model.weight_bits(l).astype(np.int64) - 1 for l in range(model.layers)]
    np.testing.assert_array_equal(trace[0]["acc"], x.astype(np.int64) @ w[0])
    for l in range(1, model.layers):
        np.testing.assert_array_equal(trace[l]["acc"], trace[l - 1]["y"].astype(np.int64) @ w[l])
    # Hidden bits are the batch-norm decision, ties to 1.
    bn = model.bn(0)
    h = bn["gamma"] * ((trace[0]["acc"] - bn["mean"]) / np.sqrt(bn["var"] + bn["eps"])) + bn["beta"]
    np.testing.assert_array_equal(trace[0]["y"], h >= 0)
    scores = model.scores(x)
    np.testing.assert_allclose(scores, np.exp(model.params["log_scale"][0]) * trace[-1]["acc"]
                               + model.params["out_bias"][0], rtol=1e-6)


def test_squared_hinge_gradient(rng):
    s = rng.normal(0, 1.5, (7, 4))
    y = rng.integers(0, 4, 7)
    loss, g = squared_hinge(s, y)
    t = -np.ones((7, 4))
    t[np.arange(7), y] = 1
    assert loss == pytest.approx(np.mean(np.maximum(0, 1 - t * s) ** 2))
    eps = 1e-6
    for i, j in [(0, 0), (3, 2), (6, 3)]:
        d = np.zeros_like(s)
        d[i, j] = eps
        fd = (squared_hinge(s + d, y)[0] - squared_hinge(s - d, y)[0]) / (2 * eps)
        assert g[i, j] == pytest.approx(fd, rel=1e-5, abs=1e-9)


class StraightThroughSurrogate:
    """Replace every sign() by ``sign(u0) + clip(u) - clip(u0)`` anchored at the point u0
    seen in a recording pass: same forward values there, and its exact derivative
    ``1{|u0| < 1}`` is the straight-through estimator, so finite differences of the
    surrogate must equal the STE gradients."""

    def __init__(self, monkeypatch, act="clip"):
        self.mp = monkeypatch
        self.act = act
        self.anchors = {"w": [], "a": []}
        self.calls = {"w": 0, "a": 0}
        self.recording = True
        monkeypatch.setattr(bnn, "binarize_weights", self._make("w", bnn.binarize_weights))
        monkeypatch.setattr(bnn, "binarize_activations", self._make("a", bnn.binarize_activations))

    def _make(self, kind, sign):
        def f(u):
            if self.recording:
                self.anchors[kind].append(u.copy())
                return sign(u)
            u0 = self.anchors[kind][self.calls[kind]]
            self.calls[kind] += 1
            q = self.quadratic if kind == "a" and self.act == "approxsign" else self.linear
            return sign(u0) + q(u) - q(u0)
        return f

    @staticmethod
    def linear(u):
        return np.clip(u, -1, 1)

    @staticmethod
    def quadratic(u):
        """ApproxSign's piecewise quadratic: derivative ``2 - 2|u|`` on ``|u| < 1``."""
        c = np.clip(u, -1, 1)
        return 2 * c - c * np.abs(c)

    def replay(self):
        self.recording = False
        self.calls = {"w": 0, "a": 0}


@pytest.mark.parametrize("dva, train_mode, ste, loss", [
    (0.0, True, "clip", "hinge"), (0.3, True, "clip", "hinge"), (0.0, False, "clip", "hinge"),
    (0.3, False, "clip", "hinge"), (0.0, True, "approxsign", "hinge"),
    (0.0, True, "clip", "xent")])
def test_ste_gradients_match_finite_differences(rng, monkeypatch, dva, train_mode, ste, loss):
    model = random_model(rng)
    x = random_x(rng, model, 9)
    y = rng.integers(0, model.sizes[-1], 9)
    noise_seed = int(rng.integers(1 << 30))
    kw = dict(train=train_mode, dva_sigma=dva, dtype=np.float64, ste=ste, loss=loss,
              smoothing=0.1 if loss == "xent" else 0.0)
    if not train_mode:
        model.recompute_bn_stats(random_x(rng, model, 30))
    sur = StraightThroughSurrogate(monkeypatch, act=ste)
    loss, grads, _ = model.loss_and_grads(x, y, noise_rng=np.random.default_rng(noise_seed), **kw)

    def loss_at():
        sur.replay()
        return model.loss_and_grads(x, y, noise_rng=np.random.default_rng(noise_seed), **kw)[0]

    assert loss_at() == pytest.approx(loss, rel=1e-12)
    # Some STE masks must be active, or the check would not test them.
    assert any(np.any(np.abs(a) > 1) for a in sur.anchors["a"])
    eps = 1e-6
    checked = 0
    for name, p in model.params.items():
        for idx in list(np.ndindex(p.shape))[:6]:
            old = p[idx]
            p[idx] = old + eps
            up = loss_at()
            p[idx] = old - eps
            down = loss_at()
            p[idx] = old
            # float32 parameters: the perturbation is rounded, use the actual step.
            step = (np.float32(old + eps) - np.float32(old - eps))
            fd = (up - down) / float(step)
            assert grads[name][idx] == pytest.approx(fd, rel=2e-3, abs=2e-6), (name, idx)
            checked += 1
    assert checked > 30


def test_ste_weight_clip_mask(rng):
    model = random_model(rng)
    x = random_x(rng, model, 9)
    y = rng.integers(0, model.sizes[-1], 9)
    _, g_in, _ = model.loss_and_grads(x, y, train=True)
    model.params["W1"][0, :] = 1.5 * np.sign(model.params["W1"][0, :])    # same signs
    model.params["W1"][0, model.params["W1"][0, :] == 0] = 1.5
    _, g_out, _ = model.loss_and_grads(x, y, train=True)
    assert np.any(g_in["W1"][0] != 0)
    np.testing.assert_array_equal(g_out["W1"][0], 0)
    np.testing.assert_allclose(g_out["W1"][1:], g_in["W1"][1:], rtol=1e-6)


def test_dva_noise_is_fresh_per_batch_and_seeded(rng):
    model = random_model(rng, sizes=(30, 40, 10), input_bits=5)
    x = random_x(rng, model, 8)
    seed = int(rng.integers(1 << 30))

    def noises(seed, calls=2, sigma=0.2, mean=0.9):
        r = np.random.default_rng(seed)
        return [model.forward(x, train=True, noise_rng=r, dva_sigma=sigma, dva_mean=mean)[1]
                for _ in range(calls)]

    c1, c2 = noises(seed)
    n1, n2 = c1["layers"][0]["noise"], c2["layers"][0]["noise"]
    assert not np.array_equal(n1, n2)                       # fresh noise every batch
    d1, _ = noises(seed)
    np.testing.assert_array_equal(d1["layers"][0]["noise"], n1)   # reproducible with a seed
    all_noise = np.concatenate([c["layers"][l]["noise"].ravel() for c in (c1, c2) for l in range(2)])
    assert abs(all_noise.mean() - 0.9) < 0.02 and abs(all_noise.std() - 0.2) < 0.02
    # Multiplicative on the binary weights: the forward weights are wb * noise.
    wb = 2.0 * model.weight_bits(0) - 1
    np.testing.assert_allclose(c1["layers"][0]["w_eff"], wb * n1, rtol=1e-6)
    np.testing.assert_allclose(c1["layers"][0]["z"], x.astype(np.float32) @ (wb * n1), rtol=1e-4, atol=1e-3)
    c0 = model.forward(x, train=True)[1]
    assert c0["layers"][0]["noise"] is None
    with pytest.raises(ValueError, match="needs a noise_rng"):
        model.forward(x, train=True, dva_sigma=0.1)


def test_dva_training_is_seeded(rng):
    x = rng.integers(0, 32, (60, 12)).astype(np.uint8)
    y = rng.integers(0, 3, 60)

    def run(seed, sigma):
        m = BNN((12, 8, 3), seed=1)
        train(m, x, y, config=TrainConfig(epochs=2, batch_size=10, dva_sigma=sigma, seed=seed))
        return m.params["W0"].copy()

    np.testing.assert_array_equal(run(5, 0.3), run(5, 0.3))
    assert not np.array_equal(run(5, 0.3), run(6, 0.3))
    assert not np.array_equal(run(5, 0.3), run(5, 0.0))


def test_forward_hook_sees_hardware_encoding(rng):
    model = random_model(rng)
    x = random_x(rng, model, 11)
    seen = []

    def hook(layer, inputs, wbits, acc):
        seen.append((layer, inputs.copy(), wbits.copy(), acc.copy()))
        return acc

    trace = model.trace(x)
    model.trace(x, hook=hook)
    assert [s[0] for s in seen] == list(range(model.layers))
    np.testing.assert_array_equal(seen[0][1], x)
    for l in range(1, model.layers):
        assert seen[l][1].dtype == np.uint8
        np.testing.assert_array_equal(seen[l][1], trace[l - 1]["y"])
    for l in range(model.layers):
        np.testing.assert_array_equal(seen[l][2], model.weight_bits(l))
        np.testing.assert_array_equal(seen[l][3], trace[l]["acc"])


def test_forward_hook_replaces_value_but_keeps_ideal_gradient_path(rng):
    model = random_model(rng, sizes=(10, 16, 12, 4), input_bits=4)
    x = random_x(rng, model, 25)
    y = rng.integers(0, 4, 25)
    offsets = [rng.integers(-5, 6, n).astype(np.float64) for n in model.sizes[1:]]
    last = model.layers - 1

    def hidden_offsets(layer, inputs, wbits, acc):
        return acc + offsets[layer] if layer < last else acc

    # Batch statistics absorb a per-column constant offset in hidden layers: the same
    # loss and the same gradients, while the chip values did reach batch norm.
    l0, g0, _ = model.loss_and_grads(x, y, train=True, dtype=np.float64)
    mean0 = model.buffers["mean0"].copy()
    l1, g1, _ = model.loss_and_grads(x, y, train=True, dtype=np.float64, hook=hidden_offsets)
    assert l1 == pytest.approx(l0, rel=1e-9)
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=1e-4, atol=1e-6)
    # The running mean moved by (momentum * offset) relative to the no-hook update.
    assert not np.allclose(model.buffers["mean0"], mean0)

    # A last-layer offset changes the loss; its gradient still goes through the ideal
    # path dacc/dW = inputs (the hook is treated as the identity).
    def last_offset(layer, inputs, wbits, acc):
        return acc + offsets[layer] if layer == last else acc

    l2, g2, out2 = model.loss_and_grads(x, y, train=True, dtype=np.float64, hook=last_offset)
    assert l2 != pytest.approx(l0)
    _, dout = squared_hinge(out2, y)
    _, cache = model.forward(x, train=True, dtype=np.float64, hook=last_offset)
    scale = np.exp(model.params["log_scale"][0])
    np.testing.assert_allclose(g2[f"W{last}"], cache["layers"][last]["inp"].T @ (dout * scale),
                               rtol=1e-5, atol=1e-7)

    with pytest.raises(ValueError, match="returned shape"):
        model.forward(x, hook=lambda l, i, w, a: a[:, :1])


def test_recompute_bn_stats(rng):
    model = random_model(rng)
    x = random_x(rng, model, 40)
    model.recompute_bn_stats(x)
    trace = model.trace(x)
    for l in range(model.layers - 1):
        np.testing.assert_allclose(model.buffers[f"mean{l}"], trace[l]["acc"].mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(model.buffers[f"var{l}"], trace[l]["acc"].var(axis=0), rtol=1e-5)


def test_adam_first_step_moves_by_lr(rng):
    p = {"a": rng.normal(size=5).astype(np.float32)}
    start = p["a"].copy()
    g = rng.normal(size=5).astype(np.float32)
    opt = Adam(p)
    opt.step({"a": g}, 0.01)
    np.testing.assert_allclose(p["a"] - start, -0.01 * np.sign(g), rtol=1e-4)
    # Minimises a quadratic.
    for _ in range(3000):
        opt.step({"a": 2 * (p["a"] - 3)}, 0.01)
    np.testing.assert_allclose(p["a"], 3, atol=1e-2)


def test_train_config_validation():
    with pytest.raises(ValueError, match="dva_sigma must be >= 0"):
        TrainConfig(dva_sigma=-1)
    with pytest.raises(ValueError, match="lr and lr_final must be positive"):
        TrainConfig(lr=0)
    with pytest.raises(TypeError, match="epochs must be an integer"):
        TrainConfig(epochs=1.5)
    c = TrainConfig(epochs=5, lr=1e-2, lr_final=1e-4)
    assert c.lr_at(0) == pytest.approx(1e-2) and c.lr_at(4) == pytest.approx(1e-4)
    assert TrainConfig(**c.to_dict()) == c
    cos = TrainConfig(epochs=5, lr=1e-2, lr_final=1e-4, schedule="cosine")
    assert [cos.lr_at(e) for e in (0, 2, 4)] == pytest.approx([1e-2, (1e-2 + 1e-4) / 2, 1e-4])
    c6 = TrainConfig(augment=dict(rotate=6, scale=0.06), loss="xent", label_smoothing=0.1)
    assert TrainConfig(**c6.to_dict()) == c6


@pytest.mark.parametrize("fields, words", [
    (dict(schedule="linear"), "schedule must be one of exp, cosine, not 'linear'"),
    (dict(loss="mse"), "loss must be one of hinge, xent, not 'mse'"),
    (dict(ste="tanh"), "ste must be one of clip, approxsign, not 'tanh'"),
    (dict(loss="xent", label_smoothing=1.0), r"label_smoothing must be in \[0, 1\), not 1.0"),
    (dict(label_smoothing=0.1), "label_smoothing needs loss='xent'"),
    (dict(weight_clip=0.0), "weight_clip must be positive, not 0.0"),
    (dict(augment=dict(rotate=-1)), "augment rotate must be a finite number >= 0"),
])
def test_train_config_rejects(fields, words):
    with pytest.raises(ValueError, match=words):
        TrainConfig(**fields)


def test_softmax_cross_entropy_with_label_smoothing(rng):
    s = rng.normal(0, 2, (7, 5))
    y = rng.integers(0, 5, 7)
    loss, g = bnn.softmax_cross_entropy(s, y, smoothing=0.2)
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    t = np.full((7, 5), 0.04)
    t[np.arange(7), y] += 0.8
    assert loss == pytest.approx(-np.sum(t * np.log(p)) / 7, rel=1e-9)
    np.testing.assert_allclose(g, (p - t) / 7, rtol=1e-9)


def test_train_with_augmentation_and_batch_hooks(rng):
    x = rng.integers(0, 32, (40, 12)).astype(np.uint8)
    y = rng.integers(0, 3, 40)
    cfg = TrainConfig(epochs=3, batch_size=10, augment=dict(rotate=5), seed=2)
    with pytest.raises(ValueError, match="config.augment and the augment callable go together"):
        train(BNN((12, 8, 3), seed=1), x, y, config=cfg)
    with pytest.raises(ValueError, match="config.augment and the augment callable go together"):
        train(BNN((12, 8, 3), seed=1), x, y, config=TrainConfig(epochs=1),
              augment=lambda r: x)
    draws, steps = [], []

    def augment(r):
        draws.append(r.integers(1 << 30))
        return np.minimum(x + 1, 31).astype(np.uint8)

    def batch_hook(step):
        steps.append(step)
        return lambda layer, inputs, wbits, acc: acc

    model = BNN((12, 8, 3), seed=1)
    train(model, x, y, config=cfg, augment=augment, batch_hook=batch_hook)
    assert len(draws) == 3 and len(set(draws)) == 3          # one fresh draw per epoch
    assert steps == list(range(12))                          # 4 batches x 3 epochs
    with pytest.raises(ValueError, match=r"augment returned shape \(40, 11\)"):
        train(BNN((12, 8, 3), seed=1), x, y, config=cfg, augment=lambda r: x[:, :11])


def test_train_validates_labels(rng):
    m = BNN((4, 3, 2), input_bits=2)
    x = rng.integers(0, 4, (6, 4))
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        train(m, x, np.full(6, 2))
    with pytest.raises(ValueError, match=r"y must have shape \(6,\)"):
        train(m, x, np.zeros(5, int))


def test_short_digits_training_run():
    from models.datasets import load_dataset
    from models.export import export_model, infer_folded

    d = load_dataset("digits", seed=0)
    model = BNN((64, 96, 96, 10), seed=0)
    seen = []
    start = time.perf_counter()
    history = train(model, d.x_train, d.y_train, x_val=d.x_val, y_val=d.y_val,
                    config=TrainConfig(epochs=6, seed=0), progress=seen.append)
    elapsed = time.perf_counter() - start
    print(f"6 epochs in {elapsed:.2f} s, history {history[-1]}")
    assert seen == history and [h["epoch"] for h in history] == list(range(1, 7))
    assert set(history[0]) >= {"epoch", "epochs", "lr", "loss", "train_acc", "val_acc", "seconds"}
    assert history[-1]["loss"] < history[0]["loss"]
    float_acc = accuracy(model.predict(d.x_val), d.y_val)
    net = export_model(model, 32, 32)
    folded = infer_folded(net, d.x_val)
    np.testing.assert_array_equal(folded, model.predict(d.x_val))
    assert float_acc > 0.85, float_acc


def test_save_load_round_trip(tmp_path, rng):
    model = random_model(rng)
    model.recompute_bn_stats(random_x(rng, model, 20))
    model.save(tmp_path / "m.npz")
    back = BNN.load(tmp_path / "m.npz")
    assert back.sizes == model.sizes and back.input_bits == model.input_bits
    x = random_x(rng, model, 15)
    np.testing.assert_array_equal(back.scores(x), model.scores(x))
    with pytest.raises(ValueError, match="no such file"):
        BNN.load(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a float BNN model"):
        BNN.load(tmp_path / "bad.npz")


def test_recipe():
    sizes, config = bnn.recipe("mnist", seed=3)
    assert sizes == (100, 96, 96, 10) and config.epochs == 150 and config.seed == 3
    assert config.augment is None and bnn.RECIPES["mnist"]["inputs"] == {}
    _, default = bnn.recipe(bnn.DEFAULT_RECIPES["mnist"])
    assert default.augment is not None
    assert bnn.RECIPES[bnn.DEFAULT_RECIPES["mnist"]]["inputs"]["deskew_images"]
    for name, spec in bnn.RECIPES.items():
        assert spec["dataset"] in ("digits", "mnist") and spec["about"], name
        bnn.recipe(name)
    with pytest.raises(ValueError, match="recipe must be one of digits, mnist, "):
        bnn.recipe("cifar")


@pytest.mark.slow
def test_digits_default_recipe():
    from models.datasets import load_dataset

    d = load_dataset("digits", seed=0)
    sizes, config = bnn.recipe("digits", seed=0)
    model = BNN(sizes, seed=0)
    start = time.perf_counter()
    train(model, d.x_train, d.y_train, config=config)
    elapsed = time.perf_counter() - start
    acc = accuracy(model.predict(d.x_val), d.y_val)
    print(f"digits default: {acc:.4f} in {elapsed:.1f} s")
    assert acc > 0.95 and elapsed < 60


@pytest.mark.slow
def test_mnist_reproduction():
    """MNIST 10x10, 5-bit, 100-96-96-10, trained on subset images 0..5999, measured on
    6000..7999 through the folded integer pipeline (ideal hardware)."""
    from pathlib import Path

    from models.datasets import DEFAULT_MNIST_DIR, MNIST_FILES, load_dataset
    from models.export import export_model, infer_folded

    if not (Path(DEFAULT_MNIST_DIR) / MNIST_FILES[0]).exists():
        pytest.skip("MNIST subset ../shared/data/mnist not present")
    d = load_dataset("mnist")
    sizes, config = bnn.recipe("mnist", seed=0)
    model = BNN(sizes, input_bits=5, seed=0)
    start = time.perf_counter()
    train(model, d.x_train, d.y_train, config=config)
    elapsed = time.perf_counter() - start
    net = export_model(model, 32, 96)
    acc = accuracy(infer_folded(net, d.x_val), d.y_val)
    print(f"mnist folded accuracy {acc:.4f}, training {elapsed:.1f} s")
    assert acc >= 0.92
