"""Counter-based read noise: every draw is a function of its key, not of a shared generator.

A read of the compute array gets a standard normal draw ``Z`` (scaled by the chip's
``read_noise``) that depends only on

* the **chip seed** ``s`` (the instance, as in :func:`models.chip.sample_chip`),
* the **purpose** and **pass** of the read (evaluation, calibration, or a training pass),
* the **array** it reads (layer, row tile, column tile of a folded network),
* the **plane** (input bit-plane ``b``, or the calibration step),
* the **image index** ``m`` (the image's index in its source; see ``images`` below),
* the **column** ``c`` (physical column).

So any order, subset, batch or split of the work (chips in blocks, images in chunks,
Dask workers) gives the same draws, and ``models train`` and ``models eval`` see the same
noise on the same chip and images. ``docs/DEVICE_MODELS.md`` (section 5) states the
sampler; this docstring is its implementation note.

Bits
----
Keys are SplitMix64 streams. ``mix64`` is SplitMix64's output function (Stafford's
variant 13); ``absorb(h, w) = mix64(h + GAMMA + w)`` folds one word into a key
(``GAMMA = 0x9E3779B97F4A7C15``, all arithmetic modulo 2^64). The stream of chip ``s``,
array ``(l, t, j)``, plane ``b``, column quad ``q = c // 4`` and word ``k`` is::

    S = absorb(absorb(absorb(absorb(absorb(absorb(DOMAIN, purpose), pass), l), t), j), b)
    S = absorb(absorb(absorb(S, s), q), k)

and the 64-bit value for image ``m`` is ``H = mix64(S + (m + 1) * GAMMA)`` (the
``m``-th output of the SplitMix64 generator seeded with ``S``). Its 16-bit lane
``c mod 4`` (bits ``16 (c mod 4)`` upwards) belongs to column ``c``. Word 0 gives the
*bucket* ``i`` of the draw, word 1 its *fine* bits ``f``: together a 32-bit uniform
``U = (2^16 i + f + 1/2) / 2^32``.

Normal draws
------------
``Z = Phi^-1(U)``, with ``Phi^-1`` evaluated

* in the 64 buckets at each end (``|Z| > 3.09``, probability 2^-9): exactly, by Wichura's
  AS241 in float64 (:func:`inverse_normal_cdf`, the algorithm of Python's
  ``statistics.NormalDist.inv_cdf``);
* elsewhere: by linear interpolation between the exact quantiles at the bucket's edges,
  ``Z = E[i] + (f + 1/2) / 2^16 * (E[i+1] - E[i])``, ``E[k] = Phi^-1(k / 2^16)``. The
  interpolated CDF differs from the normal CDF by less than 3e-8 anywhere (tested).

The fast evaluation (:mod:`models.montecarlo`) uses only the bucket for most reads: the
readout is a monotone, Lipschitz function of ``Z``, so when it is the same at both edges
of the bucket it is the readout of every ``Z`` in the bucket, in particular of the one
above. Reads near a decision boundary, and every read in a tail bucket, get their fine
bits and the exact ``Z``. Both evaluations therefore see the same draw of every read.
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = [
    "GAMMA", "PURPOSES", "EVAL", "CALIBRATION", "TRAIN", "BUCKET_BITS", "BUCKETS",
    "TAIL_BUCKETS", "AS241_COEFFICIENTS", "mix64", "mix64_int", "absorb_int",
    "inverse_normal_cdf", "bucket_edges", "bucket_tables", "bucket_midpoints",
    "central_half_width", "normal_from_bits", "ReadNoise", "ArrayNoise",
]

_MASK = (1 << 64) - 1
#: SplitMix64's increment (the golden ratio in 64 bits).
GAMMA = 0x9E3779B97F4A7C15
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
# Key of the read-noise domain: keeps these streams apart from any other use of SplitMix64.
_DOMAIN = 0x52454144_4E4F4953          # "READNOIS"

#: Purposes of a read. EVAL: inference (image index = the image's index); CALIBRATION:
#: the calibration search and trim reads (image index = the read's number in the
#: sequence); TRAIN: chip-in-the-loop training passes (pass = the batch counter).
EVAL, CALIBRATION, TRAIN = 0, 1, 2
PURPOSES = {"eval": EVAL, "calibration": CALIBRATION, "train": TRAIN}

BUCKET_BITS = 16
BUCKETS = 1 << BUCKET_BITS
#: Buckets at each end whose quantile is computed exactly (``|Z| > 3.09``).
TAIL_BUCKETS = 64
_U64 = np.uint64
_LITTLE = sys.byteorder == "little"


# --- hashing ---------------------------------------------------------------------------

def mix64_int(z: int) -> int:
    """SplitMix64's output function on a Python int (modulo 2^64)."""
    z &= _MASK
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def absorb_int(h: int, word: int) -> int:
    """``mix64(h + GAMMA + word)``: fold one non-negative word into a key."""
    return mix64_int(h + GAMMA + (int(word) & _MASK))


