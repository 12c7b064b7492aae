"""The engine's sequencer (docs/ENGINE.md sections 3 and 5): CLASSIFY and STOP, image
after image, layer after layer, column tile after column tile, row tile after row tile,
each a RUN of the macro's own sequencer with its bank's memories, then the capture of OUT
into the activations (binary layers) or the scan of the scores (the last layer), then the
class into the result buffer.

Cycles of one image (section 5): the image start (which issues the first RUN), each RUN
(``G (p + 2)`` cycles of the macro's sequencer, the next RUN of a column tile issued in
its write-back cycle), one capture cycle per column tile of a binary layer (which issues
the next RUN), ``1 + live`` scan cycles per column tile of the last layer (a read cycle,
then one class per cycle; the last one issues the next RUN) and the result write.

A RUN is issued as a CMD write to the macro's sequencer (``command_access``: the bus's
access record, or the issued command in the cycle one is issued). The bank this file
presents to the bank memories is the value of the next cycle, so that the memories' data
in a cycle belong to the state of that cycle. The image slot and row tile it presents
are the next RUN's, so that the image buffer's data in the cycle that issues a RUN are
its rows: the register file's INPUT takes the RUN's inputs (masked, from the image or
the activations) as it is issued, and the plane select reads INPUT.

The bank comes from registers: the bank of the current RUN, or in a cycle that issues
the next RUN (but the image start's, whose bank is already the current one) the
register ``upcoming``, the bank of the RUN after the current one (``bank + 1`` within a
layer, the next layer's first bank after a layer's last RUN, entry 0's after the last
layer's), which is loaded from the state of the cycle before. The issue decisions use
registered flags of that state too (the last row tile, the last column tile, the last
scan cycle). Both lag a state change by a cycle: they hold from the second cycle of a
RUN on, and a RUN of the macro's sequencer ends at the earliest in its third cycle (a
read cycle, a plane, a write-back), so no decision takes a stale one.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from models.engine import ENGINE_PIPELINES
from models.engine_params import EngineCSR, EngineStatus
from models.params import BUS_DATA_BITS, CSR, Cmd, Op, Region

from .access import access_layout
from .engine_front_end import COUNT_BITS, engine_access_layout
from .logic import clog2, eq_const, lt_const, ult
from .program_memory import entry_fields
from .result_buffer import class_bits

__all__ = ["EnginePhase", "EngineSequencer"]


class EnginePhase(enum.Enum, shape=3):
    """Step of the engine's sequencer.

    Members
    -------
    IDLE
        No CLASSIFY runs.
    START
        The image start: the first RUN of the image is issued.
    RUN
        A RUN of the macro's sequencer (its read cycle to its write-back).
    CAPTURE
        A binary layer's column tile is done: the next RUN is issued.
    SCAN
        The last layer's column tile: a read cycle, then one class per cycle.
    RESULT
        The class is written to the result buffer.
    """
    IDLE = 0
    START = 1
    RUN = 2
    CAPTURE = 3
    SCAN = 4
    RESULT = 5


class EngineSequencer(wiring.Component):
    """Sequencing of CLASSIFY over the macro's sequencer.

    Parameters
    ----------
    ep : EngineParams
        Built for pipeline 0..3.

    Members
    -------
    access : In(engine_access_layout(ep))
        The bus access in the cycle it acts in: CLASSIFY starts, STATUS.STOP stops.
    macro_access : In(access_layout(ep.macro))
        The macro's view of the bus access.
    command_access : Out(access_layout(ep.macro))
        What the macro's sequencer acts on: ``macro_access``, or the issued RUN.
    run_done : In(1)
        The macro's sequencer completes a command (the RUN's last write-back cycle).
    run_ends_next : In(1)
        With a pipeline (L = 1..3): ``run_done`` comes in the next cycle (the macro
        sequencer's ``run_end_ahead`` port), so that the bank choice of the next RUN
        starts from a register rather than from the RUN's end.
    macro_busy : In(1)
        The macro's sequencer is busy.
    group_store : In(1), group : In(max(1, ceil(log2 G)))
        The macro's sequencer stores ACC and OUT of column group ``group``.
    bus_bank : In(max(1, ceil(log2 weight_banks)))
        The bank field of the bus access.
    bank : Out(max(1, ceil(log2 weight_banks)))
        The bank the bank memories address: the bus's while idle, bank 0 during a RUN
        written to CMD, during a CLASSIFY the bank of the next cycle's RUN (from
        registers: the current RUN's, or ``upcoming`` in a cycle that issues a RUN) but
        in the result write, where it is the current RUN's.
    upcoming_layer : Out(max(1, ceil(log2 layers)))
        The layer after the current one (``layer + 1`` in a binary layer, 0 in the last:
        the next image's first; 0 while idle), whose program entry comes back in the
        fields below.
    inputs, outputs, row_tiles, col_tiles, first_bank, planes, source, binary : In
        The program entry of ``upcoming_layer``.
    program_classes : In(17)
        The classes of the program (captured when a CLASSIFY starts).
    busy : Out(1)
        A CLASSIFY runs.
    started, finished : Out(1)
        A CLASSIFY starts (STATUS.done := 0) and ends (STATUS.done := 1).
    image_slot : Out(max(1, ceil(log2 image_slots)))
        The image slot of the next RUN to issue, and ``image_row_base`` and
        ``image_row_tile`` its row tile's first input and index (from registers: in a
        RUN the next row tile, or row tile 0 after the last; slot + 1 in the result
        write, 0 while idle), so that the image buffer's data in the cycle that issues a
        RUN are the RUN's rows.
    image_row_base : Out(17), image_row_tile : Out(max(1, ceil(log2 ceil(max_width / R))))
    src, inputs_n, row_base, row_tile : Out
        The issued RUN's source, its layer's n_in, its row tile's first input and index.
    capture, col_tile, swap : Out
        The activation buffer's controls (``swap``: the RUN issued is a layer's first,
        and reads the buffer captured into).
    load_planes : Out(B)
        A RUN is issued: INPUT takes its planes 0..p-1 (the activation buffer's
        ``inputs``) at the edge, and keeps them after the RUN, as the golden model's
        RUN leaves them.
    scanning : Out(1), scan_group : Out(max(1, ceil(log2 G)))
        A scan runs and presents the ACC and CORR words of ``scan_group`` (for the next
        cycle's class).
    compare, first, lane, neuron, result_write, result_slot : Out
        The result buffer's controls.
    classify_count, results, classes : Out(17)
        CLASSIFY's accepted N, the images classified, the classes of its program.
    engine_cycles : Out(32)
        ENGINE_CYCLES: the cycles of the current or last CLASSIFY (saturating).
    state : dict
        After ``elaborate``: the registers by name (``busy``, ``phase``, ``layer``,
        ``row_tile``, ``col_tile``, ``bank``, ``slot``, ``count``, ``entry``, the current
        layer's program entry, ``ahead``, the entry of the cycle before's upcoming layer,
        ``upcoming``, ``last_row``, ``last_col`` (the flags of the
        state of the cycle before), ``scan``, ``scan_end`` (the scan cycle is the last)
        and ``issued`` (a RUN was issued in the cycle before)), for formal harnesses.
    """

    def __init__(self, ep):
        p = ep.macro
        if p.pipeline not in ENGINE_PIPELINES:
            raise ValueError(f"pipeline must be in {ENGINE_PIPELINES[0]}..{ENGINE_PIPELINES[-1]} "
                             f"for the engine, not {p.pipeline}")
        self._ep = ep
        bank_bits = max(1, clog2(ep.weight_banks))
        fields = {name: In(width) for name, width in entry_fields(ep).items()}
        row_tiles = -(-ep.max_width // p.rows)
        col_tiles = -(-ep.max_width // p.cols)
        group_bits = max(1, p.group_addr_bits)
        super().__init__({
            "access": In(engine_access_layout(ep)),
            "macro_access": In(access_layout(p)),
            "command_access": Out(access_layout(p)),
            "run_done": In(1),
            **({"run_ends_next": In(1)} if p.pipeline else {}),
            "macro_busy": In(1),
            "group_store": In(1),
            "group": In(group_bits),
            "bus_bank": In(bank_bits),
            "bank": Out(bank_bits),
            **fields,
            "upcoming_layer": Out(max(1, clog2(ep.layers))),
            "program_classes": In(COUNT_BITS),
            "busy": Out(1),
            "started": Out(1),
            "finished": Out(1),
            "image_slot": Out(max(1, clog2(ep.image_slots))),
            "image_row_base": Out(COUNT_BITS),
            "image_row_tile": Out(max(1, clog2(row_tiles))),
            "src": Out(1),
            "inputs_n": Out(COUNT_BITS),
            "row_base": Out(COUNT_BITS),
            "row_tile": Out(max(1, clog2(row_tiles))),
            "capture": Out(1),
            "col_tile": Out(max(1, clog2(col_tiles))),
            "scanning": Out(1),
            "scan_group": Out(group_bits),
            "swap": Out(1),
            "load_planes": Out(p.input_bits),
            "compare": Out(1),
            "first": Out(1),
            "lane": Out(max(1, clog2(p.cols_per_cycle))),
            "neuron": Out(class_bits(ep)),
            "result_write": Out(1),
            "result_slot": Out(max(1, clog2(ep.image_slots))),
            "classify_count": Out(COUNT_BITS),
            "results": Out(COUNT_BITS),
            "classes": Out(COUNT_BITS),
            "engine_cycles": Out(BUS_DATA_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        r = self._registers(m)
        self._tiles(m, r)
        self._flags(m, r)
        self._phases(m, r)
        self._next_rows(m, r)
        self.state = dict(busy=r.busy, phase=r.phase, layer=r.layer, row_tile=r.row_tile,
                          col_tile=r.col_tile, bank=r.bank, slot=r.slot, count=r.count,
                          entry=r.entry, ahead=r.ahead, upcoming=r.upcoming,
                          last_row=r.at_last_row, last_col=r.at_last_col, scan=r.scan,
                          scan_end=r.scan_end, issued=r.issued, bank_ahead=r.bank_ahead)
        self._issue(m, r)
        m.d.comb += [
            self.bank.eq(Mux(r.busy, Mux(r.bank_ahead, r.upcoming, r.bank),
                             Mux(self.macro_busy, 0, self.bus_bank))),
            self.busy.eq(r.busy),
            self.col_tile.eq(r.col_tile[:len(self.col_tile)]),
            self.scan_group.eq(r.scan_group),
            self.lane.eq(r.compare_lane),
            self.neuron.eq(r.neuron),
            self.result_slot.eq(r.slot),
            self.classify_count.eq(r.count), self.results.eq(r.results),
            self.classes.eq(r.classes), self.engine_cycles.eq(r.cycles),
        ]
        return m

    def _registers(self, m):
        """The commands of the bus access and the sequencer's registers (a namespace)."""
        ep, p = self._ep, self._ep.macro
        r = _Registers()
        access = self.access
        write = access.valid & access.we & access.regions[Region.CSR]
        r.classify = Signal(name="classify_write")
        r.stop_now = Signal(name="stop_write")
        m.d.comb += [r.classify.eq(write & access.regs[EngineCSR.CLASSIFY]),
                     r.stop_now.eq(write & access.regs[CSR.STATUS]
                                   & access.data[EngineStatus.STOP])]

        r.phase = Signal(EnginePhase, name="engine_phase")
        r.busy = Signal(name="engine_busy")
        r.stop = Signal(name="engine_stop")
        # Counts as wide as their range (a CLASSIFY's count is 1..IMAGE_SLOTS, checked by
        # the front end): the bus reads them zero-extended, and the front end's checks
        # compare fewer bits.
        r.count_bits = ep.image_slots.bit_length()
        r.count = Signal(r.count_bits, name="classify_count")
        r.results = Signal(r.count_bits, name="engine_results")
        r.classes = Signal(COUNT_BITS, name="engine_classes")
        r.cycles = Signal(BUS_DATA_BITS, name="engine_cycles")
        r.slot = Signal(len(self.image_slot), name="engine_slot")
        r.layer = Signal(len(self.upcoming_layer), name="engine_layer")
        # Tile indices as wide as the bases below: their products are not narrower.
        r.row_tile = Signal(COUNT_BITS, name="engine_row_tile")
        r.col_tile = Signal(COUNT_BITS, name="engine_col_tile")
        r.bank = Signal(len(self.bank), name="engine_bank")
        r.upcoming = Signal(len(self.bank), name="engine_upcoming_bank")
        r.neuron = Signal(len(self.neuron), name="engine_neuron")
        r.scan = Signal(max(1, clog2(p.cols + 1)), name="engine_scan")
        # The class whose words a scan cycle presents: lane and group of class ``scan``.
        r.scan_lane = Signal(max(1, clog2(p.cols_per_cycle)), name="scan_lane")
        r.scan_group = Signal(max(1, p.group_addr_bits), name="scan_group")
        r.compare_lane = Signal(max(1, clog2(p.cols_per_cycle)), name="compare_lane")
        m.d.sync += r.compare_lane.eq(r.scan_lane)
        # The current layer's program entry, and the upcoming layer's (the entry of the
        # cycle before's ``upcoming_layer``): a layer's first RUN loads ``layer`` and
        # ``entry`` from ``upcoming_layer`` and ``ahead``, registers a cycle away from the
        # program's multiplexers.
        r.entry = {name: Signal(width, name=f"current_{name}")
                   for name, width in entry_fields(ep).items()}
        r.ahead = {name: Signal(width, name=f"ahead_{name}")
                   for name, width in entry_fields(ep).items()}
        m.d.sync += [r.ahead[name].eq(getattr(self, name)) for name in r.ahead]

        r.in_phase = {ph: Signal(name=f"in_{ph.name.lower()}") for ph in EnginePhase}
        m.d.comb += [s.eq(eq_const(r.phase.as_value(), ph.value))
                     for ph, s in r.in_phase.items()]
        return r

    def _tiles(self, m, r):
        """The next cycle's slot and tiles, and the tiles' first input and output."""
        p = self._ep.macro
        # Next-cycle values: the current ones unless a transition below changes them.
        r.nxt = dict(slot=Signal.like(r.slot, name="next_slot"),
                     row_tile=Signal.like(r.row_tile, name="next_row_tile"),
                     col_tile=Signal.like(r.col_tile, name="next_col_tile"))
        current = dict(slot=r.slot, row_tile=r.row_tile, col_tile=r.col_tile)
        for name, sig in r.nxt.items():
            m.d.comb += sig.eq(current[name])
            m.d.sync += current[name].eq(sig)
        # The first input of a row tile and output of a column tile (products with a
        # constant: no adder of mismatched widths).
        r.row_base = Signal(COUNT_BITS, name="engine_row_base")
        r.col_base = Signal(COUNT_BITS, name="engine_col_base")
        m.d.comb += [r.row_base.eq((r.row_tile * p.rows)[:COUNT_BITS]),
                     r.col_base.eq((r.col_tile * p.cols)[:COUNT_BITS])]
        r.issue = Signal(name="issue_run")
        r.accumulate = Signal(name="issue_accumulate")

    def _flags(self, m, r):
        """The scan's classes, the registered flags of the state of the cycle before, the
        next RUN's bank and the next layer's entry."""
        C = self._ep.macro.cols
        r.live = Signal(len(r.scan), name="scan_live")          # classes of this column tile
        left = Signal(COUNT_BITS, name="scan_left")
        m.d.comb += [left.eq(r.entry["outputs"] - r.col_base),
                     r.live.eq(Mux(lt_const(left, C), left[:len(r.scan)], C))]
        r.last_row = (r.row_tile + 1)[:ProgramTileBits] == r.entry["row_tiles"]
        last_col = (r.col_tile + 1)[:ProgramTileBits] == r.entry["col_tiles"]
        # The flags and the next RUN's bank, from the state of the cycle before.
        r.at_last_row = Signal(name="engine_last_row")
        r.at_last_col = Signal(name="engine_last_col")
        r.scan_end = Signal(name="engine_scan_end")
        m.d.sync += [r.at_last_row.eq(r.last_row), r.at_last_col.eq(last_col)]
        m.d.comb += self.upcoming_layer.eq(Mux(r.busy & r.entry["binary"],
                                               (r.layer + 1)[:len(r.layer)], 0))
        m.d.sync += r.upcoming.eq(Mux(r.last_row & last_col, self.first_bank,
                                      (r.bank + 1)[:len(r.bank)]))
        # The next layer's entry is loaded while idle (entry 0, for a CLASSIFY), after the
        # last column tile of a binary layer and in the result write (entry 0, for the
        # next image): registered state only, not the bus's access or the RUN's end.
        in_phase = r.in_phase
        next_layer = Signal(name="engine_next_layer")
        m.d.comb += next_layer.eq(in_phase[EnginePhase.IDLE] | in_phase[EnginePhase.RESULT]
                                  | in_phase[EnginePhase.CAPTURE] & r.at_last_col)
        with m.If(next_layer):
            m.d.sync += [r.layer.eq(self.upcoming_layer),
                         *(r.entry[name].eq(r.ahead[name]) for name in r.entry)]
        # A RUN issued with the bank ``upcoming`` (every issue but the image start's): in a
        # RUN's end (not its row tile's last), in a capture, in a scan's last cycle (not
        # the last column tile's).
        r.bank_ahead = Signal(name="engine_bank_ahead")
        if not self._ep.macro.pipeline:
            m.d.comb += r.bank_ahead.eq(in_phase[EnginePhase.RUN] & self.run_done & ~r.at_last_row
                                        | in_phase[EnginePhase.CAPTURE]
                                        | in_phase[EnginePhase.SCAN] & r.scan_end & ~r.at_last_col)
            return
        # With a pipeline the same decision is a register, made a cycle ahead from the
        # macro sequencer's announcement of the RUN's end (``run_ends_next``) and the
        # transitions into a capture or a scan's last cycle: the bank's multiplexer,
        # which drives the address of every weight memory across the die, has a register
        # for its select.
        run_done = Signal(name="run_done_registered")
        m.d.sync += run_done.eq(self.run_ends_next)
        tile_done = in_phase[EnginePhase.RUN] & run_done & r.at_last_row
        scan_ends_next = (in_phase[EnginePhase.SCAN] & ~r.scan_end
                          & ((r.scan + 1)[:len(r.scan)] == r.live)
                          | tile_done & ~r.entry["binary"] & ~r.live.any())
        m.d.sync += r.bank_ahead.eq(
            in_phase[EnginePhase.RUN] & self.run_ends_next & ~r.at_last_row
            | tile_done & r.entry["binary"]
            | scan_ends_next & ~r.at_last_col)

    def _run_next(self, m, r, *, tile_same_column):
        """Issue the next RUN: the next row tile, or the first of a column tile."""
        m.d.comb += r.issue.eq(1)
        m.d.sync += r.bank.eq(r.upcoming)
        if tile_same_column:
            m.d.comb += [r.accumulate.eq(1),
                         r.nxt["row_tile"].eq((r.row_tile + 1)[:len(r.row_tile)])]
        else:
            m.d.comb += [r.nxt["row_tile"].eq(0),
                         r.nxt["col_tile"].eq((r.col_tile + 1)[:len(r.col_tile)])]
        m.d.sync += r.phase.eq(EnginePhase.RUN)

    def _first_run_of(self, m, r, bank_value, slot_value=None):
        """The state of a layer's first RUN (its bank is the entry's first bank; its layer
        and entry are loaded by ``_flags``)."""
        m.d.comb += [r.nxt["row_tile"].eq(0), r.nxt["col_tile"].eq(0)]
        m.d.sync += r.bank.eq(bank_value)
        if slot_value is not None:
            m.d.comb += r.nxt["slot"].eq(slot_value)

    def _phases(self, m, r):
        """The counters, STOP, and each phase's transitions."""
        P = self._ep.macro.cols_per_cycle
        in_phase, entry = r.in_phase, r.entry
        with m.If(r.busy):
            m.d.sync += r.cycles.eq(Mux(r.cycles.all(), r.cycles, r.cycles + 1))
        with m.If(r.stop_now & r.busy):
            m.d.sync += r.stop.eq(1)

        with m.If(in_phase[EnginePhase.IDLE]):
            with m.If(r.classify):
                self._first_run_of(m, r, r.ahead["first_bank"], 0)
                m.d.sync += [r.busy.eq(1), r.phase.eq(EnginePhase.START), r.stop.eq(0),
                             r.count.eq(self.access.data[:r.count_bits]), r.results.eq(0),
                             r.cycles.eq(0), r.classes.eq(self.program_classes)]
                m.d.comb += self.started.eq(1)
        with m.Elif(in_phase[EnginePhase.START]):
            m.d.comb += r.issue.eq(1)
            m.d.sync += r.phase.eq(EnginePhase.RUN)
        with m.Elif(in_phase[EnginePhase.RUN]):
            m.d.comb += self.capture.eq(self.group_store & r.at_last_row & entry["binary"])
            with m.If(self.run_done):
                with m.If(~r.at_last_row):
                    self._run_next(m, r, tile_same_column=True)
                with m.Elif(entry["binary"]):
                    m.d.sync += r.phase.eq(EnginePhase.CAPTURE)
                with m.Else():
                    m.d.sync += [r.phase.eq(EnginePhase.SCAN), r.scan.eq(0), r.scan_lane.eq(0),
                                 r.scan_end.eq(~r.live.any()), r.scan_group.eq(0),
                                 r.neuron.eq(r.col_base[:len(r.neuron)])]
        with m.Elif(in_phase[EnginePhase.CAPTURE]):
            with m.If(~r.at_last_col):
                self._run_next(m, r, tile_same_column=False)
            with m.Else():
                self._first_run_of(m, r, r.upcoming)
                m.d.comb += [r.issue.eq(1), self.swap.eq(1)]
                m.d.sync += r.phase.eq(EnginePhase.RUN)
        with m.Elif(in_phase[EnginePhase.SCAN]):
            m.d.comb += self.scanning.eq(1)
            m.d.sync += [r.scan.eq(r.scan + 1),
                         r.scan_end.eq((r.scan + 1)[:len(r.scan)] == r.live)]
            with m.If(eq_const(r.scan_lane, P - 1)):
                m.d.sync += [r.scan_lane.eq(0), r.scan_group.eq(r.scan_group + 1)]
            with m.Else():
                m.d.sync += r.scan_lane.eq(r.scan_lane + 1)
            with m.If(r.scan.any()):
                m.d.sync += r.neuron.eq(r.neuron + 1)
                m.d.comb += [self.compare.eq(1),
                             self.first.eq(~r.col_tile.any() & eq_const(r.scan, 1))]
            with m.If(r.scan_end):
                with m.If(~r.at_last_col):
                    self._run_next(m, r, tile_same_column=False)
                with m.Else():
                    m.d.sync += r.phase.eq(EnginePhase.RESULT)
        with m.Elif(in_phase[EnginePhase.RESULT]):
            m.d.comb += self.result_write.eq(1)
            m.d.sync += r.results.eq(r.results + 1)
            more = ult(r.slot + 1, r.count) & ~r.stop & ~r.stop_now
            with m.If(more):
                self._first_run_of(m, r, r.upcoming, (r.slot + 1)[:len(r.slot)])
                m.d.sync += r.phase.eq(EnginePhase.START)
            with m.Else():
                m.d.comb += self.finished.eq(1)
                m.d.sync += [r.busy.eq(0), r.phase.eq(EnginePhase.IDLE)]

    def _next_rows(self, m, r):
        """The image buffer's rows of the next RUN, and the issued RUN's inputs."""
        R = self._ep.macro.rows
        in_phase = r.in_phase
        # The rows of the next RUN, a cycle ahead of its issue (from registered state:
        # the issue decisions come late in their cycle). In a RUN, the next one is the
        # next row tile of the column tile or, after the last, row tile 0 (of the next
        # column tile, layer or image); in the result write, the next image's; while
        # idle, slot 0's (for a CLASSIFY).
        image_row_tile = Signal(len(r.row_tile), name="image_row_tile")
        image_slot = Signal(len(r.slot), name="image_slot")
        m.d.comb += [
            image_row_tile.eq(Mux(in_phase[EnginePhase.RUN] & ~r.last_row,
                                  (r.row_tile + 1)[:len(r.row_tile)], 0)),
            image_slot.eq(Mux(in_phase[EnginePhase.IDLE], 0,
                              Mux(in_phase[EnginePhase.RESULT] & ult(r.slot + 1, r.count),
                                  (r.slot + 1)[:len(r.slot)], r.slot))),
            self.image_slot.eq(image_slot),
            self.image_row_tile.eq(image_row_tile[:len(self.image_row_tile)]),
            self.image_row_base.eq((image_row_tile * R)[:COUNT_BITS]),
        ]
        # The issued RUN's inputs: in a RUN the next row tile (of the same column tile),
        # else row tile 0; a layer's first RUN after a binary layer is the entry ahead's.
        run_row_tile = Signal(len(r.row_tile), name="run_row_tile")
        r.first_of_layer = in_phase[EnginePhase.CAPTURE] & r.at_last_col
        entry, ahead = r.entry, r.ahead
        m.d.comb += [
            run_row_tile.eq(Mux(in_phase[EnginePhase.RUN], (r.row_tile + 1)[:len(r.row_tile)],
                                0)),
            self.row_tile.eq(run_row_tile[:len(self.row_tile)]),
            self.row_base.eq((run_row_tile * R)[:COUNT_BITS]),
            self.src.eq(Mux(r.first_of_layer, ahead["source"], entry["source"])),
            self.inputs_n.eq(Mux(r.first_of_layer, ahead["inputs"], entry["inputs"])),
        ]
        r.issued = Signal(name="run_issued")
        m.d.sync += r.issued.eq(r.issue)

    def _issue(self, m, r):
        """The RUN issued to the macro's sequencer, in place of the bus's access; INPUT
        takes the planes it uses at the issue's edge."""
        p = self._ep.macro
        command = Signal(Cmd.BITS, name="issued_command")
        planes = Mux(r.first_of_layer, r.ahead["planes"], r.entry["planes"])
        m.d.comb += self.load_planes.eq(Cat(*(r.issue & ~lt_const(planes, b + 1)
                                              for b in range(p.input_bits))))
        m.d.comb += command.eq(Op.RUN | r.accumulate << Cmd.ACCUMULATE_BIT
                               | planes << Cmd.NPLANES_SHIFT)
        with m.If(r.issue):
            m.d.comb += [self.command_access.valid.eq(1), self.command_access.we.eq(1),
                         self.command_access.data.eq(command),
                         self.command_access.offset.eq(CSR.CMD),
                         self.command_access.regions.eq(1 << Region.CSR),
                         self.command_access.regs.eq(1 << CSR.CMD)]
        with m.Else():
            m.d.comb += self.command_access.eq(self.macro_access)


class _Registers:
    """The registers and decisions :class:`EngineSequencer`'s parts share (attributes
    set as ``elaborate`` builds them)."""


#: Width of a row or column tile index (ProgramWord.TILE_BITS).
ProgramTileBits = 13
