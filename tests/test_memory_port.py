# amaranth: UnusedElaboratable=no
"""Tests of ``rtl/memory_port.py`` (MemoryBusPort, with its lane multiplexers of
``rtl/lane_read.py``) alone, against section 6 and the port row of section 7 of
``docs/ARCHITECTURE.md``.

The testbench plays the bus front end (its records are the bus as a Wishbone master
drives it, registered once and twice where the macro acts two cycles late: each access
held from its cycle to its ack, random words in the other cycles, ``valid`` only in the
acting (and early) cycle; ``request_offset`` the bus offset), the sequencer (BUSY phases
with a random group each cycle and random ACC and COMP stores in random lanes) and the
compute array's transfer table (a non-transparent table behind
``table_addr``/``table_we``). The golden ``MacroModel`` holds the memories: bus writes
go through ``MacroModel.write``, landing ``memory_write_delay`` cycles after the access
acts; the sequencer's stores set its ``acc`` and ``comp_bits``. Checked every cycle:
each memory's read data while busy (the word of the previous cycle's group,
lane-major), ``table_we``; for each bus read, ``answer`` and ``answering`` in the cycle
the front end takes the answer (``MacroModel.read``), and no answer in the other cycles.
After a write the sequencer reads its word from the cycle after the access acts, so a
write landing a cycle early or late fails.

Abandoned accesses (section 6: the master drops ``cyc`` 1..bus_latency cycles after the
access and may show anything from then on) put random words on the bus from the cycle
``cyc`` falls: their writes must land as presented; a read's answer, which has no ack,
is not compared (the port needs a read's address held up to its ack, as its docstring
says, and a Wishbone master holds it).
"""

import pytest

from models.macro import MacroModel
from models.params import NONIDEALITIES, MacroParams, Region
from rtl.memory_port import MemoryBusPort
from verif.address_space import region_words
from .bus_contract import (ACTS_AFTER, BUS_LATENCY, MEMORY_WRITE_DELAY, PIPELINES, WORD,
                           address_map, record)
from .component_bench import Inputs, random_bits, run_bench
from .lane_words import pack

PARAMS = {
    "2x6-P3-B2-K2-all": dict(rows=2, cols=6, cols_per_cycle=3, input_bits=2, comp_rows=2,
                             nonideal=NONIDEALITIES),
    # Two row chunks, stuck cells, K = 4, one lane per group.
    "64x3-P1-K4-stuck": dict(rows=64, cols=3, cols_per_cycle=1, input_bits=2, comp_rows=4,
                             nonideal=("stuck", "offset")),
    # 12 lanes: the lane multiplexer split into blocks of 8 (L = 1..3) and the staged
    # L = 4 select over two blocks.
    "3x24-P12-K2": dict(rows=3, cols=24, cols_per_cycle=12, input_bits=1, comp_rows=2,
                        nonideal=("offset", "gain")),
    # 40 lanes: five blocks, two groups of blocks in the staged select (the second short).
    "1x80-P40-K2": dict(rows=1, cols=80, cols_per_cycle=40, input_bits=1, comp_rows=2,
                        nonideal=("offset",)),
}
# L = 1..3 build the same port (rtl/pipeline_timing.py): the default run takes one or two
# of them, the slow run all.
DEFAULT_RUNS = ({("2x6-P3-B2-K2-all", L) for L in (0, 2, 4)}
                | {("64x3-P1-K4-stuck", 1), ("3x24-P12-K2", 2), ("3x24-P12-K2", 4),
                   ("1x80-P40-K2", 4)})
REGISTER_REGIONS = (Region.CSR, Region.INPUT, Region.FLIP, Region.OUT, Region.CALFLAG)


def group_words(p, model, g):
    """Each memory output's expected word for group ``g``: lane i is column P g + i."""
    P, R, W, A, K = p.cols_per_cycle, p.rows, p.readout_bits, p.acc_bits, p.comp_rows
    cols = slice(P * g, P * (g + 1))

    def rows_of(bits):
        return pack([int(sum(int(b) << r for r, b in enumerate(column))) for column in bits[:, cols].T], R)

    words = dict(weights=rows_of(model.weights), comp_bits=pack(model.comp_bits[cols], K),
                 theta=pack(model.thresh[cols], A), acc=pack(model.acc[cols], A))
    if p.has("stuck"):
        words.update(stuck_mask=rows_of(model.stuck_mask), stuck_value=rows_of(model.stuck_value))
    if p.has("offset"):
        words["offset"] = pack(model.offset[cols], W)
    if p.has("gain"):
        words["gain"] = pack(model.gain[cols], 8)
    return words


