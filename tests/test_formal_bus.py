# amaranth: UnusedElaboratable=no
"""Formal proof (yowasp-sby, k-induction with yices) that an invalid bus access changes nothing.

The harness drives the macro's Wishbone port with free values in every cycle and
classifies each access with the rules of ``docs/ARCHITECTURE.md`` section 6, written
here independently of the RTL's decoder: the valid word addresses are enumerated from
``MacroParams.regions()`` and ``csrs()``, and BAD_SEL, BAD_ADDRESS, READ_ONLY, BUSY,
BAD_COMMAND and BAD_VALUE are plain expressions of the access. For every reachable state
it proves, in the cycle after an invalid access:

* the error registers: STATUS.error is set, and when it was clear before, ERRCODE is
  the code of the first rule that applies (section 6 check order) and ERRADDR the
  address; a valid access never sets STATUS.error;
* ``ack`` follows ``p.bus_latency`` cycles after every access whose master kept CYC
  high up to then, never otherwise (the master may drop CYC at any time, abandoning the
  access in flight: no ack outside CYC, none for an abandoned access, and no new access
  before the abandoned one's ack slot has passed), and a faulty read returns 0;
* idle (BUSY low, for L = 4 since the cycle before, in which that build still sets
  STATUS.acc_sat): no memory is written in the cycle where the access's writes would
  land (every column memory's write enables and the TABLE write enable are 0), and
  every register of the macro holds its value up to the cycle after the one in which
  the macro acts on the access, except those of the components in
  :data:`BUS_PIPELINE_PATHS` (the bus front end, whose error registers are checked
  above; the memory port, whose memories are checked by their write enables; the
  register read word; the compute array's readout pipeline). The registers are found by
  walking the elaborated design, so a register added to any other component is checked
  without being named here;
* busy: no bus-written memory (WEIGHT, STUCK_*, OFFSET, GAIN, THRESH, TABLE) is written,
  the COMP write enable is the calibration sequencer's own, and the registers only the
  bus writes (INPUT, FLIP, CMD, SAT, QSHIFT) hold.

The parameter set is tiny (1 x 2, two column groups, B = 2, K = 2, every non-ideality),
so the proof stays narrow and fast; the properties do not depend on the sizes. It is
proved at every pipeline depth: without a pipeline (ack in t+1), with L = 1, 2 and 3 (ack
in t+2, memory writes a cycle late) and with L = 4 (ack in t+5, the fault recorded in t+1
from checks registered in t, the access acting in t+2 from a decode registered twice).
The harness drives CYC, STB and the rest freely in every cycle, so every way of
abandoning an access is covered.
"""

import pytest
from amaranth.asserts import AnySeq
from amaranth.hdl import (Assert, Cat, Const, Cover, Elaboratable, Fragment, Module,
                          ResetSignal, Signal)

from models.params import CSR, GAIN_BITS, NONIDEALITIES, QSHIFT_BITS, ErrCode, MacroParams, Op, Region
from rtl.cim_macro import CimMacro
from rtl.column_memory import ColumnMemory
from verif.address_space import region_words
from verif.formal import run_sby
from rtl.compute_array import ComputeArray

PARAMS = MacroParams(rows=1, cols=2, input_bits=2, comp_rows=2, cols_per_cycle=1,
                     nonideal=NONIDEALITIES, counters=True)
#: The same with the readout pipeline of the FPGA builds: ack two cycles after the
#: access, memory writes one cycle late from registers.
PIPELINED = MacroParams(rows=1, cols=2, input_bits=2, comp_rows=2, cols_per_cycle=1,
                        nonideal=NONIDEALITIES, pipeline=1)
#: The FPGA-clock build (L = 4): ack four cycles after the access, which acts a cycle
#: late from a registered decode. One column group, so that its CALIBRATE (G (S + 3 +
#: (S + 1) L) = 12 cycles) fits the same induction depth as the L = 1 set's.
DEEP = MacroParams(rows=1, cols=2, input_bits=2, comp_rows=2, cols_per_cycle=2,
                   nonideal=NONIDEALITIES, pipeline=4, counters=True)
