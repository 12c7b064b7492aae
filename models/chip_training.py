"""Training through sampled chips: noise-aware training and chip in the loop.

Both put the chip model itself in the forward pass of :func:`models.bnn.train` (a
forward hook, see :mod:`models.bnn`): every layer's accumulator is what the sampled chip
computes for the current weights, through :class:`models.chip_readout.ChipReadout` (the
analog device model or the bit-true macro model, with calibration and trim as the chip
options ask), and the gradient follows the ideal path (straight-through).

* **Noise-aware training** (:class:`FreshChips`): every training step runs its batch on
  chip instances sampled afresh, ``chips_per_step`` of them, each image of the batch on
  one of them. The network so sees the chip model's own effects (comparator offsets and
  what calibration and trim leave of them, cell-current spread, read noise, bit-line
  curve, ...) drawn anew at every step, never one chip, unlike DVA (which multiplies the
  weights by one Gaussian). Training chips have seeds from :data:`TRAINING_CHIP_BASE`
  on, far from the small seeds used to evaluate, so no evaluated chip is ever trained
  on.
* **Chip in the loop** (:func:`chip_hook` with one seed): every step runs on the one
  chip the network is deployed on (JETCAS 2019).

After either, :func:`models.bnn.BNN.recompute_bn_stats` through the same chips sets the
batch-norm statistics (hence the folded thresholds) to what those chips produce.

:func:`readout_errors` measures how far chips move every layer's accumulators (a fixed
per-column part and a per-image part): the sizes that ``TrainConfig.acc_noise`` injects
without a chip model in the loop (readout-error injection, :mod:`models.bnn`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .bnn import TrainConfig, train
from .chip import ChipConfig
from .chip_readout import ChipReadout, trim_record
from .export import FoldedNet, macro_hook

__all__ = ["EVAL_CHIPS", "NOISE_AWARE", "TRAINING_CHIP_BASE", "chip_hook", "FreshChips",
           "noise_aware_config", "noise_aware_train", "readout_errors"]

#: Schedule of noise-aware training, which starts from a trained model (TrainConfig
#: fields; the recipe's other fields, such as augmentation, stay).
NOISE_AWARE = dict(epochs=40, lr=3e-3, lr_final=1e-5, schedule="cosine")

#: Chip instances ``0 .. EVAL_CHIPS-1`` on which ``train --noise-aware`` measures and
#: records the validation accuracy (``accuracy.val_chips``).
EVAL_CHIPS = 20

#: First chip seed of noise-aware training: training run ``s`` uses seeds
#: ``TRAINING_CHIP_BASE + s * 2^24 + k``, ``k = 0, 1, ...``.
TRAINING_CHIP_BASE = 1 << 32


def chip_hook(net: FoldedNet, config: ChipConfig, seeds, *, comp_rows: int = 8,
              backend: str = "analog", calibrate: bool = False, trim=False):
    """A forward hook running any batch on the chip instances ``seeds``.

    The batch is padded (by repeating its last image) to a multiple of ``N =
    len(seeds)`` and split into N consecutive blocks, block k on chip ``seeds[k]``, as
    :class:`ChipReadout` stacks them. ``net`` fixes the macro and the tiling (its
    weights are not used: every call reads the weights it is given). The read noise is
    the counter-based noise of :mod:`models.sampler` with purpose ``train``: every
    forward pass through the hook is a new pass (its layer-0 call starts it), so no two
    passes reuse a draw.
    """
    readout = ChipReadout(net, config, seeds, comp_rows=comp_rows, backend=backend,
                          calibrate=calibrate, trim=trim)
    inner = macro_hook(net.rows, net.cols, net.input_bits, readout)
    n = readout.n
    passes = iter(range(1 << 62))

    def hook(layer, inputs, weight_bits, acc):
        if layer == 0:
            readout.use_images(None, purpose="train", pass_index=next(passes))
        m = len(inputs)
        pad = -m % n
        if pad:
            inputs = np.concatenate([inputs, np.repeat(inputs[-1:], pad, axis=0)])
        return inner(layer, inputs, weight_bits, acc)[:m]
    hook.readout = readout
    return hook


class FreshChips:
    """``batch_hook`` of :func:`models.bnn.train` for noise-aware training.

    Parameters
    ----------
    net : FoldedNet
        Fixes the macro size and the tiling (any export of the model being trained).
    config : ChipConfig
        Spreads of the chips to sample.
    seed : int
        Training seed: chips ``TRAINING_CHIP_BASE + seed * 2^24 + k`` in order (their
        read noise is keyed by their own seeds, :func:`chip_hook`).
    chips_per_step : int
        Chip instances per training step; the batch is spread over them.
    comp_rows, backend, calibrate, trim
        As :class:`models.chip_readout.ChipReadout`.
    """

    def __init__(self, net: FoldedNet, config: ChipConfig, *, seed: int = 0,
                 chips_per_step: int = 8, comp_rows: int = 8, backend: str = "analog",
                 calibrate: bool = False, trim=False):
        if isinstance(chips_per_step, bool) or not isinstance(chips_per_step, int) \
                or chips_per_step < 1:
            raise ValueError(f"chips_per_step must be an integer >= 1, not {chips_per_step!r}")
        self.net, self.config = net, config
        self.chips_per_step = chips_per_step
        self.options = dict(comp_rows=comp_rows, backend=backend, calibrate=calibrate, trim=trim)
        self.base = TRAINING_CHIP_BASE + seed * (1 << 24)
        self.used = 0

    def seeds(self, step: int) -> list[int]:
        """Chip seeds of training step ``step``."""
        first = self.base + step * self.chips_per_step
        return list(range(first, first + self.chips_per_step))

    def __call__(self, step: int):
        self.used = max(self.used, (step + 1) * self.chips_per_step)
        return chip_hook(self.net, self.config, self.seeds(step), **self.options)


def noise_aware_config(base: TrainConfig, *, epochs: int | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of noise-aware training after the recipe ``base``: its
    fields with the schedule :data:`NOISE_AWARE` (and ``epochs`` when given), without
    injected readout errors (the sampled chips make their own)."""
    fields = dict(NOISE_AWARE, acc_noise=None)
    if epochs is not None:
        fields["epochs"] = epochs
    return dataclasses.replace(base, **fields)


