"""cocotb testbench of the whole macro (``rtl/cim_macro.py``) against ``models.macro.MacroModel``.

Scoreboard
    Every bus access goes to the RTL (a Wishbone master, per clock edge, or the burst
    engine for bulk transfers) and, in lock step, to the register-level golden model;
    every word read is compared on the spot, and each test ends with a full read-back
    of every CSR and every word of every region from both.

Commands and BUSY
    The model completes a command inside the CMD write; the RTL is busy for the
    contract's cycle count (section 5), which is checked on the ``busy`` port and in
    CYCLES for every accepted command. Accesses while the RTL is busy are applied to the
    RTL only and predicted by the rules of section 6: BAD_SEL, BAD_ADDRESS and READ_ONLY
    (which the model reports for the same access when idle) come first, then BUSY for a
    memory-region access or a CMD/SAT/QSHIFT write; CSR reads and STATUS writes proceed.
    The first-error rule is applied to the model's error registers, and the final
    read-back confirms that nothing else changed.

Tests
    ``reset_state``: every register and memory word after reset.
    ``random_traffic``: seeded random accesses over the whole address space (valid
    words, holes, unmapped regions and CSRs, read-only targets, bad byte selects, values
    out of range, every command and every kind of bad command, STATUS W1C), accesses
    during commands, periodic error read-out and clear; then a full read-back.
    ``bus_errors``: each error of section 6 on purpose, each followed by a check of
    STATUS/ERRCODE/ERRADDR, then a full read-back (a faulty access changes nothing).
    ``calibration_sweep``: every offset from -K-3 to K+3 (within W) with the ideal
    chain: COMP, CALFLAG, STATUS.cal_range and CYCLES = G(S+3); residual bound inside
    the range, the flag outside it.
    ``chip_instances``: random chip instances with every built non-ideality (offsets,
    gains, transfer table, stuck cells, SAT, QSHIFT), calibrated and run (several
    weight sets, inputs, plane counts, accumulation) through the host driver on the RTL
    and on the model side by side.
"""

from __future__ import annotations

import copy

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from models.macro import MacroModel
from models.params import (
    CSR, GAIN_BITS, QSHIFT_BITS, ErrCode, Op, Region, Status,
)
from verif.address_space import (ACCUMULATE, NPLANES_SHIFT, command_cycles, command_ok,
                                 field_sizes, readback_addresses, region_words)
from host.driver import MacroDriver
from host.transport import ModelTransport
from verif.wishbone_master import CocotbWishboneTransport

from .burst import BurstTransport
from .tb import TB, PhaseMonitor, context

TIMEOUT_MS = 600_000
WORD = (1 << 32) - 1
ERRCODE_NAMES = {v: k for k, v in vars(ErrCode).items() if k.isupper() and isinstance(v, int)}


# --- address space -----------------------------------------------------------------------

def hole_addresses(p, rng, count):
    """Addresses inside built regions that select no word (a field past its size or
    offset bits above the region's fields): BAD_ADDRESS."""
    sizes = field_sizes(p)
    found = []
    for _ in range(count * 20):
        r = p.regions()[rng.integers(len(p.regions()))]
        if r["region"] == Region.CSR:
            reg = int(rng.integers(0, 32))
            if reg in {c["offset"] for c in p.csrs()}:
                continue
            offset = reg
        else:
            offset = 0
            bad = False
            for name, width in r["fields"]:
                v = int(rng.integers(0, 1 << width)) if width else 0
                bad |= v >= sizes[name]
                offset = (offset << width) | v
            if r["offset_bits"] < p.region_shift and rng.integers(2):
                offset |= int(rng.integers(1, 1 << (p.region_shift - r["offset_bits"]))) \
                    << r["offset_bits"]
                bad = True
            if not bad:
                continue
        found.append((r["region"] << p.region_shift) | offset)
        if len(found) == count:
            break
    return found


def unmapped_region_addresses(p, rng, count):
    built = {r["region"] for r in p.regions()}
    free = [n for n in range(1 << Region.BITS) if n not in built]
    return [(int(rng.choice(free)) << p.region_shift) | int(rng.integers(0, 1 << p.region_shift))
            for _ in range(count)]


# --- commands -----------------------------------------------------------------------------

