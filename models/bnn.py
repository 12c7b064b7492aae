"""Binarized MLP for the CiM macro, trained in numpy: STE, batch norm, Adam, DVA, chip-in-the-loop.

The network is the one of Zhang and Verma (JETCAS 2019): fully connected layers whose
weights are +1/-1 (one SRAM column per neuron), unsigned multi-bit inputs to the first
layer, binary activations between layers, batch norm before every binarization, and a
last layer whose raw accumulator gives the class scores.

Every pre-activation is kept in **hardware units**: ``z = acc``, the integer the macro's
accumulator holds for ideal hardware,

* first layer: ``acc[n, c] = sum_r x[n, r] * wb[r, c]`` with ``x`` in ``0 .. 2^B - 1``;
* later layers: ``acc[n, c] = sum_r y[n, r] * wb[r, c]`` with ``y`` in ``{0, 1}``, the
  previous layer's output bit (the macro's input plane 0), ``y = (a + 1) / 2`` for the
  usual BNN activation ``a = sign(h)`` in ``{-1, +1}``.

The textbook ``±1`` sum is ``sum_r a_r wb_r = 2 acc - sum_r wb_r``: an affine map of
``acc`` that is constant over a batch, so batch norm of either gives the same normalised
value (up to ``eps``) and the same gradients; keeping ``acc`` makes folding batch norm
into the macro's threshold direct and lets a chip model return its own ``acc``.

Hidden layer: ``h = gamma * ((z - mean) / sqrt(var + eps)) + beta`` (:func:`bn_affine`),
``a = +1 if h >= 0 else -1`` (ties go to +1, as the macro's ``acc >= THRESH`` does),
``y = (a + 1) / 2``.

Last layer: ``o = exp(log_scale) * z + out_bias`` with one positive scale and one bias
shared by all classes. A per-class affine would move the argmax, and the macro's last
layer reports ``acc`` raw, so the prediction ``argmax_c o = argmax_c acc`` (lowest index
on ties) is exactly what the hardware computes. The loss is the squared hinge
``mean_{n,c} max(0, 1 - t o)^2`` with ``t = +1`` for the true class and ``-1`` otherwise.

Gradients: straight-through estimators. ``wb = sign(W)`` (``W >= 0 -> +1``) passes the
gradient where ``|W| <= 1`` and the latent weights ``W`` are clipped to ``[-1, 1]``
after every Adam step; ``a = sign(h)`` passes the gradient where ``|h| <= 1`` (the
defaults; :class:`TrainConfig` also offers another clipping bound, the ApproxSign
estimator and softmax cross-entropy with label smoothing instead of the squared hinge).

Readout-error injection (``TrainConfig.acc_noise``): every training batch is split over
a few simulated chips, and every layer's accumulators get a per-(chip, column) shift and
a per-image error, Gaussian, of the sizes a chip's readout errors have (e.g. a noisy trim
read times ``2^B - 1`` in the first layer; :func:`models.chip_training.readout_errors`
measures them); the batch-norm statistics at the end include them. The recipe
``mnist-chip-noise`` injects the typical analog chip's (:data:`TYPICAL_CHIP_ACC_NOISE`),
``mnist-chip-noise-trim16`` those of the same chip trimmed by the mean of 16 reads
(:data:`TYPICAL_CHIP_TRIM16_ACC_NOISE`).

Data augmentation (:mod:`models.augment`): :func:`train` can take fresh training
inputs every epoch; per-step forward hooks (``batch_hook``) put freshly sampled chips
in the loop (noise-aware training, :mod:`models.chip_training`).

DVA (device-variation-aware training, Long et al., DATE 2019): with ``dva_sigma > 0``
every mini-batch multiplies the binary weights used in the forward pass element-wise by
fresh noise ``N(dva_mean, dva_sigma)``: ``w_eff = wb * eps``. The backward pass uses
``w_eff`` (exact chain rule through the noise).

Chip in the loop (JETCAS 2019): a *forward hook* ``hook(layer, inputs, weight_bits, acc)
-> acc'`` replaces each layer's pre-activation by what a chip computes (e.g. the analog
model of a sampled chip, or the bit-true macro model with injected offsets; see
:func:`models.export.macro_hook`). ``inputs`` is the hardware encoding (``uint8``,
``x`` or ``y``), ``weight_bits`` the stored bits (``uint8``, 1 = +1), ``acc`` the ideal
(or DVA-noisy) value. Batch norm and everything after see the chip's values; the
gradient follows the straight-through estimator of the ideal path
(``d acc / d wb = inputs``, ``d acc / d inputs = wb``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = [
    "BNN", "TrainConfig", "Adam", "train", "accuracy", "bn_affine", "squared_hinge",
    "softmax_cross_entropy", "binarize_weights", "binarize_activations", "weight_bits",
    "FORMAT_NAME", "RECIPES", "DEFAULT_RECIPES", "recipe", "LOSSES", "STES", "SCHEDULES",
]

FORMAT_NAME = "cim-bnn-float"
FORMAT_VERSION = 1

#: ``hook(layer, inputs, weight_bits, acc) -> acc'``, see the module docstring.
ForwardHook = Callable[[int, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def binarize_weights(w: np.ndarray) -> np.ndarray:
    """``+1`` where ``w >= 0`` else ``-1``, in ``w``'s dtype (bit 1 = +1 in the macro)."""
    return np.where(w >= 0, 1, -1).astype(w.dtype)


