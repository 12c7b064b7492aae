"""The engine's image buffer (docs/ENGINE.md, region IMAGE): ``image_slots`` images of up
to ``max_width`` B-bit inputs, written and read a bit-plane word (32 inputs) at a time by
the bus, read a row tile (R inputs of every plane) at a time by the sequencer.

Storage: ``M`` memories (:class:`amaranth.lib.memory.Memory`, block RAM on FPGAs) of
B x 32-bit words, one word per (slot, chunk of 32 inputs), chunk c in memory ``c mod
M``. With R < 32 (M = 2) a row tile lies within two consecutive chunks, one in each
memory; with R = 32 n (M = n) a row tile is n whole chunks. Either way one read of every
memory gives the tile, so the sequencer presents the tile's address a cycle before the
RUN's read cycle and the rows follow without a cycle of their own.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from models.engine_params import EngineRegion
from models.params import BUS_DATA_BITS

from .engine_front_end import engine_access_layout, engine_fields
from .logic import clog2, eq_const, onehot, select, select_packed

__all__ = ["ImageBuffer"]


class ImageBuffer(wiring.Component):
    """Image slots of B bit-planes of ``max_width`` inputs.

    Parameters
    ----------
    ep : EngineParams

    Members
    -------
    access : In(engine_access_layout(ep))
        The bus access in the cycle it acts in (IMAGE writes and reads; bits of a word
        beyond max_width are dropped on write).
    busy : In(1)
        The sequencer owns the read ports (the bus cannot access IMAGE while busy).
    slot : In(max(1, ceil(log2 image_slots)))
        The sequencer's slot, presented a cycle before its rows are read.
    row_base : In(17), row_tile : In(max(1, ceil(log2 ceil(max_width / R))))
        The first input of the sequencer's row tile (a multiple of R) and its index,
        with ``slot``.
    rows : Out(B * R)
        Plane b of the tile is bits ``[b R, (b + 1) R)``: inputs ``row_base ..
        row_base + R - 1`` of the slot presented the cycle before (unmasked).
    answer : Out(32)
        The word of an IMAGE read, in the ack's cycle (0 for other accesses).
    """

    def __init__(self, ep):
        self._ep = ep
        p = ep.macro
        self.memories = max(2, p.rows // BUS_DATA_BITS) if p.rows % BUS_DATA_BITS else \
            p.rows // BUS_DATA_BITS
        super().__init__({
            "access": In(engine_access_layout(ep)),
            "busy": In(1),
            "slot": In(max(1, clog2(ep.image_slots))),
            "row_base": In(17),
            "row_tile": In(max(1, clog2(-(-ep.max_width // p.rows)))),
            "rows": Out(p.input_bits * p.rows),
            "answer": Out(BUS_DATA_BITS),
        })

    def elaborate(self, platform):
        ep, p = self._ep, self._ep.macro
        R, B, M = p.rows, p.input_bits, self.memories
        m = Module()
        access = self.access
        fields = engine_fields(ep, EngineRegion.IMAGE, access.offset)
        chunk, plane = fields["image_chunk"], fields["plane"]
        per_memory = -(-ep.image_chunks // M)
        index_bits = clog2(per_memory)
        slot_bits = clog2(ep.image_slots)
        hit = access.valid & access.regions[EngineRegion.IMAGE]
        plane_hit = onehot(m, plane, B, "image_plane_hit")

        # Bits of the last chunk beyond max_width are not stored.
        tail = ep.max_width - BUS_DATA_BITS * (ep.image_chunks - 1)
        last_chunk = eq_const(chunk, ep.image_chunks - 1)
        dat_w = Signal(BUS_DATA_BITS, name="image_dat_w")
        m.d.comb += dat_w.eq(Mux(last_chunk, access.data & ((1 << tail) - 1), access.data))

        # The sequencer's chunks: c0 = row_base / 32 and the next M - 1.
        c0 = self.row_base[5:]
        if M & (M - 1) == 0:
            bus_memory, bus_index = chunk[:clog2(M)], chunk[clog2(M):]
        else:       # R = 32 n, n not a power of two: chunk mod n and chunk // n by table
            chunks = range(ep.image_chunks)
            bus_memory = select(m, chunk, [c % M for c in chunks], clog2(M), "image_bus_memory")
            bus_index = select(m, chunk, [c // M for c in chunks], max(1, index_bits),
                               "image_bus_index")
        words = []
        for i in range(M):
            memory = Memory(shape=B * BUS_DATA_BITS, depth=ep.image_slots << index_bits, init=[])
            m.submodules[f"image_mem_{i}"] = memory
            read = memory.read_port()
            write = memory.write_port(granularity=BUS_DATA_BITS)
            if R % BUS_DATA_BITS:
                # M = 2: chunk c0 + ((i - c0) mod 2) lives in memory i.
                seq_index = (c0 + (c0[0] ^ i)) >> 1 if i == 0 else c0 >> 1
            else:
                seq_index = self.row_tile        # chunk t n + i is word t of memory i
            if index_bits + slot_bits:
                # (A one-word memory has no address: none is driven.)
                seq_addr = Cat(seq_index[:index_bits], self.slot[:slot_bits])
                bus_addr = Cat(bus_index[:index_bits], fields["image_slot"])
                # The sequencer's address but for a bus access to IMAGE while idle (the
                # CLASSIFY's cycle presents the first RUN's rows).
                m.d.comb += [read.addr.eq(Mux(~self.busy & access.regions[EngineRegion.IMAGE],
                                              bus_addr, seq_addr)),
                             write.addr.eq(bus_addr)]
            m.d.comb += [
                write.data.eq(dat_w.replicate(B)),
                write.en.eq(Mux(hit & access.we & eq_const(bus_memory, i), plane_hit, 0)),
            ]
            words.append(read.data)

        # The tile from the words read: a window of the chunks, per plane.
        first_odd = Signal(name="image_first_odd")
        shift = Signal(5, name="image_shift")
        m.d.sync += [first_odd.eq(c0[0]), shift.eq(self.row_base[:5])]
        for b in range(B):
            chunks = [w[b * BUS_DATA_BITS:(b + 1) * BUS_DATA_BITS] for w in words]
            if R % BUS_DATA_BITS:
                window = Mux(first_odd, Cat(chunks[1], chunks[0]), Cat(chunks[0], chunks[1]))
                tile = (window >> shift)[:R]
            else:
                tile = Cat(*chunks)
            m.d.comb += self.rows[b * R:(b + 1) * R].eq(tile)

        # Bus reads: the plane's 32 bits of the word read (memory and plane registered).
        read_q = Signal(name="image_read_q")
        memory_q = Signal(max(1, clog2(M)), name="image_memory_q")
        plane_q = Signal(max(1, clog2(B)), name="image_plane_q")
        m.d.sync += [read_q.eq(hit & ~access.we), memory_q.eq(bus_memory),
                     plane_q.eq(plane)]
        word = select_packed(m, memory_q[:clog2(M)], Cat(*words), M, B * BUS_DATA_BITS,
                             "image_read_word")
        selected = select_packed(m, plane_q[:clog2(B)], word, B, BUS_DATA_BITS,
                                 "image_read_plane")
        m.d.comb += self.answer.eq(Mux(read_q, selected, 0))
        return m
