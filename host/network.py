"""Run an exported BNN (``models/export.py``) on a macro through the host driver.

:func:`run_network` is the one inference loop of the project: on the golden model, on
the RTL in cocotb and on an FPGA it is the same code, so the predictions must equal
``models.export.infer_folded`` wherever the backend is bit-exact.

Mapping (``docs/MODEL_FORMAT.md``): layer by layer, for all images before the next
layer; per column tile, the row tiles are RUN one after another with ACCUMULATE set
from the second on, so ACC holds the whole sum of the tile's columns. A hidden layer's
OUT bits (the first ``outputs`` columns over all column tiles) are the next layer's
input, written into INPUT plane 0 and RUN with one plane. The last layer's ACC is the
score; the prediction is its argmax, lowest index among equal maxima.

Bus traffic is what limits the speed on every backend (a weight tile is C bus words,
an image's RUN a handful), so the runner writes nothing the result does not need:

* a weight tile still held by the macro is not written again: with several row tiles
  the tiles of odd images are visited in reverse order, so the tile loaded last for one
  image is the first of the next. The order of the row tiles changes nothing as long as
  no partial sum can clamp ACC, which :func:`order_free` proves from the widths alone
  (``T (2^p - 1) 2^(W-1) <= 2^(A-1)``); otherwise every image visits them in order;
* in a column tile with padding columns (the last layer's 10 classes of 96 columns),
  only the real columns' weights are written and only their ACC is read. The padding
  columns compute with whatever weights they hold; nothing reads them.

Calibration trim (``docs/DRIVER.md``): after CALIBRATE each column still reads a small
residual ``r`` (``o + 2n - K``, in [-2, 1] inside the search range) in every bit-plane
readout. :func:`measure_residual` reads it with one RUN of an all-zero input, and
``run_network(..., residual=r)`` folds ``r (2^p - 1)`` per row tile into the
thresholds of binarized layers and subtracts it from the last layer's scores: exact as
long as ACC does not clamp (a readout that saturates is still off by what the clamp
cut). The runner loads weights and thresholds but never touches COMP or the
non-ideality registers: calibrate (and inject non-idealities) before calling it.
"""

from __future__ import annotations

import os

import numpy as np

from models.engine import check_residual
from models.export import FoldedNet, check_fits, check_images, load_folded

__all__ = ["run_network", "measure_residual", "trim_shift", "order_free"]


def order_free(p, layer) -> bool:
    """True when no partial sum of ``layer`` can clamp ACC on the macro ``p``.

    A RUN of ``p`` planes adds a tile ``sum_b 2^b v_b`` with every readout ``v_b`` a
    signed W-bit value, so ``|tile| <= (2^p - 1) 2^(W-1)``; after any ``k <= T`` row
    tiles ACC is within ``T`` times that. When this fits in A signed bits, ACC never
    clamps and the row tiles may be RUN in any order with the same ACC and OUT.
    """
    scale = layer.row_tiles * ((1 << layer.planes) - 1)
    return scale << (p.readout_bits - 1) <= 1 << (p.acc_bits - 1)


def trim_shift(p, layer, residual) -> np.ndarray:
    """What ``residual`` adds to ``layer``'s ACC, ``(col_tiles * C,)`` int64.

    Every readout of column ``c`` is off by ``residual[c]``; a RUN of ``p`` planes
    weighs the planes ``2^(p-1) .. 1`` (sum ``2^p - 1``), and each of the ``T`` row
    tiles adds one RUN, so ACC is off by ``T (2^p - 1) residual[c]`` in every column
    tile (all tiles share the macro's physical columns).
    """
    r = check_residual(p, residual)
    per_col = layer.row_tiles * ((1 << layer.planes) - 1) * r
    return np.tile(per_col, layer.col_tiles)


async def measure_residual(driver) -> np.ndarray:
    """Each column's readout with every input 0: the residual ``r`` the calibration left.

    One RUN of one plane with INPUT plane 0 all zero, then ACC (which then holds the
    plane's readout ``v`` itself). With every data row off the readout does not depend
    on the weights, so one RUN measures every column at once. Overwrites INPUT plane 0,
    ACC and OUT; leaves everything else (weights, COMP, thresholds) as it is.

    Returns
    -------
    ndarray (C,) int64
    """
    await driver.write_input_bits(np.zeros(driver.p.rows, np.int64))
    await driver.run(planes=1)
    return await driver.read_acc()


def _trimmed_thresholds(p, layer, shift) -> np.ndarray:
    """The layer's thresholds ``(col_tiles, C)`` plus the trim, checked to fit A bits."""
    C = p.cols
    theta = layer.thresh.reshape(-1) + shift
    lo, hi = -(1 << (p.acc_bits - 1)), (1 << (p.acc_bits - 1)) - 1
    real = np.arange(theta.size) < layer.outputs
    bad = real & ((theta < lo) | (theta > hi))
    if np.any(bad):
        c = int(np.flatnonzero(bad)[0])
        raise ValueError(f"the trimmed threshold of neuron {c} is {int(theta[c])} "
                         f"(threshold {int(layer.thresh.reshape(-1)[c])} + residual "
                         f"{int(shift[c])}), outside THRESH's signed {p.acc_bits} bits")
    # Padding columns: nothing reads their OUT, any in-range value will do.
    return np.clip(theta, lo, hi).reshape(layer.col_tiles, C)


