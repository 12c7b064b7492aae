"""A transport that runs every access on the engine's RTL and on its register-level golden
model (``models/engine_bus.py``) together, and fails on the first read they answer
differently.

Both count time the same way: an access takes ``bus_latency + 1`` cycles on the
project's masters (back to back) and on the model's clock, and :meth:`idle` lets the
same number of cycles pass on both. So a driver on a :class:`LockstepTransport` checks
every word it reads, the STATUS polls of a CLASSIFY included: BUSY, DONE, RESULTS and
ENGINE_CYCLES are compared cycle for cycle.
"""

from __future__ import annotations

from host.transport import Transport

__all__ = ["LockstepTransport", "LockstepMismatch"]


class LockstepMismatch(AssertionError):
    """The RTL and the golden model answered a read differently."""


class LockstepTransport(Transport):
    """Every access on ``rtl`` (a transport to the RTL) and on ``model``.

    Parameters
    ----------
    rtl : Transport
        The master on the simulated engine; each access must take ``bus_latency + 1``
        cycles.
    model : models.engine_bus.EngineBusModel
    idle : async callable(cycles) or None
        Lets cycles pass on the simulator (for :meth:`idle`).

    Members
    -------
    accesses : int
    """

    def __init__(self, rtl, model, idle=None):
        self.rtl, self.model, self._idle = rtl, model, idle
        self.accesses = 0

    async def read(self, addr: int) -> int:
        got = await self.rtl.read(addr)
        want = self.model.read(addr)
        self.accesses += 1
        if got != want:
            raise LockstepMismatch(f"read of {addr:#x} (access {self.accesses}): RTL "
                                   f"{got:#x}, model {want:#x}")
        return want

    async def write(self, addr: int, data: int, sel: int = 0xF) -> None:
        await self.rtl.write(addr, data, sel)
        self.model.write(addr, data, sel)
        self.accesses += 1

    async def idle(self, cycles: int) -> None:
        """Let ``cycles`` cycles pass on both."""
        if cycles:
            await self._idle(cycles)
        self.model.idle(cycles)
