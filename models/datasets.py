"""Data sets for the BNN experiments: loading, downsampling, normalisation, quantisation.

Two sources:

* scikit-learn's bundled 8x8 digits (1797 images, values 0..16, no download), the
  embedded default;
* MNIST in the IDX format of the original distribution (gzip-compressed or not). The
  project's subset ``../shared/data/mnist/mnist-8k-{images-idx3,labels-idx1}-ubyte.gz``
  holds the first 8000 images of the MNIST *test* set; the experiments train on
  images 0..5999 and validate on 6000..7999 (say so wherever a figure is quoted).

The macro takes unsigned ``B``-bit inputs (one word line per pixel, one bit-plane per
input bit), so every image ends as an integer array in ``0 .. 2^B - 1``. The exact
pipeline for MNIST (the defaults of :func:`load_dataset`) is

1. :func:`downsample` 28x28 -> 10x10 by exact area averaging;
2. :func:`quantize` with per-image min-max normalisation to ``0 .. 2^B - 1``
   (``normalisation="minmax"``), which keeps the analog operating point of the array
   consistent from image to image: every image drives the same full input range
   whatever its stroke brightness or thickness.

Every function is deterministic and uses float64 only where stated, so the host side of
any backend (golden model, cocotb, FPGA) feeds the macro the same integers.
"""

from __future__ import annotations

import dataclasses
import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_MNIST_DIR", "MNIST_FILES", "NORMALISATIONS", "IDX_DTYPES",
    "Dataset", "load_idx", "save_idx", "load_mnist", "load_digits", "downsample",
    "area_weights", "quantize", "load_dataset", "affine_warp", "to_pixels", "deskew",
    "mnist_split",
]

#: The project's MNIST subset, ``../shared/data/mnist`` seen from the repository root.
DEFAULT_MNIST_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"
MNIST_FILES = ("mnist-8k-images-idx3-ubyte.gz", "mnist-8k-labels-idx1-ubyte.gz")

#: IDX element type codes (third magic byte) -> big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_IDX_CODES = {v: k for k, v in IDX_DTYPES.items()}

NORMALISATIONS = ("minmax", "none")


def _read_bytes(path: Path) -> bytes:
    """File content, gunzipped when it starts with the gzip magic 1f 8b."""
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        # gzip reports a cut-off stream as EOFError and a damaged one as BadGzipFile/zlib.error.
        reason = "truncated gzip stream" if isinstance(exc, EOFError) else f"corrupt gzip data ({exc})"
        raise ValueError(f"{path}: {reason}") from None


