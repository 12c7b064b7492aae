# amaranth: UnusedElaboratable=no
"""Tests of ``rtl/bus_front_end.py`` (BusFrontEnd) alone, against section 6 and the port
row of section 7 of ``docs/ARCHITECTURE.md``.

A Wishbone master drives the front end cycle by cycle while a cycle model written here
from the contract predicts every observable of every cycle: ``ack`` (exactly
``bus_latency`` cycles after the access, only if ``cyc`` stayed high, never while ``cyc``
is low), the access record (``valid`` only in the cycle the access acts in, its fields
then), ``access_acts`` (with the activity counters: high in the acting cycle of every
access, faulty and abandoned ones included), the early record of L = 4 (a cycle after
the access), ``early_input_data``, the error registers (the first fault since a clear,
recorded in the access cycle or a cycle later at L = 4, a clear winning over a fault of
the same cycle) and ``dat_r`` of the ack (the register or memory answer). Which check
fails and in what order comes from ``tests/bus_contract.py``, which decodes addresses
with the test oracle ``verif/address_space.py``; a table of multi-fault cases pins the
order independently of it. ``busy`` and ``clear_errors`` change at random every cycle,
so each check must use the state of the access cycle. Masters abandon accesses (drop
``cyc`` 1..bus_latency cycles after the access) and present the next access at once.

The address space of three tiny parameter sets is swept exhaustively (every address read
and written, busy and idle).
"""

import pytest

from models.params import CSR, NONIDEALITIES, ErrCode, MacroParams, Op, Region
from rtl.bus_front_end import BusFrontEnd
from verif.address_space import ACCUMULATE, NPLANES_SHIFT
from .bus_contract import (ACTS_AFTER, BUS_LATENCY, ERROR_VISIBLE_AFTER, PIPELINES, WORD,
                           address_map, expected_errcode, record)
from .component_bench import Inputs, run_bench

PARAMS = {
    # Every region, holes in the slot, plane and index fields, the activity counters' CSRs.
    "2x6-P3-B3-K2-all-counters": dict(rows=2, cols=6, cols_per_cycle=3, input_bits=3,
                                      comp_rows=2, nonideal=NONIDEALITIES, counters=True),
    # Three row chunks (a hole at chunk 3), three groups of one lane, no TABLE.
    "96x3-P1-B2-K2": dict(rows=96, cols=3, cols_per_cycle=1, input_bits=2, comp_rows=2,
                          nonideal=("offset", "gain", "stuck", "readout")),
    # No non-ideality (OFFSET, GAIN, TABLE, STUCK_*, SAT and QSHIFT unmapped), two packed
    # words, a 32-bit THRESH (every word in range), one input plane.
    "3x40-P20-B1-A32-none": dict(rows=3, cols=40, cols_per_cycle=20, input_bits=1,
                                 comp_rows=2, acc_bits=32, nonideal=()),
}


class Access:
    """One access as the cycle model sees it."""

    def __init__(self, t, addr, we, data, code):
        self.t, self.addr, self.we, self.data, self.code = t, addr, we, data, code
        self.live = True            # cyc high in every cycle since the access


