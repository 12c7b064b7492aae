# amaranth: UnusedElaboratable=no
"""Tests of ``rtl/register_file.py`` (RegisterFile and its RegisterReadWord) alone,
against section 6 and the port row of section 7 of ``docs/ARCHITECTURE.md``.

The testbench plays the bus front end: it hands the register file access records
(``tests/bus_contract.py``) in the cycle each access acts in, and at L = 4 the early
record a cycle before, spaced as the bus spaces accesses; in the other cycles the
records carry random fields with ``valid`` low. The sequencer's and the front end's
inputs (BUSY, CMD, CYCLES, the error registers, the STATUS events, OUT and CALFLAG group
writes with lane masks, the activity counters' values) change at random every cycle. A
register model written here from the contract predicts INPUT, FLIP, SAT, QSHIFT, DONE,
``group_flip``, ``clear_errors``, ``clear_counters`` (a STATUS write with bit 5) and the
read word: a read returns the addressed word with the state of its acting cycle,
``bus_latency - acts_after`` cycles later (a cycle less where the front end registers
the answer), and 0 for anything but a register region.
"""

import pytest

from models.energy import COUNTER_BITS
from models.params import (BUS_DATA_BITS, CONTRACT_VERSION, COUNTERS_FEATURE_BIT, CSR,
                           NONIDEALITIES, MacroParams, Op, Region, Status)
from rtl.register_file import RegisterFile
from verif.address_space import region_words
from .bus_contract import (ACTS_AFTER, BUS_LATENCY, COUNTER_CSRS, PIPELINES, WORD, address_map,
                           record, region_of)
from .component_bench import Inputs, random_bits, random_record, run_bench

PARAMS = {
    # SAT/QSHIFT and the activity counters built, three planes, two groups of three lanes.
    "2x6-P3-B3-all-counters": dict(rows=2, cols=6, cols_per_cycle=3, input_bits=3, comp_rows=2,
                                   nonideal=NONIDEALITIES, counters=True),
    # Two row chunks, two packed words (the last one short), five groups, no readout.
    "64x40-P8-B2": dict(rows=64, cols=40, cols_per_cycle=8, input_bits=2, nonideal=("offset",)),
    # A chunk narrower than a word (20 rows), 33 columns in three groups of 11.
    "20x33-P11-B4": dict(rows=20, cols=33, cols_per_cycle=11, input_bits=4, comp_rows=4),
}
# L = 1..3 build the same register file (rtl/pipeline_timing.py): the default run takes
# L = 2 of them, the slow run all.
DEFAULT_RUNS = {("2x6-P3-B3-all-counters", L) for L in (0, 2, 4)} | {("64x40-P8-B2", 0),
                                                                    ("20x33-P11-B4", 2)}
FEATURE_BITS = ("offset", "gain", "readout", "table", "stuck")     # section 6, FEATURES


def constant_csrs(p):
    """The read-only constants of section 6's CSR table."""
    major, minor = CONTRACT_VERSION
    return {CSR.ID: 0x43694D31, CSR.VERSION: major << 16 | minor, CSR.ROWS: p.rows, CSR.COLS: p.cols,
            CSR.INPUT_BITS: p.input_bits, CSR.COMP_ROWS: p.comp_rows,
            CSR.COLS_PER_CYCLE: p.cols_per_cycle, CSR.READOUT_BITS: p.readout_bits,
            CSR.ACC_BITS: p.acc_bits,
            CSR.FEATURES: sum(1 << i for i, n in enumerate(FEATURE_BITS) if p.has(n))
            | p.counters << COUNTERS_FEATURE_BIT,
            CSR.GAIN_FRAC: 6 if p.has("gain") else 0, CSR.REGION_SHIFT: p.region_shift,
            CSR.PIPELINE: p.pipeline}


