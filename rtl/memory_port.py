"""The column memories and their bus side: bus writes into them, the sequencer's group
address, and the lane read path of bus reads (``docs/ARCHITECTURE.md`` section 6).

Per-column data lives in one :class:`~rtl.column_memory.ColumnMemory` per region, one
word per column group holding the P lanes of the group (WEIGHT and STUCK_*: P x R bits,
COMP: P x K, OFFSET: P x W, GAIN: P x 8, THRESH and ACC: P x A). Each has exactly one
synchronous read port and one write port, shared by the bus (while idle) and the
sequencer (while busy), so that it maps onto FPGA block RAM. Bus writes use the write
port's granularity: one bus word updates one row chunk (WEIGHT, STUCK_*) or one lane
(the others) of one column. The transfer table lives inside the compute array; its bus
port is driven from here.

A pipelined macro (built for FPGA clock rates) writes its memories from registers, a
cycle after it acts on the access (two, through two levels of copies, at L = 4): the
decode and the checks then end at those registers instead of fanning out to the clock
enables of every lane. Nothing can observe the delay: the next access comes after the
ack, and no command runs while a memory write is accepted. Reads present the group's
address in the acting cycle (a cycle before it, from the early record, at L = 4) and
select the lane from the read port's data in one to three register stages
(``rtl/lane_read.py``).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from models.params import BUS_DATA_BITS, GAIN_BITS, GAIN_FRAC_BITS, Region

from .access import access_layout, offset_fields
from .column_memory import ColumnMemory
from .lane_read import LaneSelect, StagedLaneSelect
from .logic import clog2, onehot, or_words, region_name, register, select_packed
from .pipeline_timing import PipelineTiming
from .replicas import LANE_BLOCK, REPLICA_ATTR, TREE_FANOUT, lane_blocks, replicated

__all__ = ["MemoryBusPort"]


class MemoryBusPort(wiring.Component):
    """The column memories with their bus write path, read addresses and read path.

    Parameters
    ----------
    p : MacroParams
    banks : int or None
        The network engine's weight banks: WEIGHT and THRESH hold this many tiles.
    weights_in_block_ram : bool
        WEIGHT's banks in block RAM whatever their depth, with reads that collide with a
        write undefined on the FPGA (``ColumnMemory(block_ram=True)``). For an engine
        whose bus masters hold each request to its ack: a bus write lands before its
        ack, the next access comes after it, the sequencer runs no command while the bus
        accesses a memory region, and a write's own read answer is unused, so the word
        read in the cycle after a write is never used. (THRESH's banks are left to the
        tools: with them in block RAM too, the router did not converge on the fully
        parallel 32x96 engine on the ECP5-85F; docs/ENGINE.md section 10.) With one
        column group (P = C) and a pipeline (the FPGA-clock builds, L = 1..3) the lanes
        take WEIGHT's word from a register after the block RAM: the bank, its address,
        is presented two cycles before a RUN's first plane cycle (one for the read, one
        for the register), so the block RAM's clock-to-output and its route across the
        die end at that register instead of in every lane's popcount. Bus reads take
        the block RAM's word.

    Members
    -------
    access : In(access_layout(p))
        The bus access in the cycle it acts in. A read needs the records of the cycles
        after it, up to its ack, to show its address still (behind BusFrontEnd they do:
        a Wishbone master holds ADR until the ack, section 6): with one block of lanes
        (P <= 8) and a pipeline it is answered from the read port's word and the slot of
        the record a cycle after the acting cycle (L = 1..3) or of the early record two
        cycles after the early cycle (L = 4). Writes take their address and data from
        the acting cycle and the early record alone, so an abandoned write lands as
        presented; an abandoned read has no ack.
    early : In(access_layout(p))
        With copy trees (L = 4): the access a cycle after it; read addresses, write
        enables and the write data trees start from it.
    request_offset : In(p.region_shift)
        The bus offset of the access cycle (the L = 4 read path's lane select copies).
    busy : In(1)
        A command runs: the read ports take the sequencer's group.
    group : In(max(1, ceil(log2 G)))
        The sequencer's column group.
    comp_store, comp_result : In(P), In(P * K)
        Lanes whose COMP the sequencer writes, and what.
    store, acc_result : In(P), In(P * A)
        Lanes whose ACC the sequencer writes, and what.
    bank : In(ceil(log2 banks))
        Only with ``banks``: the bank of WEIGHT and THRESH that the read and write ports
        address (word ``bank * 2^ceil(log2 G) + group``). The owner presents the bus's
        bank field while idle and the sequencer's bank while busy.
    table_rdata : In(signed(W))
        The transfer table's read data (when ``table`` is built; sign-extended into the
        read word), and ``table_addr``, ``table_wdata``, ``table_we`` out: its bus port.
    weights, stuck_mask, stuck_value, comp_bits, theta, offset, gain, acc : Out
        Each memory's read data: the group's word (stuck, offset, gain when built).
    answer : Out(32)
        The read word of a bus read of a memory region (and TABLE), for the ack's
        cycle; with a registered answer it is 0 unless such a read is answered.
    answering : Out(1)
        A memory region answers the read of the ack's cycle.
    """

    def __init__(self, p, banks=None, *, weights_in_block_ram=False):
        self._p = p
        self._timing = timing = PipelineTiming.of(p.pipeline)
        self._banks = banks
        if weights_in_block_ram and banks is None:
            raise ValueError("weights_in_block_ram needs banks")
        self._weights_in_block_ram = bool(weights_in_block_ram)
        R, P, K, W, A = p.rows, p.cols_per_cycle, p.comp_rows, p.readout_bits, p.acc_bits
        members = {
            "access": In(access_layout(p)),
            "request_offset": In(p.region_shift),
            "busy": In(1),
            "group": In(max(1, p.group_addr_bits)),
            "comp_store": In(P),
            "comp_result": In(P * K),
            "store": In(P),
            "acc_result": In(P * A),
            "weights": Out(P * R),
            "comp_bits": Out(P * K),
            "theta": Out(P * A),
            "acc": Out(P * A),
            "answer": Out(BUS_DATA_BITS),
            "answering": Out(1),
        }
        if timing.acts_after:
            members["early"] = In(access_layout(p))
        if banks is not None:
            # The network engine's weight banks (docs/ENGINE.md section 10).
            if timing.acts_after:
                raise ValueError(f"banks need pipeline 0..3, not {p.pipeline}")
            members["bank"] = In(max(1, clog2(banks)))
        if p.has("stuck"):
            members.update(stuck_mask=Out(P * R), stuck_value=Out(P * R))
        if p.has("offset"):
            members["offset"] = Out(P * W)
        if p.has("gain"):
            members["gain"] = Out(P * GAIN_BITS)
        if p.has("table"):
            members.update(table_addr=Out(W), table_wdata=Out(signed(W)), table_we=Out(1),
                           table_rdata=In(signed(W)))
        super().__init__(members)

    def elaborate(self, platform):
        p, timing = self._p, self._timing
        R, P, G, K, W, A = (p.rows, p.cols_per_cycle, p.groups, p.comp_rows, p.readout_bits,
                            p.acc_bits)
        chunk_rows, chunks = p.chunk_rows, p.chunks
        m = Module()
        access = self.access
        write = Signal()
        read = Signal()
        m.d.comb += [write.eq(access.valid & access.we), read.eq(access.valid & ~access.we)]
        hit = {r["region"]: access.regions[r["region"]] for r in p.regions()}
        fields_of = {r["region"]: offset_fields(p, r["region"], access.offset) for r in p.regions()}
        # Reads present their address where the access acts, or a cycle before it.
        read_record = self.early if timing.acts_after else access
        read_fields = {r["region"]: offset_fields(p, r["region"], read_record.offset)
                       for r in p.regions()}

        banks = self._banks

        def column_memory(name, lane_bits, lane_init=0, granularity=None, banked=False,
                          block_ram=False):
            depth = (1 << p.group_addr_bits) * banks if banked and banks is not None else G
            memory = ColumnMemory(lane_bits, P, depth, granularity=granularity,
                                  lane_init=lane_init, block_ram=block_ram)
            m.submodules[name] = memory
            return memory

        row_mems = {Region.WEIGHT: column_memory("weight_mem", R, granularity=chunk_rows,
                                                 banked=True,
                                                 block_ram=self._weights_in_block_ram)}
        if p.has("stuck"):
            for number, name in ((Region.STUCK_MASK, "stuck_mask_mem"),
                                 (Region.STUCK_VALUE, "stuck_value_mem")):
                row_mems[number] = column_memory(name, R, granularity=chunk_rows)
        # COMP resets balanced (n = K/2), so that a fresh macro computes s exactly.
        lane_mems = {Region.COMP: column_memory("comp_mem", K, (1 << K // 2) - 1, granularity=K),
                     Region.THRESH: column_memory("thresh_mem", A, granularity=A, banked=True)}
        if p.has("offset"):
            lane_mems[Region.OFFSET] = column_memory("offset_mem", W, granularity=W)
        if p.has("gain"):
            lane_mems[Region.GAIN] = column_memory("gain_mem", GAIN_BITS, 1 << GAIN_FRAC_BITS,
                                                   granularity=GAIN_BITS)
        # ACC is written only by the sequencer, a whole group at a time.
        acc_mem = column_memory("acc_mem", A)
        lane_bits = {Region.COMP: K, Region.THRESH: A, Region.OFFSET: W, Region.GAIN: GAIN_BITS,
                     Region.ACC: A}
        outputs = {Region.WEIGHT: self.weights, Region.COMP: self.comp_bits,
                   Region.THRESH: self.theta}
        for number, name in ((Region.STUCK_MASK, "stuck_mask"), (Region.STUCK_VALUE, "stuck_value"),
                             (Region.OFFSET, "offset"), (Region.GAIN, "gain")):
            if hasattr(self, name):
                outputs[number] = getattr(self, name)
        registered = self._weights_in_block_ram and G == 1 and timing.pipelined
        for number, mem in {**row_mems, **lane_mems}.items():
            if number == Region.WEIGHT and registered:
                m.d.sync += outputs[number].eq(mem.read_data)
            else:
                m.d.comb += outputs[number].eq(mem.read_data)
        m.d.comb += self.acc.eq(acc_mem.read_data)

        # Read ports: the bus's address while idle, the group's while busy.
        def group_address(bus_group):
            if p.group_addr_bits == 0:
                return Const(0, 0)
            return Mux(self.busy, self.group[:p.group_addr_bits], bus_group)

        def banked(number, address, bank=None):
            """The address of a bank memory: the bank above the group."""
            if banks is None or number not in (Region.WEIGHT, Region.THRESH):
                return address
            return Cat(address, Const(0, p.group_addr_bits - len(Value.cast(address))),
                       self.bank if bank is None else bank)

        for number, mem in row_mems.items():
            m.d.comb += mem.read_addr.eq(banked(number, group_address(
                read_fields[Region.WEIGHT]["group"])))
        for number, mem in lane_mems.items():
            m.d.comb += mem.read_addr.eq(banked(number, group_address(
                read_fields[Region.COMP]["group"])))
        m.d.comb += acc_mem.read_addr.eq(group_address(read_fields[Region.COMP]["group"]))

        writes = _BusWrites(m, p, timing, self, write, hit, fields_of)
        for number, mem in row_mems.items():
            m.d.comb += [
                mem.write_addr.eq(banked(number, writes.row_group, writes.bank)),
                mem.write_data.eq(Cat(*(
                    writes.data(chunk_rows)[i * chunk_rows:(i + 1) * chunk_rows].replicate(chunks)
                    for i in range(P)))),
                mem.write_en.eq(writes.enables(writes.row_en, number)),
            ]
        for number, mem in lane_mems.items():
            if number == Region.COMP:
                continue        # shared with CALIBRATE below
            m.d.comb += [
                mem.write_addr.eq(banked(number, writes.lane_group, writes.bank)),
                mem.write_data.eq(writes.data(lane_bits[number])),
                mem.write_en.eq(writes.enables(writes.lane_en, number)),
            ]
        comp_mem = lane_mems[Region.COMP]
        bus_comp = writes.data(K)
        comp_bus_en = writes.enables(writes.lane_en, Region.COMP)
        m.d.comb += [
            acc_mem.write_addr.eq(self.group[:p.group_addr_bits]),
            acc_mem.write_en.eq(self.store),
            acc_mem.write_data.eq(self.acc_result),
            comp_mem.write_addr.eq(group_address(writes.lane_group)),
        ]
        if timing.memory_write_delay:
            # The bus writes COMP only while idle and lands within two cycles of an
            # access: the sequencer's store needs no multiplexer on BUSY.
            m.d.comb += [
                comp_mem.write_data.eq(Cat(*(
                    Mux(self.comp_store[i], self.comp_result[i * K:(i + 1) * K],
                        bus_comp[i * K:(i + 1) * K]) for i in range(P)))),
                comp_mem.write_en.eq(self.comp_store | comp_bus_en),
            ]
        else:
            m.d.comb += [
                comp_mem.write_data.eq(Mux(self.busy, self.comp_result, bus_comp)),
                comp_mem.write_en.eq(Mux(self.busy, self.comp_store, comp_bus_en)),
            ]
        if p.has("table"):
            m.d.comb += [
                self.table_addr.eq(fields_of[Region.TABLE]["index"]),
                self.table_wdata.eq(access.data[:W]),
                self.table_we.eq(write & hit[Region.TABLE]),
            ]

        self._read_path(m, read, hit, read_fields, row_mems, lane_mems, acc_mem, lane_bits)
        return m

    def _read_path(self, m, read, hit, read_fields, row_mems, lane_mems, acc_mem, lane_bits):
        """The answer to a bus read of a memory region: the address presented with the
        read, the lane and chunk selected from the read port's word."""
        p, timing = self._p, self._timing
        R = p.rows
        sb, cb, chunks, chunk_rows = p.slot_addr_bits, p.chunk_addr_bits, p.chunks, p.chunk_rows
        memory_reads = list(row_mems) + list(lane_mems) + [Region.ACC]
        if p.has("table"):
            memory_reads.append(Region.TABLE)
        read_from = {n: Signal(name=f"read_from_{region_name(n)}") for n in memory_reads}
        row_slot_q = Signal(max(1, sb), name="row_slot_q")
        row_chunk_q = Signal(max(1, p.chunk_addr_bits), name="row_chunk_q")
        lane_slot_q = Signal(max(1, sb), name="lane_slot_q")
        m.d.sync += [read_from[n].eq(read & hit[n]) for n in memory_reads]
        m.d.sync += [row_slot_q.eq(read_fields[Region.WEIGHT]["slot"]),
                     row_chunk_q.eq(read_fields[Region.WEIGHT]["chunk"]),
                     lane_slot_q.eq(read_fields[Region.COMP]["slot"])]
        if timing.lane_read_stages == 3:
            selector = StagedLaneSelect(m, p, self.request_offset)
        else:
            selector = LaneSelect(m, p, timing, read_fields)
        # The read flags of the access's cycle: the staged select gates each region's
        # lane words with them in the cycle that selects the group.
        read_flags = read_from
        if timing.pipelined:
            # Everything answers one cycle later: the read flags too.
            delayed = {}
            for n in read_from:
                delayed[n] = Signal(name=f"read_from_{region_name(n)}_q2")
                m.d.sync += delayed[n].eq(read_from[n])
            read_from = delayed

        memory_words = []
        for number, mem in row_mems.items():
            name = region_name(number)
            column = selector.select(row_slot_q, mem.read_data, R, f"{name}_column", "row",
                                     read_flags[number])
            chunk_q = row_chunk_q
            for stage in range(2, timing.lane_read_stages + 1):
                delayed_chunk = Signal(max(1, cb), name=f"{name}_chunk_q{stage}")
                m.d.sync += delayed_chunk.eq(chunk_q)
                chunk_q = delayed_chunk
            word = select_packed(m, chunk_q[:cb], column, chunks, chunk_rows, f"{name}_word")
            memory_words.append((number, word))
        for number, mem in {**lane_mems, Region.ACC: acc_mem}.items():
            width = lane_bits[number]
            lane = selector.select(lane_slot_q, mem.read_data, width,
                                   f"{region_name(number)}_lane", "lane", read_flags[number])
            if number in (Region.THRESH, Region.OFFSET, Region.ACC):
                word = Signal(BUS_DATA_BITS, name=f"{region_name(number)}_word")
                m.d.comb += word.eq(lane.as_signed())
                lane = word
            memory_words.append((number, lane))
        if p.has("table"):
            table_word = Signal(BUS_DATA_BITS, name="table_word")
            if timing.pipelined:
                m.d.sync += table_word.eq(self.table_rdata)
            else:
                m.d.comb += table_word.eq(self.table_rdata)
            memory_words.append((Region.TABLE, table_word))

        if timing.registered_answer:
            # One OR: the staged select's lane words are already gated by their region's
            # read flag, the others are gated here.
            gated = [word if number in selector.gated else
                     word & read_from[number].replicate(len(word))
                     for number, word in memory_words]
            m.d.comb += self.answer.eq(or_words(
                Cat(*(Cat(word, Const(0, BUS_DATA_BITS - len(word))) for word in gated)),
                len(gated), BUS_DATA_BITS))
        else:
            m.d.comb += self.answering.eq(Cat(*(read_from[n] for n, _ in memory_words)).any())
            for number, word in memory_words:
                with m.If(read_from[number]):
                    m.d.comb += self.answer.eq(word)


