"""Register-level golden model of the network engine's bus (docs/ENGINE.md, "Bus
interface"): :meth:`EngineBusModel.write` and :meth:`EngineBusModel.read` are the
Wishbone accesses of the engine's map, the ground truth of this module.

The engine's state is an :class:`models.engine.EngineModel` (``bus.engine``) with the
macro inside (``bus.macro``, a :class:`models.macro.MacroModel`): accesses to the
macro's regions and CSRs are the macro's accesses, forwarded with the macro's own
address and rules; the bank memories, the layer program, the image and result buffers
and the engine's CSRs are this model's. A CLASSIFY runs the EngineModel's sequencer, so
the classes, ACC and scores are bit-true.

Time: unlike ``MacroModel`` this model has a clock. Every access takes
``bus_latency + 1`` cycles (the project's masters) and is checked and acts
``acts_after`` cycles after it starts (``EngineParams``); a macro command keeps the
engine busy for its CYCLES and a CLASSIFY for its images' cycles after the cycle it
acts in; results appear image by image as the clock passes them. Its effects on the
state are computed when it acts; what the bus can see follows the clock. :meth:`idle`
lets cycles pass without an access.

Only numpy and the other golden models.
"""

from __future__ import annotations

import copy
import operator

import numpy as np

from .engine import EngineModel, EngineParams, LayerProgram, NetworkProgram
from .engine_params import PROGRAM_WORDS, EngineCSR, EngineRegion, EngineStatus, ProgramWord
from .energy import EventCounts
from .macro import MacroModel, pack_bits
from .params import BUS_DATA_BITS, CSR, EngineErrCode, Op, Cmd, Region, Status

__all__ = ["EngineBusModel", "decode_program_entry"]

_WORD_MASK = (1 << BUS_DATA_BITS) - 1
_BANKED = (Region.WEIGHT, Region.THRESH, Region.FLIP)
#: Engine CSRs whose value changes while the engine runs (the rest are constants).
_LIVE_CSRS = (CSR.STATUS, EngineCSR.CLASSIFY, EngineCSR.RESULTS, EngineCSR.ENGINE_CYCLES)
# The macro's state a CLASSIFY changes, kept from its start for a STOP (_keep_images).
_BATCH_STATE = ("acc", "out", "input_planes", "status", "cycles", "weights", "thresh", "flip")
_WRITE_EVENTS = {Region.WEIGHT: "weight_writes", Region.THRESH: "threshold_writes",
                 Region.FLIP: "threshold_writes"}


def _field(word: int, shift: int, bits: int) -> int:
    return (int(word) >> shift) & ((1 << bits) - 1)


def decode_program_entry(words) -> dict:
    """The fields of one layer-program entry from its PROGRAM_WORDS words."""
    W = ProgramWord
    tiles, mode = int(words[W.TILES]), int(words[W.MODE])
    return dict(inputs=int(words[W.INPUTS]), outputs=int(words[W.OUTPUTS]),
                row_tiles=_field(tiles, 0, W.TILE_BITS),
                col_tiles=_field(tiles, W.COL_TILES_SHIFT, W.TILE_BITS),
                first_bank=_field(mode, 0, W.FIRST_BANK_BITS),
                planes=_field(mode, W.PLANES_SHIFT, W.PLANES_BITS),
                source="activations" if mode >> W.SOURCE_BIT & 1 else "image",
                binary=bool(mode >> W.BINARY_BIT & 1))


def _program_word_ok(ep: EngineParams, part: int, data: int) -> bool:
    """The per-word range rules of a PROGRAM write (BAD_VALUE otherwise)."""
    W = ProgramWord
    if part in (W.INPUTS, W.OUTPUTS):
        return 1 <= data <= ep.max_width
    if part == W.TILES:
        reserved = data & ~(((1 << W.TILE_BITS) - 1)
                            | ((1 << W.TILE_BITS) - 1) << W.COL_TILES_SHIFT)
        rows, cols = _field(data, 0, W.TILE_BITS), _field(data, W.COL_TILES_SHIFT, W.TILE_BITS)
        return not reserved and 1 <= rows <= ep.weight_banks and 1 <= cols <= ep.weight_banks
    known = (((1 << W.FIRST_BANK_BITS) - 1) | ((1 << W.PLANES_BITS) - 1) << W.PLANES_SHIFT
             | 1 << W.SOURCE_BIT | 1 << W.BINARY_BIT)
    planes = _field(data, W.PLANES_SHIFT, W.PLANES_BITS)
    return (not data & ~known and _field(data, 0, W.FIRST_BANK_BITS) < ep.weight_banks
            and 1 <= planes <= ep.macro.input_bits)