#: L = 2 and 3 (ack in t+2 as with L = 1, longer readout pipelines): one column group, so
#: that CALIBRATE (G (S + 3 + (S + 1) L) = 8 and 10 cycles) fits the same depth.
MIDDLE = [MacroParams(rows=1, cols=2, input_bits=2, comp_rows=2, cols_per_cycle=2,
                      nonideal=NONIDEALITIES, pipeline=L) for L in (2, 3)]

#: Components (submodule paths) whose registers an invalid access may change: they follow
#: the bus in every cycle (handshake, decode, error registers, read answer, the memories'
#: write pipelines) or the memories' read ports, which show the bus's address while idle
#: (the compute array's readout pipeline). Every other register must hold.
BUS_PIPELINE_PATHS = {("front",), ("memories",), ("registers", "read"), ("lanes", "array")}
#: The activity counters count every access, an invalid one too (a named exemption,
#: like the error registers): the sets without a pipeline and with L = 4 build them.
COUNTER_PATHS = {("counters",)}
#: Components whose registers copy checked state a few cycles late (the L = 4 blocks'
#: copies of INPUT, of its planes' ones counts and of the plane select): they may still
#: be settling from an earlier valid write when an invalid access comes.
COPY_PATHS = {("planes",)}
#: Registers only the bus writes (they must hold even while busy): (component, name or
#: name prefix ending in "_").
BUS_ONLY = {("registers", "input_"), ("registers", "flip_"), ("registers", "sat"),
            ("registers", "qshift"), ("sequencer", "cmd")}


def address_classes(p):
    """Valid word addresses by class, from the register map alone."""
    classes = dict(valid=set(), read_only=set(), memory=set(), region={})
    for r in p.regions():
        if r["region"] == Region.CSR:
            words = {(Region.CSR << p.region_shift) | c["offset"] for c in p.csrs()}
        else:
            words = set(region_words(p, r))
        classes["valid"] |= words
        classes["region"][r["name"]] = words
        if r["region"] != Region.CSR:
            classes["memory"] |= words
        if r["access"] == "ro":
            classes["read_only"] |= words
    classes["read_only"] |= {c["offset"] for c in p.csrs() if c["access"] == "ro"}
    return classes


def _walk(fragment, path=()):
    yield path, fragment
    for sub, name, _ in fragment.subfragments:
        yield from _walk(sub, path + (name,))


def inspect(fragment):
    """Registers (sync-assigned signals) and the memory write enables of the macro."""
    registers, enables, table_we = {}, {}, None
    for path, frag in _walk(fragment):
        for obj in frag.origins or ():
            if isinstance(obj, ColumnMemory):
                enables[path[-1]] = obj.write_en
            if isinstance(obj, ComputeArray) and hasattr(obj, "table_we"):
                table_we = obj.table_we
        for stmt in frag.statements.get("sync", ()):
            for sig in stmt._lhs_signals():
                registers[path + (sig.name,)] = sig
    return registers, enables, table_we


