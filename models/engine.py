"""Bit-true golden model of the network engine: a whole BNN on one macro, images in,
classes out.

This module is the executable form of ``docs/ENGINE.md``. The engine is built around one
macro (:class:`models.params.MacroParams`) and holds every tile of an exported network
(``models/export.py``) in *weight banks*; a *network program* says per layer which banks
to RUN and where the inputs come from; a sequencer runs image after image from an image
buffer and writes one class per image into a result buffer.

* :class:`EngineParams`: the macro plus the engine's capacity (weight banks, layers,
  image slots, widest layer), with :meth:`EngineParams.for_model` (the capacity a model
  needs) and :meth:`EngineParams.misfits` (what of a model does not fit).
* :class:`NetworkProgram` (:func:`build_program`): the layer program and the banks'
  contents of one model, with the calibration trim folded in.
* :class:`EngineModel`: runs the program on :class:`models.macro.MacroModel`'s command
  executor, so every non-ideality the macro models applies unchanged; counts the
  engine's cycles and the macro's events (``models.energy.EVENTS``) per image.
* :func:`image_cycles`: the closed-form cycles per image.

Only numpy and the other golden models; nothing here imports the RTL or the host.
"""

from __future__ import annotations

import dataclasses
import functools
import operator

import numpy as np

from .energy import EVENTS, EventCounts
from .export import FoldedNet, check_images, load_folded
from .macro import MacroModel
from .engine_params import (MAX_IMAGE_SLOTS, MAX_LAYERS, MAX_WEIGHT_BANKS, MAX_WIDTH,
                            ENGINE_ID_MAGIC, ENGINE_REG_BITS, ENGINE_REGION_BITS,
                            ENGINE_VERSION, PROGRAM_WORDS, EngineCSR, EngineRegion, ProgramWord)
from .params import (BUS_DATA_BITS, CONTRACT_VERSION, CSR, ID_MAGIC, MacroParams, Region,
                     bus_latency_of)

__all__ = [
    "ENGINE_VERSION", "MAX_WEIGHT_BANKS", "MAX_LAYERS", "MAX_IMAGE_SLOTS", "MAX_WIDTH",
    "IMAGE_START_CYCLES", "CAPTURE_CYCLES", "RESULT_CYCLES", "EngineParams",
    "LayerProgram", "NetworkProgram", "build_program", "program_words", "trim_shift", "image_cycle_terms",
    "image_cycles", "EngineModel", "ENGINE_PIPELINES", "engine_acts_after",
    "engine_bus_latency",
]


#: Sequencer cycles outside the macro's RUNs (docs/ENGINE.md, "Cycles").
IMAGE_START_CYCLES = 1     # take the next slot of the image buffer
CAPTURE_CYCLES = 1         # a binary layer's column tile: OUT into the activation buffer
RESULT_CYCLES = 1          # write the class into the result buffer


