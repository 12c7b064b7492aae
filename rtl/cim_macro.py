"""Top of the generated macro: the Wishbone slave around the compute blocks.

Implements sections 5 and 6 of ``docs/ARCHITECTURE.md`` by wiring the components of
section 7; the golden model is ``models/macro.py: MacroModel``. Each part is a component
of its own:

* :class:`~rtl.bus_front_end.BusFrontEnd`: handshake, decode, checks, error registers;
  it hands the others the access record in the cycle the access acts in.
* :class:`~rtl.register_file.RegisterFile`: CSRs, INPUT/FLIP/OUT/CALFLAG, the register
  read word.
* :class:`~rtl.memory_port.MemoryBusPort`: the column memories, bus writes into them
  and the lane read path.
* :class:`~rtl.sequencer.Sequencer`: commands, phases, counters and lane strobes.
* :class:`~rtl.plane_select.PlaneSelect` (or :class:`~rtl.plane_select.BlockPlaneSelect`
  at L = 4): the input plane of each cycle.
* :class:`~rtl.lane_datapath.LaneDatapath`: compute array, shift-accumulate,
  batchnorm-binarize and the calibration FSM over the P lanes.
* :class:`~rtl.activity_counters.ActivityCounters` (when ``counters`` is built): the
  events the energy model counts.

Bus timing
    An access (``cyc & stb``) in cycle t is checked in cycle t and acts in cycle t (t+2
    at L = 4, from a decode registered twice, with the fault recorded in t+1); ``ack``
    and the read data follow in cycle t + ``p.bus_latency``: t+1, t+2 with a pipeline
    (L = 1..3), t+5 at L = 4. Memory writes land where the access acts (L = 0), a cycle
    later (L = 1..3) or two (L = 4). A master that drops ``cyc`` before the ack abandons
    the access: it is performed all the same and only its ack is dropped; the next
    access begins after the abandoned one's ack slot.
"""

from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect

from models.params import MacroParams

from . import wishbone
from .activity_counters import ActivityCounters
from .bus_front_end import BusFrontEnd
from .lane_datapath import LaneDatapath
from .memory_port import MemoryBusPort
from .pipeline_timing import PipelineTiming
from .plane_select import BlockPlaneSelect, PlaneSelect
from .register_file import RegisterFile
from .sequencer import Phase, Sequencer

__all__ = ["Phase", "CimMacro", "lane_controls", "connect_chip"]


