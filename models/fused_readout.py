"""Compiled passes of the chip Monte Carlo (numba): the noisy readout of a tile plane in
one loop, and the table reads of integer column sums.

:class:`models.montecarlo.FloatTile` evaluates a plane of an analog tile with read noise
as a float32 product (the column values without noise) followed by, per read, the
counter-based draw's bucket (:mod:`models.sampler`: one SplitMix64 hash per four
columns), the bucket's midpoint times the column's noise scale, the clamp, the bit-line
curve, the ADC's floor and the test whether the read lies near a rounding boundary.
In numpy each of those steps is a pass over memory; :func:`noisy_plane` is one loop over
the reads, with the midpoint table and the curve in registers or cache. Only the product
stays a BLAS call: it is the matrix-product floor.

The curve is not evaluated with the float32 ``tanh`` of the specification's chain but
with a rational approximation whose distance to it is bounded (:data:`TANH_ERROR`), and
the boundary test's margin grows by that. The margin is the reach of the read's bucket:
buckets are grouped in tiers by their distance from the ends (:data:`TIER_STARTS`), each
with a bound on its draws' distance from their midpoint (:data:`TIER_HALF_WIDTHS`: 1.1e-4
in the middle tier, where 15 of 16 reads fall, up to 0.08 in the tail buckets), so only
reads within their own bucket's reach of a boundary need more. Those, and the reads of
the two end buckets, get their exact draw in the same loop (the fine word's hash; AS241
in the tails, the central buckets within :data:`DRAW_ERROR`); only a read still near a
boundary then is kept for numpy's exact chain. So each read gets the readout the numpy
pass gives it (``tests/test_fused_readout.py``).

:func:`table_plane` and :func:`count_sums` are the table reads of
:class:`~models.montecarlo.LutTile` (every column tabled) and the one-hot counts of the
first layer (:class:`~models.montecarlo._OneHot`) as loops, exact as their numpy forms.

numba is an optional accelerator, imported on first use; without it (:func:`available`
false), or for a tile the noisy pass does not cover (bit-line mode, the exponential
curve), :mod:`models.montecarlo` runs its numpy passes. The golden models stay numpy.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import threading

import numpy as np

from .sampler import (AS241_COEFFICIENTS, BUCKETS, TAIL_BUCKETS, bucket_midpoints,
                      bucket_tables)

__all__ = ["DRAW_ERROR", "MIDPOINTS", "MID_MAX", "TANH_ERROR", "TIER_HALF_WIDTHS", "TIER_STARTS",
           "available", "central_draws", "curve_code", "count_sums", "noisy_plane",
           "table_plane", "tanh_approx", "tier_margins"]

#: Curve codes of :func:`noisy_plane`: no curve (``vmax`` infinite), and tanh.
CURVE_NONE, CURVE_TANH = 0, 1

#: Bound on ``|tanh_approx(u) - tanh(u)|`` for float32 ``u``, ``tanh`` numpy's float32
#: one (the approximation's error and both roundings): ``tests/test_fused_readout.py``
#: checks every 1024th float32 of [-9, 9] (largest error 2.4e-7, its multiply-adds fused).
TANH_ERROR = 8e-7

# Rational approximation of tanh on [-7.9, 7.9] (beyond it tanh is 1 in float32): odd
# numerator of degree 13, even denominator of degree 6 (the coefficients of Eigen's
# float32 tanh, Eigen/src/Core/MathFunctionsImpl.h).
_CLAMP = np.float32(7.90531110763549805)
_ALPHA = tuple(np.float32(a) for a in (
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
    5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
    4.89352455891786e-03))
_BETA = tuple(np.float32(b) for b in (
    1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
    4.89352518554385e-03))

#: Tiers of buckets by ``t = min(k, 2^16 - 1 - k)``, the distance of bucket ``k`` from the
#: nearer end: tier 0 ``t >= 2048``, 1 ``t >= 256``, 2 ``t >= 64`` (the last central
#: buckets), 3 ``t >= 1`` (tail buckets); the two end buckets (``t = 0``) always get their
#: exact draw. A tier's buckets are narrower the nearer it is to the middle, so each tier
#: has its own boundary margin (:func:`tier_margins`) instead of the widest bucket's.
TIER_STARTS = (2048, 256, TAIL_BUCKETS, 1)
_TIER0, _TIER1, _TIER2 = TIER_STARTS[:3]


def _midpoints_and_half_widths():
    """Every bucket's midpoint (float32: the sampler's for central buckets, the middle of
    the extreme draws for tail buckets, 0 for the end buckets) and, per tier, a bound on
    the distance of each draw of its buckets from their midpoint: the draws are monotone
    in the fine bits, so those of fine bits 0 and 2^16 - 1 bound them (float32 rounding
    added)."""
    from .sampler import normal_from_bits
    k = np.arange(BUCKETS).astype(np.uint16)
    low = normal_from_bits(k, np.zeros(BUCKETS, np.uint16)).astype(np.float64)
    high = normal_from_bits(k, np.full(BUCKETS, BUCKETS - 1, np.uint16)).astype(np.float64)
    mid = bucket_midpoints().astype(np.float32).copy()
    t = np.minimum(k.astype(np.int64), BUCKETS - 1 - k.astype(np.int64))
    tail = np.isnan(mid)
    mid[tail] = ((low[tail] + high[tail]) * 0.5).astype(np.float32)
    mid[t == 0] = 0
    reach = np.maximum(np.abs(high - mid), np.abs(mid - low))
    half = []
    for i, start in enumerate(TIER_STARTS):
        end = TIER_STARTS[i - 1] if i else BUCKETS
        half.append(float(np.max(reach[(t >= start) & (t < end)])) + 1e-6)
    mid.setflags(write=False)
    return mid, tuple(half)


# The midpoint of every bucket but the two end buckets (whose reads always get their exact
# draw), and the tiers' half widths. The loops read ``_MID`` by its global name.
_MID, TIER_HALF_WIDTHS = _midpoints_and_half_widths()
#: The midpoints :func:`noisy_plane` resolves reads with (read-only float32, one per bucket).
MIDPOINTS = _MID
#: Largest ``|midpoint|`` the pass uses for a read it resolves without its exact draw.
MID_MAX = float(np.max(np.abs(_MID)))


def tier_margins(reach: float, extra: float) -> np.ndarray:
    """The boundary margins of the tiers (float32, one per :data:`TIER_STARTS`) for reads
    whose ADC input moves by at most ``reach`` per unit of the draw: ``reach`` times the
    tier's half width (and 1e-3 of it), plus ``extra`` (the curve's error, roundings)."""
    return np.array([reach * h * (1 + 1e-3) + extra for h in TIER_HALF_WIDTHS], np.float32)


def _central_draw(k, fine, mid):
    """A central bucket's draw from its midpoint and its neighbours' (``mid``: the
    midpoint table, which every read has in cache): ``mid[k] + (f + 1/2 - 2^15) / 2^16 *
    width``, the width a difference of midpoints (one-sided at the ends of the central
    range). Within :data:`DRAW_ERROR` of :func:`models.sampler.normal_from_bits`."""
    if k == TAIL_BUCKETS:
        width = mid[k + 1] - mid[k]
    elif k == BUCKETS - TAIL_BUCKETS - 1:
        width = mid[k] - mid[k - 1]
    else:
        width = (mid[k + 1] - mid[k - 1]) * np.float32(0.5)
    frac = (np.float32(fine) + np.float32(0.5)) * np.float32(1.0 / BUCKETS)
    return mid[k] + (frac - np.float32(0.5)) * width


def _draw_error() -> float:
    """Largest distance of :func:`_central_draw` from the exact draw over every central
    bucket (the error is linear in the fine bits: their extremes bound it), plus two
    float32 roundings of the largest central draw."""
    lo, width = bucket_tables()
    k = np.arange(TAIL_BUCKETS, BUCKETS - TAIL_BUCKETS)
    mid = _MID
    right = mid[np.minimum(k + 1, BUCKETS - 1)]
    left = mid[k - 1]
    w = np.where(k == TAIL_BUCKETS, right - mid[k],
                 np.where(k == BUCKETS - TAIL_BUCKETS - 1, mid[k] - left,
                          (right - left) * np.float32(0.5))).astype(np.float32)
    worst = 0.0
    for fine in (0, BUCKETS - 1):
        frac = (np.float32(fine) + np.float32(0.5)) * np.float32(1.0 / BUCKETS)
        exact = lo[k] + frac * width[k]
        approx = mid[k] + (frac - np.float32(0.5)) * w
        worst = max(worst, float(np.max(np.abs(exact.astype(np.float64) - approx))))
    return worst + 2 * float(np.spacing(np.float32(4)))


#: Bound on ``|_central_draw(k, f) - normal_from_bits(k, f)|`` over every central bucket.
DRAW_ERROR = _draw_error()
_A, _B, _C, _D, _E, _F = (tuple(float(v) for v in c) for c in AS241_COEFFICIENTS)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


@functools.cache
def available() -> bool:
    """Whether the compiled pass can run: numba installed (imported on first use), on a
    little-endian host (a hash word's 16-bit lanes are read as its columns' buckets)."""
    return sys.byteorder == "little" and importlib.util.find_spec("numba") is not None


def curve_code(vmax, shape: str):
    """The curve code of a tile's chain, or None when the compiled pass does not cover it."""
    if vmax is None:
        return CURVE_NONE
    return CURVE_TANH if shape == "tanh" else None


