"""The macro's registers: the CSRs of region 0, INPUT, FLIP, OUT and CALFLAG, and the
register word a bus read returns (``docs/ARCHITECTURE.md`` section 6).

INPUT and FLIP are written by the bus, OUT and CALFLAG by the sequencer (a group of P
columns at a time), STATUS's flags by both (write-1-to-clear from the bus, set by the
sequencer's events). BUSY, CMD and CYCLES are the sequencer's, the error registers the
bus front end's: this file reads them for the register word.
"""

from amaranth.hdl import Cat, Const, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from models.energy import COUNTER_BITS
from models.params import BUS_DATA_BITS, CSR, QSHIFT_BITS, Cmd, Region, Status

from .access import access_layout, offset_fields
from .logic import eq_const, onehot, or_words, region_name, register, select
from .pipeline_timing import PipelineTiming
from .replicas import REPLICA_ATTR

__all__ = ["RegisterFile"]


class RegisterFile(wiring.Component):
    """CSRs, INPUT/FLIP/OUT/CALFLAG registers and the register read word.

    Parameters
    ----------
    p : MacroParams
    clear_done, load_inputs : bool
        The network engine's inputs (see ``clear_done``, ``load_planes`` below).
    answered_elsewhere : tuple of int
        CSR offsets whose reads never reach this file (a network engine's front end
        answers them): the read word leaves them out (default none).

    Members
    -------
    access : In(access_layout(p))
        The bus access in the cycle it acts in.
    early : In(access_layout(p))
        The access a cycle after it, when it acts two cycles late
        (``PipelineTiming.acts_after``): INPUT and FLIP write enables and the read
        selects are registered from it.
    early_input_data : In(min(R, 32))
        With early write enables: the written word for INPUT, from the bus front end's
        register of its own (loaded from the early record).
    busy, cmd, cycles : In
        The sequencer's BUSY, CMD (bits 11:0) and CYCLES, read back.
    error, errcode, erraddr : In
        The bus front end's error registers, read back.
    command_done : In(1)
        A command completes: STATUS.done := 1 (wins over a clear in the same cycle).
    set_acc_sat, set_cal_range : In(1)
        STATUS.acc_sat := 1 and STATUS.cal_range := 1.
    group : In(max(1, ceil(log2 G)))
        The sequencer's column group.
    out_groups, out_lanes, out_bits : In(G), In(P), In(P)
        OUT of group g := ``out_bits`` in the lanes of ``out_lanes``, where bit g of
        ``out_groups`` is set.
    calflag_groups, calflag_bits : In(G), In(P)
        CALFLAG of group g := ``calflag_bits`` where bit g of ``calflag_groups`` is set.
    inputs : Out(B * R)
        INPUT: plane b is bits ``[b R, (b + 1) R)``.
    group_flip : Out(P)
        The FLIP bits of the sequencer's group.
    sat : Out(W - 1), qshift : Out(4)
        Only when ``readout`` is built.
    done : Out(1)
        STATUS.done.
    clear_errors : Out(1)
        A STATUS write clears the error registers.
    read_word : Out(32)
        The register word of a bus read, for the ack's cycle (0 when the read is not of
        a register region).
    clear_counters : Out(1)
        With the activity counters: a STATUS write with bit CLEAR_COUNTERS.
    counters : In(4 * 32)
        With the activity counters: PLANE_OPS, CONVERSIONS, CAL_READS and BUS_ACCESSES,
        read back.
    clear_done : In(1)
        Only with ``clear_done``: STATUS.done := 0 (a network engine's CLASSIFY starts;
        ``command_done`` wins).
    load_planes : In(B), loaded_inputs : In(B * R)
        Only with ``load_inputs``: INPUT plane b := plane b of ``loaded_inputs`` where bit
        b of ``load_planes`` is set (a network engine's RUN leaves its inputs in INPUT).
    """

    def __init__(self, p, clear_done=False, load_inputs=False, answered_elsewhere=()):
        self._p = p
        self._clear_done = clear_done
        self._load_inputs = load_inputs
        self._answered_elsewhere = tuple(answered_elsewhere)
        self._timing = timing = PipelineTiming.of(p.pipeline)
        G, P = p.groups, p.cols_per_cycle
        members = {
            "access": In(access_layout(p)),
            "busy": In(1),
            "cmd": In(Cmd.BITS),
            "cycles": In(p.cycle_bits),
            "error": In(1),
            "errcode": In(3),
            "erraddr": In(p.addr_bits),
            "command_done": In(1),
            "set_acc_sat": In(1),
            "set_cal_range": In(1),
            "group": In(max(1, p.group_addr_bits)),
            "out_groups": In(G),
            "out_lanes": In(P),
            "out_bits": In(P),
            "calflag_groups": In(G),
            "calflag_bits": In(P),
            "inputs": Out(p.input_bits * p.rows),
            "group_flip": Out(P),
            "done": Out(1),
            "clear_errors": Out(1),
            "read_word": Out(BUS_DATA_BITS),
        }
        if timing.acts_after:
            members["early"] = In(access_layout(p))
        if timing.early_write_enables:
            members["early_input_data"] = In(p.chunk_rows)
        if p.has("readout"):
            members["sat"] = Out(p.readout_bits - 1, init=p.readout_max)
            members["qshift"] = Out(QSHIFT_BITS)
        if p.counters:
            members.update(clear_counters=Out(1), counters=In(4 * COUNTER_BITS))
        if clear_done:
            members["clear_done"] = In(1)
        if load_inputs:
            members.update(load_planes=In(p.input_bits),
                           loaded_inputs=In(p.input_bits * p.rows))
        super().__init__(members)

    def elaborate(self, platform):
        p, timing = self._p, self._timing
        C, B, P, G = p.cols, p.input_bits, p.cols_per_cycle, p.groups
        chunk_rows, chunks, words = p.chunk_rows, p.chunks, p.packed_words
        m = Module()
        m.submodules.read = reader = RegisterReadWord(p, self._answered_elsewhere)
        access = self.access
        dat_w = access.data
        write = Signal()
        m.d.comb += write.eq(access.valid & access.we)
        fields_of = {r["region"]: offset_fields(p, r["region"], access.offset) for r in p.regions()}

        def csr_write(reg):
            return write & access.regions[Region.CSR] & access.regs[reg]

        # One signal per bus word (or group) written as a unit: slices of one wide signal
        # would make Amaranth build a full-width assignment per slice, which is quadratic
        # in the macro size and dominated elaboration time at 256 x 256.
        input_regs = [[Signal(chunk_rows, name=f"input_{b}_{c}") for c in range(chunks)]
                      for b in range(B)]
        inputs = Cat(*(reg for plane_regs in input_regs for reg in plane_regs))
        flip_regs = [Signal(min(C, BUS_DATA_BITS * (j + 1)) - BUS_DATA_BITS * j, name=f"flip_{j}")
                     for j in range(words)]
        flip = Cat(*flip_regs)
        out_regs = [Signal(P, name=f"out_{g}") for g in range(G)]
        calflag_regs = [Signal(P, name=f"calflag_{g}") for g in range(G)]
        done = Signal(name="done")
        cal_range = Signal(name="cal_range")
        acc_sat = Signal(name="acc_sat")
        m.d.comb += [self.inputs.eq(inputs), self.done.eq(done)]

        # STATUS: write 1 to clear, the sequencer's events set (and win).
        status_write = csr_write(CSR.STATUS)
        m.d.comb += self.clear_errors.eq(status_write & dat_w[Status.ERROR])
        if p.counters:
            m.d.comb += self.clear_counters.eq(status_write & dat_w[Status.CLEAR_COUNTERS])
        with m.If(status_write):
            with m.If(dat_w[Status.DONE]):
                m.d.sync += done.eq(0)
            with m.If(dat_w[Status.ACC_SAT]):
                m.d.sync += acc_sat.eq(0)
        if self._clear_done:
            with m.If(self.clear_done):
                m.d.sync += done.eq(0)
        if p.has("readout"):
            sat = Signal(p.readout_bits - 1, init=p.readout_max, name="sat")
            qshift = Signal(QSHIFT_BITS, name="qshift")
            with m.If(csr_write(CSR.SAT)):
                m.d.sync += sat.eq(dat_w)
            with m.If(csr_write(CSR.QSHIFT)):
                m.d.sync += qshift.eq(dat_w)
            m.d.comb += [self.sat.eq(sat), self.qshift.eq(qshift)]
        with m.If(self.command_done):
            m.d.sync += done.eq(1)
        with m.If(self.set_acc_sat):
            m.d.sync += acc_sat.eq(1)
        with m.If(self.set_cal_range):
            m.d.sync += cal_range.eq(1)
        # An accepted command clears DONE, and CALIBRATE clears cal_range.
        with m.If(csr_write(CSR.CMD)):
            m.d.sync += done.eq(0)
            with m.If(eq_const(dat_w[:3], 2)):
                m.d.sync += cal_range.eq(0)

        # INPUT words (plane, chunk) and the packed FLIP words.
        def input_hits(fields):
            plane_hit = onehot(m, fields[Region.INPUT]["plane"], B, "input_plane_hit")
            chunk_hit = onehot(m, fields[Region.INPUT]["chunk"], chunks, "input_chunk_hit")
            return Cat(*(plane_hit[b] & chunk_hit[c] for b in range(B) for c in range(chunks)))

        input_enables = self._word_enables(m, Region.INPUT, input_hits, "input_write", fields_of)
        if timing.early_write_enables:
            input_dat_w = self.early_input_data
        else:
            input_dat_w = dat_w[:chunk_rows]
        for b in range(B):
            for c in range(chunks):
                with m.If(input_enables[b * chunks + c]):
                    m.d.sync += input_regs[b][c].eq(input_dat_w)
                if self._load_inputs:
                    lo = b * p.rows + c * chunk_rows
                    with m.If(self.load_planes[b]):
                        m.d.sync += input_regs[b][c].eq(self.loaded_inputs[lo:lo + chunk_rows])
        flip_enables = self._word_enables(
            m, Region.FLIP,
            lambda fields: onehot(m, fields[Region.FLIP]["word"], words, "flip_word_hit"),
            "flip_write", fields_of)
        for j in range(words):
            with m.If(flip_enables[j]):
                m.d.sync += flip_regs[j].eq(dat_w[:len(flip_regs[j])])

        # OUT and CALFLAG from the sequencer, a group at a time.
        for g in range(G):
            with m.If(self.out_groups[g]):
                m.d.sync += out_regs[g].eq((self.out_bits & self.out_lanes)
                                           | (out_regs[g] & ~self.out_lanes))
            with m.If(self.calflag_groups[g]):
                m.d.sync += calflag_regs[g].eq(self.calflag_bits)
        m.d.comb += self.group_flip.eq(select(m, self.group[:p.group_addr_bits],
                                              [flip[g * P:(g + 1) * P] for g in range(G)],
                                              P, "group_flip"))

        read = reader
        m.d.comb += [read.access.eq(access), read.cmd.eq(self.cmd), read.cycles.eq(self.cycles),
                     read.status.eq(Cat(self.busy, done, self.error, cal_range, acc_sat)),
                     read.errcode.eq(self.errcode), read.erraddr.eq(self.erraddr),
                     read.inputs.eq(inputs), read.flip.eq(flip), read.out.eq(Cat(*out_regs)),
                     read.calflag.eq(Cat(*calflag_regs)), self.read_word.eq(read.word)]
        if timing.acts_after:
            m.d.comb += read.early.eq(self.early)
        if p.has("readout"):
            m.d.comb += [read.sat.eq(sat), read.qshift.eq(qshift)]
        if p.counters:
            m.d.comb += read.counters.eq(self.counters)
        return m

    def _word_enables(self, m, number, hits, name, fields_of):
        """Per word of region ``number``, its register's write enable (``hits``: the
        word decode of an access's fields). Decoded from the early record and registered
        where the access acts two cycles late, so that each enable is a flip-flop."""
        p = self._p
        if not self._timing.early_write_enables:
            word_hits = hits(fields_of)
            selected = self.access.valid & self.access.we & self.access.regions[number]
            return selected.replicate(len(word_hits)) & word_hits
        early = self.early
        word_hits = hits({r["region"]: offset_fields(p, r["region"], early.offset)
                          for r in p.regions()})
        early_write = early.valid & early.we & early.regions[number]
        return register(m, early_write.replicate(len(word_hits)) & word_hits, f"{name}_d")