async def _layer(driver, layer, inputs: np.ndarray, want_acc: bool, thresh):
    """ACC (when asked or for the last layer; the real columns) and OUT of one layer."""
    p = driver.p
    R, C = p.rows, p.cols
    n = inputs.shape[0]
    padded = np.zeros((n, layer.row_tiles * R), np.int64)
    padded[:, :layer.inputs] = inputs
    acc = np.zeros((n, layer.col_tiles * C), np.int64) if want_acc or not layer.binarized else None
    out = np.zeros((n, layer.col_tiles * C), np.uint8) if layer.binarized else None
    T = layer.row_tiles
    reorder = T > 1 and order_free(p, layer)

    for ct in range(layer.col_tiles):
        live = min(C, layer.outputs - ct * C)
        columns = None if live == C else slice(0, live)
        tiles = layer.weights[:, ct] if columns is None else layer.weights[:, ct, :, :live]
        if layer.binarized:
            await driver.write_thresholds(thresh[ct], layer.flip[ct])
        resident = None                    # the row tile this loop last wrote
        for i in range(n):
            order = range(T - 1, -1, -1) if reorder and i % 2 else range(T)
            for k, rt in enumerate(order):
                if rt != resident:
                    await driver.write_weights(tiles[rt], columns=columns)
                    resident = rt
                x = padded[i, rt * R:(rt + 1) * R]
                if layer.input_encoding == "bit":
                    await driver.write_input_bits(x)
                else:
                    await driver.write_input(x, planes=layer.planes)
                await driver.run(planes=layer.planes, accumulate=k > 0)
            cols = slice(ct * C, ct * C + live)
            if acc is not None:
                acc[i, cols] = await driver.read_acc(columns)
            if out is not None:
                out[i, ct * C:(ct + 1) * C] = await driver.read_out()
    return acc, out


async def run_network(driver, model, images, *, residual=None, return_trace: bool = False):
    """Classify ``images`` with the exported network ``model`` on ``driver``'s macro.

    Parameters
    ----------
    driver : host.driver.MacroDriver
    model : models.export.FoldedNet, or a path accepted by ``models.export.load_folded``
    images : array_like of int, shape (N, inputs) or (inputs,)
        First-layer inputs, ``0 .. 2^planes - 1`` (already preprocessed).
    residual : array_like of int, shape (C,), or None
        Trim (:func:`measure_residual` after CALIBRATE): each column's zero-input
        readout, folded into the thresholds of binarized layers and subtracted from
        the last layer's scores (:func:`trim_shift`).
    return_trace : bool
        Also return, per layer, ``acc`` (N, outputs) and, for hidden layers, ``y``
        (N, outputs), as ``infer_folded(..., return_trace=True)`` does; with a
        ``residual`` the ``acc`` is trimmed (ACC minus :func:`trim_shift`). Reading the
        hidden layers' ACC costs C extra bus reads per image and column tile.

    Returns
    -------
    predictions : ndarray (N,) int64, and the trace when asked for.

    Raises
    ------
    ValueError
        The network does not fit the macro (``models.export.check_fits``), the images
        have the wrong shape or range, the residual is no (C,) readout, or a trimmed
        threshold leaves THRESH's range; nothing is written then.
    """
    net = model if isinstance(model, FoldedNet) else load_folded(os.fspath(model))
    p = driver.p
    check_fits(net, p)
    inputs = check_images(images, net.layers[0].inputs, net.layers[0].planes)
    shifts = [None if residual is None else trim_shift(p, layer, residual)
              for layer in net.layers]
    thresholds = [None if not layer.binarized else
                  layer.thresh if shift is None else _trimmed_thresholds(p, layer, shift)
                  for layer, shift in zip(net.layers, shifts)]
    trace = []
    scores = None
    for layer, shift, thresh in zip(net.layers, shifts, thresholds):
        acc, out = await _layer(driver, layer, inputs, return_trace, thresh)
        if acc is not None:
            acc = acc[:, :layer.outputs]
            if shift is not None:
                acc = acc - shift[:layer.outputs]
        if layer.binarized:
            y = out[:, :layer.outputs]
            trace.append(dict(acc=acc, y=y) if return_trace else dict(y=y))
            inputs = y.astype(np.int64)
        else:
            scores = acc
            trace.append(dict(acc=scores))
    predictions = np.argmax(scores, axis=1).astype(np.int64)
    return (predictions, trace) if return_trace else predictions