def noise_aware_train(model, data, config: ChipConfig, *, train_config: TrainConfig,
                      rows: int = 32, cols: int = 96, chips_per_step: int = 4,
                      comp_rows: int = 8, backend: str = "analog", calibrate: bool = False,
                      trim=False, bn_chips: int = 16, progress=None) -> dict:
    """Noise-aware training of ``model`` (in place) on ``data``, through fresh chips.

    Trains with ``train_config`` (its ``seed`` also picks the chips, see
    :class:`FreshChips`; its ``augment``, if any, warps ``data.train_images``), every
    step on ``chips_per_step`` newly sampled instances of ``config``; then sets the
    batch-norm statistics to those of the training images spread over ``bn_chips``
    further fresh instances. Returns a JSON-ready record of what was done.
    """
    from .augment import Augmenter
    from .export import export_model

    net = export_model(model, rows, cols)
    options = dict(comp_rows=comp_rows, backend=backend, calibrate=calibrate, trim=trim)
    fresh = FreshChips(net, config, seed=train_config.seed, chips_per_step=chips_per_step,
                       **options)
    augmenter = (None if train_config.augment is None
                 else Augmenter.for_dataset(data, train_config.augment))
    cfg = dataclasses.replace(train_config, recompute_bn=False)
    history = train(model, data.x_train, data.y_train, config=cfg, batch_hook=fresh,
                    augment=augmenter, progress=progress)
    # The statistics chips follow the training chips' seeds.
    first = fresh.base + fresh.used
    bn_seeds = list(range(first, first + bn_chips))
    model.recompute_bn_stats(data.x_train, hook=chip_hook(net, config, bn_seeds, **options))
    return dict(epochs=cfg.epochs, chips_per_step=chips_per_step, config=dataclasses.asdict(config),
                backend=backend, calibrate=calibrate, trim=trim_record(trim),
                training_chips=[fresh.base, first - 1], bn_chips=[first, first + bn_chips - 1],
                train_config=cfg.to_dict(), loss=history[-1]["loss"] if history else None)


def readout_errors(net: FoldedNet, x, config: ChipConfig, seeds, *, images=None,
                   comp_rows: int = 8, backend: str = "analog", calibrate: bool = False,
                   trim=False) -> list[tuple[float, float]]:
    """How far the chips ``seeds`` move every layer's accumulators from the ideal ones.

    Every layer runs on its ideal inputs (the previous layers ideal), so the errors are
    the layer's own. Per layer: the standard deviation of the per-(chip, column) mean
    error over the images ``x`` (``fixed``: what a chip shifts a neuron's threshold by,
    e.g. a noisy trim read times ``2^P - 1``) and of the rest (``per_image``: read noise,
    cell spread), in accumulator units: the ``TrainConfig.acc_noise`` that imitates
    these chips. ``images``: the read-noise key of every row of ``x``.
    """
    from .export import infer_folded, layer_acc

    x = np.asarray(x, dtype=np.int64)
    readout = ChipReadout(net, config, seeds, comp_rows=comp_rows, backend=backend,
                          calibrate=calibrate, trim=trim)
    readout.use_images(np.arange(len(x)) if images is None else images)
    _, trace = infer_folded(net, x, return_trace=True)
    out, inp = [], x
    for l, layer in enumerate(net.layers):
        ideal = trace[l]["acc"]
        chip = layer_acc(np.tile(inp, (readout.n, 1)), layer.weights, layer.planes, layer=l,
                         readout=readout)[:, :layer.outputs]
        err = chip.reshape(readout.n, len(x), -1) - ideal[None]
        fixed = err.mean(axis=1, keepdims=True)
        out.append((float(fixed.std()), float((err - fixed).std())))
        if layer.binarized:
            inp = trace[l]["y"].astype(np.int64)
    return out
