"""A driver transport that plays whole lists of bus accesses through the harness's engine.

:class:`BurstTransport` is a :class:`host.transport.Transport` for the macro inside the
harness of :mod:`verif.cocotb.harness`. Instead of awaiting every clock edge in Python
(as :class:`verif.wishbone_master.CocotbWishboneTransport` does), it hands lists of
accesses to the Verilog burst engine (``wb_burst.v``), which plays them back to back on
the Wishbone bus, and wakes Python once per list. The accesses on the bus, their order
and their timing (two cycles each) are the same as with the per-edge master.

Posted writes
    ``write`` and ``write_burst`` only queue; the queue is played, in order, before the
    next read (or by :meth:`flush`). A write has no result and faults are reported in
    STATUS, which is a read, so the driver cannot tell the difference; it saves one
    Python wake-up per write. Call :meth:`flush` before looking at the design directly.

Folded STATUS polls (``fold_polls=True``)
    A read of STATUS right after a write of CMD in the same list becomes an engine
    *poll*: the engine reads STATUS again and again until BUSY is 0 (real bus reads, at
    most 4096) and returns the last word. The driver's own poll loop then sees BUSY low
    on its first read. The same list then also reads CYCLES, and the driver's next
    access, if it is a read of CYCLES with no write in between, gets that word without
    another engine run (CYCLES only changes when a command ends, and a read has no side
    effect). Off by default, so the driver's poll loop is exercised as is.
"""

from __future__ import annotations

import struct
from typing import Iterable

from cocotb.triggers import NextTimeStep, ReadOnly

from models.params import CSR, Status
from host.transport import Transport
from verif.wishbone_master import WishboneProtocolError, WishboneTimeout

from .harness import ENGINE_DEPTH

__all__ = ["BurstTransport"]

_WRITE, _READ, _POLL = 0, 1, 2


class BurstTransport(Transport):
    """Driver transport over the harness's Wishbone burst engine.

    Parameters
    ----------
    dut : cocotb handle of ``tb_top`` (a macro harness, with ``eng_*`` signals)
    region_shift : int
        ``p.region_shift``: the CSR addresses are ``reg`` itself (region 0).
    fold_polls : bool
        Fold a STATUS read after a CMD write into one engine poll (see above).

    Members
    -------
    reads, writes : int
        Accesses the driver asked for (a folded poll counts once, however many
        STATUS reads the engine made).
    bursts : int
        Engine runs (Python wake-ups).
    """

    def __init__(self, dut, *, fold_polls: bool = False):
        self.dut = dut
        self.fold_polls = fold_polls
        self.depth = ENGINE_DEPTH
        self.addr_bits = len(dut.wb__adr)
        self.reads = 0
        self.writes = 0
        self.bursts = 0
        self._queue: list[tuple[int, int, int, int]] = []   # (kind, addr, data, sel)
        self._go = 0
        self._cycles_ahead: int | None = None     # CYCLES read right after a folded poll

    def _check(self, what: str, value: int, bits: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                as_int = int(value)
            except (TypeError, ValueError):
                raise TypeError(f"{what} must be an integer, not {value!r}") from None
            value = as_int
        if not 0 <= value < 1 << bits:
            raise ValueError(f"{what} must fit in {bits} bits, not {value:#x}")
        return value

    # --- Transport API -----------------------------------------------------------------

    async def write(self, addr: int, data: int, sel: int = 0xF) -> None:
        self._cycles_ahead = None
        self._queue.append((_WRITE, self._check("write address", addr, self.addr_bits),
                            self._check("write data", data, 32), self._check("sel", sel, 4)))

    async def write_burst(self, pairs: Iterable[tuple[int, int]]) -> None:
        pairs = list(pairs)
        top_addr, top_data = 1 << self.addr_bits, 1 << 32
        # One pass over plain in-range ints (what the driver sends); anything else goes
        # through write() and its per-argument checks and messages.
        if all(type(a) is int and type(d) is int and 0 <= a < top_addr and 0 <= d < top_data
               for a, d in pairs):
            self._cycles_ahead = None
            self._queue += [(_WRITE, a, d, 0xF) for a, d in pairs]
            return
        for addr, data in pairs:
            await self.write(addr, data)

    async def read(self, addr: int) -> int:
        return (await self.read_burst([addr]))[0]

    async def read_burst(self, addrs: Iterable[int]) -> list[int]:
        addrs = [self._check("read address", a, self.addr_bits) for a in addrs]
        if addrs == [CSR.CYCLES] and self._cycles_ahead is not None and not self._queue:
            word, self._cycles_ahead = self._cycles_ahead, None
            return [word]
        self._cycles_ahead = None
        read_ahead = False
        for addr in addrs:
            kind = _READ
            if (self.fold_polls and addr == CSR.STATUS and self._queue
                    and self._queue[-1][:2] == (_WRITE, CSR.CMD)):
                kind = _POLL
                read_ahead = len(addrs) == 1
            self._queue.append((kind, addr, 1 << Status.BUSY if kind == _POLL else 0, 0xF))
        if read_ahead:
            self._queue.append((_READ, CSR.CYCLES, 0, 0xF))
            words = await self.flush()
            self._cycles_ahead = words.pop()
            return words
        return await self.flush()

    async def flush(self) -> list[int]:
        """Play every queued access; the words read, in order."""
        ops, self._queue = self._queue, []
        words = []
        for start in range(0, len(ops), self.depth):
            words += await self._play(ops[start:start + self.depth])
        return words

    # --- the engine --------------------------------------------------------------------

    async def _play(self, ops) -> list[int]:
        dut = self.dut
        if int(dut.eng_busy.value):
            raise WishboneProtocolError("the burst engine is busy: another task is using it")
        blob = struct.pack(f"<{len(ops)}Q", *[kind << 60 | sel << 56 | addr << 32 | data
                                              for kind, addr, data, sel in ops])
        dut.eng_ops.value = int.from_bytes(blob, "little")
        dut.eng_count.value = len(ops)
        self._go ^= 1
        dut.eng_go.value = self._go
        await dut.eng_done.value_change
        await ReadOnly()
        self.bursts += 1
        if int(dut.eng_timeout.value):
            index = dut.eng_failed_index.value.to_unsigned()
            await NextTimeStep()
            kind, addr, _, _ = ops[index]
            raise WishboneTimeout(f"no Wishbone ack within 64 cycles for the "
                                  f"{'write' if kind == _WRITE else 'read'} of {addr:#x} "
                                  f"(burst engine, access {index} of {len(ops)})")
        reads = [i for i, op in enumerate(ops) if op[0] != _WRITE]
        self.writes += len(ops) - len(reads)
        self.reads += len(reads)
        bits = str(dut.eng_results.value) if reads else ""
        # Leave the read-only phase, so that the caller may drive signals again.
        await NextTimeStep()
        n = len(bits)
        words = []
        for i in reads:
            word = bits[n - 32 * (i + 1):n - 32 * i]
            if set(word) - {"0", "1"}:
                raise WishboneProtocolError(f"dat_r is {word} with the ack of the read of "
                                            f"{ops[i][1]:#x} (burst engine)")
            words.append(int(word, 2))
        return words

    def __repr__(self):
        return f"BurstTransport(fold_polls={self.fold_polls})"
