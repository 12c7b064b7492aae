"""The flip bits of the engine's weight banks (region FLIP with a bank field): one memory
word of C bits per bank, written and read 32 columns at a time by the bus, read whole by
the lanes at the bank the engine presents (docs/ENGINE.md, "Banks").
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from models.params import BUS_DATA_BITS, Region

from .engine_front_end import engine_access_layout, engine_fields
from .logic import clog2, onehot, select_packed

__all__ = ["FlipBanks"]


class FlipBanks(wiring.Component):
    """C flip bits per bank, in a memory of ``weight_banks`` words (bit-wide writes).

    Parameters
    ----------
    ep : EngineParams

    Members
    -------
    access : In(engine_access_layout(ep))
        The bus access in the cycle it acts in.
    bank : In(max(1, ceil(log2 weight_banks)))
        The bank read (and, for a bus write, written) in this cycle.
    group : In(max(1, ceil(log2 G)))
        The column group whose flips ``flip`` shows.
    flip : Out(P)
        The flips of ``group`` in the bank presented the cycle before.
    answer : Out(32)
        The word of a FLIP read, in the ack's cycle (0 for other accesses).
    """

    def __init__(self, ep):
        self._ep = ep
        super().__init__({
            "access": In(engine_access_layout(ep)),
            "bank": In(max(1, clog2(ep.weight_banks))),
            "group": In(max(1, ep.macro.group_addr_bits)),
            "flip": Out(ep.macro.cols_per_cycle),
            "answer": Out(BUS_DATA_BITS),
        })

    def elaborate(self, platform):
        ep, C = self._ep, self._ep.macro.cols
        words = ep.macro.packed_words
        m = Module()
        access = self.access
        word = engine_fields(ep, Region.FLIP, access.offset)["word"]
        hit = access.valid & access.regions[Region.FLIP]
        memory = Memory(shape=C, depth=ep.weight_banks, init=[])
        m.submodules.flip_mem = memory
        read = memory.read_port()
        write = memory.write_port(granularity=1)
        word_hit = onehot(m, word, words, "flip_word_hit")
        bits = clog2(ep.weight_banks)
        if bits:
            m.d.comb += [read.addr.eq(self.bank[:bits]), write.addr.eq(self.bank[:bits])]
        padded = words * BUS_DATA_BITS
        m.d.comb += [
            write.data.eq(access.data.replicate(words)[:C]),
            write.en.eq(Mux(hit & access.we,
                            Cat(*(word_hit[j].replicate(BUS_DATA_BITS)
                                  for j in range(words)))[:C], 0)),
            self.flip.eq(select_packed(m, self.group[:ep.macro.group_addr_bits], read.data,
                                       ep.macro.groups, ep.macro.cols_per_cycle, "group_flip")),
        ]
        read_q = Signal(name="flip_read_q")
        word_q = Signal(max(1, clog2(words)), name="flip_word_q")
        m.d.sync += [read_q.eq(hit & ~access.we), word_q.eq(word)]
        selected = select_packed(m, word_q[:clog2(words)],
                                 Cat(read.data, Const(0, padded - C)), words, BUS_DATA_BITS,
                                 "flip_read_word")
        m.d.comb += self.answer.eq(Mux(read_q, selected, 0))
        return m
