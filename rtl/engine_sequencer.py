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
        if p.pipeline not in (0, 1, 2, 3):
            raise ValueError(f"pipeline must be in 0..3 for the engine, not {p.pipeline}")
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
        ep, p = self._ep, self._ep.macro
        R, C, P, G = p.rows, p.cols, p.cols_per_cycle, p.groups
        m = Module()
        access = self.access
        write = access.valid & access.we & access.regions[Region.CSR]
        classify = Signal(name="classify_write")
        stop_now = Signal(name="stop_write")
        m.d.comb += [classify.eq(write & access.regs[EngineCSR.CLASSIFY]),
                     stop_now.eq(write & access.regs[CSR.STATUS]
                                 & access.data[EngineStatus.STOP])]

        phase = Signal(EnginePhase, name="engine_phase")
        busy = Signal(name="engine_busy")
        stop = Signal(name="engine_stop")
        # Counts as wide as their range (a CLASSIFY's count is 1..IMAGE_SLOTS, checked by
        # the front end): the bus reads them zero-extended, and the front end's checks
        # compare fewer bits.
        count_bits = ep.image_slots.bit_length()
        count = Signal(count_bits, name="classify_count")
        results = Signal(count_bits, name="engine_results")
        classes = Signal(COUNT_BITS, name="engine_classes")
        cycles = Signal(BUS_DATA_BITS, name="engine_cycles")
        slot = Signal(len(self.image_slot), name="engine_slot")
        layer = Signal(len(self.upcoming_layer), name="engine_layer")
        # Tile indices as wide as the bases below: their products are not narrower.
        row_tile = Signal(COUNT_BITS, name="engine_row_tile")
        col_tile = Signal(COUNT_BITS, name="engine_col_tile")
        bank = Signal(len(self.bank), name="engine_bank")
        upcoming = Signal(len(self.bank), name="engine_upcoming_bank")
        neuron = Signal(len(self.neuron), name="engine_neuron")
        scan = Signal(max(1, clog2(C + 1)), name="engine_scan")
        # The class whose words a scan cycle presents: lane and group of class ``scan``.
        scan_lane = Signal(max(1, clog2(P)), name="scan_lane")
        scan_group = Signal(max(1, p.group_addr_bits), name="scan_group")
        compare_lane = Signal(max(1, clog2(P)), name="compare_lane")
        m.d.sync += compare_lane.eq(scan_lane)
        # The current layer's program entry, and the upcoming layer's (the entry of the
        # cycle before's ``upcoming_layer``): a layer's first RUN loads ``layer`` and
        # ``entry`` from ``upcoming_layer`` and ``ahead``, registers a cycle away from the
        # program's multiplexers.
        entry = {name: Signal(width, name=f"current_{name}")
                 for name, width in entry_fields(ep).items()}
        ahead = {name: Signal(width, name=f"ahead_{name}")
                 for name, width in entry_fields(ep).items()}
        m.d.sync += [ahead[name].eq(getattr(self, name)) for name in ahead]

        in_phase = {ph: Signal(name=f"in_{ph.name.lower()}") for ph in EnginePhase}
        m.d.comb += [s.eq(eq_const(phase.as_value(), ph.value)) for ph, s in in_phase.items()]

        # Next-cycle values: the current ones unless a transition below changes them.
        nxt = dict(slot=Signal.like(slot, name="next_slot"),
                   row_tile=Signal.like(row_tile, name="next_row_tile"),
                   col_tile=Signal.like(col_tile, name="next_col_tile"))
        current = dict(slot=slot, row_tile=row_tile, col_tile=col_tile)
        for name, sig in nxt.items():
            m.d.comb += sig.eq(current[name])
            m.d.sync += current[name].eq(sig)
        # The first input of a row tile and output of a column tile (products with a
        # constant: no adder of mismatched widths).
        row_base = Signal(COUNT_BITS, name="engine_row_base")
        col_base = Signal(COUNT_BITS, name="engine_col_base")
        m.d.comb += [row_base.eq((row_tile * R)[:COUNT_BITS]),
                     col_base.eq((col_tile * C)[:COUNT_BITS])]

        issue = Signal(name="issue_run")
        accumulate = Signal(name="issue_accumulate")

        def run_next(*, tile_same_column):
            """Issue the next RUN: the next row tile, or the first of a column tile."""
            m.d.comb += issue.eq(1)
            m.d.sync += bank.eq(upcoming)
            if tile_same_column:
                m.d.comb += [accumulate.eq(1),
                             nxt["row_tile"].eq((row_tile + 1)[:len(row_tile)])]
            else:
                m.d.comb += [nxt["row_tile"].eq(0),
                             nxt["col_tile"].eq((col_tile + 1)[:len(col_tile)])]
            m.d.sync += phase.eq(EnginePhase.RUN)

        def first_run_of(bank_value, slot_value=None):
            """The state of a layer's first RUN (its bank is the entry's first bank; its
            layer and entry are loaded below)."""
            m.d.comb += [nxt["row_tile"].eq(0), nxt["col_tile"].eq(0)]
            m.d.sync += bank.eq(bank_value)
            if slot_value is not None:
                m.d.comb += nxt["slot"].eq(slot_value)

        live = Signal(len(scan), name="scan_live")          # classes of this column tile
        left = Signal(COUNT_BITS, name="scan_left")
        m.d.comb += [left.eq(entry["outputs"] - col_base),
                     live.eq(Mux(lt_const(left, C), left[:len(scan)], C))]
        last_row = (row_tile + 1)[:ProgramTileBits] == entry["row_tiles"]
        last_col = (col_tile + 1)[:ProgramTileBits] == entry["col_tiles"]
        # The flags and the next RUN's bank, from the state of the cycle before.
        at_last_row = Signal(name="engine_last_row")
        at_last_col = Signal(name="engine_last_col")
        scan_end = Signal(name="engine_scan_end")
        m.d.sync += [at_last_row.eq(last_row), at_last_col.eq(last_col)]
        m.d.comb += self.upcoming_layer.eq(Mux(busy & entry["binary"],
                                               (layer + 1)[:len(layer)], 0))
        m.d.sync += upcoming.eq(Mux(last_row & last_col, self.first_bank,
                                    (bank + 1)[:len(bank)]))
        # The next layer's entry is loaded while idle (entry 0, for a CLASSIFY), after the
        # last column tile of a binary layer and in the result write (entry 0, for the
        # next image): registered state only, not the bus's access or the RUN's end.
        next_layer = Signal(name="engine_next_layer")
        m.d.comb += next_layer.eq(in_phase[EnginePhase.IDLE] | in_phase[EnginePhase.RESULT]
                                  | in_phase[EnginePhase.CAPTURE] & at_last_col)
        with m.If(next_layer):
            m.d.sync += [layer.eq(self.upcoming_layer),
                         *(entry[name].eq(ahead[name]) for name in entry)]
        # A RUN issued with the bank ``upcoming`` (every issue but the image start's).
        bank_ahead = Signal(name="engine_bank_ahead")
        m.d.comb += bank_ahead.eq(in_phase[EnginePhase.RUN] & self.run_done & ~at_last_row
                                  | in_phase[EnginePhase.CAPTURE]
                                  | in_phase[EnginePhase.SCAN] & scan_end & ~at_last_col)

        with m.If(busy):
            m.d.sync += cycles.eq(Mux(cycles.all(), cycles, cycles + 1))
        with m.If(stop_now & busy):
            m.d.sync += stop.eq(1)

        with m.If(in_phase[EnginePhase.IDLE]):
            with m.If(classify):
                first_run_of(ahead["first_bank"], 0)
                m.d.sync += [busy.eq(1), phase.eq(EnginePhase.START), stop.eq(0),
                             count.eq(access.data[:count_bits]), results.eq(0), cycles.eq(0),
                             classes.eq(self.program_classes)]
                m.d.comb += self.started.eq(1)
        with m.Elif(in_phase[EnginePhase.START]):
            m.d.comb += issue.eq(1)
            m.d.sync += phase.eq(EnginePhase.RUN)
        with m.Elif(in_phase[EnginePhase.RUN]):
            m.d.comb += self.capture.eq(self.group_store & at_last_row & entry["binary"])
            with m.If(self.run_done):
                with m.If(~at_last_row):
                    run_next(tile_same_column=True)
                with m.Elif(entry["binary"]):
                    m.d.sync += phase.eq(EnginePhase.CAPTURE)
                with m.Else():
                    m.d.sync += [phase.eq(EnginePhase.SCAN), scan.eq(0), scan_lane.eq(0),
                                 scan_end.eq(~live.any()), scan_group.eq(0),
                                 neuron.eq(col_base[:len(neuron)])]
        with m.Elif(in_phase[EnginePhase.CAPTURE]):
            with m.If(~at_last_col):
                run_next(tile_same_column=False)
            with m.Else():
                first_run_of(upcoming)
                m.d.comb += [issue.eq(1), self.swap.eq(1)]
                m.d.sync += phase.eq(EnginePhase.RUN)
        with m.Elif(in_phase[EnginePhase.SCAN]):
            m.d.comb += self.scanning.eq(1)
            m.d.sync += [scan.eq(scan + 1), scan_end.eq((scan + 1)[:len(scan)] == live)]
            with m.If(eq_const(scan_lane, P - 1)):
                m.d.sync += [scan_lane.eq(0), scan_group.eq(scan_group + 1)]
            with m.Else():
                m.d.sync += scan_lane.eq(scan_lane + 1)
            with m.If(scan.any()):
                m.d.sync += neuron.eq(neuron + 1)
                m.d.comb += [self.compare.eq(1),
                             self.first.eq(~col_tile.any() & eq_const(scan, 1))]
            with m.If(scan_end):
                with m.If(~at_last_col):
                    run_next(tile_same_column=False)
                with m.Else():
                    m.d.sync += phase.eq(EnginePhase.RESULT)
        with m.Elif(in_phase[EnginePhase.RESULT]):
            m.d.comb += self.result_write.eq(1)
            m.d.sync += results.eq(results + 1)
            more = ult(slot + 1, count) & ~stop & ~stop_now
            with m.If(more):
                first_run_of(upcoming, (slot + 1)[:len(slot)])
                m.d.sync += phase.eq(EnginePhase.START)
            with m.Else():
                m.d.comb += self.finished.eq(1)
                m.d.sync += [busy.eq(0), phase.eq(EnginePhase.IDLE)]

        # The rows of the next RUN, a cycle ahead of its issue (from registered state:
        # the issue decisions come late in their cycle). In a RUN, the next one is the
        # next row tile of the column tile or, after the last, row tile 0 (of the next
        # column tile, layer or image); in the result write, the next image's; while
        # idle, slot 0's (for a CLASSIFY).
        image_row_tile = Signal(len(row_tile), name="image_row_tile")
        image_slot = Signal(len(slot), name="image_slot")
        m.d.comb += [
            image_row_tile.eq(Mux(in_phase[EnginePhase.RUN] & ~last_row,
                                  (row_tile + 1)[:len(row_tile)], 0)),
            image_slot.eq(Mux(in_phase[EnginePhase.IDLE], 0,
                              Mux(in_phase[EnginePhase.RESULT] & ult(slot + 1, count),
                                  (slot + 1)[:len(slot)], slot))),
            self.image_slot.eq(image_slot),
            self.image_row_tile.eq(image_row_tile[:len(self.image_row_tile)]),
            self.image_row_base.eq((image_row_tile * R)[:COUNT_BITS]),
        ]
        # The issued RUN's inputs: in a RUN the next row tile (of the same column tile),
        # else row tile 0; a layer's first RUN after a binary layer is the entry ahead's.
        run_row_tile = Signal(len(row_tile), name="run_row_tile")
        first_of_layer = in_phase[EnginePhase.CAPTURE] & at_last_col
        m.d.comb += [
            run_row_tile.eq(Mux(in_phase[EnginePhase.RUN], (row_tile + 1)[:len(row_tile)], 0)),
            self.row_tile.eq(run_row_tile[:len(self.row_tile)]),
            self.row_base.eq((run_row_tile * R)[:COUNT_BITS]),
            self.src.eq(Mux(first_of_layer, ahead["source"], entry["source"])),
            self.inputs_n.eq(Mux(first_of_layer, ahead["inputs"], entry["inputs"])),
        ]

        issued = Signal(name="run_issued")
        m.d.sync += issued.eq(issue)
        self.state = dict(busy=busy, phase=phase, layer=layer, row_tile=row_tile,
                          col_tile=col_tile, bank=bank, slot=slot, count=count, entry=entry,
                          ahead=ahead,
                          upcoming=upcoming, last_row=at_last_row, last_col=at_last_col,
                          scan=scan, scan_end=scan_end, issued=issued)
        # The RUN issued to the macro's sequencer, in place of the bus's access; INPUT
        # takes the planes it uses at the issue's edge.
        command = Signal(Cmd.BITS, name="issued_command")
        planes = Mux(first_of_layer, ahead["planes"], entry["planes"])
        m.d.comb += self.load_planes.eq(Cat(*(issue & ~lt_const(planes, b + 1)
                                              for b in range(p.input_bits))))
        m.d.comb += command.eq(Op.RUN | accumulate << Cmd.ACCUMULATE_BIT
                               | planes << Cmd.NPLANES_SHIFT)
        with m.If(issue):
            m.d.comb += [self.command_access.valid.eq(1), self.command_access.we.eq(1),
                         self.command_access.data.eq(command),
                         self.command_access.offset.eq(CSR.CMD),
                         self.command_access.regions.eq(1 << Region.CSR),
                         self.command_access.regs.eq(1 << CSR.CMD)]
        with m.Else():
            m.d.comb += self.command_access.eq(self.macro_access)

        m.d.comb += [
            self.bank.eq(Mux(busy, Mux(bank_ahead, upcoming, bank),
                             Mux(self.macro_busy, 0, self.bus_bank))),
            self.busy.eq(busy),
            self.col_tile.eq(col_tile[:len(self.col_tile)]),
            self.scan_group.eq(scan_group),
            self.lane.eq(compare_lane),
            self.neuron.eq(neuron),
            self.result_slot.eq(slot),
            self.classify_count.eq(count), self.results.eq(results),
            self.classes.eq(classes), self.engine_cycles.eq(cycles),
        ]
        return m


#: Width of a row or column tile index (ProgramWord.TILE_BITS).
ProgramTileBits = 13
