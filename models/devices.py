"""Statistical analog models of the compute array: 6T SRAM and ReRAM crossbars.

Every quantity is in *cell units*: one nominal SRAM bitcell's contribution to the column
value (the RTL's unit), or one nominal ReRAM LRS cell's current at unit input. The
per-instance parameters (cell currents, offsets, gains, stuck cells, conductance
factors) come from a :class:`models.chip.Chip` (see :func:`models.chip.sample_chip`);
this module only evaluates them. Equations, defaults and sources are in
``docs/DEVICE_MODELS.md``.

Shapes and vectorisation
------------------------
A chip is either one instance (arrays ``(R, C)``, ``(C,)``) or a stack of N instances
(``(N, R, C)``, ``(N, C)``, from :func:`models.chip.sample_chips`). Inputs are
``(M, R)`` (the same M input vectors for every chip), ``(N, M, R)`` (per chip, e.g. the
hidden activations of a network, which differ from chip to chip) or one vector ``(R,)``.
Weights are ``(R, C)`` (shared) or ``(N, R, C)``. Outputs are ``(N, M, C)`` for a stack,
``(M, C)`` for one chip, without the M axis for one input vector. Work is one matrix
product per bit-plane and chunk of inputs (float32); the per-cell tensor
``N x M x R x C`` is never formed. ``max_elements`` bounds the size of one chunk's
``N x m x C`` intermediate.

SRAM chain (docs/DEVICE_MODELS.md section 1), per bit-plane b, column c::

    s  = sum_r x_b[r] * I[r,c] * (2 w_eff[r,c] - 1)            # cell currents I, stuck cells
    u  = s + comp_c + offset_c + noise                          # comp cells have currents too
    a  = gain_c * u
    k  = clamp(a, -L, L)                                        # L = SAT (default M)
    t  = f(k)                                                   # bit-line discharge curve
    v  = floor_q(clip(floor(t + 1/2), -2^(W-1), 2^(W-1)-1))     # the ADC: round half up

in the RTL's order (docs/ARCHITECTURE.md section 1), so that an instance whose
parameters lie on the RTL's grid maps onto the RTL exactly (:func:`models.chip.chip_to_rtl`).
With ``bl_mode == "bitline"`` the curve acts on each bit line's own count of discharging
cells instead: ``u = f(n_pos) - f(n_neg) + offset_c + noise`` and ``t = k``.
"""

from __future__ import annotations

import numpy as np

from .dfp import slice_weights
from .params import QSHIFT_BITS, signed_bits_for
from .sampler import ArrayNoise

__all__ = [
    "DISTRIBUTIONS", "CURVE_SHAPES", "BL_MODES", "DEFAULT_MAX_ELEMENTS",
    "variation", "discharge_curve", "sram_column", "sram_readout", "sram_mac",
    "rram_levels", "rram_program", "rram_column_current", "rram_mac",
]

#: Shapes of the per-cell variation: ``normal`` ``1 + sigma*e``, ``lognormal`` ``exp(sigma*e)``.
DISTRIBUTIONS = ("lognormal", "normal")
#: Saturating bit-line discharge curves (:func:`discharge_curve`).
CURVE_SHAPES = ("tanh", "exp")
#: Where the discharge curve acts: on the signed column value, or on each bit line.
BL_MODES = ("column", "bitline")
#: Default bound on one chunk's ``N x m x C`` float32 intermediate (16 MiB).
DEFAULT_MAX_ELEMENTS = 1 << 22


# --- shared pieces ---------------------------------------------------------------------

def variation(eps, sigma: float, dist: str) -> np.ndarray:
    """Multiplicative variation factors from standard normal draws ``eps``.

    ``normal``: ``max(1 + sigma*eps, 0)`` (mean 1, standard deviation ``sigma``; a current
    or conductance cannot be negative). ``lognormal``: ``exp(sigma*eps)`` (median 1,
    standard deviation of the logarithm ``sigma``; mean ``exp(sigma^2/2)``). Both agree
    to first order for small ``sigma``. Returns float32.
    """
    eps = np.asarray(eps, dtype=np.float32)
    if dist not in DISTRIBUTIONS:
        raise ValueError(f"dist must be one of {', '.join(DISTRIBUTIONS)}, not {dist!r}")
    if sigma == 0:
        return np.ones_like(eps)
    if dist == "normal":
        return np.maximum(np.float32(1) + np.float32(sigma) * eps, np.float32(0))
    return np.exp(np.float32(sigma) * eps)


