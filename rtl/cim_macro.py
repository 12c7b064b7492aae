"""Top of the generated macro: Wishbone register file, column memories and command sequencer.

Implements sections 5 and 6 of ``docs/ARCHITECTURE.md`` and wires the blocks of
section 7 together. The golden model is ``models/macro.py: MacroModel``.

Storage
    Per-column data lives in one :class:`~rtl.column_memory.ColumnMemory` per region,
    one word per column group holding the P lanes of the group (WEIGHT and STUCK_*:
    P x R bits, COMP: P x K, OFFSET: P x W, GAIN: P x 8, THRESH and ACC: P x A). Each
    has exactly one synchronous read port and one write port, shared by the bus (while
    idle) and the sequencer (while busy), so that it maps onto FPGA block RAM. Bus writes
    use the write port's granularity: one bus word updates one row chunk (WEIGHT,
    STUCK_*) or one lane (the others) of one column. INPUT, FLIP, OUT and CALFLAG are
    registers, and TABLE lives inside the compute array.

Bus timing
    An access (``cyc & stb``) in cycle t is decoded and, for a write, performed in cycle
    t; ``ack`` and the read data follow in cycle t + ``p.bus_latency``: t+1, or t+2 with
    a pipeline (L = 1..3), whose lane multiplexers are split by a register and whose
    memory writes land in t+1. Register reads are captured in cycle t; memory reads
    present the address in cycle t and select the lane from the read port's data in
    cycle t+1. The L = 4 build (ack in t+5) registers the outcome of each check in
    cycle t (with cycle t's BUSY) and records a fault in the error registers in t+1;
    it presents a memory read's address in t+1 and acts on a decode registered twice
    in t+2 (register writes, TABLE, commands; memory writes land in t+4 through two
    levels of copies). It selects a memory word's lane in t+2..t+4 and a register word
    in t+2..t+3, and registers the read data on its way out. A master that drops
    ``cyc`` before the ack abandons the access: it is performed all the same and only
    its ack is dropped; the next access begins after the abandoned one's ack slot.

Sequencing (section 5)
    A command accepted in cycle t raises BUSY from cycle t+1. Per column group:
    RUN: a read cycle (group address presented, tile cleared), p plane cycles (MSB plane
    first), L drain cycles with a pipelined array (the shift-accumulator steps L cycles
    after each plane cycle) and a write-back cycle (ACC, OUT, acc_sat); CALIBRATE: a read
    cycle (search started), S search reads, the verification read (COMP and CALFLAG
    written, as the FSM's results are valid only then; each read lasts L + 1 cycles)
    and the write-back slot; CLEAR: one cycle writing ACC and OUT of the group to 0.

Verilator ``-Wall`` cleanliness
    Amaranth's RTLIL backend trims zero and sign extensions off arithmetic and comparison
    operands, which Verilator reports as WIDTH warnings. So this module compares with
    constants only through bitwise logic (:func:`_eq_const`, :func:`_lt_const`), adds
    only equal-width operands or 1-bit ones, and selects words with ``Switch`` tables
    that always have a ``Default`` (a ``case`` without one is CASEINCOMPLETE) or with
    trees of equal-width multiplexers (:func:`_select_packed`).

Generation speed
    Amaranth's conversion time grows with the signals, assignments, cells and bits it
    handles, and it copies an unnamed expression at each use. So logic repeated per lane
    or per memory slot is built from wide cells and one assignment for all lanes (the
    stored COMP counts, the write enables, the bus's lane selection), and an expression
    used more than once is a signal.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from models.params import (
    BUS_DATA_BITS, CSR, GAIN_BITS, GAIN_FRAC_BITS, QSHIFT_BITS, ErrCode,
    MacroParams, Region, Status,
)

from . import wishbone
from .batchnorm_binarize import BatchnormBinarize
from .calibration_fsm import CalibrationFSM
from .column_memory import ColumnMemory
from .compute_array import ComputeArray, lane_popcount_planes, lane_popcounts_from_planes
from .replicas import (LANE_BLOCK, REPLICA_ATTR, TREE_FANOUT, block_copies, lane_blocks,
                       replicated)
from .shift_accumulate import ShiftAccumulate

__all__ = ["Phase", "CimMacro"]

# CMD fields (section 6, "CMD format").
_CMD_ACCUMULATE_BIT = 4
_CMD_NPLANES = slice(8, 12)


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


def _clog2(n):
    return max(0, (n - 1).bit_length())


def _eq_const(value, const):
    """``value == const`` as bitwise logic (no width-mismatched comparison operands)."""
    if len(value) == 0:
        return Const(1, 1)
    if const >> len(value):
        return Const(0, 1)
    return ~(value ^ Const(const, len(value))).any()


def _lt_const(value, bound):
    """``value < bound`` for an unsigned ``value`` and a constant ``bound``, bitwise.

    ``value < bound`` exactly when, at some bit i where ``bound`` has a 1, ``value`` has a
    0 and agrees with ``bound`` on every bit above i.
    """
    width = len(value)
    if bound >= 1 << width:
        return Const(1, 1)
    terms = [~value[i] & _eq_const(value[i + 1:], bound >> (i + 1))
             for i in range(width) if bound >> i & 1]
    return Cat(*terms).any() if terms else Const(0, 1)


def _register(m, value, name):
    """``value`` one cycle later, from a register named ``name``."""
    value = Value.cast(value)
    reg = Signal(len(value), name=name)
    m.d.sync += reg.eq(value)
    return reg


def _any_per_block(bits):
    """One bit per block of LANE_BLOCK lanes: some lane of the block is set."""
    return Cat(*(bits[b:b + LANE_BLOCK].any() for b in range(0, len(bits), LANE_BLOCK)))


def _onehot(m, value, count, name):
    """A ``count``-bit signal with bit ``value`` set (none when ``value >= count``)."""
    onehot = Signal(count, name=name)
    if len(value) == 0:
        m.d.comb += onehot.eq(Const(1, count))
    else:
        m.d.comb += onehot.eq((Const(1, 1) << value)[:count])
    return onehot


def _select(m, index, items, width, name):
    """``items[index]`` (a dict or list of values of ``width`` bits), 0 for other indices.

    A ``Switch`` with a ``Default`` rather than a shift by ``index * width``: Verilator
    sees full-width constants and a complete ``case``, and the mux is what synthesis
    would build anyway.
    """
    if not isinstance(items, dict):
        items = dict(enumerate(items))
    result = Signal(width, name=name)
    if len(index) == 0:
        m.d.comb += result.eq(items.get(0, Const(0, width)))
        return result
    with m.Switch(index):
        for key, value in items.items():
            with m.Case(key):
                m.d.comb += result.eq(value)
        with m.Default():
            m.d.comb += result.eq(Const(0, width))
    return result


def _select_packed(m, index, value, count, width, name):
    """Item ``index`` of ``count`` items of ``width`` bits packed in ``value`` (item i is
    bits ``[i * width, (i + 1) * width)``); 0 for ``index >= count``.

    A tree of multiplexers, one wide multiplexer per index bit from the most significant
    down, each choosing between the lower and the upper half of the remaining items
    (padded with zeros): a handful of cells where a ``case`` statement would have an arm,
    a comparison and an assignment per item.
    """
    for bit in reversed(range(len(index))):
        half = 1 << bit
        low_count, high_count = min(count, half), max(0, count - half)
        low = value[:low_count * width]
        if low_count < half:
            low = Cat(low, Const(0, (half - low_count) * width))
        if high_count:
            high = value[half * width:count * width]
            if high_count < half:
                high = Cat(high, Const(0, (half - high_count) * width))
        else:
            high = Const(0, half * width)
        level = Signal(half * width, name=f"{name}_{bit}" if bit else name)
        m.d.comb += level.eq(Mux(index[bit], high, low))
        value, count = level, half
    if count > 1 or not len(index):
        return value[:width]
    return value


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
        after ``cyc & stb``; faults are reported in STATUS,
        ERRCODE and ERRADDR.
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

    def _block_planes(self, m, inputs, cmd, early_cmd_write, early_dat_w, next_group_run):
        """The L = 4 build's plane registers: one per block of lanes, each fed from the
        block's own copies of INPUT and of a one-hot plane select.

        Selecting the plane centrally and copying it to the blocks put a multiplexer and
        a wire across the die in one cycle (the longest path of the fully parallel ECP5
        build). Here the select is a shift register two cycles ahead of the planes: it
        is loaded with the command's first plane two cycles before a RUN's read cycle
        (in the cycle that accepts the CMD write, t+1, or in the last DRAIN cycle of the
        previous group) and moves one plane down per cycle, so that it is all zeros
        outside plane cycles. Each block registers a copy of it and a copy of INPUT
        (INPUT cannot change while BUSY, and its copies trail it by one cycle, well
        before a command written after the INPUT write's acknowledge can reach its first
        plane).

        ``early_cmd_write`` is high in cycle t+1 of an accepted CMD write and
        ``early_dat_w`` holds its data then; ``next_group_run`` is high two cycles
        before the read cycle of a RUN's next group.

        Each block also registers the plane's ones count with its plane, selected by the
        same select from copies of the counts of every plane of INPUT (the array then
        subtracts it without counting it on the readout path).

        Returns the planes, block-major (``lane_blocks(P) * R`` bits), and their ones
        counts, block-major.
        """
        p = self._p
        R, B, P = p.rows, p.input_bits, p.cols_per_cycle

        def first_plane(nplanes):
            # NPLANES = n selects plane n - 1 first; 0 selects plane B - 1.
            return Cat(*(_eq_const(nplanes, b + 1) | (_eq_const(nplanes, 0) if b == B - 1
                                                      else Const(0, 1))
                         for b in range(B)))

        run_write = early_cmd_write & _eq_const(early_dat_w[:3], 1)
        # select(t) is the select of cycle t + 1: the blocks' copies are those of t.
        select = Signal(B, name="plane_select")
        with m.If(run_write):
            m.d.sync += select.eq(first_plane(early_dat_w[_CMD_NPLANES]))
        with m.Elif(next_group_run):
            m.d.sync += select.eq(first_plane(cmd[_CMD_NPLANES]))
        with m.Else():
            m.d.sync += select.eq(Cat(select[1:], Const(0, 1)))
        selects = block_copies(m, select, P, "plane_select")
        input_copies = block_copies(m, inputs, P, "input_copy", reset_less=True)
        # The ones count of every plane of INPUT, in two register stages (bit-sliced
        # levels, then the adder tree), copied to the blocks through a tree: ready two
        # cycles before a command written right after an INPUT write's acknowledge selects
        # its first plane (the L = 4 tests of tests/test_cim_macro.py fail with three
        # more register stages here).
        count_planes, numbers = lane_popcount_planes(m, inputs, B, R, "input_ones", max_terms=8)
        count_planes = [_register(m, plane, f"input_ones_plane{j}")
                        for j, plane in enumerate(count_planes)]
        counts = _register(m, Cat(*lane_popcounts_from_planes(count_planes, numbers, B)),
                           "input_ones")
        count_bits = len(counts) // B
        count_copies = block_copies(m, counts, P, "input_ones", tree=True)
        planes, ones = [], []
        for k in range(len(selects) // B):
            copy = input_copies[k * B * R:(k + 1) * B * R]
            chosen = Cat(*(selects[k * B + b].replicate(R) & copy[b * R:(b + 1) * R]
                           for b in range(B)))
            word = Signal(R, name=f"plane_value_b{k}", attrs={REPLICA_ATTR: 1}, reset_less=True)
            m.d.sync += word.eq(_or_words(chosen, B, R))
            planes.append(word)
            count_copy = count_copies[k * B * count_bits:(k + 1) * B * count_bits]
            chosen = Cat(*(selects[k * B + b].replicate(count_bits)
                           & count_copy[b * count_bits:(b + 1) * count_bits] for b in range(B)))
            count = Signal(count_bits, name=f"plane_ones_b{k}", attrs={REPLICA_ATTR: 1},
                           reset_less=True)
            m.d.sync += count.eq(_or_words(chosen, B, count_bits))
            ones.append(count)
        result = Signal(len(planes) * R, name="plane_value_blocks")
        m.d.comb += result.eq(Cat(*planes))
        ones_result = Signal(len(ones) * count_bits, name="plane_ones_blocks")
        m.d.comb += ones_result.eq(Cat(*ones))
        return result, ones_result

    def elaborate(self, platform):
        p = self._p
        R, C, B, K = p.rows, p.cols, p.input_bits, p.comp_rows
        W, A, P, G, S = p.readout_bits, p.acc_bits, p.cols_per_cycle, p.groups, p.comp_steps
        chunk_rows, chunks = p.chunk_rows, p.chunks
        words = p.packed_words
        rs = p.region_shift
        gb, sb, cb = p.group_addr_bits, p.slot_addr_bits, p.chunk_addr_bits
        wb = self.wb

        m = Module()
        m.submodules.array = array = ComputeArray(p)
        m.submodules.shift_acc = shift_acc = ShiftAccumulate(p)
        m.submodules.binarize = binarize = BatchnormBinarize(p)
        m.submodules.calibration = calibration = CalibrationFSM(p)

        # --- control and status registers ---------------------------------------------
        busy = Signal()
        done = Signal()
        error = Signal()
        cal_range = Signal()
        acc_sat = Signal()
        errcode = Signal(3)
        erraddr = Signal(p.addr_bits)
        # An accepted command has no bit set above NPLANES, so CMD keeps only bits 11:0.
        cmd = Signal(_CMD_NPLANES.stop)
        cycle_bits = max(p.run_cycles(B), p.calibrate_cycles(), p.clear_cycles()).bit_length()
        cycles = Signal(cycle_bits)
        if p.has("readout"):
            sat = Signal(W - 1, init=p.readout_max)
            qshift = Signal(QSHIFT_BITS)
            m.d.comb += [array.sat.eq(sat), array.qshift.eq(qshift)]
        m.d.comb += [self.busy.eq(busy), self.done.eq(done), self.error.eq(error)]

        # --- register-file state: inputs and one bit per column ------------------------
        # One signal per bus word (or group) written as a unit: slices of one wide signal
        # would make Amaranth build a full-width assignment per slice, which is quadratic
        # in the macro size and dominated elaboration time at 256 x 256.
        input_regs = [[Signal(chunk_rows, name=f"input_{b}_{c}") for c in range(chunks)]
                      for b in range(B)]
        # Plane b is bits [b*R, (b+1)*R) of inputs.
        inputs = Cat(*(reg for plane_regs in input_regs for reg in plane_regs))
        flip_regs = [Signal(min(C, BUS_DATA_BITS * (j + 1)) - BUS_DATA_BITS * j, name=f"flip_{j}")
                     for j in range(words)]
        flip = Cat(*flip_regs)
        out_regs = [Signal(P, name=f"out_{g}") for g in range(G)]
        out = Cat(*out_regs)
        calflag_regs = [Signal(P, name=f"calflag_{g}") for g in range(G)]
        calflag = Cat(*calflag_regs)

        # --- column memories: one word per group, P lanes ----------------------------
        def column_memory(name, lane_bits, lane_init=0, granularity=None):
            memory = ColumnMemory(lane_bits, P, G, granularity=granularity, lane_init=lane_init)
            m.submodules[name] = memory
            return memory

        row_mems = {Region.WEIGHT: column_memory("weight_mem", R, granularity=chunk_rows)}
        if p.has("stuck"):
            for number, name in ((Region.STUCK_MASK, "stuck_mask_mem"),
                                 (Region.STUCK_VALUE, "stuck_value_mem")):
                row_mems[number] = column_memory(name, R, granularity=chunk_rows)
        # COMP resets balanced (n = K/2), so that a fresh macro computes s exactly.
        lane_mems = {Region.COMP: column_memory("comp_mem", K, (1 << K // 2) - 1, granularity=K),
                     Region.THRESH: column_memory("thresh_mem", A, granularity=A)}
        if p.has("offset"):
            lane_mems[Region.OFFSET] = column_memory("offset_mem", W, granularity=W)
        if p.has("gain"):
            lane_mems[Region.GAIN] = column_memory("gain_mem", GAIN_BITS, 1 << GAIN_FRAC_BITS,
                                                   granularity=GAIN_BITS)
        # ACC is written only by the sequencer, a whole group at a time.
        acc_mem = column_memory("acc_mem", A)
        lane_bits = {Region.COMP: K, Region.THRESH: A, Region.OFFSET: W, Region.GAIN: GAIN_BITS,
                     Region.ACC: A}

        # --- bus decode (cycle t) ------------------------------------------------------
        # A pipelined macro acknowledges p.bus_latency cycles after the access (its read
        # path has registers inside); `pending` keeps the held cyc & stb from starting a
        # second access in between.
        L = p.pipeline
        latency = p.bus_latency
        # The FPGA-clock build (L = 4, bus latency 5) registers the checks and the decoded
        # access before it acts on them (faults in t+1, the access in t+2) and registers
        # the read data on its way out: the address decode and the checks then end at a
        # few flip-flops instead of at the error registers and the clock enables of the
        # register file, and the read multiplexers do not reach into the bridge.
        deep = L == 4
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

        region = wb.adr[rs:]
        offset = wb.adr[:rs]
        region_hit = _onehot(m, region, 1 << len(region), "region_hit")
        sizes = dict(reg=32, group=G, slot=P, chunk=chunks, plane=B, word=words, index=1 << W)

        def decode(layout, offset):
            """Fields of ``offset`` in ``layout`` and whether they address a word."""
            fields, pos, valid = {}, 0, []
            for field, width in reversed(layout):
                fields[field] = offset[pos:pos + width]
                valid.append(_lt_const(fields[field], sizes[field]))
                pos += width
            if pos < rs:
                valid.append(~offset[pos:].any())
            return fields, Cat(*valid).all()

        reg = offset[:5]
        reg_hit = _onehot(m, reg, 32, "reg_hit")
        csr_list = p.csrs()
        csr_valid = Cat(*(reg_hit[c["offset"]] for c in csr_list)).any()
        csr_ro = Cat(*(reg_hit[c["offset"]] for c in csr_list if c["access"] == "ro")).any()

        hit, fields_of = {}, {}
        for r in p.regions():
            fields, valid = decode(r["fields"], offset)
            if r["region"] == Region.CSR:
                valid = valid & csr_valid
            hit[r["region"]] = Signal(name=f"hit_{r['name'].lower()}")
            m.d.comb += hit[r["region"]].eq(region_hit[r["region"]] & valid)
            fields_of[r["region"]] = fields
        mapped = Cat(*hit.values()).any()
        memory_region = Cat(*(h for n, h in hit.items() if n != Region.CSR)).any()

        dat_w = wb.dat_w

        def sign_extends(width):
            """``dat_w`` is the 32-bit sign extension of a ``width``-bit value."""
            if width >= BUS_DATA_BITS:
                return Const(1, 1)
            top = dat_w[width - 1:]
            return top.all() | ~top.any()

        # CMD check (BAD_COMMAND).
        opcode = dat_w[:3]
        is_run_opcode = _eq_const(opcode, 1)
        nplanes_field = dat_w[_CMD_NPLANES]
        reserved = Cat(dat_w[3], dat_w[5:8], dat_w[12:]).any()
        cmd_ok = Signal()
        m.d.comb += cmd_ok.eq(
            (opcode[0] | opcode[1]) & ~opcode[2] & ~reserved
            & Mux(is_run_opcode, _lt_const(nplanes_field, B + 1),
                  ~dat_w[_CMD_ACCUMULATE_BIT] & ~nplanes_field.any()))

        bad_value_terms = [hit[Region.THRESH] & ~sign_extends(A)]
        if p.has("offset"):
            bad_value_terms.append(hit[Region.OFFSET] & ~sign_extends(W))
        if p.has("gain"):
            bad_value_terms.append(hit[Region.GAIN] & dat_w[GAIN_BITS:].any())
        if p.has("table"):
            bad_value_terms.append(hit[Region.TABLE] & ~sign_extends(W))
        if p.has("readout"):
            # SAT <= M = 2^(W-1) - 1 and QSHIFT <= 15 are both "no bit above the field".
            bad_value_terms += [hit[Region.CSR] & reg_hit[CSR.SAT] & dat_w[W - 1:].any(),
                                hit[Region.CSR] & reg_hit[CSR.QSHIFT] & dat_w[QSHIFT_BITS:].any()]
        bad_value = Cat(*bad_value_terms).any()

        busy_csr_write = reg_hit[CSR.CMD]
        if p.has("readout"):
            busy_csr_write = busy_csr_write | reg_hit[CSR.SAT] | reg_hit[CSR.QSHIFT]
        read_only = (hit[Region.ACC] | hit[Region.OUT] | hit[Region.CALFLAG]
                     | (hit[Region.CSR] & csr_ro))

        # Check order of section 6: BAD_SEL, BAD_ADDRESS, READ_ONLY, BUSY, BAD_COMMAND/VALUE.
        checks = [
            (ErrCode.BAD_SEL, wb.we & ~wb.sel.all()),
            (ErrCode.BAD_ADDRESS, ~mapped),
            (ErrCode.READ_ONLY, wb.we & read_only),
            (ErrCode.BUSY, busy & (memory_region | (wb.we & hit[Region.CSR] & busy_csr_write))),
            (ErrCode.BAD_COMMAND, wb.we & hit[Region.CSR] & reg_hit[CSR.CMD] & ~cmd_ok),
            (ErrCode.BAD_VALUE, wb.we & bad_value),
        ]
        check_access, error_addr = access, wb.adr

        def decoded(value, name):
            """``value`` one cycle later (the registered decode of the L = 4 build)."""
            return _register(m, value, f"{name}_d")

        if deep:
            # The L = 4 build registers each check's outcome in cycle t (with the state
            # of cycle t: BUSY), and decides and records the fault in t+1: the error
            # registers and the accepted bit then end a few levels after registers
            # instead of after the whole address decode.
            outcomes = decoded(Cat(*(cond for _, cond in checks)), "bus_checks")
            checks = [(c, outcomes[i]) for i, (c, _) in enumerate(checks)]
            check_access = decoded(access, "bus_access")
            error_addr = decoded(wb.adr, "bus_adr")
        fault = Signal()
        code = Signal(3)
        m.d.comb += fault.eq(Cat(*(cond for _, cond in checks)).any())
        with m.If(checks[0][1]):
            m.d.comb += code.eq(checks[0][0])
        for value, cond in checks[1:]:
            with m.Elif(cond):
                m.d.comb += code.eq(value)

        # The error registers take a faulty access in cycle t (t+1 with L = 4, from the
        # checks of cycle t).
        with m.If(check_access & fault & ~error):
            m.d.sync += [error.eq(1), errcode.eq(code), erraddr.eq(error_addr)]

        accepted = Signal()
        m.d.comb += accepted.eq(check_access & ~fault)
        we = wb.we
        if deep:
            # Cycle t+2 acts on copies of the decode registered twice: the accepted
            # access (decided in t+1), the direction, the data, the offset (its fields
            # are slices) and the region and CSR hits. Nothing can tell: the next access
            # comes after the ack, and the error registers and the BUSY check used
            # cycle t's state. Memory reads present their address in t+1 from the first
            # copy (a read changes nothing), and some copies per block of lanes are
            # loaded in t+1 from the first copy and the accepted bit of t+1, so that
            # they reach their blocks through two levels of registers by t+3.
            early = dict(accepted=accepted, we=decoded(we, "bus_we"),
                         dat_w=decoded(dat_w, "bus_dat_w"), offset=decoded(offset, "bus_offset"),
                         reg_hit=decoded(reg_hit, "reg_hit"),
                         hit={n: decoded(h, f"hit_{_region_name(n)}") for n, h in hit.items()})
            early["fields_of"] = {r["region"]: decode(r["fields"], early["offset"])[0]
                                  for r in p.regions()}
            early_cmd_write = Signal(name="early_cmd_write")
            m.d.comb += early_cmd_write.eq(early["accepted"] & early["we"]
                                           & early["hit"][Region.CSR] & early["reg_hit"][CSR.CMD])
            accepted = decoded(accepted, "bus_accepted")
            we = decoded(early["we"], "bus_we_2")
            dat_w = decoded(early["dat_w"], "bus_dat_w_2")
            offset = decoded(early["offset"], "bus_offset_2")
            reg = offset[:5]
            reg_hit = decoded(early["reg_hit"], "reg_hit_2")
            hit = {n: decoded(h, f"hit_{_region_name(n)}_2") for n, h in early["hit"].items()}
            fields_of = {r["region"]: decode(r["fields"], offset)[0] for r in p.regions()}
            opcode = dat_w[:3]
            read_fields = early["fields_of"]
        else:
            read_fields = fields_of
        row_fields = fields_of[Region.WEIGHT]     # group, slot, chunk
        lane_fields = fields_of[Region.COMP]      # group, slot

        write = Signal()
        read = Signal()
        m.d.comb += [write.eq(accepted & we), read.eq(accepted & ~we)]
        csr_write = {c["offset"]: write & hit[Region.CSR] & reg_hit[c["offset"]]
                     for c in csr_list if c["access"] == "rw"}

        # --- bus writes -----------------------------------------------------------------
        with m.If(csr_write[CSR.STATUS]):
            with m.If(dat_w[Status.DONE]):
                m.d.sync += done.eq(0)
            with m.If(dat_w[Status.ERROR]):
                m.d.sync += [error.eq(0), errcode.eq(0), erraddr.eq(0)]
            with m.If(dat_w[Status.ACC_SAT]):
                m.d.sync += acc_sat.eq(0)
        if p.has("readout"):
            with m.If(csr_write[CSR.SAT]):
                m.d.sync += sat.eq(dat_w)
            with m.If(csr_write[CSR.QSHIFT]):
                m.d.sync += qshift.eq(dat_w)

        # INPUT word (plane, chunk) and the packed FLIP words.
        def word_enables(number, hits, name):
            """Per word of region ``number``, its register's write enable (``hits``: the
            word decode of a decode's fields). The L = 4 build registers them from the
            first registered decode, so that each enable is a flip-flop of its own."""
            if not deep:
                word_hits = hits(fields_of)
                return (write & hit[number]).replicate(len(word_hits)) & word_hits
            word_hits = hits(early["fields_of"])
            early_write = early["accepted"] & early["we"] & early["hit"][number]
            return decoded(early_write.replicate(len(word_hits)) & word_hits, name)

        def input_hits(fields):
            plane_hit = _onehot(m, fields[Region.INPUT]["plane"], B, "input_plane_hit")
            chunk_hit = _onehot(m, fields[Region.INPUT]["chunk"], chunks, "input_chunk_hit")
            return Cat(*(plane_hit[b] & chunk_hit[c] for b in range(B) for c in range(chunks)))

        input_enables = word_enables(Region.INPUT, input_hits, "input_write")
        if deep:
            # INPUT's own copy of the data register: INPUT sits among the blocks it
            # feeds, far from the decode, and a register shared with the other writes
            # was a wire across the die.
            input_dat_w = Signal(chunk_rows, name="input_dat_w_d", attrs={REPLICA_ATTR: 1})
            m.d.sync += input_dat_w.eq(early["dat_w"][:chunk_rows])
        else:
            input_dat_w = dat_w[:chunk_rows]
        for b in range(B):
            for c in range(chunks):
                with m.If(input_enables[b * chunks + c]):
                    m.d.sync += input_regs[b][c].eq(input_dat_w)
        flip_enables = word_enables(
            Region.FLIP, lambda fields: _onehot(m, fields[Region.FLIP]["word"], words,
                                                "flip_word_hit"),
            "flip_write")
        for j in range(words):
            with m.If(flip_enables[j]):
                m.d.sync += flip_regs[j].eq(dat_w[:len(flip_regs[j])])

        # Memory writes from the bus: one chunk (row memories) or lane (lane memories).
        def memory_enables(fields, suffix):
            row_slot_hit = _onehot(m, fields[Region.WEIGHT]["slot"], P, f"row_slot_hit{suffix}")
            row_chunk_hit = _onehot(m, fields[Region.WEIGHT]["chunk"], chunks,
                                    f"row_chunk_hit{suffix}")
            # Enable s * chunks + c: slot s and chunk c. One cell for all of them, and a
            # signal (each use of an expression would copy it).
            row_en = Signal(P * chunks, name=f"row_en{suffix}")
            if chunks == 1:
                m.d.comb += row_en.eq(row_slot_hit)
            else:
                m.d.comb += row_en.eq(Cat(*(row_slot_hit[s].replicate(chunks) for s in range(P)))
                                      & row_chunk_hit.replicate(P))
            return row_en, _onehot(m, fields[Region.COMP]["slot"], P, f"lane_slot_hit{suffix}")

        if deep:
            # Decoded from the first registered decode and registered in t+2: the decode
            # of a slot into 96 lane enables from t+2's offset ended on the enables'
            # register in t+3 across the die.
            row_en, lane_en = (decoded(en, name) for en, name in
                               zip(memory_enables(early["fields_of"], "_early"),
                                   ("row_en", "lane_en")))
        else:
            row_en, lane_en = memory_enables(fields_of, "")

        # --- sequencer state --------------------------------------------------------------
        phase = Signal(Phase)
        in_phase = {}
        for ph in Phase:
            in_phase[ph] = Signal(name=f"in_{ph.name.lower()}")
            m.d.comb += in_phase[ph].eq(_eq_const(phase.as_value(), ph.value))
        # 1-bit minimum: Yosys writes a zero-width register as [-1:0] (ASCRANGE).
        group_reg = Signal(max(1, gb), name="group")
        group = group_reg[:gb]
        plane_bits = max(1, _clog2(B))
        plane = Signal(plane_bits)                 # index of the current bit-plane
        # DRAIN cycles left after this one (pipelined arrays only).
        drain_left = Signal(max(1, _clog2(L)), name="drain_left") if L else None
        busy_count = Signal(cycle_bits)
        cmd_run = Signal()
        cmd_calibrate = Signal()
        # Accepted commands have opcode 1, 2 or 3.
        m.d.comb += [cmd_run.eq(cmd[0] & ~cmd[1]), cmd_calibrate.eq(~cmd[0] & cmd[1])]

        # Memory read ports: the bus's address while idle, the group's while busy.
        def group_address(bus_group):
            if gb == 0:
                return Const(0, 0)
            return Mux(busy, group, bus_group)

        for mem in row_mems.values():
            m.d.comb += mem.read_addr.eq(group_address(read_fields[Region.WEIGHT]["group"]))
        for mem in lane_mems.values():
            m.d.comb += mem.read_addr.eq(group_address(read_fields[Region.COMP]["group"]))
        m.d.comb += acc_mem.read_addr.eq(group_address(read_fields[Region.COMP]["group"]))

        # The low bits of the bus word, as signals: a write broadcasts them to every
        # lane (or chunk), and copies of a signal cost nothing where copies of a slice
        # of it each cost a node.
        bus_fields = {}

        def bus_field(width):
            if width not in bus_fields:
                bus_fields[width] = Signal(width, name=f"dat_w_{width}")
                m.d.comb += bus_fields[width].eq(dat_w[:width])
            return bus_fields[width]

        # A pipelined macro (built for FPGA clock rates) writes its memories one cycle
        # after the access, from registers: the decode and error checks then end at
        # those registers instead of fanning out to the clock enables of every lane.
        # Nothing can observe the delay: the next access comes three cycles after this
        # one at the earliest (ack in t+2), and no command runs while a memory write is
        # accepted. The L = 4 build takes two cycles from its decode (acting in t+2) to
        # the memories, through a tree of copies (rtl/replicas.py): its writes land in
        # t+4, before the ack in t+5.
        def bus_write(value, name):
            value = Value.cast(value)
            if not L or len(value) == 0:
                return value
            reg = Signal(len(value), name=f"{name}_q")
            m.d.sync += reg.eq(value)
            if deep:
                reg2 = Signal(len(value), name=f"{name}_q2")
                m.d.sync += reg2.eq(reg)
                reg = reg2
            return reg

        def bus_write_en(enables, number, name):
            """Per-lane write enables of region ``number``: with a pipeline, the address
            decode (``enables``) and the accepted-write bit are registered apart and
            combined after the registers, so the error checks end at one flip-flop."""
            if not L:
                return Mux(write & hit[number], enables, Const(0, len(enables)))
            per_lane = len(enables) // P
            if deep:
                # Each lane's enable is a register of its region's own that drives the
                # memory's clock enables directly: in t+3 the decoded enables (one
                # register for all regions) and the accepted-write bit (one copy per
                # TREE_FANOUT blocks), ANDed into it for t+4. An AND after one register
                # shared by the regions was a LUT between a flip-flop and the clock
                # enables of several lanes' memories, routed across them.
                enables_q = _register(m, enables, f"{name}_enables_q")
                groups = -(-lane_blocks(P) // TREE_FANOUT)
                firsts = []
                for j in range(groups):
                    first = Signal(name=f"{name}_write_t{j}_q",
                                   attrs={REPLICA_ATTR: 1} if groups > 1 else {})
                    m.d.sync += first.eq(write & hit[number])
                    firsts.append(first)
                lanes = Signal(len(enables), name=f"{name}_lanes_q2")
                m.d.sync += lanes.eq(enables_q & Cat(*(
                    firsts[i // (LANE_BLOCK * TREE_FANOUT)].replicate(per_lane)
                    for i in range(P))))
                return lanes
            # The accepted-write bit in one copy per block of lanes (rtl/replicas.py).
            accepted = replicated(m, write & hit[number], P, f"{name}_write", suffix="_q")
            return bus_write(enables, f"{name}_lanes") & Cat(*(accepted[i].replicate(per_lane)
                                                              for i in range(P)))

        bus_row_group = bus_write(row_fields["group"], "bus_row_group")
        bus_lane_group = bus_write(lane_fields["group"], "bus_lane_group")
        bus_data = {}

        def bus_write_field(width):
            """The low ``width`` bits of the written word for every lane (lane-major): with
            a pipeline, from copies of a register per block of lanes."""
            if width not in bus_data:
                if deep:
                    # The tree starts at a copy of its own of the data register (loaded
                    # in t+1 as that is): one register for every write was a wire
                    # across the die to the tree's first level.
                    root = Signal(width, name=f"dat_w_{width}_root_d", attrs={REPLICA_ATTR: 1},
                                  reset_less=True)
                    m.d.sync += root.eq(early["dat_w"][:width])
                    bus_data[width] = replicated(m, root, P, f"dat_w_{width}", suffix="_q",
                                                 tree=True, reset_less=True)
                elif L:
                    bus_data[width] = replicated(m, bus_field(width), P, f"dat_w_{width}",
                                                 suffix="_q")
                else:
                    # A signal: the row memories slice it per lane.
                    bus_data[width] = Signal(P * width, name=f"dat_w_{width}_lanes")
                    m.d.comb += bus_data[width].eq(bus_field(width).replicate(P))
            return bus_data[width]

        for number, mem in row_mems.items():
            m.d.comb += [
                mem.write_addr.eq(bus_row_group),
                mem.write_data.eq(Cat(*(
                    bus_write_field(chunk_rows)[i * chunk_rows:(i + 1) * chunk_rows].replicate(chunks)
                    for i in range(P)))),
                mem.write_en.eq(bus_write_en(row_en, number, f"{_region_name(number)}_bus")),
            ]
        for number, mem in lane_mems.items():
            if number == Region.COMP:
                continue        # shared with CALIBRATE below
            width = lane_bits[number]
            m.d.comb += [
                mem.write_addr.eq(bus_lane_group),
                mem.write_data.eq(bus_write_field(width)),
                mem.write_en.eq(bus_write_en(lane_en, number, f"{_region_name(number)}_bus")),
            ]

        # --- datapath ---------------------------------------------------------------------
        comp_mem = lane_mems[Region.COMP]
        # 2n - K for n = popcount of each lane's COMP bits, all lanes bit-sliced: n's bit
        # planes (K is a power of two, so they are complete), then 2 (n - K/2), whose
        # bits are 0, n's low k-1 bits, ~n[k-1] and ~(n[k] ^ n[k-1]) for K = 2^k (n - K/2
        # is n + 3 * 2^(k-1) modulo 2^(k+1)).
        n_planes, _ = lane_popcount_planes(m, comp_mem.read_data, P, K, "stored_ones")
        k = len(n_planes) - 1
        half_bit = Signal(P, name="stored_half_bit")
        sign_bit = Signal(P, name="stored_sign_bit")
        m.d.comb += [half_bit.eq(~n_planes[k - 1]),
                     sign_bit.eq(~(n_planes[k] ^ n_planes[k - 1]))]
        comp_planes = n_planes[:k - 1] + [half_bit, sign_bit]
        stored_comp = Signal(P * p.comp_bits)
        m.d.comb += stored_comp.eq(Cat(*(Cat(Const(0, 1), *(plane[i] for plane in comp_planes))
                                         for i in range(P))))

        # The array sees the current plane only in plane cycles: 0 (rows off) otherwise,
        # which is what CALIBRATE needs. The plane is selected a cycle ahead, from the
        # next plane index, into a register: the input multiplexer then sits before the
        # clock edge instead of in front of the popcount, the longest path on an FPGA.
        plane_next = Signal(plane_bits, name="plane_next")
        planes_next = Signal(name="planes_next")   # the next cycle is a plane cycle
        m.d.comb += plane_next.eq(plane)
        with m.If(in_phase[Phase.READ] & cmd_run):
            m.d.comb += planes_next.eq(1)
            with m.If(cmd[_CMD_NPLANES].any()):
                m.d.comb += plane_next.eq((cmd[_CMD_NPLANES] - 1)[:plane_bits])
            with m.Else():
                m.d.comb += plane_next.eq(B - 1)
        with m.Elif(in_phase[Phase.PLANES] & plane.any()):
            m.d.comb += [planes_next.eq(1), plane_next.eq((plane - 1)[:plane_bits])]
        m.d.sync += plane.eq(plane_next)
        if deep:
            plane_value, plane_ones = self._block_planes(
                m, inputs, cmd, early_cmd_write, early["dat_w"],
                in_phase[Phase.DRAIN] & ~drain_left.any() & cmd_run & ~_eq_const(group, G - 1))
        else:
            input_plane_value = _select(m, plane_next,
                                        [inputs[b * R:(b + 1) * R] for b in range(B)],
                                        R, "input_plane_value")
            # One copy of the plane register per block of lanes (rtl/replicas.py).
            plane_value = block_copies(m, Mux(planes_next, input_plane_value, Const(0, R)), P,
                                       "plane_value")
        # The command's ACCUMULATE bit and "the command is a RUN", loaded with CMD into
        # one copy per block of lanes (rtl/replicas.py): both fan out to every lane. The
        # L = 4 build loads a tree of copies in t+1 from the first registered decode:
        # its blocks see the command in t+3, the read cycle, as the others do in t+1.
        if deep:
            cmd_lanes = dict(enable=early_cmd_write, tree=True)
            cmd_data, cmd_opcode = early["dat_w"], early["dat_w"][:3]
        else:
            cmd_lanes = dict(enable=csr_write[CSR.CMD])
            cmd_data, cmd_opcode = dat_w, opcode
        accumulate_lanes = replicated(m, cmd_data[_CMD_ACCUMULATE_BIT], P, "accumulate",
                                      **cmd_lanes)
        run_lanes = replicated(m, _eq_const(cmd_opcode, 1), P, "cmd_run", **cmd_lanes)
        if deep:
            # The array's bias comes from the search while calibrating: a multiplexer in
            # every lane, selected from copies per block of lanes loaded with CMD.
            calibrate_lanes = replicated(m, _eq_const(cmd_opcode, 2), P, "cmd_calibrate",
                                         **cmd_lanes)
            search_comp, comp_w = calibration.comp.as_value(), p.comp_bits
            m.d.comb += array.comp.eq(Cat(*(
                Mux(calibrate_lanes[i], search_comp[i * comp_w:(i + 1) * comp_w],
                    stored_comp[i * comp_w:(i + 1) * comp_w]) for i in range(P))))
        else:
            m.d.comb += array.comp.eq(Mux(cmd_calibrate, calibration.comp.as_value(),
                                          stored_comp))
        m.d.comb += [
            array.plane.eq(plane_value),
            *([array.plane_ones.eq(plane_ones)] if deep else []),
            array.weights.eq(row_mems[Region.WEIGHT].read_data),
            calibration.readout.eq(array.readout),
            shift_acc.readout.eq(array.readout),
            binarize.theta.eq(lane_mems[Region.THRESH].read_data),
            binarize.flip.eq(_select(m, group, [flip[g * P:(g + 1) * P] for g in range(G)],
                                     P, "group_flip")),
        ]
        if L:
            # The threshold margin is captured while the planes run (the group's ACC
            # and THRESH words are valid from the first plane cycle on): the write-back
            # then adds it to the tile instead of adding, clamping and comparing. The
            # capture comes from copies per block of lanes, a cycle after each plane
            # cycle (the last one is then a DRAIN cycle, still before the write-back).
            capture = replicated(m, in_phase[Phase.PLANES], P, "margin_capture")
            acc_base = acc_mem.read_data & Cat(*(accumulate_lanes[i].replicate(A)
                                                 for i in range(P)))
            m.d.comb += binarize.tile.eq(shift_acc.tile)
            if deep:
                # The accumulator operand is captured in each lane first: the write-back
                # and the margin, a cycle after it (still before the write-back), then
                # start at a register of the lane.
                base_q = Signal(P * A, name="acc_base_q", reset_less=True)
                loads = Cat(*(capture[i].replicate(A) for i in range(P)))
                m.d.sync += base_q.eq((acc_base & loads) | (base_q & ~loads))
                planes_q = Signal(name="planes_q")
                m.d.sync += planes_q.eq(in_phase[Phase.PLANES])
                m.d.comb += [shift_acc.acc_prev.eq(base_q),
                             shift_acc.accumulate.eq(Const((1 << P) - 1, P)),
                             binarize.acc_base.eq(base_q),
                             binarize.capture.eq(replicated(m, planes_q, P,
                                                            "margin_capture_late"))]
            else:
                m.d.comb += [binarize.acc_base.eq(acc_base), binarize.capture.eq(capture)]
        if not deep:
            m.d.comb += [shift_acc.acc_prev.eq(acc_mem.read_data),
                         shift_acc.accumulate.eq(accumulate_lanes)]
        if not L:
            m.d.comb += binarize.acc.eq(shift_acc.acc)
        if p.has("stuck"):
            m.d.comb += [array.stuck_mask.eq(row_mems[Region.STUCK_MASK].read_data),
                         array.stuck_value.eq(row_mems[Region.STUCK_VALUE].read_data)]
        if p.has("offset"):
            m.d.comb += array.offset.eq(lane_mems[Region.OFFSET].read_data)
        if p.has("gain"):
            m.d.comb += array.gain.eq(lane_mems[Region.GAIN].read_data)
        if p.has("table"):
            m.d.comb += [
                array.table_addr.eq(fields_of[Region.TABLE]["index"]),
                array.table_wdata.eq(dat_w[:W]),
                array.table_we.eq(write & hit[Region.TABLE]),
            ]

        # --- sequencer ---------------------------------------------------------------------
        group_hit = _onehot(m, group, G, "group_hit")
        all_lanes = Const((1 << P) - 1, P)
        last_group = _eq_const(group, G - 1)
        group_out_we = Signal()         # OUT bits of the group <- group_out
        group_out = Signal(P)
        calibrated = Signal()           # the verification read: COMP, CALFLAG <- results
        m.d.comb += [
            acc_mem.write_addr.eq(group),
            comp_mem.write_addr.eq(group_address(bus_lane_group)),
        ]
        if L:
            # The search results are stored a cycle after the verification read (in the
            # write-back cycle, the group unchanged), from a register of the FSM's
            # output and copies per block of lanes of the store enable: the bus and the
            # sequencer then need no multiplexer on BUSY (the bus writes COMP only
            # while idle, and lands within two cycles of an access).
            therm_q = Signal(P * K, name="comp_result_q")
            m.d.sync += therm_q.eq(calibration.therm.as_value())
            comp_store = replicated(m, calibrated, P, "comp_store")
            m.d.comb += [
                comp_mem.write_data.eq(Cat(*(
                    Mux(comp_store[i], therm_q[i * K:(i + 1) * K],
                        bus_write_field(K)[i * K:(i + 1) * K]) for i in range(P)))),
                comp_mem.write_en.eq(comp_store
                                     | bus_write_en(lane_en, Region.COMP, "comp_bus")),
            ]
        else:
            m.d.comb += [
                comp_mem.write_data.eq(Mux(busy, calibration.therm.as_value(),
                                           bus_write_field(K))),
                comp_mem.write_en.eq(Mux(busy, calibrated.replicate(P),
                                     bus_write_en(lane_en, Region.COMP, "comp_bus"))),
            ]

        def next_group(same_phase):
            with m.If(last_group):
                m.d.sync += [busy.eq(0), done.eq(1), phase.eq(Phase.IDLE),
                             cycles.eq((busy_count + 1)[:cycle_bits])]
            with m.Else():
                m.d.sync += [group_reg.eq((group + 1)[:gb]), phase.eq(same_phase)]

        with m.If(busy):
            m.d.sync += busy_count.eq((busy_count + 1)[:cycle_bits])

        # If chains on decoded phases rather than a Switch: Amaranth splits a Switch per
        # assigned signal, and a signal assigned in some phases only would get a case
        # statement without a default.
        clear_tile = Signal(name="clear_tile")
        with m.If(in_phase[Phase.READ]):
            with m.If(cmd_run):
                m.d.comb += clear_tile.eq(1)
                m.d.sync += phase.eq(Phase.PLANES)
            with m.Else():
                m.d.comb += calibration.start.eq(1)
                m.d.sync += phase.eq(Phase.SEARCH)
        with m.Elif(in_phase[Phase.PLANES]):
            with m.If(~plane.any()):
                if L:
                    m.d.sync += [drain_left.eq(L - 1), phase.eq(Phase.DRAIN)]
                else:
                    m.d.sync += phase.eq(Phase.WRITE)
        if L:
            with m.Elif(in_phase[Phase.DRAIN]):
                with m.If(drain_left.any()):
                    m.d.sync += drain_left.eq((drain_left - 1)[:len(drain_left)])
                with m.Else():
                    m.d.sync += phase.eq(Phase.WRITE)
        with m.Elif(in_phase[Phase.SEARCH]):
            # The FSM's verification read (its last cycle, with a pipeline) ends the search.
            with m.If(calibration.done):
                m.d.comb += calibrated.eq(1)
                m.d.sync += phase.eq(Phase.WRITE)
        # The shift-accumulator takes a plane's readout L cycles after the plane cycle;
        # the last register of the delay is copied per block of lanes. With a pipeline
        # the tile is cleared a cycle after the read cycle, from copies too: its first
        # step comes L >= 1 cycles later still.
        step = in_phase[Phase.PLANES]
        for i in range(L):
            if i == L - 1:
                step = replicated(m, step, P, "step", suffix=f"_q{L}")
            else:
                step_q = Signal(name=f"step_q{i + 1}")
                m.d.sync += step_q.eq(step)
                step = step_q
        if L:
            m.d.comb += [shift_acc.step.eq(step),
                         shift_acc.clear.eq(replicated(m, clear_tile, P, "tile_clear"))]
        else:
            m.d.comb += [shift_acc.step.eq(step.replicate(P)),
                         shift_acc.clear.eq(clear_tile.replicate(P))]

        if L:
            # ACC and OUT are written from copies per block of lanes of a write enable
            # registered a cycle ahead (the cycle before a RUN's write-back is its last
            # DRAIN cycle; CLEAR cycles follow the CMD write or each other); the data is
            # gated by the RUN copies, so that CLEAR writes 0.
            cmd_clear = csr_write[CSR.CMD] & _eq_const(opcode, 3)
            if deep:
                # The same enable through two levels of copies, from the cycle before:
                # the cycle after next is a store cycle.
                store_ahead = Signal(name="store_ahead")
                terms = [in_phase[Phase.DRAIN] & _eq_const(drain_left, 1) & cmd_run,
                         early_cmd_write & _eq_const(early["dat_w"][:3], 3),
                         in_phase[Phase.CLEAR] & ~last_group & ~_eq_const(group, G - 2)]
                if G >= 2:      # the CMD cycle itself precedes group 1's CLEAR cycle by two
                    terms.append(cmd_clear)
                m.d.comb += store_ahead.eq(Cat(*terms).any())
                store_lanes = replicated(m, store_ahead, P, "acc_store", tree=True)
            else:
                store_next = Signal(name="store_next")
                m.d.comb += store_next.eq((in_phase[Phase.DRAIN] & ~drain_left.any() & cmd_run)
                                          | cmd_clear | (in_phase[Phase.CLEAR] & ~last_group))
                store_lanes = replicated(m, store_next, P, "acc_store")
            m.d.comb += [
                acc_mem.write_en.eq(store_lanes),
                acc_mem.write_data.eq(shift_acc.acc.as_value()
                                      & Cat(*(run_lanes[i].replicate(A) for i in range(P)))),
                group_out.eq(binarize.y & run_lanes),
            ]
            for g in range(G):
                with m.If(group_hit[g]):
                    m.d.sync += out_regs[g].eq((group_out & store_lanes)
                                               | (out_regs[g] & ~store_lanes))
            if deep:
                # STATUS.acc_sat two cycles after the write-back: each lane's flag into a
                # register (the accumulator's carry chain ends there), then an OR per
                # block of lanes (register reads are captured late enough, see below).
                sat_lanes = Signal(P, name="acc_sat_lanes")
                m.d.sync += sat_lanes.eq(shift_acc.saturated & store_lanes & run_lanes)
                sat_blocks = Signal(-(-P // LANE_BLOCK), name="acc_sat_blocks")
                m.d.sync += sat_blocks.eq(_any_per_block(sat_lanes))
                with m.If(sat_blocks.any()):
                    m.d.sync += acc_sat.eq(1)
        with m.If(in_phase[Phase.WRITE]):
            with m.If(cmd_run):
                if not L:
                    m.d.comb += [acc_mem.write_data.eq(shift_acc.acc),
                                 acc_mem.write_en.eq(all_lanes),
                                 group_out_we.eq(1), group_out.eq(binarize.y)]
                if not deep:
                    with m.If(shift_acc.saturated.any()):
                        m.d.sync += acc_sat.eq(1)
            next_group(Phase.READ)
        with m.Elif(in_phase[Phase.CLEAR]):
            # acc_mem.write_data and group_out stay 0.
            if not L:
                m.d.comb += [acc_mem.write_en.eq(all_lanes), group_out_we.eq(1)]
            next_group(Phase.CLEAR)

        # CALFLAG and cal_range take the FSM's flags in the verification read, or, in a
        # pipelined macro, from a register in the write-back cycle (the flags come from
        # the readout, and the OR over the lanes would follow it in one cycle).
        if L:
            flags_q = Signal(P, name="cal_flags_q")
            with m.If(calibrated):
                m.d.sync += flags_q.eq(calibration.flags)
            flags_we = Signal(name="cal_flags_we")
            m.d.comb += flags_we.eq(in_phase[Phase.WRITE] & cmd_calibrate)
            flags = flags_q
        else:
            flags_we, flags = calibrated, calibration.flags
        if deep:
            # The OR over the lanes in two steps: per block of lanes into a register with
            # the flags, then over the blocks.
            flag_blocks = Signal(-(-P // LANE_BLOCK), name="cal_flag_blocks")
            with m.If(calibrated):
                m.d.sync += flag_blocks.eq(_any_per_block(calibration.flags))
            any_flag = flag_blocks.any()
        else:
            any_flag = flags.any()
        with m.If(flags_we & any_flag):
            m.d.sync += cal_range.eq(1)
        for g in range(G):
            if not L:
                with m.If(group_out_we & group_hit[g]):
                    m.d.sync += out_regs[g].eq(group_out)
            with m.If(flags_we & group_hit[g]):
                m.d.sync += calflag_regs[g].eq(flags)

        # Command acceptance (only while idle: a CMD write while busy is a BUSY error).
        with m.If(csr_write[CSR.CMD]):
            m.d.sync += [cmd.eq(dat_w[:_CMD_NPLANES.stop]), busy.eq(1), done.eq(0),
                         busy_count.eq(0), group_reg.eq(0)]
            with m.If(_eq_const(opcode, 3)):
                m.d.sync += phase.eq(Phase.CLEAR)
            with m.Else():
                m.d.sync += phase.eq(Phase.READ)
            with m.If(_eq_const(opcode, 2)):
                m.d.sync += cal_range.eq(0)

        # --- bus reads ------------------------------------------------------------------------
        # Registers and packed words: captured in cycle t.
        csr_values = {
            CSR.CMD: cmd,
            CSR.STATUS: Cat(busy, done, error, cal_range, acc_sat),
            CSR.ERRCODE: errcode,
            CSR.ERRADDR: erraddr,
            CSR.CYCLES: cycles,
        }
        for c in csr_list:
            if c["access"] == "ro" and c["offset"] not in csr_values:
                csr_values[c["offset"]] = Const(c["reset"], 32)
        if p.has("readout"):
            csr_values[CSR.SAT] = sat
            csr_values[CSR.QSHIFT] = qshift

        def packed(bits):
            padded = Cat(bits, Const(0, words * BUS_DATA_BITS - C))
            return [padded[BUS_DATA_BITS * j:BUS_DATA_BITS * (j + 1)] for j in range(words)]

        input_words = {b << cb | c: inputs[b * R + c * chunk_rows:b * R + (c + 1) * chunk_rows]
                       for b in range(B) for c in range(chunks)}
        # The L = 4 build captures register words in t+2, when it acts on the access;
        # STATUS.acc_sat is then already set for a read decoded in the last write-back
        # cycle.
        reg_read, reg_hit_of, reg_fields = read, hit, fields_of

        def word_select(field, items, name):
            """Register word ``items[index]`` of the field ``field`` of the access: at L = 4
            an AND-OR of the items gated by one-hot selects registered from the first
            registered decode (from t+2's offset, the select's default, no item at that
            index, became a reset of the word register behind the whole decode)."""
            region, *names = field
            if not deep:
                return _select(m, Cat(*(reg_fields[region][n] for n in names)), items,
                               BUS_DATA_BITS, name)
            if not isinstance(items, dict):
                items = dict(enumerate(items))
            index = Cat(*(early["fields_of"][region][n] for n in names))
            keys = sorted(items)
            selects = Signal(len(keys), name=f"{name}_select_d", attrs={REPLICA_ATTR: 1},
                             reset_less=True)
            m.d.sync += selects.eq(Cat(*(_eq_const(index, key) for key in keys)))
            word = Signal(BUS_DATA_BITS, name=name)
            m.d.comb += word.eq(_or_words(Cat(*(
                Cat(items[key], Const(0, BUS_DATA_BITS - len(Value.cast(items[key]))))
                & selects[j].replicate(BUS_DATA_BITS) for j, key in enumerate(keys))),
                len(keys), BUS_DATA_BITS))
            return word

        register_words = [
            (Region.CSR, word_select((Region.CSR, "reg"), csr_values, "csr_word")),
            (Region.FLIP, word_select((Region.FLIP, "word"), packed(flip), "flip_word")),
            (Region.OUT, word_select((Region.OUT, "word"), packed(out), "out_word")),
            (Region.CALFLAG, word_select((Region.CALFLAG, "word"), packed(calflag),
                                         "calflag_word")),
            (Region.INPUT, word_select((Region.INPUT, "chunk", "plane"), input_words,
                                       "input_word")),
        ]
        register_rdata = Signal(BUS_DATA_BITS)
        if deep:
            # Every region's word is captured in every cycle, and the OR takes the one
            # read, by read flags registered from the first registered decode (a decode
            # of t+2's registers, or a flag in front of every word bit's reset, was a
            # wire across the die).
            early_read = early["accepted"] & ~early["we"]
            word_reads = decoded(Cat(*(early_read & early["hit"][number]
                                       for number, _ in register_words)), "region_word_read")
            word_reads_q = Signal(len(register_words), name="region_word_read_q")
            m.d.sync += word_reads_q.eq(word_reads)
            region_words = []
            for j, (number, value) in enumerate(register_words):
                word = Signal(BUS_DATA_BITS, name=f"{_region_name(number)}_word_q",
                              reset_less=True)
                m.d.sync += word.eq(value)
                region_words.append(word & word_reads_q[j].replicate(BUS_DATA_BITS))
            m.d.sync += register_rdata.eq(_or_words(Cat(*region_words), len(region_words),
                                                    BUS_DATA_BITS))
        else:
            with m.If(reg_read):
                for number, value in register_words:
                    with m.If(reg_hit_of[number]):
                        m.d.sync += register_rdata.eq(value)
            with m.Else():
                m.d.sync += register_rdata.eq(0)

        # Memory words: address presented in cycle t, lane selected in cycle t+1.
        memory_reads = list(row_mems) + list(lane_mems) + [Region.ACC]
        if p.has("table"):
            memory_reads.append(Region.TABLE)
        read_from = {n: Signal(name=f"read_from_{_region_name(n)}") for n in memory_reads}
        row_slot_q = Signal(max(1, sb))
        row_chunk_q = Signal(max(1, cb))
        lane_slot_q = Signal(max(1, sb))
        m.d.sync += [read_from[n].eq(read & hit[n]) for n in memory_reads]
        m.d.sync += [row_slot_q.eq(read_fields[Region.WEIGHT]["slot"]),
                     row_chunk_q.eq(read_fields[Region.WEIGHT]["chunk"]),
                     lane_slot_q.eq(read_fields[Region.COMP]["slot"])]

        # With a pipeline, the lane multiplexers are split: blocks of 2^k lanes in cycle
        # t+1 into registers, the blocks in cycle t+2 (the lanes of a wide macro are
        # spread over the die, and one multiplexer over all of them was the longest path).
        k = min(sb, 3) if L else sb

        # Each block's multiplexer reads its own copy of the slot's low bits.
        slot_low = {}
        if k < sb:
            assert 1 << k == LANE_BLOCK
            if deep:
                # A tree of copies from the access's own address (a copy in cycle t, a
                # copy per block in t+1): the decoded address's one hop to every block
                # was a wire across the die.
                region_fields = {r["region"]: r["fields"] for r in p.regions()}
                slot_low = {kind: block_copies(
                                m, decode(region_fields[number], wb.adr[:rs])[0]["slot"][:k], P,
                                f"{kind}_slot_low", suffix="_q", tree=True)
                            for kind, number in (("row", Region.WEIGHT), ("lane", Region.COMP))}
            else:
                slot_low = {"row": block_copies(m, row_fields["slot"][:k], P, "row_slot_low",
                                                suffix="_q"),
                            "lane": block_copies(m, lane_fields["slot"][:k], P, "lane_slot_low",
                                                 suffix="_q")}

        def select_lane(slot_q, data, width, name, kind, read_flag):
            if k == sb:
                return _select_packed(m, slot_q[:sb], data, P, width, name)
            blocks = -(-P // (1 << k))
            firsts = Signal(blocks * width, name=f"{name}_blocks", reset_less=deep)
            m.d.sync += firsts.eq(Cat(*(
                _select_packed(m, slot_low[kind][b * k:(b + 1) * k],
                               data[b * (1 << k) * width:min(P, (b + 1) << k) * width],
                               min(P, (b + 1) << k) - (b << k), width, f"{name}_block{b}")
                for b in range(blocks))))
            high = Signal(sb - k, name=f"{name}_slot_high")
            m.d.sync += high.eq(slot_q[k:sb])
            if not deep:
                return _select_packed(m, high, firsts, blocks, width, name)
            # The L = 4 build selects in three cycles: a lane per block (t+2), a block
            # per group of TREE_FANOUT blocks (t+3), then the group (t+4).
            fan_bits = min(TREE_FANOUT.bit_length() - 1, sb - k)
            fan = 1 << fan_bits
            groups = -(-blocks // fan)
            seconds = Signal(groups * width, name=f"{name}_groups", reset_less=True)
            spans = [(j * fan, min(blocks, (j + 1) * fan)) for j in range(groups)]
            # Each group selects its block from a copy of its own of the select bits (one
            # register for all groups was a wire to every bit of every group).
            block_selects = []
            for j in range(groups):
                copy = Signal(max(1, fan_bits), name=f"{name}_slot_high_g{j}",
                              attrs={REPLICA_ATTR: 1} if groups > 1 else {}, reset_less=True)
                m.d.sync += copy.eq(slot_q[k:k + fan_bits])
                block_selects.append(copy[:fan_bits])
            m.d.sync += seconds.eq(Cat(*(
                _select_packed(m, block_selects[j], firsts[lo * width:hi * width], hi - lo, width,
                               f"{name}_group{j}")
                for j, (lo, hi) in enumerate(spans))))
            # The group as a one-hot select, gated by the region's read flag: the last
            # stage is then one AND-OR with the other regions' (see the answer below).
            group_select = Signal(groups, name=f"{name}_group_select")
            m.d.sync += group_select.eq(
                _onehot(m, high[fan_bits:], groups, f"{name}_group_hit")
                & read_flag.replicate(groups))
            return _or_words(Cat(*(seconds[j * width:(j + 1) * width]
                                   & group_select[j].replicate(width) for j in range(groups))),
                             groups, width)

        # The read flags of the access's cycle: the L = 4 build gates each region's lane
        # words with them in the cycle that selects the group (select_lane).
        read_flags = read_from
        if L:
            # Everything answers one cycle later: the read flags too (and, below L = 4,
            # the register words).
            delayed = {}
            for n in read_from:
                delayed[n] = Signal(name=f"read_from_{_region_name(n)}_q2")
                m.d.sync += delayed[n].eq(read_from[n])
            read_from = delayed
        # Regions whose words select_lane gates by their read flag (the L = 4 build's).
        lane_selected = set(row_mems) | set(lane_mems) | {Region.ACC} if deep and k < sb else set()

        memory_words = []
        for number, mem in row_mems.items():
            name = _region_name(number)
            column = select_lane(row_slot_q, mem.read_data, R, f"{name}_column", "row",
                                 read_flags[number])
            chunk_q = row_chunk_q
            for stage in range(2, 4 if deep else 3) if L else ():
                delayed_chunk = Signal(max(1, cb), name=f"{name}_chunk_q{stage}")
                m.d.sync += delayed_chunk.eq(chunk_q)
                chunk_q = delayed_chunk
            word = _select_packed(m, chunk_q[:cb], column, chunks, chunk_rows,
                                  f"{name}_word")
            memory_words.append((number, word))
        for number, mem in {**lane_mems, Region.ACC: acc_mem}.items():
            width = lane_bits[number]
            lane = select_lane(lane_slot_q, mem.read_data, width,
                               f"{_region_name(number)}_lane", "lane", read_flags[number])
            if number in (Region.THRESH, Region.OFFSET, Region.ACC):
                word = Signal(BUS_DATA_BITS, name=f"{_region_name(number)}_word")
                m.d.comb += word.eq(lane.as_signed())
                lane = word
            memory_words.append((number, lane))
        if p.has("table"):
            table_word = Signal(BUS_DATA_BITS)
            if L:
                m.d.sync += table_word.eq(array.table_rdata)
            else:
                m.d.comb += table_word.eq(array.table_rdata)
            memory_words.append((Region.TABLE, table_word))

        if L and not deep:
            register_q2 = Signal(BUS_DATA_BITS, name="register_rdata_q2")
            m.d.sync += register_q2.eq(register_rdata)
            register_rdata = register_q2

        if deep:
            # The deep bus registers the answer on its way out (with the ack), as one
            # OR: the lane words are already gated by their region's read flag, and the
            # register word is 0 unless a register region is read.
            gated = [word if number in lane_selected else
                     word & read_from[number].replicate(len(word))
                     for number, word in memory_words]
            m.d.sync += wb.dat_r.eq(_or_words(
                Cat(*(Cat(word, Const(0, BUS_DATA_BITS - len(word))) for word in gated),
                    register_rdata), len(gated) + 1, BUS_DATA_BITS))
        else:
            with m.If(Cat(*(read_from[n] for n, _ in memory_words)).any()):
                for number, word in memory_words:
                    with m.If(read_from[number]):
                        m.d.comb += wb.dat_r.eq(word)
            with m.Else():
                m.d.comb += wb.dat_r.eq(register_rdata)

        return m


def _or_words(value, count, width):
    """Bitwise OR of the ``count`` words of ``width`` bits packed in ``value``."""
    result = value[:width]
    for j in range(1, count):
        result = result | value[j * width:(j + 1) * width]
    return result


def _region_name(number):
    """Lower-case name of a region number, for signal names."""
    for name, value in vars(Region).items():
        if value == number and name.isupper() and name != "BITS":
            return name.lower()
    raise ValueError(f"no region numbered {number}")
