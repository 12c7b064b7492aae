# amaranth: UnusedElaboratable=no
"""Tests of ``rtl/cim_macro.py`` (the whole macro) against the golden ``MacroModel``.

Every scenario drives the RTL through a Wishbone master and the model through
``MacroModel.write``/``read`` with the same accesses; every read is compared on the spot,
and after each command the cycles BUSY stayed high are counted on the ``busy`` port and
checked against CYCLES and ``p.run_cycles``/``calibrate_cycles``/``clear_cycles``. At
the end of a scenario every CSR and every word of every region is read back from both.

The model is never busy, so the BUSY error (ERRCODE 4) is checked on the RTL alone:
an access during a command must set ERRCODE/ERRADDR and change nothing else, which the
full read-back against the model (which never saw the access) then confirms.
"""

import pytest
from amaranth.sim import Simulator

from models.macro import MacroModel, word_address
from models.params import (
    BUS_DATA_BITS, CSR, NONIDEALITIES, QSHIFT_BITS, ErrCode, MacroParams, Op, Region, Status,
)
from rtl import wishbone
from rtl.cim_macro import CimMacro
from verif.address_space import (ACCUMULATE, NPLANES_SHIFT, command_cycles, command_ok,
                                 readback_addresses, region_words)

WORD = (1 << BUS_DATA_BITS) - 1

PARAMS = {
    "2x3-ideal": dict(rows=2, cols=3, nonideal=()),
    "32x96": dict(rows=32, cols=96),
    "32x96-P12": dict(rows=32, cols=96, cols_per_cycle=12),
    "64x10-P5-all": dict(rows=64, cols=10, cols_per_cycle=5, nonideal=NONIDEALITIES),
    "8x4-B8-K2": dict(rows=8, cols=4, input_bits=8, comp_rows=2, cols_per_cycle=2),
    "16x6-K16-P3-all": dict(rows=16, cols=6, comp_rows=16, cols_per_cycle=3,
                            nonideal=NONIDEALITIES),
    "96x5-P1-stuck": dict(rows=96, cols=5, input_bits=3, cols_per_cycle=1,
                          nonideal=("stuck", "gain")),
    # Pipelined readout paths: same results, L more cycles per group and read.
    "16x6-K16-P3-all-L2": dict(rows=16, cols=6, comp_rows=16, cols_per_cycle=3,
                               nonideal=NONIDEALITIES, pipeline=2),
    "8x4-B8-K2-L1": dict(rows=8, cols=4, input_bits=8, comp_rows=2, cols_per_cycle=2,
                         pipeline=1),
    "12x9-P3-L3": dict(rows=12, cols=9, cols_per_cycle=3, pipeline=3),
    "32x12-P6-B3-L4": dict(rows=32, cols=12, cols_per_cycle=6, input_bits=3, pipeline=4),
    # 18 lanes at L = 4: the controls and the STATUS.acc_sat OR in blocks of 8 lanes.
    "12x18-B3-L4": dict(rows=12, cols=18, input_bits=3, pipeline=4),
    # 40 lanes at L = 4: the read multiplexer's third stage (two groups of four blocks,
    # the second one short) and the two-level copy trees.
    "4x40-B2-K2-L4": dict(rows=4, cols=40, input_bits=2, comp_rows=2, pipeline=4),
    # The activity counters (read as CSRs by every scoreboard), at L = 0, 2 and 4.
    "6x5-P5-all-counters": dict(rows=6, cols=5, nonideal=NONIDEALITIES, counters=True),
    "8x6-P3-L2-counters": dict(rows=8, cols=6, cols_per_cycle=3, pipeline=2, counters=True),
    "12x18-B3-L4-counters": dict(rows=12, cols=18, input_bits=3, pipeline=4, counters=True),
    # 20 lanes: the split lane multiplexer (blocks of 8, the last one short).
    "64x20-K4-all-L2": dict(rows=64, cols=20, comp_rows=4, nonideal=NONIDEALITIES, pipeline=2),
}


# --- helpers ------------------------------------------------------------------------------

def signed_word(value):
    return value & WORD


