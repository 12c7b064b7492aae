"""The command sequencer: accepts RUN, CALIBRATE and CLEAR, steps through the column
groups and their phases, and drives the lanes' strobes (``docs/ARCHITECTURE.md``
section 5).

A command accepted in cycle t raises BUSY from cycle t+1. Per column group: RUN: a read
cycle (group address presented, tile cleared), p plane cycles (MSB plane first), L drain
cycles with a pipelined array (the shift-accumulator steps L cycles after each plane
cycle) and a write-back cycle (ACC, OUT, acc_sat); CALIBRATE: a read cycle (search
started), S search reads, the verification read (each lasting L + 1 cycles; COMP and
CALFLAG are taken from it) and the write-back slot; CLEAR: one cycle writing ACC and OUT
of the group to 0.

Strobes that reach every lane come from copies per block of lanes (``rtl/replicas.py``),
through two levels of copies where the macro acts two cycles after an access.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from models.params import CSR, Cmd, Region

from .access import access_layout
from .logic import clog2, eq_const, onehot
from .pipeline_timing import PipelineTiming
from .replicas import replicated

__all__ = ["Phase", "Sequencer"]


class Phase(enum.Enum, shape=3):
    """Step of the command sequencer within one column group.

    Members
    -------
    IDLE
        Not busy.
    READ
        RUN or CALIBRATE: the group's address is on every memory read port.
    PLANES
        RUN: one bit-plane per cycle, most significant first.
    SEARCH
        CALIBRATE: the S search reads, then the verification read.
    WRITE
        Write-back: RUN stores ACC and OUT; CALIBRATE has stored its results already.
    CLEAR
        CLEAR: ACC and OUT of the group to 0.
    DRAIN
        RUN with a pipelined array (``pipeline`` = L > 0): the L cycles after the last
        plane, in which the last L readouts reach the shift-accumulator.
    """
    IDLE = 0
    READ = 1
    PLANES = 2
    SEARCH = 3
    WRITE = 4
    CLEAR = 5
    DRAIN = 6


class Sequencer(wiring.Component):
    """Phases, counters and lane strobes of the macro's commands.

    Parameters
    ----------
    p : MacroParams
    run_end_ahead : bool
        Pipelined sequencers only: also ``run_ends_next`` (the network engine's bank
        choice, which must not wait for ``command_done``).

    Members
    -------
    access : In(access_layout(p))
        The bus access in the cycle it acts in (a CMD write starts a command).
    early : In(access_layout(p))
        The access a cycle after it, when it acts two cycles late: the command's lane
        copies and the first store enable of a CLEAR are loaded from it.
    calibration_done : In(1)
        The calibration FSM's verification read (its last cycle).
    acc_saturated : In(1)
        Some lane's accumulator saturated: in the write-back cycle, or (with copy
        trees) as the datapath's registered flags.
    any_flag : In(1)
        Some lane of the group is out of its compensation range (with the flags).
    busy : Out(1)
    cmd : Out(12)
        The last accepted command (bits 11:0).
    cycles : Out(p.cycle_bits)
        CYCLES: cycles the last command was busy.
    group : Out(max(1, ceil(log2 G)))
        The column group of the command.
    phase : Out(Phase)
    plane_cycle : Out(1)
        A plane cycle (of one group and one plane).
    plane_next : Out(max(1, ceil(log2 B)))
        The bit-plane of the next cycle, and ``planes_next``: the next cycle is a plane
        cycle.
    plane_select : Out(B)
        Copy trees only: a one-hot plane select two cycles ahead of the planes (bit b:
        plane b two cycles later; all zeros outside), for the blocks' plane registers.
    calibration_start : Out(1)
    calibrated : Out(1)
        The verification read of a group: the search's results are valid.
    calibrating : Out(P)
        Per lane: the array's compensation comes from the search.
    tile_clear, step, accumulate : Out(P)
        The shift-accumulator's controls, per lane.
    margin_capture, margin_capture_late : Out(P)
        With a pipeline: the threshold margin (and, with copy trees, the accumulator
        operand, then the margin a cycle later) are captured.
    store : Out(P)
        Per lane: ACC and OUT of the group are stored at the clock edge (with a pipeline,
        from copies computed a cycle ahead).
    store_result : Out(P)
        Per lane: what is stored is the RUN's result (else 0, a CLEAR).
    comp_store : Out(P)
        Per lane: the search's result is written to COMP (with a pipeline, in the
        write-back cycle from a registered result).
    out_groups, calflag_groups : Out(G)
        The group whose OUT, CALFLAG bits are written.
    command_done, set_acc_sat, set_cal_range : Out(1)
        STATUS events: the command completes, an accumulator saturated, a calibrated
        column is out of range.
    run_ends_next : Out(1)
        With ``run_end_ahead``: a RUN's ``command_done`` comes in the next cycle (its last
        DRAIN cycle before the last group's write-back), from registers only.
    """

    def __init__(self, p, *, run_end_ahead=False):
        self._p = p
        self._timing = timing = PipelineTiming.of(p.pipeline)
        if run_end_ahead and not timing.pipelined:
            raise ValueError(f"run_end_ahead needs a pipelined sequencer (pipeline 1..4), "
                             f"not pipeline {p.pipeline}")
        self._run_end_ahead = bool(run_end_ahead)
        P, G = p.cols_per_cycle, p.groups
        members = {
            "access": In(access_layout(p)),
            "calibration_done": In(1),
            "acc_saturated": In(1),
            "any_flag": In(1),
            "busy": Out(1),
            "cmd": Out(Cmd.BITS),
            "cycles": Out(p.cycle_bits),
            "group": Out(max(1, p.group_addr_bits)),
            "phase": Out(Phase),
            "plane_cycle": Out(1),
            "plane_next": Out(max(1, clog2(p.input_bits))),
            "planes_next": Out(1),
            "calibration_start": Out(1),
            "calibrated": Out(1),
            "calibrating": Out(P),
            "tile_clear": Out(P),
            "step": Out(P),
            "accumulate": Out(P),
            "store": Out(P),
            "store_result": Out(P),
            "comp_store": Out(P),
            "out_groups": Out(G),
            "calflag_groups": Out(G),
            "command_done": Out(1),
            "set_acc_sat": Out(1),
            "set_cal_range": Out(1),
        }
        if timing.pipelined:
            members["margin_capture"] = Out(P)
        if run_end_ahead:
            members["run_ends_next"] = Out(1)
        if timing.copy_trees:
            members.update(early=In(access_layout(p)),
                           plane_select=Out(p.input_bits), margin_capture_late=Out(P))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        r = self._registers(m)
        self._next_plane(m, r)
        self._command_copies(m, r)
        with m.If(r.busy):
            m.d.sync += r.busy_count.eq((r.busy_count + 1)[:self._p.cycle_bits])
        self._phases(m, r)
        self._steps(m, r)
        self._stores(m, r.in_phase, r.cmd_write, r.command_early, r.cmd_run, r.run_lanes,
                     r.group, r.last_group, r.drain_left, r.run_last_drain)
        with m.If(r.in_phase[Phase.WRITE]):
            self._next_group(m, r, Phase.READ)
        with m.Elif(r.in_phase[Phase.CLEAR]):
            self._next_group(m, r, Phase.CLEAR)
        self._flags(m, r)
        # Command acceptance (only while idle: a CMD write while busy is a BUSY error).
        with m.If(r.cmd_write):
            m.d.sync += [r.cmd.eq(self.access.data[:Cmd.BITS]), r.busy.eq(1),
                         r.busy_count.eq(0), r.group_reg.eq(0)]
            with m.If(eq_const(self.access.data[:3], 3)):
                m.d.sync += r.phase.eq(Phase.CLEAR)
            with m.Else():
                m.d.sync += r.phase.eq(Phase.READ)
        return m

    def _registers(self, m):
        """The CMD write, the sequencer's registers and their decodes (a namespace)."""
        p, timing = self._p, self._timing
        B, G, L = p.input_bits, p.groups, timing.stages
        gb, cycle_bits = p.group_addr_bits, p.cycle_bits
        r = _Registers()
        access = self.access
        r.cmd_write = Signal(name="cmd_write")
        m.d.comb += r.cmd_write.eq(access.valid & access.we & access.regions[Region.CSR]
                                   & access.regs[CSR.CMD])

        r.busy = Signal(name="busy")
        r.cmd = Signal(Cmd.BITS, name="cmd")
        r.cycles = Signal(cycle_bits, name="cycles")
        r.phase = Signal(Phase, name="phase")
        r.in_phase = {}
        for ph in Phase:
            r.in_phase[ph] = Signal(name=f"in_{ph.name.lower()}")
            m.d.comb += r.in_phase[ph].eq(eq_const(r.phase.as_value(), ph.value))
        # 1-bit minimum: Yosys writes a zero-width register as [-1:0] (ASCRANGE).
        r.group_reg = Signal(max(1, gb), name="group")
        r.group = r.group_reg[:gb]
        r.plane_bits = max(1, clog2(B))
        r.plane = Signal(r.plane_bits, name="plane")     # index of the current bit-plane
        # DRAIN cycles left after this one (pipelined arrays only).
        r.drain_left = Signal(max(1, clog2(L)), name="drain_left") if L else None
        r.busy_count = Signal(cycle_bits, name="busy_count")
        r.cmd_run = Signal(name="cmd_run")
        r.cmd_calibrate = Signal(name="cmd_calibrate")
        # Accepted commands have opcode 1, 2 or 3.
        m.d.comb += [r.cmd_run.eq(r.cmd[0] & ~r.cmd[1]), r.cmd_calibrate.eq(~r.cmd[0] & r.cmd[1])]
        # A RUN's last DRAIN cycle, the one before its group's write-back (pipelined only).
        r.run_last_drain = (r.in_phase[Phase.DRAIN] & ~r.drain_left.any() & r.cmd_run
                            if L else None)
        r.group_hit = onehot(m, r.group, G, "group_hit")
        r.last_group = eq_const(r.group, G - 1)
        m.d.comb += [self.busy.eq(r.busy), self.cmd.eq(r.cmd), self.cycles.eq(r.cycles),
                     self.group.eq(r.group_reg), self.phase.eq(r.phase),
                     self.out_groups.eq(r.group_hit),
                     self.plane_cycle.eq(r.in_phase[Phase.PLANES])]
        return r

    def _next_plane(self, m, r):
        """The plane of the next cycle, and whether it is a plane cycle (the plane select
        registers the plane a cycle ahead)."""
        B = self._p.input_bits
        in_phase, plane, plane_bits = r.in_phase, r.plane, r.plane_bits
        nplanes = r.cmd[Cmd.NPLANES_SHIFT:Cmd.BITS]
        plane_next = Signal(plane_bits, name="plane_next")
        planes_next = Signal(name="planes_next")
        m.d.comb += plane_next.eq(plane)
        with m.If(in_phase[Phase.READ] & r.cmd_run):
            m.d.comb += planes_next.eq(1)
            with m.If(nplanes.any()):
                m.d.comb += plane_next.eq((nplanes - 1)[:plane_bits])
            with m.Else():
                m.d.comb += plane_next.eq(B - 1)
        with m.Elif(in_phase[Phase.PLANES] & plane.any()):
            m.d.comb += [planes_next.eq(1), plane_next.eq((plane - 1)[:plane_bits])]
        m.d.sync += plane.eq(plane_next)
        m.d.comb += [self.plane_next.eq(plane_next), self.planes_next.eq(planes_next)]

    def _command_copies(self, m, r):
        """The command's ACCUMULATE bit and "the command is a RUN" (and, with copy trees,
        "a CALIBRATE"), loaded with CMD into one copy per block of lanes. With copy trees
        they are loaded in the early cycle through two levels: the blocks see the command
        in the read cycle, as the others do a cycle after the CMD write."""
        P = self._p.cols_per_cycle
        if self._timing.copy_trees:
            early = self.early
            r.command_early = Signal(name="early_cmd_write")
            m.d.comb += r.command_early.eq(early.valid & early.we & early.regions[Region.CSR]
                                           & early.regs[CSR.CMD])
            cmd_lanes = dict(enable=r.command_early, tree=True)
            cmd_data = early.data
        else:
            r.command_early = None
            cmd_lanes = dict(enable=r.cmd_write)
            cmd_data = self.access.data
        accumulate_lanes = replicated(m, cmd_data[Cmd.ACCUMULATE_BIT], P, "accumulate",
                                      **cmd_lanes)
        r.run_lanes = replicated(m, eq_const(cmd_data[:3], 1), P, "cmd_run", **cmd_lanes)
        m.d.comb += self.accumulate.eq(accumulate_lanes)
        if self._timing.copy_trees:
            m.d.comb += self.calibrating.eq(replicated(m, eq_const(cmd_data[:3], 2), P,
                                                       "cmd_calibrate", **cmd_lanes))
            self._plane_select(m, r.command_early, early.data, r.cmd,
                               r.run_last_drain & ~r.last_group)
        else:
            m.d.comb += self.calibrating.eq(r.cmd_calibrate.replicate(P))

    def _next_group(self, m, r, same_phase):
        """The end of a group's write-back or CLEAR cycle: the command's end after the
        last group, else the next group in ``same_phase``."""
        cycle_bits = self._p.cycle_bits
        with m.If(r.last_group):
            m.d.comb += self.command_done.eq(1)
            m.d.sync += [r.busy.eq(0), r.phase.eq(Phase.IDLE),
                         r.cycles.eq((r.busy_count + 1)[:cycle_bits])]
        with m.Else():
            m.d.sync += [r.group_reg.eq((r.group + 1)[:self._p.group_addr_bits]),
                         r.phase.eq(same_phase)]

    def _phases(self, m, r):
        """The transitions of the read, plane, drain and search phases."""
        L = self._timing.stages
        in_phase, drain_left = r.in_phase, r.drain_left
        # If chains on decoded phases rather than a Switch: Amaranth splits a Switch per
        # assigned signal, and a signal assigned in some phases only would get a case
        # statement without a default.
        r.clear_tile = Signal(name="clear_tile")
        r.calibrated = Signal(name="calibrated")
        with m.If(in_phase[Phase.READ]):
            with m.If(r.cmd_run):
                m.d.comb += r.clear_tile.eq(1)
                m.d.sync += r.phase.eq(Phase.PLANES)
            with m.Else():
                m.d.comb += self.calibration_start.eq(1)
                m.d.sync += r.phase.eq(Phase.SEARCH)
        with m.Elif(in_phase[Phase.PLANES]):
            with m.If(~r.plane.any()):
                if L:
                    m.d.sync += [drain_left.eq(L - 1), r.phase.eq(Phase.DRAIN)]
                else:
                    m.d.sync += r.phase.eq(Phase.WRITE)
        if L:
            with m.Elif(in_phase[Phase.DRAIN]):
                with m.If(drain_left.any()):
                    m.d.sync += drain_left.eq((drain_left - 1)[:len(drain_left)])
                with m.Else():
                    m.d.sync += r.phase.eq(Phase.WRITE)
        with m.Elif(in_phase[Phase.SEARCH]):
            # The FSM's verification read (its last cycle, with a pipeline) ends the search.
            with m.If(self.calibration_done):
                m.d.comb += r.calibrated.eq(1)
                m.d.sync += r.phase.eq(Phase.WRITE)
        m.d.comb += self.calibrated.eq(r.calibrated)
        if self._run_end_ahead:
            # The last DRAIN cycle goes to WRITE, which ends the command after the last
            # group (``_next_group``); the group changes only in WRITE.
            m.d.comb += self.run_ends_next.eq(r.run_last_drain & r.last_group)

    def _steps(self, m, r):
        """The shift-accumulator takes a plane's readout L cycles after the plane cycle;
        the last register of the delay is copied per block of lanes. With a pipeline the
        tile is cleared a cycle after the read cycle, from copies too: its first step
        comes L >= 1 cycles later still."""
        P, L = self._p.cols_per_cycle, self._timing.stages
        in_phase = r.in_phase
        step = in_phase[Phase.PLANES]
        for i in range(L):
            if i == L - 1:
                step = replicated(m, step, P, "step", suffix=f"_q{L}")
            else:
                step_q = Signal(name=f"step_q{i + 1}")
                m.d.sync += step_q.eq(step)
                step = step_q
        if L:
            m.d.comb += [self.step.eq(step),
                         self.tile_clear.eq(replicated(m, r.clear_tile, P, "tile_clear"))]
            # The threshold margin is captured while the planes run (the group's ACC and
            # THRESH words are valid from the first plane cycle on), from copies per
            # block of lanes a cycle after each plane cycle.
            m.d.comb += self.margin_capture.eq(replicated(m, in_phase[Phase.PLANES], P,
                                                          "margin_capture"))
        else:
            m.d.comb += [self.step.eq(step.replicate(P)),
                         self.tile_clear.eq(r.clear_tile.replicate(P))]
        if self._timing.copy_trees:
            planes_q = Signal(name="planes_q")
            m.d.sync += planes_q.eq(in_phase[Phase.PLANES])
            m.d.comb += self.margin_capture_late.eq(replicated(m, planes_q, P,
                                                               "margin_capture_late"))

    def _flags(self, m, r):
        """CALFLAG and cal_range take the FSM's flags in the verification read, or, in a
        pipelined macro, from the datapath's register in the write-back cycle (the flags
        come from the readout, and the OR over the lanes would follow it in one cycle);
        ACC_SAT the datapath's saturation flag."""
        G = self._p.groups
        in_phase = r.in_phase
        if self._timing.stages:
            flags_we = Signal(name="cal_flags_we")
            m.d.comb += flags_we.eq(in_phase[Phase.WRITE] & r.cmd_calibrate)
        else:
            flags_we = r.calibrated
        m.d.comb += [self.calflag_groups.eq(flags_we.replicate(G) & r.group_hit),
                     self.set_cal_range.eq(flags_we & self.any_flag)]
        if self._timing.copy_trees:
            # The datapath's flags are per lane into a register, then an OR per block.
            m.d.comb += self.set_acc_sat.eq(self.acc_saturated)
        else:
            m.d.comb += self.set_acc_sat.eq(in_phase[Phase.WRITE] & r.cmd_run
                                            & self.acc_saturated)

    def _plane_select(self, m, command_early, command_data, cmd, next_group_run):
        """The one-hot plane select of the blocks' plane registers: a shift register two
        cycles ahead of the planes, loaded with the command's first plane two cycles
        before a RUN's read cycle (in the cycle after the CMD write is accepted, or in
        the last DRAIN cycle of the previous group, ``next_group_run``), moving one plane
        down per cycle, so that it is all zeros outside plane cycles."""
        B = self._p.input_bits
        nplanes = slice(Cmd.NPLANES_SHIFT, Cmd.BITS)

        def first_plane(count):
            # NPLANES = n selects plane n - 1 first; 0 selects plane B - 1.
            return Cat(*(eq_const(count, b + 1) | (eq_const(count, 0) if b == B - 1
                                                   else Const(0, 1))
                         for b in range(B)))

        run_write = command_early & eq_const(command_data[:3], 1)
        # select(t) is the select of cycle t + 1: the blocks' copies are those of t.
        select = Signal(B, name="plane_select")
        with m.If(run_write):
            m.d.sync += select.eq(first_plane(command_data[nplanes]))
        with m.Elif(next_group_run):
            m.d.sync += select.eq(first_plane(cmd[nplanes]))
        with m.Else():
            m.d.sync += select.eq(Cat(select[1:], Const(0, 1)))
        m.d.comb += self.plane_select.eq(select)

    def _stores(self, m, in_phase, cmd_write, command_early, cmd_run, run_lanes, group,
                last_group, drain_left, run_last_drain):
        """ACC/OUT store lanes, what they store, and the COMP store of CALIBRATE."""
        p, timing = self._p, self._timing
        P, G = p.cols_per_cycle, p.groups
        if not timing.pipelined:
            # The write-back (or CLEAR) cycle stores the whole group; the search's results
            # go to COMP in the verification read.
            run_store = in_phase[Phase.WRITE] & cmd_run
            m.d.comb += [self.store.eq((run_store | in_phase[Phase.CLEAR]).replicate(P)),
                         self.store_result.eq(run_store.replicate(P)),
                         self.comp_store.eq(self.calibrated.replicate(P))]
            return
        # ACC and OUT are written from copies per block of lanes of a store enable
        # registered a cycle ahead (the cycle before a RUN's write-back is its last DRAIN
        # cycle; CLEAR cycles follow the CMD write or each other); the data is gated by
        # the RUN copies, so that CLEAR writes 0.
        cmd_clear = cmd_write & eq_const(self.access.data[:3], 3)
        if timing.copy_trees:
            # The same enable through two levels of copies, from the cycle before: the
            # cycle after next is a store cycle.
            store_ahead = Signal(name="store_ahead")
            terms = [in_phase[Phase.DRAIN] & eq_const(drain_left, 1) & cmd_run,
                     command_early & eq_const(self.early.data[:3], 3),
                     in_phase[Phase.CLEAR] & ~last_group & ~eq_const(group, G - 2)]
            if G >= 2:      # the CMD cycle itself precedes group 1's CLEAR cycle by two
                terms.append(cmd_clear)
            m.d.comb += store_ahead.eq(Cat(*terms).any())
            store_lanes = replicated(m, store_ahead, P, "acc_store", tree=True)
        else:
            store_next = Signal(name="store_next")
            m.d.comb += store_next.eq(run_last_drain | cmd_clear
                                      | (in_phase[Phase.CLEAR] & ~last_group))
            store_lanes = replicated(m, store_next, P, "acc_store")
        # The search's results are stored a cycle after the verification read (in the
        # write-back cycle, the group unchanged), from the datapath's register and
        # copies per block of lanes of the store enable.
        m.d.comb += [self.store.eq(store_lanes), self.store_result.eq(run_lanes),
                     self.comp_store.eq(replicated(m, self.calibrated, P, "comp_store"))]


class _Registers:
    """The registers and decodes :class:`Sequencer`'s parts share (attributes set as
    ``elaborate`` builds them)."""

