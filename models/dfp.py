"""Fixed point and dynamic fixed point (DFP) weight encodings, and their bit-slicing onto ReRAM cells.

A ``bits``-bit signed weight is stored as an integer ``q`` in the *symmetric* range
``[-(2^(bits-1) - 1), 2^(bits-1) - 1]`` (sign-magnitude friendly: no lone most negative
code) and stands for the real value ``q * 2^-frac``. ``frac`` is the fractional length,
the position of the radix point.

* **Fixed point**: one ``frac`` for every layer of the network, chosen so that the layer
  with the widest range fits (:func:`fixed_frac`). A layer with a small range then leaves
  its high magnitude bits at 0.
* **Dynamic fixed point** (Long, She, Mukhopadhyay, DATE 2019, after Courbariaux et al.
  and Gysel's Ristretto): each layer picks its own ``frac`` from its own range
  (:func:`dfp_frac`): the largest ``frac`` that does not overflow, so the most
  significant magnitude bit is used (:func:`unused_msbs` is 0).

On a ReRAM crossbar a multi-bit weight is *bit-sliced* across several cells of 1 or 2
bits whose column currents are shifted and added (:func:`slice_weights`). A conductance
error on the slice of weight ``2^k`` is multiplied by ``2^k``: high-order slices amplify
device variation. With fixed point, a small-range layer keeps paying for high-order
slices that hold only zeros (an HRS conductance still varies) while its values sit in
the low slices; DFP moves the values up to the MSBs so that the amplified error is
small *relative to the layer's range*. That is the effect :mod:`tests.test_dfp` checks.

Rounding is round half up (``floor(x * 2^frac + 1/2)``), the rule the macro uses for its
gain (docs/ARCHITECTURE.md); values outside the range saturate.

Binary weights (``bits == 1``) are the BNN's ``+1/-1``; they are not a two's-complement
code and have no radix point; :func:`slice_weights` maps them directly.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MAPPINGS", "qmax", "to_fixed", "from_fixed", "quantise", "dfp_frac", "dfp_quantise",
    "fixed_frac", "unused_msbs", "cells_per_weight", "slice_weights", "unslice",
]

#: Ways to put a signed weight onto non-negative conductances (see :func:`slice_weights`).
MAPPINGS = ("differential", "offset")

#: Largest fractional length :func:`dfp_frac` returns (an all-zero layer has no range).
MAX_FRAC = 62


def _check_bits(bits, lo=2, hi=32, name="bits"):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {bits!r}")
    if not lo <= bits <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], not {bits}")
    return int(bits)


def _check_frac(frac):
    if isinstance(frac, bool) or not isinstance(frac, (int, np.integer)):
        raise TypeError(f"frac must be an integer, not {frac!r}")
    return int(frac)


def qmax(bits: int) -> int:
    """Largest code of a symmetric ``bits``-bit signed fixed-point number, ``2^(bits-1) - 1``."""
    return (1 << (_check_bits(bits) - 1)) - 1


def to_fixed(w, bits: int, frac: int) -> np.ndarray:
    """Integer codes ``q = clip(floor(w * 2^frac + 1/2), -qmax, qmax)`` (int64).

    Parameters
    ----------
    w : array_like of float
        Real values.
    bits : int
        Total width including the sign, 2..32.
    frac : int
        Fractional length (may be negative or larger than ``bits``).
    """
    top = qmax(bits)
    frac = _check_frac(frac)
    scaled = np.asarray(w, dtype=np.float64) * np.ldexp(1.0, frac)
    return np.clip(np.floor(scaled + 0.5), -top, top).astype(np.int64)


def from_fixed(q, frac: int) -> np.ndarray:
    """Real values ``q * 2^-frac`` (float64)."""
    return np.ldexp(np.asarray(q, dtype=np.float64), -_check_frac(frac))


def quantise(w, bits: int, frac: int) -> np.ndarray:
    """``w`` rounded to the ``bits``-bit fixed-point grid with fractional length ``frac``."""
    return from_fixed(to_fixed(w, bits, frac), frac)


def dfp_frac(w, bits: int) -> int:
    """Dynamic fixed point: the largest fractional length at which ``w`` does not saturate.

    The largest ``frac`` such that every ``|floor(w * 2^frac + 1/2)| <= qmax(bits)``.
    Then ``frac + 1`` would saturate, so the quantised data use the top magnitude bit
    (``max |q| >= 2^(bits-2)``, :func:`unused_msbs` is 0). All-zero data return
    :data:`MAX_FRAC`.
    """
    top = qmax(bits)
    w = np.asarray(w, dtype=np.float64)
    if w.size == 0 or not np.any(w):
        return MAX_FRAC
    if not np.all(np.isfinite(w)):
        raise ValueError("w must be finite")
    hi, lo = float(w.max()), float(w.min())

    def fits(f):
        s = np.ldexp(1.0, f)
        return np.floor(hi * s + 0.5) <= top and np.floor(lo * s + 0.5) >= -top

    # The estimate from log2 is off by at most one or two because of rounding; settle it.
    peak = max(abs(hi), abs(lo))
    frac = min(int(np.floor(np.log2(top / peak))), MAX_FRAC)
    while not fits(frac):
        frac -= 1
    while frac < MAX_FRAC and fits(frac + 1):
        frac += 1
    return frac


def dfp_quantise(w, bits: int) -> tuple[np.ndarray, int]:
    """Quantise one layer with its own radix point: ``(codes, frac)``, ``frac = dfp_frac(w, bits)``."""
    frac = dfp_frac(w, bits)
    return to_fixed(w, bits, frac), frac


def fixed_frac(layers, bits: int) -> int:
    """Plain fixed point: one fractional length for all ``layers`` (the widest range fits)."""
    layers = [np.asarray(x, dtype=np.float64).ravel() for x in layers]
    if not layers:
        raise ValueError("layers must hold at least one array")
    return dfp_frac(np.concatenate(layers), bits)


def unused_msbs(q, bits: int) -> int:
    """Magnitude bits above the highest one any code of ``q`` uses: ``(bits-1) - bitlen(max|q|)``."""
    top = qmax(bits)
    peak = int(np.max(np.abs(np.asarray(q, dtype=np.int64)))) if np.size(q) else 0
    if peak > top:
        raise ValueError(f"codes must lie in [-{top}, {top}] for bits={bits}, not {peak}")
    return (bits - 1) - peak.bit_length()


def _check_mapping(mapping):
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {', '.join(MAPPINGS)}, not {mapping!r}")


def cells_per_weight(bits: int, cell_bits: int, mapping: str) -> int:
    """Number of ReRAM cells (physical columns) one weight occupies; see :func:`slice_weights`."""
    bits = _check_bits(bits, 1, 32)
    cell_bits = _check_bits(cell_bits, 1, 2, "cell_bits")
    _check_mapping(mapping)
    if bits == 1:
        return 2 if mapping == "differential" else 1
    if mapping == "differential":
        return 2 * -(-(bits - 1) // cell_bits)
    return -(-bits // cell_bits)


def slice_weights(q, bits: int, cell_bits: int, mapping: str):
    """Bit-slice integer weights onto cells of ``cell_bits`` bits.

    The weight is recovered as ``q = sum_j coef[j] * levels[..., j] - bias`` where
    ``levels`` are the cells' programmed levels (0 = HRS .. ``2^cell_bits - 1`` = LRS).

    * ``differential``: two sets of cells, one for the positive part ``max(q, 0)`` and one
      for the negative part ``max(-q, 0)``; each magnitude (``bits - 1`` bits) is cut into
      ``ceil((bits-1)/cell_bits)`` slices, most significant first; ``coef`` is
      ``+2^(cell_bits*k)`` on the positive and ``-2^(cell_bits*k)`` on the negative side,
      ``bias`` is 0. A binary weight (``bits == 1``) +1 is (LRS, HRS), -1 is (HRS, LRS).
    * ``offset``: one set of cells holds the offset-binary code ``q + qmax(bits)``
      (``ceil(bits/cell_bits)`` slices) and the periphery subtracts
      ``bias = qmax(bits)`` times the input sum. A binary weight is one cell,
      LRS for +1 and HRS for -1, ``coef = [2]``, ``bias = 1`` (``q = 2u - 1``).

    Parameters
    ----------
    q : array_like of int
        Codes in ``[-qmax, qmax]``, or ``+1/-1`` when ``bits == 1``.
    bits : int
        Weight width, 1 (binary) .. 32.
    cell_bits : int
        1 (two-level cell) or 2 (four-level cell).
    mapping : str
        ``"differential"`` or ``"offset"``.

    Returns
    -------
    levels : numpy.ndarray of uint8, shape ``q.shape + (J,)``
    coef : numpy.ndarray of int64, shape ``(J,)``
    bias : int
    """
    bits = _check_bits(bits, 1, 32)
    cell_bits = _check_bits(cell_bits, 1, 2, "cell_bits")
    _check_mapping(mapping)
    q = np.asarray(q)
    if q.dtype == bool or not np.issubdtype(q.dtype, np.integer):
        raise TypeError(f"q must be an integer array, not {q.dtype}")
    q = q.astype(np.int64)
    if bits == 1:
        if q.size and not np.all(np.abs(q) == 1):
            raise ValueError("binary weights (bits=1) must be +1 or -1")
        if mapping == "differential":
            levels = np.stack([q > 0, q < 0], axis=-1).astype(np.uint8)
            return levels, np.array([1, -1], dtype=np.int64), 0
        return ((q + 1) // 2).astype(np.uint8)[..., None], np.array([2], dtype=np.int64), 1
    top = (1 << (bits - 1)) - 1
    if q.size and np.max(np.abs(q)) > top:
        raise ValueError(f"codes must lie in [-{top}, {top}] for bits={bits}")
    mask = (1 << cell_bits) - 1
    if mapping == "differential":
        n = -(-(bits - 1) // cell_bits)
        shifts = cell_bits * np.arange(n - 1, -1, -1)
        pos, neg = np.maximum(q, 0), np.maximum(-q, 0)
        levels = np.concatenate([(pos[..., None] >> shifts) & mask,
                                 (neg[..., None] >> shifts) & mask], axis=-1)
        coef = np.concatenate([1 << shifts, -(1 << shifts)])
        return levels.astype(np.uint8), coef.astype(np.int64), 0
    n = -(-bits // cell_bits)
    shifts = cell_bits * np.arange(n - 1, -1, -1)
    levels = ((q + top)[..., None] >> shifts) & mask
    return levels.astype(np.uint8), (1 << shifts).astype(np.int64), top


def unslice(levels, coef, bias) -> np.ndarray:
    """Inverse of :func:`slice_weights`: ``sum_j coef[j] * levels[..., j] - bias`` (int64)."""
    return np.asarray(levels, dtype=np.int64) @ np.asarray(coef, dtype=np.int64) - int(bias)