class Bench:
    """A Wishbone master on the RTL and the golden model, driven in lock step.

    Parameters
    ----------
    ctx : amaranth.sim testbench context
    dut : CimMacro
    model : MacroModel

    Members
    -------
    busy_runs : list of int
        Lengths of the completed runs of ``busy`` = 1, in cycles, as seen on the port.
    """

    def __init__(self, ctx, dut, model):
        self.ctx, self.dut, self.model, self.p = ctx, dut, model, dut.params
        self.busy_runs = []
        self._run = 0

    async def tick(self):
        if self.ctx.get(self.dut.busy):
            self._run += 1
        elif self._run:
            self.busy_runs.append(self._run)
            self._run = 0
        await self.ctx.tick()

    async def access(self, addr, data=0, sel=0xF, we=False):
        """One classic-cycle access on the RTL; returns ``dat_r`` (with ``ack``)."""
        ctx, wb = self.ctx, self.dut.wb
        assert not ctx.get(wb.ack), "ack high before the access"
        ctx.set(wb.adr, addr)
        ctx.set(wb.dat_w, data)
        ctx.set(wb.sel, sel)
        ctx.set(wb.we, we)
        ctx.set(wb.cyc, 1)
        ctx.set(wb.stb, 1)
        # Section 6: ack exactly p.bus_latency cycles after the access.
        for _ in range(self.p.bus_latency):
            assert not ctx.get(wb.ack), f"ack too early for the access to {addr:#x}"
            await self.tick()
        assert ctx.get(wb.ack), f"no ack {self.p.bus_latency} cycles after the access to {addr:#x}"
        value = ctx.get(wb.dat_r)
        ctx.set(wb.cyc, 0)
        ctx.set(wb.stb, 0)
        ctx.set(wb.we, 0)
        await self.tick()
        assert not ctx.get(wb.ack), "ack high for more than one cycle"
        return value

    async def rtl_write(self, addr, data, sel=0xF):
        await self.access(addr, data, sel, we=True)

    async def rtl_read(self, addr):
        return await self.access(addr)

    async def write(self, addr, data, sel=0xF):
        """Write to both; a command waits for the RTL to finish and checks its cycles."""
        self.model.write(addr, data, sel)
        await self.rtl_write(addr, data, sel)
        if addr == self.csr(CSR.CMD) and sel == 0xF and command_ok(self.p, data):
            await self.finish_command(data)

    async def finish_command(self, cmd):
        cycles = await self.wait_idle()
        expected = command_cycles(self.p, cmd)
        assert cycles == expected, f"command {cmd:#x}: BUSY for {cycles} cycles, not {expected}"
        assert self.model.cycles == expected
        assert await self.read(self.csr(CSR.CYCLES)) == expected

    async def wait_idle(self, limit=100_000):
        """Cycles until ``busy`` falls; the length of the busy run that just ended."""
        for _ in range(limit):
            if not self.ctx.get(self.dut.busy):
                break
            await self.tick()
        else:
            raise AssertionError("busy never fell")
        await self.tick()
        assert self.busy_runs, "no busy run seen"
        return self.busy_runs.pop()

    async def read(self, addr):
        expected = self.model.read(addr)
        got = await self.rtl_read(addr)
        assert got == expected, f"read {addr:#x}: RTL {got:#010x}, model {expected:#010x}"
        return got

    def csr(self, reg):
        return (Region.CSR << self.p.region_shift) | reg

    def addr(self, region, **fields):
        return word_address(self.p, region, **fields)

    async def command(self, cmd):
        """Write CMD (an accepted command) and wait for it on both sides."""
        assert command_ok(self.p, cmd)
        self.model.write(self.csr(CSR.CMD), cmd)
        await self.rtl_write(self.csr(CSR.CMD), cmd)
        await self.finish_command(cmd)

    async def compare_all(self):
        for addr in readback_addresses(self.p):
            await self.read(addr)


def simulate(p, scenario):
    """Run ``scenario(bench)`` on a fresh CimMacro(p) and MacroModel(p)."""
    dut = CimMacro(p)
    model = MacroModel(p)
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def testbench(ctx):
        await scenario(Bench(ctx, dut, model))

    sim.add_testbench(testbench)
    sim.run()


# --- random stimulus ------------------------------------------------------------------------

def random_value(rng, region):
    """A word the region accepts (bits beyond the field are random where ignored)."""
    kind, width = region["kind"], region["width"]
    if kind in ("bits", "packed"):
        return int(rng.integers(0, 1 << 32))
    if kind == "signed":
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        return signed_word(int(rng.integers(lo, hi + 1)))
    return int(rng.integers(0, 1 << width))