class RegisterModel:
    """The registers of section 6 as the register file holds them."""

    def __init__(self, p):
        self.p = p
        self.inputs = 0                 # bit b * R + r: bit b of input row r
        self.flip = self.out = self.calflag = 0
        self.sat, self.qshift = p.readout_max, 0
        self.done = self.cal_range = self.acc_sat = 0
        self.regions = {r["region"]: r for r in p.regions()}

    def fields(self, addr):
        """The offset fields of a register-region word, by name."""
        region = addr >> self.p.region_shift
        offset = addr & ((1 << self.p.region_shift) - 1)
        r = self.regions[region]
        values, pos = {}, 0
        for name, width in reversed(r["fields"]):
            values[name] = offset >> pos & ((1 << width) - 1)
            pos += width
        return region, values

    def packed_word(self, bits, word):
        return bits >> (BUS_DATA_BITS * word) & WORD & ((1 << self.p.cols) - 1) >> (BUS_DATA_BITS * word)

    def read(self, addr, sequencer):
        """The word a read of ``addr`` returns (0 for a memory region)."""
        p = self.p
        region, f = self.fields(addr)
        if region == Region.CSR:
            live = {CSR.CMD: sequencer["cmd"], CSR.CYCLES: sequencer["cycles"],
                    CSR.ERRCODE: sequencer["errcode"], CSR.ERRADDR: sequencer["erraddr"],
                    CSR.STATUS: sequencer["busy"] | self.done << 1 | sequencer["error"] << 2
                    | self.cal_range << 3 | self.acc_sat << 4,
                    CSR.SAT: self.sat, CSR.QSHIFT: self.qshift}
            if p.counters:
                live.update({reg: sequencer["counters"] >> (j * COUNTER_BITS) & WORD
                             for j, reg in enumerate(COUNTER_CSRS)})
            return {**constant_csrs(p), **live}[f["reg"]]
        if region == Region.INPUT:
            start = f["plane"] * p.rows + BUS_DATA_BITS * f["chunk"]
            return self.inputs >> start & ((1 << p.chunk_rows) - 1)
        if region in (Region.FLIP, Region.OUT, Region.CALFLAG):
            bits = {Region.FLIP: self.flip, Region.OUT: self.out, Region.CALFLAG: self.calflag}[region]
            return self.packed_word(bits, f["word"])
        return 0

    def edge(self, acting, events):
        """The clock edge at the end of a cycle: the acting access's write and the
        sequencer's events (which win over a write-1-to-clear)."""
        p = self.p
        P = p.cols_per_cycle
        done, acc_sat, cal_range = self.done, self.acc_sat, self.cal_range
        if acting is not None and acting["we"]:
            addr, data = acting["addr"], acting["data"]
            region, f = self.fields(addr)
            if region == Region.INPUT:
                start = f["plane"] * p.rows + BUS_DATA_BITS * f["chunk"]
                mask = ((1 << p.chunk_rows) - 1) << start
                self.inputs = self.inputs & ~mask | (data << start) & mask
            elif region == Region.FLIP:
                mask = ((1 << BUS_DATA_BITS) - 1) << (BUS_DATA_BITS * f["word"]) & ((1 << p.cols) - 1)
                self.flip = self.flip & ~mask | (data << (BUS_DATA_BITS * f["word"])) & mask
            elif region == Region.CSR and f["reg"] == CSR.STATUS:
                done &= not data >> Status.DONE & 1
                acc_sat &= not data >> Status.ACC_SAT & 1
            elif region == Region.CSR and f["reg"] == CSR.CMD:
                done = 0
                cal_range &= (data & 7) != Op.CALIBRATE
            elif region == Region.CSR and f["reg"] == CSR.SAT:
                self.sat = data
            elif region == Region.CSR and f["reg"] == CSR.QSHIFT:
                self.qshift = data
        self.done = int(bool(done or events["command_done"]))
        self.acc_sat = int(bool(acc_sat or events["set_acc_sat"]))
        self.cal_range = int(bool(cal_range or events["set_cal_range"]))
        for g in range(p.groups):
            lanes = ((1 << P) - 1) << (g * P)
            if events["out_groups"] >> g & 1:
                store = (events["out_lanes"] << (g * P)) & lanes
                self.out = self.out & ~store | (events["out_bits"] << (g * P)) & store
            if events["calflag_groups"] >> g & 1:
                self.calflag = self.calflag & ~lanes | (events["calflag_bits"] << (g * P)) & lanes