def load_idx(path, *, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzip-compressed or not.

    The header is two zero bytes, a type code (0x08 unsigned byte, 0x09 signed byte,
    0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then
    one big-endian uint32 per dimension; the data follow in C order, big-endian.
    Compression is detected by the gzip magic bytes ``1f 8b``, not by the file name.

    Parameters
    ----------
    path : str or Path
    ndim : int, tuple of int, or None
        Required number of dimensions (3 for images, 1 for labels), or the numbers
        allowed; None accepts any.

    Returns
    -------
    numpy.ndarray
        In native byte order (``uint8`` for MNIST).

    Raises
    ------
    ValueError
        One line naming the file and the problem: missing file, corrupt or truncated
        gzip stream, truncated header, wrong magic, unknown type code, wrong number of
        dimensions, or a data size that disagrees with the header.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, need at least 4)")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (magic {data[:4].hex(' ')}, "
                         f"expected 00 00 <type> <ndim>)")
    code, dims = data[2], data[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x} "
                         f"(known: {', '.join(f'0x{c:02x}' for c in IDX_DTYPES)})")
    if dims == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and dims not in allowed:
        raise ValueError(f"{path}: the header declares {dims} dimension(s) (the last byte of "
                         f"the magic {data[:4].hex(' ')}), expected "
                         f"{' or '.join(str(n) for n in allowed)} dimensions")
    header = 4 + 4 * dims
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, "
                         f"need {header} for {dims} dimension(s))")
    shape = struct.unpack(f">{dims}I", data[4:header])
    dtype = IDX_DTYPES[code]
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(data) - header
    if have < need:
        raise ValueError(f"{path}: truncated data: shape {shape} needs {need} bytes, "
                         f"the file has {have}")
    if have > need:
        raise ValueError(f"{path}: {have - need} unexpected byte(s) after the data of shape {shape}")
    array = np.frombuffer(data, dtype=dtype, count=need // dtype.itemsize, offset=header)
    return array.reshape(shape).astype(dtype.newbyteorder("="))


def save_idx(path, array, *, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (gzip when ``compress`` or the name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    key = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if key not in _IDX_CODES:
        raise TypeError(f"array dtype must be one of uint8, int8, int16, int32, float32, "
                        f"float64, not {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"array must have 1..255 dimensions, not {array.ndim}")
    blob = bytes([0, 0, _IDX_CODES[key], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    blob += np.ascontiguousarray(array, dtype=key).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(blob, mtime=0) if compress else blob)


def load_mnist(directory=None, *, files=MNIST_FILES) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W) uint8`` and labels ``(N,) uint8`` from an IDX pair.

    Parameters
    ----------
    directory : str or Path or None
        Folder holding ``files``; default :data:`DEFAULT_MNIST_DIR`.
    files : (str, str)
        Image and label file names inside ``directory``.

    Raises
    ------
    ValueError
        Any :func:`load_idx` error, images that are not 3-D unsigned bytes, labels that
        are not 1-D unsigned bytes in 0..9, or different image and label counts.
    """
    directory = Path(DEFAULT_MNIST_DIR if directory is None else directory)
    img_path, lab_path = directory / files[0], directory / files[1]
    images = load_idx(img_path, ndim=3)
    labels = load_idx(lab_path, ndim=1)
    if images.dtype != np.uint8:
        raise ValueError(f"{img_path}: images must be unsigned bytes (type 0x08), not {images.dtype}")
    if labels.dtype != np.uint8:
        raise ValueError(f"{lab_path}: labels must be unsigned bytes (type 0x08), not {labels.dtype}")
    if 0 in images.shape[1:]:
        raise ValueError(f"{img_path}: images of {images.shape[1]}x{images.shape[2]} pixels; "
                         f"an image has at least 1x1")
    if len(images) != len(labels):
        raise ValueError(f"{lab_path}: {len(labels)} labels but {img_path.name} has "
                         f"{len(images)} images")
    if len(labels) and labels.max() > 9:
        raise ValueError(f"{lab_path}: label {int(labels.max())} outside 0..9")
    return images, labels


def load_digits(input_bits: int = 5, *, normalisation: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits, rescaled from 0..16 to ``0 .. 2^B - 1``.

    ``normalisation="none"``: ``x = floor(v * (2^B - 1) / 16 + 1/2)`` (round half up),
    computed exactly in integers as ``(2 v (2^B-1) + 16) // 32``.
    ``normalisation="minmax"``: :func:`quantize` of the raw 0..16 values per image.

    Returns
    -------
    images : ndarray, (1797, 8, 8) uint8
    labels : ndarray, (1797,) uint8
    """
    _check_bits(input_bits)
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, "
                         f"not {normalisation!r}")
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    raw = bunch.images.astype(np.int64)              # exact small integers 0..16
    if normalisation == "minmax":
        images = quantize(raw, input_bits, normalisation="minmax")
    else:
        full = (1 << input_bits) - 1
        images = (2 * raw * full + 16) // 32
    return images.astype(np.uint8), bunch.target.astype(np.uint8)


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """Integer overlap matrix ``(n_out, n_in)`` of exact area averaging along one axis.

    On a grid refined by ``n_out`` (input pixel k spans ``[k n_out, (k+1) n_out)``) and
    ``n_in`` (output pixel i spans ``[i n_in, (i+1) n_in)``), entry ``[i, k]`` is the
    integer length of the overlap. Every row sums to ``n_in``.
    """
    if not (isinstance(n_in, int) and isinstance(n_out, int)) or n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive integers, not {n_in!r} -> {n_out!r}")
    i = np.arange(n_out)[:, None]
    k = np.arange(n_in)[None, :]
    lo = np.maximum(i * n_in, k * n_out)
    hi = np.minimum((i + 1) * n_in, (k + 1) * n_out)
    return np.maximum(hi - lo, 0).astype(np.int64)


def _integer_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), not {images.shape}")
    if not np.issubdtype(images.dtype, np.integer):
        raise TypeError(f"images must be integers, not {images.dtype}")
    return images


def downsample(images, height: int = 10, width: int = 10) -> np.ndarray:
    """Exact area-averaging resize of ``(N, H, W)`` images to ``(N, height, width)``.

    Each output pixel is the mean of the input image over the output pixel's footprint
    (``H/height`` by ``W/width`` input pixels, fractional pixels weighted by their
    covered area), the way a camera with larger pixels would see it. For 28 -> 10 each
    output pixel covers 2.8 x 2.8 input pixels. The sum is formed exactly in integers,
    ``S = A_h @ img @ A_w.T`` with :func:`area_weights`, and divided once by ``H * W``
    in float64 (one correctly rounded division).

    Returns
    -------
    ndarray, float64, in the input's value range.
    """
    images = _integer_images(images)
    n, h, w = images.shape
    a_h = area_weights(h, height)
    a_w = area_weights(w, width)
    sums = np.einsum("ik,nkl,jl->nij", a_h, images.astype(np.int64), a_w, optimize=True)
    return sums / float(h * w)


def affine_warp(images, matrix, offset, *, chunk: int = 512) -> np.ndarray:
    """Resample ``(N, H, W)`` images through one affine map per image; float32 out.

    Output pixel ``p = (y, x)`` (row, column) takes the input at ``matrix[n] @ p +
    offset[n]``, by bilinear interpolation between the four neighbouring pixels, with
    zero outside the image. ``matrix`` is ``(N, 2, 2)`` or ``(2, 2)``, ``offset``
    ``(N, 2)`` or ``(2,)``. The identity map returns the images exactly. Images are
    processed ``chunk`` at a time (the work stays in cache).
    """
    img = np.asarray(images)
    if img.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), not {img.shape}")
    n, h, w = img.shape
    matrix = np.broadcast_to(np.asarray(matrix, np.float64), (n, 2, 2))
    offset = np.broadcast_to(np.asarray(offset, np.float64), (n, 2))
    # One zero pixel on every side, so that the four neighbours of any clipped source
    # position exist and those outside the image read 0.
    stride, plane = w + 2, (h + 2) * (w + 2)
    padded = np.zeros((n, h + 2, w + 2), np.float32)
    padded[:, 1:-1, 1:-1] = img
    flat = padded.reshape(-1)
    gy = np.arange(h, dtype=np.float32)[None, :, None]
    gx = np.arange(w, dtype=np.float32)[None, None, :]
    out = np.empty((n, h, w), np.float32)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        m = matrix[a:b].astype(np.float32)[:, :, :, None, None]
        o = offset[a:b].astype(np.float32)[:, :, None, None]
        src_y = np.clip(m[:, 0, 0] * gy + m[:, 0, 1] * gx + (o[:, 0] + 1), 0, h + 0.999)
        src_x = np.clip(m[:, 1, 0] * gy + m[:, 1, 1] * gx + (o[:, 1] + 1), 0, w + 0.999)
        y0, x0 = np.floor(src_y), np.floor(src_x)
        fy, fx = src_y - y0, src_x - x0
        idx = (y0.astype(np.int64) * stride + x0.astype(np.int64)
               + (np.arange(a, b, dtype=np.int64) * plane)[:, None, None])
        top = flat[idx] * (1 - fx) + flat[idx + 1] * fx
        bottom = flat[idx + stride] * (1 - fx) + flat[idx + stride + 1] * fx
        out[a:b] = top * (1 - fy) + bottom * fy
    return out


def to_pixels(values) -> np.ndarray:
    """Round half up and clip to 8-bit pixels (uint8)."""
    return np.clip(np.floor(np.asarray(values, np.float64) + 0.5), 0, 255).astype(np.uint8)


def deskew(images) -> np.ndarray:
    """Straighten slanted digits: shear each image so that its ink's principal axis is
    vertical, and move its centre of mass to the image centre (uint8 out).

    From the intensity-weighted moments of image n (centre of mass ``(my, mx)``,
    variance ``vyy`` of the row, covariance ``vyx``), the slant is ``a = vyx / vyy``
    (columns per row) and output pixel ``(y, x)`` takes the input at
    ``(y + my - cy, x + mx - cx + a (y - cy))`` with ``(cy, cx)`` the image centre
    (:func:`affine_warp`, bilinear), rounded half up to 8 bits. The moments are computed
    in float64 from the uint8 pixels. A blank image, or one whose ink lies on one row,
    is only recentred (``a = 0``).
    """
    img = _integer_images(images)
    n, h, w = img.shape
    v = img.astype(np.float64)
    yy = np.arange(h, dtype=np.float64)[None, :, None]
    xx = np.arange(w, dtype=np.float64)[None, None, :]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    total = v.sum(axis=(1, 2))
    ink = total > 0
    safe = np.where(ink, total, 1.0)
    my = np.where(ink, (v * yy).sum(axis=(1, 2)) / safe, cy)
    mx = np.where(ink, (v * xx).sum(axis=(1, 2)) / safe, cx)
    dy = yy - my[:, None, None]
    vyy = (v * dy * dy).sum(axis=(1, 2)) / safe
    vyx = (v * dy * (xx - mx[:, None, None])).sum(axis=(1, 2)) / safe
    a = np.where(vyy > 0, vyx / np.where(vyy > 0, vyy, 1.0), 0.0)
    matrix = np.zeros((n, 2, 2))
    matrix[:, 0, 0] = 1
    matrix[:, 1, 1] = 1
    matrix[:, 1, 0] = a
    offset = np.stack([my - cy, mx - cx - a * cy], axis=1)
    return to_pixels(affine_warp(img, matrix, offset))


def quantize(images, input_bits: int = 5, *, normalisation: str = "minmax",
             full_scale: float = 255.0, contrast: float = 1.0) -> np.ndarray:
    """Map non-negative images to unsigned ``input_bits`` integers, one per pixel.

    ``normalisation="minmax"`` (per image): ``q = floor((v - lo) / (hi - lo) * M + 1/2)``
    with ``lo, hi`` the image's own minimum and maximum and ``M = 2^B - 1``, so every
    image spans the full range 0..M; a constant image maps to all zeros.
    ``normalisation="none"``: ``lo = 0, hi = full_scale`` for every image.
    ``contrast`` (>= 1) multiplies ``M`` in that expression: the top ``1 - 1/contrast``
    of the range saturates at M and the rest is stretched (1: no change).
    Computed in float64; the result is clipped to 0..M.

    Returns
    -------
    ndarray, same shape, uint8 (input_bits <= 8).
    """
    _check_bits(input_bits)
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, "
                         f"not {normalisation!r}")
    if not (isinstance(contrast, (int, float)) and np.isfinite(contrast) and contrast >= 1):
        raise ValueError(f"contrast must be a finite number >= 1, not {contrast!r}")
    v = np.asarray(images, dtype=np.float64)
    if v.ndim < 2:
        raise ValueError(f"images must have shape (N, ...), not {v.shape}")
    top = float((1 << input_bits) - 1)
    axes = tuple(range(1, v.ndim))
    if normalisation == "minmax":
        lo = v.min(axis=axes, keepdims=True)
        span = v.max(axis=axes, keepdims=True) - lo
    else:
        if not full_scale > 0:
            raise ValueError(f"full_scale must be positive, not {full_scale}")
        lo = np.zeros((1,) * v.ndim)
        span = np.full((1,) * v.ndim, float(full_scale))
    safe = np.where(span > 0, span, 1.0)
    q = np.floor((v - lo) / safe * (top * contrast) + 0.5)
    q = np.where(span > 0, q, 0.0)
    return np.clip(q, 0, top).astype(np.uint8)


