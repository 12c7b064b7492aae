"""Top of the network engine (docs/ENGINE.md): the macro's components around weight banks,
a layer program, an image buffer, activation buffers, a result buffer and the engine's
sequencer, behind one Wishbone slave with the engine's map.

The golden models are ``models/engine.py: EngineModel`` and ``models/engine_bus.py:
EngineBusModel``. The parts:

* :class:`~rtl.engine_front_end.EngineFrontEnd`: handshake, decode, checks, error
  registers, the CSRs the engine answers.
* The macro's :class:`~rtl.register_file.RegisterFile`, :class:`~rtl.sequencer.Sequencer`,
  :class:`~rtl.plane_select.PlaneSelect`, :class:`~rtl.lane_datapath.LaneDatapath` and
  :class:`~rtl.activity_counters.ActivityCounters` unchanged, and its
  :class:`~rtl.memory_port.MemoryBusPort` with WEIGHT and THRESH in ``weight_banks``
  banks (the bank above the column group in their addresses).
* :class:`~rtl.flip_banks.FlipBanks`: the banks' flips.
* :class:`~rtl.program_memory.ProgramMemory`: the layer program and its check.
* :class:`~rtl.image_buffer.ImageBuffer`, :class:`~rtl.activation_buffer.ActivationBuffer`:
  the inputs of each RUN.
* :class:`~rtl.result_buffer.ResultBuffer`: argmax, RESULT, LAST_ACC and LAST_SCORE.
* :class:`~rtl.engine_sequencer.EngineSequencer`: CLASSIFY.

Built for pipelines 0..3, fully parallel (P = C) or folded (P < C); L = 4 is refused by
the constructor. Bus timing (``EngineParams.acts_after``, ``bus_latency``): at L = 0 an
access is checked and acts in its cycle t and the ack follows in t + 1, as the macro's;
at L = 1..3 it acts in t + 1 from registers and the ack follows in t + 3.
"""

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect

from models.engine import ENGINE_PIPELINES, EngineParams

from . import wishbone
from .activation_buffer import ActivationBuffer
from .cim_macro import connect_chip, lane_controls
from .engine_front_end import OWN_CSRS, EngineFrontEnd
from .engine_sequencer import EngineSequencer
from .flip_banks import FlipBanks
from .image_buffer import ImageBuffer
from .lane_datapath import LaneDatapath
from .memory_port import MemoryBusPort
from .plane_select import PlaneSelect
from .program_memory import ProgramMemory, entry_fields
from .register_file import RegisterFile
from .result_buffer import ResultBuffer
from .sequencer import Sequencer

__all__ = ["CimEngine", "check_supported"]


def check_supported(ep):
    """Raise ``ValueError`` (one line) for parameters this RTL does not build."""
    if not isinstance(ep, EngineParams):
        raise TypeError(f"params must be an EngineParams, not {ep!r}")
    p = ep.macro
    if p.pipeline not in ENGINE_PIPELINES:
        raise ValueError(f"pipeline must be in {ENGINE_PIPELINES[0]}..{ENGINE_PIPELINES[-1]} "
                         f"for the engine, not {p.pipeline}")