class FrontEndBench:
    """A Wishbone master on a BusFrontEnd and a cycle model of what it must show.

    ``run(transactions)`` presents each transaction (a dict: ``addr``, ``we``, ``data``,
    ``sel``; ``gap``: idle cycles before it; ``idle_cyc``: hold ``cyc`` high with ``stb``
    low in the gap; ``hold``: abandon the access after that many cycles of ``cyc``, then
    drop ``cyc`` for one cycle) and checks every cycle. ``busy`` is random each cycle
    (``busy`` of the transaction up to its access cycle when given), ``clear_errors``
    too (or, when the transaction has them, only in its gap cycles with
    ``clear_before`` and in the cycles listed in ``clear``, relative to the access).

    Members
    -------
    accesses : list of Access
    error_log : list of (errcode, erraddr)
        The error registers after each change.
    """

    def __init__(self, ctx, dut, p, rng):
        self.ctx, self.dut, self.p, self.rng = ctx, dut, p, rng
        L = p.pipeline
        self.latency, self.acts_after = BUS_LATENCY[L], ACTS_AFTER[L]
        self.record_delay = ERROR_VISIBLE_AFTER[L] - 1
        self.mapped = address_map(p)
        self.mask = (1 << p.region_shift) - 1
        self.cycle = 0
        self.accesses = []
        self.error = (0, 0, 0)
        self.error_log = []
        self.answers = {}           # cycle -> (register, memory, answering)
        wb = dut.wb
        self.inputs = Inputs(p, dict(
            cyc=wb.cyc, stb=wb.stb, adr=wb.adr, we=wb.we, dat_w=wb.dat_w, sel=wb.sel, busy=dut.busy,
            clear_errors=dut.clear_errors, register_answer=dut.register_answer,
            memory_answer=dut.memory_answer, memory_answering=dut.memory_answering))

    def _in_flight(self):
        return bool(self.accesses) and self.cycle <= self.accesses[-1].t + self.latency

    async def step(self, *, cyc, stb=0, addr=0, we=0, data=0, sel=0xF, busy=None, clear=None):
        """One cycle: drive the bus, check every output against the model, tick."""
        ctx, dut, p, rng, k = self.ctx, self.dut, self.p, self.rng, self.cycle
        wb = dut.wb
        busy = int(rng.random() < 0.5) if busy is None else int(busy)
        clear = int(rng.random() < 0.15) if clear is None else int(clear)
        self.inputs.values.update(cyc=cyc, stb=stb, adr=addr, we=we, dat_w=data, sel=sel,
                                  busy=busy, clear_errors=clear)
        # Random answers in the cycles an ack's dat_r depends on.
        if k in self.answers:
            self.inputs.values.update(zip(("register_answer", "memory_answer", "memory_answering"),
                                          self.answers[k]))
        self.inputs.apply(ctx)

        started = None
        if cyc and stb and not self._in_flight():
            started = Access(k, addr, we, data,
                             expected_errcode(p, addr, we=we, data=data, sel=sel, busy=busy,
                                              mapped=self.mapped))
            self.accesses.append(started)
            for j in (k + self.latency - 1, k + self.latency):
                self.answers[j] = (int(rng.integers(0, WORD + 1)), int(rng.integers(0, WORD + 1)),
                                   int(rng.integers(0, 2)))
        for a in self.accesses[-2:]:
            if a.t <= k <= a.t + self.latency and not cyc:
                a.live = False

        where = f"cycle {k}"
        # ack: the access of cycle k - latency, if cyc stayed high up to now.
        acked = [a for a in self.accesses[-2:] if a.t + self.latency == k and a.live]
        assert ctx.get(wb.ack) == bool(acked), f"{where}: ack should be {bool(acked)}"
        if acked:
            if self.latency == 5:
                reg, mem, _ = self.answers[k - 1]
                expected = reg | mem
            else:
                reg, mem, answering = self.answers[k]
                expected = mem if answering else reg
            assert ctx.get(wb.dat_r) == expected, f"{where}: dat_r of the ack"
        assert ctx.get(dut.request_offset) == addr & self.mask, where
        # The access record: valid only in the acting cycle.
        acting = [a for a in self.accesses[-2:] if a.t + self.acts_after == k]
        self._check_record(dut.access, acting, f"{where}: access")
        if p.counters:
            assert ctx.get(dut.access_acts) == bool(acting), f"{where}: access_acts"
        if self.acts_after:
            early = [a for a in self.accesses[-2:] if a.t + 1 == k]
            self._check_record(dut.early, early, f"{where}: early")
            if acting and acting[0].we:
                assert ctx.get(dut.early_input_data) == acting[0].data & ((1 << p.chunk_rows) - 1)
        got = (ctx.get(dut.error), ctx.get(dut.errcode), ctx.get(dut.erraddr))
        assert got == self.error, f"{where}: error registers {got}, expected {self.error}"

        # The clock edge: the fault decided in this cycle is recorded unless an error is
        # already recorded or the errors are cleared in this cycle.
        deciding = [a for a in self.accesses[-2:] if a.t + self.record_delay == k]
        if clear:
            new = (0, 0, 0)
        elif deciding and deciding[0].code and not self.error[0]:
            new = (1, deciding[0].code, deciding[0].addr)
        else:
            new = self.error
        if new != self.error:
            self.error_log.append(new[1:])
        self.error = new
        self.answers.pop(k - 1, None)
        self.cycle += 1
        await ctx.tick()
        return started

    def _check_record(self, port, accesses, where):
        got = self.ctx.get(port)
        if not accesses:
            assert not got.valid, f"{where}: valid outside the acting cycle"
            return
        a = accesses[0]
        expected = record(self.p, a.addr, valid=a.code == 0, we=a.we, data=a.data,
                          mapped=self.mapped)
        fields = {name: int(getattr(got, name)) for name in expected}
        assert fields == expected, f"{where}: record of the access to {a.addr:#x}"

    async def run(self, transactions):
        """Present each transaction; return the Access of each, in order."""
        done = []
        for tr in transactions:
            idle = tr.get("idle_cyc", False)
            for _ in range(tr.get("gap", 1)):
                await self.step(cyc=idle, stb=0, addr=tr["addr"] if idle else 0,
                                clear=self._clear(tr, None))
            bus = dict(cyc=1, stb=1, addr=tr["addr"], we=tr.get("we", 0), data=tr.get("data", 0),
                       sel=tr.get("sel", 0xF))
            access = None
            while True:
                busy = tr.get("busy") if access is None else None
                started = await self.step(**bus, busy=busy,
                                          clear=self._clear(tr, access.t if access else None,
                                                            presenting=True))
                access = access or started
                if access is None:
                    continue
                held = self.cycle - access.t          # cycles of cyc since the access
                if tr.get("hold") == held:
                    # Abandoned: cyc low for a cycle, then the next transaction.
                    await self.step(cyc=0, clear=self._clear(tr, access.t, presenting=True))
                    break
                if held > self.latency:
                    break
            done.append(access)
        for _ in range(self.latency + 1):
            await self.step(cyc=0, clear=0)
        return done

    def _clear(self, tr, t, presenting=False):
        """clear_errors of this cycle: random, or the transaction's own: ``clear_before``
        pulses it in the gap cycles, ``clear`` lists cycles relative to the access."""
        if "clear" not in tr and "clear_before" not in tr:
            return None
        if not presenting:
            return int(tr.get("clear_before", False))
        if t is None and not self._in_flight():
            t = self.cycle                          # the access begins in this cycle
        return int(t is not None and self.cycle - t in tr.get("clear", ()))