def binarize_activations(h: np.ndarray) -> np.ndarray:
    """``+1`` where ``h >= 0`` else ``-1`` (ties to +1 as the macro's ``acc >= THRESH``)."""
    return np.where(h >= 0, 1, -1).astype(h.dtype)


def weight_bits(w: np.ndarray) -> np.ndarray:
    """Stored bits of latent weights ``w``: ``uint8``, 1 where ``w >= 0`` (weight +1)."""
    return (np.asarray(w) >= 0).astype(np.uint8)


def bn_affine(z, gamma, beta, mean, var, eps):
    """Inference batch norm ``gamma * ((z - mean) / sqrt(var + eps)) + beta``.

    The one expression the float model and the threshold folding both evaluate (in
    float64), so the folded decision can be checked against it bit for bit.
    """
    return gamma * ((z - mean) / np.sqrt(var + eps)) + beta


def squared_hinge(scores: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Loss ``mean max(0, 1 - t * scores)^2`` and its gradient with respect to ``scores``."""
    n, c = scores.shape
    t = -np.ones_like(scores)
    t[np.arange(n), labels] = 1
    margin = np.maximum(0, 1 - t * scores)
    return float((margin ** 2).mean()), (-2.0 / (n * c)) * t * margin


def softmax_cross_entropy(scores: np.ndarray, labels: np.ndarray, *,
                          smoothing: float = 0.0) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient with respect to ``scores``; the target
    of each row is the one-hot label mixed with the uniform distribution by
    ``smoothing`` (label smoothing)."""
    n, c = scores.shape
    z = scores - scores.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    target = np.full_like(scores, smoothing / c)
    target[np.arange(n), labels] += 1 - smoothing
    loss = -float(np.sum(target * logp)) / n
    return loss, (np.exp(logp) - target) / n


#: Losses of :class:`TrainConfig` (:meth:`BNN.loss_and_grads`).
LOSSES = ("hinge", "xent")
#: Straight-through estimators of the activation's sign (:meth:`BNN.forward`).
STES = ("clip", "approxsign")
#: Learning-rate schedules of :class:`TrainConfig`.
SCHEDULES = ("exp", "cosine")


def accuracy(predictions, labels) -> float:
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def _check_int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be {rng}, not {value}")


class BNN:
    """Binary-weight MLP whose pre-activations are the macro's accumulator values.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first: ``(100, 96, 96, 10)`` for MNIST 10x10,
        ``(64, 96, 96, 10)`` for the 8x8 digits. At least two entries.
    input_bits : int
        B: first-layer inputs are integers in ``0 .. 2^B - 1``.
    seed : int
        Seed of the weight initialisation.
    bn_eps : float
        Batch-norm epsilon, in squared accumulator units.
    init_scale : float
        Latent weights start uniform in ``[-init_scale, init_scale]``; small values let
        signs flip early in training (0.1 measured better than 1 on MNIST 10x10).

    Members
    -------
    params : dict of str -> ndarray (float32)
        ``W{l}`` latent weights ``(n_in, n_out)``; ``gamma{l}``, ``beta{l}`` batch-norm
        scale and shift of hidden layer ``l``; ``log_scale``, ``out_bias`` (shape
        ``(1,)``) of the last layer.
    buffers : dict of str -> ndarray (float32)
        ``mean{l}``, ``var{l}``: batch-norm inference statistics of hidden layer ``l``.
    layers : int
        Number of weight layers (``len(sizes) - 1``).
    """

    def __init__(self, sizes=(100, 96, 96, 10), *, input_bits: int = 5, seed: int = 0,
                 bn_eps: float = 1e-4, init_scale: float = 0.1):
        sizes = tuple(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least the input and output widths, not {sizes}")
        for i, s in enumerate(sizes):
            _check_int(f"sizes[{i}]", s, 1)
        _check_int("input_bits", input_bits, 1, 8)
        if not bn_eps > 0:
            raise ValueError(f"bn_eps must be positive, not {bn_eps}")
        if not 0 < init_scale <= 1:
            raise ValueError(f"init_scale must be in (0, 1], not {init_scale}")
        self.sizes = tuple(int(s) for s in sizes)
        self.input_bits = int(input_bits)
        self.bn_eps = float(bn_eps)
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.params: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        for l, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            self.params[f"W{l}"] = rng.uniform(-init_scale, init_scale, (n_in, n_out)).astype(np.float32)
            if l < self.layers - 1:
                self.params[f"gamma{l}"] = np.ones(n_out, np.float32)
                self.params[f"beta{l}"] = np.zeros(n_out, np.float32)
                self.buffers[f"mean{l}"] = np.zeros(n_out, np.float32)
                self.buffers[f"var{l}"] = np.ones(n_out, np.float32)
        # Start the last layer's scores near unit spread: E[input^2] is M^2/3 for
        # uniform B-bit pixels and 1/2 for random bits.
        m = (1 << self.input_bits) - 1
        second_moment = m * m / 3 if self.layers == 1 else 0.5
        self.params["log_scale"] = np.array([-0.5 * np.log(self.sizes[-2] * second_moment)], np.float32)
        self.params["out_bias"] = np.zeros(1, np.float32)

    @property
    def layers(self) -> int:
        return len(self.sizes) - 1

    def is_hidden(self, layer: int) -> bool:
        """True when ``layer`` has batch norm and a binary output (every layer but the last)."""
        return layer < self.layers - 1

    def weight_bits(self, layer: int) -> np.ndarray:
        """Stored bits ``(n_in, n_out) uint8`` of ``layer`` (1 = +1)."""
        return weight_bits(self.params[f"W{layer}"])

    def bn(self, layer: int) -> dict:
        """Float64 inference batch-norm parameters of hidden ``layer``."""
        return dict(gamma=self.params[f"gamma{layer}"].astype(np.float64),
                    beta=self.params[f"beta{layer}"].astype(np.float64),
                    mean=self.buffers[f"mean{layer}"].astype(np.float64),
                    var=self.buffers[f"var{layer}"].astype(np.float64),
                    eps=self.bn_eps)

    # --- forward / backward ----------------------------------------------------------

    def _check_x(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"x must have shape (N, {self.sizes[0]}), not {x.shape}")
        if x.size and (x.min() < 0 or x.max() > (1 << self.input_bits) - 1):
            raise ValueError(f"x must hold integers in 0..{(1 << self.input_bits) - 1}, "
                             f"not values in {x.min()}..{x.max()}")
        return x

    def forward(self, x, *, train: bool = False, noise_rng: np.random.Generator | None = None,
                dva_sigma: float = 0.0, dva_mean: float = 1.0, hook: ForwardHook | None = None,
                momentum: float = 0.1, dtype=None, ste: str = "clip", weight_clip: float = 1.0,
                acc_noise=None, acc_noise_groups: int = 4, acc_noise_rng=None):
        """Scores ``(N, classes)`` and the cache for :meth:`backward`.

        Parameters
        ----------
        x : ndarray (N, sizes[0])
            Integers in ``0 .. 2^B - 1``.
        train : bool
            Batch statistics in batch norm (and update the running ones with
            ``momentum``); otherwise the stored inference statistics.
        noise_rng, dva_sigma, dva_mean
            DVA: with ``dva_sigma > 0`` the forward weights are ``wb * N(dva_mean,
            dva_sigma)``, drawn from ``noise_rng`` (one draw per call = per batch).
        hook : callable or None
            Chip-in-the-loop forward hook (module docstring).
        dtype
            float32 by default when training, float64 otherwise (float64 makes every
            ideal ``acc`` exact and matches the folded integer pipeline bit for bit).
        ste : {"clip", "approxsign"}
            Straight-through estimator of ``sign(h)`` used by :meth:`backward`: ``clip``
            passes the gradient unchanged where ``|h| <= 1``; ``approxsign`` (Bi-Real
            Net) scales it by ``2 - 2|h|`` there, the derivative of a piecewise
            quadratic approximation of the sign.
        weight_clip : float
            The latent weights live in ``[-weight_clip, weight_clip]``; :meth:`backward`
            passes their gradient where ``|W| <= weight_clip``.
        acc_noise : sequence of (float, float) or None
            Readout-error injection (training): per layer, ``(fixed, per_image)``
            standard deviations in accumulator units. The batch is split into
            ``acc_noise_groups`` consecutive groups, one simulated chip each; every
            column of a group gets one shift ``N(0, fixed)`` (a chip's per-column error,
            e.g. what a noisy trim read leaves) and every accumulator a further ``N(0,
            per_image)`` (read noise), drawn from ``acc_noise_rng``. The gradient
            passes unchanged (the noise is additive).
        """
        if ste not in STES:
            raise ValueError(f"ste must be one of {', '.join(STES)}, not {ste!r}")
        x = self._check_x(x)
        if dtype is None:
            dtype = np.float32 if train else np.float64
        if dva_sigma < 0:
            raise ValueError(f"dva_sigma must be >= 0, not {dva_sigma}")
        if dva_sigma > 0 and noise_rng is None:
            raise ValueError("dva_sigma > 0 needs a noise_rng")
        if acc_noise is not None and acc_noise_rng is None:
            raise ValueError("acc_noise needs an acc_noise_rng")
        cache = dict(train=train, layers=[], ste=ste, weight_clip=weight_clip)
        hw_in = x.astype(np.uint8)
        inp = x.astype(dtype)
        for l in range(self.layers):
            w = self.params[f"W{l}"]
            wb = binarize_weights(w.astype(dtype))
            noise = None
            if dva_sigma > 0:
                noise = noise_rng.normal(dva_mean, dva_sigma, wb.shape).astype(dtype)
                w_eff = wb * noise
            else:
                w_eff = wb
            z = inp @ w_eff
            if acc_noise is not None and l < len(acc_noise) and any(acc_noise[l]):
                fixed, per_image = acc_noise[l]
                n_img, n_out = z.shape
                groups = np.minimum(np.arange(n_img) * acc_noise_groups // max(n_img, 1),
                                    acc_noise_groups - 1)
                shift = acc_noise_rng.normal(0, fixed, (acc_noise_groups, n_out))[groups]
                z = z + (shift + acc_noise_rng.normal(0, per_image, z.shape)).astype(dtype)
            if hook is not None:
                chip = np.asarray(hook(l, hw_in, weight_bits(w), z))
                if chip.shape != z.shape:
                    raise ValueError(f"forward hook of layer {l} returned shape {chip.shape}, "
                                     f"expected {z.shape}")
                z = chip.astype(dtype)
            lc = dict(inp=inp, w_eff=w_eff, noise=noise, z=z)
            cache["layers"].append(lc)
            if not self.is_hidden(l):
                break
            gamma = self.params[f"gamma{l}"].astype(dtype)
            beta = self.params[f"beta{l}"].astype(dtype)
            if train:
                mean = z.mean(axis=0)
                var = z.var(axis=0)
                m = self.buffers[f"mean{l}"]
                v = self.buffers[f"var{l}"]
                m += momentum * (mean.astype(np.float32) - m)
                v += momentum * (var.astype(np.float32) - v)
                inv_std = 1 / np.sqrt(var + dtype(self.bn_eps))
                zhat = (z - mean) * inv_std
                h = gamma * zhat + beta
            else:
                mean = self.buffers[f"mean{l}"].astype(dtype)
                var = self.buffers[f"var{l}"].astype(dtype)
                inv_std = 1 / np.sqrt(var + dtype(self.bn_eps))
                zhat = (z - mean) * inv_std
                h = bn_affine(z, gamma, beta, mean, var, dtype(self.bn_eps))
            a = binarize_activations(h)
            y = (a + 1) / 2
            lc.update(zhat=zhat, inv_std=inv_std, h=h, gamma=gamma)
            inp = y
            hw_in = (h >= 0).astype(np.uint8)
        scale = np.exp(self.params["log_scale"].astype(dtype))
        out = scale * z + self.params["out_bias"].astype(dtype)
        cache["scale"] = scale
        return out, cache

    def backward(self, cache, dout) -> dict[str, np.ndarray]:
        """Straight-through gradients of every parameter given ``dL/dscores``."""
        grads: dict[str, np.ndarray] = {}
        lcs = cache["layers"]
        last = lcs[-1]
        scale = cache["scale"]
        grads["log_scale"] = np.array([np.sum(dout * last["z"]) * scale[0]])
        grads["out_bias"] = np.array([np.sum(dout)])
        dz = dout * scale
        for l in range(len(lcs) - 1, -1, -1):
            lc = lcs[l]
            if self.is_hidden(l):
                dh = lc["dh"]
                zhat = lc["zhat"]
                grads[f"gamma{l}"] = np.sum(dh * zhat, axis=0)
                grads[f"beta{l}"] = np.sum(dh, axis=0)
                dzhat = dh * lc["gamma"]
                if cache["train"]:
                    n = dzhat.shape[0]
                    dz = (lc["inv_std"] / n) * (n * dzhat - dzhat.sum(axis=0)
                                                - zhat * np.sum(dzhat * zhat, axis=0))
                else:
                    dz = dzhat * lc["inv_std"]
            d_weff = lc["inp"].T @ dz
            dwb = d_weff * lc["noise"] if lc["noise"] is not None else d_weff
            w = self.params[f"W{l}"]
            grads[f"W{l}"] = dwb * (np.abs(w) <= cache["weight_clip"])
            if l > 0:
                dy = dz @ lc["w_eff"].T
                prev = lcs[l - 1]
                # y = (a + 1) / 2, a = sign(h): dy/da = 1/2, STE da/dh where |h| <= 1.
                if cache["ste"] == "approxsign":
                    prev["dh"] = dy * np.maximum(0, 1 - np.abs(prev["h"]))
                else:
                    prev["dh"] = 0.5 * dy * (np.abs(prev["h"]) <= 1)
        return {k: v.astype(np.float32) for k, v in grads.items()}

    def loss_and_grads(self, x, labels, *, loss: str = "hinge", smoothing: float = 0.0,
                       **forward_kw):
        """Loss (``"hinge"``: squared hinge; ``"xent"``: softmax cross-entropy with label
        ``smoothing``), gradients and scores of one (training) batch."""
        out, cache = self.forward(x, **forward_kw)
        labels = np.asarray(labels)
        if loss == "hinge":
            value, dout = squared_hinge(out, labels)
        elif loss == "xent":
            value, dout = softmax_cross_entropy(out, labels, smoothing=smoothing)
        else:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
        return value, self.backward(cache, dout), out

    # --- inference -------------------------------------------------------------------

    def scores(self, x, *, hook: ForwardHook | None = None, batch: int = 4096) -> np.ndarray:
        """Float64 inference scores ``(N, classes)`` (stored batch-norm statistics)."""
        x = self._check_x(x)
        outs = [self.forward(x[i:i + batch], hook=hook)[0] for i in range(0, len(x), batch)]
        return np.concatenate(outs) if outs else np.zeros((0, self.sizes[-1]))

    def predict(self, x, *, hook: ForwardHook | None = None) -> np.ndarray:
        """Class per input: argmax of the scores, lowest index on ties."""
        return np.argmax(self.scores(x, hook=hook), axis=1)

    def trace(self, x, *, hook: ForwardHook | None = None) -> list[dict]:
        """Per layer, in float64 inference: ``acc`` (N, n_out) and, for hidden layers,
        the output bits ``y`` (N, n_out) uint8."""
        _, cache = self.forward(x, hook=hook)
        out = []
        for l, lc in enumerate(cache["layers"]):
            d = dict(acc=lc["z"])
            if self.is_hidden(l):
                d["y"] = (lc["h"] >= 0).astype(np.uint8)
            out.append(d)
        return out

    def recompute_bn_stats(self, x, *, hook: ForwardHook | None = None) -> None:
        """Set every layer's inference statistics to the exact population mean and
        (biased) variance of its pre-activation over ``x``, layer by layer, each layer
        seeing the previous layers in inference mode with their new statistics."""
        x = self._check_x(x)
        inp = x.astype(np.float64)
        hw_in = x.astype(np.uint8)
        for l in range(self.layers - 1):
            w = self.params[f"W{l}"]
            z = inp @ binarize_weights(w.astype(np.float64))
            if hook is not None:
                z = np.asarray(hook(l, hw_in, weight_bits(w), z), dtype=np.float64)
            self.buffers[f"mean{l}"] = z.mean(axis=0).astype(np.float32)
            self.buffers[f"var{l}"] = z.var(axis=0).astype(np.float32)
            h = bn_affine(z, **self.bn(l))
            hw_in = (h >= 0).astype(np.uint8)
            inp = hw_in.astype(np.float64)

    # --- persistence -----------------------------------------------------------------

    def save(self, path) -> None:
        """Write the float model (latent weights, batch norm) to ``path`` (.npz)."""
        meta = dict(format=FORMAT_NAME, version=FORMAT_VERSION, sizes=list(self.sizes),
                    input_bits=self.input_bits, bn_eps=self.bn_eps)
        arrays = {f"param_{k}": v for k, v in self.params.items()}
        arrays.update({f"buffer_{k}": v for k, v in self.buffers.items()})
        np.savez(path, meta=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path) -> "BNN":
        """Read a model written by :meth:`save`; one-line ValueError on a bad file."""
        path = Path(path)
        if not path.exists():
            raise ValueError(f"{path}: no such file")
        try:
            with np.load(path, allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}
            meta = json.loads(str(data.pop("meta")))
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path}: not a float BNN model ({exc})") from None
        if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: format {meta.get('format')!r} version {meta.get('version')!r}, "
                             f"expected {FORMAT_NAME!r} version {FORMAT_VERSION}")
        model = cls(meta["sizes"], input_bits=meta["input_bits"], bn_eps=meta["bn_eps"])
        for store, prefix in ((model.params, "param_"), (model.buffers, "buffer_")):
            for k, v in store.items():
                arr = data.get(prefix + k)
                if arr is None or arr.shape != v.shape:
                    raise ValueError(f"{path}: array {prefix + k} missing or of shape "
                                     f"{None if arr is None else arr.shape}, expected {v.shape}")
                store[k] = arr.astype(np.float32)
        return model


