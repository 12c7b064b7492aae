"""Bus transports of the host driver: one word read or write at a word address.

The driver (:mod:`host.driver`) talks to a macro only through an object with the
:class:`Transport` methods below, so the same driver code runs on every backend: the
golden model (:class:`ModelTransport`), the RTL in a cocotb simulation
(:class:`verif.wishbone_master.CocotbWishboneTransport`) and an FPGA over a serial port.
Every method is a coroutine but none awaits anything outside the transport itself, so
the driver runs unchanged under ``asyncio.run`` and under cocotb's scheduler.
"""

from __future__ import annotations

from typing import Iterable, Protocol, runtime_checkable

__all__ = ["Transport", "ModelTransport", "CountingTransport", "read_burst", "write_burst"]


@runtime_checkable
class Transport(Protocol):
    """What the driver needs from a bus: 32-bit word reads and writes.

    A class may subclass this protocol to inherit the looping burst methods, or define
    only :meth:`read` and :meth:`write`; the driver falls back to one access at a time
    through :func:`read_burst` and :func:`write_burst` when the burst methods are
    missing. A transport that can pipeline accesses (the UART bridge sends a whole burst
    in one frame) overrides the burst methods; their results must equal the loop's.

    Members
    -------
    read(addr) : coroutine -> int
        The 32-bit word at word address ``addr``.
    write(addr, data, sel=0xF) : coroutine
        Write the 32-bit ``data`` at ``addr`` with byte selects ``sel``.
    read_burst(addrs) : coroutine -> list of int
        Read every address in order.
    write_burst(pairs) : coroutine
        Write every ``(addr, data)`` pair in order, with ``sel`` 0xF.
    """

    async def read(self, addr: int) -> int:
        ...

    async def write(self, addr: int, data: int, sel: int = 0xF) -> None:
        ...

    async def read_burst(self, addrs: Iterable[int]) -> list[int]:
        return [await self.read(a) for a in addrs]

    async def write_burst(self, pairs: Iterable[tuple[int, int]]) -> None:
        for addr, data in pairs:
            await self.write(addr, data)


async def read_burst(transport, addrs: Iterable[int]) -> list[int]:
    """Read ``addrs`` in order, with the transport's burst method when it has one."""
    addrs = [int(a) for a in addrs]
    burst = getattr(transport, "read_burst", None)
    if burst is not None:
        return [int(v) for v in await burst(addrs)]
    return [int(await transport.read(a)) for a in addrs]


async def write_burst(transport, pairs: Iterable[tuple[int, int]]) -> None:
    """Write ``(addr, data)`` pairs in order, with the transport's burst method when it has one."""
    pairs = [(int(a), int(d)) for a, d in pairs]
    burst = getattr(transport, "write_burst", None)
    if burst is not None:
        await burst(pairs)
        return
    for addr, data in pairs:
        await transport.write(addr, data)


def _check_word(what: str, value: int, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_int = int(value)
        except (TypeError, ValueError):
            raise TypeError(f"{what} must be an integer, not {value!r}") from None
        if as_int != value:
            raise TypeError(f"{what} must be an integer, not {value!r}")
        value = as_int
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{what} must be in [0, 2**{bits}), not {value:#x}")
    return value


class ModelTransport(Transport):
    """The golden model as a bus: every access is a call into ``models.macro.MacroModel``.

    Commands complete inside the model's ``write``, so a STATUS poll after a CMD write
    already reads BUSY low; CYCLES still reports the contract's cycle count.

    Parameters
    ----------
    model : models.macro.MacroModel
        Anything with ``write(addr, data, sel)`` and ``read(addr) -> int``.

    Members
    -------
    model : the wrapped model.
    """

    def __init__(self, model):
        if not (callable(getattr(model, "read", None)) and callable(getattr(model, "write", None))):
            raise TypeError(f"model must have read(addr) and write(addr, data, sel) methods, "
                            f"not {model!r}")
        self.model = model

    async def read(self, addr: int) -> int:
        addr = _check_word("read address", addr, 32)
        return int(self.model.read(addr))

    async def write(self, addr: int, data: int, sel: int = 0xF) -> None:
        addr = _check_word("write address", addr, 32)
        data = _check_word("write data", data, 32)
        sel = _check_word("sel", sel, 4)
        self.model.write(addr, data, sel)

    def __repr__(self):
        return f"ModelTransport({self.model!r})"


class CountingTransport(Transport):
    """A transport wrapper that counts (and optionally logs) every bus access.

    Used to measure a driver call's bus traffic (the number of Wishbone or UART
    transactions) and by the tests to prove that a bad argument is rejected before the
    bus is touched. Bursts are forwarded as bursts and counted per word.

    Parameters
    ----------
    inner : Transport
        The transport that carries the accesses.
    log : bool
        Keep every access in :attr:`accesses`.

    Members
    -------
    reads, writes : int
        Words read and written so far.
    accesses : list of tuple
        ``("r", addr, data)`` / ``("w", addr, data, sel)`` in order, when ``log`` is set.
    """

    def __init__(self, inner, log: bool = False):
        self.inner = inner
        self.log = log
        self.reads = 0
        self.writes = 0
        self.accesses: list[tuple] = []

    @property
    def total(self) -> int:
        return self.reads + self.writes

    def reset(self) -> None:
        self.reads = self.writes = 0
        self.accesses.clear()

    async def read(self, addr: int) -> int:
        data = await self.inner.read(addr)
        self.reads += 1
        if self.log:
            self.accesses.append(("r", addr, data))
        return data

    async def write(self, addr: int, data: int, sel: int = 0xF) -> None:
        await self.inner.write(addr, data, sel)
        self.writes += 1
        if self.log:
            self.accesses.append(("w", addr, data, sel))

    async def read_burst(self, addrs: Iterable[int]) -> list[int]:
        addrs = list(addrs)
        data = await read_burst(self.inner, addrs)
        self.reads += len(addrs)
        if self.log:
            self.accesses += [("r", a, d) for a, d in zip(addrs, data)]
        return data

    async def write_burst(self, pairs: Iterable[tuple[int, int]]) -> None:
        pairs = list(pairs)
        await write_burst(self.inner, pairs)
        self.writes += len(pairs)
        if self.log:
            self.accesses += [("w", a, d, 0xF) for a, d in pairs]