class EngineBusModel:
    """The engine's register map over :class:`models.engine.EngineModel`.

    A faulty access changes nothing but the error registers (the macro's first-error
    latch: STATUS.error, ERRCODE, ERRADDR, with the engine's word address); a faulty
    read returns 0. Codes: :class:`models.params.EngineErrCode`.

    Parameters
    ----------
    params : EngineParams

    Members
    -------
    params : EngineParams
    engine : EngineModel
    macro : models.macro.MacroModel
        ``engine.macro``: the chip's registers, COMP, ACC, the error latch, the events.
    bank_weights : ndarray (banks, R, C) uint8
    bank_thresh : ndarray (banks, C) int64
    bank_flip : ndarray (banks, C) uint8
    program_words : ndarray (layers, PROGRAM_WORDS) int64
    image_planes : ndarray (image_slots, B, max_width) uint8
    now : int
        The cycle the next access starts in (``cyc & stb``).
    """

    def __init__(self, params: EngineParams):
        if not isinstance(params, EngineParams):
            raise TypeError(f"params must be an EngineParams, not {params!r}")
        self.params = params
        self.p = params            # region_shift and addr_bits, as MacroModel's decoder reads them
        self.engine = EngineModel(params)
        self.macro = self.engine.macro
        self._regions = {r["region"]: r for r in params.regions()}
        self._csrs = {c["offset"]: c for c in params.csrs()}
        self._sizes = params.field_sizes()
        self._shift = params.region_shift
        self._access_cycles = params.bus_latency + 1
        self._acts_after = params.acts_after
        self.reset()

    def reset(self) -> None:
        """Power-on state: the macro's reset, every engine memory and register 0."""
        ep, p = self.params, self.params.macro
        self.macro.reset()
        self.bank_weights = np.zeros((ep.weight_banks, p.rows, p.cols), np.uint8)
        self.bank_thresh = np.zeros((ep.weight_banks, p.cols), np.int64)
        self.bank_flip = np.zeros((ep.weight_banks, p.cols), np.uint8)
        self.program_words = np.zeros((ep.layers, PROGRAM_WORDS), np.int64)
        self.image_planes = np.zeros((ep.image_slots, p.input_bits, ep.max_width), np.uint8)
        self.results = np.zeros(ep.image_slots, np.int64)
        self.classify_count = 0
        self.now = 0
        self._busy_until = 0
        self._start = 0           # cycle of the last CLASSIFY's access
        self._images = 0          # images of the last CLASSIFY (after a STOP: those done)
        self._image_cycles = 0    # cycles per image of the last CLASSIFY's program
        self._acc = self._scores = None

    # --- time ------------------------------------------------------------------------

    def idle(self, cycles: int) -> None:
        """Let ``cycles`` clock cycles pass without a bus access."""
        cycles = operator.index(cycles)
        if cycles < 0:
            raise ValueError(f"cycles must be >= 0, not {cycles}")
        self.now += cycles

    def busy(self) -> bool:
        """STATUS.busy as the next access sees it."""
        return self.now + self._acts_after < self._busy_until

    def _tick(self) -> int:
        """The cycle the access starting now acts in; the clock moves past its ack."""
        t = self.now + self._acts_after
        self.now += self._access_cycles
        return t

    def _done(self, t: int) -> int:
        """Images of the last CLASSIFY completed before cycle ``t``."""
        if not self._images:
            return 0
        return int(min(self._images, max(0, t - self._start - 1) // self._image_cycles))

    def _engine_cycles(self, t: int) -> int:
        total = self._images * self._image_cycles
        return int(min(total, max(0, t - self._start - 1), _WORD_MASK))

    # --- decode and errors ---------------------------------------------------------------

    # The macro's argument checks and decoder, over the engine's regions and sizes.
    _check_bus = MacroModel._check_bus

    def _decode(self, addr: int):
        """(region dict, fields, offset) of a word address, or None for BAD_ADDRESS."""
        decoded = MacroModel._decode(self, addr)
        return None if decoded is None else decoded + (addr & ((1 << self._shift) - 1),)

    def _fault(self, code: int, addr: int) -> int:
        self.macro._error(code, addr)
        return 0

    def _macro_addr(self, number: int, offset: int) -> int:
        return number << self.macro.p.region_shift | offset

    def _forwarded(self, addr: int, access) -> int:
        """Run ``access`` on the macro; a fault it latches names the engine's address."""
        before = self.macro.status >> Status.ERROR & 1
        value = access()
        if not before and self.macro.status >> Status.ERROR & 1:
            self.macro.erraddr = addr
        return value

    # --- writes --------------------------------------------------------------------------

    def write(self, addr: int, data: int, sel: int = 0xF) -> None:
        """One Wishbone write of the engine's map.

        Parameters
        ----------
        addr : int
            Word address, ``params.addr_bits`` bits.
        data : int
            32-bit unsigned word.
        sel : int
            Byte selects; anything but 0b1111 is BAD_SEL.
        """
        addr, data, sel = self._check_bus(addr, data, sel)
        t = self._tick()
        decoded = None if sel != 0xF else self._decode(addr)
        forward = (decoded is not None and self._forwards(decoded[0]["region"], decoded[1])
                   and decoded[0]["access"] != "ro" and not self._busy_for(decoded, t))
        if forward:
            region, f, offset = decoded
            return self._forward_write(addr, region["region"], f, offset, data, t)
        self.macro.count_access()
        if sel != 0xF:
            return self._fault(EngineErrCode.BAD_SEL, addr)
        if decoded is None:
            return self._fault(EngineErrCode.BAD_ADDRESS, addr)
        region, f, _ = decoded
        number = region["region"]
        if region["access"] == "ro" or (number == Region.CSR
                                        and self._csrs[f["reg"]]["access"] == "ro"):
            return self._fault(EngineErrCode.READ_ONLY, addr)
        if self._busy_for(decoded, t):
            return self._fault(EngineErrCode.BUSY, addr)
        if number == Region.CSR:         # CLASSIFY: the one engine CSR that is written
            return self._classify(addr, data, t)
        if number in _BANKED:
            return self._write_bank(addr, number, f, data)
        if number == EngineRegion.PROGRAM:
            if not _program_word_ok(self.params, f["part"], data):
                return self._fault(EngineErrCode.BAD_VALUE, addr)
            self.program_words[f["layer"], f["part"]] = data
            return None
        # IMAGE; bits beyond max_width are ignored.
        cols = self._image_inputs(f)
        self.image_planes[f["image_slot"], f["plane"], cols] = \
            (data >> np.arange(cols.stop - cols.start)) & 1
        return None

    def _forwards(self, number: int, f: dict) -> bool:
        """Is the access one of the macro's own (forwarded with the macro's address)?"""
        if number == Region.CSR:
            reg = f["reg"]
            return reg < 1 << CSR.REG_BITS and reg not in (CSR.ID, CSR.VERSION,
                                                          CSR.REGION_SHIFT)
        return number not in _BANKED and number < EngineRegion.PROGRAM

    def _busy_for(self, decoded, t: int) -> bool:
        """Does the BUSY rule refuse this access at cycle ``t``? (The macro's rule: a
        write to CMD, SAT, QSHIFT or CLASSIFY, any memory access; reads of RESULT and
        of the CSRs are allowed.)"""
        if t >= self._busy_until:
            return False
        region, f, _ = decoded
        if region["region"] == Region.CSR:
            return f["reg"] in (CSR.CMD, CSR.SAT, CSR.QSHIFT, EngineCSR.CLASSIFY)
        return region["region"] != EngineRegion.RESULT

    def _forward_write(self, addr: int, number: int, f: dict, offset: int, data: int,
                       t: int) -> None:
        m = self.macro
        if number == Region.CSR and f["reg"] == CSR.STATUS:
            return self._write_status(addr, data, t)
        command = number == Region.CSR and f["reg"] == CSR.CMD and m._command_ok(data)
        if command and data & Cmd.OPCODE_MASK == Op.RUN:
            # A RUN through CMD computes with bank 0 (docs/ENGINE.md).
            np.copyto(m.weights, self.bank_weights[0])
            np.copyto(m.thresh, self.bank_thresh[0])
            np.copyto(m.flip, self.bank_flip[0])
        self._forwarded(addr, lambda: m.write(self._macro_addr(number, offset), data))
        if command:
            self._busy_until = t + 1 + m.cycles

    def _write_status(self, addr: int, data: int, t: int) -> None:
        busy = t < self._busy_until
        if busy:
            # DONE is set when the command ends; a clear while busy cannot lose that.
            data &= ~(1 << Status.DONE)
            if data >> EngineStatus.STOP & 1 and self._images:
                self._stop(t)
        self._forwarded(addr, lambda: self.macro.write(
            self._macro_addr(Region.CSR, CSR.STATUS), data))

    def _stop(self, t: int) -> None:
        """STOP: the image in progress completes, no later one starts; the macro's state
        is then that of the images done (:meth:`_keep_images`)."""
        done = self._done(t)
        if done + 1 < self._images:
            self._keep_images(done + 1)
            self._busy_until = self._start + 1 + self._images * self._image_cycles

    def _keep_images(self, count: int) -> None:
        """The macro as the batch's first ``count`` images leave it: ACC, OUT, INPUT,
        STATUS.acc_sat and the event counts (the batch was computed whole when it
        started). The images run again from the state before the batch; the events of
        the images dropped come off the counts, so that the bus's own events since the
        CLASSIFY stay."""
        m, eng = self.macro, self.engine
        events = m.events.as_dict()
        for image in eng.image_events[count:]:
            for name, n in image.as_dict().items():
                events[name] -= n
        status = m.status
        for name, value in self._before_batch.items():    # used once: no copy
            setattr(m, name, value)
        self.results[:count] = eng.run(count)
        sat = 1 << Status.ACC_SAT
        m.status = status & ~sat | m.status & sat
        m.events = EventCounts(events)
        self._acc, self._scores = eng.acc.copy(), eng.scores.copy()
        self._images = count

    def _write_bank(self, addr: int, number: int, f: dict, data: int) -> None:
        p, m, k = self.params.macro, self.macro, f["bank"]
        if number == Region.WEIGHT:
            col, rows = m._column(f), m._rows(f)
            self.bank_weights[k, rows, col] = m._word_bits(data, p.chunk_rows)
        elif number == Region.FLIP:
            cols = m._packed_columns(f)
            self.bank_flip[k, cols] = m._word_bits(data, cols.stop - cols.start)
        else:
            value = data - (1 << 32) if data >> 31 else data
            lo, hi = -(1 << (p.acc_bits - 1)), (1 << (p.acc_bits - 1)) - 1
            if not lo <= value <= hi:
                return self._fault(EngineErrCode.BAD_VALUE, addr)
            self.bank_thresh[k, m._column(f)] = value
        m.events.add(_WRITE_EVENTS[number])
        return None

    def _image_inputs(self, f: dict) -> slice:
        start = BUS_DATA_BITS * f["image_chunk"]
        return slice(start, min(start + BUS_DATA_BITS, self.params.max_width))

    # --- the layer program and CLASSIFY --------------------------------------------------

    def program_problems(self) -> list[str]:
        """Why the layer program cannot run (empty: it can); CLASSIFY answers
        BAD_PROGRAM when this is not empty. One line per entry at fault."""
        return self._program()[1]

    def _program(self) -> tuple[NetworkProgram | None, list[str]]:
        ep, p = self.params, self.params.macro
        layers, problems = [], []
        for l in range(ep.layers):
            e = decode_program_entry(self.program_words[l])
            want_t, want_j = -(-e["inputs"] // p.rows), -(-e["outputs"] // p.cols)
            if not (1 <= e["inputs"] <= ep.max_width and 1 <= e["outputs"] <= ep.max_width):
                problems.append(f"layer {l}: inputs {e['inputs']} and outputs "
                                f"{e['outputs']} must be in 1..{ep.max_width}")
            elif (e["row_tiles"], e["col_tiles"]) != (want_t, want_j):
                problems.append(f"layer {l}: tiles {e['row_tiles']}x{e['col_tiles']}, "
                                f"its {e['inputs']}x{e['outputs']} take {want_t}x{want_j}")
            elif e["first_bank"] + want_t * want_j > ep.weight_banks:
                problems.append(f"layer {l}: banks {e['first_bank']}.."
                                f"{e['first_bank'] + want_t * want_j - 1} beyond the "
                                f"{ep.weight_banks} banks")
            if l == 0:
                if e["source"] != "image" or not 1 <= e["planes"] <= p.input_bits:
                    problems.append(f"layer 0: source {e['source']}, planes {e['planes']}; "
                                    f"the first layer reads the image in 1..{p.input_bits} "
                                    f"planes")
            elif e["source"] != "activations" or e["planes"] != 1:
                problems.append(f"layer {l}: source {e['source']}, planes {e['planes']}; a "
                                f"later layer reads the activations in 1 plane")
            elif e["inputs"] != layers[-1].outputs:
                problems.append(f"layer {l}: {e['inputs']} inputs after "
                                f"{layers[-1].outputs} outputs")
            if problems:
                return None, problems
            layers.append(LayerProgram(**e))
            if not e["binary"]:
                return NetworkProgram(p, tuple(layers), self.bank_weights, self.bank_thresh,
                                      self.bank_flip), []
        return None, [f"no last layer (BINARY = 0) in the {ep.layers} entries"]

    def _classify(self, addr: int, count: int, t: int) -> None:
        ep = self.params
        if not 1 <= count <= ep.image_slots:
            return self._fault(EngineErrCode.BAD_VALUE, addr)
        program, problems = self._program()
        if problems:
            return self._fault(EngineErrCode.BAD_PROGRAM, addr)
        eng = self.engine
        eng.load(NetworkProgram(program.macro, program.layers, self.bank_weights.copy(),
                                self.bank_thresh.copy(), self.bank_flip.copy()))
        planes = program.image_planes
        bits = self.image_planes[:count, :planes].astype(np.int64)
        eng.images[:count] = (bits << np.arange(planes)[None, :, None]).sum(axis=1)
        eng.loaded = count
        self._before_batch = {name: copy.copy(getattr(self.macro, name)) for name in _BATCH_STATE}
        self.results[:count] = eng.run(count)
        self._acc, self._scores = eng.acc.copy(), eng.scores.copy()
        self.classify_count = count
        self._start, self._images = t, count
        self._image_cycles = eng.cycles // count
        self._busy_until = t + 1 + eng.cycles
        return None

    # --- reads ---------------------------------------------------------------------------

    def read(self, addr: int) -> int:
        """One Wishbone read of the engine's map: the 32-bit word, or 0 after a fault."""
        addr, _, _ = self._check_bus(addr)
        t = self._tick()
        decoded = self._decode(addr)
        if decoded is not None and self._forwards(decoded[0]["region"], decoded[1]) \
                and not self._busy_for(decoded, t) \
                and not (decoded[0]["region"] == Region.CSR and decoded[1]["reg"] in _LIVE_CSRS):
            region, f, offset = decoded
            return self._forwarded(addr, lambda: self.macro.read(
                self._macro_addr(region["region"], offset)))
        self.macro.count_access()
        if decoded is None:
            return self._fault(EngineErrCode.BAD_ADDRESS, addr)
        region, f, _ = decoded
        number = region["region"]
        if number == Region.CSR:
            return self._read_csr(f["reg"], t)
        if self._busy_for(decoded, t):
            return self._fault(EngineErrCode.BUSY, addr)
        m = self.macro
        if number == EngineRegion.RESULT:
            if f["image_slot"] >= self._done(t):
                return self._fault(EngineErrCode.NO_RESULT, addr)
            return int(self.results[f["image_slot"]])
        if number in (EngineRegion.LAST_ACC, EngineRegion.LAST_SCORE):
            done = self._done(t)
            if not done or f["neuron"] >= self._acc.shape[1]:
                return self._fault(EngineErrCode.NO_RESULT, addr)
            source = self._acc if number == EngineRegion.LAST_ACC else self._scores
            value = int(source[done - 1, f["neuron"]])
            return max(-(1 << 31), min((1 << 31) - 1, value)) & _WORD_MASK
        if number == Region.WEIGHT:
            return pack_bits(self.bank_weights[f["bank"], m._rows(f), m._column(f)])[0]
        if number == Region.THRESH:
            return int(self.bank_thresh[f["bank"], m._column(f)]) & _WORD_MASK
        if number == Region.FLIP:
            return pack_bits(self.bank_flip[f["bank"], m._packed_columns(f)])[0]
        if number == EngineRegion.PROGRAM:
            return int(self.program_words[f["layer"], f["part"]])
        return pack_bits(self.image_planes[f["image_slot"], f["plane"], self._image_inputs(f)])[0]

    def _read_csr(self, reg: int, t: int) -> int:
        if reg == CSR.STATUS:
            word = self.macro.status
            if t < self._busy_until:
                word = (word | 1 << Status.BUSY) & ~(1 << Status.DONE)
            return word
        live = {EngineCSR.CLASSIFY: self.classify_count, EngineCSR.RESULTS: self._done(t),
                EngineCSR.ENGINE_CYCLES: self._engine_cycles(t)}
        if reg in live:
            return live[reg]
        return self._csrs[reg]["reset"]