class MemoryBench:
    """The memory port, a front end's records, a sequencer's stores and the model."""

    def __init__(self, ctx, dut, p, rng, abandon=0.0):
        self.ctx, self.dut, self.p, self.rng = ctx, dut, p, rng
        self.abandon = abandon      # the share of accesses abandoned
        L = p.pipeline
        self.acts_after, self.latency = ACTS_AFTER[L], BUS_LATENCY[L]
        self.write_delay = MEMORY_WRITE_DELAY[L]
        # The front end takes the answer in the ack's cycle, or the cycle before where it
        # registers it (L = 4).
        self.answer_after = self.latency - (1 if L == 4 else 0)
        self.model = MacroModel(p)
        self.mapped = address_map(p)
        self.table = None if self.model.table is None else [int(v) for v in self.model.table]
        ports = dict(access=dut.access, request_offset=dut.request_offset, busy=dut.busy,
                     group=dut.group, comp_store=dut.comp_store, comp_result=dut.comp_result,
                     store=dut.store, acc_result=dut.acc_result)
        if self.acts_after:
            ports["early"] = dut.early
        if p.has("table"):
            ports["table_rdata"] = dut.table_rdata
        self.inputs = Inputs(p, ports)
        self.cycle = 0
        self.bus = {c: dict(addr=0, we=0, data=0, valid=0) for c in (-2, -1)}
        self.acting = {}            # cycle -> the access acting in it
        self.early = {}             # cycle -> the access whose early record it shows
        self.landing = {}           # cycle -> bus writes landing at its clock edge
        self.answers = {}           # cycle -> (expected answer, address, acknowledged)
        self.busy_plan = {}         # cycle -> group (busy with that group)
        self.expected_words = None  # the memory outputs due in this cycle (busy before)
        self.table_rdata = 0
        self.checked = dict(busy_words=0, answers=0, abandoned=0)

    async def step(self, busy_group=None, stores=False):
        ctx, dut, p, rng, k = self.ctx, self.dut, self.p, self.rng, self.cycle
        P, K, A = p.cols_per_cycle, p.comp_rows, p.acc_bits
        acting = self.acting.pop(k, None)
        early = self.early.pop(k, None)
        # The front end's records are the bus (registered once and twice at L = 4), with
        # ``valid`` where the access acts (and is early): the master holds an access on
        # the bus from its cycle to its ack and shows random words in the other cycles.
        bus = self.bus.setdefault(k, dict(addr=random_bits(rng, p.addr_bits), we=random_bits(rng, 1),
                                          data=random_bits(rng, 32), valid=0))
        self.bus.pop(k - 3, None)
        if busy_group is None:
            busy_group = self.busy_plan.pop(k, None)
        busy = busy_group is not None
        values = dict(busy=int(busy),
                      group=busy_group if busy else int(rng.integers(0, 1 << max(1, p.group_addr_bits))),
                      comp_result=random_bits(rng, P * K),
                      acc_result=pack(rng.integers(-(1 << (A - 1)), 1 << (A - 1), size=P), A),
                      store=0, comp_store=0,
                      access=self._record(self.bus[k - self.acts_after], acting),
                      table_rdata=self.table_rdata & ((1 << p.readout_bits) - 1))
        if stores:
            values["store"] = random_bits(rng, P) if rng.random() < 0.5 else 0
            values["comp_store"] = random_bits(rng, P) if rng.random() < 0.5 else 0
        values["request_offset"] = bus["addr"] & ((1 << p.region_shift) - 1)
        if self.acts_after:
            values["early"] = self._record(self.bus[k - 1], early)
        self.inputs.values.update(values)
        self.inputs.apply(ctx)

        where = f"cycle {k}"
        if self.expected_words is not None:
            for name, word in self.expected_words.items():
                assert ctx.get(getattr(dut, name)) == word, f"{where}: {name} of the group"
            self.checked["busy_words"] += 1
        answer = self.answers.pop(k, None)
        if answer is not None:
            word, addr, acknowledged = answer
            if acknowledged:
                got = ctx.get(dut.answer)
                assert got == word, f"{where}: answer to the read of {addr:#x}: {got:#x}, not {word:#x}"
                self.checked["answers"] += 1
            if self.latency < 5:
                assert ctx.get(dut.answering), f"{where}: answering for {addr:#x}"
        elif self.latency == 5:
            assert ctx.get(dut.answer) == 0, f"{where}: an answer with no read"
        else:
            assert not ctx.get(dut.answering), f"{where}: answering with no read"
        table_we = bool(acting and acting["valid"] and acting["we"]
                        and self.mapped.get(acting["addr"]) == Region.TABLE)
        if p.has("table"):
            assert ctx.get(dut.table_we) == table_we, f"{where}: table_we"

        # Read port data of the next cycle: the busy group's words as of this cycle.
        self.expected_words = group_words(p, self.model, busy_group) if busy else None
        if acting is not None and acting["valid"]:
            self._act(acting, k)
        # The clock edge: the table (not transparent), landing bus writes, the stores.
        if p.has("table"):
            index = ctx.get(dut.table_addr)
            self.table_rdata = self.table[index]
            if ctx.get(dut.table_we):
                self.table[index] = ctx.get(dut.table_wdata)
        for addr, data in self.landing.pop(k, []):
            self.model.write(addr, data)
        if busy:
            self._stores(busy_group, values)
        self.cycle += 1
        await ctx.tick()

    def _act(self, acting, k):
        addr = acting["addr"]
        region = self.mapped.get(addr)
        if region in REGISTER_REGIONS:
            return                      # the register file's
        if acting["we"]:
            if region == Region.TABLE:
                # The table is the compute array's: it takes the write at once.
                self.model.write(addr, acting["data"])
            else:
                self.landing.setdefault(k + self.write_delay, []).append((addr, acting["data"]))
        else:
            t = k - self.acts_after
            self.answers[t + self.answer_after] = (self.model.read(addr), addr,
                                                      acting["acknowledged"])

    def _stores(self, g, values):
        p = self.p
        P, K, A = p.cols_per_cycle, p.comp_rows, p.acc_bits
        for i in range(P):
            col = P * g + i
            if values["store"] >> i & 1:
                v = values["acc_result"] >> (i * A) & ((1 << A) - 1)
                self.model.acc[col] = v - (1 << A) if v >> (A - 1) else v
            if values["comp_store"] >> i & 1:
                self.model.comp_bits[col] = values["comp_result"] >> (i * K) & ((1 << K) - 1)

    def _record(self, bus, access):
        """The record of the bus word ``bus``, valid when ``access`` acts (is early)."""
        return record(self.p, bus["addr"], valid=access is not None and access["valid"],
                      we=bus["we"], data=bus["data"], mapped=self.mapped)

    async def access(self, addr, we=0, data=0, valid=True, probe=False):
        """One bus access and the cycles to its ack slot: held up to its ack, or (a share
        ``abandon`` of them) abandoned, the bus held for 1..bus_latency cycles from the
        access. ``probe``: the sequencer reads the written word's group from the cycle
        after the access acts until the write has landed and been read."""
        t = self.cycle
        held = self.latency + 1
        if self.rng.random() < self.abandon:
            held = int(self.rng.integers(1, self.latency + 1))
            self.checked["abandoned"] += 1
        acc = dict(addr=addr, we=int(we), data=data, valid=int(valid),
                   acknowledged=held > self.latency)
        for c in range(t, t + held):
            self.bus[c] = acc
        self.acting[t + self.acts_after] = acc
        if self.acts_after:
            self.early[t + 1] = acc
        end = t + self.latency + 1
        if probe:
            group = self._group_of(addr)
            start = t + self.acts_after + 1
            for c in range(start, start + self.write_delay + 2):
                self.busy_plan[c] = group
            end = max(end, start + self.write_delay + 2)
        while self.cycle < end:
            await self.step()

    def _group_of(self, addr):
        region = next(r for r in self.p.regions() if r["region"] == addr >> self.p.region_shift)
        offset, pos = addr & ((1 << self.p.region_shift) - 1), 0
        for name, width in reversed(region["fields"]):
            if name == "group":
                return offset >> pos & ((1 << width) - 1)
            pos += width
        return 0

    async def busy_phase(self, cycles, stores=True):
        """The sequencer at work: a random group each cycle, random ACC and COMP stores."""
        for _ in range(cycles):
            await self.step(busy_group=int(self.rng.integers(0, self.p.groups)), stores=stores)
        await self.step()               # the last cycle's words

    async def sweep_groups(self):
        """The sequencer reads every group: every lane of every memory is compared."""
        for g in range(self.p.groups):
            await self.step(busy_group=g)
        await self.step()