class RegisterBench:
    """The register file, the access records of a front end and the model, cycle by cycle.

    ``access(addr, we, data)`` presents one access (its records in the right cycles) and
    runs the cycles up to the next access the bus would allow; every cycle drives the
    other inputs at random (``force`` overrides them for the access's acting cycle) and
    checks every output.
    """

    def __init__(self, ctx, dut, p, rng):
        self.ctx, self.dut, self.p, self.rng = ctx, dut, p, rng
        L = p.pipeline
        self.acts_after = ACTS_AFTER[L]
        self.latency = BUS_LATENCY[L]
        # The read word is due in the ack's cycle, or the cycle before it where the front
        # end registers the answer (L = 4).
        self.answer_delay = self.latency - self.acts_after - (1 if L == 4 else 0)
        self.model = RegisterModel(p)
        self.mapped = address_map(p)
        ports = dict(access=dut.access, busy=dut.busy, cmd=dut.cmd, cycles=dut.cycles,
                     error=dut.error, errcode=dut.errcode, erraddr=dut.erraddr,
                     command_done=dut.command_done, set_acc_sat=dut.set_acc_sat,
                     set_cal_range=dut.set_cal_range, group=dut.group,
                     out_groups=dut.out_groups, out_lanes=dut.out_lanes, out_bits=dut.out_bits,
                     calflag_groups=dut.calflag_groups, calflag_bits=dut.calflag_bits)
        if self.acts_after:
            ports.update(early=dut.early, early_input_data=dut.early_input_data)
        if p.counters:
            ports["counters"] = dut.counters
        self.inputs = Inputs(p, ports)
        self.cycle = 0
        self.schedule = {}          # cycle -> ("early" | "acting", access dict)
        self.answers = {}           # cycle -> (expected read word, address)
        self.reads_checked = 0
        self.quiet = False          # no random STATUS events and group writes

    def random_inputs(self, force):
        p, rng = self.p, self.rng
        P, G = p.cols_per_cycle, p.groups

        def bits(n, density=0.5):
            return sum(int(rng.random() < density) << i for i in range(n))

        events = 0 if self.quiet else 1
        values = dict(busy=int(rng.integers(0, 2)), cmd=int(rng.integers(0, 1 << 12)),
                      cycles=int(rng.integers(0, 1 << p.cycle_bits)),
                      error=int(rng.integers(0, 2)), errcode=int(rng.integers(0, 8)),
                      erraddr=int(rng.integers(0, 1 << p.addr_bits)),
                      command_done=int(rng.random() < 0.1 * events),
                      set_acc_sat=int(rng.random() < 0.1 * events),
                      set_cal_range=int(rng.random() < 0.1 * events),
                      group=int(rng.integers(0, 1 << max(1, p.group_addr_bits))),
                      out_groups=bits(G, 0.3 * events / G), out_lanes=bits(P), out_bits=bits(P),
                      calflag_groups=bits(G, 0.3 * events / G), calflag_bits=bits(P),
                      counters=random_bits(rng, 4 * COUNTER_BITS))
        values.update(force)
        return values

    async def step(self, force=None):
        ctx, dut, p, k = self.ctx, self.dut, self.p, self.cycle
        kind, acting = self.schedule.pop(k, (None, None))
        if kind == "early":
            early, acting = acting, None
        else:
            early = None
        if acting is not None and acting["we"] and acting["addr"] == self.csr(CSR.CMD):
            # A command cannot complete (or calibrate) while one is accepted.
            force = dict(force or {}, command_done=0, set_cal_range=0)
        values = self.random_inputs(force or {})
        values["access"] = self._record(acting)
        if self.acts_after:
            values["early"] = self._record(early)
            values["early_input_data"] = (acting["data"] if acting is not None
                                          else int(self.rng.integers(0, 1 << 32)))
            if early is not None:
                self.schedule[k + 1] = ("acting", early)
        self.inputs.values.update(values)
        self.inputs.apply(ctx)

        m = self.model
        where = f"cycle {k}"
        assert ctx.get(dut.inputs) == m.inputs, f"{where}: INPUT"
        group = values["group"]
        flip = m.flip >> (group * p.cols_per_cycle) & ((1 << p.cols_per_cycle) - 1) \
            if group < p.groups else 0
        assert ctx.get(dut.group_flip) == flip, f"{where}: group_flip of group {group}"
        assert ctx.get(dut.done) == m.done, f"{where}: done"
        if p.has("readout"):
            assert (ctx.get(dut.sat), ctx.get(dut.qshift)) == (m.sat, m.qshift), where
        status_write = (acting is not None and acting["valid"] and acting["we"]
                        and acting["addr"] == self.csr(CSR.STATUS))
        clears = int(status_write and acting["data"] >> Status.ERROR & 1)
        assert ctx.get(dut.clear_errors) == clears, f"{where}: clear_errors"
        if p.counters:
            clears = int(status_write and acting["data"] >> Status.CLEAR_COUNTERS & 1)
            assert ctx.get(dut.clear_counters) == clears, f"{where}: clear_counters"
        if k in self.answers:
            word, addr = self.answers.pop(k)
            got = ctx.get(dut.read_word)
            assert got == word, f"{where}: read of {addr:#x} gave {got:#x}, not {word:#x}"
            self.reads_checked += 1

        if acting is not None and acting["valid"] and not acting["we"]:
            self.answers[k + self.answer_delay] = (m.read(acting["addr"], values), acting["addr"])
        elif acting is not None:
            self.answers[k + self.answer_delay] = (0, acting["addr"])
        m.edge(acting if acting is not None and acting["valid"] else None, values)
        self.cycle += 1
        await ctx.tick()

    def _record(self, access):
        if access is None:
            return random_record(self.p, self.rng)
        return record(self.p, access["addr"], valid=access["valid"], we=access["we"],
                      data=access["data"], mapped=self.mapped)

    def csr(self, reg):
        return (Region.CSR << self.p.region_shift) | reg

    async def access(self, addr, we=0, data=0, valid=True, force=None, gap=0):
        """One access: its records in their cycles, then the cycles to its ack and
        ``gap`` more; ``force`` fixes inputs of the acting cycle."""
        acc = dict(addr=addr, we=int(we), data=data, valid=int(valid))
        acting_cycle = self.cycle + self.acts_after
        self.schedule[self.cycle + 1 if self.acts_after else self.cycle] = \
            ("early" if self.acts_after else "acting", acc)
        for _ in range(self.latency + 1 + gap):
            await self.step(force if self.cycle == acting_cycle else None)

    async def drain(self):
        while self.schedule or self.answers:
            await self.step()