def _count(name: str, value, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not 1 <= value <= hi:
        raise ValueError(f"{name} must be an integer in [1, {hi}], not {value}")
    return int(value)


def _tiles(n: int, size: int) -> int:
    return -(-n // size)


# --- capacity -----------------------------------------------------------------------------

#: The engine's pipelines (its RTL builds L = 0..3; the macro alone also L = 4).
ENGINE_PIPELINES = range(4)


def engine_acts_after(pipeline: int) -> int:
    """Cycles from a bus access (``cyc & stb``) to the cycle the engine checks and performs
    it: 0 at L = 0; 1 with a pipeline, where the access's address, data and decode are
    registered first (docs/ENGINE.md, "Bus interface")."""
    return 1 if pipeline else 0


def engine_bus_latency(pipeline: int) -> int:
    """Cycles from a bus access to its ``ack`` in an engine of pipeline ``pipeline``: the
    macro's (:func:`models.params.bus_latency_of`) after the acting cycle."""
    return bus_latency_of(pipeline) + engine_acts_after(pipeline)


@dataclasses.dataclass(frozen=True)
class EngineParams:
    """One engine: the macro it is built around and its capacity.

    Parameters
    ----------
    macro : MacroParams
        The macro (R x C, B, K, W, A, P, L, non-idealities) every layer runs on.
    weight_banks : int
        Banks, 1..4096. A bank holds one tile: R x C weight bits, C threshold words
        (signed A bits) and C flip bits.
    layers : int
        Entries of the layer program, 1..64.
    image_slots : int
        Images the image buffer holds (and classes the result buffer holds), 1..65536.
    max_width : int
        Widest layer, 1..65536: every layer's inputs and outputs are at most this many
        (sizes the image slots, the activation buffers and the class index).
    """

    macro: MacroParams
    weight_banks: int
    layers: int
    image_slots: int
    max_width: int

    def __post_init__(self):
        if not isinstance(self.macro, MacroParams):
            raise TypeError(f"macro must be a MacroParams, not {self.macro!r}")
        for name, hi in (("weight_banks", MAX_WEIGHT_BANKS), ("layers", MAX_LAYERS),
                         ("image_slots", MAX_IMAGE_SLOTS), ("max_width", MAX_WIDTH)):
            object.__setattr__(self, name, _count(name, getattr(self, name), hi))

    @staticmethod
    def needs(net: FoldedNet) -> dict:
        """The capacity ``net`` needs: ``weight_banks``, ``layers``, ``max_width``."""
        return dict(weight_banks=sum(l.row_tiles * l.col_tiles for l in net.layers),
                    layers=len(net.layers),
                    max_width=max(max(l.inputs, l.outputs) for l in net.layers))

    @classmethod
    def for_model(cls, net: FoldedNet, macro: MacroParams | None = None, *,
                  image_slots: int = 256) -> "EngineParams":
        """The smallest engine that holds ``net``, with ``image_slots`` image slots.

        ``macro`` defaults to the macro the model is mapped for: its R x C, B = the
        model's input bits, the default K, the default non-idealities and an accumulator
        of at least the model's ``min_acc_bits``. Raises ``ValueError`` (the first line
        of :meth:`misfits`) when ``net`` cannot run on ``macro``.
        """
        if not isinstance(net, FoldedNet):
            raise TypeError(f"net must be a FoldedNet, not {type(net).__name__}")
        if macro is None:
            bits = max(net.input_bits, net.layers[0].planes)
            macro = MacroParams(net.rows, net.cols, input_bits=bits)
            if macro.acc_bits < net.min_acc_bits:
                macro = MacroParams(net.rows, net.cols, input_bits=bits,
                                    acc_bits=net.min_acc_bits)
        engine = cls(macro, image_slots=image_slots, **cls.needs(net))
        engine.check_fits(net)
        return engine

    def misfits(self, net: FoldedNet) -> list[str]:
        """One line per reason ``net`` does not run on this engine (empty: it fits)."""
        p = self.macro
        out = []
        if (net.rows, net.cols) != (p.rows, p.cols):
            out.append(f"the model is mapped for a {net.rows}x{net.cols} macro, the engine's "
                       f"macro is {p.rows}x{p.cols}")
        if net.layers[0].planes > p.input_bits:
            out.append(f"the model's images have {net.layers[0].planes} input bits, the "
                       f"engine's macro takes at most {p.input_bits} (input_bits)")
        if net.min_acc_bits > p.acc_bits:
            out.append(f"the model needs acc_bits >= {net.min_acc_bits}, the engine's macro "
                       f"has {p.acc_bits}")
        need = self.needs(net)
        if need["weight_banks"] > self.weight_banks:
            out.append(f"the model needs {need['weight_banks']} weight banks, the engine has "
                       f"{self.weight_banks}")
        if need["layers"] > self.layers:
            out.append(f"the model has {need['layers']} layers, the engine's program holds "
                       f"{self.layers}")
        for i, layer in enumerate(net.layers):
            for what in ("inputs", "outputs"):
                n = getattr(layer, what)
                if n > self.max_width:
                    out.append(f"layer {i} has {n} {what}, the engine's max_width is "
                               f"{self.max_width}")
        return out

    def check_fits(self, net: FoldedNet) -> None:
        """Raise ``ValueError`` with the first line of :meth:`misfits`, if any."""
        problems = self.misfits(net)
        if problems:
            raise ValueError(problems[0])

    # --- register map (docs/ENGINE.md, "Bus interface") -----------------------------

    @property
    def acts_after(self) -> int:
        """Cycles from a bus access (``cyc & stb``) to the cycle the engine checks and
        performs it: :func:`engine_acts_after` this pipeline."""
        return engine_acts_after(self.macro.pipeline)

    @property
    def bus_latency(self) -> int:
        """Cycles from a bus access to its ``ack``: :func:`engine_bus_latency` this
        pipeline."""
        return engine_bus_latency(self.macro.pipeline)

    @property
    def image_chunks(self) -> int:
        """Bus words of one bit-plane of an image slot: ``ceil(max_width / 32)``."""
        return -(-self.max_width // BUS_DATA_BITS)

    def field_sizes(self) -> dict:
        """Valid values of each address field of the engine's map; an offset whose field
        is at or above its size is a hole (BAD_ADDRESS)."""
        return dict(self.macro.field_sizes(), reg=1 << ENGINE_REG_BITS,
                    bank=self.weight_banks, layer=self.layers, part=PROGRAM_WORDS,
                    image_slot=self.image_slots, image_chunk=self.image_chunks,
                    neuron=self.max_width)

    def regions(self) -> list[dict]:
        """Every region of the engine's map, in the format of ``MacroParams.regions()``:
        the macro's regions with a ``bank`` field leading WEIGHT, THRESH and FLIP and
        a ``reg`` field of ENGINE_REG_BITS, then the engine's own regions."""
        size = self.field_sizes()

        def bits(name):
            return (size[name] - 1).bit_length()

        banked = {Region.WEIGHT: "bank memory", Region.THRESH: "bank memory",
                  Region.FLIP: "bank memory"}
        regs = []
        for r in self.macro.regions():
            r = dict(r)
            if r["region"] == Region.CSR:
                r["fields"] = [("reg", ENGINE_REG_BITS)]
            elif r["region"] in banked:
                r["fields"] = [("bank", bits("bank"))] + list(r["fields"])
                r["doc"] = r.get("doc", "") + "; in bank 'bank'"
            regs.append(r)
        regs += [
            dict(name="PROGRAM", region=EngineRegion.PROGRAM, access="rw",
                 fields=[("layer", bits("layer")), ("part", bits("part"))], kind="program",
                 width=32, doc="word 'part' of layer 'layer's program entry (ProgramWord)"),
            dict(name="IMAGE", region=EngineRegion.IMAGE, access="rw",
                 fields=[("image_slot", bits("image_slot")), ("plane", bits("plane")),
                         ("image_chunk", bits("image_chunk"))], kind="bits", width=32,
                 doc="bit i of word (image_slot, plane, image_chunk) is bit 'plane' of input "
                     "32*image_chunk+i of the image in slot image_slot"),
            dict(name="RESULT", region=EngineRegion.RESULT, access="ro",
                 fields=[("image_slot", bits("image_slot"))], kind="unsigned", width=32,
                 doc="class index of the image in slot image_slot"),
            dict(name="LAST_ACC", region=EngineRegion.LAST_ACC, access="ro",
                 fields=[("neuron", bits("neuron"))], kind="signed",
                 width=self.macro.acc_bits, doc="the last image's last-layer ACC"),
            dict(name="LAST_SCORE", region=EngineRegion.LAST_SCORE, access="ro",
                 fields=[("neuron", bits("neuron"))], kind="signed",
                 width=min(self.macro.acc_bits + 1, BUS_DATA_BITS),
                 doc="the last image's last-layer score ACC + CORR"),
        ]
        for r in regs:
            r["offset_bits"] = sum(w for _, w in r["fields"])
        return regs

    @functools.cached_property
    def region_shift(self) -> int:
        return max(r["offset_bits"] for r in self.regions())

    @functools.cached_property
    def addr_bits(self) -> int:
        return ENGINE_REGION_BITS + self.region_shift

    def csrs(self) -> list[dict]:
        """Every CSR of the engine's region 0: the macro's (ID, VERSION and REGION_SHIFT
        answer for the engine) and the engine's own."""
        own = {CSR.ID: (ENGINE_ID_MAGIC, "magic 0x43694531 ('CiE1'): a network engine"),
               CSR.VERSION: (ENGINE_VERSION[0] << 16 | ENGINE_VERSION[1],
                             "engine contract version major<<16 | minor"),
               CSR.REGION_SHIFT: (self.region_shift,
                                  "word address = region << REGION_SHIFT | offset")}
        regs = []
        for c in self.macro.csrs():
            if c["offset"] in own:
                c = dict(c, reset=own[c["offset"]][0], doc=own[c["offset"]][1])
            regs.append(c)
        regs += [dict(name=n, offset=getattr(EngineCSR, n), access=a, reset=v, doc=d)
                 for n, a, v, d in (
            ("WEIGHT_BANKS", "ro", self.weight_banks, "weight banks"),
            ("LAYERS", "ro", self.layers, "entries of the layer program"),
            ("IMAGE_SLOTS", "ro", self.image_slots, "slots of the image and result buffers"),
            ("MAX_WIDTH", "ro", self.max_width, "the widest layer's inputs or outputs"),
            ("MACRO_ID", "ro", ID_MAGIC, "the macro inside: 0x43694D31 ('CiM1')"),
            ("MACRO_VERSION", "ro", CONTRACT_VERSION[0] << 16 | CONTRACT_VERSION[1],
             "the macro's contract version major<<16 | minor"),
            ("CLASSIFY", "rw", 0, "write N: classify image slots 0..N-1; reads the last "
                                  "accepted N"),
            ("RESULTS", "ro", 0, "images the current or last CLASSIFY has classified"),
            ("ENGINE_CYCLES", "ro", 0, "cycles the current or last CLASSIFY has been busy"),
        )]
        return regs

    def to_dict(self) -> dict:
        """JSON-ready: the capacity and the macro's ``to_dict()``."""
        return dict(engine_version=list(ENGINE_VERSION), weight_banks=self.weight_banks,
                    layers=self.layers, image_slots=self.image_slots,
                    max_width=self.max_width, macro=self.macro.to_dict())


# --- the network program ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LayerProgram:
    """One entry of the layer program (docs/ENGINE.md, "Layer program").

    Members
    -------
    inputs, outputs : int
        Neurons in (``n_in``) and out (``n_out``).
    row_tiles, col_tiles : int
        ``ceil(n_in / R)`` and ``ceil(n_out / C)``.
    planes : int
        NPLANES of every RUN: the image's bits for the first layer, 1 afterwards.
    source : {"image", "activations"}
        The first layer reads the image's bit-planes, the others the previous layer's
        OUT bits.
    binary : bool
        True: OUT feeds the next layer; False: the last layer, whose ACC plus the score
        correction is argmaxed.
    first_bank : int
        Bank of (row tile 0, column tile 0); tile (t, j) is in bank
        ``first_bank + j * row_tiles + t``.
    """

    inputs: int
    outputs: int
    row_tiles: int
    col_tiles: int
    planes: int
    source: str
    binary: bool
    first_bank: int

    def bank(self, row_tile: int, col_tile: int) -> int:
        return self.first_bank + col_tile * self.row_tiles + row_tile

    @property
    def banks(self) -> int:
        return self.row_tiles * self.col_tiles

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class NetworkProgram:
    """A model mapped onto an engine's macro: the layer program and every bank's contents.

    Members
    -------
    macro : MacroParams
    layers : tuple of LayerProgram
    weights : ndarray (banks, R, C) uint8
        Bank ``k``'s weight bits (1 = +1).
    thresh : ndarray (banks, C) int64
        Bank ``k``'s threshold words: binary layers the column tile's thresholds plus
        the trim; last layer the score correction ``CORR[c]``.
    flip : ndarray (banks, C) uint8
        Bank ``k``'s flip bits (0 in the last layer's banks).
    """

    macro: MacroParams
    layers: tuple
    weights: np.ndarray
    thresh: np.ndarray
    flip: np.ndarray

    @property
    def banks(self) -> int:
        return self.weights.shape[0]

    @property
    def classes(self) -> int:
        return self.layers[-1].outputs

    @property
    def image_inputs(self) -> int:
        return self.layers[0].inputs

    @property
    def image_planes(self) -> int:
        return self.layers[0].planes

    def image_cycles(self) -> int:
        """Cycles per image of this program (:func:`image_cycles`)."""
        return image_cycles(self.macro, [(l.inputs, l.outputs, l.planes) for l in self.layers])


def program_words(program: NetworkProgram) -> np.ndarray:
    """The PROGRAM words ``(layers, PROGRAM_WORDS)`` of a program (docs/ENGINE.md,
    "Program memory")."""
    W = ProgramWord
    words = np.zeros((len(program.layers), PROGRAM_WORDS), np.int64)
    for l, e in enumerate(program.layers):
        words[l, W.INPUTS] = e.inputs
        words[l, W.OUTPUTS] = e.outputs
        words[l, W.TILES] = e.row_tiles | e.col_tiles << W.COL_TILES_SHIFT
        words[l, W.MODE] = (e.first_bank | e.planes << W.PLANES_SHIFT
                            | (e.source == "activations") << W.SOURCE_BIT
                            | e.binary << W.BINARY_BIT)
    return words


def check_residual(p: MacroParams, residual) -> np.ndarray:
    """``residual`` as int64 after checking it is C signed W-bit readouts (one line per
    problem: ValueError for a shape or range, TypeError for non-integers)."""
    r = np.asarray(residual)
    if r.shape != (p.cols,):
        raise ValueError(f"residual must have shape ({p.cols},) (one readout per column), "
                         f"not {r.shape}")
    if r.dtype.kind not in "iu":
        raise TypeError(f"residual must hold integers, not {r.dtype} values")
    lo, hi = -(1 << (p.readout_bits - 1)), (1 << (p.readout_bits - 1)) - 1
    if r.size and (r.min() < lo or r.max() > hi):
        c = int(np.flatnonzero((r < lo) | (r > hi))[0])
        raise ValueError(f"residual[{c}] = {int(r[c])} is not a readout: a signed "
                         f"{p.readout_bits}-bit readout is in {lo}..{hi}")
    return r.astype(np.int64)


def trim_shift(p: MacroParams, row_tiles: int, planes: int, residual) -> np.ndarray:
    """What a residual ``r`` (C,) adds to a layer's ACC per physical column:
    ``row_tiles * (2^planes - 1) * r`` (every RUN weighs its planes' readouts by
    ``2^(planes-1) .. 1``)."""
    return row_tiles * ((1 << planes) - 1) * check_residual(p, residual)


def build_program(net, macro: MacroParams, residual=None) -> NetworkProgram:
    """The network program and bank contents of ``net`` on ``macro``.

    Parameters
    ----------
    net : FoldedNet, or a path ``models.export.load_folded`` reads (as ``models eval
        --model``)
    macro : MacroParams
    residual : array_like of int, shape (C,), optional
        Each column's zero-input readout after calibration (the trim). It adds
        ``T (2^p - 1) r[c]`` to every threshold of a binary layer with T row tiles and
        p planes, and ``CORR[c] = -T (2^p - 1) r[c]`` is the last layer's score
        correction.

    Raises
    ------
    ValueError
        ``net`` does not fit ``macro`` (R x C, input bits, ACC bits), the residual is no
        (C,) readout, or a trimmed threshold or correction of a real neuron leaves
        THRESH's signed A bits.
    """
    if not isinstance(net, FoldedNet):
        net = load_folded(net)
    if not isinstance(macro, MacroParams):
        raise TypeError(f"macro must be a MacroParams, not {macro!r}")
    # The capacity checks that do not depend on the engine's capacity.
    problems = EngineParams(macro, MAX_WEIGHT_BANKS, MAX_LAYERS, 1, MAX_WIDTH).misfits(net)
    if problems:
        raise ValueError(problems[0])
    C, A = macro.cols, macro.acc_bits
    lo, hi = -(1 << (A - 1)), (1 << (A - 1)) - 1
    layers, weights, thresh, flip = [], [], [], []
    for i, layer in enumerate(net.layers):
        T, J = layer.row_tiles, layer.col_tiles
        shift = np.zeros(C, np.int64) if residual is None else \
            trim_shift(macro, T, layer.planes, residual)
        if layer.binarized:
            words = layer.thresh.astype(np.int64) + shift          # (J, C)
            bits = layer.flip.astype(np.uint8)
            what = "trimmed threshold"
        else:
            words = np.tile(-shift, (J, 1))
            bits = np.zeros((J, C), np.uint8)
            what = "score correction"
        real = (np.arange(J * C) < layer.outputs).reshape(J, C)
        bad = real & ((words < lo) | (words > hi))
        if bad.any():
            j, c = (int(v[0]) for v in np.nonzero(bad))
            raise ValueError(f"the {what} of neuron {j * C + c} of layer {i} is "
                             f"{int(words[j, c])}, outside THRESH's signed {A} bits "
                             f"({lo}..{hi})")
        # Padding columns: nothing reads them; any in-range word will do.
        words = np.clip(words, lo, hi)
        layers.append(LayerProgram(
            inputs=layer.inputs, outputs=layer.outputs, row_tiles=T, col_tiles=J,
            planes=layer.planes, source="image" if i == 0 else "activations",
            binary=layer.binarized, first_bank=len(weights)))
        for j in range(J):
            for t in range(T):
                weights.append(layer.weights[t, j])
                thresh.append(words[j])
                flip.append(bits[j])
    return NetworkProgram(macro, tuple(layers), np.stack(weights).astype(np.uint8),
                          np.stack(thresh).astype(np.int64), np.stack(flip).astype(np.uint8))


# --- cycles -------------------------------------------------------------------------------

def image_cycle_terms(macro: MacroParams, layers) -> dict:
    """The cycles of one image, term by term (docs/ENGINE.md, "Cycles").

    Parameters
    ----------
    macro : MacroParams
    layers : sequence of (inputs, outputs, planes)
        The layers in order; the last one is the argmaxed layer.

    Returns
    -------
    dict
        ``runs`` (the macro's RUNs, ``G (p + 2 + L)`` each), ``captures`` (one per
        column tile of a binary layer), ``scan`` (the last layer: per column tile one
        read cycle and one per live class), ``image`` (start and result write).
    """
    R, C = macro.rows, macro.cols
    runs = captures = scan = 0
    for i, (inputs, outputs, planes) in enumerate(layers):
        T, J = _tiles(inputs, R), _tiles(outputs, C)
        runs += T * J * macro.run_cycles(planes)
        if i < len(layers) - 1:
            captures += J * CAPTURE_CYCLES
        else:
            scan += J + outputs
    return dict(runs=runs, captures=captures, scan=scan,
                image=IMAGE_START_CYCLES + RESULT_CYCLES)


def image_cycles(macro: MacroParams, layers) -> int:
    """Cycles the engine is busy per image (a constant: no term depends on the data)::

        2 + sum_l T_l J_l G (p_l + 2 + L) + sum_{binary l} J_l + J_last + n_out,last
    """
    return sum(image_cycle_terms(macro, layers).values())


# --- the engine ---------------------------------------------------------------------------

class EngineModel:
    """Bit-true model of one engine (docs/ENGINE.md).

    The macro is a :class:`models.macro.MacroModel` (``engine.macro``); its
    non-ideality registers, COMP and CALIBRATE are the chip's and serve every bank.
    Each RUN of the sequencer loads the bank's weights, thresholds and flips into the
    macro's memories (no bus access, no event) and the row tile's input planes into
    INPUT, and executes the RUN command on the macro's own executor.

    Parameters
    ----------
    params : EngineParams

    Members
    -------
    params : EngineParams
    macro : MacroModel
    program : NetworkProgram or None
    images : ndarray (image_slots, max_width) int64
        The image buffer.
    results : ndarray (image_slots,) int64
        The result buffer: the class of each image of the last :meth:`run`.
    acc, scores : ndarray (image_slots, classes) int64
        The last layer's ACC of each image and ``ACC + CORR`` (what the argmax saw).
    cycles : int
        Cycles of the last :meth:`run` (the engine's busy time).
    image_events : list of EventCounts
        Per image of the last :meth:`run`, the macro's events (``models.energy.EVENTS``).
    """

    def __init__(self, params: EngineParams):
        if not isinstance(params, EngineParams):
            raise TypeError(f"params must be an EngineParams, not {params!r}")
        self.params = params
        self.macro = MacroModel(params.macro)
        self.program = None
        self.images = np.zeros((params.image_slots, params.max_width), np.int64)
        self.loaded = 0
        self.results = np.zeros(params.image_slots, np.int64)
        self.acc = self.scores = None
        self.cycles = 0
        self.image_events = []

    # --- the chip: non-idealities, calibration, trim -------------------------------------

    def set_nonideal(self, **registers) -> None:
        """The macro's non-ideality registers (``MacroModel.set_nonideal``)."""
        self.macro.set_nonideal(**registers)

    def calibrate(self) -> np.ndarray:
        """CALIBRATE the macro's physical columns; returns CALFLAG (C,)."""
        return self.macro.calibrate()

    def measure_residual(self) -> np.ndarray:
        """Each column's readout with every input 0 (the trim's ``r``), as
        ``host.network.measure_residual`` reads it: INPUT plane 0 all zero, one RUN of
        one plane, ACC. Overwrites INPUT plane 0, ACC and OUT."""
        self.macro.input_planes[0] = 0
        return self.macro.run(planes=1)

    # --- program and buffers -------------------------------------------------------------

    def load(self, model, residual=None) -> NetworkProgram:
        """Load a :class:`NetworkProgram`, or build one from a model (a FoldedNet or a
        path) with the trim ``residual`` folded in. Checks the capacity first; nothing
        changes when it raises."""
        if isinstance(model, NetworkProgram):
            if residual is not None:
                raise ValueError("residual is folded when a program is built; a built "
                                 "program takes none")
            program = model
            if program.macro != self.params.macro:
                raise ValueError("the program is built for another macro than the engine's")
            shape = dict(weight_banks=program.banks, layers=len(program.layers),
                         max_width=max(max(l.inputs, l.outputs) for l in program.layers))
        else:
            net = model if isinstance(model, FoldedNet) else load_folded(model)
            self.params.check_fits(net)
            program = build_program(net, self.params.macro, residual)
            shape = EngineParams.needs(net)
        for name, need in shape.items():
            if need > getattr(self.params, name):
                raise ValueError(f"the program needs {name} = {need}, the engine has "
                                 f"{getattr(self.params, name)}")
        self.program = program
        self.loaded = 0
        return program

    def _check_images(self, images) -> np.ndarray:
        prog = self._program()
        return check_images(images, prog.image_inputs, prog.image_planes)

    def _program(self) -> NetworkProgram:
        if self.program is None:
            raise ValueError("no network program is loaded (EngineModel.load)")
        return self.program

    def write_images(self, images) -> None:
        """Fill image slots ``0 .. N-1`` with ``images`` (N, inputs); N <= image_slots."""
        x = self._check_images(images)
        if len(x) > self.params.image_slots:
            raise ValueError(f"{len(x)} images do not fit the image buffer of "
                             f"{self.params.image_slots} slots")
        self.images[:len(x)] = 0
        self.images[:len(x), :x.shape[1]] = x
        self.loaded = len(x)

    # --- the sequencer -------------------------------------------------------------------

    def run(self, count: int | None = None) -> np.ndarray:
        """Classify image slots ``0 .. count-1`` (default: every written slot); returns
        the classes (also in :attr:`results`)."""
        prog = self._program()
        count = self.loaded if count is None else operator.index(count)
        if not 0 <= count <= self.loaded:
            raise ValueError(f"count must be in [0, {self.loaded}] (images written), "
                             f"not {count}")
        self.acc = np.zeros((count, prog.classes), np.int64)
        self.scores = np.zeros((count, prog.classes), np.int64)
        self.image_events = []
        self.cycles = 0
        for i in range(count):
            before = self.macro.events.as_dict()
            cycles = self._image(prog, self.images[i], i)
            after = self.macro.events.as_dict()
            self.image_events.append(EventCounts({k: after[k] - before[k] for k in EVENTS}))
            self.cycles += cycles
        return self.results[:count].copy()

    def _image(self, prog: NetworkProgram, image: np.ndarray, slot: int) -> int:
        """One image through every layer; the image's cycles."""
        m = self.macro
        R, C = prog.macro.rows, prog.macro.cols
        cycles = IMAGE_START_CYCLES
        inputs = image
        for layer in prog.layers:
            padded = np.zeros(layer.row_tiles * R, np.int64)
            padded[:layer.inputs] = inputs[:layer.inputs]    # masked beyond n_in
            planes = ((padded[None] >> np.arange(layer.planes)[:, None]) & 1).astype(np.uint8)
            out = np.zeros(layer.col_tiles * C, np.uint8)
            for j in range(layer.col_tiles):
                for t in range(layer.row_tiles):
                    k = layer.bank(t, j)
                    np.copyto(m.weights, prog.weights[k])
                    np.copyto(m.thresh, prog.thresh[k])
                    np.copyto(m.flip, prog.flip[k])
                    m.input_planes[:layer.planes] = planes[:, t * R:(t + 1) * R]
                    m.run(planes=layer.planes, accumulate=t > 0)
                    cycles += m.cycles
                if layer.binary:
                    out[j * C:(j + 1) * C] = m.out
                    cycles += CAPTURE_CYCLES
                else:
                    live = min(C, layer.outputs - j * C)
                    cols = slice(j * C, j * C + live)
                    self.acc[slot, cols] = m.acc[:live]
                    self.scores[slot, cols] = m.acc[:live] + m.thresh[:live]
                    cycles += 1 + live
            inputs = out[:layer.outputs].astype(np.int64)
        # np.argmax: the lowest index among equal maxima.
        self.results[slot] = int(np.argmax(self.scores[slot]))
        return cycles + RESULT_CYCLES

    def classify(self, images) -> np.ndarray:
        """Classes (N,) of any number of images, streamed through the image buffer in
        batches of ``image_slots``; :attr:`acc`, :attr:`scores` and
        :attr:`image_events` then cover all N images and :attr:`cycles` their sum."""
        x = self._check_images(images)
        slots = self.params.image_slots
        classes, acc, scores, events, cycles = [], [], [], [], 0
        for start in range(0, len(x), slots):
            self.write_images(x[start:start + slots])
            classes.append(self.run())
            acc.append(self.acc)
            scores.append(self.scores)
            events += self.image_events
            cycles += self.cycles
        k = self._program().classes
        self.acc = np.concatenate(acc) if acc else np.zeros((0, k), np.int64)
        self.scores = np.concatenate(scores) if scores else np.zeros((0, k), np.int64)
        self.image_events, self.cycles = events, cycles
        return np.concatenate(classes) if classes else np.zeros(0, np.int64)
