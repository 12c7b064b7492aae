# amaranth: UnusedElaboratable=no
"""Wishbone register slice (fpga/bus_slice.py) in amaranth.sim.

A random master (random gaps, often starting the next access in the cycle right after
an ack) drives the slice; a slave process with random wait states records what reaches
it. Every master access must reach the slave exactly once and unchanged, and the master
must read what the slave answered.
"""

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import connect
from amaranth.sim import Simulator

from fpga.bus_slice import WishboneSlice

ADDR_BITS = 10
_MASK = (1 << 32) - 1


def answer_of(addr):
    return (addr * 0x9E3779B1 + 7) & _MASK


def test_rejects_bad_addr_bits():
    with pytest.raises(TypeError, match="addr_bits must be an integer, not 'x'"):
        WishboneSlice("x")
    with pytest.raises(ValueError, match="addr_bits must be >= 1, not 0"):
        WishboneSlice(0)


class Chain(wiring.Component):
    """``count`` slices in a row, as the L = 4 board core chains two."""

    def __init__(self, count):
        self._count = count
        signature = WishboneSlice(ADDR_BITS).signature.members
        super().__init__({"up": signature["up"], "down": signature["down"]})

    def elaborate(self, platform):
        m = Module()
        slices = [WishboneSlice(ADDR_BITS) for _ in range(self._count)]
        for k, s in enumerate(slices):
            m.submodules[f"slice{k}"] = s
        for a, b in zip(slices, slices[1:]):
            connect(m, a.down, b.up)
        connect(m, wiring.flipped(self.up), slices[0].up)
        connect(m, slices[-1].down, wiring.flipped(self.down))
        return m


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("max_wait", [0, 3])
def test_every_access_passes_once(max_wait, count, rng):
    dut = WishboneSlice(ADDR_BITS) if count == 1 else Chain(count)
    accesses = [dict(adr=int(rng.integers(0, 1 << ADDR_BITS)), we=int(rng.integers(2)),
                     dat_w=int(rng.integers(0, 1 << 32)), sel=int(rng.integers(0, 16)))
                for _ in range(200)]
    gaps = [0 if rng.random() < 0.5 else int(rng.integers(1, 4)) for _ in accesses]
    waits = [int(rng.integers(0, max_wait + 1)) for _ in accesses]
    reached, answers, acks = [], [], []

    async def slave(ctx):
        # Acks in the cycle it sees an access, or after its wait states.
        while True:
            if not (ctx.get(dut.down.cyc) and ctx.get(dut.down.stb)):
                await ctx.tick()
                continue
            k = len(reached)
            reached.append(dict(adr=ctx.get(dut.down.adr), we=ctx.get(dut.down.we),
                                dat_w=ctx.get(dut.down.dat_w), sel=ctx.get(dut.down.sel)))
            for _ in range(waits[k] if k < len(waits) else 0):
                await ctx.tick()
                assert ctx.get(dut.down.stb), "the slice dropped stb before the ack"
            ctx.set(dut.down.dat_r, answer_of(ctx.get(dut.down.adr)))
            ctx.set(dut.down.ack, 1)
            await ctx.tick()
            ctx.set(dut.down.ack, 0)
            assert not ctx.get(dut.down.stb), "stb still high in the cycle after the ack"

    async def master(ctx):
        for access, gap in zip(accesses, gaps):
            for _ in range(gap):
                await ctx.tick()
            ctx.set(dut.up.adr, access["adr"])
            ctx.set(dut.up.we, access["we"])
            ctx.set(dut.up.dat_w, access["dat_w"])
            ctx.set(dut.up.sel, access["sel"])
            ctx.set(dut.up.cyc, 1)
            ctx.set(dut.up.stb, 1)
            cycles = 0
            while True:
                await ctx.tick()
                cycles += 1
                assert cycles < 50, "no ack"
                if ctx.get(dut.up.ack):
                    answers.append(ctx.get(dut.up.dat_r))
                    break
            acks.append(cycles)
            ctx.set(dut.up.cyc, 0)
            ctx.set(dut.up.stb, 0)
        for _ in range(10):
            await ctx.tick()
            assert not ctx.get(dut.up.ack), "an ack without an access"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(slave, background=True)
    sim.add_testbench(master)
    sim.run()

    assert reached == accesses
    assert answers == [answer_of(a["adr"]) for a in accesses]
    # The slave acks in the cycle it sees the access (after its wait states); each slice
    # adds a cycle in and one out. This master presents its next access in the cycle
    # that shows the ack (gap 0), where the slice cannot tell it from the old one: it
    # takes it a cycle later.
    assert acks == [w + 2 * count + (k > 0 and g == 0)
                    for k, (w, g) in enumerate(zip(waits, gaps))]