class Adam:
    """Adam (Kingma and Ba) over a dict of float32 arrays, updated in place."""

    def __init__(self, params: dict, *, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.params = params
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads: dict, lr: float) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        corr = np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        for k, g in grads.items():
            m, v = self.m[k], self.v[k]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            self.params[k] -= (lr * corr) * m / (np.sqrt(v) + self.eps)


@dataclasses.dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train` (all JSON-ready, written into exported models).

    Members
    -------
    epochs, batch_size : int
    lr, lr_final : float
        Adam step size, from ``lr`` in the first epoch to ``lr_final`` in the last.
    schedule : {"exp", "cosine"}
        ``exp``: geometric decay, one step per epoch; ``cosine``: half a cosine period
        over the epochs.
    dva_sigma, dva_mean : float
        DVA noise on the forward weights (0 disables).
    momentum : float
        Batch-norm running-statistics momentum.
    recompute_bn : bool
        After training, replace the running statistics by the exact population
        statistics of the training set (:meth:`BNN.recompute_bn_stats`).
    loss : {"hinge", "xent"}
        Squared hinge, or softmax cross-entropy with ``label_smoothing``.
    label_smoothing : float
        In ``[0, 1)``; cross-entropy only.
    ste : {"clip", "approxsign"}
        Straight-through estimator of the activations' sign (:meth:`BNN.forward`).
    weight_clip : float
        Latent weights are clipped to ``[-weight_clip, weight_clip]`` after every step.
    acc_noise : list or None
        Readout-error injection: per layer ``[fixed, per_image]`` standard deviations
        in accumulator units (:meth:`BNN.forward`), every batch split over
        ``acc_noise_groups`` simulated chips.
    acc_noise_groups : int
    augment : dict or None
        :class:`models.augment.AugmentConfig` fields (``shift``, ``rotate``, ``scale``):
        every epoch trains on freshly warped copies of the full-size training images.
        :func:`train` then needs the ``augment`` callable that makes them.
    seed : int
        Seed of shuffling, DVA noise and augmentation.
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-2
    lr_final: float = 3e-5
    schedule: str = "exp"
    dva_sigma: float = 0.0
    dva_mean: float = 1.0
    momentum: float = 0.1
    recompute_bn: bool = True
    loss: str = "hinge"
    label_smoothing: float = 0.0
    ste: str = "clip"
    weight_clip: float = 1.0
    acc_noise: list | None = None
    acc_noise_groups: int = 4
    augment: dict | None = None
    seed: int = 0

    def __post_init__(self):
        _check_int("epochs", self.epochs, 0)
        _check_int("batch_size", self.batch_size, 1)
        if not (self.lr > 0 and self.lr_final > 0):
            raise ValueError(f"lr and lr_final must be positive, not {self.lr}, {self.lr_final}")
        if self.dva_sigma < 0:
            raise ValueError(f"dva_sigma must be >= 0, not {self.dva_sigma}")
        if not 0 < self.momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1], not {self.momentum}")
        for name, value, choices in (("schedule", self.schedule, SCHEDULES),
                                     ("loss", self.loss, LOSSES), ("ste", self.ste, STES)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), not {self.label_smoothing}")
        if self.label_smoothing and self.loss != "xent":
            raise ValueError("label_smoothing needs loss='xent'")
        if not self.weight_clip > 0:
            raise ValueError(f"weight_clip must be positive, not {self.weight_clip}")
        if self.acc_noise is not None:
            ok = isinstance(self.acc_noise, (list, tuple)) and all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                    for v in p) for p in self.acc_noise)
            if not ok:
                raise ValueError(f"acc_noise must be a list of [fixed, per_image] pairs of "
                                 f"numbers >= 0, one per layer, not {self.acc_noise!r}")
            self.acc_noise = [[float(a), float(b)] for a, b in self.acc_noise]
        _check_int("acc_noise_groups", self.acc_noise_groups, 1)
        if self.augment is not None:
            from .augment import AugmentConfig
            AugmentConfig(**self.augment)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def lr_at(self, epoch: int) -> float:
        """Adam step size of ``epoch`` (0-based)."""
        if self.epochs <= 1:
            return self.lr
        f = epoch / (self.epochs - 1)
        if self.schedule == "cosine":
            return self.lr_final + 0.5 * (self.lr - self.lr_final) * (1 + np.cos(np.pi * f))
        return self.lr * (self.lr_final / self.lr) ** f


def train(model: BNN, x, y, *, config: TrainConfig | None = None, x_val=None, y_val=None,
          hook: ForwardHook | None = None,
          batch_hook: Callable[[int], ForwardHook] | None = None,
          augment: Callable[[np.random.Generator], np.ndarray] | None = None,
          progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Train ``model`` in place with mini-batch Adam on the squared hinge loss.

    Parameters
    ----------
    model : BNN
    x, y : ndarray
        Training inputs ``(N, sizes[0])`` in ``0 .. 2^B - 1`` and labels ``(N,)``.
    config : TrainConfig
    x_val, y_val : ndarray or None
        When given, the float-model validation accuracy is measured every epoch.
    hook : callable or None
        Chip-in-the-loop forward hook, used in training, in the validation pass and in
        the final batch-norm statistics.
    batch_hook : callable or None
        ``batch_hook(step) -> hook`` gives the forward hook of training step ``step``
        (0-based over all epochs), e.g. a freshly sampled chip per batch (noise-aware
        training); it replaces ``hook`` in the training steps only.
    augment : callable or None
        ``augment(rng) -> x_epoch``: the training inputs of one epoch (same shape and
        label order as ``x``), e.g. a :class:`models.augment.Augmenter`. Required when
        ``config.augment`` is set, and only then.
    progress : callable or None
        Called after every epoch with that epoch's history entry.

    Returns
    -------
    list of dict
        Per epoch: ``epoch`` (1-based), ``epochs``, ``lr``, ``loss`` (mean over the
        batches), ``train_acc`` (on the training batches, training mode), ``val_acc``
        (or None), ``seconds`` since the start.
    """
    config = config or TrainConfig()
    x = model._check_x(x)
    y = np.asarray(y)
    if y.shape != (len(x),):
        raise ValueError(f"y must have shape ({len(x)},), not {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= model.sizes[-1]):
        raise ValueError(f"labels must be in 0..{model.sizes[-1] - 1}")
    if (x_val is None) != (y_val is None):
        raise ValueError("give both x_val and y_val or neither")
    if (augment is None) != (config.augment is None):
        raise ValueError("config.augment and the augment callable go together: give both or "
                         "neither")
    rng = np.random.default_rng(config.seed)
    # Its own stream, so that augmentation leaves shuffling and DVA draws unchanged.
    aug_rng = np.random.default_rng([config.seed, 1])
    acc_noise_rng = np.random.default_rng([config.seed, 2])
    adam = Adam(model.params)
    weight_keys = [f"W{l}" for l in range(model.layers)]
    history = []
    start = time.perf_counter()
    n = len(x)
    step = 0
    clip = config.weight_clip
    for epoch in range(config.epochs):
        lr = config.lr_at(epoch)
        x_epoch = x
        if augment is not None:
            x_epoch = np.asarray(augment(aug_rng))
            if x_epoch.shape != x.shape:
                raise ValueError(f"augment returned shape {x_epoch.shape}, expected {x.shape}")
            model._check_x(x_epoch)
        order = rng.permutation(n)
        loss_sum, correct = 0.0, 0
        for i in range(0, n, config.batch_size):
            idx = order[i:i + config.batch_size]
            if len(idx) < 2:       # batch norm needs two samples
                continue
            loss, grads, out = model.loss_and_grads(
                x_epoch[idx], y[idx], loss=config.loss, smoothing=config.label_smoothing,
                train=True, noise_rng=rng, dva_sigma=config.dva_sigma, dva_mean=config.dva_mean,
                hook=hook if batch_hook is None else batch_hook(step), momentum=config.momentum,
                ste=config.ste, weight_clip=clip, acc_noise=config.acc_noise,
                acc_noise_groups=config.acc_noise_groups, acc_noise_rng=acc_noise_rng)
            step += 1
            adam.step(grads, lr)
            for k in weight_keys:
                np.clip(model.params[k], -clip, clip, out=model.params[k])
            loss_sum += loss * len(idx)
            correct += int(np.sum(np.argmax(out, axis=1) == y[idx]))
        val_acc = accuracy(model.predict(x_val, hook=hook), y_val) if x_val is not None else None
        entry = dict(epoch=epoch + 1, epochs=config.epochs, lr=lr, loss=loss_sum / max(n, 1),
                     train_acc=correct / max(n, 1), val_acc=val_acc,
                     seconds=time.perf_counter() - start)
        history.append(entry)
        if progress is not None:
            progress(entry)
    if config.recompute_bn:
        if hook is None and config.acc_noise is not None:
            # The statistics of the accumulators as training saw them: the same injected
            # errors, over simulated chips of one training group's size each.
            hook = _acc_noise_hook(config, acc_noise_rng)
        model.recompute_bn_stats(x, hook=hook)
    return history


def _acc_noise_hook(config: TrainConfig, rng: np.random.Generator) -> ForwardHook:
    """A forward hook adding ``config.acc_noise`` to every layer's accumulators, one
    simulated chip per ``batch_size / acc_noise_groups`` consecutive images."""
    size = max(1, config.batch_size // config.acc_noise_groups)

    def hook(layer, inputs, weight_bits, acc):
        if layer >= len(config.acc_noise):
            return acc
        fixed, per_image = config.acc_noise[layer]
        n, c = acc.shape
        chips = -(-n // size)
        shift = rng.normal(0, fixed, (chips, c))[np.arange(n) // size]
        return acc + shift + rng.normal(0, per_image, acc.shape)
    return hook


#: Named training recipes. Each: ``dataset``, layer ``sizes``, ``inputs`` (keyword
#: arguments of :func:`models.datasets.load_dataset` that fix the preprocessing:
#: ``deskew_images``, ``contrast``), :class:`TrainConfig` fields, and ``about`` (one
#: line). docs/EXPERIMENTS.md gives the measured figures.
#: ``TrainConfig.acc_noise`` of the typical analog chip (``--sram-offset-sigma 4
#: --sram-cell-sigma 0.1 --read-noise 0.5 --backend analog --calibrate --trim``): per
#: layer the per-column (fixed) and per-image standard deviations of its accumulator
#: errors in accumulator units, as :func:`models.chip_training.readout_errors` measures
#: them (docs/EXPERIMENTS.md section 3.6). The first layer's fixed part is the trim
#: read's error (read noise 0.5, rounded) times 2^5 - 1 over 4 row tiles.
TYPICAL_CHIP_ACC_NOISE = [[36.0, 21.0], [1.0, 1.0], [1.0, 1.0]]
#: The same chip trimmed by the mean of 16 reads (``--trim 16``): the first layer's fixed
#: part falls to about 14 (``readout_errors`` measures 14.1 / 22.6, 0.59 / 1.10,
#: 0.33 / 1.09 on chips 0-9 for the network of ``--recipe mnist-chip --noise-aware``).
TYPICAL_CHIP_TRIM16_ACC_NOISE = [[14.0, 22.0], [0.6, 1.1], [0.35, 1.1]]
_AUGMENTED = dict(schedule="cosine", lr_final=1e-5, augment=dict(rotate=6.0, scale=0.06))
RECIPES = {
    "digits": dict(dataset="digits", sizes=(64, 96, 96, 10), inputs={},
                   config=dict(epochs=30), about="8x8 digits, 30 epochs (about 1 s)"),
    "mnist": dict(dataset="mnist", sizes=(100, 96, 96, 10), inputs={},
                  config=dict(epochs=150),
                  about="quick: plain inputs, no augmentation, 150 epochs (about 10-30 s)"),
    "mnist-aug": dict(dataset="mnist", sizes=(100, 96, 96, 10),
                      inputs=dict(deskew_images=True), config=dict(epochs=150, **_AUGMENTED),
                      about="deskewed inputs, rotated/scaled training copies, cosine "
                            "schedule, 150 epochs (about 1-3 min)"),
    "mnist-aug-long": dict(dataset="mnist", sizes=(100, 96, 96, 10),
                           inputs=dict(deskew_images=True), config=dict(epochs=400, **_AUGMENTED),
                           about="mnist-aug for 400 epochs (about 3-8 min)"),
    "mnist-chip": dict(dataset="mnist", sizes=(100, 96, 96, 10),
                       inputs=dict(deskew_images=True, contrast=1.5),
                       config=dict(epochs=150, **_AUGMENTED),
                       about="mnist-aug with contrast 1.5 inputs, more robust on analog chips"),
    "mnist-chip-noise": dict(dataset="mnist", sizes=(100, 96, 96, 10),
                             inputs=dict(deskew_images=True, contrast=1.5),
                             config=dict(epochs=150, acc_noise=TYPICAL_CHIP_ACC_NOISE,
                                         **_AUGMENTED),
                             about="mnist-chip with the accumulator errors of the typical "
                                   "analog chip injected (acc_noise), for analog chips"),
    "mnist-chip-noise-trim16": dict(
        dataset="mnist", sizes=(100, 96, 96, 10), inputs=dict(deskew_images=True, contrast=1.5),
        config=dict(epochs=150, acc_noise=TYPICAL_CHIP_TRIM16_ACC_NOISE, **_AUGMENTED),
        about="mnist-chip-noise with the errors of the typical analog chip trimmed by the mean "
              "of 16 reads (--trim 16)"),
}

#: The recipe ``python -m models train --dataset D`` uses unless ``--recipe`` says otherwise.
DEFAULT_RECIPES = {"digits": "digits", "mnist": "mnist-aug"}


def recipe(name: str, **overrides) -> tuple[tuple, TrainConfig]:
    """Layer sizes and :class:`TrainConfig` of the recipe ``name`` (a key of
    :data:`RECIPES`); ``overrides`` replace TrainConfig fields."""
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, not {name!r}")
    r = RECIPES[name]
    return r["sizes"], TrainConfig(**{**r["config"], **overrides})