def bad_value(rng, region):
    """A word outside a numeric region's range."""
    width = region["width"]
    if region["kind"] == "signed":
        if width >= 32:
            return None
        while True:
            word = int(rng.integers(0, 1 << 32))
            top = word >> (width - 1)
            if top not in (0, (1 << (33 - width)) - 1):
                return word
    return int(rng.integers(1 << width, 1 << 32))


def random_command(rng, p, valid=True):
    if valid:
        op = int(rng.choice([Op.RUN, Op.RUN, Op.CALIBRATE, Op.CLEAR]))
        if op != Op.RUN:
            return op
        planes = int(rng.integers(0, p.input_bits + 1))
        return op | (ACCUMULATE if rng.random() < 0.5 else 0) | planes << NPLANES_SHIFT
    choice = rng.integers(0, 5)
    if choice == 0:
        return int(rng.choice([0, 4, 5, 6, 7]))                       # bad opcode
    if choice == 1:
        return Op.RUN | 1 << int(rng.choice([3, 5, 6, 7, 12, 20, 31]))  # reserved bit
    if choice == 2:
        return Op.RUN | int(rng.integers(p.input_bits + 1, 16)) << NPLANES_SHIFT   # B <= 8
    if choice == 3:
        return int(rng.choice([Op.CALIBRATE, Op.CLEAR])) | ACCUMULATE
    return int(rng.choice([Op.CALIBRATE, Op.CLEAR])) | int(rng.integers(1, 16)) << NPLANES_SHIFT


async def random_operation(bench, rng):
    """One random access, valid or faulty, on both the RTL and the model."""
    p = bench.p
    regions = p.regions()
    writable = [r for r in regions if r["access"] == "rw"]
    numeric = [r for r in writable if r["kind"] in ("signed", "unsigned")]
    read_only = [r for r in regions if r["access"] == "ro"]
    kind = rng.choice(["write", "write", "write", "read", "read", "command", "bad_command",
                       "status", "readout", "random", "bad_sel", "read_only", "bad_value"])
    if kind == "write":
        r = writable[rng.integers(len(writable))]
        addr = int(rng.choice(region_words(p, r)))
        await bench.write(addr, random_value(rng, r))
    elif kind == "read":
        await bench.read(int(rng.choice(readback_addresses(p))))
    elif kind == "command":
        await bench.write(bench.csr(CSR.CMD), random_command(rng, p))
    elif kind == "bad_command":
        await bench.write(bench.csr(CSR.CMD), random_command(rng, p, valid=False))
    elif kind == "status":
        await bench.write(bench.csr(CSR.STATUS), int(rng.integers(0, 1 << 32)))
    elif kind == "readout":
        reg = int(rng.choice([CSR.SAT, CSR.QSHIFT]))
        top = {CSR.SAT: p.readout_max, CSR.QSHIFT: (1 << QSHIFT_BITS) - 1}[reg]
        value = int(rng.integers(0, top + 1) if rng.random() < 0.7 else rng.integers(0, 1 << 32))
        await bench.write(bench.csr(reg), value)     # BAD_ADDRESS when readout is not built
    elif kind == "random":
        addr = int(rng.integers(0, 1 << p.addr_bits))
        if rng.random() < 0.5:
            await bench.read(addr)
        elif addr != bench.csr(CSR.CMD):
            await bench.write(addr, int(rng.integers(0, 1 << 32)))
    elif kind == "bad_sel":
        addr = int(rng.integers(0, 1 << p.addr_bits))
        await bench.write(addr, int(rng.integers(0, 1 << 32)), sel=int(rng.integers(0, 15)))
    elif kind == "read_only":
        if rng.random() < 0.5:
            r = read_only[rng.integers(len(read_only))]
            addr = int(rng.choice(region_words(p, r)))
        else:
            ro = [c["offset"] for c in p.csrs() if c["access"] == "ro"]
            addr = bench.csr(int(rng.choice(ro)))
        await bench.write(addr, int(rng.integers(0, 1 << 32)))
    elif kind == "bad_value":
        r = numeric[rng.integers(len(numeric))]
        value = bad_value(rng, r)
        if value is not None:
            await bench.write(int(rng.choice(region_words(p, r))), value)
    if rng.random() < 0.3:
        await bench.read(bench.csr(int(rng.choice([CSR.STATUS, CSR.ERRCODE, CSR.ERRADDR]))))
    if rng.random() < 0.15:
        await bench.write(bench.csr(CSR.STATUS), 1 << Status.ERROR)


