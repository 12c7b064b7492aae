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