def simulate(p, rng, scenario):
    run_bench(RegisterFile, RegisterBench, p, rng, scenario)


def register_words(p):
    """Every word of the register regions (CSRs, INPUT, FLIP, OUT, CALFLAG)."""
    mapped = address_map(p)
    return sorted(a for a, r in mapped.items()
                  if r in (Region.CSR, Region.INPUT, Region.FLIP, Region.OUT, Region.CALFLAG))


def random_operation(bench, rng):
    """A random access: a write of INPUT, FLIP, STATUS, CMD, SAT or QSHIFT (an accepted
    value), a read of any mapped word, or a rejected access (``valid`` low)."""
    p = bench.p
    kind = rng.choice(["input", "flip", "status", "cmd", "readout", "read", "read", "rejected"])
    words = {name: region_words(p, region_of(p, name)) for name in ("INPUT", "FLIP")}
    if kind in ("input", "flip"):
        return dict(addr=int(rng.choice(words[kind.upper()])), we=1,
                    data=int(rng.integers(0, WORD + 1)))
    if kind == "status":
        return dict(addr=bench.csr(CSR.STATUS), we=1, data=int(rng.integers(0, WORD + 1)))
    if kind == "cmd":
        return dict(addr=bench.csr(CSR.CMD), we=1, data=int(rng.choice([Op.RUN, Op.CALIBRATE,
                                                                         Op.CLEAR, 0x10 | Op.RUN])))
    if kind == "readout" and p.has("readout"):
        reg = int(rng.choice([CSR.SAT, CSR.QSHIFT]))
        top = p.readout_max if reg == CSR.SAT else 15
        return dict(addr=bench.csr(reg), we=1, data=int(rng.integers(0, top + 1)))
    if kind == "rejected":
        return dict(addr=int(rng.integers(0, 1 << p.addr_bits)), we=int(rng.integers(0, 2)),
                    data=int(rng.integers(0, WORD + 1)), valid=False)
    return dict(addr=int(rng.choice(sorted(bench.mapped))), we=0)