class _BusWrites:
    """The bus's write addresses, enables and data for the column memories."""

    def __init__(self, m, p, timing, port, write, hit, fields_of):
        self._m, self._p, self._timing, self._write, self._hit = m, p, timing, write, hit
        self._port = port
        self._dat_w = port.access.data
        self._fields = {}
        P, chunks = p.cols_per_cycle, p.chunks

        def enables(fields, suffix):
            row_slot_hit = onehot(m, fields[Region.WEIGHT]["slot"], P, f"row_slot_hit{suffix}")
            row_chunk_hit = onehot(m, fields[Region.WEIGHT]["chunk"], chunks,
                                   f"row_chunk_hit{suffix}")
            # Enable s * chunks + c: slot s and chunk c. One cell for all of them, and a
            # signal (each use of an expression would copy it).
            row_en = Signal(P * chunks, name=f"row_en{suffix}")
            if chunks == 1:
                m.d.comb += row_en.eq(row_slot_hit)
            else:
                m.d.comb += row_en.eq(Cat(*(row_slot_hit[s].replicate(chunks) for s in range(P)))
                                      & row_chunk_hit.replicate(P))
            return row_en, onehot(m, fields[Region.COMP]["slot"], P, f"lane_slot_hit{suffix}")

        if timing.early_write_enables:
            # Decoded from the early record and registered when the access acts: the
            # decode of a slot into 96 lane enables from the acting cycle's offset ended
            # on the enables' register a cycle later, across the die.
            early_fields = {r["region"]: offset_fields(p, r["region"], port.early.offset)
                            for r in p.regions()}
            self.row_en, self.lane_en = (register(m, en, f"{name}_d") for en, name in
                                         zip(enables(early_fields, "_early"), ("row_en", "lane_en")))
        else:
            self.row_en, self.lane_en = enables(fields_of, "")
        self.row_group = self._delayed(fields_of[Region.WEIGHT]["group"], "bus_row_group")
        # The bank of a write (banked memories only), where the write lands.
        self.bank = self._delayed(port.bank, "bus_bank") if hasattr(port, "bank") else None
        self.lane_group = self._delayed(fields_of[Region.COMP]["group"], "bus_lane_group")

    def _delayed(self, value, name):
        """``value`` where the memory write lands (``memory_write_delay`` registers)."""
        value = Value.cast(value)
        if not self._timing.memory_write_delay or len(value) == 0:
            return value
        for stage in range(self._timing.memory_write_delay):
            reg = Signal(len(value), name=f"{name}_q" + ("2" if stage else ""))
            self._m.d.sync += reg.eq(value)
            value = reg
        return value

    def enables(self, enables, number):
        """Per-lane write enables of region ``number`` where the write lands, from the
        address decode ``enables``: with a pipeline the decode and the accepted-write
        bit are registered apart and combined after the registers, so that the error
        checks end at one flip-flop."""
        m, p, timing = self._m, self._p, self._timing
        P = p.cols_per_cycle
        name = f"{region_name(number)}_bus"
        selected = self._write & self._hit[number]
        if not timing.memory_write_delay:
            return Mux(selected, enables, Const(0, len(enables)))
        per_lane = len(enables) // P
        if timing.copy_trees:
            # Each lane's enable is a register of its region's own that drives the
            # memory's clock enables directly: in the cycle after acting the decoded
            # enables (one register for all regions) and the accepted-write bit (one copy
            # per TREE_FANOUT blocks), ANDed into it for the next. An AND after one
            # register shared by the regions was a LUT between a flip-flop and the clock
            # enables of several lanes' memories, routed across them.
            enables_q = register(m, enables, f"{name}_enables_q")
            groups = -(-lane_blocks(P) // TREE_FANOUT)
            firsts = []
            for j in range(groups):
                first = Signal(name=f"{name}_write_t{j}_q",
                               attrs={REPLICA_ATTR: 1} if groups > 1 else {})
                m.d.sync += first.eq(selected)
                firsts.append(first)
            lanes = Signal(len(enables), name=f"{name}_lanes_q2")
            m.d.sync += lanes.eq(enables_q & Cat(*(
                firsts[i // (LANE_BLOCK * TREE_FANOUT)].replicate(per_lane) for i in range(P))))
            return lanes
        # The accepted-write bit in one copy per block of lanes (rtl/replicas.py).
        accepted = replicated(m, selected, P, f"{name}_write", suffix="_q")
        return self._delayed(enables, f"{name}_lanes") & Cat(*(accepted[i].replicate(per_lane)
                                                               for i in range(P)))

    def data(self, width):
        """The low ``width`` bits of the written word for every lane (lane-major): with a
        pipeline, from copies of a register per block of lanes."""
        if width in self._fields:
            return self._fields[width]
        m, p, timing = self._m, self._p, self._timing
        P = p.cols_per_cycle
        if timing.copy_trees:
            # The tree starts at a copy of its own of the data register (loaded from the
            # early record as that is): one register for every write was a wire across
            # the die to the tree's first level.
            root = Signal(width, name=f"dat_w_{width}_root_d", attrs={REPLICA_ATTR: 1},
                          reset_less=True)
            m.d.sync += root.eq(self._port.early.data[:width])
            lanes = replicated(m, root, P, f"dat_w_{width}", suffix="_q", tree=True,
                               reset_less=True)
        else:
            # The low bits of the bus word, as a signal: a write broadcasts them to every
            # lane (or chunk), and copies of a signal cost nothing where copies of a
            # slice of it each cost a node.
            low = Signal(width, name=f"dat_w_{width}")
            m.d.comb += low.eq(self._dat_w[:width])
            if timing.memory_write_delay:
                lanes = replicated(m, low, P, f"dat_w_{width}", suffix="_q")
            else:
                # A signal: the row memories slice it per lane.
                lanes = Signal(P * width, name=f"dat_w_{width}_lanes")
                m.d.comb += lanes.eq(low.replicate(P))
        self._fields[width] = lanes
        return lanes