def simulate(p, rng, scenario):
    run_bench(BusFrontEnd, FrontEndBench, p, rng, scenario)


def _csr(p, reg):
    return (Region.CSR << p.region_shift) | reg


def data_pool(p):
    """Words that straddle every range check: sign extensions of W and A bits and just
    beyond, GAIN, SAT and QSHIFT limits, valid and invalid commands."""
    W, A, M = p.readout_bits, p.acc_bits, p.readout_max
    pool = {0, 1, 15, 16, 255, 256, M, M + 1, WORD, (1 << (W - 1)) - 1, 1 << (W - 1),
            WORD & -(1 << (W - 1)), WORD & -((1 << (W - 1)) + 1), WORD & -(1 << (A - 1)),
            WORD & -((1 << (A - 1)) + 1) if A < 32 else 0, (1 << (A - 1)) - 1,
            Op.RUN, Op.CALIBRATE, Op.CLEAR, 0x7, Op.RUN | ACCUMULATE | p.input_bits << NPLANES_SHIFT,
            Op.RUN | (p.input_bits + 1) << NPLANES_SHIFT, Op.CLEAR | ACCUMULATE, Op.RUN | 1 << 20}
    return sorted(pool)


def random_transaction(p, rng, addr, we, pool):
    tr = dict(addr=addr, we=we, gap=int(rng.choice([0, 1, 1, 2])),
              idle_cyc=bool(rng.random() < 0.3))
    if we:
        tr["data"] = int(rng.choice(pool)) if rng.random() < 0.8 else int(rng.integers(0, WORD + 1))
        tr["sel"] = 0xF if rng.random() < 0.85 else int(rng.integers(0, 15))
    else:
        tr["data"] = int(rng.integers(0, WORD + 1))     # ignored by a read
        tr["sel"] = int(rng.integers(0, 16))            # so is sel
    if rng.random() < 0.2:
        tr["hold"] = int(rng.integers(1, BUS_LATENCY[p.pipeline] + 1))
    return tr


# --- tests ----------------------------------------------------------------------------------