def _tanh_approx(u):
    a0, a1, a2, a3, a4, a5, a6 = _ALPHA
    b0, b1, b2, b3 = _BETA
    x = u if u < _CLAMP else _CLAMP
    x = x if x > -_CLAMP else -_CLAMP
    x2 = x * x
    p = a0
    p = p * x2 + a1
    p = p * x2 + a2
    p = p * x2 + a3
    p = p * x2 + a4
    p = p * x2 + a5
    p = p * x2 + a6
    q = b0
    q = q * x2 + b1
    q = q * x2 + b2
    q = q * x2 + b3
    return x * p / q


def _poly(coef, r):
    out = 0.0
    for c in coef:
        out = out * r + c
    return out


def _inverse_normal_cdf(p):
    # models.sampler.inverse_normal_cdf (Wichura's AS241) on one float64.
    q = p - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        return q * _poly(_A, r) / _poly(_B, r)
    r = p if q <= 0 else 1.0 - p
    r = np.sqrt(-np.log(r))
    if r <= 5.0:
        x = _poly(_C, r - 1.6) / _poly(_D, r - 1.6)
    else:
        x = _poly(_E, r - 5.0) / _poly(_F, r - 5.0)
    return -x if q < 0 else x


def _exact_read(k, fine, value, noise, curve, vmax, clip_limit):
    """ADC input (``t + 1/2``) of a read from its exact draw (a tail bucket's by AS241, a
    central one's within DRAW_ERROR) and the chain of FloatTile's exact reads (clamp
    always), curve approximated."""
    if k < TAIL_BUCKETS or k >= BUCKETS - TAIL_BUCKETS:
        p = (np.float64(k) * BUCKETS + np.float64(fine) + 0.5) / 4294967296.0
        z = np.float32(_inverse_normal_cdf(p))
    else:
        z = _central_draw(k, fine, _MID)
    u = value + z * noise
    u = u if u < clip_limit else clip_limit
    u = u if u > -clip_limit else -clip_limit
    if curve == CURVE_TANH:
        u = _tanh_approx(u) * vmax
    return u + np.float32(0.5)


