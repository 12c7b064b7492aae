"""The network engine's Wishbone slave: handshake, the decode of the engine's map (a 5-bit
region field, a 6-bit CSR field), the checks of docs/ENGINE.md section 7 in their order,
the error registers, and the CSRs only the engine answers.

An access (``cyc & stb`` with none in flight) seen in cycle t is checked and acts in
t + ``acts_after`` (``EngineParams``): in t at L = 0; at L = 1..3 in t + 1, from
registers that hold its address, data and what they alone decide (the hits and the
checks of the access alone), so that no bus-written register waits on the whole decode
and check chain of the bridge's address in one cycle. The checks that the engine's
state decides too (BUSY, NO_RESULT, BAD_PROGRAM) are made in the acting cycle. ``ack``
follows in t + ``bus_latency`` (1 at L = 0, 3 at L = 1..3; the engine is not built at
L = 4) with the answer of the macro's parts (``answer``), of the engine's parts
(``engine_answer``, ready a cycle after the acting cycle and delayed here to the ack) or
of this file's CSR word, each 0 unless it answers. The accepted access is handed on
twice: as the engine's record (:func:`engine_access_layout`, every region and CSR of the
engine) and as the macro's record (:func:`rtl.access.access_layout`, what the macro's
register file, memory port and sequencer act on: the macro's regions with the macro's
offset, the FLIP region and the CSRs the engine answers masked off).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from models.engine_params import (ENGINE_REG_BITS, ENGINE_REGION_BITS, EngineCSR, EngineRegion,
                                  ProgramWord)
from models.params import BUS_DATA_BITS, CSR, EngineErrCode, Region

from . import wishbone
from .access import REGION_COUNT, access_layout
from .bus_front_end import command_ok, handshake, value_faults
from .logic import clog2, lt_const, onehot, register, select, ult
from .pipeline_timing import PipelineTiming

__all__ = ["engine_access_layout", "engine_fields", "EngineFrontEnd", "OWN_CSRS",
           "ERRCODE_BITS", "COUNT_BITS"]

#: ERRCODE of the engine: codes up to BAD_PROGRAM = 8.
ERRCODE_BITS = 4
#: Width of an image count (CLASSIFY, RESULTS) and of a layer width (up to 65536).
COUNT_BITS = 17
#: The macro's CSRs whose value the engine's differs from (answered here).
OWN_CSRS = (CSR.ID, CSR.VERSION, CSR.REGION_SHIFT, CSR.ERRCODE, CSR.ERRADDR)
#: Engine CSRs whose value changes (the rest are the constants of ``EngineParams.csrs()``).
_LIVE = (EngineCSR.CLASSIFY, EngineCSR.RESULTS, EngineCSR.ENGINE_CYCLES)
#: The regions of WEIGHT, THRESH and FLIP that carry a bank field.
BANKED = (Region.WEIGHT, Region.THRESH, Region.FLIP)


def engine_access_layout(ep):
    """The record of one access of an engine with parameters ``ep``.

    Members
    -------
    valid : 1
        The access passed every check and acts in this cycle.
    we : 1
    data : 32
    offset : ``ep.region_shift``
    regions : 32
        Bit ``n``: the access hits a word of region ``n`` (every field within its size).
    regs : 64
        Bit ``n``: the CSR field (the low 6 offset bits) is ``n``.
    """
    return data.StructLayout({
        "valid": unsigned(1),
        "we": unsigned(1),
        "data": unsigned(BUS_DATA_BITS),
        "offset": unsigned(ep.region_shift),
        "regions": unsigned(1 << ENGINE_REGION_BITS),
        "regs": unsigned(1 << ENGINE_REG_BITS),
    })


def engine_fields(ep, region, offset):
    """The address fields of engine region ``region`` in ``offset``, by name (slices)."""
    for r in ep.regions():
        if r["region"] == region:
            fields, pos = {}, 0
            for name, width in reversed(r["fields"]):
                fields[name] = offset[pos:pos + width]
                pos += width
            return fields
    raise ValueError(f"region {region} is not in the engine's map")


def program_word_faults(ep, part_hit, dat_w):
    """The BAD_VALUE rule of a PROGRAM write (docs/ENGINE.md, "Program memory"), given
    the one-hot ``part`` of the access: a word outside its part's ranges."""
    W, banks, B = ProgramWord, ep.weight_banks, ep.macro.input_bits

    def count_in(value, hi):        # 1 <= value <= hi
        return value.any() & lt_const(value, hi + 1)

    width = count_in(dat_w, ep.max_width)
    rows, cols = dat_w[:W.TILE_BITS], dat_w[W.COL_TILES_SHIFT:W.COL_TILES_SHIFT + W.TILE_BITS]
    tiles = (~dat_w[W.TILE_BITS:W.COL_TILES_SHIFT].any()
             & ~dat_w[W.COL_TILES_SHIFT + W.TILE_BITS:].any()
             & count_in(rows, banks) & count_in(cols, banks))
    planes = dat_w[W.PLANES_SHIFT:W.PLANES_SHIFT + W.PLANES_BITS]
    mode = (~dat_w[W.FIRST_BANK_BITS:W.PLANES_SHIFT].any()
            & ~dat_w[W.PLANES_SHIFT + W.PLANES_BITS:W.SOURCE_BIT].any()
            & ~dat_w[W.BINARY_BIT + 1:].any()
            & lt_const(dat_w[:W.FIRST_BANK_BITS], banks) & count_in(planes, B))
    return ((part_hit[W.INPUTS] | part_hit[W.OUTPUTS]) & ~width
            | part_hit[W.TILES] & ~tiles | part_hit[W.MODE] & ~mode)