def discharge_curve(n, vmax: float, shape: str = "tanh") -> np.ndarray:
    """Saturating bit-line response, odd in ``n``, slope 1 at 0, ``|f(n)| < min(|n|, vmax)``.

    ``tanh``: ``vmax * tanh(n / vmax)``; ``exp``: ``sign(n) * vmax * (1 - exp(-|n| / vmax))``
    (an RC discharge toward a floor ``vmax`` cell units below the precharge level). Both
    are in cell units: the slope at 0 is one unit per cell, which fixes the ``k`` of
    ``V = Vmax (1 - exp(-k n / Vmax))``. ``vmax = inf`` is the identity (float32 out).
    """
    n = np.asarray(n, dtype=np.float32)
    if shape not in CURVE_SHAPES:
        raise ValueError(f"shape must be one of {', '.join(CURVE_SHAPES)}, not {shape!r}")
    if not vmax > 0:
        raise ValueError(f"vmax must be > 0, not {vmax}")
    if np.isinf(vmax):
        return n.copy()
    vm = np.float32(vmax)
    if shape == "tanh":
        return vm * np.tanh(n / vm)
    return np.sign(n) * (-vm * np.expm1(-np.abs(n) / vm))


def _adc(t, readout_bits: int, qshift: int) -> np.ndarray:
    """Round half up to an integer, clip to signed ``readout_bits``, floor to ``2^qshift``.

    The shift saturates at ``readout_bits - 1`` as in ``models.macro.readout`` (a larger
    one would leave the signed range).
    """
    lo, hi = -(1 << (readout_bits - 1)), (1 << (readout_bits - 1)) - 1
    v = t + np.float32(0.5)
    np.floor(v, out=v)
    np.clip(v, lo, hi, out=v)
    v = v.astype(np.int32)
    qshift = min(qshift, readout_bits - 1)
    if qshift:
        v >>= qshift
        v <<= qshift
    return v


def _chip_batch(chip, field):
    """A chip array with its chip axis made explicit (``(N, ...)``; N = 1 for one chip)."""
    a = getattr(chip, field)
    return a if chip.batch is not None else a[None]


def _check_noise(noise, rng, sigma):
    """The source of the per-read noise: a counter-based :class:`models.sampler.ArrayNoise`
    (``noise``) or a ``numpy.random.Generator`` (``rng``, draws in call order)."""
    if noise is not None and rng is not None:
        raise ValueError("give noise (counter-based) or rng (a numpy Generator), not both")
    if noise is not None and not isinstance(noise, ArrayNoise):
        raise TypeError(f"noise must be a models.sampler.ArrayNoise, not {type(noise).__name__}")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, not {type(rng).__name__}")
    if sigma > 0 and noise is None and rng is None:
        raise ValueError("read_noise > 0: pass noise=models.sampler.ReadNoise(...).at(...) (or "
                         "rng=numpy.random.Generator) for the per-read noise")


def _draw(noise, rng, plane, start, shape, chip_major):
    """Standard normals for one chunk: ``shape`` is (N, m, C) (chip-major) or (m, N, C);
    the chunk holds the call's input rows ``start .. start+m-1``."""
    if noise is not None:
        m = shape[1] if chip_major else shape[0]
        return noise.standard_normal(plane, start, m, shape[-1], chip_major=chip_major)
    return rng.standard_normal(shape, dtype=np.float32)


def _as_bits(name, a):
    a = np.asarray(a)
    if a.dtype == bool:
        return a
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be an array of bits (bool or 0/1 integers), not {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > 1):
        raise ValueError(f"{name} must hold only 0 and 1")
    return a.astype(bool)


def _inputs(x, n_chips, rows, name="x"):
    """Inputs as ``(Nx, M, R)`` with Nx in {1, N}, and a flag: was it one vector?"""
    x = np.asarray(x)
    single = x.ndim == 1
    if single:
        x = x[None]
    if x.ndim == 2:
        x = x[None]
    elif x.ndim != 3:
        raise ValueError(f"{name} must have shape (R,), (M, R) or (N, M, R), not {x.shape}")
    elif n_chips is None or x.shape[0] != n_chips:
        raise ValueError(f"{name} of shape {x.shape} has a chip axis; it needs a stack of "
                         f"{x.shape[0]} chips, not {'one chip' if n_chips is None else n_chips}")
    if x.shape[-1] != rows:
        raise ValueError(f"{name} must have {rows} rows in its last axis, not {x.shape[-1]}")
    return x, single