def simulate(p, rng, scenario, abandon=0.0):
    run_bench(MemoryBusPort, MemoryBench, p, rng, scenario, abandon=abandon)


def random_word(rng, region):
    """A word the region accepts."""
    kind, width = region["kind"], region["width"]
    if kind == "bits":
        return int(rng.integers(0, WORD + 1))
    if kind == "signed":
        return int(rng.integers(-(1 << (width - 1)), 1 << (width - 1))) & WORD
    return int(rng.integers(0, 1 << width))


def memory_regions(p):
    return [r for r in p.regions() if r["region"] not in REGISTER_REGIONS]


def scoreboard(p, rng):
    """The scenario of the scoreboards: reset values read, a sample of every region's
    words written (each write probed by the sequencer's read port), every group swept,
    random reads, writes, ignored accesses and busy phases with stores, a sample read
    back."""
    regions = memory_regions(p)
    writable = [r for r in regions if r["access"] == "rw"]

    def sample(addrs, n):
        """``n`` of ``addrs`` (all when fewer), always with the first and last."""
        if len(addrs) <= n:
            return list(addrs)
        return [addrs[0], addrs[-1], *(int(a) for a in rng.choice(addrs[1:-1], n - 2, replace=False))]

    async def scenario(bench):
        words = [a for r in regions for a in region_words(p, r)]
        for addr in sample(words, 20):
            await bench.access(addr)
        await bench.sweep_groups()
        for r in writable:
            for addr in sample(region_words(p, r), 12):
                await bench.access(addr, we=1, data=random_word(rng, r), probe=True)
        await bench.sweep_groups()
        await bench.busy_phase(12)
        for _ in range(60):
            choice = rng.random()
            if choice < 0.4:
                await bench.access(int(rng.choice(words)))
            elif choice < 0.7:
                r = writable[rng.integers(len(writable))]
                await bench.access(int(rng.choice(region_words(p, r))), we=1,
                                   data=random_word(rng, r), probe=bool(rng.random() < 0.5))
            elif choice < 0.8:
                # Accepted accesses of register regions and rejected ones of any word (a
                # faulty write to a memory word has its region bit but not valid): the
                # memories ignore them.
                addr = int(rng.integers(0, 1 << p.addr_bits))
                await bench.access(addr, we=int(rng.integers(0, 2)), data=int(rng.integers(0, WORD + 1)),
                                   valid=bench.mapped.get(addr) in REGISTER_REGIONS)
            else:
                await bench.busy_phase(int(rng.integers(1, 8)))
        await bench.sweep_groups()
        for addr in sample(words, 40):
            await bench.access(addr)
        for _ in range(bench.latency + 2):
            await bench.step()
        assert not bench.answers and not bench.landing
        assert bench.checked["answers"] >= (10 if bench.abandon else 40)
        assert bench.checked["busy_words"] > 20
        if p.has("table"):
            assert bench.table == [int(v) for v in bench.model.table]

    return scenario