class RegisterReadWord(wiring.Component):
    """The register word of a bus read: the addressed CSR, or word of INPUT, FLIP, OUT or
    CALFLAG, for the ack's cycle (0 when the read is not of a register region).

    Without a pipeline the word is captured in the access cycle, a cycle later again with
    one (ack in t+2). Where the access acts two cycles late (ack in t+5), each region's
    word is an AND-OR of its items gated by one-hot selects registered from the early
    record (from the acting cycle's offset, the select's default, no item at that index,
    became a reset of the word register behind the whole decode), captured every cycle
    and gated by read flags registered from the early record.

    Parameters
    ----------
    p : MacroParams
    answered_elsewhere : tuple of int
        CSR offsets left out of the read word (their reads never reach it).

    Members
    -------
    access, early : In(access_layout(p))
        The access where it acts, and a cycle after it (``early``, when it acts two
        cycles late).
    cmd, status, errcode, erraddr, cycles, sat, qshift, counters : In
        The CSRs' values (STATUS: its five bits; SAT and QSHIFT when ``readout`` is
        built; the four activity counters when built).
    inputs : In(B * R)
    flip, out, calflag : In(C)
    word : Out(32)
    """

    def __init__(self, p, answered_elsewhere=()):
        self._p = p
        self._answered_elsewhere = tuple(answered_elsewhere)
        self._timing = timing = PipelineTiming.of(p.pipeline)
        C = p.cols
        members = {
            "access": In(access_layout(p)),
            "cmd": In(Cmd.BITS),
            "status": In(5),
            "errcode": In(3),
            "erraddr": In(p.addr_bits),
            "cycles": In(p.cycle_bits),
            "inputs": In(p.input_bits * p.rows),
            "flip": In(C),
            "out": In(C),
            "calflag": In(C),
            "word": Out(BUS_DATA_BITS),
        }
        if timing.acts_after:
            members["early"] = In(access_layout(p))
        if p.has("readout"):
            members.update(sat=In(p.readout_bits - 1), qshift=In(QSHIFT_BITS))
        if p.counters:
            members["counters"] = In(4 * COUNTER_BITS)
        super().__init__(members)

    def elaborate(self, platform):
        p, timing = self._p, self._timing
        R, B, C = p.rows, p.input_bits, p.cols
        chunk_rows, chunks, words, cb = p.chunk_rows, p.chunks, p.packed_words, p.chunk_addr_bits
        m = Module()
        access = self.access
        csr_values = {CSR.CMD: self.cmd, CSR.STATUS: self.status, CSR.ERRCODE: self.errcode,
                      CSR.ERRADDR: self.erraddr, CSR.CYCLES: self.cycles}
        for c in p.csrs():
            if c["access"] == "ro" and c["offset"] not in csr_values:
                csr_values[c["offset"]] = Const(c["reset"], 32)
        if p.has("readout"):
            csr_values[CSR.SAT] = self.sat
            csr_values[CSR.QSHIFT] = self.qshift
        if p.counters:
            for j, reg in enumerate((CSR.PLANE_OPS, CSR.CONVERSIONS, CSR.CAL_READS,
                                     CSR.BUS_ACCESSES)):
                csr_values[reg] = self.counters[j * COUNTER_BITS:(j + 1) * COUNTER_BITS]
        for reg in self._answered_elsewhere:
            csr_values.pop(reg, None)

        def packed(bits):
            padded = Cat(bits, Const(0, words * BUS_DATA_BITS - C))
            return [padded[BUS_DATA_BITS * j:BUS_DATA_BITS * (j + 1)] for j in range(words)]

        inputs = self.inputs
        input_words = {b << cb | c: inputs[b * R + c * chunk_rows:b * R + (c + 1) * chunk_rows]
                       for b in range(B) for c in range(chunks)}
        register_words = [
            (Region.CSR, ("reg",), csr_values, "csr_word"),
            (Region.FLIP, ("word",), packed(self.flip), "flip_word"),
            (Region.OUT, ("word",), packed(self.out), "out_word"),
            (Region.CALFLAG, ("word",), packed(self.calflag), "calflag_word"),
            (Region.INPUT, ("chunk", "plane"), input_words, "input_word"),
        ]
        if timing.acts_after:
            word = self._staged(m, register_words)
        else:
            fields_of = {r["region"]: offset_fields(p, r["region"], access.offset)
                         for r in p.regions()}
            selected = [(number, select(m, Cat(*(fields_of[number][n] for n in names)), items,
                                        BUS_DATA_BITS, name))
                        for number, names, items, name in register_words]
            word = Signal(BUS_DATA_BITS, name="register_rdata")
            with m.If(access.valid & ~access.we):
                for number, value in selected:
                    with m.If(access.regions[number]):
                        m.d.sync += word.eq(value)
            with m.Else():
                m.d.sync += word.eq(0)
            if timing.pipelined:
                # Everything answers a cycle later with a pipeline (ack in t+2).
                word = register(m, word, "register_rdata_q2")
        m.d.comb += self.word.eq(word)
        return m

    def _staged(self, m, register_words):
        """The staged register word (see the class docstring)."""
        p, early = self._p, self.early
        early_fields = {r["region"]: offset_fields(p, r["region"], early.offset)
                        for r in p.regions()}
        region_words = []
        for number, names, items, name in register_words:
            if not isinstance(items, dict):
                items = dict(enumerate(items))
            index = Cat(*(early_fields[number][n] for n in names))
            keys = sorted(items)
            selects = Signal(len(keys), name=f"{name}_select_d", attrs={REPLICA_ATTR: 1},
                             reset_less=True)
            m.d.sync += selects.eq(Cat(*(eq_const(index, key) for key in keys)))
            word = Signal(BUS_DATA_BITS, name=name)
            m.d.comb += word.eq(or_words(Cat(*(
                Cat(items[key], Const(0, BUS_DATA_BITS - len(Value.cast(items[key]))))
                & selects[j].replicate(BUS_DATA_BITS) for j, key in enumerate(keys))),
                len(keys), BUS_DATA_BITS))
            region_words.append((number, word))
        early_read = early.valid & ~early.we
        word_reads = register(m, Cat(*(early_read & early.regions[number]
                                       for number, _ in region_words)), "region_word_read_d")
        word_reads_q = Signal(len(region_words), name="region_word_read_q")
        m.d.sync += word_reads_q.eq(word_reads)
        gated = []
        for j, (number, value) in enumerate(region_words):
            word = Signal(BUS_DATA_BITS, name=f"{region_name(number)}_word_q", reset_less=True)
            m.d.sync += word.eq(value)
            gated.append(word & word_reads_q[j].replicate(BUS_DATA_BITS))
        read_word = Signal(BUS_DATA_BITS, name="register_rdata")
        m.d.sync += read_word.eq(or_words(Cat(*gated), len(gated), BUS_DATA_BITS))
        return read_word
