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

The runner loads weights and thresholds but never touches COMP or the non-ideality
registers: calibrate (and inject non-idealities) before calling it.
"""

from __future__ import annotations

import os

import numpy as np

from models.export import FoldedNet, check_fits, load_folded

__all__ = ["run_network"]


def _check_images(net: FoldedNet, images) -> np.ndarray:
    x = np.asarray(images)
    first = net.layers[0]
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != first.inputs:
        raise ValueError(f"images must have shape (N, {first.inputs}), not {np.shape(images)}")
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"images must hold integers, not {x.dtype}")
    if x.size and (x.min() < 0 or x.max() >= 1 << first.planes):
        raise ValueError(f"images must be in 0..{(1 << first.planes) - 1} "
                         f"({first.planes}-bit inputs), not values in {x.min()}..{x.max()}")
    return x.astype(np.int64)


async def _layer(driver, layer, inputs: np.ndarray, want_acc: bool):
    """ACC (when asked or for the last layer) and OUT of one layer for every image."""
    p = driver.p
    R, C = p.rows, p.cols
    n = inputs.shape[0]
    padded = np.zeros((n, layer.row_tiles * R), np.int64)
    padded[:, :layer.inputs] = inputs
    acc = np.zeros((n, layer.col_tiles * C), np.int64) if want_acc or not layer.binarized else None
    out = np.zeros((n, layer.col_tiles * C), np.uint8) if layer.binarized else None

    async def run_image(i, ct):
        for rt in range(layer.row_tiles):
            if layer.row_tiles > 1:
                await driver.write_weights(layer.weights[rt, ct])
            x = padded[i, rt * R:(rt + 1) * R]
            if layer.input_encoding == "bit":
                await driver.write_input_bits(x)
            else:
                await driver.write_input(x, planes=layer.planes)
            await driver.run(planes=layer.planes, accumulate=rt > 0)
        cols = slice(ct * C, (ct + 1) * C)
        if acc is not None:
            acc[i, cols] = await driver.read_acc()
        if out is not None:
            out[i, cols] = await driver.read_out()

    for ct in range(layer.col_tiles):
        if layer.binarized:
            await driver.write_thresholds(layer.thresh[ct], layer.flip[ct])
        if layer.row_tiles == 1:
            # One weight tile serves every image; with several row tiles the tiles must
            # alternate per image, because ACC holds one image's partial sum.
            await driver.write_weights(layer.weights[0, ct])
        for i in range(n):
            await run_image(i, ct)
    return acc, out


async def run_network(driver, model, images, *, return_trace: bool = False):
    """Classify ``images`` with the exported network ``model`` on ``driver``'s macro.

    Parameters
    ----------
    driver : verif.driver.MacroDriver
    model : models.export.FoldedNet, or a path accepted by ``models.export.load_folded``
    images : array_like of int, shape (N, inputs) or (inputs,)
        First-layer inputs, ``0 .. 2^planes - 1`` (already preprocessed).
    return_trace : bool
        Also return, per layer, ``acc`` (N, outputs) and, for hidden layers, ``y``
        (N, outputs), as ``infer_folded(..., return_trace=True)`` does. Reading the
        hidden layers' ACC costs C extra bus reads per image and column tile.

    Returns
    -------
    predictions : ndarray (N,) int64, and the trace when asked for.

    Raises
    ------
    ValueError
        The network does not fit the macro (``models.export.check_fits``) or the images
        have the wrong shape or range; nothing is written then.
    """
    net = model if isinstance(model, FoldedNet) else load_folded(os.fspath(model))
    check_fits(net, driver.p)
    inputs = _check_images(net, images)
    trace = []
    scores = None
    for layer in net.layers:
        acc, out = await _layer(driver, layer, inputs, return_trace)
        if layer.binarized:
            y = out[:, :layer.outputs]
            trace.append(dict(acc=acc[:, :layer.outputs], y=y) if return_trace else dict(y=y))
            inputs = y.astype(np.int64)
        else:
            scores = acc[:, :layer.outputs]
            trace.append(dict(acc=scores))
    predictions = np.argmax(scores, axis=1).astype(np.int64)
    return (predictions, trace) if return_trace else predictions