def random_command(p, rng):
    """A CMD word and its coverage bins (group, bin)."""
    kind = rng.choice(["run", "calibrate", "clear", "bad"], p=[0.5, 0.15, 0.15, 0.2])
    if kind == "run":
        planes = int(rng.integers(0, p.input_bits + 1))
        acc = bool(rng.integers(2))
        bins = [("command", "RUN"), ("command", "RUN_ALL_PLANES" if planes in (0, p.input_bits)
                                     else "RUN_FEWER_PLANES")]
        if acc:
            bins.append(("command", "RUN_ACCUMULATE"))
        return Op.RUN | acc << 4 | planes << NPLANES_SHIFT, bins
    if kind == "calibrate":
        return Op.CALIBRATE, [("command", "CALIBRATE")]
    if kind == "clear":
        return Op.CLEAR, [("command", "CLEAR")]
    reason = rng.choice(["opcode", "reserved_bits", "nplanes_over_B", "accumulate_not_run",
                         "nplanes_not_run"])
    if reason == "opcode":
        cmd = int(rng.choice([0, 4, 5, 6, 7]))
    elif reason == "reserved_bits":
        bit = int(rng.choice([3, 5, 6, 7] + list(range(12, 32))))
        cmd = int(rng.choice(Op.ALL)) | 1 << bit
    elif reason == "nplanes_over_B":
        if p.input_bits == 15:
            reason, cmd = "opcode", 0
        else:
            cmd = Op.RUN | int(rng.integers(p.input_bits + 1, 16)) << NPLANES_SHIFT
    elif reason == "accumulate_not_run":
        cmd = int(rng.choice([Op.CALIBRATE, Op.CLEAR])) | ACCUMULATE
    else:
        cmd = int(rng.choice([Op.CALIBRATE, Op.CLEAR])) | int(rng.integers(1, 16)) << NPLANES_SHIFT
    assert not command_ok(p, cmd)
    return cmd, [("bad_command", reason)]


# --- the bench ------------------------------------------------------------------------------