def _weights_batch(w, chip, rows, cols, name="weights"):
    w = np.asarray(w)
    if w.shape[-2:] != (rows, cols) or w.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape ({rows}, {cols}) or (N, {rows}, {cols}), not {w.shape}")
    if w.ndim == 3 and (chip.batch is None or w.shape[0] != chip.batch):
        raise ValueError(f"{name} of shape {w.shape} needs a stack of {w.shape[0]} chips")
    return w if w.ndim == 3 else w[None]


def _finish(out, chip, single):
    if chip.batch is None:
        out = out[0]
    if single:
        out = out[..., 0, :]
    return out


# --- SRAM ----------------------------------------------------------------------------

class _SramArray:
    """One call's chip x weights, prepared for bit-plane evaluation (float32)."""

    def __init__(self, chip, weights, comp, readout_bits, sat, qshift):
        cfg = chip.config
        if cfg.technology != "sram":
            raise ValueError(f"this is an SRAM model; the chip's technology is {cfg.technology!r}")
        self.cfg, self.chip = cfg, chip
        cell = _chip_batch(chip, "cell_current")
        self.n, self.rows, self.cols = cell.shape
        self.comp_rows = chip.comp_rows
        self._weights = _as_bits("weights", _weights_batch(weights, chip, self.rows, self.cols))
        self._mat = None
        self.bitline = cfg.bl_mode == "bitline"

        K = self.comp_rows
        comp = np.zeros(self.cols, np.int64) if comp is None else np.asarray(comp)
        if comp.dtype == bool or not np.issubdtype(comp.dtype, np.integer):
            raise TypeError(f"comp must be integers 2n-K, not {comp.dtype}")
        if comp.shape[-1:] != (self.cols,) or comp.ndim > 2:
            raise ValueError(f"comp must have shape ({self.cols},) or (N, {self.cols}), not {comp.shape}")
        if comp.ndim == 2 and (chip.batch is None or comp.shape[0] != chip.batch):
            raise ValueError(f"comp of shape {comp.shape} needs a stack of {comp.shape[0]} chips")
        if comp.size and (comp.min() < -K or comp.max() > K or np.any((comp + K) % 2)):
            raise ValueError(f"comp must be 2n-K with n in 0..{K} (K={K}), not {comp}")
        n_on = (comp.astype(np.int64) + K) // 2
        therm = np.arange(K)[:, None] < n_on[..., None, :]                 # (.., K, C)
        ccur = _chip_batch(chip, "comp_current")                           # (N, K, C)
        comp_pos = np.sum(ccur * therm, axis=-2, dtype=np.float32)
        comp_neg = np.sum(ccur * ~therm, axis=-2, dtype=np.float32)
        self.comp_pos = np.broadcast_to(comp_pos, (self.n, self.cols))
        self.comp_neg = np.broadcast_to(comp_neg, (self.n, self.cols))
        self.offset = _chip_batch(chip, "offset").astype(np.float32)
        self.gain = _chip_batch(chip, "gain").astype(np.float32)
        self.flat = None

        W = signed_bits_for(self.rows + K) if readout_bits is None else readout_bits
        if isinstance(W, bool) or not isinstance(W, (int, np.integer)) or not 2 <= W <= 16:
            raise ValueError(f"readout_bits must be an integer in [2, 16], not {readout_bits!r}")
        self.readout_bits = int(W)
        M = (1 << (W - 1)) - 1
        sat = cfg.sat if sat is None else sat
        sat = M if sat is None else sat
        if not 0 <= sat <= M:
            raise ValueError(f"sat must be in [0, {M}] for readout_bits={W}, not {sat}")
        self.sat = float(sat)
        qshift = cfg.qshift if qshift is None else qshift
        if not 0 <= qshift < (1 << QSHIFT_BITS):
            raise ValueError(f"qshift must be in [0, {(1 << QSHIFT_BITS) - 1}], not {qshift}")
        self.qshift = int(qshift)

    @property
    def mat(self) -> np.ndarray:
        """The cell currents times the signed effective weights (N, R, C), float32; in
        bit-line mode ``(N, R, 2C)``: columns [0, C) discharge BLB (weight +1), [C, 2C) BL
        (weight -1), so one product gives both bit lines. Built on first use: reads with
        every input off (calibration, trim) need none."""
        if self._mat is None:
            chip = self.chip
            cell = _chip_batch(chip, "cell_current")
            w_eff = np.where(_chip_batch(chip, "stuck_mask"), _chip_batch(chip, "stuck_value"),
                             self._weights)
            if self.bitline:
                self._mat = np.concatenate([cell * w_eff, cell * ~w_eff], axis=-1).astype(np.float32)
            else:
                self._mat = (cell * np.where(w_eff, np.float32(1), np.float32(-1))).astype(np.float32)
        return self._mat

    def chunk_rows(self, max_elements):
        return max(1, int(max_elements) // (self.n * self.cols * (2 if self.bitline else 1)))

    def analog(self, xb, noise=None, rng=None, plane=0, start=0):
        """Analog values t (float32) of binary planes ``xb``.

        ``xb`` ``(m, R)`` (the same inputs for every chip) gives ``(m, N, C)``: the chips
        then share one large matrix product ``(m, R) @ (R, N*C)``, far faster than N
        small ones. ``xb`` ``(N, m, R)`` gives ``(N, m, C)``. ``noise``/``rng``, ``plane``
        and ``start`` (the chunk's first row in the call) locate the read-noise draws.
        """
        cfg = self.cfg
        shared = xb.ndim == 2
        # Per-column parameters (N, C) broadcast against either layout.
        layout = (1, self.n, -1) if shared else (self.n, 1, -1)
        width = self.cols * (2 if self.bitline else 1)
        if not xb.any():
            # Every input off: the products are 0 (their sign does not reach a readout).
            y = np.zeros(xb.shape[:-1] + (self.n, width) if shared
                         else (self.n,) + xb.shape[-2:-1] + (width,), np.float32)
        elif shared:
            if self.flat is None:
                self.flat = np.ascontiguousarray(self.mat.transpose(1, 0, 2)).reshape(self.rows, -1)
            y = (xb @ self.flat).reshape(xb.shape[0], self.n, width)
        else:
            y = np.matmul(xb, self.mat)
        if self.bitline:
            C = self.cols
            a = discharge_curve(y[..., :C] + self.comp_pos.reshape(layout), cfg.bl_vmax, cfg.bl_shape)
            a -= discharge_curve(y[..., C:] + self.comp_neg.reshape(layout), cfg.bl_vmax, cfg.bl_shape)
        else:
            a = y
            a += (self.comp_pos - self.comp_neg).reshape(layout)
        a += self.offset.reshape(layout)
        if cfg.read_noise > 0:
            z = _draw(noise, rng, plane, start, a.shape, chip_major=not shared)
            z *= np.float32(cfg.read_noise)
            a += z
            del z
        a *= self.gain.reshape(layout)
        np.clip(a, -self.sat, self.sat, out=a)
        if not self.bitline and np.isfinite(cfg.bl_vmax):
            a = discharge_curve(a, cfg.bl_vmax, cfg.bl_shape)
        return a


def _plane_call(x_plane, weights, chip, comp, readout_bits, sat, qshift, noise, rng, plane,
                max_elements, digital):
    arr = _SramArray(chip, weights, comp, readout_bits, sat, qshift)
    _check_noise(noise, rng, arr.cfg.read_noise)
    x, single = _inputs(_as_bits("x_plane", x_plane), chip.batch, arr.rows, "x_plane")
    shared, m_total = x.shape[0] == 1, x.shape[1]
    if noise is not None:
        noise.check(m_total, arr.n)
    out = np.empty((arr.n, m_total, arr.cols), np.int32 if digital else np.float32)
    step = arr.chunk_rows(max_elements)
    for m0 in range(0, m_total, step):
        xb = (x[0] if shared else x)[..., m0:m0 + step, :].astype(np.float32)
        t = arr.analog(xb, noise, rng, plane, m0)
        t = _adc(t, arr.readout_bits, arr.qshift) if digital else t
        out[:, m0:m0 + step] = t.transpose(1, 0, 2) if shared else t
    return _finish(out, chip, single)


def sram_column(x_plane, weights, chip, comp=None, *, readout_bits=None, sat=None, noise=None,
                rng=None, plane=0, max_elements=DEFAULT_MAX_ELEMENTS) -> np.ndarray:
    """Analog column value ``t`` of one bit-plane, before the ADC rounds it (float32).

    Parameters
    ----------
    x_plane : array_like of bits
        Binary input plane, ``(R,)``, ``(M, R)`` or ``(N, M, R)``.
    weights : array_like of bits
        Stored weight bits (1 = +1, 0 = -1), ``(R, C)`` or ``(N, R, C)``.
    chip : models.chip.Chip
        SRAM instance or stack of instances.
    comp : array_like of int, optional
        Compensation value ``2n - K`` per column (``(C,)`` or ``(N, C)``); cells ``0..n-1``
        of the column hold +1 (the calibration's thermometer code). Default 0 (balanced).
    readout_bits : int, optional
        ADC width W; default the smallest holding ``±(R + K)``.
    sat : int, optional
        Saturation limit L in cell units; default ``chip.config.sat``, else ``2^(W-1) - 1``.
    noise : models.sampler.ArrayNoise, optional
        Counter-based per-read noise (``ReadNoise(seeds).at(array, images)``): the draw
        of every read is fixed by (chip seed, array, ``plane``, image index, column).
    rng : numpy.random.Generator, optional
        Instead of ``noise``: draws from this generator in call order. One of the two is
        required when ``read_noise > 0``.
    plane : int
        The read's number within one input (its bit-plane), part of the noise key.
    max_elements : int
        Bound on one chunk's ``N x m x C`` intermediate.
    """
    return _plane_call(x_plane, weights, chip, comp, readout_bits, sat, 0, noise, rng, plane,
                       max_elements, False)


def sram_readout(x_plane, weights, chip, comp=None, *, readout_bits=None, sat=None, qshift=None,
                 noise=None, rng=None, plane=0, max_elements=DEFAULT_MAX_ELEMENTS) -> np.ndarray:
    """The ADC's signed integer readout ``v`` of one bit-plane (int32); see :func:`sram_column`.

    ``qshift`` (default ``chip.config.qshift``) floors ``v`` to a multiple of ``2^qshift``.
    On an ideal chip with balanced compensation ``v`` equals ``sum_r x[r] (2 w[r,c] - 1)``.
    """
    return _plane_call(x_plane, weights, chip, comp, readout_bits, sat, qshift, noise, rng, plane,
                       max_elements, True)


def sram_mac(x, weights, chip, input_bits: int, comp=None, *, readout_bits=None, sat=None,
             qshift=None, noise=None, rng=None, max_elements=DEFAULT_MAX_ELEMENTS) -> np.ndarray:
    """Bit-serial multiply-accumulate of unsigned inputs: ``tile = sum_b 2^b v_b`` (int32).

    Each of the ``input_bits`` planes of ``x`` is one array readout (with its own offset,
    noise, saturation and ADC rounding); the readouts are shift-accumulated as in
    docs/ARCHITECTURE.md section 2. Planes are evaluated even when they are all zero,
    because offset and compensation still produce a readout, exactly as the RTL does for
    ``NPLANES = input_bits``. On an ideal chip with balanced compensation the result is
    ``sum_r x[r] (2 w[r,c] - 1)``.

    Parameters
    ----------
    x : array_like of int
        Unsigned inputs below ``2^input_bits``: ``(R,)``, ``(M, R)`` or ``(N, M, R)``.
    input_bits : int
        Number of bit-planes B (1 for binary activations).

    The other parameters are those of :func:`sram_readout`; plane ``b`` is read ``b``
    of the noise key.
    """
    if isinstance(input_bits, bool) or not isinstance(input_bits, (int, np.integer)) \
            or not 1 <= input_bits <= 16:
        raise ValueError(f"input_bits must be an integer in [1, 16], not {input_bits!r}")
    x = np.asarray(x)
    if x.dtype == bool:
        x = x.astype(np.uint8)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"x must be unsigned integers, not {x.dtype}")
    if x.size and (x.min() < 0 or x.max() >= 1 << input_bits):
        raise ValueError(f"x must lie in [0, {(1 << input_bits) - 1}] for input_bits={input_bits}")
    arr = _SramArray(chip, weights, comp, readout_bits, sat, qshift)
    _check_noise(noise, rng, arr.cfg.read_noise)
    x, single = _inputs(x, chip.batch, arr.rows)
    x = x.astype(np.int32)
    shared, m_total = x.shape[0] == 1, x.shape[1]
    if noise is not None:
        noise.check(m_total, arr.n)
    out = np.empty((arr.n, m_total, arr.cols), np.int32)
    step = arr.chunk_rows(max_elements)
    for m0 in range(0, m_total, step):
        xc = (x[0] if shared else x)[..., m0:m0 + step, :]
        tile = None
        for b in range(input_bits):
            t = arr.analog(((xc >> b) & 1).astype(np.float32), noise, rng, b, m0)
            v = _adc(t, arr.readout_bits, arr.qshift)
            if b:
                v <<= b
            tile = v if tile is None else tile + v
        out[:, m0:m0 + step] = tile.transpose(1, 0, 2) if shared else tile
    return _finish(out, chip, single)