@pytest.mark.parametrize("count", [1, 2])
def test_abandoned_accesses_complete_at_the_slave_without_ack(count, rng):
    """A master that drops cyc 1..4 cycles into some of its accesses (and may present
    the next one right after): the accesses reach the slave in order, each at most once,
    every access held to its ack exactly once (an abandoned one only if the slice had
    taken it: one presented while the slice still completes an earlier abandoned access
    is dropped whole); no ack is ever high while cyc is low, an abandoned access is never
    acknowledged, and every access held to its ack reads its own answer."""
    dut = WishboneSlice(ADDR_BITS) if count == 1 else Chain(count)
    accesses = [dict(adr=int(rng.integers(0, 1 << ADDR_BITS)), we=int(rng.integers(2)),
                     dat_w=int(rng.integers(0, 1 << 32)), sel=0xF) for _ in range(150)]
    drops = [int(rng.integers(1, 5)) if rng.random() < 0.4 else None for _ in accesses]
    reached, answers = [], []

    async def slave(ctx):
        while True:
            if ctx.get(dut.down.cyc) and ctx.get(dut.down.stb):
                reached.append(dict(adr=ctx.get(dut.down.adr), we=ctx.get(dut.down.we),
                                    dat_w=ctx.get(dut.down.dat_w), sel=ctx.get(dut.down.sel)))
                ctx.set(dut.down.dat_r, answer_of(ctx.get(dut.down.adr)))
                ctx.set(dut.down.ack, 1)
                await ctx.tick()
                ctx.set(dut.down.ack, 0)
            else:
                await ctx.tick()

    async def watch(ctx):
        while True:
            await ctx.tick()
            assert not (ctx.get(dut.up.ack) and not ctx.get(dut.up.cyc)), "ack while cyc is low"

    async def master(ctx):
        for access, drop in zip(accesses, drops):
            for name, value in access.items():
                ctx.set(getattr(dut.up, name), value)
            ctx.set(dut.up.cyc, 1)
            ctx.set(dut.up.stb, 1)
            cycles = 0
            while True:
                await ctx.tick()
                cycles += 1
                assert cycles < 50, "no ack"
                if drop is not None and cycles == drop:
                    ctx.set(dut.up.cyc, 0)
                    ctx.set(dut.up.stb, 0)
                    await ctx.tick()
                    answers.append(None)
                    break
                if ctx.get(dut.up.ack):
                    assert drop is None or cycles < drop
                    answers.append(ctx.get(dut.up.dat_r))
                    ctx.set(dut.up.cyc, 0)
                    ctx.set(dut.up.stb, 0)
                    break
        for _ in range(12):
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(slave, background=True)
    sim.add_testbench(watch, background=True)
    sim.add_testbench(master)
    sim.run()

    # reached: a subsequence of accesses that keeps every access held to its ack.
    position = 0
    for access, answer in zip(accesses, answers):
        if position < len(reached) and reached[position] == access:
            position += 1
        else:
            assert answer is None, f"an access held to its ack never reached the slave: {access}"
    assert position == len(reached), "the slave saw an access the master never made"
    for access, drop, answer in zip(accesses, drops, answers):
        if answer is not None:
            assert answer == answer_of(access["adr"])
    # Some accesses were abandoned, and some of those before the slice could answer.
    assert sum(a is None for a in answers) > 10