class MacroBench(TB):
    """The macro in its harness, the golden model beside it, and the monitors.

    Members
    -------
    model : MacroModel
    bus : CocotbWishboneTransport
        Per-edge master (the traffic tests).
    burst : BurstTransport
        Burst engine (read-backs and the driver-level tests).
    busy_runs : list of int
        Cycles of every completed BUSY run seen on the ``busy`` port.
    """

    def __init__(self, dut, ctx):
        super().__init__(dut, ctx)
        p = self.p
        self.model = MacroModel(p)
        self.bus = CocotbWishboneTransport.from_dut(dut)
        self.burst = BurstTransport(dut)
        self.busy_runs = []
        self.commands = 0
        self.csr_addr = {c["offset"]: (Region.CSR << p.region_shift) | c["offset"] for c in p.csrs()}
        self.monitors = []

    def csr(self, reg):
        return (Region.CSR << self.p.region_shift) | reg

    async def start(self) -> None:
        await self.reset()
        cov = self.ctx.coverage
        from rtl.sequencer import Phase
        from rtl.calibration_fsm import CalState
        if hasattr(self.dut, "cov_phase"):
            self.monitors.append(PhaseMonitor(self, self.dut.cov_phase, cov, "macro",
                                              {ph.value: ph.name for ph in Phase}))
        if hasattr(self.dut, "cov_cal_state"):
            self.monitors.append(PhaseMonitor(self, self.dut.cov_cal_state, cov, "cal_fsm",
                                              {s.value: s.name for s in CalState}))
        for mon in self.monitors:
            cocotb.start_soon(mon.run())
        cocotb.start_soon(self._busy_monitor())

    async def _busy_monitor(self) -> None:
        while True:
            await RisingEdge(self.dut.busy)
            await ReadOnly()
            start = self.cycles()
            await FallingEdge(self.dut.busy)
            await ReadOnly()
            self.busy_runs.append(self.cycles() - start)

    def finish(self) -> None:
        for mon in self.monitors:
            mon.running = False
        self.ctx.save()

    # --- lock-step accesses (RTL idle) ----------------------------------------------------

    async def read(self, addr: int, where: str = "") -> int:
        want = self.model.read(addr)
        got = await self.bus.read(addr)
        assert got == want, f"{where}read {addr:#x}: RTL {got:#010x}, model {want:#010x}"
        self._sample_status(addr, got)
        return got

    def _sample_status(self, addr: int, word: int) -> None:
        cov = self.ctx.coverage
        if addr == self.csr(CSR.ERRCODE) and word in ERRCODE_NAMES and word:
            cov.hit("errcode", ERRCODE_NAMES[word])
        if addr == self.csr(CSR.STATUS) and word >> Status.ACC_SAT & 1:
            cov.hit("saturation", "status_acc_sat")

    async def write(self, addr: int, data: int, sel: int = 0xF, *, busy_accesses=None) -> None:
        """Write to both; an accepted command is followed through to its end.

        ``busy_accesses(max_count)`` may return accesses to make while the RTL is busy.
        """
        self.model.write(addr, data, sel)
        await self.bus.write(addr, data, sel)
        if addr == self.csr(CSR.CMD) and sel == 0xF and command_ok(self.p, data):
            expected = command_cycles(self.p, data)
            self.commands += 1
            if busy_accesses is not None:
                # The k-th access after the CMD write is decoded k * (bus latency + 1)
                # cycles after it (the ack, then one idle cycle), so the first
                # N // (bus latency + 1) of them fall inside the N busy cycles.
                period = self.p.bus_latency + 1
                for access in busy_accesses(expected // period):
                    await self.busy_access(*access)
            await self.wait_command(expected, data)

    async def wait_command(self, expected: int, cmd: int) -> None:
        for _ in range(expected + 8):
            if len(self.busy_runs) >= self.commands:
                break
            await RisingEdge(self.clk)
        assert len(self.busy_runs) == self.commands, f"command {cmd:#x} never finished"
        cycles = self.busy_runs[-1]
        assert cycles == expected, f"command {cmd:#x}: BUSY for {cycles} cycles, contract {expected}"
        assert self.model.cycles == expected
        await self.read(self.csr(CSR.CYCLES), f"after command {cmd:#x}: ")

    # --- accesses while the RTL is busy ----------------------------------------------------

    def _predict_busy(self, we: bool, addr: int, data: int, sel: int) -> int:
        """ERRCODE the RTL raises for this access while busy (0: none)."""
        probe = copy.deepcopy(self.model)
        probe.status &= ~(1 << Status.ERROR)
        if we:
            probe.write(addr, data, sel)
        else:
            probe.read(addr)
        idle_code = probe.errcode if probe.status >> Status.ERROR & 1 else 0
        if idle_code in (ErrCode.BAD_SEL, ErrCode.BAD_ADDRESS, ErrCode.READ_ONLY):
            return idle_code
        region = addr >> self.p.region_shift
        reg = addr & 0x1F
        if region != Region.CSR or (we and reg in (CSR.CMD, CSR.SAT, CSR.QSHIFT)):
            return ErrCode.BUSY
        return idle_code

    async def busy_access(self, we: bool, addr: int, data: int = 0, sel: int = 0xF) -> None:
        """One access while the RTL is busy, checked against the rules of section 6."""
        model = self.model
        code = self._predict_busy(we, addr, data, sel)
        if code:
            model.count_access()            # the RTL counts it, the model never sees it
            if not model.status >> Status.ERROR & 1:
                model.status |= 1 << Status.ERROR
                model.errcode, model.erraddr = code, addr
        if we:
            await self.bus.write(addr, data, sel)
            if not code and addr == self.csr(CSR.STATUS):
                # Only the ERROR clear: DONE and ACC_SAT change at the end of the command
                # (the activity counters are not cleared while busy, see test_macro).
                model.write(addr, data & 1 << Status.ERROR)
            elif not code:
                model.count_access()
            return
        got = await self.bus.read(addr)
        if code:
            assert got == 0, f"busy read {addr:#x} faulted ({code}) but returned {got:#x}"
            return
        reg = addr & 0x1F
        want = model.read(addr)
        if reg == CSR.CYCLES:
            return                                   # latched at the end of the command
        if reg in (CSR.PLANE_OPS, CSR.CONVERSIONS, CSR.CAL_READS) and self.p.counters:
            return                                   # counted as the command runs
        if reg == CSR.STATUS:
            assert got & 1 << Status.BUSY and not got & 1 << Status.DONE, \
                f"STATUS {got:#x} while busy"
            mask = 1 << Status.ERROR
            assert got & mask == want & mask, f"STATUS {got:#x} while busy, model {want:#x}"
            return
        assert got == want, f"busy read {addr:#x}: RTL {got:#x}, model {want:#x}"

    # --- bulk --------------------------------------------------------------------------------

    async def compare_all(self, where: str) -> None:
        """Every CSR and every word of every region, RTL (burst engine) against the model."""
        addrs = readback_addresses(self.p)
        got = await self.burst.read_burst(addrs)
        # One model read per RTL read: the activity counters count both.
        want = [self.model.read(a) for a in addrs]
        bad = [(a, g, w) for a, g, w in zip(addrs, got, want) if g != w]
        assert not bad, f"{where}: {len(bad)} words differ, first: " + ", ".join(
            f"{a:#x} RTL {g:#x} model {w:#x}" for a, g, w in bad[:8])

    async def sync_counters(self) -> None:
        """Zero the activity counters on both sides: after traffic that was not in lock
        step (two drivers poll a busy RTL and a never-busy model differently)."""
        if self.p.counters:
            await self.write(self.csr(CSR.STATUS), 1 << Status.CLEAR_COUNTERS)

    async def check_errors(self, where: str) -> None:
        for reg in (CSR.STATUS, CSR.ERRCODE, CSR.ERRADDR):
            await self.read(self.csr(reg), where)

    async def clear_errors(self) -> None:
        await self.write(self.csr(CSR.STATUS), 1 << Status.ERROR)


# --- stimulus -----------------------------------------------------------------------------

def _signed_word(value):
    return value & WORD


def random_write_data(p, rng, region, reg=None):
    """Data for a write to ``region`` (number): mostly legal, sometimes out of range."""
    W, A, M = p.readout_bits, p.acc_bits, p.readout_max
    bad = rng.random() < 0.12
    if region in (Region.THRESH, Region.OFFSET, Region.TABLE):
        width = A if region == Region.THRESH else W
        if bad:
            return int(rng.integers(0, 1 << 32))
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        value = int(rng.choice([lo, hi, int(rng.integers(lo, hi + 1))], p=[0.1, 0.1, 0.8]))
        return _signed_word(value)
    if region == Region.GAIN:
        return int(rng.integers(0, 1 << 32)) if bad else int(rng.integers(0, 1 << GAIN_BITS))
    if region == Region.CSR:
        if reg == CSR.SAT:
            return int(rng.integers(0, 1 << 32)) if bad else int(rng.integers(0, M + 1))
        if reg == CSR.QSHIFT:
            return int(rng.integers(0, 1 << 32)) if bad else int(rng.choice([0, 0, 1, 2, 15]))
        return int(rng.integers(0, 1 << 32))
    return int(rng.integers(0, 1 << 32))


class Traffic:
    """Seeded random accesses over the whole address space of one macro."""

    def __init__(self, p, rng):
        self.p, self.rng = p, rng
        self.valid = {r["region"]: region_words(p, r) for r in p.regions()}
        self.valid[Region.CSR] = [(Region.CSR << p.region_shift) | c["offset"] for c in p.csrs()]
        self.holes = hole_addresses(p, rng, 64)
        self.unmapped = unmapped_region_addresses(p, rng, 64)

    def address(self):
        rng = self.rng
        kind = rng.choice(["valid", "hole", "unmapped"], p=[0.86, 0.07, 0.07])
        if kind == "hole" and self.holes:
            return int(rng.choice(self.holes))
        if kind == "unmapped" and self.unmapped:
            return int(rng.choice(self.unmapped))
        region = int(rng.choice(list(self.valid)))
        return int(rng.choice(self.valid[region]))

    def access(self, csr_cmd: int):
        """``(we, addr, data, sel, bins)``: 6 % commands, 3 % STATUS writes, the rest anywhere."""
        p, rng = self.p, self.rng
        r = rng.random()
        if r < 0.06 and csr_cmd >= 0:
            data, bins = random_command(p, rng)
            return True, csr_cmd, data, 0xF, bins
        if r < 0.09:
            return True, (Region.CSR << p.region_shift) | CSR.STATUS, \
                int(rng.integers(0, 1 << 32)), 0xF, []
        addr = self.address()
        we = bool(rng.random() < 0.6)
        sel = 0xF if rng.random() < 0.95 else int(rng.integers(0, 15))
        region, reg = addr >> p.region_shift, addr & 0x1F
        if we and region == Region.CSR and reg == CSR.CMD:
            data = int(rng.integers(0, 1 << 32))    # almost always reserved bits set
        else:
            data = random_write_data(p, rng, region, reg)
        return we, addr, data, sel, []

    def busy_access(self):
        """An access to make while busy: no CMD data that would matter, no W1C of DONE/ACC_SAT
        and no clear of the activity counters (the model runs a command at once, so it
        cannot clear them half-way through one)."""
        we, addr, data, sel, _ = self.access(csr_cmd=-1)
        p = self.p
        if addr >> p.region_shift == Region.CSR and addr & 0x1F == CSR.STATUS:
            data &= ~(1 << Status.DONE | 1 << Status.ACC_SAT | 1 << Status.CLEAR_COUNTERS)
        return we, addr, data, sel


async def _bench(dut, name):
    ctx = context(name)
    tb = MacroBench(dut, ctx)
    await tb.start()
    return ctx, tb


# --- tests ----------------------------------------------------------------------------------

@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
async def reset_state(dut):
    """After reset every CSR and every memory word reads as the model's reset state."""
    ctx, tb = await _bench(dut, "reset_state")
    await tb.compare_all("after reset")
    drv = await MacroDriver.connect(tb.bus)
    assert drv.p == ctx.p, f"CSRs describe {drv.p}, built {ctx.p}"
    tb.finish()


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
async def random_traffic(dut):
    """Random bus traffic (``CIM_ARGS`` ``accesses``, default 1500), then a full read-back."""
    ctx, tb = await _bench(dut, "random_traffic")
    p, rng = ctx.p, ctx.rng
    traffic = Traffic(p, rng)
    cmd_addr = tb.csr(CSR.CMD)
    cov = ctx.coverage
    for n in range(int(ctx.args.get("accesses", 1500))):
        we, addr, data, sel, bins = traffic.access(cmd_addr)
        if we:
            if addr == cmd_addr and sel == 0xF:
                for group, name in bins:
                    cov.hit(group, name)
            await tb.write(addr, data, sel, busy_accesses=lambda k: [
                traffic.busy_access() for _ in range(int(rng.integers(0, k + 1)))])
        else:
            await tb.read(addr, f"access {n}: ")
        if n % 25 == 24:
            await tb.check_errors(f"access {n}: ")
            await tb.clear_errors()
    await tb.check_errors("end: ")
    await tb.compare_all("after random traffic")
    dut._log.info(f"{tb.commands} commands, {tb.bus.reads} reads, {tb.bus.writes} writes")
    tb.finish()


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
async def bus_errors(dut):
    """Each error of section 6 on purpose: the error registers, and nothing else, change."""
    ctx, tb = await _bench(dut, "bus_errors")
    p, rng = ctx.p, ctx.rng
    traffic = Traffic(p, rng)
    # Non-reset contents first, so that "nothing changed" means something.
    drv = MacroDriver(tb.burst, p)
    ref = MacroDriver(ModelTransport(tb.model), p)
    w = rng.integers(0, 2, (p.rows, p.cols))
    x = rng.integers(0, 1 << p.input_bits, p.rows)
    theta, flip = rng.integers(-5, 6, p.cols), rng.integers(0, 2, p.cols)
    for d in (drv, ref):
        await d.write_weights(w)
        await d.write_input(x)
        await d.write_thresholds(theta, flip)
    await tb.burst.flush()
    await tb.compare_all("after loading")

    async def expect(code, we, addr, data=0, sel=0xF, where=""):
        await tb.clear_errors()
        if we:
            await tb.write(addr, data, sel)
        else:
            await tb.read(addr, where)
        status = await tb.read(tb.csr(CSR.STATUS), where)
        errcode = await tb.read(tb.csr(CSR.ERRCODE), where)
        erraddr = await tb.read(tb.csr(CSR.ERRADDR), where)
        assert status >> Status.ERROR & 1 and errcode == code and erraddr == addr, (
            f"{where}: STATUS {status:#x} ERRCODE {errcode} ERRADDR {erraddr:#x}, "
            f"expected {ERRCODE_NAMES[code]} at {addr:#x}")

    csr = tb.csr
    cases = []
    for addr in traffic.holes[:6] + traffic.unmapped[:4]:
        cases += [(ErrCode.BAD_ADDRESS, False, addr, 0, 0xF, "read of an unmapped word"),
                  (ErrCode.BAD_ADDRESS, True, addr, 0x1234, 0xF, "write to an unmapped word")]
    for name in ("ACC", "OUT", "CALFLAG"):
        r = next(r for r in p.regions() if r["name"] == name)
        cases.append((ErrCode.READ_ONLY, True, int(rng.choice(region_words(p, r))), 1, 0xF,
                      f"write to {name}"))
    for c in p.csrs():
        if c["access"] == "ro":
            cases.append((ErrCode.READ_ONLY, True, csr(c["offset"]), 0, 0xF, f"write to {c['name']}"))
    for reason in ("opcode", "reserved_bits", "nplanes_over_B", "accumulate_not_run",
                   "nplanes_not_run"):
        for _ in range(20):
            cmd, bins = random_command(p, rng)
            if bins == [("bad_command", reason)]:
                ctx.coverage.hit(*bins[0])
                cases.append((ErrCode.BAD_COMMAND, True, csr(CSR.CMD), cmd, 0xF, f"CMD {cmd:#x} ({reason})"))
                break
    for addr in rng.choice(traffic.valid[Region.WEIGHT], 3).tolist() + [csr(CSR.STATUS), csr(CSR.CMD)]:
        cases.append((ErrCode.BAD_SEL, True, int(addr), 0, int(rng.integers(0, 15)), "write with bad sel"))
    signed_regions = [(Region.THRESH, p.acc_bits)]
    if p.has("offset"):
        signed_regions.append((Region.OFFSET, p.readout_bits))
    if p.has("table"):
        signed_regions.append((Region.TABLE, p.readout_bits))
    for number, width in signed_regions:
        if width < 32:
            addr = int(rng.choice(traffic.valid[number]))
            for data in (1 << (width - 1), _signed_word(-(1 << (width - 1)) - 1), 0x8000_0000 >> 0 | 1):
                cases.append((ErrCode.BAD_VALUE, True, addr, data & WORD, 0xF, f"value {data:#x}"))
    if p.has("gain"):
        cases.append((ErrCode.BAD_VALUE, True, int(rng.choice(traffic.valid[Region.GAIN])), 256, 0xF, "GAIN 256"))
    if p.has("readout"):
        cases += [(ErrCode.BAD_VALUE, True, csr(CSR.SAT), p.readout_max + 1, 0xF, "SAT M+1"),
                  (ErrCode.BAD_VALUE, True, csr(CSR.QSHIFT), 1 << QSHIFT_BITS, 0xF, "QSHIFT 16")]
    for code, we, addr, data, sel, where in cases:
        await expect(code, we, addr, data, sel, where)
    # BUSY: during a long command, one access of each busy-faulty kind.
    await tb.clear_errors()
    busy_cases = [(False, int(rng.choice(traffic.valid[Region.WEIGHT])), 0, 0xF),
                  (True, int(rng.choice(traffic.valid[Region.THRESH])), 1, 0xF),
                  (True, csr(CSR.CMD), Op.CLEAR, 0xF)]
    if p.has("readout"):
        busy_cases.append((True, csr(CSR.SAT), 1, 0xF))
    for access in busy_cases:
        await tb.clear_errors()
        await tb.write(csr(CSR.CMD), Op.RUN, busy_accesses=lambda k, a=access: [a][:k])
        if p.run_cycles(p.input_bits) // 2 >= 1:
            errcode = await tb.read(csr(CSR.ERRCODE), "busy access: ")
            assert errcode == ErrCode.BUSY, f"busy access {access}: ERRCODE {errcode}"
            assert await tb.read(csr(CSR.ERRADDR), "busy access: ") == access[1]
    # The first error wins until cleared.
    await tb.clear_errors()
    first, second = traffic.unmapped[0], csr(CSR.ID)
    await tb.read(first)
    await tb.write(second, 0)
    assert await tb.read(csr(CSR.ERRCODE)) == ErrCode.BAD_ADDRESS
    assert await tb.read(csr(CSR.ERRADDR)) == first
    await tb.sync_counters()
    await tb.compare_all("after every kind of bus error")
    tb.finish()


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
async def calibration_sweep(dut):
    """Every offset in [-K-3, K+3] (within W): residual bound, flags, CYCLES = G(S+3)."""
    ctx, tb = await _bench(dut, "calibration_sweep")
    p = ctx.p
    if not p.has("offset"):
        dut._log.info("offset not built: calibration sweep needs injectable offsets")
        tb.finish()
        return
    K, C, W, M = p.comp_rows, p.cols, p.readout_bits, p.readout_max
    drv = MacroDriver(tb.burst, p)
    ref = MacroDriver(ModelTransport(tb.model), p)
    lo, hi = max(-(1 << (W - 1)), -K - 3), min(M, K + 3)
    offsets = np.arange(lo, hi + 1)
    for start in range(0, len(offsets), C):
        o = np.resize(offsets[start:start + C], C)
        for d in (drv, ref):
            await d.write_offsets(o)
            cycles = await d.calibrate()
            assert cycles == p.calibrate_cycles(), f"CALIBRATE took {cycles}, contract {p.calibrate_cycles()}"
        comp = await drv.read_comp(packed=True)
        assert np.array_equal(comp, await ref.read_comp(packed=True)), f"COMP {comp}"
        flags = await drv.read_calflags()
        assert np.array_equal(flags, await ref.read_calflags()), f"CALFLAG {flags}"
        status = await drv.status()
        n = np.array([bin(int(c)).count("1") for c in comp])
        residual = o + 2 * n - K
        inside = (o >= -K) & (o <= K - 1)
        assert np.all((residual[inside] >= -2) & (residual[inside] <= 1)), residual[inside]
        assert np.all(flags[inside] == 0) and np.all(flags[~inside] == 1), (o, flags)
        assert np.all(n[~inside & (o > 0)] == 0) and np.all(n[~inside & (o < 0)] == K)
        assert status["cal_range"] == bool(np.any(~inside)), status
        for name, mask in (("in_range", inside), ("above_range", ~inside & (o > 0)),
                           ("below_range", ~inside & (o < 0))):
            if np.any(mask):
                ctx.coverage.hit("calibration", name)
    await tb.sync_counters()
    await tb.compare_all("after the calibration sweep")
    tb.finish()


def random_chip(p, rng):
    """Keyword arguments of every built non-ideality, as a sampled chip would have them."""
    W, M, K = p.readout_bits, p.readout_max, p.comp_rows
    chip = {}
    if p.has("offset"):
        chip["offset"] = np.clip(np.rint(rng.normal(0, K / 2, p.cols)).astype(int) +
                                 np.where(rng.random(p.cols) < 0.1, rng.integers(-3 * K, 3 * K, p.cols), 0),
                                 -(1 << (W - 1)), M)
    if p.has("gain"):
        chip["gain"] = np.clip(np.rint(rng.normal(64, 8, p.cols)), 0, 255).astype(int)
    if p.has("table"):
        index = np.arange(1 << W)
        k = np.where(index >= 1 << (W - 1), index - (1 << W), index)
        bend = np.rint(k - 0.15 * k * np.abs(k) / max(M, 1)).astype(int)   # compressive curve
        chip["table"] = np.clip(bend + rng.integers(-1, 2, 1 << W), -(1 << (W - 1)), M)
    if p.has("stuck"):
        chip["stuck_mask"] = (rng.random((p.rows, p.cols)) < 0.05).astype(int)
        chip["stuck_value"] = rng.integers(0, 2, (p.rows, p.cols))
    if p.has("readout"):
        chip["sat"] = int(rng.integers(max(1, M // 2), M + 1))
        chip["qshift"] = int(rng.choice([0, 0, 1, 2]))
    return chip


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
async def chip_instances(dut):
    """Random chip instances (``CIM_ARGS`` ``chips``, ``runs``) through the driver, RTL vs model."""
    ctx, tb = await _bench(dut, "chip_instances")
    p, rng = ctx.p, ctx.rng
    drv = MacroDriver(tb.burst, p)
    ref = MacroDriver(ModelTransport(tb.model), p)
    for chip_n in range(int(ctx.args.get("chips", 3))):
        chip = random_chip(p, rng)
        for d in (drv, ref):
            await d.write_nonidealities(**chip)
            await d.calibrate()
        assert np.array_equal(await drv.read_comp(packed=True), await ref.read_comp(packed=True))
        assert np.array_equal(await drv.read_calflags(), await ref.read_calflags())
        for run in range(int(ctx.args.get("runs", 6))):
            w = (rng.random((p.rows, p.cols)) < rng.choice([0.2, 0.5, 0.8])).astype(int)
            theta = rng.integers(-2 * p.rows, 2 * p.rows + 1, p.cols)
            flip = rng.integers(0, 2, p.cols)
            planes = int(rng.integers(1, p.input_bits + 1))
            x = rng.integers(0, 1 << planes, p.rows)
            accumulate = bool(run and rng.integers(2))
            for d in (drv, ref):
                await d.write_weights(w)
                await d.write_thresholds(np.clip(theta, -(1 << (p.acc_bits - 1)), (1 << (p.acc_bits - 1)) - 1), flip)
            got = await drv.matvec(x, planes=planes, accumulate=accumulate)
            want = await ref.matvec(x, planes=planes, accumulate=accumulate)
            where = f"chip {chip_n} run {run} (planes {planes}, accumulate {accumulate})"
            assert np.array_equal(got, want), f"{where}: ACC {got.tolist()} != model {want.tolist()}"
            assert drv.last_cycles == p.run_cycles(planes), where
            assert np.array_equal(await drv.read_out(), await ref.read_out()), f"{where}: OUT"
            assert await drv.status() == await ref.status(), where
            if (await drv.status())["acc_sat"]:
                ctx.coverage.hit("saturation", "status_acc_sat")
                for d in (drv, ref):
                    await d.clear_errors()
        if rng.integers(2):
            for d in (drv, ref):
                await d.clear()
    await tb.sync_counters()
    await tb.compare_all("after the chip instances")
    tb.finish()


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
async def accumulator_saturation(dut):
    """ACCUMULATE until ACC clamps at +2^(A-1)-1, then at -2^(A-1): STATUS.acc_sat is set,
    sticky across a RUN that does not saturate, and cleared only by a W1C write."""
    ctx, tb = await _bench(dut, "accumulator_saturation")
    p = ctx.p
    A = p.acc_bits
    drv = MacroDriver(tb.burst, p)
    ref = MacroDriver(ModelTransport(tb.model), p)
    x = np.full(p.rows, (1 << p.input_bits) - 1)
    for sign, bound, name in ((1, (1 << (A - 1)) - 1, "acc_high"), (0, -(1 << (A - 1)), "acc_low")):
        for d in (drv, ref):
            await d.clear_errors()
            await d.write_weights(np.full((p.rows, p.cols), sign))
            await d.write_input(x)
        per_run = p.rows * ((1 << p.input_bits) - 1)
        limit = (1 << (A - 1)) // max(per_run, 1) + 4
        for run in range(limit):
            got = await drv.matvec(x, accumulate=run > 0)
            want = await ref.matvec(x, accumulate=run > 0)
            assert np.array_equal(got, want), f"{name} run {run}: ACC {got[:4]} != model {want[:4]}"
            status = await drv.status()
            assert status == await ref.status(), f"{name} run {run}: STATUS {status}"
            if status["acc_sat"]:
                break
        else:
            raise AssertionError(f"{name}: ACC never saturated in {limit} runs")
        assert np.all(got == bound), f"{name}: ACC {got[:4]} not clamped at {bound}"
        ctx.coverage.hit("saturation", name)
        ctx.coverage.hit("saturation", "status_acc_sat")
        # Sticky: a RUN without ACCUMULATE cannot saturate, and acc_sat stays set.
        for d in (drv, ref):
            await d.run()
        assert (await drv.status())["acc_sat"] and (await ref.status())["acc_sat"]
        await tb.write(tb.csr(CSR.STATUS), 1 << Status.ACC_SAT)
        assert not (await drv.status())["acc_sat"]
    await tb.sync_counters()
    await tb.compare_all("after the saturation runs")
    tb.finish()
