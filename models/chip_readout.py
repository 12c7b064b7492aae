"""Sampled chips as the readout of a folded network: chip-in-the-loop inference.

:func:`models.export.infer_folded` takes a ``readout(layer, row_tile, col_tile, plane,
plane_bits, weight_bits)`` callback (:data:`models.export.Readout`). :class:`ChipReadout`
is that callback for a **stack of N chip instances** evaluated at once: the caller
repeats the images once per chip (``np.tile(x, (N, 1))``, chip-major), the callback
reshapes every plane to ``(N, M, R)``, evaluates all chips in one vectorised call and
flattens the answer back. :func:`predict_chips` does the repeating, splits large stacks
into chunks (memory) and returns ``(N, M)`` predictions.

Physical mapping
----------------
Every tile of the folded network (layer ``l``, row tile ``t``, column tile ``j``) is its
own ``R x C`` array with its own columns, comparators and compensation rows, as when the
whole network is resident on chip. One *chip instance* ``s`` is therefore one sample of
every tile: tile ``(l, t, j)`` of instance ``s`` is ``models.chip.sample_chip(config,
(s, l, t, j), R, C, K)``. Its seed never depends on the other tiles or on N, so instance
``s`` is the same silicon in every experiment, and (common random numbers, see
``models/chip.py``) the same instance at a doubled spread has every deviation doubled.

Backends
--------
``"macro"`` (SRAM, default): the bit-true golden model :func:`models.macro.readout`, with
each instance mapped onto the RTL's injectable registers by
:func:`models.chip.chip_to_rtl` (OFFSET = the offset rounded half up, GAIN, TABLE,
STUCK, SAT, QSHIFT): exactly what the generated RTL computes for that instance.
Calibration is :func:`models.macro.calibrate` (docs/ARCHITECTURE.md section 4).

``"analog"`` (SRAM or ReRAM): the statistical device models of :mod:`models.devices`
(per-cell currents, float offsets, read noise drawn at every read, bit-line curve).
The read noise is counter-based (:mod:`models.sampler`): the draw of a read is fixed by
(chip seed, tile, plane, image index, column), so the same chip and images give the same
readouts whatever the stack, the chunking or the order of the work. Calibration reads
have their own keys (purpose ``calibration``, image index = the read's number: the
search reads ``0 .. S-1``, the verification read ``S``, the trim reads ``16 .. 16 + T - 1``).
SRAM calibration runs the same search (:func:`models.macro.calibration_moves`) on the
analog readout with all data rows off. ReRAM tiles hold the binary weights as
``+1/-1`` on the chip's cells (:func:`models.devices.rram_mac`); the readout is the
estimate rounded half up to an integer (an ideal ADC); there are no compensation rows.
"""

from __future__ import annotations

import numpy as np

from . import macro
from .chip import ChipConfig, chip_to_rtl, sample_chips
from .devices import rram_mac, sram_readout
from .export import FoldedNet, infer_folded
from .params import NONIDEALITIES, MacroParams
from .sampler import CALIBRATION, EVAL, ReadNoise

__all__ = ["BACKENDS", "MAX_TRIM_READS", "ChipReadout", "predict_chips", "macro_params_for",
           "trim_reads", "trim_record"]

BACKENDS = ("macro", "analog")
#: The most zero-input reads one trim averages.
MAX_TRIM_READS = 256


def trim_reads(trim) -> int:
    """The number of zero-input reads of a ``trim`` argument: 0 for ``False``/``None``/0,
    1 for ``True``, else ``trim`` itself, a power of two in 1 .. :data:`MAX_TRIM_READS`
    (so that their mean ``R / T`` is exact in binary floating point). Raises ValueError
    for anything else."""
    if trim is None or trim is False:
        return 0
    if trim is True:
        return 1
    if not isinstance(trim, (int, np.integer)) or trim < 0 or trim > MAX_TRIM_READS \
            or (trim and trim & (trim - 1)):
        raise ValueError(f"trim must be a power of two in 1..{MAX_TRIM_READS} (zero-input "
                         f"reads averaged), True (1) or False (0), not {trim!r}")
    return int(trim)