# The default run sweeps each set at some of the three bus timings (L = 1..3 time the bus
# alike); the slow run sweeps every set at every L.
DEFAULT_SWEEPS = {("2x6-P3-B3-K2-all-counters", 0), ("2x6-P3-B3-K2-all-counters", 2),
                  ("2x6-P3-B3-K2-all-counters", 4),
                  ("96x3-P1-B2-K2", 0), ("96x3-P1-B2-K2", 4), ("3x40-P20-B1-A32-none", 2)}


@pytest.mark.parametrize("key, pipeline", [
    pytest.param(key, L, marks=() if (key, L) in DEFAULT_SWEEPS else pytest.mark.slow)
    for key in sorted(PARAMS) for L in PIPELINES])
def test_every_address_read_and_written(key, pipeline, rng):
    """Exhaustive over the address space: each address read and written once (busy or
    not at random, data straddling the range checks, bad byte selects, abandoned
    accesses, idle cycles with cyc high and stb low), every cycle checked."""
    p = MacroParams(**PARAMS[key], pipeline=pipeline)
    pool = data_pool(p)
    addrs = [int(a) for a in rng.permutation(1 << p.addr_bits)]
    transactions = [random_transaction(p, rng, a, we, pool) for a in addrs for we in (0, 1)]
    # CMD once more with each word of the pool, idle: the command checks.
    transactions += [dict(addr=_csr(p, CSR.CMD), we=1, data=d, busy=0) for d in pool]
    order = rng.permutation(len(transactions))

    async def scenario(bench):
        accesses = await bench.run([transactions[i] for i in order])
        codes = {a.code for a in accesses}
        # The sweep reached every check (BAD_VALUE needs a field narrower than a word).
        reachable = set(range(7))
        if p.acc_bits == 32 and not p.nonideal & {"offset", "gain", "table", "readout"}:
            reachable.discard(ErrCode.BAD_VALUE)
        assert codes == reachable, codes

    simulate(p, rng, scenario)