def mix64(z: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """SplitMix64's output function on a uint64 array, in place; returns ``z``.
    ``scratch``: a uint64 array of ``z``'s shape to work in (default: a new one)."""
    t = np.right_shift(z, _U64(30), out=scratch)
    z ^= t
    z *= _U64(_M1)
    np.right_shift(z, _U64(27), out=t)
    z ^= t
    z *= _U64(_M2)
    np.right_shift(z, _U64(31), out=t)
    z ^= t
    return z


def _absorb(h: np.ndarray, words) -> np.ndarray:
    """Array form of :func:`absorb_int` (broadcasting ``h`` against ``words``)."""
    z = np.add(h, _U64(GAMMA), dtype=np.uint64)
    z = z + np.asarray(words, dtype=np.uint64)
    return mix64(z)


def _lanes(words: np.ndarray, cols: int) -> np.ndarray:
    """The 16-bit lanes of ``(..., Q)`` uint64 words as ``(..., cols)`` uint16
    (lane ``k`` of word ``q`` is column ``4q + k``)."""
    if _LITTLE:
        out = words.view(np.uint16)
    else:                                   # pragma: no cover - big-endian hosts
        shifts = np.arange(4, dtype=np.uint64) * _U64(16)
        out = ((words[..., None] >> shifts) & _U64(0xFFFF)).astype(np.uint16)
        out = out.reshape(words.shape[:-1] + (-1,))
    return out if out.shape[-1] == cols else out[..., :cols]


# --- the normal quantile function --------------------------------------------------------

_A = (2.5090809287301226727e+3, 3.3430575583588128105e+4, 6.7265770927008700853e+4,
      4.5921953931549871457e+4, 1.3731693765509461125e+4, 1.9715909503065514427e+3,
      1.3314166789178437745e+2, 3.3871328727963666080e+0)
_B = (5.2264952788528545610e+3, 2.8729085735721942674e+4, 3.9307895800092710610e+4,
      2.1213794301586595867e+4, 5.3941960214247511077e+3, 6.8718700749205790830e+2,
      4.2313330701600911252e+1, 1.0)
_C = (7.7454501427834140764e-4, 2.2723844989269184583e-2, 2.4178072517745061177e-1,
      1.2704582524523683826e+0, 3.6478483247632046050e+0, 5.7694972214606914055e+0,
      4.6303378461565452959e+0, 1.4234371107496835773e+0)
_D = (1.0507500716444168432e-9, 5.4759380849953449460e-4, 1.5198666563616457197e-2,
      1.4810397642748007459e-1, 6.8976733498510000455e-1, 1.6763848301838038494e+0,
      2.0531916266377588219e+0, 1.0)
_E = (2.0103343992922881327e-7, 2.7115555687434875782e-5, 1.2426609473880784386e-3,
      2.6532189526576123093e-2, 2.9656057182850489123e-1, 1.7848265399172913358e+0,
      5.4637849111641143699e+0, 6.6579046435011037772e+0)
_F = (2.0442631033899397856e-15, 1.4215117583164458887e-7, 1.8463183175100546818e-5,
      7.8686913114561325910e-4, 1.4875361290850614853e-2, 1.3692988092273580531e-1,
      5.9983220655588793769e-1, 1.0)

#: The six coefficient lists of :func:`inverse_normal_cdf` (highest degree first).
AS241_COEFFICIENTS = (_A, _B, _C, _D, _E, _F)


def _poly(coef, r):
    out = np.full_like(r, coef[0])
    for c in coef[1:]:
        out *= r
        out += c
    return out


def inverse_normal_cdf(p) -> np.ndarray:
    """``Phi^-1(p)`` in float64 for ``0 < p < 1`` (Wichura, AS241, 1988: relative error
    about 1e-16; the algorithm of ``statistics.NormalDist.inv_cdf``, vectorised)."""
    p = np.asarray(p, dtype=np.float64)
    if p.size and not (np.all(p > 0) and np.all(p < 1)):
        raise ValueError("inverse_normal_cdf needs 0 < p < 1")
    q = p - 0.5
    out = np.empty_like(p)
    central = np.abs(q) <= 0.425
    if np.any(central):
        qc = q[central]
        r = 0.180625 - qc * qc
        out[central] = qc * _poly(_A, r) / _poly(_B, r)
    tail = ~central
    if np.any(tail):
        qt = q[tail]
        r = np.where(qt <= 0, p[tail], 1.0 - p[tail])
        r = np.sqrt(-np.log(r))
        near = r <= 5.0
        x = np.empty_like(r)
        rn = r[near] - 1.6
        x[near] = _poly(_C, rn) / _poly(_D, rn)
        rf = r[~near] - 5.0
        x[~near] = _poly(_E, rf) / _poly(_F, rf)
        out[tail] = np.where(qt < 0, -x, x)
    return out


def _build_tables():
    k = np.arange(1, BUCKETS, dtype=np.float64)
    edges = np.empty(BUCKETS + 1)
    edges[0], edges[-1] = -np.inf, np.inf
    edges[1:-1] = inverse_normal_cdf(k / BUCKETS)
    lo = edges[:-1].astype(np.float32)
    width = (edges[1:] - edges[:-1]).astype(np.float32)
    tail = np.zeros(BUCKETS, bool)
    tail[:TAIL_BUCKETS] = tail[-TAIL_BUCKETS:] = True
    lo[tail] = np.nan
    width[tail] = np.nan
    mid = (lo + np.float32(0.5) * width).astype(np.float32)
    # Every interpolated Z of a central bucket lies within this of its midpoint (float32
    # rounding of the interpolation included).
    half = float(np.max(width[~tail])) * 0.5 + 1e-6
    for a in (edges, lo, width, mid):
        a.setflags(write=False)
    return edges, lo, width, mid, half


_EDGES, _LO32, _WIDTH32, _MID32, _HALF = _build_tables()


def bucket_edges() -> np.ndarray:
    """``E[k] = Phi^-1(k / 2^16)``, ``k = 0 .. 2^16`` (float64, ``E[0] = -inf``)."""
    return _EDGES


def bucket_midpoints() -> np.ndarray:
    """Float32 midpoint of each bucket's interpolated quantiles; NaN for the tail
    buckets, whose draws are always computed exactly."""
    return _MID32


def bucket_tables() -> tuple[np.ndarray, np.ndarray]:
    """Float32 lower edge and width of each bucket's interpolated quantiles (NaN for the
    tail buckets): :func:`normal_from_bits`'s ``Z = lo[i] + (f + 1/2) / 2^16 * width[i]``."""
    return _LO32, _WIDTH32


def central_half_width() -> float:
    """A bound on ``|Z - midpoint|`` for every draw of a central bucket."""
    return _HALF


def normal_from_bits(bucket, fine) -> np.ndarray:
    """Standard normal draws (float32) from bucket and fine bits (uint16 arrays)."""
    bucket = np.asarray(bucket)
    fine = np.asarray(fine)
    frac = (fine.astype(np.float32) + np.float32(0.5)) * np.float32(1.0 / BUCKETS)
    idx = bucket.astype(np.intp)
    z = np.take(_LO32, idx)
    z += frac * np.take(_WIDTH32, idx)
    tail = (bucket < TAIL_BUCKETS) | (bucket >= BUCKETS - TAIL_BUCKETS)
    if np.any(tail):
        u = (bucket[tail].astype(np.float64) * BUCKETS + fine[tail].astype(np.float64) + 0.5) / 2.0 ** 32
        z[tail] = inverse_normal_cdf(u).astype(np.float32)
    return z


# --- the streams of a stack of chips ------------------------------------------------------

def _check_index(name, a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-d array of integers, not {a.dtype} of shape {a.shape}")
    if a.size and a.min() < 0:
        raise ValueError(f"{name} must be >= 0, not {int(a.min())}")
    return a.astype(np.uint64)


class ReadNoise:
    """The read-noise draws of a stack of chip instances (module docstring).

    Parameters
    ----------
    chip_seeds : sequence of int
        One seed per instance of the stack (non-negative).
    purpose : int or str
        :data:`EVAL` (default), :data:`CALIBRATION` or :data:`TRAIN` (or their names).
    pass_index : int
        Pass of the work (e.g. the training batch counter); 0 for evaluation.

    Every method takes ``array = (layer, row_tile, col_tile)`` naming the physical
    array, the ``plane`` (the read's number within one image: the input bit-plane),
    ``images`` (the image index of every input row, non-negative integers) and ``cols``
    (columns read). Layouts: ``chip_major=True`` gives ``(N, M, cols)``, else
    ``(M, N, cols)`` (the layout of a product shared by all chips).
    """

    def __init__(self, chip_seeds, *, purpose=EVAL, pass_index: int = 0):
        if isinstance(purpose, str):
            if purpose not in PURPOSES:
                raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}")
            purpose = PURPOSES[purpose]
        if purpose not in PURPOSES.values():
            raise ValueError(f"purpose must be one of {sorted(PURPOSES.values())}, not {purpose!r}")
        if isinstance(pass_index, bool) or not isinstance(pass_index, (int, np.integer)) or pass_index < 0:
            raise ValueError(f"pass_index must be a non-negative integer, not {pass_index!r}")
        self.seeds = _check_index("chip_seeds", np.atleast_1d(np.asarray(chip_seeds)))
        self.purpose, self.pass_index = int(purpose), int(pass_index)
        self._base = absorb_int(absorb_int(_DOMAIN, self.purpose), self.pass_index)
        self._keys: dict = {}

    @property
    def n(self) -> int:
        return len(self.seeds)

    def with_pass(self, purpose=None, pass_index: int = 0) -> "ReadNoise":
        """The same chips with another purpose and pass."""
        return ReadNoise(self.seeds, purpose=self.purpose if purpose is None else purpose,
                         pass_index=pass_index)

    def at(self, array=(0, 0, 0), images=None) -> "ArrayNoise":
        """The draws of one physical array for input rows with image indices ``images``
        (default: row ``k`` of a call is image ``k``)."""
        return ArrayNoise(self, array, images)

    def subset(self, index) -> "ReadNoise":
        """The streams of chips ``index`` of the stack."""
        return ReadNoise(self.seeds[index], purpose=self.purpose, pass_index=self.pass_index)

    def stream_keys(self, array, plane: int, cols: int, word: int = 0) -> np.ndarray:
        """``(N, ceil(cols / 4))`` uint64 stream keys (cached)."""
        array = tuple(int(a) for a in array)
        key = (array, int(plane), int(cols), int(word))
        keys = self._keys.get(key)
        if keys is None:
            h = self._base
            for w in array + (int(plane),):
                h = absorb_int(h, w)
            per_chip = _absorb(np.uint64(h), self.seeds)
            quads = np.arange(-(-cols // 4), dtype=np.uint64)
            keys = _absorb(per_chip[:, None], quads[None, :])
            keys = _absorb(keys, np.uint64(word))
            keys.setflags(write=False)
            if len(self._keys) > 4096:
                self._keys.clear()
            self._keys[key] = keys
        return keys

    def words(self, array, plane, images, cols, *, word=0, chip_major=True, out=None,
              scratch=None) -> np.ndarray:
        """The 64-bit values of every (chip, image, quad): ``(N, M, Q)`` or ``(M, N, Q)``.
        ``out`` and ``scratch``: uint64 arrays of that shape to reuse (default: new ones)."""
        images = _check_index("images", images)
        keys = self.stream_keys(array, plane, cols, word)
        counter = (images + _U64(1)) * _U64(GAMMA)
        if chip_major:
            h = np.add(keys[:, None, :], counter[None, :, None], out=out)
        else:
            h = np.add(keys[None, :, :], counter[:, None, None], out=out)
        return mix64(h, scratch)

    def buckets(self, array, plane, images, cols, *, chip_major=True, out=None,
                scratch=None) -> np.ndarray:
        """Bucket bits (uint16) of every read (``out``, ``scratch``: as :meth:`words`)."""
        return _lanes(self.words(array, plane, images, cols, chip_major=chip_major, out=out,
                                 scratch=scratch), cols)

    def fine(self, array, plane, images, cols, *, chip_major=True) -> np.ndarray:
        """Fine bits (uint16) of every read."""
        return _lanes(self.words(array, plane, images, cols, word=1, chip_major=chip_major), cols)

    def standard_normal(self, array, plane, images, cols, *, chip_major=True) -> np.ndarray:
        """Standard normal draws (float32) of every read: ``(N, M, cols)`` or ``(M, N, cols)``."""
        return normal_from_bits(self.buckets(array, plane, images, cols, chip_major=chip_major),
                                self.fine(array, plane, images, cols, chip_major=chip_major))

    def standard_normal_at(self, array, plane, chip, image, col, bucket=None) -> np.ndarray:
        """The draws of scattered reads: chip positions in the stack, image indices and
        columns, three equal-length integer arrays (float32). ``bucket`` saves
        recomputing the bucket bits when the caller has them."""
        if bucket is None:
            bucket = self.bits_at(array, plane, chip, image, col, 0)
        return normal_from_bits(bucket, self.bits_at(array, plane, chip, image, col, 1))

    def bits_at(self, array, plane, chip, image, col, word) -> np.ndarray:
        """Bucket (``word`` 0) or fine (``word`` 1) bits (uint16) of scattered reads."""
        chip = np.asarray(chip, dtype=np.intp)
        image = _check_index("image", image)
        col = np.asarray(col, dtype=np.intp)
        cols = int(col.max()) + 1 if col.size else 1
        keys = self.stream_keys(array, plane, cols, word)
        h = mix64(keys[chip, col // 4] + (image + _U64(1)) * _U64(GAMMA))
        return ((h >> (_U64(16) * (col % 4).astype(np.uint64))) & _U64(0xFFFF)).astype(np.uint16)


class ArrayNoise:
    """The read-noise draws of one array of every chip of a stack (``ReadNoise.at``).

    Members
    -------
    noise : ReadNoise
    array : tuple of int
        ``(layer, row_tile, col_tile)``.
    images : ndarray of int or None
        Image index of every input row of the calls that use it; ``None``: row ``k`` is
        image ``k``.
    """

    def __init__(self, noise: ReadNoise, array=(0, 0, 0), images=None):
        if not isinstance(noise, ReadNoise):
            raise TypeError(f"noise must be a ReadNoise, not {type(noise).__name__}")
        self.noise = noise
        self.array = tuple(int(a) for a in array)
        self.images = None if images is None else _check_index("images", images).astype(np.int64)

    @property
    def n(self) -> int:
        return self.noise.n

    def check(self, count: int, chips: int) -> None:
        """Raise ValueError unless the keys fit a call of ``chips`` instances and ``count``
        input rows."""
        if chips != self.n:
            raise ValueError(f"the noise is keyed for {self.n} chips, the call has {chips}")
        if self.images is not None and len(self.images) != count:
            raise ValueError(f"the noise is keyed for {len(self.images)} images, the call has {count}")

    def standard_normal(self, plane, start: int, count: int, cols: int, *,
                        chip_major=True) -> np.ndarray:
        """Draws of read ``plane`` for the call's input rows ``start .. start+count-1``."""
        if self.images is None:
            images = np.arange(start, start + count, dtype=np.int64)
        else:
            images = self.images[start:start + count]
        return self.noise.standard_normal(self.array, plane, images, cols, chip_major=chip_major)