class CimEngine(wiring.Component):
    """One network engine: a Wishbone B4 classic slave around a macro and its banks.

    Parameters
    ----------
    params : EngineParams
        The macro (pipeline 0..3) and the engine's capacity.
    held_until_ack : bool
        The bus master keeps its request from each access to the ack and never abandons
        one (:class:`~rtl.engine_front_end.EngineFrontEnd`): the board tops' masters.
    weights_in_block_ram : bool
        The weight banks in FPGA block RAM whatever their depth
        (:class:`~rtl.memory_port.MemoryBusPort`); needs ``held_until_ack``.

    Members
    -------
    wb : In(wishbone.Signature(params.addr_bits))
        Host bus (slave side), the engine's map (docs/ENGINE.md section 7); ack
        ``params.bus_latency`` cycles after ``cyc & stb`` unless the master drops ``cyc``
        first.
    busy : Out(1)
        STATUS.busy: a macro command or a CLASSIFY runs.
    done : Out(1)
        STATUS.done.
    error : Out(1)
        STATUS.error.
    """

    def __init__(self, params, held_until_ack=False, *, weights_in_block_ram=False):
        check_supported(params)
        if weights_in_block_ram and not held_until_ack:
            raise ValueError("weights_in_block_ram needs held_until_ack: a read that collides "
                             "with an abandoned write would be undefined")
        self._ep = params
        self._held = held_until_ack
        self._weights_in_block_ram = bool(weights_in_block_ram)
        super().__init__({
            "wb": In(wishbone.Signature(params.addr_bits)),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
        })

    @property
    def params(self):
        """The :class:`EngineParams` this engine was built from."""
        return self._ep

    def elaborate(self, platform):
        ep = self._ep
        p = ep.macro
        m = Module()
        m.submodules.front = front = EngineFrontEnd(ep, held_until_ack=self._held)
        m.submodules.registers = registers = RegisterFile(p, clear_done=True, load_inputs=True,
                                                          answered_elsewhere=OWN_CSRS)
        m.submodules.memories = memories = MemoryBusPort(
            p, banks=ep.weight_banks, weights_in_block_ram=self._weights_in_block_ram)
        m.submodules.flips = flips = FlipBanks(ep)
        m.submodules.sequencer = sequencer = Sequencer(p, run_end_ahead=bool(p.pipeline))
        m.submodules.lanes = lanes = LaneDatapath(p)
        m.submodules.planes = planes = PlaneSelect(p)
        m.submodules.program = program = ProgramMemory(ep)
        m.submodules.images = images = ImageBuffer(ep)
        m.submodules.activations = activations = ActivationBuffer(ep)
        m.submodules.results = results = ResultBuffer(ep)
        m.submodules.engine = engine = EngineSequencer(ep)

        connect(m, wiring.flipped(self.wb), front.wb)
        busy = engine.busy | sequencer.busy
        for part in (program, images, flips, results, engine):
            m.d.comb += part.access.eq(front.access)
        m.d.comb += [registers.access.eq(front.macro_access),
                     memories.access.eq(front.macro_access),
                     engine.macro_access.eq(front.macro_access),
                     sequencer.access.eq(engine.command_access)]
        m.d.comb += [
            self.busy.eq(busy), self.done.eq(registers.done), self.error.eq(front.error),
            # front end
            front.busy.eq(busy), front.clear_errors.eq(registers.clear_errors),
            front.program_ok.eq(program.program_ok), front.results.eq(engine.results),
            front.classes.eq(engine.classes), front.classify_count.eq(engine.classify_count),
            front.engine_cycles.eq(engine.engine_cycles),
            front.answer.eq(registers.read_word
                            | memories.answer & memories.answering.replicate(32)),
            front.engine_answer.eq(program.answer | images.answer | flips.answer
                                   | results.answer),
            # register file: STATUS.done for a CLASSIFY, not for each of its RUNs
            registers.busy.eq(busy), registers.cmd.eq(sequencer.cmd),
            registers.cycles.eq(sequencer.cycles), registers.group.eq(sequencer.group),
            registers.error.eq(front.error), registers.errcode.eq(front.errcode),
            registers.erraddr.eq(front.erraddr),
            registers.command_done.eq(sequencer.command_done & ~engine.busy | engine.finished),
            registers.clear_done.eq(engine.started),
            registers.load_planes.eq(engine.load_planes),
            registers.loaded_inputs.eq(activations.inputs),
            registers.set_acc_sat.eq(sequencer.set_acc_sat),
            registers.set_cal_range.eq(sequencer.set_cal_range),
            registers.out_groups.eq(sequencer.out_groups), registers.out_lanes.eq(sequencer.store),
            registers.out_bits.eq(lanes.out_bits),
            registers.calflag_groups.eq(sequencer.calflag_groups),
            registers.calflag_bits.eq(lanes.flags),
            # banks
            memories.request_offset.eq(front.macro_access.offset),
            memories.busy.eq(busy),
            memories.group.eq(Mux(engine.scanning, engine.scan_group, sequencer.group)),
            memories.bank.eq(engine.bank), flips.bank.eq(engine.bank),
            flips.group.eq(sequencer.group),
            memories.comp_store.eq(sequencer.comp_store), memories.comp_result.eq(lanes.comp_result),
            memories.store.eq(sequencer.store), memories.acc_result.eq(lanes.acc_result),
            # macro sequencer
            sequencer.calibration_done.eq(lanes.calibration_done),
            sequencer.acc_saturated.eq(lanes.acc_saturated), sequencer.any_flag.eq(lanes.any_flag),
            # engine sequencer
            engine.run_done.eq(sequencer.command_done), engine.macro_busy.eq(sequencer.busy),
            *([engine.run_ends_next.eq(sequencer.run_ends_next)] if p.pipeline else []),
            engine.group_store.eq(sequencer.store[0]), engine.group.eq(sequencer.group),
            engine.bus_bank.eq(front.bank), engine.program_classes.eq(program.classes),
            program.layer.eq(engine.upcoming_layer),
            *(getattr(engine, name).eq(getattr(program, name)) for name in entry_fields(ep)),
            # inputs of each RUN: the image's rows or the activations, masked past n_in
            images.busy.eq(engine.busy), images.slot.eq(engine.image_slot),
            images.row_base.eq(engine.image_row_base), images.row_tile.eq(engine.image_row_tile),
            activations.capture.eq(engine.capture), activations.col_tile.eq(engine.col_tile),
            activations.group.eq(sequencer.group),
            activations.out_bits.eq(lanes.out_bits), activations.swap.eq(engine.swap),
            activations.source.eq(engine.src), activations.inputs_n.eq(engine.inputs_n),
            activations.row_base.eq(engine.row_base), activations.row_tile.eq(engine.row_tile),
            activations.image_rows.eq(images.rows),
            planes.plane_next.eq(sequencer.plane_next), planes.planes_next.eq(sequencer.planes_next),
            lanes.plane.eq(planes.plane),
            # results
            results.compare.eq(engine.compare), results.first.eq(engine.first),
            results.lane.eq(engine.lane), results.neuron.eq(engine.neuron),
            results.acc_lanes.eq(memories.acc), results.corr_lanes.eq(memories.theta),
            results.result_write.eq(engine.result_write), results.slot.eq(engine.result_slot),
            # lanes
            *lane_controls(lanes, memories, sequencer, flips.flip),
        ]
        # INPUT: written by the bus for a RUN through CMD, loaded by each RUN a CLASSIFY
        # issues.
        m.d.comb += planes.inputs.eq(registers.inputs)
        connect_chip(m, p, front=front, registers=registers, memories=memories,
                     sequencer=sequencer, lanes=lanes)
        return m