# --- tests ----------------------------------------------------------------------------------

@pytest.mark.parametrize("key, pipeline", [
    pytest.param(key, L, marks=() if (key, L) in DEFAULT_RUNS else pytest.mark.slow)
    for key in sorted(PARAMS) for L in PIPELINES])
def test_random_accesses_scoreboard(key, pipeline, rng):
    """Every register word read at reset, then random accesses with random sequencer
    events, then every register word read again."""
    p = MacroParams(**PARAMS[key], pipeline=pipeline)

    async def scenario(bench):
        for addr in register_words(p):
            await bench.access(addr)
        for _ in range(250 if pipeline < 4 else 90):
            op = random_operation(bench, rng)
            await bench.access(**op, gap=int(rng.integers(0, 2)))
        for addr in register_words(p):
            await bench.access(addr)
        await bench.drain()
        assert bench.reads_checked > 2 * len(register_words(p))

    simulate(p, rng, scenario)


async def status_events_win_over_write_one_to_clear(bench):
    """A STATUS write clearing DONE, ACC_SAT or everything in the cycle of each
    combination of the events: an event sets its flag whatever the write (cal_range is
    no W1C flag); STATUS reads back each outcome; the write's ERROR bit raises
    clear_errors."""
    status = bench.csr(CSR.STATUS)
    for events in range(8):
        for clear in (1 << Status.DONE, 1 << Status.ACC_SAT, WORD):
            # Every flag set first.
            await bench.access(status, we=0, force=dict(command_done=1, set_acc_sat=1,
                                                        set_cal_range=1))
            force = dict(command_done=events & 1, set_acc_sat=events >> 1 & 1,
                         set_cal_range=events >> 2 & 1)
            await bench.access(status, we=1, data=clear, force=force)
            m = bench.model
            assert m.done == int(bool(events & 1 or not clear >> Status.DONE & 1))
            assert m.acc_sat == int(bool(events & 2 or not clear >> Status.ACC_SAT & 1))
            assert m.cal_range == 1
            await bench.access(status, we=0)


async def commands_clear_done_and_calibrate_clears_cal_range(bench):
    cmd = bench.csr(CSR.CMD)
    quiet = dict(command_done=0, set_acc_sat=0, set_cal_range=0)
    for op in (Op.RUN, Op.CLEAR, Op.CALIBRATE):
        await bench.access(cmd, we=0, force=dict(command_done=1, set_acc_sat=1, set_cal_range=1))
        await bench.access(cmd, we=1, data=op, force=quiet)
        m = bench.model
        assert (m.done, m.acc_sat, m.cal_range) == (0, 1, int(op != Op.CALIBRATE))


async def out_and_calflag_group_writes(bench):
    """Each group of OUT written with random lane masks and CALFLAG with whole groups,
    then every packed word read back."""
    p, rng = bench.p, bench.rng
    P = p.cols_per_cycle
    words = [a for a in register_words(p) if a >> p.region_shift in (Region.OUT, Region.CALFLAG)]
    for _ in range(2):
        for g in range(p.groups):
            force = dict(out_groups=1 << g, out_lanes=int(rng.integers(0, 1 << P)),
                         out_bits=int(rng.integers(0, 1 << P)), calflag_groups=1 << g,
                         calflag_bits=int(rng.integers(0, 1 << P)))
            await bench.access(words[0], force=force)
        for addr in words:
            await bench.access(addr)
    assert bench.model.out and bench.model.calflag


@pytest.mark.parametrize("pipeline", [0, 2, 4])
def test_status_flags_and_group_writes(pipeline, rng):
    """Directed scenarios, with no random STATUS events or group writes between them."""
    p = MacroParams(**PARAMS["20x33-P11-B4"], pipeline=pipeline)

    async def scenario(bench):
        bench.quiet = True
        await status_events_win_over_write_one_to_clear(bench)
        await commands_clear_done_and_calibrate_clears_cal_range(bench)
        await out_and_calflag_group_writes(bench)
        await bench.drain()

    simulate(p, rng, scenario)