def _check_bits(input_bits) -> None:
    if isinstance(input_bits, bool) or not isinstance(input_bits, int):
        raise TypeError(f"input_bits must be an integer, not {input_bits!r}")
    if not 1 <= input_bits <= 8:
        raise ValueError(f"input_bits must be in 1..8, not {input_bits}")


@dataclasses.dataclass
class Dataset:
    """A train/validation split of flattened, quantised images.

    Members
    -------
    name : str
    x_train, x_val : ndarray, (N, features) uint8
        Pixels in ``0 .. 2^input_bits - 1``, row-major image order (pixel ``(i, j)`` is
        feature ``i * width + j``, i.e. word line ``i * width + j`` of the first layer).
    y_train, y_val : ndarray, (N,) uint8
    input_bits : int
    image_shape : (int, int)
    preprocessing : dict
        JSON-ready description of the exact pipeline (written into exported models).
    train_images : ndarray (N, H, W) uint8 or None
        MNIST: the full-size training images after :func:`deskew` (when used) and before
        downsampling, for data augmentation (:mod:`models.augment`); None for digits.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    input_bits: int
    image_shape: tuple
    preprocessing: dict
    train_images: np.ndarray | None = None

    @property
    def features(self) -> int:
        return self.x_train.shape[1]

    @property
    def classes(self) -> int:
        return 10


def mnist_split(images, labels, *, n_train: int = 6000, n_val: int | None = None,
                input_bits: int = 5, size: int = 10, normalisation: str = "minmax",
                deskew_images: bool = False, contrast: float = 1.0,
                record: dict | None = None) -> Dataset:
    """Preprocess full-size MNIST-format images and split them: the first ``n_train``
    train, the next ``n_val`` (default: all the rest) validate.

    The pipeline is :func:`deskew` (when ``deskew_images``), :func:`downsample` to
    ``size x size``, :func:`quantize` to ``input_bits`` with ``normalisation`` and
    ``contrast``, flatten row-major. ``record`` holds extra fields of the preprocessing
    record (source, files).
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if not 0 < n_train < len(images):
        raise ValueError(f"n_train must be in 1..{len(images) - 1}, not {n_train}")
    n_val = len(images) - n_train if n_val is None else n_val
    if not 0 < n_val <= len(images) - n_train:
        raise ValueError(f"n_val must be in 1..{len(images) - n_train}, not {n_val}")
    full = images[:n_train + n_val]
    if deskew_images:
        full = deskew(full)
    small = downsample(full, size, size)
    x = quantize(small, input_bits, normalisation=normalisation, full_scale=255.0,
                 contrast=contrast)
    x = x.reshape(len(x), -1)
    y = labels[:n_train + n_val]
    pre = dict(record or {}, image_shape=list(images.shape[1:]), downsample=[size, size],
               downsample_method="exact area average", input_bits=input_bits,
               normalisation=normalisation, train=[0, n_train], val=[n_train, n_train + n_val])
    if deskew_images:
        pre["deskew"] = "moments"
    if contrast != 1:
        pre["contrast"] = float(contrast)
    return Dataset("mnist", x[:n_train], y[:n_train], x[n_train:], y[n_train:], input_bits,
                   (size, size), pre, train_images=full[:n_train])