def trim_record(trim):
    """``trim`` as model files record it: ``false`` (none) or ``true`` (one read), as
    before ``T`` existed, or the number of reads ``T > 1``."""
    reads = trim_reads(trim)
    return reads if reads > 1 else bool(reads)


def macro_params_for(net: FoldedNet, comp_rows: int = 8) -> MacroParams:
    """The macro a folded net runs on: its R x C, B input bits, ``comp_rows`` K, every
    non-ideality built, and an accumulator wide enough for the net (A = max(default,
    net.min_acc_bits))."""
    p = MacroParams(rows=net.rows, cols=net.cols, input_bits=net.input_bits,
                    comp_rows=comp_rows, nonideal=frozenset(NONIDEALITIES))
    if p.acc_bits < net.min_acc_bits:
        p = MacroParams(rows=net.rows, cols=net.cols, input_bits=net.input_bits,
                        comp_rows=comp_rows, nonideal=frozenset(NONIDEALITIES),
                        acc_bits=net.min_acc_bits)
    return p


def _check_seeds(seeds) -> list[int]:
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one chip seed")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"chip seeds must be non-negative integers, not {s!r}")
    return [int(s) for s in seeds]


class ChipReadout:
    """The :data:`models.export.Readout` of a stack of N sampled chip instances.

    Parameters
    ----------
    net : FoldedNet
        The mapped network (fixes R, C, B and the tiles).
    config : ChipConfig
        Spreads of the instances.
    seeds : sequence of int
        One chip instance per seed (module docstring: tile seeds are ``(s, l, t, j)``).
    comp_rows : int
        K, compensation rows per column (SRAM).
    backend : {"macro", "analog"}
        Bit-true golden model with the chip mapped onto the RTL, or the analog model.
    calibrate : bool
        Run the calibration search on every column of every tile first (SRAM only);
        otherwise the compensation stays balanced (n = K/2, comp = 0).
    trim : bool or int
        After calibration (if any), read every column ``T`` times with all inputs 0
        (``T = trim``; ``True``: once; a power of two up to :data:`MAX_TRIM_READS`) and
        subtract the mean ``r`` of those readouts from every later readout (SRAM only).
        A host does the same by adding the sum over the row tiles of ``r (2^P - 1)`` to
        THRESH, rounded up once (exact for integer accumulators), and subtracting it
        from the last layer's scores; both are exact as long as no readout saturates.
        Without read noise every read is the same, so ``T`` does not matter; with it,
        more reads leave a smaller error fixed in the chip.
    rng : numpy.random.Generator or None
        Per-read noise of the analog model drawn from this generator in call order (the
        draws then depend on the order and split of the work). Default: the counter-based
        streams of :mod:`models.sampler`, keyed by chip seed and image index.

    Members
    -------
    n : int
        Number of chip instances N.
    params : MacroParams
        The macro (widths W, A) the readouts obey.
    comp : dict of (l, t, j) -> ndarray (N, C) int64
        Compensation value ``2n - K`` of every column (SRAM).
    calflags : dict of (l, t, j) -> ndarray (N, C) uint8
        Out-of-range flags of the calibration (SRAM, after ``calibrate``).
    residual : dict of (l, t, j) -> ndarray (N, C)
        Mean zero-input readout subtracted by ``trim`` (SRAM, after ``trim``): int64
        when every column's reads agree, else float64 (multiples of ``1 / T``).
    images : ndarray of int or None
        Image index of every input row of the next reads (:meth:`use_images`); ``None``:
        row ``k`` is image ``k``.
    noise : models.sampler.ReadNoise or None
        The counter-based noise streams of the next reads (``None`` with ``rng``).
    """

    #: Image index of the first trim read in the calibration streams (after the search
    #: reads and the verification read of the longest search, K = 32); read ``i`` of the
    #: trim is ``TRIM_READ + i``.
    TRIM_READ = 16

    def __init__(self, net: FoldedNet, config: ChipConfig, seeds, *, comp_rows: int = 8,
                 backend: str = "macro", calibrate: bool = False, trim=False,
                 rng=None):
        if not isinstance(config, ChipConfig):
            raise TypeError(f"config must be a ChipConfig, not {type(config).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        rram = config.technology == "rram"
        if rram and backend == "macro":
            raise ValueError("ReRAM chips need backend='analog' (the RTL models an SRAM array)")
        reads = trim_reads(trim)
        if rram and (calibrate or reads):
            raise ValueError("calibration and trim need SRAM columns with offsets and "
                             "compensation rows; ReRAM chips have neither")
        if rram and config.weight_bits != 1:
            raise ValueError(f"a BNN stores binary weights: the ReRAM config needs weight_bits=1, "
                             f"not {config.weight_bits}")
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, not {type(rng).__name__}")
        self.net, self.config, self.backend, self.rng = net, config, backend, rng
        self.trim_reads = reads
        self._shared_input = False
        self.seeds = _check_seeds(seeds)
        self.n = len(self.seeds)
        self.images = None
        self.noise = None if rng is not None else ReadNoise(self.seeds, purpose=EVAL)
        self._cal_noise = None if rng is not None else ReadNoise(self.seeds, purpose=CALIBRATION)
        self.params = macro_params_for(net, comp_rows)
        p = self.params
        K = p.comp_rows
        self.chips, self.regs, self.comp, self.calflags, self.residual = {}, {}, {}, {}, {}
        keys = [(l, t, j) for l, layer in enumerate(net.layers)
                for t in range(layer.row_tiles) for j in range(layer.col_tiles)]
        # Every array of every chip in one draw (one bulk seeding of all their streams);
        # array (l, t, j) of chip s is instance (s, l, t, j), as sample_chip draws it.
        stack = sample_chips(config, [(s, *key) for key in keys for s in self.seeds],
                             p.rows, p.cols, K)
        for i, key in enumerate(keys):
            l, t, j = key
            weights = net.layers[l].weights[t, j]
            chips = self.chips[key] = stack[i * self.n:(i + 1) * self.n]
            if rram:
                continue
            if backend == "macro":
                self.regs[key] = self._registers(chips)
            comp = np.zeros((self.n, p.cols), np.int64)
            if calibrate:
                comp, flags = self._calibrate(key, weights)
                self.calflags[key] = flags
            self.comp[key] = comp
            if reads:
                self.residual[key] = self._trim(key, weights, reads)

    def _trim(self, key, weight_bits, reads: int) -> np.ndarray:
        """The mean of ``reads`` zero-input readouts of every column (N, C)."""
        zeros = np.zeros((self.n, 1, self.params.rows), np.uint8)
        total = sum(self._read(key, zeros, weight_bits, 0,
                               self._calibration_source(key, self.TRIM_READ + i))[:, 0]
                    for i in range(reads))
        if np.all(total % reads == 0):
            return total // reads
        return total / reads

    # --- macro backend ---------------------------------------------------------------

    def _registers(self, chips) -> dict:
        """chip_to_rtl of the stack; registers at their reset value are dropped."""
        p = self.params
        m = chip_to_rtl(chips, p)
        W = p.readout_bits
        identity = np.arange(1 << W)
        identity = np.where(identity < (1 << (W - 1)), identity, identity - (1 << W))
        regs = {}
        if np.any(m["offset"]):
            regs["offset"] = m["offset"]
        if np.any(m["gain"] != 64):
            regs["gain"] = m["gain"]
        if not np.all(m["table"] == identity):
            regs["table"] = np.broadcast_to(m["table"], (self.n, 1 << W))
        if np.any(m["stuck_mask"]):
            regs["stuck_mask"] = m["stuck_mask"]
            regs["stuck_value"] = m["stuck_value"]
        if m["sat"] != p.readout_max:
            regs["sat"] = np.full(self.n, m["sat"])
        if m["qshift"]:
            regs["qshift"] = np.full(self.n, m["qshift"])
        return regs

    def _macro_kwargs(self, key, with_images: bool) -> dict:
        """Registers shaped for a readout of (N, M, ...) (``with_images``) or (N, ...)."""
        out = {}
        for name, a in self.regs[key].items():
            if name in ("offset", "gain", "table"):
                out[name] = a[:, None] if with_images else a
            elif name in ("stuck_mask", "stuck_value"):
                out[name] = a[:, None]
            else:                                    # sat, qshift: one per macro
                out[name] = a[:, None] if with_images else a
        return out

    # --- calibration -----------------------------------------------------------------

    def _calibrate(self, key, weight_bits):
        p = self.params
        K = p.comp_rows
        if self.backend == "macro":
            kw = self._macro_kwargs(key, with_images=False)
            kw.pop("stuck_mask", None)
            kw.pop("stuck_value", None)            # data rows are off: stuck cells add nothing
            kw.setdefault("qshift", 0)
            n, flags, _ = macro.calibrate(p, **kw)
            n = np.broadcast_to(n, (self.n, p.cols))
            return 2 * n - K, np.broadcast_to(flags, (self.n, p.cols)).astype(np.uint8)
        # Analog: the same search on the analog readout, every read with its own noise.
        chips = self.chips[key]
        zeros = np.zeros((self.n, 1, p.rows), np.uint8)
        n = np.full((self.n, p.cols), K // 2, np.int64)
        moves = macro.calibration_moves(p)
        for k, d in enumerate(moves):
            v = sram_readout(zeros, weight_bits, chips, 2 * n - K, readout_bits=p.readout_bits,
                             **self._calibration_source(key, k))[:, 0]
            n = np.where(v >= 0, n - d, n + d)
        v = sram_readout(zeros, weight_bits, chips, 2 * n - K, readout_bits=p.readout_bits,
                         **self._calibration_source(key, len(moves)))[:, 0]
        flags = ((n == 0) & (v >= 0)) | ((n == K) & (v < 0))
        return 2 * n - K, flags.astype(np.uint8)

    def _calibration_source(self, key, read: int) -> dict:
        """Noise keyword of calibration read number ``read`` of tile ``key``."""
        if self._cal_noise is None:
            return dict(rng=self.rng)
        return dict(noise=self._cal_noise.at(key, np.array([read])))

    # --- the Readout callback --------------------------------------------------------

    def use_images(self, images=None, *, purpose="eval", pass_index: int = 0) -> None:
        """Key the reads that follow: ``images`` is the image index of every input row
        (``None``: row ``k`` is image ``k``), ``purpose`` and ``pass_index`` name the pass
        (:class:`models.sampler.ReadNoise`; e.g. ``purpose="train"`` with the batch
        counter for chip-in-the-loop training). No effect on ``rng`` draws."""
        self.images = None if images is None else np.asarray(images, dtype=np.int64)
        if self.rng is None:
            self.noise = ReadNoise(self.seeds, purpose=purpose, pass_index=pass_index)

    def __call__(self, layer, row_tile, col_tile, plane, plane_bits, weight_bits):
        key = (layer, row_tile, col_tile)
        total, rows = plane_bits.shape
        if total % self.n:
            raise ValueError(f"{total} inputs do not split into {self.n} chips; "
                             "repeat the images once per chip (predict_chips does)")
        x = plane_bits.reshape(self.n, total // self.n, rows)
        if layer == 0 and self._shared_input:
            # predict() repeats the same images for every chip: one shared (M, R) plane
            # lets the analog model use one large product for all chips.
            x = x[0]
        v = self._read(key, x, weight_bits, plane, self._noise_source(key))
        if v.ndim == 2:
            v = v[None]
        if key in self.residual:
            v = v - self.residual[key][:, None]
        return v.reshape(total, -1)

    def _noise_source(self, key) -> dict:
        """Noise keyword of the evaluation reads of tile ``key``."""
        if self.noise is None:
            return dict(rng=self.rng)
        return dict(noise=self.noise.at(key, self.images))

    def _read(self, key, x, weight_bits, plane, source):
        """Readouts (N, M, C) int64 of planes ``x`` (N, M, R) or (M, R) on tile ``key``;
        ``plane`` and ``source`` (``noise=`` or ``rng=``) key the read noise."""
        chips = self.chips[key]
        if self.config.technology == "rram":
            q = 2 * weight_bits.astype(np.int64) - 1
            est = rram_mac(x.astype(np.float32), q, chips, **source)
            v = np.floor(est.astype(np.float64) + 0.5).astype(np.int64)
        elif self.backend == "analog":
            v = sram_readout(x, weight_bits, chips, self.comp[key],
                             readout_bits=self.params.readout_bits, plane=plane, **source)
        else:
            v = macro.readout(self.params, x, weight_bits, self.comp[key][:, None],
                              **self._macro_kwargs(key, with_images=True))
        return v.astype(np.int64)

    def predict(self, x, images=None, *, max_elements: int | None = None) -> np.ndarray:
        """Predictions ``(N, M)`` of every instance for the images ``x`` (M, inputs) with
        image indices ``images`` (default ``0 .. M-1``; the read-noise key).

        SRAM stacks with counter-based noise run the fast evaluation of
        :mod:`models.montecarlo` (``max_elements`` bounds its blocks); its results are
        those of :meth:`predict_reference` (bit for bit where the arithmetic is integer).
        """
        x = np.asarray(x)
        if self.config.technology == "sram" and self.rng is None:
            from . import montecarlo
            images = np.arange(len(x)) if images is None else np.asarray(images, dtype=np.int64)
            if images.shape != (len(x),):
                raise ValueError(f"images must hold one index per image ({len(x)}), not shape "
                                 f"{images.shape}")
            self.use_images(images)
            kw = {} if max_elements is None else dict(max_elements=max_elements)
            return montecarlo.predict(self, x, images, **kw)
        return self.predict_reference(x, images)

    def predict_reference(self, x, images=None) -> np.ndarray:
        """Predictions ``(N, M)`` by the straightforward evaluation: the Readout callback,
        one plane of one tile at a time, through :func:`models.export.infer_folded`."""
        x = np.asarray(x)
        self.use_images(images)
        rep = np.tile(x, (self.n, 1))
        acc_bits = self.params.acc_bits
        self._shared_input = True
        try:
            pred = infer_folded(self.net, rep, readout=self, acc_bits=acc_bits)
        finally:
            self._shared_input = False
        return pred.reshape(self.n, len(x))

    def calibration_range_errors(self) -> int:
        """Columns (over all tiles and instances) whose offset the calibration could not reach."""
        return int(sum(int(f.sum()) for f in self.calflags.values()))


def predict_chips(net: FoldedNet, config: ChipConfig, seeds, x, *, comp_rows: int = 8,
                  backend: str = "macro", calibrate: bool = False, trim=False,
                  rng=None, images=None, max_rows: int = 40000, progress=None) -> np.ndarray:
    """Predictions ``(len(seeds), M)`` of ``net`` on every chip instance, in chunks of at
    most ``max_rows`` (instances x images) rows; ``progress(k)`` is called with the number
    of instances finished after every chunk. ``images``: the image index of every row of
    ``x`` (the read-noise key, default ``0 .. M-1``)."""
    seeds = _check_seeds(seeds)
    x = np.asarray(x)
    per = max(1, int(max_rows) // max(1, len(x)))
    out = []
    for i in range(0, len(seeds), per):
        chunk = seeds[i:i + per]
        cr = ChipReadout(net, config, chunk, comp_rows=comp_rows, backend=backend,
                         calibrate=calibrate, trim=trim, rng=rng)
        out.append(cr.predict(x, images))
        if progress is not None:
            progress(len(chunk))
    return np.concatenate(out)