# --- ReRAM ---------------------------------------------------------------------------

def rram_levels(on_off_ratio: float, cell_bits: int) -> np.ndarray:
    """Nominal conductances of the ``2^cell_bits`` levels, in units of the LRS (float64).

    Levels are evenly spaced from ``g_off = 1 / on_off_ratio`` (HRS, level 0) to 1 (LRS,
    top level); ``on_off_ratio = inf`` gives ``g_off = 0``.
    """
    if not on_off_ratio > 1:
        raise ValueError(f"on_off_ratio must be > 1, not {on_off_ratio}")
    if cell_bits not in (1, 2):
        raise ValueError(f"cell_bits must be 1 or 2, not {cell_bits!r}")
    g_off = 0.0 if np.isinf(on_off_ratio) else 1.0 / on_off_ratio
    return np.linspace(g_off, 1.0, 1 << cell_bits)


def rram_program(levels, chip) -> np.ndarray:
    """Conductances after programming ``levels`` into the chip's cells (float32).

    ``levels``: ``(R, C, J)`` or ``(N, R, C, J)`` integers in ``0..2^cell_bits - 1`` (see
    :func:`models.dfp.slice_weights`). Each cell's nominal level conductance is scaled by
    its fixed variation factor; a stuck cell sits at the LRS or HRS whatever was written
    (its conductance still varies).
    """
    cfg = chip.config
    if cfg.technology != "rram":
        raise ValueError(f"this is a ReRAM model; the chip's technology is {cfg.technology!r}")
    g_nom = rram_levels(cfg.on_off_ratio, cfg.cell_bits).astype(np.float32)
    lv = np.asarray(levels)
    if not np.issubdtype(lv.dtype, np.integer):
        raise TypeError(f"levels must be integers, not {lv.dtype}")
    shape = chip.cell_factor.shape[-3:]
    if lv.shape[-3:] != shape or lv.ndim not in (3, 4) or \
            (lv.ndim == 4 and (chip.batch is None or lv.shape[0] != chip.batch)):
        raise ValueError(f"levels must have shape {shape} or (N,) + {shape}, not {lv.shape}")
    if lv.size and (lv.min() < 0 or lv.max() >= len(g_nom)):
        raise ValueError(f"levels must lie in [0, {len(g_nom) - 1}] for cell_bits={cfg.cell_bits}")
    g = g_nom[lv]
    g = np.where(chip.stuck_mask, np.where(chip.stuck_value, g_nom[-1], g_nom[0]), g)
    return (g * chip.cell_factor).astype(np.float32)