class CimMacro(wiring.Component):
    """One generated CiM macro: a Wishbone B4 classic slave around the compute blocks.

    Parameters
    ----------
    p : MacroParams
        Every width, the register map and the non-idealities to build.

    Members
    -------
    wb : In(wishbone.Signature(p.addr_bits))
        Host bus (slave side). Every access is acknowledged ``p.bus_latency`` cycles
        after ``cyc & stb`` unless the master drops ``cyc`` first; faults are reported in
        STATUS, ERRCODE and ERRADDR.
    busy : Out(1)
        STATUS.busy: a command is executing.
    done : Out(1)
        STATUS.done: a command has finished since DONE was last cleared.
    error : Out(1)
        STATUS.error: a faulty access has happened since ERROR was last cleared.
    """

    def __init__(self, p):
        if not isinstance(p, MacroParams):
            raise TypeError(f"p must be a MacroParams, not {p!r}")
        self._p = p
        super().__init__({
            "wb": In(wishbone.Signature(p.addr_bits)),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
        })

    @property
    def params(self):
        """The :class:`MacroParams` this macro was built from."""
        return self._p

    def elaborate(self, platform):
        p = self._p
        timing = PipelineTiming.of(p.pipeline)
        m = Module()
        m.submodules.front = front = BusFrontEnd(p)
        m.submodules.registers = registers = RegisterFile(p)
        m.submodules.memories = memories = MemoryBusPort(p)
        m.submodules.sequencer = sequencer = Sequencer(p)
        m.submodules.lanes = lanes = LaneDatapath(p)
        if timing.copy_trees:
            m.submodules.planes = planes = BlockPlaneSelect(p)
        else:
            m.submodules.planes = planes = PlaneSelect(p)

        connect(m, wiring.flipped(self.wb), front.wb)
        for part in (registers, memories, sequencer):
            m.d.comb += part.access.eq(front.access)
            if timing.acts_after:
                m.d.comb += part.early.eq(front.early)
        m.d.comb += [
            self.busy.eq(sequencer.busy), self.done.eq(registers.done),
            self.error.eq(front.error),
            # front end
            front.busy.eq(sequencer.busy), front.clear_errors.eq(registers.clear_errors),
            front.register_answer.eq(registers.read_word),
            front.memory_answer.eq(memories.answer),
            front.memory_answering.eq(memories.answering),
            # register file
            registers.busy.eq(sequencer.busy), registers.cmd.eq(sequencer.cmd),
            registers.cycles.eq(sequencer.cycles), registers.group.eq(sequencer.group),
            registers.error.eq(front.error), registers.errcode.eq(front.errcode),
            registers.erraddr.eq(front.erraddr),
            registers.command_done.eq(sequencer.command_done),
            registers.set_acc_sat.eq(sequencer.set_acc_sat),
            registers.set_cal_range.eq(sequencer.set_cal_range),
            registers.out_groups.eq(sequencer.out_groups), registers.out_lanes.eq(sequencer.store),
            registers.out_bits.eq(lanes.out_bits),
            registers.calflag_groups.eq(sequencer.calflag_groups),
            registers.calflag_bits.eq(lanes.flags),
            # memories
            memories.request_offset.eq(front.request_offset),
            memories.busy.eq(sequencer.busy), memories.group.eq(sequencer.group),
            memories.comp_store.eq(sequencer.comp_store), memories.comp_result.eq(lanes.comp_result),
            memories.store.eq(sequencer.store), memories.acc_result.eq(lanes.acc_result),
            # sequencer
            sequencer.calibration_done.eq(lanes.calibration_done),
            sequencer.acc_saturated.eq(lanes.acc_saturated), sequencer.any_flag.eq(lanes.any_flag),
            # plane
            planes.inputs.eq(registers.inputs), lanes.plane.eq(planes.plane),
            # lanes
            *lane_controls(lanes, memories, sequencer, registers.group_flip),
        ]
        if timing.early_write_enables:
            m.d.comb += registers.early_input_data.eq(front.early_input_data)
        if timing.copy_trees:
            m.d.comb += [planes.select.eq(sequencer.plane_select),
                         lanes.plane_ones.eq(planes.plane_ones),
                         lanes.margin_capture_late.eq(sequencer.margin_capture_late)]
        else:
            m.d.comb += [planes.plane_next.eq(sequencer.plane_next),
                         planes.planes_next.eq(sequencer.planes_next)]
        connect_chip(m, p, front=front, registers=registers, memories=memories,
                     sequencer=sequencer, lanes=lanes)
        return m

def lane_controls(lanes, memories, sequencer, flip):
    """The lane datapath's words and strobes: the memories' words, ``flip`` (the group's
    FLIP bits) and the sequencer's controls (the plane and the non-idealities apart)."""
    return [
        lanes.weights.eq(memories.weights), lanes.comp_bits.eq(memories.comp_bits),
        lanes.theta.eq(memories.theta), lanes.acc.eq(memories.acc),
        lanes.flip.eq(flip),
        lanes.calibrating.eq(sequencer.calibrating),
        lanes.calibration_start.eq(sequencer.calibration_start),
        lanes.calibrated.eq(sequencer.calibrated),
        lanes.tile_clear.eq(sequencer.tile_clear), lanes.step.eq(sequencer.step),
        lanes.accumulate.eq(sequencer.accumulate), lanes.store.eq(sequencer.store),
        lanes.store_result.eq(sequencer.store_result),
    ]


def connect_chip(m, p, *, front, registers, memories, sequencer, lanes):
    """The parts that exist as ``p`` builds them: the pipelined margin capture, the
    non-ideality memories and registers, the activity counters and the transfer table."""
    if PipelineTiming.of(p.pipeline).pipelined:
        m.d.comb += lanes.margin_capture.eq(sequencer.margin_capture)
    for name in ("stuck_mask", "stuck_value", "offset", "gain"):
        if hasattr(lanes, name):
            m.d.comb += getattr(lanes, name).eq(getattr(memories, name))
    if p.has("readout"):
        m.d.comb += [lanes.sat.eq(registers.sat), lanes.qshift.eq(registers.qshift)]
    if p.counters:
        m.submodules.counters = counters = ActivityCounters(p)
        m.d.comb += [counters.plane_cycle.eq(sequencer.plane_cycle),
                     counters.calibration_read.eq(lanes.calibration_read),
                     counters.access.eq(front.access_acts),
                     counters.clear.eq(registers.clear_counters),
                     registers.counters.eq(Cat(counters.plane_operations,
                                               counters.column_conversions,
                                               counters.calibration_reads,
                                               counters.bus_accesses))]
    if p.has("table"):
        m.d.comb += [lanes.table_addr.eq(memories.table_addr),
                     lanes.table_wdata.eq(memories.table_wdata),
                     lanes.table_we.eq(memories.table_we),
                     memories.table_rdata.eq(lanes.table_rdata)]

