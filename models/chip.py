"""Chip instances: the spreads of a technology (:class:`ChipConfig`), one sampled instance
(:class:`Chip`), stacks of instances for vectorised evaluation, and the mapping of an
SRAM instance onto the parameters the RTL can inject (:func:`chip_to_rtl`).

A chip instance is everything that is fixed once the silicon is made (and, for ReRAM,
once the weights are programmed): per-cell read currents or conductance factors,
per-column comparator offsets and gains, stuck cells. Per-read noise is not part of the
instance; it is drawn at every readout by :mod:`models.devices`.

Sampling is reproducible and *decoupled*: each kind of parameter has its own random
stream derived from the seed (``numpy.random.SeedSequence(seed, spawn_key=(stream,))``;
:mod:`models.streams` seeds many at once) and is drawn as standard normals that are then
scaled by the configured spread. Hence
the same seed with a larger spread gives the same instance with every deviation scaled
up (common random numbers for sweeps), and changing one spread never changes the draws
of another parameter.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .devices import BL_MODES, CURVE_SHAPES, DISTRIBUTIONS, discharge_curve, variation
from .dfp import MAPPINGS, cells_per_weight
from .params import GAIN_BITS, GAIN_FRAC_BITS, QSHIFT_BITS, MacroParams
from .streams import StreamSet

__all__ = [
    "TECHNOLOGIES", "ChipConfig", "Chip", "sample_chip", "sample_chips", "rtl_table",
    "chip_to_rtl", "rtl_fidelity",
]

TECHNOLOGIES = ("sram", "rram")

# Random stream of each parameter kind (never renumber: it would change every instance).
_STREAM_CELL, _STREAM_COMP, _STREAM_OFFSET, _STREAM_GAIN = 1, 2, 3, 4
_STREAM_STUCK, _STREAM_STUCK_VALUE, _STREAM_RRAM_CELL = 5, 6, 7


def _check_float(name, value, lo=0.0, *, allow_inf=False, strict_lo=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, not {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be finite, not {value}")
    if value < lo or (strict_lo and value == lo):
        raise ValueError(f"{name} must be {'>' if strict_lo else '>='} {lo}, not {value}")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, not {value!r}")


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], not {value}")


@dataclasses.dataclass(frozen=True)
class ChipConfig:
    """Spreads of one technology; the defaults are an ideal chip (every spread 0).

    Units: *cell units* are one nominal bitcell's contribution to the column value (SRAM)
    or one nominal LRS cell's current at unit input (ReRAM). ``docs/DEVICE_MODELS.md``
    gives each parameter's literature-typical value and source; :meth:`typical` returns
    a configuration with those values.

    Parameters
    ----------
    technology : str
        ``"sram"`` (6T bitcells, binary weights, bit-plane readout through an ADC) or
        ``"rram"`` (ReRAM crossbar, 1- or 2-bit cells, multi-bit weights).
    cell_sigma : float
        Per-cell variation of the SRAM read current or the ReRAM conductance, fixed per
        instance: relative standard deviation (``normal``) or standard deviation of the
        natural logarithm (``lognormal``). Dimensionless.
    cell_dist : str
        ``"lognormal"`` (``x = exp(cell_sigma * e)``, median 1) or ``"normal"``
        (``x = max(1 + cell_sigma * e, 0)``, mean 1); ``e`` standard normal.
    read_noise : float
        Standard deviation of the noise added at every readout, cell units (SRAM: at the
        comparator input, per bit-plane and column; ReRAM: per physical column current).
    stuck_prob : float
        Probability that a data cell is stuck, independent per cell, 0..1.
    stuck_high : float
        Fraction of the stuck cells stuck at 1 (SRAM: weight +1; ReRAM: LRS), 0..1.
    offset_mean, offset_sigma : float
        SRAM per-column comparator offset, normal, input-referred, cell units.
    gain_sigma : float
        SRAM per-column gain error (bit-line capacitance, sense path), normal, relative
        standard deviation around 1.0.
    bl_vmax : float
        SRAM bit-line saturation level of :func:`models.devices.discharge_curve`, cell
        units; ``inf`` is a linear bit line.
    bl_shape : str
        ``"tanh"`` or ``"exp"``: the curve's shape.
    bl_mode : str
        ``"column"``: the curve acts on the signed column value (maps exactly onto the
        RTL's TABLE); ``"bitline"``: each of BL and BLB saturates in its own number of
        discharging cells (more physical; the TABLE can only approximate it).
    sat : int or None
        SRAM ADC saturation limit L in cell units (the RTL's SAT); ``None`` is full scale
        ``2^(W-1) - 1``.
    qshift : int
        SRAM ADC resolution: readouts are floored to multiples of ``2^qshift`` (the RTL's
        QSHIFT), 0..15.
    on_off_ratio : float
        ReRAM ``G_LRS / G_HRS`` (> 1); ``inf`` makes the HRS an open circuit.
    cell_bits : int
        ReRAM bits per cell: 1 (LRS/HRS) or 2 (four evenly spaced conductance levels).
    weight_bits : int
        ReRAM weight width: 1 for binary ``+1/-1``, else symmetric signed codes of
        :func:`models.dfp.to_fixed` (2..16).
    mapping : str
        ReRAM weight mapping, ``"differential"`` or ``"offset"``
        (:func:`models.dfp.slice_weights`).

    Members
    -------
    is_ideal : bool
        True when no parameter deviates from the ideal chip.
    """

    technology: str = "sram"
    cell_sigma: float = 0.0
    cell_dist: str = "lognormal"
    read_noise: float = 0.0
    stuck_prob: float = 0.0
    stuck_high: float = 0.5
    offset_mean: float = 0.0
    offset_sigma: float = 0.0
    gain_sigma: float = 0.0
    bl_vmax: float = math.inf
    bl_shape: str = "tanh"
    bl_mode: str = "column"
    sat: int | None = None
    qshift: int = 0
    on_off_ratio: float = math.inf
    cell_bits: int = 1
    weight_bits: int = 1
    mapping: str = "differential"

    def __post_init__(self):
        if not isinstance(self.technology, str):
            raise TypeError(f"technology must be a string, not {self.technology!r}")
        _check_choice("technology", self.technology, TECHNOLOGIES)
        for name in ("cell_sigma", "read_noise", "offset_sigma", "gain_sigma"):
            _check_float(name, getattr(self, name))
        _check_float("offset_mean", self.offset_mean, -math.inf)
        for name in ("stuck_prob", "stuck_high"):
            _check_float(name, getattr(self, name))
            if getattr(self, name) > 1:
                raise ValueError(f"{name} must be a probability in [0, 1], not {getattr(self, name)}")
        _check_choice("cell_dist", self.cell_dist, DISTRIBUTIONS)
        _check_float("bl_vmax", self.bl_vmax, 0.0, allow_inf=True, strict_lo=True)
        _check_choice("bl_shape", self.bl_shape, CURVE_SHAPES)
        _check_choice("bl_mode", self.bl_mode, BL_MODES)
        if self.sat is not None:
            _check_int("sat", self.sat, 0, (1 << 15) - 1)
        _check_int("qshift", self.qshift, 0, (1 << QSHIFT_BITS) - 1)
        _check_float("on_off_ratio", self.on_off_ratio, 1.0, allow_inf=True, strict_lo=True)
        _check_int("cell_bits", self.cell_bits, 1, 2)
        _check_int("weight_bits", self.weight_bits, 1, 16)
        _check_choice("mapping", self.mapping, MAPPINGS)

    @classmethod
    def typical(cls, technology: str = "sram", **overrides) -> "ChipConfig":
        """A configuration with the literature-typical spreads of docs/DEVICE_MODELS.md.

        SRAM: ``cell_sigma=0.10`` lognormal, ``offset_sigma=2.0``, ``gain_sigma=0.02``,
        ``bl_vmax=64``, ``read_noise=0.3``. ReRAM: ``cell_sigma=0.10`` lognormal,
        ``on_off_ratio=10``, ``stuck_prob=0.01``. ``overrides`` replace any field.
        """
        _check_choice("technology", technology, TECHNOLOGIES)
        if technology == "sram":
            base = dict(cell_sigma=0.10, cell_dist="lognormal", offset_sigma=2.0,
                        gain_sigma=0.02, bl_vmax=64.0, bl_shape="tanh", read_noise=0.3)
        else:
            base = dict(cell_sigma=0.10, cell_dist="lognormal", on_off_ratio=10.0,
                        stuck_prob=0.01, stuck_high=0.5)
        base.update(overrides)
        return cls(technology=technology, **base)

    @property
    def is_ideal(self) -> bool:
        return (self.cell_sigma == 0 and self.read_noise == 0 and self.stuck_prob == 0
                and self.offset_mean == 0 and self.offset_sigma == 0 and self.gain_sigma == 0
                and math.isinf(self.bl_vmax) and self.sat is None and self.qshift == 0
                and math.isinf(self.on_off_ratio))


@dataclasses.dataclass(frozen=True, eq=False)
class Chip:
    """One sampled chip instance, or a stack of ``batch`` instances along a leading axis.

    Arrays of the other technology are ``None``. Index a stack (``chips[i]``) to get one
    instance; ``len(chips)`` is the stack size.

    Members
    -------
    config : ChipConfig
        The spreads the instance was drawn from (also read at evaluation: curve, noise).
    seed : int or tuple
        The seed of one instance; for a stack, the tuple of the instances' seeds.
    rows, cols, comp_rows : int
        Array size: data rows R, columns C (logical weights for ReRAM), compensation
        rows K (SRAM).
    batch : int or None
        Number of stacked instances; ``None`` for one instance.
    cell_current : numpy.ndarray of float32, ``(..., R, C)``
        SRAM: relative read current of every data bitcell (1 = nominal).
    comp_current : numpy.ndarray of float32, ``(..., K, C)``
        SRAM: relative read current of every compensation bitcell.
    offset : numpy.ndarray of float32, ``(..., C)``
        SRAM: comparator offset per column, cell units.
    gain : numpy.ndarray of float32, ``(..., C)``
        SRAM: gain per column (1 = nominal).
    cell_factor : numpy.ndarray of float32, ``(..., R, C, J)``
        ReRAM: conductance factor of each of the J cells that hold one weight.
    stuck_mask, stuck_value : numpy.ndarray of bool
        Stuck cells and the value they are stuck at (SRAM: weight bit; ReRAM: True =
        LRS). Shape of ``cell_current`` (SRAM) or ``cell_factor`` (ReRAM);
        ``stuck_value`` is False wherever ``stuck_mask`` is.
    """

    config: ChipConfig
    seed: object
    rows: int
    cols: int
    comp_rows: int
    batch: int | None = None
    cell_current: np.ndarray | None = None
    comp_current: np.ndarray | None = None
    offset: np.ndarray | None = None
    gain: np.ndarray | None = None
    cell_factor: np.ndarray | None = None
    stuck_mask: np.ndarray | None = None
    stuck_value: np.ndarray | None = None

    _ARRAYS = ("cell_current", "comp_current", "offset", "gain", "cell_factor",
               "stuck_mask", "stuck_value")

    def __len__(self):
        if self.batch is None:
            raise TypeError("one chip instance has no length; stacks come from sample_chips")
        return self.batch

    def __getitem__(self, index) -> "Chip":
        if self.batch is None:
            raise TypeError("one chip instance cannot be indexed; stacks come from sample_chips")
        if isinstance(index, slice):
            seeds = self.seed[index]
            arrays = {k: None if getattr(self, k) is None else getattr(self, k)[index]
                      for k in self._ARRAYS}
            return dataclasses.replace(self, seed=seeds, batch=len(seeds), **arrays)
        index = range(self.batch)[index]
        arrays = {k: None if getattr(self, k) is None else getattr(self, k)[index]
                  for k in self._ARRAYS}
        return dataclasses.replace(self, seed=self.seed[index], batch=None, **arrays)


def _check_seed(seed):
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return int(seed)
    if isinstance(seed, tuple) and seed and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in seed):
        return tuple(int(s) for s in seed)
    raise TypeError(f"seed must be a non-negative integer or a non-empty tuple of them, not {seed!r}")


def _factors(streams, seed, stream, shape, sigma, dist):
    if sigma == 0:
        return np.ones(shape, np.float32)
    eps = streams.generator(seed, stream).standard_normal(shape, dtype=np.float32)
    return variation(eps, sigma, dist)


def _stuck(streams, seed, shape, prob, high):
    if prob == 0:
        zeros = np.zeros(shape, bool)
        return zeros, zeros.copy()
    mask = streams.generator(seed, _STREAM_STUCK).random(shape) < prob
    value = (streams.generator(seed, _STREAM_STUCK_VALUE).random(shape) < high) & mask
    return mask, value


def sample_chip(config: ChipConfig, seed, rows: int, cols: int, comp_rows: int = 8) -> Chip:
    """Draw one chip instance.

    Parameters
    ----------
    config : ChipConfig
    seed : int or tuple of int
        Non-negative; a tuple such as ``(instance, layer)`` names one array of one chip.
    rows, cols : int
        Data rows R and columns C (for ReRAM: logical weight columns; each weight gets
        ``models.dfp.cells_per_weight(weight_bits, cell_bits, mapping)`` cells).
    comp_rows : int
        Compensation rows K (SRAM).
    """
    _check_sampling(config, rows, cols, comp_rows)
    seed = _check_seed(seed)
    return _sample_chip(config, seed, rows, cols, comp_rows,
                        StreamSet([seed], _streams_drawn(config)))


def _check_sampling(config, rows, cols, comp_rows):
    if not isinstance(config, ChipConfig):
        raise TypeError(f"config must be a ChipConfig, not {type(config).__name__}")
    _check_int("rows", rows, 1, 1 << 16)
    _check_int("cols", cols, 1, 1 << 16)
    _check_int("comp_rows", comp_rows, 1, 1 << 10)


def _streams_drawn(cfg) -> list[int]:
    """The streams a chip of ``cfg`` draws from (a spread of 0 draws nothing)."""
    stuck = [_STREAM_STUCK, _STREAM_STUCK_VALUE] if cfg.stuck_prob else []
    if cfg.technology != "sram":
        return stuck + ([_STREAM_RRAM_CELL] if cfg.cell_sigma else [])
    return stuck + [stream for stream, spread in (
        (_STREAM_CELL, cfg.cell_sigma), (_STREAM_COMP, cfg.cell_sigma),
        (_STREAM_OFFSET, cfg.offset_sigma), (_STREAM_GAIN, cfg.gain_sigma)) if spread]


def _sample_chip(cfg, seed, rows, cols, comp_rows, streams) -> Chip:
    """:func:`sample_chip` of a checked seed, its streams from ``streams``."""
    if cfg.technology == "sram":
        return _sample_sram_stack(cfg, [seed], rows, cols, comp_rows, streams)[0]
    shape = (rows, cols, cells_per_weight(cfg.weight_bits, cfg.cell_bits, cfg.mapping))
    mask, value = _stuck(streams, seed, shape, cfg.stuck_prob, cfg.stuck_high)
    return Chip(cfg, seed, rows, cols, comp_rows,
                cell_factor=_factors(streams, seed, _STREAM_RRAM_CELL, shape, cfg.cell_sigma,
                                     cfg.cell_dist),
                stuck_mask=mask, stuck_value=value)


def sample_chips(config: ChipConfig, seeds_or_n, rows: int, cols: int, comp_rows: int = 8) -> Chip:
    """Draw a stack of instances along a leading axis: ``chips[i] == sample_chip(config, seeds[i], ...)``.

    ``seeds_or_n``: a sequence of seeds (ints or tuples), or a count n for seeds ``0..n-1``.
    """
    if isinstance(seeds_or_n, (int, np.integer)) and not isinstance(seeds_or_n, bool):
        if seeds_or_n < 1:
            raise ValueError(f"the number of chips must be >= 1, not {seeds_or_n}")
        seeds = list(range(int(seeds_or_n)))
    else:
        seeds = list(seeds_or_n)
        if not seeds:
            raise ValueError("seeds_or_n must be a count >= 1 or a non-empty sequence of seeds")
    _check_sampling(config, rows, cols, comp_rows)
    seeds = [_check_seed(s) for s in seeds]
    streams = StreamSet(seeds, _streams_drawn(config))
    if config.technology == "sram":
        return _sample_sram_stack(config, seeds, rows, cols, comp_rows, streams)
    chips = [_sample_chip(config, s, rows, cols, comp_rows, streams) for s in seeds]
    arrays = {k: None if getattr(chips[0], k) is None else np.stack([getattr(c, k) for c in chips])
              for k in Chip._ARRAYS}
    return Chip(config, tuple(c.seed for c in chips), rows, cols, comp_rows, batch=len(chips), **arrays)


def _sample_sram_stack(cfg, seeds, rows, cols, comp_rows, streams) -> Chip:
    """SRAM chips ``seeds`` as a stack: each instance's arrays drawn from its own streams
    and written into the stack's rows (the Monte Carlo samples every array of a block of
    chips at once; one instance is a stack of one, indexed)."""
    n = len(seeds)
    stuck_mask = np.zeros((n, rows, cols), bool)
    stuck_value = np.zeros((n, rows, cols), bool)
    offset = (np.empty((n, cols), np.float32) if cfg.offset_sigma
              else np.full((n, cols), cfg.offset_mean, np.float32))
    gain = (np.empty if cfg.gain_sigma else np.ones)((n, cols), np.float32)
    cell_current = (np.empty if cfg.cell_sigma else np.ones)((n, rows, cols), np.float32)
    comp_current = (np.empty if cfg.cell_sigma else np.ones)((n, comp_rows, cols), np.float32)
    # Each stream's draws go into its instance's row; the transforms are elementwise, so
    # they run once over the stack (the same float32 values as row by row).
    for i, seed in enumerate(seeds):
        if cfg.stuck_prob:
            stuck_mask[i], stuck_value[i] = _stuck(streams, seed, (rows, cols), cfg.stuck_prob,
                                                   cfg.stuck_high)
        if cfg.offset_sigma:
            streams.generator(seed, _STREAM_OFFSET).standard_normal(dtype=np.float32,
                                                                    out=offset[i])
        if cfg.gain_sigma:
            streams.generator(seed, _STREAM_GAIN).standard_normal(dtype=np.float32,
                                                                  out=gain[i])
        if cfg.cell_sigma:
            streams.generator(seed, _STREAM_CELL).standard_normal(dtype=np.float32,
                                                                  out=cell_current[i])
            streams.generator(seed, _STREAM_COMP).standard_normal(dtype=np.float32,
                                                                  out=comp_current[i])
    if cfg.offset_sigma:
        offset = np.float32(cfg.offset_mean) + np.float32(cfg.offset_sigma) * offset
    if cfg.gain_sigma:
        gain = variation(gain, cfg.gain_sigma, "normal")
    if cfg.cell_sigma:
        cell_current = variation(cell_current, cfg.cell_sigma, cfg.cell_dist)
        comp_current = variation(comp_current, cfg.cell_sigma, cfg.cell_dist)
    return Chip(cfg, tuple(seeds), rows, cols, comp_rows, batch=n, cell_current=cell_current,
                comp_current=comp_current, offset=offset, gain=gain, stuck_mask=stuck_mask,
                stuck_value=stuck_value)


# --- mapping onto the RTL's injectable parameters --------------------------------------

def _round_half_up(x):
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5)


def rtl_table(config: ChipConfig, readout_bits: int, n_active: float) -> np.ndarray:
    """The RTL TABLE (``2^W`` signed entries, int64) for the chip's discharge curve.

    Entry i holds the output for the clamped value ``k`` whose W-bit two's-complement
    code is i: ``round_half_up(f(k))`` clipped to W bits. ``bl_mode == "column"``:
    ``f`` is :func:`models.devices.discharge_curve` itself (evaluated in float32, as in
    the analog model, so that the rounding agrees). ``"bitline"``: the differential
    response ``f((n_active + k)/2) - f((n_active - k)/2)`` at a reference number
    ``n_active`` of discharging cells (an approximation). A linear bit line gives the
    identity table.
    """
    _check_int("readout_bits", readout_bits, 2, 16)
    half = 1 << (readout_bits - 1)
    index = np.arange(1 << readout_bits)
    k = np.where(index < half, index, index - (1 << readout_bits)).astype(np.float32)
    if config.bl_mode == "bitline":
        n = np.float32(n_active)
        t = (discharge_curve((n + k) / 2, config.bl_vmax, config.bl_shape)
             - discharge_curve((n - k) / 2, config.bl_vmax, config.bl_shape))
    else:
        t = discharge_curve(k, config.bl_vmax, config.bl_shape)
    return np.clip(np.floor(t + np.float32(0.5)), -half, half - 1).astype(np.int64)


def chip_to_rtl(chip: Chip, p: MacroParams, *, n_active: float | None = None,
                strict: bool = True) -> dict:
    """Map one SRAM instance onto the RTL's injectable non-idealities.

    Returns a dict whose keys are the keyword arguments of ``models.macro.readout``:

    * ``offset`` (C,) int: ``round_half_up(offset)``, clipped to signed W bits;
    * ``gain`` (C,) int: ``round_half_up(64 * gain * mean_r cell_current[r, c])``,
      clipped to 0..255: per-cell current variation becomes its column mean;
    * ``table`` (2^W,) int: :func:`rtl_table` (``n_active`` default ``R/2 + K``, the
      mean number of discharging cells for random input planes);
    * ``stuck_mask``, ``stuck_value`` (R, C) uint8;
    * ``sat`` (int) and ``qshift`` (int): the config's ADC settings;

    each ``None`` (``qshift`` 0) when ``p`` does not build that non-ideality. For a
    stack of instances the per-column and per-cell arrays get a leading chip axis (the
    table, ``sat`` and ``qshift`` depend on the configuration only). What stays
    statistical only (per-read noise, per-cell current variation beyond its column mean,
    compensation-cell variation) is listed by :func:`rtl_fidelity`.

    Parameters
    ----------
    chip : Chip
        One SRAM instance (or a stack) of ``p.rows x p.cols`` with ``p.comp_rows``
        compensation rows.
    p : MacroParams
    n_active : float, optional
        Reference number of discharging cells for a ``bitline`` curve.
    strict : bool
        When True (default), a chip effect that ``p`` does not build raises ValueError;
        when False it is dropped.
    """
    if not isinstance(chip, Chip):
        raise TypeError(f"chip must be a Chip, not {type(chip).__name__}")
    if not isinstance(p, MacroParams):
        raise TypeError(f"p must be a MacroParams, not {type(p).__name__}")
    cfg = chip.config
    if cfg.technology != "sram":
        raise ValueError(f"only SRAM chips map onto the RTL, not {cfg.technology!r}")
    if (chip.rows, chip.cols, chip.comp_rows) != (p.rows, p.cols, p.comp_rows):
        raise ValueError(f"chip is {chip.rows} rows x {chip.cols} cols with {chip.comp_rows} "
                         f"compensation rows, the macro {p.rows} x {p.cols} with {p.comp_rows}")
    W, M = p.readout_bits, p.readout_max
    lo, hi = -(1 << (W - 1)), (1 << (W - 1)) - 1
    one = 1 << GAIN_FRAC_BITS

    offset = np.clip(_round_half_up(chip.offset), lo, hi).astype(np.int64)
    gain_eff = chip.gain.astype(np.float64) * chip.cell_current.astype(np.float64).mean(axis=-2)
    gain = np.clip(_round_half_up(one * gain_eff), 0, (1 << GAIN_BITS) - 1).astype(np.int64)
    if n_active is None:
        n_active = p.rows / 2 + p.comp_rows
    table = rtl_table(cfg, W, n_active)
    identity = np.arange(1 << W)
    identity = np.where(identity <= hi, identity, identity - (1 << W))
    sat = M if cfg.sat is None else cfg.sat
    if sat > M:
        raise ValueError(f"the chip's sat={sat} exceeds the macro's readout_max {M}")

    out = dict(offset=None, gain=None, table=None, stuck_mask=None, stuck_value=None,
               sat=None, qshift=0)
    missing = []
    if p.has("offset"):
        out["offset"] = offset
    elif np.any(offset):
        missing.append("offset")
    if p.has("gain"):
        out["gain"] = gain
    elif np.any(gain != one):
        missing.append("gain")
    if p.has("table"):
        out["table"] = table
    elif not np.array_equal(table, identity):
        missing.append("table")
    if p.has("stuck"):
        out["stuck_mask"] = chip.stuck_mask.astype(np.uint8)
        out["stuck_value"] = chip.stuck_value.astype(np.uint8)
    elif np.any(chip.stuck_mask):
        missing.append("stuck")
    if p.has("readout"):
        out["sat"], out["qshift"] = int(sat), int(cfg.qshift)
    elif sat != M or cfg.qshift:
        missing.append("readout")
    if missing and strict:
        raise ValueError(f"the chip has {', '.join(missing)} effects that the macro does not build "
                         f"(nonideal={sorted(p.nonideal)}); build them or pass strict=False to drop them")
    return out


def rtl_fidelity(chip: Chip) -> dict:
    """How faithfully :func:`chip_to_rtl` carries each effect of one SRAM instance.

    Returns ``{effect: status}`` with status ``"absent"`` (ideal), ``"exact"`` (the RTL
    reproduces the analog model bit for bit), ``"approximate"`` (rounded or lumped into
    a per-column or global parameter) or ``"statistical"`` (no RTL counterpart).
    When no effect is ``"approximate"`` or ``"statistical"``, the RTL readout equals
    :func:`models.devices.sram_readout` exactly (tests/test_chip.py checks this).
    """
    cfg = chip.config
    if cfg.technology != "sram" or chip.batch is not None:
        raise ValueError("rtl_fidelity takes one SRAM instance")
    one = 1 << GAIN_FRAC_BITS
    status = {}
    off = chip.offset.astype(np.float64)
    status["offset"] = ("absent" if not np.any(off) else
                        "exact" if np.array_equal(off, np.round(off)) else "approximate")
    cells_ideal = bool(np.all(chip.cell_current == 1))
    status["cell_current"] = "absent" if cells_ideal else "approximate"
    status["comp_current"] = "absent" if np.all(chip.comp_current == 1) else "statistical"
    g64 = chip.gain.astype(np.float64) * one
    if np.all(chip.gain == 1):
        status["gain"] = "absent"
    else:
        on_grid = np.array_equal(g64, np.round(g64)) and g64.max() <= (1 << GAIN_BITS) - 1
        status["gain"] = "exact" if on_grid else "approximate"
    if math.isinf(cfg.bl_vmax):
        status["curve"] = "absent"
    else:
        integer_input = (status["offset"] != "approximate" and cells_ideal
                         and status["gain"] == "absent" and cfg.read_noise == 0
                         and status["comp_current"] == "absent")
        status["curve"] = "exact" if cfg.bl_mode == "column" and integer_input else "approximate"
        if status["gain"] == "exact":
            # The RTL rounds after the gain and again in the table; the analog model once.
            status["gain"] = "approximate"
    status["stuck"] = "exact" if np.any(chip.stuck_mask) else "absent"
    status["readout"] = "exact" if (cfg.sat is not None or cfg.qshift) else "absent"
    status["read_noise"] = "statistical" if cfg.read_noise > 0 else "absent"
    return status
