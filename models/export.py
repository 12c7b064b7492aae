"""Batch-norm folding, mapping onto macro tiles, the exported file format and integer inference.

A trained :class:`models.bnn.BNN` becomes a :class:`FoldedNet`: per layer the stored
weight bits, split into row tiles and column tiles of an R x C macro, and per column an
integer threshold ``theta`` and a ``flip`` bit, such that the macro's rule
``OUT = (ACC >= theta) XOR flip`` gives exactly the float model's binary activation on
every reachable integer ``ACC``. :func:`infer_folded` runs a folded network with the
macro's exact integer semantics for ideal hardware (bit-planes, row-tile accumulation,
threshold, flip, argmax); the RTL and the FPGA must reproduce it image for image.
``docs/MODEL_FORMAT.md`` describes the files field by field.

Folding (hidden layer, column c; ``acc`` is the integer the macro accumulates, the same
quantity the float model calls ``z``, see :mod:`models.bnn`). The float decision is
``d(acc) = bn_affine(acc, gamma, beta, mean, var, eps) >= 0`` evaluated in float64.

* ``gamma > 0``: ``d`` is non-decreasing in ``acc`` and true from
  ``t = mean - beta * sqrt(var + eps) / gamma`` on, so ``theta = ceil(t)``, ``flip = 0``.
* ``gamma < 0``: ``d`` is true up to ``t``, i.e. ``d(acc) = not (acc >= floor(t) + 1)``,
  so ``theta = floor(t) + 1``, ``flip = 1``.
* ``gamma == 0``: ``d = (beta >= 0)`` for every ``acc``: ``theta = acc_min``,
  ``flip = 0`` when ``beta >= 0`` (always 1), else ``flip = 1`` (always 0).

Because float64 rounding can put ``t`` one step off an exact integer boundary, ``theta``
is then moved by whole steps until ``d(theta - 1)`` and ``d(theta)`` differ in the right
direction (rounding is monotone, so ``d`` stays monotone and this finds the exact
transition). Finally ``theta`` is clamped to ``[acc_min, acc_max + 1]``, the reachable
range of the column plus one, which changes no reachable decision and bounds the width
the THRESH register needs.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from .bnn import BNN, bn_affine
from .params import CONTRACT_VERSION, MAX_ACC_BITS, signed_bits_for

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "FoldedLayer", "FoldedNet", "fold_threshold",
    "acc_range", "fold_model", "tile_weights", "export_model", "infer_folded",
    "layer_acc", "macro_hook", "save_folded", "load_folded", "check_fits",
    "Readout", "ModelFileError", "model_files",
]

FORMAT_NAME = "cim-bnn-model"
#: 2: figures recorded on sampled chips (``accuracy.val_chip``) use the counter-based
#: read noise of :mod:`models.sampler` and are what ``models eval`` reproduces; 1: the
#: same fields, with read noise from a shared generator (not reproducible).
FORMAT_VERSION = 2
#: Versions this reader loads (the arrays and fields are the same).
READ_VERSIONS = (1, 2)

#: ``readout(layer, row_tile, col_tile, plane, plane_bits, weight_bits) -> v``:
#: ``plane_bits`` (N, R) uint8 is bit ``plane`` of the tile's inputs, ``weight_bits``
#: (R, C) uint8 the tile's stored weights; returns the (N, C) readouts: integers, or floats
#: for a chip whose trim subtracts a mean of several reads (``ChipReadout(trim=T)``). The
#: ideal readout is ``plane_bits @ (2 * weight_bits - 1)``.
Readout = Callable[[int, int, int, int, np.ndarray, np.ndarray], np.ndarray]


# --- folding ---------------------------------------------------------------------------

def acc_range(weight_bits: np.ndarray, in_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column the smallest and largest reachable ``acc = sum_r x_r w_rc`` for
    inputs ``x_r`` in ``0..in_max`` and weights ``w = 2 * bit - 1``."""
    wb = np.asarray(weight_bits).astype(np.int64)
    pos = wb.sum(axis=0)
    neg = wb.shape[0] - pos
    return -in_max * neg, in_max * pos