async def load_random_state(bench, rng, regions=None):
    """Write a random valid value to every word of the writable regions."""
    for r in bench.p.regions():
        if r["access"] != "rw" or (regions is not None and r["name"] not in regions):
            continue
        for addr in region_words(bench.p, r):
            await bench.write(addr, random_value(rng, r))


# --- tests -----------------------------------------------------------------------------------

def test_rejects_bad_params():
    with pytest.raises(TypeError, match="MacroParams"):
        CimMacro(dict(rows=2, cols=3))


def test_signature():
    p = MacroParams(rows=32, cols=96)
    dut = CimMacro(p)
    assert dut.signature.members["wb"].signature == wishbone.Signature(p.addr_bits).flip()
    assert dut.busy.shape().width == dut.done.shape().width == dut.error.shape().width == 1
    assert dut.params is p


@pytest.mark.parametrize("key", sorted(PARAMS))
def test_reset_state_matches_model(key):
    p = MacroParams(**PARAMS[key])

    async def scenario(bench):
        await bench.compare_all()
        await bench.read(bench.csr(CSR.STATUS))
        await bench.read(bench.csr(CSR.ERRCODE))

    simulate(p, scenario)


@pytest.mark.parametrize("key", sorted(PARAMS))
def test_random_accesses_scoreboard(key, rng):
    p = MacroParams(**PARAMS[key])
    operations = 80 if p.cols_per_cycle * p.rows > 1024 else 200

    async def scenario(bench):
        await load_random_state(bench, rng)
        for _ in range(operations):
            await random_operation(bench, rng)
        await bench.compare_all()

    simulate(p, scenario)


@pytest.mark.parametrize("key", ["2x3-ideal", "8x4-B8-K2", "96x5-P1-stuck", "64x20-K4-all-L2"])
def test_every_field_hole_and_region_is_decoded(key):
    """Exhaustive over the address space: every address reads like the model."""
    p = MacroParams(**PARAMS[key])
    if (1 << p.addr_bits) > 4096:
        pytest.skip("address space too large to sweep")

    async def scenario(bench):
        for addr in range(1 << p.addr_bits):
            await bench.read(addr)
            if bench.model.status >> Status.ERROR & 1:
                await bench.read(bench.csr(CSR.ERRADDR))
                await bench.write(bench.csr(CSR.STATUS), 1 << Status.ERROR)

    simulate(p, scenario)


@pytest.mark.parametrize("key", ["32x96", "32x96-P12", "64x10-P5-all", "8x4-B8-K2",
                                 "16x6-K16-P3-all-L2", "12x18-B3-L4"])
