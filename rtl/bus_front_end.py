"""The macro's Wishbone slave: handshake, address decode, the checks of section 6 and the
error registers.

Every access (``cyc & stb`` with none in flight) is checked in its own cycle t with the
state of that cycle (BUSY). A faulty access is recorded in STATUS.error, ERRCODE and
ERRADDR (the first since they were cleared) and changes nothing else; an accepted one is
handed to the rest of the macro as an :func:`~rtl.access.access_layout` record in the
cycle it acts in: t, or t+2 from a decode registered twice
(:attr:`~rtl.pipeline_timing.PipelineTiming.acts_after`), in which case the first
registered decode is handed over too (``early``, t+1). ``ack`` follows
``p.bus_latency`` cycles after the access, with the read answer of the register file and
the memory port, unless the master abandoned the access by dropping ``cyc``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from models.params import BUS_DATA_BITS, CSR, GAIN_BITS, QSHIFT_BITS, Cmd, ErrCode, Region

from . import wishbone
from .access import REGION_COUNT, access_layout, offset_fields
from .logic import eq_const, lt_const, onehot, region_name, register
from .pipeline_timing import PipelineTiming
from .replicas import REPLICA_ATTR

__all__ = ["BusFrontEnd", "command_ok", "value_faults"]


class BusFrontEnd(wiring.Component):
    """Wishbone B4 classic slave side of the macro.

    Parameters
    ----------
    p : MacroParams

    Members
    -------
    wb : In(wishbone.Signature(p.addr_bits))
        The host bus.
    busy : In(1)
        STATUS.busy, for the BUSY check.
    clear_errors : In(1)
        Clears STATUS.error, ERRCODE and ERRADDR at the clock edge (a STATUS write with
        the ERROR bit; wins over a fault recorded in the same cycle).
    register_answer : In(32)
        The register file's read word (0 unless a register region is read).
    memory_answer : In(32)
        The memory port's read word.
    memory_answering : In(1)
        A memory region answers (the ack's answer is ``memory_answer``, else
        ``register_answer``); unused with a registered answer, where the memory word is
        already 0 unless a memory region answers.
    error : Out(1)
    errcode : Out(3)
    erraddr : Out(p.addr_bits)
        The error registers of section 6.
    request_offset : Out(p.region_shift)
        The offset of the bus address in the access cycle, before any check.
    early : Out(access_layout(p))
        Only when the access acts two cycles late: the access a cycle after it, decided
        (``valid`` is accepted) and registered once.
    access : Out(access_layout(p))
        The access in the cycle it acts in.
    access_acts : Out(1)
        With the activity counters: an access, faulty or abandoned ones included, in the
        cycle it acts in.
    early_input_data : Out(min(R, 32))
        With early write enables: the low bits of the written word in the acting cycle,
        from a register of their own loaded from the early record (the INPUT registers
        sit among the lane blocks they feed, far from the decode, and a data register
        shared with the other writes was a wire across the die).
    """

    def __init__(self, p):
        self._p = p
        self._timing = timing = PipelineTiming.of(p.pipeline)
        record = access_layout(p)
        members = {
            "wb": In(wishbone.Signature(p.addr_bits)),
            "busy": In(1),
            "clear_errors": In(1),
            "register_answer": In(BUS_DATA_BITS),
            "memory_answer": In(BUS_DATA_BITS),
            "memory_answering": In(1),
            "error": Out(1),
            "errcode": Out(3),
            "erraddr": Out(p.addr_bits),
            "request_offset": Out(p.region_shift),
            "access": Out(record),
        }
        if timing.acts_after:
            members["early"] = Out(record)
        if timing.early_write_enables:
            members["early_input_data"] = Out(p.chunk_rows)
        if p.counters:
            members["access_acts"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        p, timing, wb = self._p, self._timing, self.wb
        m = Module()
        latency = timing.bus_latency

        # An access is in flight from its cycle to its ack slot. A master that drops CYC
        # before the ack abandons it (section 6): the access was accepted in its first
        # cycle and is performed, since an L = 4 write lands later and cannot be undone;
        # only its ack is dropped. The slot still blocks the next access, so that
        # accesses act in order and a command accepted late cannot let a memory write
        # through while BUSY.
        access = Signal()
        ack_slot = Signal(name="bus_ack_slot")
        ack_live = Signal(name="bus_ack_live")     # CYC held from the access to here
        if latency == 1:
            m.d.comb += access.eq(wb.cyc & wb.stb & ~ack_slot)
            m.d.sync += ack_slot.eq(access)
            m.d.comb += ack_live.eq(ack_slot)
        else:
            pending = Signal(latency - 1, name="bus_pending")
            live = Signal(latency - 1, name="bus_live")
            m.d.comb += access.eq(wb.cyc & wb.stb & ~ack_slot & ~pending.any())
            m.d.sync += [pending.eq(Cat(access, pending[:-1])), ack_slot.eq(pending[-1]),
                         live.eq(Cat(access, live[:-1]) & wb.cyc.replicate(latency - 1)),
                         ack_live.eq(live[-1] & wb.cyc)]
        m.d.comb += wb.ack.eq(ack_live & wb.cyc)

        rs = p.region_shift
        offset = wb.adr[:rs]
        m.d.comb += self.request_offset.eq(offset)
        region_hit = onehot(m, wb.adr[rs:], 1 << (len(wb.adr) - rs), "region_hit")
        sizes = p.field_sizes()
        reg_hit = onehot(m, offset[:CSR.REG_BITS], 1 << CSR.REG_BITS, "reg_hit")
        csr_list = p.csrs()
        csr_valid = Cat(*(reg_hit[c["offset"]] for c in csr_list)).any()
        csr_ro = Cat(*(reg_hit[c["offset"]] for c in csr_list if c["access"] == "ro")).any()

        hit = {}
        for r in p.regions():
            fields, valid, pos = offset_fields(p, r["region"], offset), [], 0
            for field, width in reversed(r["fields"]):
                valid.append(lt_const(fields[field], sizes[field]))
                pos += width
            if pos < rs:
                valid.append(~offset[pos:].any())
            valid = Cat(*valid).all()
            if r["region"] == Region.CSR:
                valid = valid & csr_valid
            hit[r["region"]] = Signal(name=f"hit_{r['name'].lower()}")
            m.d.comb += hit[r["region"]].eq(region_hit[r["region"]] & valid)
        mapped = Cat(*hit.values()).any()
        memory_region = Cat(*(h for n, h in hit.items() if n != Region.CSR)).any()

        checks = self._checks(m, hit, reg_hit, mapped, memory_region, csr_ro)
        check_access, error_addr = access, wb.adr
        if timing.registered_checks:
            # Each check's outcome registered in cycle t (with the state of cycle t:
            # BUSY), the fault decided and recorded in t+1: the error registers and the
            # accepted bit then end a few levels after registers instead of after the
            # whole address decode.
            outcomes = register(m, Cat(*(cond for _, cond in checks)), "bus_checks_d")
            checks = [(c, outcomes[i]) for i, (c, _) in enumerate(checks)]
            check_access = register(m, access, "bus_access_d")
            error_addr = register(m, wb.adr, "bus_adr_d")
        fault = Signal()
        code = Signal(3)
        m.d.comb += fault.eq(Cat(*(cond for _, cond in checks)).any())
        with m.If(checks[0][1]):
            m.d.comb += code.eq(checks[0][0])
        for value, cond in checks[1:]:
            with m.Elif(cond):
                m.d.comb += code.eq(value)

        error = Signal(name="error")
        errcode = Signal(3, name="errcode")
        erraddr = Signal(p.addr_bits, name="erraddr")
        with m.If(check_access & fault & ~error):
            m.d.sync += [error.eq(1), errcode.eq(code), erraddr.eq(error_addr)]
        with m.If(self.clear_errors):
            m.d.sync += [error.eq(0), errcode.eq(0), erraddr.eq(0)]
        m.d.comb += [self.error.eq(error), self.errcode.eq(errcode), self.erraddr.eq(erraddr)]

        accepted = Signal()
        m.d.comb += accepted.eq(check_access & ~fault)
        record = dict(valid=accepted, we=wb.we, data=wb.dat_w, offset=offset, regs=reg_hit,
                      hit=hit)
        if timing.acts_after:
            # Cycle t+2 acts on copies of the decode registered twice. Nothing can tell:
            # the next access comes after the ack, and the error registers and the BUSY
            # check used cycle t's state. The first copies (t+1) are the early record.
            early = dict(valid=accepted, we=register(m, wb.we, "bus_we_d"),
                         data=register(m, wb.dat_w, "bus_dat_w_d"),
                         offset=register(m, offset, "bus_offset_d"),
                         regs=register(m, reg_hit, "reg_hit_d"),
                         hit={n: register(m, h, f"hit_{region_name(n)}_d") for n, h in hit.items()})
            self._drive(m, self.early, early)
            if timing.early_write_enables:
                input_data = Signal(p.chunk_rows, name="input_dat_w_d", attrs={REPLICA_ATTR: 1})
                m.d.sync += input_data.eq(early["data"][:p.chunk_rows])
                m.d.comb += self.early_input_data.eq(input_data)
            record = dict(valid=register(m, accepted, "bus_accepted_d"),
                          we=register(m, early["we"], "bus_we_2_d"),
                          data=register(m, early["data"], "bus_dat_w_2_d"),
                          offset=register(m, early["offset"], "bus_offset_2_d"),
                          regs=register(m, early["regs"], "reg_hit_2_d"),
                          hit={n: register(m, h, f"hit_{region_name(n)}_2_d")
                               for n, h in early["hit"].items()})
        self._drive(m, self.access, record)
        if p.counters:
            acts = check_access
            if timing.acts_after:
                acts = register(m, check_access, "bus_access_2_d")
            m.d.comb += self.access_acts.eq(acts)

        if timing.registered_answer:
            # The answer registered on its way out (with the ack), as one OR: the memory
            # word is 0 unless a memory region is read, the register word 0 unless a
            # register region is.
            m.d.sync += wb.dat_r.eq(self.memory_answer | self.register_answer)
        else:
            m.d.comb += wb.dat_r.eq(Mux(self.memory_answering, self.memory_answer,
                                        self.register_answer))
        return m

    def _checks(self, m, hit, reg_hit, mapped, memory_region, csr_ro):
        """The checks of section 6 in their order: (ERRCODE, condition) of cycle t."""
        p, wb = self._p, self.wb
        cmd_ok = command_ok(m, p, wb.dat_w)
        bad_value = Cat(*value_faults(p, wb.dat_w, hit, reg_hit)).any()

        busy_csr_write = reg_hit[CSR.CMD]
        if p.has("readout"):
            busy_csr_write = busy_csr_write | reg_hit[CSR.SAT] | reg_hit[CSR.QSHIFT]
        read_only = (hit[Region.ACC] | hit[Region.OUT] | hit[Region.CALFLAG]
                     | (hit[Region.CSR] & csr_ro))
        return [
            (ErrCode.BAD_SEL, wb.we & ~wb.sel.all()),
            (ErrCode.BAD_ADDRESS, ~mapped),
            (ErrCode.READ_ONLY, wb.we & read_only),
            (ErrCode.BUSY, self.busy & (memory_region | (wb.we & hit[Region.CSR] & busy_csr_write))),
            (ErrCode.BAD_COMMAND, wb.we & hit[Region.CSR] & reg_hit[CSR.CMD] & ~cmd_ok),
            (ErrCode.BAD_VALUE, wb.we & bad_value),
        ]

    @staticmethod
    def _drive(m, port, record):
        regions = [Const(0, 1)] * REGION_COUNT
        for number, h in record["hit"].items():
            regions[number] = h
        m.d.comb += [port.valid.eq(record["valid"]), port.we.eq(record["we"]),
                     port.data.eq(record["data"]), port.offset.eq(record["offset"]),
                     port.regs.eq(record["regs"]), port.regions.eq(Cat(*regions))]


def _sign_extends(dat_w, width):
    """``dat_w`` is the 32-bit sign extension of a ``width``-bit value."""
    if width >= BUS_DATA_BITS:
        return Const(1, 1)
    top = dat_w[width - 1:]
    return top.all() | ~top.any()


def command_ok(m, p, dat_w):
    """A CMD word ``dat_w`` the macro accepts (section 6, "CMD format"): opcode 1..3, no
    reserved bit, NPLANES in 0..B for a RUN and 0 (without ACCUMULATE) otherwise."""
    opcode = dat_w[:3]
    nplanes_field = dat_w[Cmd.NPLANES_SHIFT:Cmd.BITS]
    reserved = Cat(dat_w[3], dat_w[5:Cmd.NPLANES_SHIFT], dat_w[Cmd.BITS:]).any()
    cmd_ok = Signal()
    m.d.comb += cmd_ok.eq(
        (opcode[0] | opcode[1]) & ~opcode[2] & ~reserved
        & Mux(eq_const(opcode, 1), lt_const(nplanes_field, p.input_bits + 1),
              ~dat_w[Cmd.ACCUMULATE_BIT] & ~nplanes_field.any()))
    return cmd_ok


def value_faults(p, dat_w, hit, reg_hit):
    """The macro's BAD_VALUE conditions of a write of ``dat_w`` (THRESH, OFFSET, GAIN,
    TABLE, SAT, QSHIFT), given the region hits (by number) and the register hits."""
    W, A = p.readout_bits, p.acc_bits
    terms = [hit[Region.THRESH] & ~_sign_extends(dat_w, A)]
    if p.has("offset"):
        terms.append(hit[Region.OFFSET] & ~_sign_extends(dat_w, W))
    if p.has("gain"):
        terms.append(hit[Region.GAIN] & dat_w[GAIN_BITS:].any())
    if p.has("table"):
        terms.append(hit[Region.TABLE] & ~_sign_extends(dat_w, W))
    if p.has("readout"):
        # SAT <= M = 2^(W-1) - 1 and QSHIFT <= 15 are both "no bit above the field".
        terms += [hit[Region.CSR] & reg_hit[CSR.SAT] & dat_w[W - 1:].any(),
                  hit[Region.CSR] & reg_hit[CSR.QSHIFT] & dat_w[QSHIFT_BITS:].any()]
    return terms