def fold_threshold(gamma, beta, mean, var, eps, acc_min, acc_max) -> tuple[np.ndarray, np.ndarray]:
    """Integer ``theta`` (int64) and ``flip`` (uint8) per column with
    ``((acc >= theta) XOR flip) == (bn_affine(acc, ...) >= 0)`` for every integer
    ``acc`` in ``[acc_min, acc_max]`` (see the module docstring for the derivation).

    All arguments are per-column arrays (``eps`` a scalar); evaluated in float64.
    """
    gamma, beta, mean, var = (np.asarray(a, dtype=np.float64) for a in (gamma, beta, mean, var))
    lo = np.asarray(acc_min, dtype=np.int64) + np.zeros(gamma.shape, np.int64)
    hi = np.asarray(acc_max, dtype=np.int64) + np.zeros(gamma.shape, np.int64)
    eps = float(eps)
    for name, a in (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"batch-norm {name} must be finite")
    if np.any(var + eps <= 0):
        raise ValueError("batch-norm var + eps must be positive")

    def decide(acc):
        return bn_affine(acc.astype(np.float64), gamma, beta, mean, var, eps) >= 0

    pos, neg = gamma > 0, gamma < 0
    flip = neg.astype(np.uint8)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean - beta * np.sqrt(var + eps) / np.where(gamma == 0, 1.0, gamma)
    t = np.clip(t, lo - 2.0, hi + 2.0)          # keep the integer conversion finite
    theta = np.where(pos, np.ceil(t), np.floor(t) + 1).astype(np.int64)
    theta = np.clip(theta, lo, hi + 1)
    # On the monotone decision the output bit is "acc >= theta" (gamma > 0) or
    # "not (acc >= theta)" (gamma < 0): walk theta to the exact float64 transition.
    # For gamma > 0 we need d(theta-1) false and d(theta) true; for gamma < 0 the reverse.
    active = pos | neg
    want = np.where(pos, True, False)           # value of d at theta (and at all acc >= theta)
    for _ in range(int(np.max(hi - lo, initial=0)) + 2):
        down = active & (theta > lo) & (decide(theta - 1) == want)
        up = active & ~down & (theta <= hi) & (decide(theta) != want)
        if not (down.any() or up.any()):
            break
        theta = theta - down + up
    zero = ~active
    theta = np.where(zero, lo, theta)
    flip = np.where(zero, (beta < 0).astype(np.uint8), flip).astype(np.uint8)
    return theta.astype(np.int64), flip


def fold_model(model: BNN) -> list[dict]:
    """Untiled folded layers of ``model``: per layer ``weight_bits`` (n_in, n_out) uint8,
    ``in_max``, ``acc_min``/``acc_max`` per column, and for hidden layers ``theta`` and
    ``flip`` per column."""
    layers = []
    for l in range(model.layers):
        wb = model.weight_bits(l)
        in_max = (1 << model.input_bits) - 1 if l == 0 else 1
        lo, hi = acc_range(wb, in_max)
        d = dict(weight_bits=wb, in_max=in_max, acc_min=lo, acc_max=hi,
                 planes=model.input_bits if l == 0 else 1)
        if model.is_hidden(l):
            d["theta"], d["flip"] = fold_threshold(**model.bn(l), acc_min=lo, acc_max=hi)
        layers.append(d)
    return layers


# --- mapping onto macro tiles ----------------------------------------------------------

