"""Amaranth-simulator bench of the engine's RTL (``rtl/engine.py``) against the
register-level golden model (``models/engine_bus.py``), access for access and cycle
for cycle (:class:`verif.engine_lockstep.LockstepTransport`).

:class:`SimWishbone` is a Wishbone master in the Amaranth simulator: ``bus_latency + 1``
cycles per access, back to back, as the project's masters and the model's clock count
them.
"""

from __future__ import annotations

import os

from amaranth.sim import Simulator

from host.transport import Transport
from models.engine_bus import EngineBusModel
from rtl.engine import CimEngine
from verif.engine_lockstep import LockstepMismatch, LockstepTransport

__all__ = ["SimWishbone", "LockstepTransport", "LockstepMismatch", "run_engine"]


class SimWishbone(Transport):
    """Wishbone master on ``dut.wb`` in an Amaranth testbench context ``ctx``: the ack
    must come exactly ``bus_latency`` cycles after the access."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut

    async def _access(self, addr, we, data=0, sel=0xF):
        ctx, wb = self.ctx, self.dut.wb
        for signal, value in ((wb.adr, addr), (wb.dat_w, data), (wb.sel, sel),
                              (wb.we, int(we)), (wb.cyc, 1), (wb.stb, 1)):
            ctx.set(signal, value)
        await ctx.tick()
        for _ in range(self.dut.params.bus_latency - 1):
            if ctx.get(wb.ack):
                raise LockstepMismatch(f"ack before the bus latency for the access at {addr:#x}")
            await ctx.tick()
        if not ctx.get(wb.ack):
            raise LockstepMismatch(f"no ack {self.dut.params.bus_latency} cycles after "
                                   f"the access at {addr:#x}")
        word = ctx.get(wb.dat_r)
        ctx.set(wb.cyc, 0)
        ctx.set(wb.stb, 0)
        await ctx.tick()
        return word

    async def abandoned_write(self, addr, data, after):
        """A write whose master drops ``cyc`` ``after`` cycles (1..bus_latency) after the
        access and at once presents another request (address, data, ``we`` inverted);
        no ack may come. Takes ``bus_latency + 1`` cycles, as an access does."""
        ctx, wb, latency = self.ctx, self.dut.wb, self.dut.params.bus_latency
        for signal, value in ((wb.adr, addr), (wb.dat_w, data), (wb.sel, 0xF), (wb.we, 1),
                              (wb.cyc, 1), (wb.stb, 1)):
            ctx.set(signal, value)
        await ctx.tick().repeat(after)
        ctx.set(wb.cyc, 0)
        ctx.set(wb.stb, 0)
        ctx.set(wb.adr, ~addr & ((1 << len(wb.adr)) - 1))
        ctx.set(wb.dat_w, ~data & 0xFFFFFFFF)
        ctx.set(wb.we, 0)
        for _ in range(latency + 1 - after):
            if ctx.get(wb.ack):
                raise LockstepMismatch(f"an ack for the abandoned write at {addr:#x}")
            await ctx.tick()

    async def read(self, addr: int) -> int:
        return await self._access(addr, False)

    async def write(self, addr: int, data: int, sel: int = 0xF) -> None:
        await self._access(addr, True, data, sel)


def run_engine(params, body, *, vcd=None, board=False):
    """Simulate ``CimEngine(params)`` running ``await body(transport, model)`` with a
    :class:`LockstepTransport`; returns what ``body`` returns. ``vcd``: a waveform file
    (or the environment's ``ENGINE_VCD``). ``board``: the engine as the board tops build
    it (``held_until_ack`` and ``weights_in_block_ram``), for a body that abandons no
    access."""
    dut = CimEngine(params, held_until_ack=board, weights_in_block_ram=board)
    model = EngineBusModel(params)
    out = {}

    async def bench(ctx):
        async def idle(cycles):
            await ctx.tick().repeat(cycles)
        tr = LockstepTransport(SimWishbone(ctx, dut), model, idle)
        out["value"] = await body(tr, model)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    vcd = vcd or os.environ.get("ENGINE_VCD")
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return out["value"]
