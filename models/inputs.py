"""The files the commands read, checked: exported models and IDX image/label pairs.

``python -m models eval|sweep`` and ``python -m fpga run`` read the same files the same
way through these functions; every problem is a :class:`models.cmdline.UsageError`
naming the option, the file and what is wrong (one line, exit status 2):

* :func:`load_model`: ``NAME``, ``NAME.json`` or ``NAME.npz`` through
  :func:`models.export.load_folded` (JSON Schema, array headers, no pickles), and the
  macro it is mapped for must be one the generator builds (``MacroParams``);
* :func:`load_images_labels`: two IDX files with at least one image, integer pixels,
  integer labels that are classes of the model, as many labels as images, and the
  ``--range`` inside the file;
* :func:`model_inputs`: raw images to the first layer's integers exactly as the model
  was trained (``preprocessing`` in its JSON: deskew, downsampling, quantisation with
  its normalisation and contrast). Images must have the size the model
  records (``preprocessing.image_shape``); other sizes are refused, never resized.
  A model without a preprocessing record takes images that already are its inputs
  (``inputs`` pixels in ``0 .. 2^planes - 1``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cmdline import UsageError, check_input_file, one_line
from .datasets import deskew, downsample, load_idx, quantize

__all__ = ["load_model", "load_images", "load_images_labels", "model_inputs", "training_overlap",
           "DIGITS_MAX"]

#: Largest pixel value of scikit-learn's 8x8 digits (their 0..16 scale).
DIGITS_MAX = 16


def load_model(text, option: str = "--model"):
    """The :class:`models.export.FoldedNet` at ``text`` (NAME, NAME.json or NAME.npz).

    Raises
    ------
    UsageError
        The file is missing, damaged or inconsistent (:func:`models.export.load_folded`),
        or its macro (``rows``, ``cols``, ``input_bits``, the accumulator width it
        needs) is not one the generator builds.
    """
    from .export import load_folded
    from .params import MacroParams

    if str(text).strip() == "" or "\0" in str(text):
        raise UsageError(f"the model name must be NAME, NAME.json or NAME.npz, not {text!r}",
                         option)
    try:
        net = load_folded(text)
    except ValueError as exc:
        raise UsageError(one_line(exc), option) from None
    try:
        p = MacroParams(net.rows, net.cols, input_bits=max(net.input_bits, net.layers[0].planes))
        if p.acc_bits < net.min_acc_bits:
            MacroParams(net.rows, net.cols, input_bits=p.input_bits, acc_bits=net.min_acc_bits)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{text}: the model is mapped for a macro the generator cannot build: "
                         f"{one_line(exc)}", option) from None
    return net


def _load_idx(path, option: str, ndims: tuple, what: str) -> np.ndarray:
    path = check_input_file(path, option, what="IDX file")
    try:
        array = load_idx(path, ndim=ndims)
    except ValueError as exc:
        raise UsageError(one_line(exc), option) from None
    if len(array) == 0:
        raise UsageError(f"{path} holds 0 {what}; give a file with at least one", option)
    if 0 in array.shape[1:]:
        raise UsageError(f"{path} holds {what} of shape {array.shape[1:]}; each needs at "
                         f"least one value", option)
    if not np.issubdtype(array.dtype, np.integer):
        raise UsageError(f"{path}: {what} must be integers (IDX type 0x08, 0x09, 0x0B or "
                         f"0x0C), not {array.dtype}", option)
    return array


def _select(x, selection, images):
    if selection is None:
        return x
    start, stop = selection
    if stop > len(x):
        raise UsageError(f"{start}:{stop} exceeds the {len(x)} images of {images} "
                         f"(STOP at most {len(x)})", "--range")
    return x[start:stop]


def load_images(images, *, selection=None, image_ndims=(3,)) -> np.ndarray:
    """Images ``(N, ...)`` of one IDX file, ``selection`` as in :func:`load_images_labels`."""
    return _select(_load_idx(images, "--images", image_ndims, "images"), selection, images)


def load_images_labels(images, labels, *, classes: int, selection=None,
                       image_ndims=(3,)) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, ...)`` and labels ``(N,)`` int64 from two IDX files.

    Parameters
    ----------
    images, labels : path
    classes : int
        Labels must be in ``0 .. classes - 1``.
    selection : (int, int) or None
        ``(start, stop)`` of ``--range``: images ``start .. stop - 1`` only.
    image_ndims : tuple of int
        Dimensions an image file may have (3: ``(N, H, W)``; 2 also takes ``(N, pixels)``).

    Raises
    ------
    UsageError
        Naming ``--images``, ``--labels`` or ``--range``.
    """
    x = _load_idx(images, "--images", image_ndims, "images")
    y = _load_idx(labels, "--labels", (1,), "labels")
    if len(x) != len(y):
        raise UsageError(f"{labels} has {len(y)} labels, {images} has {len(x)} images", "--labels")
    bad = (y < 0) | (y >= classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise UsageError(f"{labels}: label {int(y[i])} of image {i} is not a class of the "
                         f"model (0..{classes - 1})", "--labels")
    return _select(x, selection, images), _select(y, selection, images).astype(np.int64)


def model_inputs(net, images: np.ndarray, images_path) -> np.ndarray:
    """The first layer's inputs ``(N, inputs)`` int64 from raw ``images``.

    Follows the model's ``preprocessing`` record: scikit-learn digits (8x8, values
    0..16) are rescaled or min-max normalised to the first layer's bits; MNIST-format
    images (the recorded ``image_shape``, values 0..255) are deskewed (when the record
    has ``deskew``), area-downsampled to the recorded size and quantised (with the
    recorded ``contrast``). Without a record, the images must already be the inputs.
    Images of another size are refused, not resized.

    Raises
    ------
    UsageError
        Naming ``--images``: wrong image size, pixel values out of range.
    """
    first = net.layers[0]
    bits, inputs = first.planes, first.inputs
    pre = net.meta.get("preprocessing") or {}
    shape = tuple(pre.get("image_shape") or ())
    got = tuple(images.shape[1:])
    if not shape:
        top = (1 << bits) - 1
        if int(np.prod(got)) != inputs:
            raise UsageError(f"{images_path}: images of {'x'.join(map(str, got))} pixels do not "
                             f"fit the model's {inputs} inputs (it records no preprocessing, so "
                             f"images must already be its inputs)", "--images")
        _check_values(images, top, images_path, "the model's inputs")
        return images.reshape(len(images), -1).astype(np.int64)
    if got != shape:
        raise UsageError(f"{images_path}: images are {'x'.join(map(str, got))}, the model takes "
                         f"{'x'.join(map(str, shape))} images (preprocessing.image_shape); "
                         f"other sizes are not resized", "--images")
    normalisation = pre.get("normalisation", "minmax")
    if pre.get("source") == "sklearn-digits":
        _check_values(images, DIGITS_MAX, images_path, "scikit-learn digits")
        raw = images.astype(np.int64)
        if normalisation == "minmax":
            x = quantize(raw, bits, normalisation="minmax")
        else:
            full = (1 << bits) - 1
            x = (2 * raw * full + DIGITS_MAX) // (2 * DIGITS_MAX)
    else:
        _check_values(images, 255, images_path, "8-bit images")
        if pre.get("deskew"):
            images = deskew(images)
        size = pre.get("downsample") or list(shape)
        small = downsample(images.astype(np.int64), int(size[0]), int(size[1])) \
            if tuple(size) != shape else images.astype(np.float64)
        x = quantize(small, bits, normalisation=normalisation, full_scale=255.0,
                     contrast=pre.get("contrast", 1.0))
    return x.reshape(len(x), -1).astype(np.int64)


def _check_values(images, top: int, path, what: str) -> None:
    lo, hi = int(images.min()), int(images.max())
    if lo < 0 or hi > top:
        raise UsageError(f"{path}: pixel values {lo}..{hi} are outside 0..{top} ({what})",
                         "--images")


def training_overlap(net, images_path, selection) -> str | None:
    """A note when the images ``selection = (start, stop)`` of ``images_path`` include
    the ones the model was trained on.

    The model records the IDX files and the ``train`` range it was trained on
    (``preprocessing.files``, ``preprocessing.train``); accuracy on them overstates what
    it does on new images. Returns None when there is no overlap or no record.
    """
    pre = net.meta.get("preprocessing") or {}
    files, train = pre.get("files") or [], pre.get("train")
    if not files or not train or Path(str(files[0])).name != Path(str(images_path)).name:
        return None
    start, stop = selection
    lo, hi = max(start, train[0]), min(stop, train[1])
    if lo >= hi:
        return None
    val = pre.get("val")
    hint = f"; --range {val[0]}:{val[1]} selects its validation images" if val else ""
    return (f"note: images {lo}..{hi - 1} of {Path(str(images_path)).name} are among the "
            f"model's training images {train[0]}..{train[1] - 1}{hint}")
