"""A cocotb 2.1 Wishbone B4 classic master: the transport of the driver on simulated RTL.

:class:`CocotbWishboneTransport` drives ``adr``, ``dat_w``, ``sel``, ``cyc``, ``stb``
and ``we`` and waits for ``ack``; :class:`host.driver.MacroDriver` runs on top of it
inside a cocotb test exactly as it runs on the golden model.

Timing: signals are driven just after a rising clock edge and sampled at the rising
edges that follow (cocotb reads the values the design held before the edge, as a
synchronous master would register them). An access starts by raising ``cyc`` and
``stb``; the edge at which ``ack`` is sampled high ends it, ``dat_r`` is taken at that
edge, and ``cyc``/``stb`` fall right after it unless the next access follows at once
(back to back, as a CPU's load/store unit would issue them). Against the contract's
slave (``ack`` exactly one cycle after ``cyc & stb``) every access takes two cycles.
"""

from __future__ import annotations

from typing import Iterable

from cocotb.triggers import Lock, RisingEdge

from host.transport import Transport

__all__ = ["CocotbWishboneTransport", "WishboneTimeout", "WishboneProtocolError"]


class WishboneTimeout(TimeoutError):
    """The slave did not raise ``ack`` within the allowed number of cycles."""


class WishboneProtocolError(RuntimeError):
    """The slave answered outside the Wishbone rules (X on ``ack``/``dat_r``, early ack)."""


class CocotbWishboneTransport(Transport):
    """Wishbone B4 classic master on cocotb signal handles.

    Parameters
    ----------
    clk : cocotb handle
        The clock the slave samples the bus on.
    adr, dat_w, dat_r, sel, cyc, stb, we, ack : cocotb handles
        The bus signals (``dat_r`` and ``ack`` are inputs of the master).
    timeout_cycles : int
        Rising edges to wait for ``ack`` before :class:`WishboneTimeout` (default 64).
    min_latency : int
        Fewest edges from the first edge with ``stb`` high to ``ack`` (default 1: the
        contract's slave acknowledges one cycle later, so an ack already sampled at the
        first edge is a stale ack of an earlier access and raises
        :class:`WishboneProtocolError`). Set 0 for slaves with a combinational ack.

    Members
    -------
    reads, writes : int
        Completed accesses.
    last_latency : int or None
        Edges between the first edge with ``stb`` high and the ack of the last access
        (1 for the contract's slave).
    max_latency : int
        Largest ``last_latency`` seen.
    """

    def __init__(self, clk, *, adr, dat_w, dat_r, sel, cyc, stb, we, ack,
                 timeout_cycles: int = 64, min_latency: int = 1):
        if isinstance(timeout_cycles, bool) or not isinstance(timeout_cycles, int):
            raise TypeError(f"timeout_cycles must be an integer, not {timeout_cycles!r}")
        if timeout_cycles < 1:
            raise ValueError(f"timeout_cycles must be >= 1, not {timeout_cycles}")
        if min_latency not in (0, 1):
            raise ValueError(f"min_latency must be 0 or 1, not {min_latency!r}")
        self.clk = clk
        self.adr, self.dat_w, self.dat_r, self.sel = adr, dat_w, dat_r, sel
        self.cyc, self.stb, self.we, self.ack = cyc, stb, we, ack
        self.timeout_cycles = timeout_cycles
        self.min_latency = min_latency
        self.addr_bits = len(adr)
        self.data_bits = len(dat_w)
        self.reads = 0
        self.writes = 0
        self.last_latency: int | None = None
        self.max_latency = 0
        self._lock = Lock()
        self._idle()

    @classmethod
    def from_dut(cls, dut, prefix: str = "wb__", clk: str = "clk", **kwargs):
        """The transport on ``dut``'s ports ``{prefix}adr`` ... and clock ``clk``.

        The default prefix matches the flattened names of the Amaranth top (``wb__adr``).
        """
        names = ("adr", "dat_w", "dat_r", "sel", "cyc", "stb", "we", "ack")
        missing = [prefix + n for n in names if not hasattr(dut, prefix + n)]
        if missing or not hasattr(dut, clk):
            raise AttributeError(f"{dut._name} has no port(s) "
                                 f"{', '.join(missing + ([] if hasattr(dut, clk) else [clk]))}")
        return cls(getattr(dut, clk), **{n: getattr(dut, prefix + n) for n in names}, **kwargs)

    def _idle(self) -> None:
        self.cyc.value = 0
        self.stb.value = 0
        self.we.value = 0

    def _check_word(self, what: str, value: int, bits: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{what} must be an integer, not {value!r}")
        if not 0 <= value < 1 << bits:
            raise ValueError(f"{what} must fit in {bits} bits, not {value:#x}")
        return value

    async def _access(self, addr: int, we: bool, data: int, sel: int) -> int:
        kind = "write" if we else "read"
        addr = self._check_word(f"{kind} address", int(addr), self.addr_bits)
        data = self._check_word("write data", int(data), self.data_bits)
        sel = self._check_word("sel", int(sel), len(self.sel))
        async with self._lock:
            self.adr.value = addr
            self.dat_w.value = data
            self.sel.value = sel
            self.we.value = int(we)
            self.cyc.value = 1
            self.stb.value = 1
            for edge in range(self.timeout_cycles):
                await RisingEdge(self.clk)
                ack = self.ack.value
                if not ack.is_resolvable:
                    self._idle()
                    raise WishboneProtocolError(f"ack is {ack} during the {kind} of {addr:#x}")
                if ack == 1:
                    break
            else:
                self._idle()
                raise WishboneTimeout(
                    f"no Wishbone ack within {self.timeout_cycles} cycles for the {kind} of "
                    f"{addr:#x}: is the slave clocked, out of reset and decoding this address?")
            if edge < self.min_latency:
                self._idle()
                raise WishboneProtocolError(
                    f"ack already high at the first edge of the {kind} of {addr:#x}: the slave "
                    f"acknowledged an earlier access twice (ack must last one cycle)")
            result = 0
            if not we:
                value = self.dat_r.value
                if not value.is_resolvable:
                    self._idle()
                    raise WishboneProtocolError(f"dat_r is {value} with the ack of the read of "
                                                f"{addr:#x}")
                result = value.to_unsigned()
                self.reads += 1
            else:
                self.writes += 1
            self.last_latency = edge
            self.max_latency = max(self.max_latency, edge)
            self._idle()
            return result

    async def read(self, addr: int) -> int:
        return await self._access(addr, False, 0, 0xF)

    async def write(self, addr: int, data: int, sel: int = 0xF) -> None:
        await self._access(addr, True, data, sel)

    async def read_burst(self, addrs: Iterable[int]) -> list[int]:
        return [await self.read(a) for a in addrs]

    async def write_burst(self, pairs: Iterable[tuple[int, int]]) -> None:
        for addr, data in pairs:
            await self.write(addr, data)