class BusHarness(Elaboratable):
    """The macro with a free bus and the properties of the module docstring."""

    def __init__(self, p, hold_errcode=False):
        self.p = p
        self.hold_errcode = hold_errcode        # a wrong property, to show the proof can fail
        self.dut = CimMacro(p)
        self.fragment = Fragment.get(self.dut, None)
        self.registers, self.enables, self.table_we = inspect(self.fragment)

    def elaborate(self, platform):
        p, dut = self.p, self.dut
        m = Module()
        m.submodules.dut = self.fragment
        wb = dut.wb
        for name in ("adr", "dat_w", "sel", "cyc", "stb", "we"):
            sig = getattr(wb, name)
            m.d.comb += sig.eq(AnySeq(len(sig)))
        rst = ResetSignal()
        cls = address_classes(p)

        def one_of(addrs):
            return Cat(*(wb.adr == a for a in sorted(addrs))).any() if addrs else Const(0, 1)

        adr, data, we = wb.adr, wb.dat_w, wb.we
        csr = {name: (Region.CSR << p.region_shift) | getattr(CSR, name)
               for name in ("CMD", "SAT", "QSHIFT", "STATUS")}
        # Section 6: ack p.bus_latency cycles after the access if CYC stays high up to
        # then; no new access while one is in flight, up to and including its ack slot.
        lat = p.bus_latency
        access = Signal()

        def later(value, cycles, name):
            """``value`` ``cycles`` cycles ago (0 across a reset)."""
            for k in range(cycles):
                reg = Signal(len(value), name=f"{name}_{k + 1}")
                m.d.sync += reg.eq(value & ~rst.replicate(len(value)))
                value = reg
            return value

        in_flight = [later(access, k, "in_flight") for k in range(1, lat + 1)]
        m.d.comb += access.eq(wb.cyc & wb.stb & ~Cat(*in_flight).any())
        # The access of `lat` cycles ago, with CYC high in every cycle since: the only
        # one that may be acknowledged now.
        held, helds = access, []
        for k in range(lat):
            reg = Signal(name=f"held_{k + 1}")
            m.d.sync += reg.eq(held & wb.cyc & ~rst)
            held = reg
            helds.append(reg)
        owed = held & wb.cyc
        # Induction invariant: the macro's own in-flight and CYC-held registers are the
        # harness's (without it, induction starts from states where they disagree).
        front = {name: sig for (*path, name), sig in self.registers.items() if path == ["front"]}
        slots = [front["bus_ack_slot"]]
        heldq = [front["bus_ack_live"]] if lat > 1 else []
        if lat > 1:  # (at latency 1 the ack slot is the only bus register)
            slots = [*front["bus_pending"], *slots]
            heldq = [*front["bus_live"], *heldq]
        with m.If(~rst):
            m.d.comb += Assert(Cat(*slots) == Cat(*in_flight))
            if heldq:
                m.d.comb += Assert(Cat(*heldq) == Cat(*helds))
        # The cycle after the access in which the macro acts on it (register writes, the
        # TABLE write: 0 unless the decode is registered, 2 with L = 4) and the one in
        # which its memory writes land (a cycle later with a pipeline, two with L = 4).
        acts = 2 if lat >= 4 else 0
        lands = acts + (2 if lat >= 4 else 1 if p.pipeline else 0)

        def sign_extends(width):
            top = data[width - 1:]
            return top.all() | ~top.any()

        opcode, nplanes = data[:3], data[8:12]
        reserved = Cat(data[3], data[5:8], data[12:]).any()
        is_run = opcode == Op.RUN
        cmd_ok = ((opcode == Op.RUN) | (opcode == Op.CALIBRATE) | (opcode == Op.CLEAR)) & ~reserved & \
            (is_run & (nplanes <= p.input_bits) | ~is_run & ~data[4] & (nplanes == 0))
        bad_value = one_of(cls["region"]["THRESH"]) & ~sign_extends(p.acc_bits)
        if p.has("offset"):
            bad_value |= one_of(cls["region"]["OFFSET"]) & ~sign_extends(p.readout_bits)
        if p.has("table"):
            bad_value |= one_of(cls["region"]["TABLE"]) & ~sign_extends(p.readout_bits)
        if p.has("gain"):
            bad_value |= one_of(cls["region"]["GAIN"]) & data[GAIN_BITS:].any()
        busy_writes = adr == csr["CMD"]
        if p.has("readout"):
            bad_value |= (adr == csr["SAT"]) & (data > p.readout_max)
            bad_value |= (adr == csr["QSHIFT"]) & data[QSHIFT_BITS:].any()
            busy_writes |= (adr == csr["SAT"]) | (adr == csr["QSHIFT"])

        rules = [  # section 6 check order
            (ErrCode.BAD_SEL, we & (wb.sel != 0xF)),
            (ErrCode.BAD_ADDRESS, ~one_of(cls["valid"])),
            (ErrCode.READ_ONLY, we & one_of(cls["read_only"])),
            (ErrCode.BUSY, dut.busy & (one_of(cls["memory"]) | we & busy_writes)),
            (ErrCode.BAD_COMMAND, we & (adr == csr["CMD"]) & ~cmd_ok),
            (ErrCode.BAD_VALUE, we & bad_value),
        ]
        invalid = Signal()
        code = Signal(3)
        m.d.comb += invalid.eq(access & Cat(*(cond for _, cond in rules)).any())
        with m.If(rules[0][1]):
            m.d.comb += code.eq(rules[0][0])
        for value, cond in rules[1:]:
            with m.Elif(cond):
                m.d.comb += code.eq(value)

        # One cycle later: what the access was.
        was_access, was_invalid, was_read, was_idle = Signal(), Signal(), Signal(), Signal()
        was_error, was_code, was_adr = Signal(), Signal(3), Signal(len(adr))
        m.d.sync += [was_access.eq(access & ~rst), was_invalid.eq(invalid & ~rst),
                     was_read.eq(~we), was_idle.eq(~dut.busy), was_error.eq(dut.error),
                     was_code.eq(code), was_adr.eq(adr)]
        errcode, erraddr = self.registers["front", "errcode"], self.registers["front", "erraddr"]
        # A reset in the cycle being checked would change every register.
        now = ~rst
        # ... and `lat` cycles later (the ack and the read data).
        acked = later(was_access, lat - 1, "acked")
        acked_invalid = later(was_invalid, lat - 1, "acked_invalid")
        acked_read = later(was_read, lat - 1, "acked_read")
        m.d.comb += [Assert(~now | (wb.ack == owed)), Assert(~wb.ack | wb.cyc)]
        # The error registers record the access at its end of cycle t (t+1 with L = 4,
        # from its checks registered in t): checked a cycle later.
        if lat >= 4:
            rec_access, rec_invalid = later(was_access, 1, "rec_access"), later(was_invalid, 1, "rec_invalid")
            rec_code, rec_adr = later(was_code, 1, "rec_code"), later(was_adr, 1, "rec_adr")
            rec_error = later(dut.error, 1, "rec_error")    # ERROR in the recording cycle
        else:
            rec_access, rec_invalid, rec_code, rec_adr, rec_error = (
                was_access, was_invalid, was_code, was_adr, was_error)
        with m.If(now & rec_invalid):
            m.d.comb += Assert(dut.error)
            with m.If(~rec_error):
                m.d.comb += [Assert(errcode == rec_code), Assert(erraddr == rec_adr)]
        with m.If(now & wb.ack & acked_invalid & acked_read):
            m.d.comb += Assert(wb.dat_r == 0)
        with m.If(now & rec_access & ~rec_invalid & ~rec_error):
            m.d.comb += Assert(~dut.error)

        # Registers: hold after an invalid access (all when idle; bus-only ones always),
        # up to the cycle after the one in which the macro acts on it.
        idle = Signal()
        if lat >= 4:
            # The L = 4 build sets STATUS.acc_sat two cycles after BUSY falls (from each
            # lane's registered flag, then an OR per block of lanes): idle means BUSY low
            # since two cycles before.
            busy_before = Signal(2)
            m.d.sync += busy_before.eq(Cat(dut.busy, busy_before[0]))
            m.d.comb += idle.eq(~dut.busy & ~busy_before.any())
        else:
            m.d.comb += idle.eq(~dut.busy)
        # Registers that follow other state a cycle late (the search's registered result)
        # settle in the cycles right after a reset, whatever the bus does: the hold check
        # starts with accesses two cycles after the reset.
        settled = later(Const(1, 1), 2, "settled")
        holds = [(later(invalid & settled, k, "invalid_then"), later(idle, k, "idle_then"))
                 for k in range(1, acts + 2)]
        checked_idle, checked_busy = [], []
        for path, sig in self.registers.items():
            *component, leaf = path
            if any(tuple(component[:k]) in BUS_PIPELINE_PATHS | COPY_PATHS | COUNTER_PATHS
                   for k in range(1, len(component) + 1)) \
                    and not (self.hold_errcode and path == ("front", "errcode")):
                continue
            name = ".".join(path)
            prev = Signal.like(sig, name=f"prev_{name.replace('.', '_')}")
            m.d.sync += prev.eq(sig)
            bus_only = any(tuple(component) == (part,) and
                           (leaf.startswith(rule) if rule.endswith("_") else leaf == rule)
                           for part, rule in BUS_ONLY)
            for then_invalid, then_idle in holds:
                with m.If(now & then_invalid & (then_idle | Const(1 if bus_only else 0, 1))):
                    m.d.comb += Assert(sig == prev)
            (checked_busy if bus_only else checked_idle).append(name)
        self.checked = dict(idle=checked_idle + checked_busy, busy=checked_busy)

        # Memories: no write in the cycle where an invalid access's writes would land
        # (bus-written ones ever, the sequencer's COMP and ACC while idle).
        sequencer_written = {"comp_mem", "acc_mem"}
        idle_lands = later(idle, lands, "idle_lands")   # (outside the If: it has registers)
        with m.If(later(invalid, lands, "invalid_lands") & ~rst):
            for name, en in self.enables.items():
                if name not in sequencer_written:
                    m.d.comb += Assert(~en.any())
                else:
                    with m.If(idle_lands):
                        m.d.comb += Assert(~en.any())
        if self.table_we is not None:
            # The transfer table is written in the cycle the macro acts, pipeline or not.
            with m.If(later(invalid, acts, "invalid_acts") & ~rst):
                m.d.comb += Assert(~self.table_we)

        # Not vacuous: invalid accesses happen while idle and while busy.
        # An abandoned write (its ack slot passed without an ack), then a new access.
        abandoned = Signal()
        m.d.sync += abandoned.eq(now & acked & ~acked_read & ~wb.ack)
        m.d.comb += [Cover(now & was_invalid & was_idle & (was_code == ErrCode.BAD_VALUE)),
                     Cover(now & was_invalid & ~was_idle & (was_code == ErrCode.BUSY)),
                     Cover(now & abandoned & access)]
        return m