class EngineFrontEnd(wiring.Component):
    """Wishbone B4 classic slave side of the network engine.

    Parameters
    ----------
    ep : EngineParams
    held_until_ack : bool
        The master keeps ``adr``, ``dat_w`` and ``we`` from each access to its ack and
        never drops ``cyc`` before it (the board's UART bridge, chip image writer and
        register slices do): at L = 1..3 the access then acts on them in its acting
        cycle instead of on copies registered here. Default ``False``: the copies, so
        that an access abandoned at once is still performed as it was presented.

    Members
    -------
    wb : In(wishbone.Signature(ep.addr_bits))
        The host bus.
    busy : In(1)
        STATUS.busy (a macro command or a CLASSIFY runs), for the BUSY check.
    clear_errors : In(1)
        Clears the error registers at the clock edge (a STATUS write with ERROR).
    program_ok : In(1)
        The layer program passes CLASSIFY's checks (else BAD_PROGRAM).
    results : In(17)
        RESULTS: RESULT slots at or above it are NO_RESULT, and LAST_* before any.
    classes : In(17)
        The last CLASSIFY's classes: LAST_* neurons at or above it are NO_RESULT.
    classify_count : In(17), engine_cycles : In(32)
        CLASSIFY and ENGINE_CYCLES, read back (RESULTS too).
    answer : In(32)
        The read word of the macro's parts for the ack's cycle (0 unless one answers).
    engine_answer : In(32)
        The read word of the engine's parts a cycle after the access (0 unless one
        answers).
    error : Out(1)
    errcode : Out(4)
    erraddr : Out(ep.addr_bits)
        The error registers.
    access : Out(engine_access_layout(ep))
        The access in the cycle it acts in.
    macro_access : Out(access_layout(ep.macro))
        The same access as the macro's parts see it.
    bank : Out(max(1, ceil(log2 weight_banks)))
        The bank field of a WEIGHT, THRESH or FLIP access.
    access_acts : Out(1)
        With the activity counters: an access, faulty or abandoned ones included.
    """

    def __init__(self, ep, held_until_ack=False):
        if PipelineTiming.of(ep.macro.pipeline).acts_after:
            raise ValueError(f"pipeline must be in 0..3 for the engine, not {ep.macro.pipeline}")
        self._ep = ep
        self._held = bool(held_until_ack)
        super().__init__({
            "wb": In(wishbone.Signature(ep.addr_bits)),
            "busy": In(1),
            "clear_errors": In(1),
            "program_ok": In(1),
            "results": In(COUNT_BITS),
            "classes": In(COUNT_BITS),
            "classify_count": In(COUNT_BITS),
            "engine_cycles": In(BUS_DATA_BITS),
            "answer": In(BUS_DATA_BITS),
            "engine_answer": In(BUS_DATA_BITS),
            "error": Out(1),
            "errcode": Out(ERRCODE_BITS),
            "erraddr": Out(ep.addr_bits),
            "access": Out(engine_access_layout(ep)),
            "macro_access": Out(access_layout(ep.macro)),
            "bank": Out(max(1, clog2(ep.weight_banks))),
            **({"access_acts": Out(1)} if ep.macro.counters else {}),
        })

    def elaborate(self, platform):
        ep, p, wb = self._ep, self._ep.macro, self.wb
        m = Module()

        # The handshake (a master that drops CYC abandons its access) with the engine's
        # latency; the access is checked and acts ``ep.acts_after`` cycles after it is seen.
        seen = handshake(m, wb, ep.bus_latency)
        decoded = self._decode(m, wb)
        if ep.acts_after:
            held = ("adr", "data", "we") if self._held else ()
            decoded = {name: value if name in held else register(m, value, f"decoded_{name}")
                       for name, value in decoded.items()}
            acting = register(m, seen, "access_acting")
        else:
            acting = seen
        if p.counters:
            m.d.comb += self.access_acts.eq(acting)
        self._act(m, acting, decoded)
        return m

    def _decode(self, m, wb):
        """What the access's address, data, ``we`` and ``sel`` alone decide: the hits, the
        checks that depend on nothing else, and the conditions of the others."""
        ep, p = self._ep, self._ep.macro
        rs = ep.region_shift
        offset = wb.adr[:rs]
        region_hit = onehot(m, wb.adr[rs:], 1 << ENGINE_REGION_BITS, "region_hit")
        reg_hit = onehot(m, offset[:ENGINE_REG_BITS], 1 << ENGINE_REG_BITS, "reg_hit")
        csrs = ep.csrs()
        csr_valid = Cat(*(reg_hit[c["offset"]] for c in csrs)).any()
        csr_ro = Cat(*(reg_hit[c["offset"]] for c in csrs if c["access"] == "ro")).any()
        sizes = ep.field_sizes()
        hit, fields_of = {}, {}
        for r in ep.regions():
            fields = fields_of[r["region"]] = engine_fields(ep, r["region"], offset)
            valid = [lt_const(fields[name], sizes[name]) for name, _ in r["fields"]]
            if r["offset_bits"] < rs:
                valid.append(~offset[r["offset_bits"]:].any())
            valid = Cat(*valid).all()
            if r["region"] == Region.CSR:
                valid = valid & csr_valid
            hit[r["region"]] = Signal(name=f"hit_{r['name'].lower()}")
            m.d.comb += hit[r["region"]].eq(region_hit[r["region"]] & valid)
        csr = hit[Region.CSR]
        dat_w, we = wb.dat_w, wb.we

        part_hit = onehot(m, fields_of[EngineRegion.PROGRAM]["part"], 4, "program_part_hit")
        classify = csr & reg_hit[EngineCSR.CLASSIFY]
        bad_value = Cat(*value_faults(p, dat_w, hit, reg_hit),
                        hit[EngineRegion.PROGRAM] & program_word_faults(ep, part_hit, dat_w),
                        classify & ~(dat_w.any() & lt_const(dat_w, ep.image_slots + 1))).any()
        busy_csr_write = Cat(*(reg_hit[r] for r in (CSR.CMD, CSR.SAT, CSR.QSHIFT,
                                                      EngineCSR.CLASSIFY))).any()
        memory_region = Cat(*(h for n, h in hit.items()
                              if n not in (Region.CSR, EngineRegion.RESULT))).any()
        read_only = Cat(*(hit[r["region"]] for r in ep.regions() if r["access"] == "ro"),
                        csr & csr_ro).any()
        own = Cat(*(reg_hit[r] for r in OWN_CSRS)).any()
        bank = Const(0, len(self.bank))
        for n in BANKED:
            bank = Mux(region_hit[n], fields_of[n]["bank"], bank)
        return {
            "adr": wb.adr, "we": we, "data": dat_w,
            "regions": Cat(*(hit.get(n, Const(0, 1)) for n in range(1 << ENGINE_REGION_BITS))),
            "regs": reg_hit,
            "bank": bank,
            # The checks of section 7 that the access alone decides.
            "bad_sel": we & ~wb.sel.all(),
            "unmapped": ~Cat(*hit.values()).any(),
            "read_only": we & read_only,
            "bad_command": we & csr & reg_hit[CSR.CMD] & ~command_ok(m, p, dat_w),
            "bad_value": we & bad_value,
            # The access's part in the checks that the engine's state decides too.
            "waits_for_idle": memory_region | (we & csr & busy_csr_write),
            "result_read": ~we & hit[EngineRegion.RESULT],
            "last_read": ~we & (hit[EngineRegion.LAST_ACC] | hit[EngineRegion.LAST_SCORE]),
            "classify": we & classify,
            "macro_csr": csr & ~offset[CSR.REG_BITS] & ~own,
            "csr_read": ~we & csr,
        }

    def _act(self, m, acting, decoded):
        """The checks, the error registers and the access records in the acting cycle."""
        ep, p, wb = self._ep, self._ep.macro, self.wb
        rs = ep.region_shift
        adr, we, dat_w = decoded["adr"], decoded["we"], decoded["data"]
        offset = adr[:rs]

        # NO_RESULT: a RESULT slot not classified yet, LAST_* before any image or beyond
        # the classes.
        slot = engine_fields(ep, EngineRegion.RESULT, offset)["image_slot"]
        neuron = engine_fields(ep, EngineRegion.LAST_ACC, offset)["neuron"]
        no_result = (decoded["result_read"] & ~ult(slot, self.results)
                     | decoded["last_read"] & (~self.results.any()
                                               | ~ult(neuron, self.classes)))
        checks = [
            (EngineErrCode.BAD_SEL, decoded["bad_sel"]),
            (EngineErrCode.BAD_ADDRESS, decoded["unmapped"]),
            (EngineErrCode.READ_ONLY, decoded["read_only"]),
            (EngineErrCode.BUSY, self.busy & decoded["waits_for_idle"]),
            (EngineErrCode.BAD_COMMAND, decoded["bad_command"]),
            (EngineErrCode.BAD_VALUE, decoded["bad_value"]),
            (EngineErrCode.NO_RESULT, no_result),
            (EngineErrCode.BAD_PROGRAM, decoded["classify"] & ~self.program_ok),
        ]
        fault = Signal()
        code = Signal(ERRCODE_BITS)
        m.d.comb += fault.eq(Cat(*(cond for _, cond in checks)).any())
        with m.If(checks[0][1]):
            m.d.comb += code.eq(checks[0][0])
        for value, cond in checks[1:]:
            with m.Elif(cond):
                m.d.comb += code.eq(value)

        error = Signal(name="error")
        errcode = Signal(ERRCODE_BITS, name="errcode")
        erraddr = Signal(ep.addr_bits, name="erraddr")
        with m.If(acting & fault & ~error):
            m.d.sync += [error.eq(1), errcode.eq(code), erraddr.eq(adr)]
        with m.If(self.clear_errors):
            m.d.sync += [error.eq(0), errcode.eq(0), erraddr.eq(0)]
        m.d.comb += [self.error.eq(error), self.errcode.eq(errcode), self.erraddr.eq(erraddr)]

        accepted = Signal()
        m.d.comb += accepted.eq(acting & ~fault)
        regions, reg_hit = decoded["regions"], decoded["regs"]
        m.d.comb += [self.access.valid.eq(accepted), self.access.we.eq(we),
                     self.access.data.eq(dat_w), self.access.offset.eq(offset),
                     self.access.regions.eq(regions), self.access.regs.eq(reg_hit)]

        # The macro's view: its own CSRs (not those answered here), its regions but FLIP.
        macro_regions = [decoded["macro_csr"] if n == Region.CSR else
                         Const(0, 1) if n == Region.FLIP else regions[n]
                         for n in range(REGION_COUNT)]
        m.d.comb += [self.macro_access.valid.eq(accepted), self.macro_access.we.eq(we),
                     self.macro_access.data.eq(dat_w),
                     self.macro_access.offset.eq(offset[:p.region_shift]),
                     self.macro_access.regions.eq(Cat(*macro_regions)),
                     self.macro_access.regs.eq(reg_hit[:1 << CSR.REG_BITS])]
        m.d.comb += self.bank.eq(decoded["bank"])

        # The CSRs answered here, registered for the ack.
        values = {c["offset"]: Const(c["reset"], BUS_DATA_BITS) for c in ep.csrs()
                  if c["offset"] in OWN_CSRS or c["offset"] >= 1 << CSR.REG_BITS}
        values.update({CSR.ERRCODE: errcode, CSR.ERRADDR: erraddr,
                       EngineCSR.CLASSIFY: self.classify_count,
                       EngineCSR.RESULTS: self.results,
                       EngineCSR.ENGINE_CYCLES: self.engine_cycles})
        chosen = select(m, offset[:ENGINE_REG_BITS], values, BUS_DATA_BITS, "engine_csr_value")
        csr_word = Signal(BUS_DATA_BITS, name="engine_csr_word")
        m.d.sync += csr_word.eq(Mux(accepted & decoded["csr_read"], chosen, 0))
        engine_word = csr_word | self.engine_answer
        for stage in range(PipelineTiming.of(p.pipeline).bus_latency - 1):
            engine_word = register(m, engine_word, f"engine_answer_q{stage + 2}")
        m.d.comb += wb.dat_r.eq(self.answer | engine_word)
