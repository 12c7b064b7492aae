"""Amaranth-simulator bench of the engine's RTL (``rtl/engine.py``) against the
register-level golden model (``models/engine_bus.py``), access for access and cycle
for cycle.

:class:`LockstepTransport` is a :class:`host.transport.Transport`: every access goes to
the RTL through a Wishbone master in the simulator (two cycles per access, back to
back, as the project's masters and the model's clock count them) and to an
:class:`EngineBusModel`; a read whose two answers differ raises
:class:`LockstepMismatch` naming the address. So :class:`host.engine.EngineDriver` on it
checks every word it reads, the STATUS polls of a CLASSIFY included.
"""

from __future__ import annotations

import os

from amaranth.sim import Simulator

from host.transport import Transport
from models.engine_bus import EngineBusModel
from rtl.engine import CimEngine

__all__ = ["LockstepTransport", "LockstepMismatch", "run_engine"]


class LockstepMismatch(AssertionError):
    """The RTL and the golden model answered a read differently."""


class LockstepTransport(Transport):
    """Wishbone master in the Amaranth simulator, in lockstep with the bus model.

    Parameters
    ----------
    ctx : amaranth.sim testbench context
    dut : CimEngine
    model : EngineBusModel
    """

    def __init__(self, ctx, dut, model):
        self.ctx, self.dut, self.model = ctx, dut, model
        self.accesses = 0

    async def _access(self, addr, we, data=0, sel=0xF):
        ctx, wb = self.ctx, self.dut.wb
        ctx.set(wb.adr, addr)
        ctx.set(wb.dat_w, data)
        ctx.set(wb.sel, sel)
        ctx.set(wb.we, int(we))
        ctx.set(wb.cyc, 1)
        ctx.set(wb.stb, 1)
        await ctx.tick()
        if not ctx.get(wb.ack):
            raise LockstepMismatch(f"no ack a cycle after the access at {addr:#x}")
        word = ctx.get(wb.dat_r)
        ctx.set(wb.cyc, 0)
        ctx.set(wb.stb, 0)
        await ctx.tick()
        self.accesses += 1
        return word

    async def read(self, addr: int) -> int:
        got = await self._access(addr, False)
        want = self.model.read(addr)
        if got != want:
            raise LockstepMismatch(f"read of {addr:#x} (access {self.accesses}): RTL "
                                   f"{got:#x}, model {want:#x}")
        return want

    async def write(self, addr: int, data: int, sel: int = 0xF) -> None:
        await self._access(addr, True, data, sel)
        self.model.write(addr, data, sel)

    async def idle(self, cycles: int) -> None:
        """Let ``cycles`` cycles pass on both."""
        await self.ctx.tick().repeat(cycles) if cycles else None
        self.model.idle(cycles)


def run_engine(params, body, *, vcd=None):
    """Simulate ``CimEngine(params)`` running ``await body(transport, model)`` with a
    :class:`LockstepTransport`; returns what ``body`` returns. ``vcd``: a waveform file
    (or the environment's ``ENGINE_VCD``)."""
    dut = CimEngine(params)
    model = EngineBusModel(params)
    out = {}

    async def bench(ctx):
        out["value"] = await body(LockstepTransport(ctx, dut, model), model)

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