def test_address_classes_match_the_register_map():
    cls = address_classes(PARAMS)
    assert (Region.CSR << PARAMS.region_shift | CSR.CMD) in cls["valid"] - cls["read_only"]
    assert cls["region"]["ACC"] <= cls["read_only"] and cls["region"]["WEIGHT"] <= cls["memory"]
    assert len(cls["region"]["WEIGHT"]) == PARAMS.cols * PARAMS.chunks
    assert len(cls["region"]["TABLE"]) == 1 << PARAMS.readout_bits


def test_harness_finds_the_state():
    h = BusHarness(PARAMS)
    Fragment.get(h, None)
    assert {"weight_mem", "comp_mem", "acc_mem", "thresh_mem", "offset_mem", "gain_mem",
            "stuck_mask_mem", "stuck_value_mem"} <= set(h.enables)
    assert h.table_we is not None
    assert {("front", "errcode"), ("front", "erraddr")} <= set(h.registers)
    # The busy-time check must not be vacuous: the bus-only registers were found.
    assert any(n.startswith("registers.input_") for n in h.checked["busy"])
    assert "sequencer.cmd" in h.checked["busy"] and "registers.sat" in h.checked["busy"]
    # Every component outside the bus pipeline has registers under the check.
    for part in ("registers", "sequencer", "lanes.shift_acc", "lanes.calibration"):
        assert any(n.startswith(part + ".") for n in h.checked["idle"]), part
    assert any(path[0] == "counters" for path in h.registers)
    assert len(h.checked["idle"]) > len(h.checked["busy"])
    print("checked registers:", h.checked)


