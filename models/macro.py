"""Bit-true golden model of one generated CiM macro.

This module is the executable form of ``docs/ARCHITECTURE.md`` sections 1 to 6: the
compute array's readout chain (section 1), shift-accumulate (2), batchnorm-binarize (3),
the calibration search (4), the command timing (5) and the Wishbone register file with
its error rules (6). The RTL in ``rtl/`` and the host driver in ``verif/`` are checked
against it, so it depends on numpy and :mod:`models.params` only and never imports the
RTL or amaranth.

The array functions (:func:`readout`, :func:`shift_accumulate`, :func:`binarize`,
:func:`calibrate`, :func:`run_tile`) are vectorised: every argument broadcasts over
leading batch dimensions (images, chip instances), so training code evaluates many
images on many sampled chips without Python loops. Integer arithmetic is int64
throughout; nothing is ever rounded through floating point.

:class:`MacroModel` is the register-level model of one macro instance: ``write`` and
``read`` are its ground truth and obey the error rules of section 6; its convenience
methods (``load_weights``, ``run``, ...) drive the same state and the same command
executor.

Rules of ``docs/ARCHITECTURE.md`` that are easy to miss, and how the model keeps them:

* Quantisation (step 6) uses ``q = min(QSHIFT, W - 1)``. For ``QSHIFT >= W`` the exact
  formula would give ``-2^QSHIFT`` for a negative ``t``, outside the signed W-bit
  readout; saturating the shift keeps both stated invariants (``-2^(W-1) <= v <= M``
  and "quantisation never changes the sign"). For ``QSHIFT < W`` it is the formula.
* Memory reset values: WEIGHT, THRESH, FLIP, INPUT, ACC, OUT, CALFLAG, OFFSET,
  STUCK_MASK and STUCK_VALUE are 0; GAIN is 64 (1.0); TABLE is the identity; COMP is
  balanced, ``thermometer(K/2)``, so that a macro fresh out of reset computes ``s``
  exactly (the ideal readout of section 1).
* STATUS.acc_sat is sticky: a RUN never clears it, only a W1C write does. CMD reads back
  the accepted word as written (NPLANES 0 stays 0). STATUS bits 0 and 3 and bits 5..31
  of a STATUS write are ignored.
* Commands complete inside :meth:`MacroModel.write`, so the model is never busy and
  never reports ERRCODE 4 (BUSY); CYCLES gives the RTL's busy time.
"""

from __future__ import annotations

import operator

import numpy as np

from .energy import EventCounts
from .params import (
    BUS_DATA_BITS, CSR, GAIN_BITS, GAIN_FRAC_BITS, QSHIFT_BITS, Cmd, ErrCode, MacroParams, Op,
    Region, Status,
)

__all__ = [
    "comp_value", "thermometer", "readout", "shift_accumulate", "binarize", "calibrate",
    "calibration_moves", "input_planes", "run_tile", "ideal_matvec", "pack_bits",
    "unpack_bits", "word_address", "MacroModel",
]

_GAIN_MAX = (1 << GAIN_BITS) - 1
_GAIN_HALF = 1 << (GAIN_FRAC_BITS - 1)
_QSHIFT_MAX = (1 << QSHIFT_BITS) - 1
_WORD_MASK = (1 << BUS_DATA_BITS) - 1


# The activity counter CSRs (macros built with counters) and the events they report.
_COUNTER_CSRS = {CSR.PLANE_OPS: "plane_operations", CSR.CONVERSIONS: "column_conversions",
                 CSR.CAL_READS: "calibration_reads", CSR.BUS_ACCESSES: "bus_accesses"}

# Accepted bus writes that are events of models.energy (docs/ENERGY.md).
_WRITE_EVENTS = {Region.WEIGHT: "weight_writes", Region.COMP: "comp_writes",
                 Region.THRESH: "threshold_writes", Region.FLIP: "threshold_writes",
                 Region.INPUT: "input_writes"}


# --- argument checking ----------------------------------------------------------------

def _check_params(p) -> None:
    if not isinstance(p, MacroParams):
        raise TypeError(f"p must be a MacroParams, not {p!r}")


def _ints(name: str, value) -> np.ndarray:
    """``value`` as an int64 array; bools count as 0/1, floats are refused."""
    a = np.asarray(value)
    if a.dtype == np.bool_:
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, not an array of {a.dtype}")
    return a.astype(np.int64, copy=False)


def _check_range(name: str, a: np.ndarray, lo: int, hi: int, what: str) -> None:
    if a.size and (a.min() < lo or a.max() > hi):
        bad = a[(a < lo) | (a > hi)].flat[0]
        raise ValueError(f"{name} must be {what}, not {bad}")


def _bits(name: str, value) -> np.ndarray:
    a = _ints(name, value)
    _check_range(name, a, 0, 1, "0 or 1")
    return a


def _signed_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _check_last_axis(name: str, a: np.ndarray, size: int, what: str) -> None:
    if a.ndim < 1 or a.shape[-1] != size:
        raise ValueError(f"{name} must have {size} {what} on its last axis, not shape {a.shape}")


def _per_chip(a: np.ndarray) -> np.ndarray:
    """A per-macro register (SAT, QSHIFT) of batch shape (...,) against (..., C) columns."""
    return a if a.ndim == 0 else a[..., None]


# --- section 1: compute array ---------------------------------------------------------

def comp_value(p: MacroParams, comp_bits) -> np.ndarray:
    """Compensation value ``2n - K`` of K-bit compensation words (section 1).

    Parameters
    ----------
    p : MacroParams
    comp_bits : array_like of int, shape (..., C)
        Compensation words; bit k is cell k (1 = +1, 0 = -1). Bits at and above K are
        ignored, as on a COMP write (section 6).

    Returns
    -------
    numpy.ndarray of int64, shape (..., C)
        ``2 * popcount(comp_bits & (2^K - 1)) - K``.
    """
    _check_params(p)
    bits = _ints("comp_bits", comp_bits)
    _check_range("comp_bits", bits, 0, _WORD_MASK, "a 32-bit unsigned word")
    n = np.bitwise_count(bits & ((1 << p.comp_rows) - 1)).astype(np.int64)
    return 2 * n - p.comp_rows