def load_dataset(name: str = "digits", *, input_bits: int = 5, size: int = 10,
                 normalisation: str | None = None, mnist_dir=None, n_train: int | None = None,
                 n_val: int | None = None, val_fraction: float = 0.2,
                 seed: int = 0, deskew_images: bool = False, contrast: float = 1.0) -> Dataset:
    """Load a data set ready for training: quantised, flattened, split.

    Parameters
    ----------
    name : {"digits", "mnist"}
    input_bits : int
        B, bits per input pixel (1..8).
    size : int
        MNIST only: side of the downsampled image (``size x size``).
    normalisation : {"minmax", "none"} or None
        Default: ``"minmax"`` for MNIST; ``"none"`` for digits (their 0..16 scale is
        already fixed by the data set, see :func:`load_digits`).
    mnist_dir : path or None
        Folder of the IDX pair (:data:`MNIST_FILES`); default :data:`DEFAULT_MNIST_DIR`.
    n_train, n_val : int or None
        MNIST: the first ``n_train`` images train (default 6000) and the next ``n_val``
        validate (default: all the rest). Digits: ignored.
    val_fraction, seed : float, int
        Digits: the seeded random permutation ``default_rng(seed).permutation(1797)``
        puts its last ``round(val_fraction * 1797)`` images in the validation set.
    deskew_images : bool
        MNIST: :func:`deskew` every image before downsampling (:func:`mnist_split`).
    contrast : float
        MNIST: :func:`quantize`'s contrast (>= 1).
    """
    if name == "mnist":
        images, labels = load_mnist(mnist_dir)
        return mnist_split(
            images, labels, n_train=6000 if n_train is None else n_train, n_val=n_val,
            input_bits=input_bits, size=size,
            normalisation="minmax" if normalisation is None else normalisation,
            deskew_images=deskew_images, contrast=contrast,
            record=dict(source="mnist-idx", directory=str(Path(mnist_dir or DEFAULT_MNIST_DIR)),
                        files=list(MNIST_FILES)))
    if name == "digits":
        normalisation = "none" if normalisation is None else normalisation
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), not {val_fraction}")
        images, labels = load_digits(input_bits, normalisation=normalisation)
        x = images.reshape(len(images), -1)
        order = np.random.default_rng(seed).permutation(len(x))
        n_val_d = int(round(val_fraction * len(x)))
        tr, va = order[:len(x) - n_val_d], order[len(x) - n_val_d:]
        pre = dict(source="sklearn-digits", image_shape=[8, 8], downsample=None,
                   input_bits=input_bits, normalisation=normalisation,
                   rescale="floor(v * (2^B-1) / 16 + 1/2)",
                   split=dict(seed=seed, val_fraction=val_fraction, n_train=len(tr), n_val=len(va)))
        return Dataset("digits", x[tr], labels[tr], x[va], labels[va], input_bits, (8, 8), pre)
    raise ValueError(f"name must be 'digits' or 'mnist', not {name!r}")
