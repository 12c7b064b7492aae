"""Wishbone B4 classic bus signature of the macro's host port.

The macro is a Wishbone B4 *classic* slave with 32-bit data, word addresses and four byte
selects (``docs/ARCHITECTURE.md`` section 6). There is no ERR or RTY line: the slave
acknowledges every access exactly one cycle after ``cyc & stb`` and reports faults in its
STATUS/ERRCODE registers instead. This module only declares the signature; the slave
logic lives in :mod:`rtl.cim_macro`.
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DATA_BITS", "SEL_BITS", "Signature"]

#: Width of ``dat_w`` and ``dat_r``.
DATA_BITS = 32
#: Width of ``sel``: one byte select per byte of data.
SEL_BITS = DATA_BITS // 8


class Signature(wiring.Signature):
    """Wishbone B4 classic signature, from the bus master's point of view.

    A slave takes the flipped signature: ``In(wishbone.Signature(addr_bits))``.

    Parameters
    ----------
    addr_bits : int
        Width of the word address ``adr``, at least 1.

    Members
    -------
    adr : Out(addr_bits)
        Word address.
    dat_w : Out(32)
        Write data.
    sel : Out(4)
        Byte selects; the macro accepts writes only when all four are set.
    cyc : Out(1)
        Bus cycle in progress.
    stb : Out(1)
        Strobe: an access is requested.
    we : Out(1)
        Write enable: the access is a write.
    dat_r : In(32)
        Read data, valid while ``ack`` is high.
    ack : In(1)
        Acknowledge, high for one cycle, one cycle after ``cyc & stb``.
    """

    def __init__(self, addr_bits):
        if isinstance(addr_bits, bool) or not isinstance(addr_bits, int):
            raise TypeError(f"addr_bits must be an integer, not {addr_bits!r}")
        if addr_bits < 1:
            raise ValueError(f"addr_bits must be >= 1, not {addr_bits}")
        self._addr_bits = addr_bits
        super().__init__({
            "adr": Out(addr_bits),
            "dat_w": Out(DATA_BITS),
            "sel": Out(SEL_BITS),
            "cyc": Out(1),
            "stb": Out(1),
            "we": Out(1),
            "dat_r": In(DATA_BITS),
            "ack": In(1),
        })

    @property
    def addr_bits(self):
        return self._addr_bits

    def __eq__(self, other):
        return type(self) is type(other) and self.addr_bits == other.addr_bits

    def __hash__(self):
        return hash((type(self), self.addr_bits))

    def __repr__(self):
        return f"wishbone.Signature({self.addr_bits})"