def thermometer(p: MacroParams, n) -> np.ndarray:
    """Compensation word with cells ``0..n-1`` at 1, as CALIBRATE writes it (section 4).

    Parameters
    ----------
    p : MacroParams
    n : array_like of int
        Number of cells at 1, each in ``0..K``.

    Returns
    -------
    numpy.ndarray of int64
        ``2^n - 1`` (bits 0..n-1 set), same shape as ``n``.
    """
    _check_params(p)
    n = _ints("n", n)
    _check_range("n", n, 0, p.comp_rows, f"in [0, {p.comp_rows}] (comp_rows)")
    return (np.int64(1) << n) - 1


def _column_sums(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Step 1: ``s = sum_r x[r] * (2 w[r, c] - 1)`` over rows, batched."""
    signed_w = 2 * w - 1
    if signed_w.ndim == 2:
        # One weight matrix for every batch entry: one (N, R) @ (R, C) product.
        return x @ signed_w
    return (x[..., None, :] @ signed_w)[..., 0, :]


def _readout_chain(p: MacroParams, s, comp, offset, gain, sat, qshift, table) -> np.ndarray:
    """Steps 2-6 of section 1 applied to column sums ``s``."""
    W = p.readout_bits
    M = p.readout_max
    K = p.comp_rows
    comp = _ints("comp", comp)
    _check_range("comp", comp, -K, K, f"2n - K for n in [0, {K}]")
    if np.any((comp + K) % 2):
        raise ValueError(f"comp must be 2n - K (of the parity of K={K}), "
                         f"not {comp[(comp + K) % 2 != 0].flat[0]}")

    # Step 2: column offset.
    a = s + comp
    if offset is not None:
        offset = _ints("offset", offset)
        lo, hi = _signed_range(W)
        _check_range("offset", offset, lo, hi, f"a signed {W}-bit value in [{lo}, {hi}]")
        a = a + offset

    # Step 3: gain, 6 fraction bits, round half up (floor of a + 1/2).
    if gain is not None:
        gain = _ints("gain", gain)
        _check_range("gain", gain, 0, _GAIN_MAX, f"an unsigned {GAIN_BITS}-bit value")
        g = (a * gain + _GAIN_HALF) >> GAIN_FRAC_BITS
    else:
        g = a

    # Step 4: saturation to +-SAT (or +-M when the readout is not built).
    if sat is not None:
        sat = _ints("sat", sat)
        _check_range("sat", sat, 0, M, f"in [0, {M}] (readout_max)")
        limit = _per_chip(sat)
    else:
        limit = M
    k = np.minimum(np.maximum(g, -limit), limit)

    # Step 5: transfer curve, indexed by k mod 2^W (the two's-complement bits of k).
    if table is not None:
        table = _ints("table", table)
        _check_last_axis("table", table, 1 << W, "entries (2^readout_bits)")
        lo, hi = _signed_range(W)
        _check_range("table", table, lo, hi, f"a signed {W}-bit value in [{lo}, {hi}]")
        index = k & ((1 << W) - 1)
        if table.ndim == 1:
            t = table[index]
        else:
            batch = np.broadcast_shapes(table.shape[:-1], index.shape[:-1])
            t = np.take_along_axis(np.broadcast_to(table, batch + table.shape[-1:]),
                                   np.broadcast_to(index, batch + index.shape[-1:]), axis=-1)
    else:
        t = k

    # Step 6: floor quantisation. A shift of W-1 already maps every t to 0 or -2^(W-1);
    # larger shifts would leave the signed W-bit range, so the shift saturates there.
    if qshift is None:
        return t
    qshift = _ints("qshift", qshift)
    _check_range("qshift", qshift, 0, _QSHIFT_MAX, f"in [0, {_QSHIFT_MAX}]")
    q = _per_chip(np.minimum(qshift, W - 1))
    return (t >> q) << q


def readout(p: MacroParams, plane, weights, comp, offset=None, gain=None, sat=None,
            qshift=0, table=None, stuck_mask=None, stuck_value=None) -> np.ndarray:
    """Readout ``v`` of every column for one input bit-plane (section 1, steps 1-6).

    Every array broadcasts over leading batch dimensions ``...`` (images, planes, chip
    instances). An argument left at ``None`` is a non-ideality that is not built.

    Parameters
    ----------
    p : MacroParams
    plane : array_like of 0/1, shape (..., R)
        ``x_b[r]``: bit b of each input row.
    weights : array_like of 0/1, shape (..., R, C)
        Stored weight bits (1 = +1, 0 = -1).
    comp : array_like of int, shape (..., C)
        Compensation value ``2n - K`` (see :func:`comp_value`).
    offset : array_like of int, shape (..., C), optional
        OFFSET, signed W bits (``offset`` built).
    gain : array_like of int, shape (..., C), optional
        GAIN, unsigned 8 bits, 64 = 1.0 (``gain`` built). ``None``: ``g = a``.
    sat : int or array_like of int, shape (...,), optional
        SAT register, ``0..M`` (``readout`` built); one per macro, so a batch of chips
        gives shape (...,) without the column axis. ``None``: clamp to ``M``.
    qshift : int or array_like of int, shape (...,), optional
        QSHIFT register, ``0..15``; ``None`` or 0: no quantisation. Applied whenever
        given; :class:`MacroModel` passes ``None`` when ``readout`` is not built.
    table : array_like of int, shape (2^W,) or (..., 2^W), optional
        TABLE, signed W bits (``table`` built). ``None``: identity.
    stuck_mask, stuck_value : array_like of 0/1, shape (..., R, C), optional
        STUCK_MASK and STUCK_VALUE (``stuck`` built); give both or neither.

    Returns
    -------
    numpy.ndarray of int64, shape (..., C)
        The readout ``v``, ``-2^(W-1) <= v <= M``.

    Notes
    -----
    1. ``s = sum_r x_b[r] * (2 w_eff[r, c] - 1)``
    2. ``a = s + comp + OFFSET``
    3. ``g = floor((a * GAIN + 32) / 64)``
    4. ``k = clamp(g, -L, L)``, ``L = SAT`` (or ``M``)
    5. ``t = TABLE[k mod 2^W]``
    6. ``v = floor(t / 2^q) * 2^q`` with ``q = min(QSHIFT, W - 1)`` (the saturated
       shift is this model's reading of the contract; see the module docstring).
    """
    _check_params(p)
    x = _bits("plane", plane)
    w = _bits("weights", weights)
    _check_last_axis("plane", x, p.rows, "rows")
    if w.ndim < 2 or w.shape[-2] != p.rows:
        raise ValueError(f"weights must have shape (..., {p.rows}, C), not {w.shape}")
    if (stuck_mask is None) != (stuck_value is None):
        raise ValueError("stuck_mask and stuck_value must be given together")
    if stuck_mask is not None:
        mask = _bits("stuck_mask", stuck_mask)
        value = _bits("stuck_value", stuck_value)
        w = np.where(mask == 1, value, w)
    s = _column_sums(x, w)
    return _readout_chain(p, s, comp, offset, gain, sat, qshift, table)


# --- section 2: shift-accumulate ------------------------------------------------------

def shift_accumulate(p: MacroParams, readouts, acc_prev=None, accumulate=False):
    """Combine the readouts of the bit-planes of one RUN into ACC (section 2).

    Parameters
    ----------
    p : MacroParams
    readouts : array_like of int, shape (nplanes, ..., C)
        ``readouts[b]`` is the readout of plane b (b = 0 is the least significant);
        ``1 <= nplanes <= B``.
    acc_prev : array_like of int, shape (..., C), optional
        ACC before the command, signed A bits; required when ``accumulate``.
    accumulate : bool
        The command's ACCUMULATE bit: add to ``acc_prev`` instead of 0.

    Returns
    -------
    acc : numpy.ndarray of int64, shape (..., C)
        ``clamp(acc_prev + sum_b 2^b v_b, -2^(A-1), 2^(A-1) - 1)``.
    saturated : numpy.ndarray of bool, shape (..., C)
        Where the clamp changed the value (sets STATUS.acc_sat).
    """
    _check_params(p)
    v = _ints("readouts", readouts)
    if v.ndim < 2 or not 1 <= v.shape[0] <= p.input_bits:
        raise ValueError(f"readouts must have shape (nplanes, ..., C) with 1 <= nplanes <= "
                         f"{p.input_bits} (input_bits), not {v.shape}")
    lo, hi = _signed_range(p.readout_bits)
    _check_range("readouts", v, lo, hi, f"a signed {p.readout_bits}-bit readout")
    # Horner order, MSB plane first, exactly as the RTL forms the tile.
    tile = np.zeros(v.shape[1:], dtype=np.int64)
    for b in range(v.shape[0] - 1, -1, -1):
        tile = 2 * tile + v[b]
    lo, hi = _signed_range(p.acc_bits)
    if accumulate:
        if acc_prev is None:
            raise ValueError("acc_prev is required when accumulate is set")
        prev = _ints("acc_prev", acc_prev)
        _check_range("acc_prev", prev, lo, hi, f"a signed {p.acc_bits}-bit accumulator")
        total = prev + tile
    else:
        total = tile
    acc = np.minimum(np.maximum(total, lo), hi)
    return acc, acc != total


# --- section 3: batchnorm-binarize ----------------------------------------------------

def binarize(acc, theta, flip) -> np.ndarray:
    """Binarized output ``(acc >= theta) XOR flip`` (section 3); ties give 1 before the flip.

    Parameters
    ----------
    acc, theta : array_like of int, broadcastable
    flip : array_like of 0/1, broadcastable

    Returns
    -------
    numpy.ndarray of uint8
    """
    acc = _ints("acc", acc)
    theta = _ints("theta", theta)
    flip = _bits("flip", flip)
    return ((acc >= theta) ^ (flip == 1)).astype(np.uint8)


# --- section 4: calibration -----------------------------------------------------------

def calibration_moves(p: MacroParams) -> tuple[int, ...]:
    """Move sizes of the search of section 4: ``K/4, K/8, ..., 1, 1`` (``(1,)`` for K = 2)."""
    _check_params(p)
    return tuple(p.comp_rows >> (i + 2) for i in range(p.comp_steps - 1)) + (1,)


def calibrate(p: MacroParams, offset=None, gain=None, sat=None, qshift=0, table=None):
    """Run the calibration search of section 4 on every column at once.

    The data rows are off (``s = 0``) and every read goes through the readout chain of
    section 1 with the given registers. Arguments are those of :func:`readout` and
    broadcast the same way; the column shape is ``(C,)`` broadcast with ``offset`` and
    ``gain`` (and the batch shapes of ``sat``, ``qshift``, ``table``).

    Parameters
    ----------
    p : MacroParams
    offset, gain, sat, qshift, table
        As for :func:`readout`.

    Returns
    -------
    n : numpy.ndarray of int64, shape (..., C)
        Final number of compensation cells at 1; COMP = ``thermometer(p, n)``.
    flags : numpy.ndarray of uint8, shape (..., C)
        CALFLAG: ``(n == 0 and v >= 0) or (n == K and v < 0)`` on the verification read.
    reads : list of numpy.ndarray
        The readout of each read, the S search reads then the verification read.
    """
    _check_params(p)
    K = p.comp_rows
    shape = (p.cols,)
    for a in (offset, gain):
        if a is not None:
            shape = np.broadcast_shapes(shape, np.shape(a))
    for a in (sat, qshift):
        if a is not None and np.ndim(a):
            shape = np.broadcast_shapes(shape, np.shape(a) + (1,))
    if table is not None and np.ndim(table) > 1:
        shape = np.broadcast_shapes(shape, np.shape(table)[:-1] + (1,))
    s = np.zeros(shape, dtype=np.int64)

    def read(n):
        return _readout_chain(p, s, 2 * n - K, offset, gain, sat, qshift, table)

    n = np.full(shape, K // 2, dtype=np.int64)
    reads = []
    for d in calibration_moves(p):
        v = read(n)
        reads.append(v)
        # Move d cells against the sign of the readout.
        n = np.where(v >= 0, n - d, n + d)
    v = read(n)
    reads.append(v)
    flags = ((n == 0) & (v >= 0)) | ((n == K) & (v < 0))
    return n, flags.astype(np.uint8), reads


# --- a whole RUN, vectorised ----------------------------------------------------------

def input_planes(p: MacroParams, x, planes=None) -> np.ndarray:
    """Split unsigned multi-bit inputs into bit-planes (the INPUT region, section 6).

    Parameters
    ----------
    p : MacroParams
    x : array_like of int, shape (..., R)
        Inputs, each in ``[0, 2^planes)``.
    planes : int, optional
        Number of planes, ``1..B``; default B.

    Returns
    -------
    numpy.ndarray of uint8, shape (planes, ..., R)
        ``out[b]`` is bit b of ``x``.
    """
    _check_params(p)
    planes = _plane_count(p, planes)
    x = _ints("x", x)
    _check_last_axis("x", x, p.rows, "rows")
    _check_range("x", x, 0, (1 << planes) - 1, f"an unsigned {planes}-bit input")
    b = np.arange(planes, dtype=np.int64).reshape((planes,) + (1,) * x.ndim)
    return ((x[None] >> b) & 1).astype(np.uint8)


def _plane_count(p: MacroParams, planes) -> int:
    if planes is None:
        return p.input_bits
    planes = operator.index(planes)
    if not 1 <= planes <= p.input_bits:
        raise ValueError(f"planes must be in [1, {p.input_bits}] (input_bits), not {planes}")
    return planes


def run_tile(p: MacroParams, x, weights, comp, offset=None, gain=None, sat=None, qshift=0,
             table=None, stuck_mask=None, stuck_value=None, planes=None, acc_prev=None,
             accumulate=False):
    """ACC after one RUN with multi-bit inputs ``x`` (sections 1 and 2), vectorised.

    Parameters
    ----------
    p : MacroParams
    x : array_like of int, shape (..., R)
        Unsigned inputs in ``[0, 2^planes)``.
    weights, comp, offset, gain, sat, qshift, table, stuck_mask, stuck_value
        As for :func:`readout`.
    planes : int, optional
        The command's plane count, ``1..B``; default B.
    acc_prev, accumulate
        As for :func:`shift_accumulate`.

    Returns
    -------
    acc, saturated
        As for :func:`shift_accumulate`; shape (..., C), ``...`` the broadcast batch shape
        of all arguments (e.g. (chips, images) for per-chip weights and a batch of x).
    """
    _check_params(p)
    x = _ints("x", x)
    _check_last_axis("x", x, p.rows, "rows")
    # The plane axis goes in front of the batch shape of *every* argument, so x is first
    # broadcast to that whole batch (a view, no copy of the data).
    batch = x.shape[:-1]
    for a, core in ((weights, 2), (comp, 1), (offset, 1), (gain, 1), (table, 1),
                    (stuck_mask, 2), (stuck_value, 2), (sat, 0), (qshift, 0)):
        if a is not None:
            shape = np.shape(a)
            batch = np.broadcast_shapes(batch, shape[:len(shape) - core])
    bits = input_planes(p, np.broadcast_to(x, batch + x.shape[-1:]), planes)
    v = readout(p, bits, weights, comp, offset=offset, gain=gain, sat=sat, qshift=qshift,
                table=table, stuck_mask=stuck_mask, stuck_value=stuck_value)
    return shift_accumulate(p, v, acc_prev=acc_prev, accumulate=accumulate)


def ideal_matvec(p: MacroParams, x, weights) -> np.ndarray:
    """``sum_r x[r] * (2 w[r, c] - 1)``: what a RUN gives with no non-ideality.

    Parameters
    ----------
    p : MacroParams
    x : array_like of int, shape (..., R)
        Unsigned inputs.
    weights : array_like of 0/1, shape (..., R, C)

    Returns
    -------
    numpy.ndarray of int64, shape (..., C)
    """
    _check_params(p)
    x = _ints("x", x)
    _check_last_axis("x", x, p.rows, "rows")
    w = _bits("weights", weights)
    if w.ndim < 2 or w.shape[-2] != p.rows:
        raise ValueError(f"weights must have shape (..., {p.rows}, C), not {w.shape}")
    return _column_sums(x, w)


# --- section 6: bus words -------------------------------------------------------------

def pack_bits(bits) -> list[int]:
    """Pack a 0/1 vector into 32-bit words, bit i of word j = element 32j+i (section 6)."""
    bits = _bits("bits", bits).ravel()
    words = []
    for j in range(0, bits.size, BUS_DATA_BITS):
        chunk = bits[j:j + BUS_DATA_BITS]
        words.append(int((chunk << np.arange(chunk.size, dtype=np.int64)).sum()))
    return words


def unpack_bits(words, n: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: the first ``n`` bits of ``words`` as uint8."""
    words = _ints("words", words).ravel()
    bits = (words[:, None] >> np.arange(BUS_DATA_BITS, dtype=np.int64)) & 1
    return bits.ravel()[:n].astype(np.uint8)


def _region_by_name_or_number(p: MacroParams, region) -> dict:
    for r in p.regions():
        if region == r["region"] or (isinstance(region, str) and region.upper() == r["name"]):
            return r
    raise ValueError(f"region {region!r} is not built in this macro")


def word_address(p: MacroParams, region, **fields) -> int:
    """Wishbone word address ``(region << REGION_SHIFT) | offset`` (section 6).

    Parameters
    ----------
    p : MacroParams
    region : int or str
        Region number or name (``"WEIGHT"``, ...); must be built.
    **fields : int
        The region's offset fields (``group``, ``slot``, ``chunk``, ``plane``, ``word``,
        ``index``, ``reg``); missing ones are 0.

    Returns
    -------
    int
    """
    _check_params(p)
    r = _region_by_name_or_number(p, region)
    sizes = p.field_sizes()
    names = [name for name, _ in r["fields"]]
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise ValueError(f"region {r['name']} has fields {names}, not {unknown[0]!r}")
    offset = 0
    for name, width in r["fields"]:
        value = operator.index(fields.get(name, 0))
        if not 0 <= value < sizes[name]:
            raise ValueError(f"{name} must be in [0, {sizes[name] - 1}], not {value}")
        offset = (offset << width) | value
    return (r["region"] << p.region_shift) | offset


def _to_signed32(data: int) -> int:
    return data - (1 << 32) if data >> 31 else data


# --- the register-level model ---------------------------------------------------------

class MacroModel:
    """Register-level golden model of one macro instance (sections 1-6).

    :meth:`write` and :meth:`read` are the Wishbone accesses of section 6 and the ground
    truth of this class. A command completes inside the :meth:`write` that starts it, so
    the model is never observed busy: STATUS.busy always reads 0 and the BUSY error
    (ERRCODE 4) cannot occur here (the RTL reports it; the model's CYCLES says how long
    the RTL would be busy). A faulty access changes only the error registers; a faulty
    read returns 0.

    Parameters
    ----------
    p : MacroParams

    Members
    -------
    p : MacroParams
    weights : numpy.ndarray of uint8, shape (R, C)
        WEIGHT memory.
    comp_bits : numpy.ndarray of int64, shape (C,)
        COMP memory, K-bit words.
    thresh : numpy.ndarray of int64, shape (C,)
        THRESH memory.
    flip : numpy.ndarray of uint8, shape (C,)
        FLIP bits.
    input_planes : numpy.ndarray of uint8, shape (B, R)
        INPUT registers, ``input_planes[b, r]`` = bit b of input row r.
    acc : numpy.ndarray of int64, shape (C,)
        ACC memory.
    out, calflag : numpy.ndarray of uint8, shape (C,)
        OUT and CALFLAG bits.
    offset, gain : numpy.ndarray of int64, shape (C,), or None
        OFFSET and GAIN memories; ``None`` when not built.
    table : numpy.ndarray of int64, shape (2^W,), or None
        TABLE; ``None`` when not built.
    stuck_mask, stuck_value : numpy.ndarray of uint8, shape (R, C), or None
        STUCK_MASK and STUCK_VALUE; ``None`` when not built.
    sat, qshift : int or None
        SAT and QSHIFT registers; ``None`` when ``readout`` is not built.
    cmd, status, errcode, erraddr, cycles : int
        The CSRs of the same names.
    events : models.energy.EventCounts
        Every event of ``models.energy.EVENTS`` since power-on or
        :meth:`clear_events`, counted as the accesses and commands happen (docs/ENERGY.md);
        ``events.counters()`` are the RTL's activity counters. The convenience methods
        (``load_weights``, ...) are no bus accesses and count none; their commands count.
    """

    def __init__(self, p: MacroParams):
        _check_params(p)
        self.p = p
        self._regions = {r["region"]: r for r in p.regions()}
        self._csrs = {c["offset"]: c for c in p.csrs()}
        self._sizes = p.field_sizes()
        self.reset()

    # --- state ---------------------------------------------------------------------

    def reset(self) -> None:
        """Put every register and memory at its reset value (see the module docstring)."""
        p = self.p
        R, C, W = p.rows, p.cols, p.readout_bits
        self.weights = np.zeros((R, C), dtype=np.uint8)
        self.comp_bits = np.full(C, int(thermometer(p, p.comp_rows // 2)), dtype=np.int64)
        self.thresh = np.zeros(C, dtype=np.int64)
        self.flip = np.zeros(C, dtype=np.uint8)
        self.input_planes = np.zeros((p.input_bits, R), dtype=np.uint8)
        self.acc = np.zeros(C, dtype=np.int64)
        self.out = np.zeros(C, dtype=np.uint8)
        self.calflag = np.zeros(C, dtype=np.uint8)
        self.offset = np.zeros(C, dtype=np.int64) if p.has("offset") else None
        self.gain = np.full(C, 1 << GAIN_FRAC_BITS, dtype=np.int64) if p.has("gain") else None
        if p.has("table"):
            index = np.arange(1 << W, dtype=np.int64)
            self.table = np.where(index >= 1 << (W - 1), index - (1 << W), index)
        else:
            self.table = None
        if p.has("stuck"):
            self.stuck_mask = np.zeros((R, C), dtype=np.uint8)
            self.stuck_value = np.zeros((R, C), dtype=np.uint8)
        else:
            self.stuck_mask = self.stuck_value = None
        self.sat = p.readout_max if p.has("readout") else None
        self.qshift = 0 if p.has("readout") else None
        self.cmd = 0
        self.status = 0
        self.errcode = ErrCode.NONE
        self.erraddr = 0
        self.cycles = 0
        self.events = EventCounts()

    def clear_events(self) -> None:
        """Set every event count (and so every activity counter) to 0."""
        self.events.clear()

    def readout_kwargs(self) -> dict:
        """The non-ideality registers as keyword arguments of :func:`readout`."""
        return dict(offset=self.offset, gain=self.gain, sat=self.sat, qshift=self.qshift,
                    table=self.table, stuck_mask=self.stuck_mask, stuck_value=self.stuck_value)

    def address(self, region, **fields) -> int:
        """:func:`word_address` of this macro."""
        return word_address(self.p, region, **fields)

    # --- bus accesses --------------------------------------------------------------

    def _check_bus(self, addr, data=0, sel=0xF) -> tuple[int, int, int]:
        addr, data, sel = operator.index(addr), operator.index(data), operator.index(sel)
        if not 0 <= addr < 1 << self.p.addr_bits:
            raise ValueError(f"addr must be a {self.p.addr_bits}-bit word address, not {addr:#x}")
        if not 0 <= data <= _WORD_MASK:
            raise ValueError(f"data must be a 32-bit unsigned word, not {data:#x}")
        if not 0 <= sel <= 0xF:
            raise ValueError(f"sel must be 4 bits, not {sel:#x}")
        return addr, data, sel

    def _error(self, code: int, addr: int) -> None:
        # First error wins until software clears it.
        if not self.status >> Status.ERROR & 1:
            self.status |= 1 << Status.ERROR
            self.errcode = code
            self.erraddr = addr

    def _decode(self, addr: int):
        """(region dict, fields) of a word address, or None for BAD_ADDRESS."""
        shift = self.p.region_shift
        region = self._regions.get(addr >> shift)
        if region is None:
            return None
        offset = addr & ((1 << shift) - 1)
        if offset >> region["offset_bits"]:
            return None
        fields = {}
        pos = region["offset_bits"]
        for name, width in region["fields"]:
            pos -= width
            value = (offset >> pos) & ((1 << width) - 1)
            if value >= self._sizes[name]:
                return None
            fields[name] = value
        if region["region"] == Region.CSR and fields["reg"] not in self._csrs:
            return None
        return region, fields

    def _column(self, fields: dict) -> int:
        return self.p.cols_per_cycle * fields["group"] + fields["slot"]

    def _rows(self, fields: dict) -> slice:
        start = BUS_DATA_BITS * fields["chunk"]
        return slice(start, start + self.p.chunk_rows)

    def _word_bits(self, data: int, n: int) -> np.ndarray:
        return ((data >> np.arange(n, dtype=np.int64)) & 1).astype(np.uint8)

    def _packed_columns(self, fields: dict) -> slice:
        start = BUS_DATA_BITS * fields["word"]
        return slice(start, min(start + BUS_DATA_BITS, self.p.cols))

    def write(self, addr: int, data: int, sel: int = 0xF) -> None:
        """One Wishbone write (section 6); a command completes before this returns.

        Parameters
        ----------
        addr : int
            Word address, ``addr_bits`` bits.
        data : int
            32-bit unsigned word.
        sel : int
            Byte selects; anything but 0b1111 is BAD_SEL.
        """
        addr, data, sel = self._check_bus(addr, data, sel)
        self._count_access()
        if sel != 0xF:
            return self._error(ErrCode.BAD_SEL, addr)
        decoded = self._decode(addr)
        if decoded is None:
            return self._error(ErrCode.BAD_ADDRESS, addr)
        region, f = decoded
        number = region["region"]
        if number == Region.CSR:
            return self._write_csr(addr, f["reg"], data)
        if region["access"] == "ro":
            return self._error(ErrCode.READ_ONLY, addr)

        p = self.p
        if number in (Region.WEIGHT, Region.STUCK_MASK, Region.STUCK_VALUE):
            target = {Region.WEIGHT: self.weights, Region.STUCK_MASK: self.stuck_mask,
                      Region.STUCK_VALUE: self.stuck_value}[number]
            target[self._rows(f), self._column(f)] = self._word_bits(data, p.chunk_rows)
        elif number == Region.COMP:
            self.comp_bits[self._column(f)] = data & ((1 << p.comp_rows) - 1)
        elif number == Region.INPUT:
            self.input_planes[f["plane"], self._rows(f)] = self._word_bits(data, p.chunk_rows)
        elif number == Region.FLIP:
            cols = self._packed_columns(f)
            self.flip[cols] = self._word_bits(data, cols.stop - cols.start)
        elif number == Region.GAIN:
            if data > _GAIN_MAX:
                return self._error(ErrCode.BAD_VALUE, addr)
            self.gain[self._column(f)] = data
        else:
            width = {Region.THRESH: p.acc_bits, Region.OFFSET: p.readout_bits,
                     Region.TABLE: p.readout_bits}[number]
            value = _to_signed32(data)
            lo, hi = _signed_range(width)
            if not lo <= value <= hi:
                return self._error(ErrCode.BAD_VALUE, addr)
            if number == Region.TABLE:
                self.table[f["index"]] = value
            else:
                target = self.thresh if number == Region.THRESH else self.offset
                target[self._column(f)] = value
        if number in _WRITE_EVENTS:
            self.events.add(_WRITE_EVENTS[number])

    def count_access(self) -> None:
        """Count a bus access the model does not perform: one a testbench makes while the
        RTL is busy (the model is never busy), which the RTL's activity counters count."""
        self._count_access()

    def _count_access(self) -> None:
        # Every access on the bus is acknowledged, a faulty one too; the project's
        # masters take bus_latency + 1 cycles per access.
        self.events.add("bus_accesses")
        self.events.add("idle_cycles", self.p.bus_latency + 1)

    def _write_csr(self, addr: int, reg: int, data: int) -> None:
        if self._csrs[reg]["access"] == "ro":
            return self._error(ErrCode.READ_ONLY, addr)
        if reg == CSR.STATUS:
            if data >> Status.ERROR & 1:
                self.errcode = ErrCode.NONE
                self.erraddr = 0
            self.status &= ~(data & Status.W1C_MASK)
            if self.p.counters and data >> Status.CLEAR_COUNTERS & 1:
                self.events.clear_counters()
        elif reg == CSR.CMD:
            if not self._command_ok(data):
                return self._error(ErrCode.BAD_COMMAND, addr)
            self._execute(data)
        elif reg == CSR.SAT:
            if data > self.p.readout_max:
                return self._error(ErrCode.BAD_VALUE, addr)
            self.sat = data
        elif reg == CSR.QSHIFT:
            if data > _QSHIFT_MAX:
                return self._error(ErrCode.BAD_VALUE, addr)
            self.qshift = data
        else:  # pragma: no cover - every rw CSR is handled above
            raise AssertionError(f"unhandled CSR {reg}")

    def read(self, addr: int) -> int:
        """One Wishbone read (section 6): the 32-bit word, or 0 after a BAD_ADDRESS.

        Parameters
        ----------
        addr : int
            Word address, ``addr_bits`` bits.

        Returns
        -------
        int
            32-bit unsigned word.
        """
        addr, _, _ = self._check_bus(addr)
        # A read of an activity counter returns the count of the accesses before it.
        self._counters_before = self.events.counters()
        self._count_access()
        decoded = self._decode(addr)
        if decoded is None:
            self._error(ErrCode.BAD_ADDRESS, addr)
            return 0
        region, f = decoded
        number = region["region"]
        if number == Region.CSR:
            return self._read_csr(f["reg"])
        if number in (Region.WEIGHT, Region.STUCK_MASK, Region.STUCK_VALUE):
            source = {Region.WEIGHT: self.weights, Region.STUCK_MASK: self.stuck_mask,
                      Region.STUCK_VALUE: self.stuck_value}[number]
            return pack_bits(source[self._rows(f), self._column(f)])[0]
        if number == Region.COMP:
            return int(self.comp_bits[self._column(f)])
        if number == Region.INPUT:
            return pack_bits(self.input_planes[f["plane"], self._rows(f)])[0]
        if number in (Region.FLIP, Region.OUT, Region.CALFLAG):
            source = {Region.FLIP: self.flip, Region.OUT: self.out,
                      Region.CALFLAG: self.calflag}[number]
            return pack_bits(source[self._packed_columns(f)])[0]
        if number == Region.TABLE:
            return int(self.table[f["index"]]) & _WORD_MASK
        source = {Region.THRESH: self.thresh, Region.ACC: self.acc, Region.OFFSET: self.offset,
                  Region.GAIN: self.gain}[number]
        return int(source[self._column(f)]) & _WORD_MASK

    def _read_csr(self, reg: int) -> int:
        live = {CSR.CMD: self.cmd, CSR.STATUS: self.status, CSR.ERRCODE: self.errcode,
                CSR.ERRADDR: self.erraddr, CSR.CYCLES: self.cycles, CSR.SAT: self.sat,
                CSR.QSHIFT: self.qshift}
        if reg in live:
            return live[reg]
        if reg in _COUNTER_CSRS:
            return self._counters_before[_COUNTER_CSRS[reg]]
        return self._csrs[reg]["reset"]

    # --- commands (sections 2-5) ---------------------------------------------------

    def _command_ok(self, cmd: int) -> bool:
        opcode = cmd & Cmd.OPCODE_MASK
        nplanes = (cmd & Cmd.NPLANES_MASK) >> Cmd.NPLANES_SHIFT
        if opcode not in Op.ALL or cmd & Cmd.RESERVED_MASK:
            return False
        if opcode == Op.RUN:
            return nplanes <= self.p.input_bits
        return not cmd & (Cmd.ACCUMULATE | Cmd.NPLANES_MASK)

    def _execute(self, cmd: int) -> None:
        """Carry out an accepted command from BUSY to DONE, with its CYCLES."""
        p = self.p
        self.cmd = cmd
        self.status &= ~(1 << Status.DONE)
        opcode = cmd & Cmd.OPCODE_MASK
        if opcode == Op.RUN:
            planes = (cmd & Cmd.NPLANES_MASK) >> Cmd.NPLANES_SHIFT or p.input_bits
            v = readout(p, self.input_planes[:planes], self.weights, comp_value(p, self.comp_bits),
                        **self.readout_kwargs())
            self.acc, saturated = shift_accumulate(p, v, acc_prev=self.acc,
                                                   accumulate=bool(cmd & Cmd.ACCUMULATE))
            if saturated.any():
                self.status |= 1 << Status.ACC_SAT
            self.out = binarize(self.acc, self.thresh, self.flip)
            self.cycles = p.run_cycles(planes)
            self._count_run(planes)
        elif opcode == Op.CALIBRATE:
            self.status &= ~(1 << Status.CAL_RANGE)
            n, flags, reads = calibrate(p, offset=self.offset, gain=self.gain, sat=self.sat,
                                        qshift=self.qshift, table=self.table)
            self.comp_bits = thermometer(p, n)
            self.calflag = flags
            if flags.any():
                self.status |= 1 << Status.CAL_RANGE
            self.cycles = p.calibrate_cycles()
            self._count_calibrate(len(reads))
        else:
            self.acc = np.zeros(p.cols, dtype=np.int64)
            self.out = np.zeros(p.cols, dtype=np.uint8)
            self.cycles = p.clear_cycles()
            self.events.add("clear_commands")
        self.events.add("busy_cycles", self.cycles)
        self.status |= 1 << Status.DONE

    def _count_run(self, planes: int) -> None:
        """The events of a RUN as the sequencer steps through them: per group, planes
        ``planes-1 .. 0``, each one plane cycle of P columns (docs/ENERGY.md)."""
        p, e = self.p, self.events
        e.add("run_commands")
        ones = [int(self.input_planes[b].sum()) for b in range(planes)]
        for _group in range(p.groups):
            for b in range(planes - 1, -1, -1):
                e.add("plane_operations")
                e.add("column_conversions", p.cols_per_cycle)
                e.add("bitline_evaluations", p.cols_per_cycle)
                e.add("shift_accumulate_ops", p.cols_per_cycle)
                e.add("data_wordline_activations", ones[b])
                e.add("comp_wordline_activations", p.comp_rows)
            e.add("binarize_ops", p.cols_per_cycle)

    def _count_calibrate(self, reads: int) -> None:
        """The events of a CALIBRATE: per group ``reads`` reads (S search reads and the
        verification read) of P columns with all K compensation rows, then the group's
        P COMP words."""
        p, e = self.p, self.events
        e.add("calibrate_commands")
        for _group in range(p.groups):
            for _read in range(reads):
                e.add("calibration_reads")
                e.add("column_conversions", p.cols_per_cycle)
                e.add("comp_wordline_activations", p.comp_rows)
            e.add("comp_writes", p.cols_per_cycle)

    # --- convenience: whole arrays at once, same state and same executor -----------

    def _command(self, cmd: int) -> None:
        if not self._command_ok(cmd):  # pragma: no cover - callers build valid commands
            raise AssertionError(f"invalid command {cmd:#x}")
        self._execute(cmd)

    def _set(self, name: str, value, shape: tuple, lo: int, hi: int, what: str) -> None:
        if getattr(self, name) is None:
            raise ValueError(f"{name} is not built in this macro (nonideal="
                             f"{sorted(self.p.nonideal)})")
        a = _ints(name, value)
        if a.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, not {a.shape}")
        _check_range(name, a, lo, hi, what)
        setattr(self, name, a.astype(getattr(self, name).dtype))

    def load_weights(self, weights) -> None:
        """Fill the WEIGHT memory from a (R, C) array of 0/1."""
        self._set("weights", weights, (self.p.rows, self.p.cols), 0, 1, "0 or 1")

    def load_comp(self, comp_bits) -> None:
        """Fill the COMP memory from (C,) words; bits at and above K are dropped."""
        bits = _ints("comp_bits", comp_bits)
        _check_range("comp_bits", bits, 0, _WORD_MASK, "a 32-bit unsigned word")
        self._set("comp_bits", bits & ((1 << self.p.comp_rows) - 1), (self.p.cols,), 0,
                  _WORD_MASK, "a 32-bit unsigned word")

    def load_thresholds(self, thresh, flip=None) -> None:
        """Fill THRESH (signed A bits) and, when given, FLIP (0/1), both shape (C,)."""
        lo, hi = _signed_range(self.p.acc_bits)
        self._set("thresh", thresh, (self.p.cols,), lo, hi, f"a signed {self.p.acc_bits}-bit value")
        if flip is not None:
            self._set("flip", flip, (self.p.cols,), 0, 1, "0 or 1")

    def load_inputs(self, x) -> None:
        """Fill every INPUT plane from (R,) unsigned B-bit inputs."""
        self.input_planes = input_planes(self.p, np.asarray(x).reshape(self.p.rows))

    def set_nonideal(self, offset=None, gain=None, table=None, stuck_mask=None,
                     stuck_value=None, sat=None, qshift=None) -> None:
        """Write the non-ideality registers that are given; each must be built."""
        p = self.p
        W, C, R = p.readout_bits, p.cols, p.rows
        lo, hi = _signed_range(W)
        if offset is not None:
            self._set("offset", offset, (C,), lo, hi, f"a signed {W}-bit value")
        if gain is not None:
            self._set("gain", gain, (C,), 0, _GAIN_MAX, f"an unsigned {GAIN_BITS}-bit value")
        if table is not None:
            self._set("table", table, (1 << W,), lo, hi, f"a signed {W}-bit value")
        if stuck_mask is not None:
            self._set("stuck_mask", stuck_mask, (R, C), 0, 1, "0 or 1")
        if stuck_value is not None:
            self._set("stuck_value", stuck_value, (R, C), 0, 1, "0 or 1")
        for name, value, top in (("sat", sat, p.readout_max), ("qshift", qshift, _QSHIFT_MAX)):
            if value is None:
                continue
            if getattr(self, name) is None:
                raise ValueError(f"{name} is not built in this macro (needs 'readout')")
            value = operator.index(value)
            if not 0 <= value <= top:
                raise ValueError(f"{name} must be in [0, {top}], not {value}")
            setattr(self, name, value)

    def run(self, x=None, planes=None, accumulate=False) -> np.ndarray:
        """RUN (loading ``x`` into INPUT first when given) and return a copy of ACC.

        Parameters
        ----------
        x : array_like of int, shape (R,), optional
            Unsigned inputs in ``[0, 2^planes)``; all B planes are written.
        planes : int, optional
            NPLANES, ``1..B``; default B (NPLANES = 0).
        accumulate : bool
            The ACCUMULATE bit.
        """
        p = self.p
        nplanes = 0 if planes is None else _plane_count(p, planes)
        if x is not None:
            x = _ints("x", x)
            _check_range("x", x, 0, (1 << (nplanes or p.input_bits)) - 1,
                         f"an unsigned {nplanes or p.input_bits}-bit input")
            self.load_inputs(x)
        self._command(Op.RUN | (Cmd.ACCUMULATE if accumulate else 0)
                      | nplanes << Cmd.NPLANES_SHIFT)
        return self.acc.copy()

    def calibrate(self) -> np.ndarray:
        """CALIBRATE; return a copy of CALFLAG."""
        self._command(Op.CALIBRATE)
        return self.calflag.copy()

    def clear(self) -> None:
        """CLEAR: ACC and OUT of every column to 0."""
        self._command(Op.CLEAR)