# --- tests ----------------------------------------------------------------------------------

@pytest.mark.parametrize("key, pipeline", [
    pytest.param(key, L, marks=() if (key, L) in DEFAULT_RUNS else pytest.mark.slow)
    for key in sorted(PARAMS) for L in PIPELINES])
def test_random_scoreboard(key, pipeline, rng):
    """The scoreboard with the bus held from each access to its ack, as a Wishbone
    master holds it."""
    p = MacroParams(**PARAMS[key], pipeline=pipeline)
    simulate(p, rng, scoreboard(p, rng))


@pytest.mark.parametrize("key, pipeline", [
    ("2x6-P3-B2-K2-all", 1), ("2x6-P3-B2-K2-all", 4), ("3x24-P12-K2", 2)])
def test_abandoned_accesses(key, pipeline, rng):
    """The scoreboard with half the accesses abandoned (section 6): the bus shows random
    words from the cycle ``cyc`` falls, 1..bus_latency cycles after the access. Their
    writes land as presented (the sequencer's read port and the later reads see them);
    their reads raise ``answering`` (L < 4) with a word nobody takes; the accesses held
    to their ack are answered right. One block of lanes (P = 3) at
    L = 1 and 4, whose read answers need the address held (the port's docstring), and
    two blocks at L = 2."""
    p = MacroParams(**PARAMS[key], pipeline=pipeline)

    async def scenario(bench):
        await scoreboard(p, rng)(bench)
        assert bench.checked["abandoned"] > 40

    simulate(p, rng, scenario, abandon=0.5)