def tile_weights(weight_bits: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Split ``(n_in, n_out)`` bits into ``(row_tiles, col_tiles, rows, cols)``.

    Padding rows and columns hold bit 0 (weight -1). A padded row always sees input 0,
    so it adds nothing whatever its weight; a padded column's output is never read.
    """
    wb = np.asarray(weight_bits, dtype=np.uint8)
    n_in, n_out = wb.shape
    rt, ct = -(-n_in // rows), -(-n_out // cols)
    padded = np.zeros((rt * rows, ct * cols), np.uint8)
    padded[:n_in, :n_out] = wb
    return padded.reshape(rt, rows, ct, cols).transpose(0, 2, 1, 3).copy()


def _tile_columns(values: np.ndarray, cols: int, dtype) -> np.ndarray:
    values = np.asarray(values)
    ct = -(-len(values) // cols)
    out = np.zeros(ct * cols, dtype)
    out[:len(values)] = values
    return out.reshape(ct, cols)


@dataclasses.dataclass
class FoldedLayer:
    """One layer mapped onto the macro.

    Members
    -------
    inputs, outputs : int
        Neurons in and out (``outputs`` real columns; the rest of the last column tile
        is padding).
    planes : int
        NPLANES of every RUN of this layer: the first layer's input bits, 1 afterwards.
    input_encoding : {"unsigned", "bit"}
        ``unsigned``: integers ``0 .. 2^planes - 1``; ``bit``: the previous layer's OUT
        bits ``y`` (activation ``2y - 1``) in plane 0.
    binarized : bool
        True: OUT = ``(ACC >= thresh) XOR flip`` feeds the next layer; False: the raw
        ACC of the first ``outputs`` columns is the class score (last layer).
    weights : ndarray (row_tiles, col_tiles, rows, cols) uint8
        Stored bits, 1 = +1; ``weights[i, j, r, c]`` is the weight of input
        ``i * rows + r`` in neuron ``j * cols + c``.
    thresh : ndarray (col_tiles, cols) int64 or None
    flip : ndarray (col_tiles, cols) uint8 or None
    acc_min, acc_max : int
        Reachable accumulator range over all columns (for the ACC width).
    """

    inputs: int
    outputs: int
    planes: int
    input_encoding: str
    binarized: bool
    weights: np.ndarray
    thresh: np.ndarray | None
    flip: np.ndarray | None
    acc_min: int
    acc_max: int

    @property
    def row_tiles(self) -> int:
        return self.weights.shape[0]

    @property
    def col_tiles(self) -> int:
        return self.weights.shape[1]


@dataclasses.dataclass
class FoldedNet:
    """A network mapped onto an R x C macro with B input bits.

    Members
    -------
    rows, cols, input_bits : int
        The macro parameters the mapping needs (R, C, B).
    layers : list of FoldedLayer
    meta : dict
        JSON-ready extras: ``preprocessing``, ``training``, ``accuracy``, ...
    """

    rows: int
    cols: int
    input_bits: int
    layers: list
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def classes(self) -> int:
        return self.layers[-1].outputs

    @property
    def min_acc_bits(self) -> int:
        """Smallest ACC width A holding every reachable accumulator value and theta
        (which is at most ``acc_max + 1``)."""
        mag = max(max(-l.acc_min, l.acc_max + 1) for l in self.layers)
        return signed_bits_for(mag)


def export_model(model: BNN, rows: int, cols: int, *, input_bits: int | None = None,
                 meta: dict | None = None) -> FoldedNet:
    """Fold ``model``'s batch norm and map every layer onto an ``rows x cols`` macro.

    Parameters
    ----------
    model : BNN
    rows, cols : int
        Macro size R x C (each >= 1).
    input_bits : int or None
        The macro's B (default: the model's input bits; must be at least those).
    meta : dict or None
        Stored in the JSON (preprocessing, training config, measured accuracy, ...);
        ``meta["model"]`` defaults to the float model's ``sizes``, ``input_bits`` and
        ``bn_eps``.
    """
    for name, v in (("rows", rows), ("cols", cols)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an integer, not {v!r}")
        if v < 1:
            raise ValueError(f"{name} must be >= 1, not {v}")
    input_bits = model.input_bits if input_bits is None else input_bits
    if input_bits < model.input_bits:
        raise ValueError(f"input_bits must be >= the model's {model.input_bits} input bits, "
                         f"not {input_bits}")
    layers = []
    for l, d in enumerate(fold_model(model)):
        hidden = "theta" in d
        layers.append(FoldedLayer(
            inputs=d["weight_bits"].shape[0], outputs=d["weight_bits"].shape[1],
            planes=d["planes"], input_encoding="unsigned" if l == 0 else "bit",
            binarized=hidden, weights=tile_weights(d["weight_bits"], rows, cols),
            thresh=_tile_columns(d["theta"], cols, np.int64) if hidden else None,
            flip=_tile_columns(d["flip"], cols, np.uint8) if hidden else None,
            acc_min=int(d["acc_min"].min()), acc_max=int(d["acc_max"].max())))
    meta = dict(meta or {})
    meta.setdefault("model", dict(sizes=list(model.sizes), input_bits=model.input_bits,
                                  bn_eps=model.bn_eps))
    return FoldedNet(rows, cols, input_bits, layers, meta)


def check_fits(net: FoldedNet, params) -> None:
    """Raise ValueError when ``net`` cannot run on the macro ``params`` (a MacroParams)."""
    if (net.rows, net.cols) != (params.rows, params.cols):
        raise ValueError(f"model is mapped for a {net.rows}x{net.cols} macro, "
                         f"not {params.rows}x{params.cols}")
    if net.layers[0].planes > params.input_bits:
        raise ValueError(f"model needs input_bits >= {net.layers[0].planes}, "
                         f"the macro has {params.input_bits}")
    if params.acc_bits < net.min_acc_bits:
        raise ValueError(f"model needs acc_bits >= {net.min_acc_bits}, "
                         f"the macro has {params.acc_bits}")


# --- integer inference -------------------------------------------------------------------

def check_images(images, inputs: int, planes: int) -> np.ndarray:
    """``images`` as an (N, inputs) int64 array (one image may be given as a 1-D row),
    after checking its shape and that every value is a ``planes``-bit input: one line per
    problem, ValueError for a shape or range, TypeError for non-integers."""
    x = np.asarray(images)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != inputs:
        raise ValueError(f"images must have shape (N, {inputs}), not {np.shape(images)}")
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"images must hold integers, not {x.dtype}")
    if x.size and (x.min() < 0 or x.max() >= 1 << planes):
        raise ValueError(f"images must be in 0..{(1 << planes) - 1} ({planes}-bit inputs), "
                         f"not values in {x.min()}..{x.max()}")
    return x.astype(np.int64)


def layer_acc(inputs: np.ndarray, tiles: np.ndarray, planes: int, *, layer: int = 0,
              readout: Readout | None = None, acc_bits: int | None = None) -> np.ndarray:
    """Accumulators ``(N, col_tiles * cols)`` of one layer on the macro: int64, or
    float64 when ``readout`` returns floats (a chip trimmed by the mean of several reads).

    Per column tile: for each row tile in order (RUN, then RUN with ACCUMULATE), the
    planes ``planes-1 .. 0`` are read and combined Horner-style ``tile = 2 tile + v``;
    ``ACC = clamp(ACC + tile)`` to ``acc_bits`` signed bits when given. ``inputs`` holds
    the layer's real inputs (N, n_in), integers in ``0 .. 2^planes - 1``; the padding
    rows of the last row tile get input 0.
    """
    row_tiles, col_tiles, rows, cols = tiles.shape
    n = inputs.shape[0]
    padded = np.zeros((n, row_tiles * rows), np.int64)
    padded[:, :inputs.shape[1]] = inputs
    lo, hi = (-(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1) if acc_bits else (None, None)
    acc = []
    for ct in range(col_tiles):
        a = np.zeros((n, cols), np.int64)
        for rt in range(row_tiles):
            xt = padded[:, rt * rows:(rt + 1) * rows]
            wbits = tiles[rt, ct]
            # float64 matmul is exact here (|sums| <= 1024) and uses BLAS.
            w = 2.0 * wbits - 1.0
            tile = np.zeros((n, cols), np.int64)
            for b in range(planes - 1, -1, -1):
                bits = ((xt >> b) & 1).astype(np.uint8)
                if readout is None:
                    v = np.rint(bits.astype(np.float64) @ w).astype(np.int64)
                else:
                    v = np.asarray(readout(layer, rt, ct, b, bits, wbits))
                    if v.shape != (n, cols):
                        raise ValueError(f"readout returned shape {v.shape}, expected {(n, cols)}")
                    if not np.issubdtype(v.dtype, np.floating):
                        v = v.astype(np.int64)
                tile = 2 * tile + v
            a = a + tile
            if acc_bits:
                a = np.clip(a, lo, hi)
        acc.append(a)
    return np.stack(acc, axis=1).reshape(n, col_tiles * cols)


def infer_folded(net: FoldedNet, x, *, readout: Readout | None = None,
                 acc_bits: int | None = None, return_trace: bool = False):
    """Integer inference with the macro's semantics; the reference for RTL and FPGA.

    For each layer: :func:`layer_acc`; hidden layers
    ``y = (acc >= thresh) XOR flip`` (uint8), of which the first ``outputs`` columns are
    the next layer's inputs (plane 0); the last layer's first ``outputs`` accumulators
    are the class scores and the prediction is their argmax, the **lowest index** among
    equal maxima.

    Parameters
    ----------
    net : FoldedNet
    x : ndarray (N, inputs)
        Integers in ``0 .. 2^planes - 1`` of the first layer.
    readout : callable or None
        Replaces the ideal per-plane readout (:data:`Readout`), e.g. by a chip model.
    acc_bits : int or None
        Clamp ACC to this signed width as the macro does (None: no clamp, which is
        equivalent whenever ``acc_bits >= net.min_acc_bits``).
    return_trace : bool
        Also return, per layer, a dict with ``acc`` (N, outputs) and, for hidden
        layers, ``y`` (N, outputs).

    Returns
    -------
    predictions : ndarray (N,) int64, and the trace when asked for.
    """
    x = np.asarray(x)
    first = net.layers[0]
    if x.ndim != 2 or x.shape[1] != first.inputs:
        raise ValueError(f"x must have shape (N, {first.inputs}), not {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"x must hold integers, not {x.dtype}")
    if x.size and (x.min() < 0 or x.max() >= 1 << first.planes):
        raise ValueError(f"x must be in 0..{(1 << first.planes) - 1}, "
                         f"not values in {x.min()}..{x.max()}")
    inp = x.astype(np.int64)
    trace = []
    scores = None
    for l, layer in enumerate(net.layers):
        acc = layer_acc(inp, layer.weights, layer.planes, layer=l, readout=readout,
                        acc_bits=acc_bits)
        if layer.binarized:
            y = ((acc >= layer.thresh.reshape(-1)).astype(np.uint8) ^ layer.flip.reshape(-1))
            inp = y[:, :layer.outputs].astype(np.int64)
            trace.append(dict(acc=acc[:, :layer.outputs], y=y[:, :layer.outputs]))
        else:
            scores = acc[:, :layer.outputs]
            trace.append(dict(acc=scores))
    predictions = np.argmax(scores, axis=1).astype(np.int64)
    return (predictions, trace) if return_trace else predictions


def macro_hook(rows: int, cols: int, input_bits: int, readout: Readout | None = None,
               acc_bits: int | None = None):
    """A :mod:`models.bnn` forward hook that computes every layer's ``acc`` on an
    ``rows x cols`` macro through ``readout`` (chip-in-the-loop training/evaluation).

    The layer's weights are tiled as :func:`tile_weights` does; the first layer reads
    ``input_bits`` planes, later layers one. Column tiles map neuron ``j`` to column
    ``j % cols`` of column tile ``j // cols``, as in the exported model, so per-column
    non-idealities land on the same neurons in training and deployment.
    """
    def hook(layer, inputs, weight_bits, acc):
        planes = input_bits if layer == 0 else 1
        tiles = tile_weights(weight_bits, rows, cols)
        out = layer_acc(inputs.astype(np.int64), tiles, planes, layer=layer, readout=readout,
                        acc_bits=acc_bits)
        return out[:, :weight_bits.shape[1]]
    return hook


# --- files -----------------------------------------------------------------------------

def _paths(path) -> tuple[Path, Path]:
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise ModelFileError(f"{str(path)!r} names a folder, not a model (NAME, NAME.json or "
                             f"NAME.npz)")
    if path.suffix in (".json", ".npz"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".json"), path.with_name(path.name + ".npz")


def model_files(path) -> tuple[Path, Path]:
    """``NAME.json`` and ``NAME.npz`` of the model named ``NAME``, ``NAME.json`` or
    ``NAME.npz`` (a ``ModelFileError`` for a folder name)."""
    return _paths(path)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def save_folded(net: FoldedNet, path) -> tuple[Path, Path]:
    """Write ``NAME.json`` and ``NAME.npz`` (``path`` is NAME, with or without suffix)."""
    jpath, npath = _paths(path)
    arrays, layers = {}, []
    for i, layer in enumerate(net.layers):
        names = dict(weights=f"layer{i}_weights")
        arrays[names["weights"]] = layer.weights.astype(np.uint8)
        if layer.binarized:
            names.update(thresh=f"layer{i}_thresh", flip=f"layer{i}_flip")
            arrays[names["thresh"]] = layer.thresh.astype(np.int64)
            arrays[names["flip"]] = layer.flip.astype(np.uint8)
        layers.append(dict(
            index=i, inputs=layer.inputs, outputs=layer.outputs, planes=layer.planes,
            input_encoding=layer.input_encoding, output="binary" if layer.binarized else "acc",
            row_tiles=layer.row_tiles, col_tiles=layer.col_tiles,
            acc_min=layer.acc_min, acc_max=layer.acc_max, arrays=names))
    doc = dict(
        format=FORMAT_NAME, version=FORMAT_VERSION, contract_version=list(CONTRACT_VERSION),
        arrays_file=npath.name,
        macro=dict(rows=net.rows, cols=net.cols, input_bits=net.input_bits,
                   min_acc_bits=net.min_acc_bits),
        classes=net.classes,
        prediction="argmax of the last layer's acc over its first `outputs` columns; "
                   "ties go to the lowest index",
        layers=layers, **_jsonable(net.meta))
    jpath.parent.mkdir(parents=True, exist_ok=True)
    np.savez(npath, **arrays)
    jpath.write_text(json.dumps(doc, indent=1) + "\n")
    return jpath, npath


class ModelFileError(ValueError):
    """A model file that cannot be used; the message is one line naming the file."""


_META_RESERVED = {"format", "version", "contract_version", "arrays_file", "macro", "classes",
                  "prediction", "layers"}


def load_folded(path) -> FoldedNet:
    """Read ``NAME.json`` + ``NAME.npz`` and validate them.

    ``NAME.json`` is checked against ``models/schemas/model.schema.json`` (structure, types,
    ranges), then across fields: tiling, layer chaining, encodings, the preprocessing
    record against the first layer. ``NAME.npz`` is read member by member without
    pickles: each array's header (shape and integer dtype) is checked before its data
    are read, bits must be 0/1 and thresholds inside the layer's ACC range.

    Raises
    ------
    ValueError
        One line naming the file and the problem: missing file, a folder in its place,
        unparsable or damaged file (truncated, byte-flipped, empty, not a zip archive),
        wrong format or version, a field missing, mistyped or out of range, inconsistent
        tiling, arrays missing or of the wrong shape or type, bits other than 0/1,
        thresholds outside the ACC range.
    """
    from .schema import SchemaError, check, load_json

    jpath, npath = _paths(path)

    def fail(msg, where=jpath):
        raise ModelFileError(f"{where}: {msg}")

    try:
        doc = load_json(jpath)
    except SchemaError as exc:
        raise ModelFileError(str(exc)) from None
    if not isinstance(doc, dict):
        fail(f"the top level must be a JSON object, not {type(doc).__name__}")
    if doc.get("format") != FORMAT_NAME:
        fail(f"format must be {FORMAT_NAME!r}, not {doc.get('format')!r}")
    if doc.get("version") not in READ_VERSIONS or isinstance(doc.get("version"), bool):
        fail(f"version {doc.get('version')!r} is not supported (this reader: "
             f"{', '.join(map(str, READ_VERSIONS))})")
    try:
        check(doc, "model", jpath)
    except SchemaError as exc:
        raise ModelFileError(str(exc)) from None

    macro = doc["macro"]
    rows, cols, input_bits = macro["rows"], macro["cols"], macro["input_bits"]
    layer_docs = doc["layers"]
    if doc.get("arrays_file", npath.name) != npath.name:
        fail(f"arrays_file {doc.get('arrays_file')!r} does not match {npath.name!r}")

    shapes = {}
    for i, ld in enumerate(layer_docs):
        where = f"layers[{i}]"
        n_in, n_out, planes = ld["inputs"], ld["outputs"], ld["planes"]
        rt, ct = ld["row_tiles"], ld["col_tiles"]
        last = i == len(layer_docs) - 1
        enc, out_kind = ld["input_encoding"], ld["output"]
        if enc != ("unsigned" if i == 0 else "bit"):
            fail(f"{where}.input_encoding must be {'unsigned' if i == 0 else 'bit'!r}, not {enc!r}")
        if out_kind != ("acc" if last else "binary"):
            fail(f"{where}.output must be {'acc' if last else 'binary'!r}, not {out_kind!r}")
        if i == 0 and planes > input_bits:
            fail(f"{where}.planes must be <= macro.input_bits={input_bits}, not {planes}")
        if i > 0 and planes != 1:
            fail(f"{where}.planes must be 1 for bit inputs, not {planes}")
        if i > 0 and n_in != layer_docs[i - 1]["outputs"]:
            fail(f"{where}.inputs must equal layers[{i - 1}].outputs="
                 f"{layer_docs[i - 1]['outputs']}, not {n_in}")
        if rt != -(-n_in // rows) or ct != -(-n_out // cols):
            fail(f"{where} tiling {rt}x{ct} does not match ceil({n_in}/{rows}) x ceil({n_out}/{cols})")
        names = ld["arrays"]
        shapes[names["weights"]] = ((rt, ct, rows, cols), "bits", where)
        if not last:
            for key in ("thresh", "flip"):
                if key not in names:
                    fail(f"{where}.arrays: missing {key!r} (a binary layer has thresh and flip)")
            shapes[names["thresh"]] = ((ct, cols), "int", where)
            shapes[names["flip"]] = ((ct, cols), "bits", where)
    classes = doc.get("classes", layer_docs[-1]["outputs"])
    if classes != layer_docs[-1]["outputs"]:
        fail(f"classes={classes!r} differs from the last layer's {layer_docs[-1]['outputs']} outputs")
    _check_preprocessing(doc.get("preprocessing"), layer_docs[0], fail)

    if npath.is_dir():
        fail("is a folder, not an .npz file", npath)
    if not npath.exists():
        fail("no such file", npath)
    arrays = _read_npz(npath, shapes, fail)

    layers = []
    for i, ld in enumerate(layer_docs):
        last = i == len(layer_docs) - 1
        names = ld["arrays"]
        weights = arrays[names["weights"]].astype(np.uint8)
        thresh = flip = None
        if not last:
            # The range is checked on the stored values (as Python integers): a cast to
            # int64 first would wrap large unsigned ones into it.
            stored = arrays[names["thresh"]]
            real = stored.reshape(-1)[:ld["outputs"]]
            if int(real.min()) < ld["acc_min"] or int(real.max()) > ld["acc_max"] + 1:
                fail(f"array {names['thresh']} leaves the range "
                     f"[{ld['acc_min']}, {ld['acc_max'] + 1}]", npath)
            thresh = stored.astype(np.int64)
            flip = arrays[names["flip"]].astype(np.uint8)
        layers.append(FoldedLayer(ld["inputs"], ld["outputs"], ld["planes"], ld["input_encoding"],
                                  not last, weights, thresh, flip, ld["acc_min"], ld["acc_max"]))
    net = FoldedNet(rows, cols, input_bits, layers,
                    {k: v for k, v in doc.items() if k not in _META_RESERVED})
    if net.min_acc_bits > MAX_ACC_BITS:
        fail(f"needs {net.min_acc_bits} accumulator bits, more than the {MAX_ACC_BITS} a macro has")
    return net


def _check_preprocessing(pre, first: dict, fail) -> None:
    """The preprocessing record must produce the first layer's inputs."""
    if not pre:
        return
    bits = pre.get("input_bits")
    if bits is not None and bits != first["planes"]:
        fail(f"preprocessing.input_bits={bits} differs from layers[0].planes={first['planes']}")
    size = pre.get("downsample") or pre.get("image_shape")
    if size is not None and size[0] * size[1] != first["inputs"]:
        what = "downsample" if pre.get("downsample") else "image_shape"
        fail(f"preprocessing.{what} {size[0]}x{size[1]} gives {size[0] * size[1]} inputs, "
             f"layers[0] takes {first['inputs']}")
    if pre.get("source") == "mnist-idx" and not pre.get("downsample"):
        fail("preprocessing.downsample is missing: an mnist-idx model records its image size")