def test_run_end_to_end_and_accumulate(key, rng):
    """Random weights, inputs and non-idealities; RUN, then a second tile accumulated."""
    p = MacroParams(**PARAMS[key])

    async def scenario(bench):
        await load_random_state(bench, rng)
        if p.has("readout"):
            sat = int(rng.integers(p.readout_max // 2, p.readout_max + 1))
            await bench.write(bench.csr(CSR.SAT), sat)
            await bench.write(bench.csr(CSR.QSHIFT), int(rng.integers(0, 3)))
        await bench.command(Op.RUN)
        for c in range(p.cols):
            group, slot = divmod(c, p.cols_per_cycle)
            await bench.read(bench.addr("ACC", group=group, slot=slot))
        for j in range(p.packed_words):
            await bench.read(bench.addr("OUT", word=j))
        # Second row tile: new inputs, accumulated onto ACC.
        await load_random_state(bench, rng, regions={"INPUT"})
        await bench.command(Op.RUN | ACCUMULATE | p.input_bits << NPLANES_SHIFT)
        await bench.compare_all()
        await bench.read(bench.csr(CSR.STATUS))

    simulate(p, scenario)


@pytest.mark.parametrize("key", ["32x96-P12", "16x6-K16-P3-all", "8x4-B8-K2", "2x3-ideal",
                                 "16x6-K16-P3-all-L2", "8x4-B8-K2-L1", "12x9-P3-L3",
                                 "32x12-P6-B3-L4", "12x18-B3-L4"])
def test_calibrate_end_to_end(key, rng):
    """Random offsets (some outside the compensation range): COMP, CALFLAG, cal_range."""
    p = MacroParams(**PARAMS[key])
    K = p.comp_rows

    async def scenario(bench):
        for c in range(p.cols):
            g, s = divmod(c, p.cols_per_cycle)
            if p.has("offset"):
                lo = max(-K - 3, -(1 << (p.readout_bits - 1)))
                hi = min(K + 2, p.readout_max)
                await bench.write(bench.addr("OFFSET", group=g, slot=s),
                                  signed_word(int(rng.integers(lo, hi + 1))))
            await bench.write(bench.addr("COMP", group=g, slot=s), int(rng.integers(0, 1 << 32)))
        await bench.command(Op.CALIBRATE)
        for r in ("COMP", "CALFLAG"):
            for addr in region_words(p, next(x for x in p.regions() if x["name"] == r)):
                await bench.read(addr)
        await bench.read(bench.csr(CSR.STATUS))
        # A RUN after calibration uses the new COMP words.
        await load_random_state(bench, rng, regions={"WEIGHT", "INPUT"})
        await bench.command(Op.RUN)
        await bench.compare_all()

    simulate(p, scenario)


def test_busy_errors_and_status_while_busy(rng):
    """While busy: memory accesses, CMD and SAT/QSHIFT writes give BUSY and change nothing."""
    p = MacroParams(rows=8, cols=24, cols_per_cycle=1, nonideal=("offset", "readout"))
    assert p.run_cycles(p.input_bits) >= 150    # outlasts the probes below

    async def scenario(bench):
        await load_random_state(bench, rng)
        cmd_addr = bench.csr(CSR.CMD)
        bench.model.write(cmd_addr, Op.RUN)
        await bench.rtl_write(cmd_addr, Op.RUN)
        probes = [
            (bench.addr("WEIGHT", group=3), True),
            (bench.addr("THRESH", group=1), False),
            (bench.addr("FLIP"), True),
            (bench.addr("INPUT", plane=2), True),
            (bench.addr("ACC", group=23), False),
            (bench.addr("OUT"), False),
            (bench.addr("OFFSET", group=0), True),
            (cmd_addr, True),
            (bench.csr(CSR.SAT), True),
            (bench.csr(CSR.QSHIFT), True),
        ]
        for addr, we in probes:
            assert bench.ctx.get(bench.dut.busy)
            status = await bench.rtl_read(bench.csr(CSR.STATUS))
            assert status & 0b11 == 1 << Status.BUSY          # busy, not done
            if we:
                await bench.rtl_write(addr, int(rng.integers(0, 1 << 32)))
            else:
                assert await bench.rtl_read(addr) == 0        # a faulty read returns 0
            assert await bench.rtl_read(bench.csr(CSR.ERRCODE)) == ErrCode.BUSY
            assert await bench.rtl_read(bench.csr(CSR.ERRADDR)) == addr
            # Writing STATUS while busy only clears flags.
            await bench.rtl_write(bench.csr(CSR.STATUS), 0xFFFF_FFFF)
            assert await bench.rtl_read(bench.csr(CSR.ERRCODE)) == 0
        # Read-only and unmapped accesses keep their own codes while busy.
        await bench.rtl_write(bench.addr("ACC"), 1)
        assert await bench.rtl_read(bench.csr(CSR.ERRCODE)) == ErrCode.READ_ONLY
        await bench.rtl_write(bench.csr(CSR.STATUS), 1 << Status.ERROR)
        await bench.rtl_write(bench.csr(CSR.STATUS), 1, sel=0x7)
        assert await bench.rtl_read(bench.csr(CSR.ERRCODE)) == ErrCode.BAD_SEL
        await bench.rtl_write(bench.csr(CSR.STATUS), 1 << Status.ERROR)
        assert bench.ctx.get(bench.dut.busy), "the probes outlasted the command"
        cycles = await bench.wait_idle()
        assert cycles == p.run_cycles(p.input_bits) == bench.model.cycles
        # Nothing the probes wrote took effect; the model never saw them.
        await bench.compare_all()

    simulate(p, scenario)


def test_back_to_back_accesses_with_cyc_held():
    """A master that keeps cyc & stb high gets one access every two cycles."""
    p = MacroParams(rows=4, cols=3, nonideal=())

    async def scenario(bench):
        ctx, wb = bench.ctx, bench.dut.wb
        thresh = bench.addr("THRESH", slot=1)
        ctx.set(wb.cyc, 1)
        ctx.set(wb.stb, 1)
        ctx.set(wb.sel, 0xF)
        ctx.set(wb.we, 1)
        ctx.set(wb.adr, thresh)
        ctx.set(wb.dat_w, signed_word(-5))
        await ctx.tick()
        assert ctx.get(wb.ack)
        # The ack cycle is not an access, whatever the bus shows in it: the read of ID
        # presented now is performed in the next cycle.
        ctx.set(wb.we, 0)
        ctx.set(wb.adr, bench.csr(CSR.ID))
        await ctx.tick()
        assert not ctx.get(wb.ack)
        await ctx.tick()
        assert ctx.get(wb.ack)
        assert ctx.get(wb.dat_r) == bench.model.read(bench.csr(CSR.ID))
        ctx.set(wb.adr, thresh)
        await ctx.tick()
        assert not ctx.get(wb.ack)
        await ctx.tick()
        assert ctx.get(wb.ack)
        assert ctx.get(wb.dat_r) == signed_word(-5)
        ctx.set(wb.cyc, 0)
        ctx.set(wb.stb, 0)
        await ctx.tick()
        assert not ctx.get(wb.ack)
        status = await bench.rtl_read(bench.csr(CSR.STATUS))
        assert status == 0

    simulate(p, scenario)


@pytest.mark.parametrize("pipeline", [0, 1, 2, 3, 4])
def test_abandoned_accesses(rng, pipeline):
    """A master that drops CYC before the ack (section 6): the access is performed, its
    ack never comes (and no ack is high while CYC is low), and an access presented again
    right away begins only after the abandoned one's ack slot. Random writes and reads,
    dropped 1..bus_latency cycles after the access; the model performs every write, and
    every word is compared at the end."""
    p = MacroParams(rows=4, cols=6, cols_per_cycle=3, input_bits=2, comp_rows=2,
                    nonideal=NONIDEALITIES, pipeline=pipeline)
    lat = p.bus_latency
    writable = [r for r in p.regions() if r["access"] == "rw"]

    async def scenario(bench):
        ctx, wb = bench.ctx, bench.dut.wb
        for _ in range(25):
            r = writable[rng.integers(len(writable))]
            addr = int(rng.choice(region_words(p, r)))
            we = bool(rng.random() < 0.7)
            data = random_value(rng, r)
            if we:
                bench.model.write(addr, data)
            held = int(rng.integers(1, lat + 1))      # cycles with CYC high, from the access
            ctx.set(wb.adr, addr)
            ctx.set(wb.dat_w, data)
            ctx.set(wb.sel, 0xF)
            ctx.set(wb.we, we)
            ctx.set(wb.cyc, 1)
            ctx.set(wb.stb, 1)
            for _ in range(held):
                assert not ctx.get(wb.ack)
                await ctx.tick()
            ctx.set(wb.cyc, 0)
            ctx.set(wb.stb, 0)
            assert not ctx.get(wb.ack), "ack while CYC is low"
            if rng.random() < 0.5:
                # CYC up again at once with a read of the same word: it begins in the
                # cycle after the abandoned access's ack slot (access + lat) at the
                # earliest, and is acknowledged lat cycles after that.
                await ctx.tick()
                assert not ctx.get(wb.ack)
                ctx.set(wb.we, 0)
                ctx.set(wb.cyc, 1)
                ctx.set(wb.stb, 1)
                begins = max(held + 1, lat + 1)
                for cycle in range(held + 1, begins + lat):
                    assert not ctx.get(wb.ack), f"ack in cycle {cycle} of {begins + lat}"
                    await ctx.tick()
                assert ctx.get(wb.ack)
                assert ctx.get(wb.dat_r) == bench.model.read(addr)
                ctx.set(wb.cyc, 0)
                ctx.set(wb.stb, 0)
                await ctx.tick()
            else:
                for _ in range(lat + 1 - held):
                    await ctx.tick()
                    assert not ctx.get(wb.ack)
        assert await bench.rtl_read(bench.csr(CSR.STATUS)) == 0     # no error recorded
        await bench.compare_all()

    simulate(p, scenario)


@pytest.mark.parametrize("pipeline", [0, 4])
def test_clear_and_command_flags(rng, pipeline):
    """CLEAR zeroes ACC and OUT; DONE/acc_sat W1C; CMD reads the last accepted command.
    Four column groups: with L = 4, the store enables of the CLEAR cycles come from a
    tree of copies loaded two cycles ahead."""
    p = MacroParams(rows=32, cols=8, cols_per_cycle=2, input_bits=8, acc_bits=15,
                    nonideal=("offset", "readout"), pipeline=pipeline)

    async def scenario(bench):
        # All-ones weights and inputs drive ACC to saturation within a few tiles.
        for addr in region_words(p, next(r for r in p.regions() if r["name"] == "WEIGHT")):
            await bench.write(addr, WORD)
        for addr in region_words(p, next(r for r in p.regions() if r["name"] == "INPUT")):
            await bench.write(addr, WORD)
        for _ in range(6):
            await bench.command(Op.RUN | ACCUMULATE)
            await bench.read(bench.csr(CSR.STATUS))
        assert bench.model.status >> Status.ACC_SAT & 1, "test did not saturate"
        await bench.compare_all()
        await bench.write(bench.csr(CSR.CMD), 0x7)                   # rejected
        await bench.read(bench.csr(CSR.CMD))                          # still the RUN
        await bench.write(bench.csr(CSR.STATUS), 1 << Status.DONE | 1 << Status.ACC_SAT)
        await bench.read(bench.csr(CSR.STATUS))
        await bench.command(Op.CLEAR)
        await bench.compare_all()
        await bench.write(bench.csr(CSR.STATUS), WORD)
        await bench.read(bench.csr(CSR.STATUS))

    simulate(p, scenario)


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(PARAMS))
def test_random_accesses_soak(key, rng):
    p = MacroParams(**PARAMS[key])

    async def scenario(bench):
        for _ in range(3):
            await load_random_state(bench, rng)
            for _ in range(400):
                await random_operation(bench, rng)
            await bench.compare_all()

    simulate(p, scenario)


@pytest.mark.parametrize("key", ["8x4-B8-K2", "8x4-B8-K2-L1", "12x18-B3-L4", "32x12-P6-B3-L4"])
@pytest.mark.parametrize("delay", range(5))
def test_status_polled_to_the_end_of_a_saturating_run(key, delay):
    """STATUS read back to back while a RUN saturates ACC: the first read that shows BUSY
    low also shows DONE and ACC_SAT (in every phase of the polls against the write-back
    cycle: ``delay`` idle cycles before the command)."""
    params = dict(PARAMS[key])
    params["acc_bits"] = MacroParams(**params).readout_bits + params.get("input_bits", 5)
    p = MacroParams(**params)
    status_addr = (Region.CSR << p.region_shift) | CSR.STATUS

    async def scenario(bench):
        for c in range(p.cols):
            group, slot = divmod(c, p.cols_per_cycle)
            for chunk in range(p.chunks):
                await bench.write(bench.addr("WEIGHT", group=group, slot=slot, chunk=chunk),
                                  (1 << p.chunk_rows) - 1)
        for b in range(p.input_bits):
            for chunk in range(p.chunks):
                await bench.write(bench.addr("INPUT", plane=b, chunk=chunk), (1 << p.chunk_rows) - 1)
        cmd = Op.RUN | ACCUMULATE
        await bench.command(Op.RUN)
        for _ in range(8):          # ACC up to its limit...
            if bench.model.read(status_addr) >> Status.ACC_SAT & 1:
                break
            await bench.command(cmd)
        await bench.write(status_addr, 1 << Status.ACC_SAT | 1 << Status.DONE)   # ...and the flags cleared
        for _ in range(delay):
            await bench.tick()
        bench.model.write(bench.csr(CSR.CMD), cmd)
        await bench.rtl_write(bench.csr(CSR.CMD), cmd)
        for _ in range(1000):
            status = await bench.rtl_read(status_addr)
            if not status >> Status.BUSY & 1:
                break
        expected = bench.model.read(status_addr)
        assert expected >> Status.ACC_SAT & 1, "the scenario must saturate"
        assert status == expected, f"STATUS {status:#x} as BUSY fell, model {expected:#x}"

    simulate(p, scenario)