def _sby(harness, task, tmp_path):
    # k-induction: the window must be longer than the longest command on this parameter
    # set (G (B + 2) = G (S + 3) = 8 cycles), so that induction traces starting in an
    # unreachable sequencer state (say BUSY low in a write-back phase) reach a reachable
    # one; at depth 3 such traces write ACC while "idle".
    # The pipelined set's CALIBRATE takes G (S + 3 + (S + 1) L) = 12 cycles: 4 more.
    extra = 4 if harness.p.pipeline else 0
    return run_sby(harness, "bus", {task: (12 if task == "prove" else 14) + extra}, tmp_path)


@pytest.mark.parametrize("task", ["prove", "cover"])
@pytest.mark.parametrize("p", [PARAMS, PIPELINED, *MIDDLE, DEEP], ids=["L0", "L1", "L2", "L3", "L4"])
def test_formal_invalid_access_changes_nothing(task, p, tmp_path):
    result, summary = _sby(BusHarness(p), task, tmp_path)
    assert result.returncode == 0, "\n".join(summary) or result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / f"bus_{task}" / "PASS").exists(), "\n".join(summary)


def test_formal_catches_a_wrong_property(tmp_path):
    """The same proof with ERRCODE wrongly required to hold must fail (the base case finds
    the first faulty access after reset)."""
    result, summary = _sby(BusHarness(PARAMS, hold_errcode=True), "prove", tmp_path)
    assert result.returncode != 0 and not (tmp_path / "bus_prove" / "PASS").exists(), "\n".join(summary)
    assert any("FAIL" in line for line in summary), "\n".join(summary)
