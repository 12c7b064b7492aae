"""Per-column-group storage of the macro: one word per column group, P lanes per word.

The controller keeps every per-column quantity (WEIGHT, STUCK_*, COMP, OFFSET, GAIN,
THRESH, ACC) in one :class:`ColumnMemory` each: word g holds the P lanes of column group
g. One synchronous read port and one write port, shared by the bus and the sequencer,
so that the storage maps onto FPGA block RAM when there are several groups.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["ColumnMemory"]

#: Widest bank of one word. Amaranth's netlist cannot hold a cell output of 2^16 bits or
#: more (a 256 x 256 macro with P = 256 has 65536-bit WEIGHT words), and its Python
#: simulator cannot compile a constant (a bank's initial value) of more than about 14000
#: bits, so wider words are split into banks that share their addresses.
MAX_BANK_BITS = 1 << 13


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, not {value}")


class ColumnMemory(wiring.Component):
    """``depth`` words of ``lanes`` lanes of ``lane_bits`` bits, written a slice at a time.

    One or more :class:`amaranth.lib.memory.Memory` banks (see :data:`MAX_BANK_BITS`),
    each a slice of every word, with one synchronous read port (data one cycle after the
    address) and one write port with the given write granularity. A bus word updates one
    slice (a row chunk or a lane) of one word without reading it first, and the
    sequencer writes whole words.

    Parameters
    ----------
    lane_bits : int
        Bits per lane.
    lanes : int
        Lanes per word (P).
    depth : int
        Number of words (column groups G).
    granularity : int or None
        Bits per write enable: ``write_en`` has ``lanes * lane_bits // granularity`` bits,
        bit i enabling bits ``[i * granularity, (i + 1) * granularity)``. Default: one
        lane.
    lane_init : int
        Initial (power-on) value of every lane of every word.
    block_ram : bool
        Map the banks onto block RAM whatever their depth (Yosys's ``ram_style``), with
        no logic to define a read of the word a write lands in at the same clock edge
        (``no_rw_check``): on the FPGA that read returns an undefined word, in
        simulation the old one. Only for an owner that never uses the read data of the
        cycle after such a collision. Default: the synthesis tool chooses, and keeps
        the read-before-write behaviour.

    Members
    -------
    read_addr : In(max(1, ceil(log2(depth))))
        Word address of the read port (ignored when ``depth == 1``).
    read_data : Out(lanes * lane_bits)
        The word at the previous cycle's ``read_addr``.
    write_addr : In(max(1, ceil(log2(depth))))
        Word address of the write port (ignored when ``depth == 1``).
    write_data : In(lanes * lane_bits)
        Data written at the clock edge, where ``write_en`` enables it.
    write_en : In(lanes * lane_bits // granularity)
        Write enable of each ``granularity``-bit slice.
    """

    def __init__(self, lane_bits, lanes, depth, *, granularity=None, lane_init=0,
                 block_ram=False):
        _check_positive("lane_bits", lane_bits)
        _check_positive("lanes", lanes)
        _check_positive("depth", depth)
        width = lane_bits * lanes
        if granularity is None:
            granularity = lane_bits
        _check_positive("granularity", granularity)
        if width % granularity:
            raise ValueError(f"granularity must divide the word width {width}, not {granularity}")
        if isinstance(lane_init, bool) or not isinstance(lane_init, int):
            raise TypeError(f"lane_init must be an integer, not {lane_init!r}")
        if not 0 <= lane_init < 1 << lane_bits:
            raise ValueError(f"lane_init must be an unsigned {lane_bits}-bit value, "
                             f"not {lane_init}")
        self._lane_bits = lane_bits
        self._lanes = lanes
        self._depth = depth
        self._granularity = granularity
        self._lane_init = lane_init
        self._block_ram = bool(block_ram)
        addr_bits = max(1, (depth - 1).bit_length())
        super().__init__({
            "read_addr": In(addr_bits),
            "read_data": Out(width),
            "write_addr": In(addr_bits),
            "write_data": In(width),
            "write_en": In(width // granularity),
        })

    @property
    def depth(self):
        return self._depth

    @property
    def word_init(self):
        """Initial value of every word."""
        return sum(self._lane_init << (self._lane_bits * i) for i in range(self._lanes))

    def elaborate(self, platform):
        m = Module()
        width = self._lane_bits * self._lanes
        gran = self._granularity
        addr_bits = (self._depth - 1).bit_length()
        bank_bits = gran * max(1, MAX_BANK_BITS // gran)
        read_data = []
        for bank, lo in enumerate(range(0, width, bank_bits)):
            hi = min(width, lo + bank_bits)
            init = (self.word_init >> lo) & ((1 << (hi - lo)) - 1)
            attrs = {"ram_style": "block", "no_rw_check": 1} if self._block_ram else None
            memory = Memory(shape=hi - lo, depth=self._depth, init=[init] * self._depth,
                            attrs=attrs)
            m.submodules[f"bank_{bank}"] = memory
            if self._block_ram:
                # An asynchronous port and its register: Yosys applies no_rw_check when it
                # merges the two into a synchronous port (memory_dff), not to a port that
                # is synchronous already. The same behaviour as read_port().
                read = memory.read_port(domain="comb")
                read_data.append(Signal(hi - lo, name=f"bank_{bank}_read_data",
                                        reset_less=True))
                m.d.sync += read_data[-1].eq(read.data)
            else:
                read = memory.read_port()
                read_data.append(read.data)
            write = memory.write_port(granularity=gran)
            m.d.comb += [
                write.data.eq(self.write_data[lo:hi]),
                write.en.eq(self.write_en[lo // gran:hi // gran]),
            ]
            if addr_bits:
                # A one-word memory's ports have zero-width addresses; left undriven they
                # are not emitted at all (driven, Yosys writes them as [-1:0] vectors).
                m.d.comb += [read.addr.eq(self.read_addr[:addr_bits]),
                             write.addr.eq(self.write_addr[:addr_bits])]
        m.d.comb += self.read_data.eq(Cat(*read_data))
        return m