# (name, access builder, busy, expected ERRCODE): accesses that fail several checks; the
# first check of section 6's order decides (BAD_SEL, BAD_ADDRESS, READ_ONLY, BUSY,
# BAD_COMMAND/BAD_VALUE).
ORDER_CASES = [
    ("bad sel, unmapped, busy", lambda p: dict(addr=(15 << p.region_shift), we=1, sel=0x7), 1,
     ErrCode.BAD_SEL),
    ("bad sel, read-only CSR", lambda p: dict(addr=_csr(p, CSR.ID), we=1, sel=0xE), 0,
     ErrCode.BAD_SEL),
    ("bad sel, bad command, busy", lambda p: dict(addr=_csr(p, CSR.CMD), we=1, data=7, sel=0), 1,
     ErrCode.BAD_SEL),
    ("bad sel on a read is no fault", lambda p: dict(addr=_csr(p, CSR.ID), we=0, sel=0), 0, 0),
    ("unmapped CSR, busy", lambda p: dict(addr=_csr(p, 13), we=1, data=WORD), 1,
     ErrCode.BAD_ADDRESS),
    ("hole in THRESH (slot 3 of 3), busy", lambda p: dict(addr=(Region.THRESH << p.region_shift) | 3,
                                                         we=0), 1, ErrCode.BAD_ADDRESS),
    ("read-only ACC while busy", lambda p: dict(addr=Region.ACC << p.region_shift, we=1), 1,
     ErrCode.READ_ONLY),
    ("read-only CYCLES while busy", lambda p: dict(addr=_csr(p, CSR.CYCLES), we=1), 1,
     ErrCode.READ_ONLY),
    ("bad command while busy", lambda p: dict(addr=_csr(p, CSR.CMD), we=1, data=7), 1,
     ErrCode.BUSY),
    ("bad THRESH value while busy", lambda p: dict(addr=Region.THRESH << p.region_shift, we=1,
                                                   data=1 << 20), 1, ErrCode.BUSY),
    ("bad SAT value while busy", lambda p: dict(addr=_csr(p, CSR.SAT), we=1, data=WORD), 1,
     ErrCode.BUSY),
    ("bad command", lambda p: dict(addr=_csr(p, CSR.CMD), we=1, data=Op.CLEAR | ACCUMULATE), 0,
     ErrCode.BAD_COMMAND),
    ("bad GAIN value", lambda p: dict(addr=Region.GAIN << p.region_shift, we=1, data=256), 0,
     ErrCode.BAD_VALUE),
    ("bad TABLE value", lambda p: dict(addr=Region.TABLE << p.region_shift, we=1, data=8), 0,
     ErrCode.BAD_VALUE),
    ("OUT read while busy", lambda p: dict(addr=Region.OUT << p.region_shift, we=0), 1,
     ErrCode.BUSY),
    ("STATUS write while busy", lambda p: dict(addr=_csr(p, CSR.STATUS), we=1, data=WORD), 1, 0),
    ("ERRCODE read while busy", lambda p: dict(addr=_csr(p, CSR.ERRCODE), we=0), 1, 0),
    ("command while idle", lambda p: dict(addr=_csr(p, CSR.CMD), we=1, data=Op.RUN), 0, 0),
]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_check_order(pipeline, rng):
    """Accesses failing several checks get the ERRCODE of the first in section 6's
    order; each case starts from cleared error registers."""
    p = MacroParams(**PARAMS["2x6-P3-B3-K2-all-counters"], pipeline=pipeline)

    async def scenario(bench):
        for name, build, busy, code in ORDER_CASES:
            tr = dict(build(p), busy=busy, gap=2, clear_before=True)
            assert expected_errcode(p, tr["addr"], we=tr["we"], data=tr.get("data", 0),
                                    sel=tr.get("sel", 0xF), busy=busy) == code, name
            before = len(bench.error_log)
            (access,) = await bench.run([tr])
            assert access.code == code, name
            recorded = [e for e in bench.error_log[before:] if e[0]]
            assert recorded == ([(code, tr["addr"])] if code else []), name

    simulate(p, rng, scenario)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_first_error_wins_and_clear(pipeline, rng):
    """The first fault since a clear is kept; a clear in the cycle a fault is recorded
    wins; a clear empties the registers; accepted accesses record nothing."""
    p = MacroParams(**PARAMS["2x6-P3-B3-K2-all-counters"], pipeline=pipeline)
    unmapped = 15 << p.region_shift
    read_only = Region.ACC << p.region_shift
    record_cycle = ERROR_VISIBLE_AFTER[pipeline] - 1

    async def scenario(bench):
        none = dict(clear=())
        await bench.run([dict(addr=unmapped, we=0, **none),
                         dict(addr=read_only, we=1, **none),
                         dict(addr=_csr(p, CSR.ID), we=0, **none)])
        assert bench.error == (1, ErrCode.BAD_ADDRESS, unmapped)
        await bench.run([dict(addr=_csr(p, CSR.ID), we=0, clear=(0,))])
        assert bench.error == (0, 0, 0)
        # Cleared in the very cycle the fault is recorded: the clear wins.
        await bench.run([dict(addr=read_only, we=1, clear=(record_cycle,))])
        assert bench.error == (0, 0, 0)
        # Cleared before: the fault is recorded.
        await bench.run([dict(addr=read_only, we=1, clear_before=True)])
        assert bench.error == (1, ErrCode.READ_ONLY, read_only)
        assert bench.error_log == [(ErrCode.BAD_ADDRESS, unmapped), (0, 0),
                                   (ErrCode.READ_ONLY, read_only)]

    simulate(p, rng, scenario)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_abandoned_accesses_and_back_to_back(pipeline, rng):
    """Random accesses, a third of them abandoned 1..bus_latency cycles after the access
    and followed at once by the next (which begins after the abandoned one's ack slot),
    the others back to back with cyc held high through the ack."""
    p = MacroParams(**PARAMS["96x3-P1-B2-K2"], pipeline=pipeline)
    lat = BUS_LATENCY[pipeline]
    addrs = sorted(address_map(p))
    transactions = []
    for _ in range(120):
        tr = dict(addr=int(rng.choice(addrs)), we=int(rng.integers(0, 2)),
                  data=int(rng.integers(0, WORD + 1)), gap=0)
        if rng.random() < 0.35:
            tr["hold"] = int(rng.integers(1, lat + 1))
        transactions.append(tr)

    async def scenario(bench):
        accesses = await bench.run(transactions)
        starts = [a.t for a in accesses]
        # Accesses never overlap, and one presented right after an ack or after an
        # abandoned access's cycle of cyc low begins in the cycle after the previous
        # access's ack slot.
        assert [b - a for a, b in zip(starts, starts[1:])] == [lat + 1] * (len(starts) - 1)
        assert sum(1 for tr in transactions if tr.get("hold")) > 20

    simulate(p, rng, scenario)