def rram_column_current(x, conductance, *, read_noise: float = 0.0, rng=None) -> np.ndarray:
    """Column currents ``I[..., m, c] = sum_r x[..., m, r] G[..., r, c] (+ noise)`` (float32).

    ``x`` are input voltages (read pulses) in units of the nominal read voltage, ``G``
    conductances in LRS units, so a current of 1 is one LRS cell at unit input. The
    per-read noise has standard deviation ``read_noise`` in those units.

    The sums are taken in float64 and rounded once: a float32 product's rounding depends
    on the BLAS kernel's blocking of the rows (OpenBLAS's Haswell kernel gives other
    currents to the images of a smaller call), while in float64 the products of integer
    inputs and float32 conductances sum exactly, so a current does not depend on which
    images share its call (``tests/test_devices.py``, under several kernels).
    """
    current = np.matmul(np.asarray(x, dtype=np.float32).astype(np.float64),
                        np.asarray(conductance, dtype=np.float32).astype(np.float64))
    current = current.astype(np.float32)
    if read_noise > 0:
        _check_noise(None, rng, read_noise)
        current += np.float32(read_noise) * rng.standard_normal(current.shape, dtype=np.float32)
    return current


def rram_mac(x, q, chip, *, noise=None, rng=None, max_elements=DEFAULT_MAX_ELEMENTS) -> np.ndarray:
    """Estimated dot products ``sum_r x[r] q[r, c]`` read from a ReRAM crossbar (float32).

    The integer weights ``q`` (``+1/-1`` when ``chip.config.weight_bits == 1``, else codes
    of :func:`models.dfp.to_fixed`) are bit-sliced with the chip's ``cell_bits`` and
    ``mapping`` (:func:`models.dfp.slice_weights`) and programmed (:func:`rram_program`).
    The periphery reads every physical column, removes the nominal HRS baseline
    ``g_off * sum_r x[r]`` and divides by the nominal level step, which turns the current
    into an estimate of ``sum_r x[r] level[r]``; the slices are then shift-added with
    their coefficients and the offset-mapping bias is subtracted. ADC quantisation is not
    modelled (ideal readout), so the only errors are the devices'.

    Parameters
    ----------
    x : array_like of float
        Inputs ``(R,)``, ``(M, R)`` or ``(N, M, R)``, in units of the read voltage.
    q : array_like of int
        Weights ``(R, C)`` or ``(N, R, C)``.
    chip : models.chip.Chip
        ReRAM instance or stack; its ``cell_factor`` has one cell per slice of each weight.
    noise, rng
        Source of the per-read noise (see :func:`sram_column`); one is required when
        ``read_noise > 0``. The noise key's columns are the physical columns
        ``c * J + j`` (read 0).
    """
    cfg = chip.config
    if cfg.technology != "rram":
        raise ValueError(f"this is a ReRAM model; the chip's technology is {cfg.technology!r}")
    _check_noise(noise, rng, cfg.read_noise)
    rows, cols, cells = chip.cell_factor.shape[-3:]
    q = np.asarray(q)
    _weights_batch(q, chip, rows, cols, "q")
    levels, coef, bias = slice_weights(q, cfg.weight_bits, cfg.cell_bits, cfg.mapping)
    if levels.shape[-1] != cells:
        raise ValueError(f"the chip has {cells} cells per weight, the encoding needs {levels.shape[-1]}")
    n = chip.batch or 1
    g = rram_program(levels, chip).reshape(n, rows, cols * cells)
    g_nom = rram_levels(cfg.on_off_ratio, cfg.cell_bits)
    g_off, step = np.float32(g_nom[0]), np.float32(g_nom[1] - g_nom[0])
    coef32 = coef.astype(np.float32)

    x, single = _inputs(x, chip.batch, rows)
    x = x.astype(np.float32)
    m_total = x.shape[1]
    if noise is not None:
        noise.check(m_total, n)
    out = np.empty((n, m_total, cols), np.float32)
    chunk = max(1, int(max_elements) // (n * cols * cells))
    shared = x.shape[0] == 1 and n > 1
    if shared:
        # One large product for all chips, as in the SRAM model.
        g_flat = np.ascontiguousarray(g.transpose(1, 0, 2)).reshape(rows, -1)
    for m0 in range(0, m_total, chunk):
        xc = x[:, m0:m0 + chunk]
        if shared:
            current = rram_column_current(xc[0], g_flat)
            current = current.reshape(xc.shape[1], n, -1)
        else:
            current = rram_column_current(xc, g)
        if cfg.read_noise > 0:
            z = _draw(noise, rng, 0, m0, current.shape, chip_major=not shared)
            current += np.float32(cfg.read_noise) * z
        if shared:
            current = current.transpose(1, 0, 2)
        xsum = xc.sum(axis=-1)[..., None, None]                       # (Nx, m, 1, 1)
        est = (current.reshape(n, xc.shape[1], cols, cells) - g_off * xsum) / step
        out[:, m0:m0 + chunk] = est @ coef32 - np.float32(bias) * xsum[..., 0]
    return _finish(out, chip, single)