#: What reading an untrusted .npz can raise: zip damage, cut streams, bad .npy headers.
_NPZ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError,
               SyntaxError, TypeError, struct.error, NotImplementedError, OverflowError)


def _read_npz(npath: Path, shapes: dict, fail) -> dict:
    """``{name: array}`` of the arrays named in ``shapes`` (``name: (shape, kind, where)``),
    each checked for shape and integer type from its header before its data are read."""
    try:
        with open(npath, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        fail(f"cannot read ({' '.join(str(exc.strerror or exc).split())})", npath)
    if magic[:2] != b"PK":
        what = "an empty file" if not magic else "not a zip archive"
        fail(f"not an .npz file (numpy's zip archive of .npy arrays): {what}", npath)
    arrays = {}
    try:
        with zipfile.ZipFile(npath) as zf:
            members = set(zf.namelist())
            for name, (shape, kind, where) in shapes.items():
                member = f"{name}.npy"
                if member not in members:
                    fail(f"array {name!r} of {where} is missing", npath)
                with zf.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        got, _, dtype = np.lib.format.read_array_header_1_0(f)
                    else:
                        got, _, dtype = np.lib.format.read_array_header_2_0(f)
                if dtype.hasobject or dtype.kind not in "iu":
                    fail(f"array {name} must hold integers, not {dtype}", npath)
                if tuple(got) != shape:
                    fail(f"array {name} has shape {tuple(got)}, expected {shape}", npath)
                with zf.open(member) as f:
                    a = np.lib.format.read_array(f, allow_pickle=False)
                if kind == "bits" and a.size and (a.min() < 0 or a.max() > 1):
                    fail(f"array {name} must hold only 0 and 1", npath)
                arrays[name] = a
    except ModelFileError:
        raise
    except _NPZ_ERRORS as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        fail(f"not a readable .npz file, damaged or cut short ({reason})", npath)
    return arrays