def _noisy_plane(y, keys, fine_keys, counter, shared, scale, curve, vmax, clip, clip_limit,
                 qshift, margins, exact_margin, first, tile, near_idx, near_bucket, n_near,
                 exact_count):
    # One row (chip, image) at a time; each step a loop over the row's columns without
    # branches, which the compiler turns into vector instructions.
    A, B, C = tile.shape
    Q = keys.shape[1]
    words = np.empty(Q, np.uint64)
    bucket = words.view(np.uint16)
    r = np.empty(C, np.float32)
    # Flags padded to whole 64-bit words (the padding stays 0): the scan below skips
    # eight columns at a time.
    flag = np.zeros(-(-C // 8) * 8, np.uint8)
    flag_words = flag.view(np.uint64)
    top = np.uint16(BUCKETS - 1)
    t0 = np.uint16(_TIER0)
    t1 = np.uint16(_TIER1)
    t2 = np.uint16(_TIER2)
    m0, m1, m2, m3 = margins[0], margins[1], margins[2], margins[3]
    half = np.float32(0.5)
    two = np.float32(2)
    one = np.float32(1)
    exact_lower = np.float32(exact_margin)
    exact_upper = np.float32(1) - np.float32(exact_margin)
    down = np.float32(2.0 ** -qshift)
    up = np.float32(2.0 ** qshift)
    for a in range(A):
        for b in range(B):
            chip = b if shared else a
            count = counter[a if shared else b]
            for q in range(Q):
                z = keys[chip, q] + count
                z = (z ^ (z >> np.uint64(30))) * _M1
                z = (z ^ (z >> np.uint64(27))) * _M2
                words[q] = z ^ (z >> np.uint64(31))
            noise = scale[chip]
            value = y[a, b]
            out = tile[a, b]
            for c in range(C):
                r[c] = _MID[bucket[c]] * noise[c] + value[c]
            if clip:
                for c in range(C):
                    u = r[c]
                    u = u if u < clip_limit else clip_limit
                    r[c] = u if u > -clip_limit else -clip_limit
            if curve == CURVE_TANH:
                for c in range(C):
                    r[c] = _tanh_approx(r[c]) * vmax
            kept = 0
            for c in range(C):
                u = r[c] + half
                f = np.floor(u)
                d = u - f
                k = bucket[c]
                t = min(k, top - k)
                margin = m0 if t >= t0 else (m1 if t >= t1 else (m2 if t >= t2 else m3))
                near = (d < margin) | (d > one - margin) | (t == 0)
                flag[c] = near
                kept += near
                r[c] = np.float32(0) if near else f
            if qshift:
                for c in range(C):
                    r[c] = np.floor(r[c] * down) * up
            if first:
                for c in range(C):
                    out[c] = r[c]
            else:
                for c in range(C):
                    out[c] = out[c] * two + r[c]
            # The reads near a boundary or in an end bucket: their exact draw (the fine
            # word's hash), then kept for numpy's chain only if still near a boundary.
            if not kept:
                continue
            exact_count[0] += kept
            for w in range(flag_words.shape[0]):
                if not flag_words[w]:
                    continue
                for c in range(8 * w, min(8 * w + 8, C)):
                    if not flag[c]:
                        continue
                    z = fine_keys[chip, c >> 2] + count
                    z = (z ^ (z >> np.uint64(30))) * _M1
                    z = (z ^ (z >> np.uint64(27))) * _M2
                    z = z ^ (z >> np.uint64(31))
                    fine = np.uint16((z >> np.uint64((c & 3) * 16)) & np.uint64(0xFFFF))
                    u = _exact_read(bucket[c], fine, value[c], noise[c], curve, vmax,
                                    clip_limit)
                    f = np.floor(u)
                    d = u - f
                    if d < exact_lower or d > exact_upper:
                        near_idx[n_near] = (a * B + b) * C + c
                        near_bucket[n_near] = bucket[c]
                        n_near += 1
                    else:
                        if qshift:
                            f = np.floor(f * down) * up
                        out[c] += f
    return n_near

_compiled = {}
_compiling = threading.Lock()


def _kernels():
    """The compiled functions (numba imported and the functions wrapped on the first call;
    each compiled, or loaded from numba's cache, on its own first call). Thread-safe: the
    wrapping replaces module globals, once."""
    with _compiling:
        if not _compiled:
            _compiled.update(_wrap())
    return _compiled


def _wrap() -> dict:
    import numba
    # error_model="numpy": a division by zero gives inf, as in numpy, instead of a test
    # per division (which would keep the loops scalar).
    jit = dict(cache=True, nogil=True, error_model="numpy")
    # The loops call these by their global names (and the tables are globals too: numba
    # embeds them as constants, with no reference counting per call).
    g = globals()
    # The curve's multiply-adds may fuse (FMA): its error bound, TANH_ERROR, is checked
    # on the compiled function.
    g["_tanh_approx"] = numba.njit(fastmath={"contract"}, **jit)(_tanh_approx)
    for name in ("_poly", "_inverse_normal_cdf", "_central_draw", "_exact_read"):
        g[name] = numba.njit(inline="always", **jit)(g[name])
    loop = dict(boundscheck=False, **jit)
    return {"plane": numba.njit(**loop)(_noisy_plane),
            "tanh array": numba.njit(**jit)(_tanh_array),
            "table plane": numba.njit(**loop)(_table_plane),
            "count sums": numba.njit(**loop)(_count_sums),
            "draw array": numba.njit(**jit)(_draw_array)}


def _table_plane(sums, index_base, table, first, tile):
    A, B, C = tile.shape
    two = np.float32(2)
    for a in range(A):
        for b in range(B):
            s = sums[a, b]
            base = index_base[a]
            out = tile[a, b]
            if first:
                for c in range(C):
                    out[c] = table[np.intp(s[c] + base[c])]
            else:
                for c in range(C):
                    out[c] = out[c] * two + table[np.intp(s[c] + base[c])]


def table_plane(sums, index_base, table, first, tile) -> None:
    """One plane of a tile of integer column sums read from its tables, accumulated into
    ``tile``: ``tile[n, i, c]`` (``first``: ``=``, else ``2 tile +``) the float32 ``table``
    at ``sums[n, i, c] + index_base[n, c]`` (float32 integers below 2^24, as
    :meth:`models.montecarlo.LutTile._all_tabled` forms the index)."""
    _kernels()["table plane"](sums, index_base, table, first, tile)


def _count_sums(sums, base, weight, counts):
    m, C = sums.shape
    for i in range(m):
        for c in range(C):
            counts[np.intp(sums[i, c]) + base[i, c]] += weight


def count_sums(sums, base, weight, counts) -> None:
    """``numpy.add.at(counts, sums + base, weight)`` for float32 integer ``sums`` (m, C)
    and integer ``base`` (m, C): the one-hot counts of the first layer's column sums
    (:class:`models.montecarlo._OneHot`); exact, as every count is an integer below
    2^24."""
    _kernels()["count sums"](sums, base, np.float32(weight), counts)


def _tanh_array(u, out):
    for i in range(u.shape[0]):
        out[i] = _tanh_approx(u[i])


def _draw_array(k, fine, out):
    for i in range(k.shape[0]):
        out[i] = _central_draw(k[i], fine[i], _MID)


def central_draws(k, fine) -> np.ndarray:
    """The pass's draws of central buckets ``k`` with fine bits ``fine`` (uint16 arrays)."""
    k = np.ascontiguousarray(k, np.uint16).reshape(-1)
    fine = np.ascontiguousarray(fine, np.uint16).reshape(-1)
    if k.size and not np.all((k >= TAIL_BUCKETS) & (k < BUCKETS - TAIL_BUCKETS)):
        raise ValueError("central_draws takes central buckets only")
    out = np.empty(k.shape, np.float32)
    _kernels()["draw array"](k, fine, out)
    return out


def tanh_approx(u) -> np.ndarray:
    """The pass's curve (compiled rational tanh) of float32 values, as a new array."""
    u = np.ascontiguousarray(u, np.float32).reshape(-1)
    out = np.empty_like(u)
    _kernels()["tanh array"](u, out)
    return out


def noisy_plane(y, keys, fine_keys, counter, shared, scale, curve, vmax, clip, clip_limit,
                qshift, margins, exact_margin, first, tile, near_idx, near_bucket, n_near,
                exact_count=None) -> int:
    """One plane of a noisy column-mode tile, accumulated into ``tile``.

    ``y`` (A, B, C) float32: the products (column values scaled by gain and curve, with
    compensation and offset); ``A, B`` are (images, chips) when ``shared`` else
    (chips, images). ``keys``, ``fine_keys`` (N, ceil(C / 4)) uint64: the plane's
    bucket-word and fine-word stream keys (:meth:`models.sampler.ReadNoise.stream_keys`);
    ``counter`` (images,) uint64: ``(image + 1) * GAMMA``; ``scale`` (N, C) float32:
    noise scale. ``curve``, ``vmax``, ``clip``, ``clip_limit``, ``qshift``: the chain.
    ``margins`` (float32, one per tier of :data:`TIER_STARTS`, :func:`tier_margins`):
    distance of the ADC input from a rounding boundary within which a read of the tier
    gets its exact draw (the bucket's reach plus ``vmax * TANH_ERROR`` and rounding; the
    two end buckets' reads always do);
    ``exact_margin``: the same for the exact draw (no bucket reach), within which the
    read is kept for numpy's chain. ``tile`` (A, B, C) float32 becomes the plane's
    readouts (``first``) or ``2 tile + readouts``; kept reads enter as 0, their flat
    indices into ``tile`` and their buckets go to ``near_idx`` and ``near_bucket`` from
    position ``n_near``. ``exact_count`` (int64 array of one, optional) is increased by the
    reads that got their exact draw in the pass. Returns the new count."""
    margins = np.ascontiguousarray(margins, np.float32)
    if margins.shape != (len(TIER_STARTS),):
        raise ValueError(f"margins must hold one margin per tier ({len(TIER_STARTS)}), "
                         f"not shape {margins.shape}")
    if exact_count is None:
        exact_count = np.zeros(1, np.int64)
    return _kernels()["plane"](y, keys, fine_keys, counter, shared, scale, curve, vmax, clip,
                               clip_limit, qshift, margins, exact_margin, first, tile, near_idx,
                               near_bucket, n_near, exact_count)
