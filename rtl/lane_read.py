"""The lane multiplexers of bus reads of the column memories: which lane (and chunk) of a
group's word a read returns, selected from the read port's data in one to three register
stages. :class:`LaneSelect` serves L = 0..3; :class:`StagedLaneSelect`, whose structure
differs, the L = 4 macro. Both are builders used by ``rtl/memory_port.py``.
"""

from amaranth.hdl import Cat, Signal

from models.params import Region

from .access import offset_fields
from .logic import onehot, or_words, select_packed
from .replicas import LANE_BLOCK, REPLICA_ATTR, TREE_FANOUT, block_copies

__all__ = ["LaneSelect", "StagedLaneSelect"]


class LaneSelect:
    """The lane multiplexer of bus reads in one or two register stages.

    One stage (no pipeline): the lane of the slot registered with the read, from the read
    port's word. Two stages: blocks of 8 lanes into registers a cycle after the read
    (each block's multiplexer from its own copy of the slot's low bits), the block a
    cycle later (the lanes of a wide macro spread over the die, and one multiplexer over
    all of them was the longest path).

    Members
    -------
    gated : set
        Regions whose selected word is already gated by its read flag (none).
    """

    gated = frozenset()

    def __init__(self, m, p, timing, read_fields):
        self._m, self._p = m, p
        sb, P = p.slot_addr_bits, p.cols_per_cycle
        self._k = min(sb, 3) if timing.pipelined else sb
        self._slot_low = {}
        if self._k < sb:
            assert 1 << self._k == LANE_BLOCK
            self._slot_low = {kind: block_copies(m, read_fields[number]["slot"][:self._k], P,
                                                 f"{kind}_slot_low", suffix="_q")
                              for kind, number in (("row", Region.WEIGHT), ("lane", Region.COMP))}

    def select(self, slot_q, data, width, name, kind, read_flag):
        """Lane ``slot_q`` of ``data`` (P lanes of ``width`` bits) of a ``kind`` ("row"
        or "lane") region."""
        m, p, k = self._m, self._p, self._k
        sb, P = p.slot_addr_bits, p.cols_per_cycle
        if k == sb:
            return select_packed(m, slot_q[:sb], data, P, width, name)
        blocks = -(-P // (1 << k))
        firsts = Signal(blocks * width, name=f"{name}_blocks")
        m.d.sync += firsts.eq(_block_selects(m, self._slot_low[kind], k, data, P, width, name))
        high = Signal(sb - k, name=f"{name}_slot_high")
        m.d.sync += high.eq(slot_q[k:sb])
        return select_packed(m, high, firsts, blocks, width, name)


class StagedLaneSelect:
    """The lane multiplexer of bus reads of the L = 4 macro, in three register stages: a
    lane per block of 8 (from copies of the slot's low bits that come from the access's
    own address through a tree), a block per group of TREE_FANOUT blocks (each group
    from its own copy of the select bits), then the group as an AND-OR of one-hot group
    selects gated by the region's read flag, so that the answer is one OR with the other
    regions' words.

    Members
    -------
    gated : set
        Regions whose selected word is already gated by its read flag (those with more
        lanes than one block).
    """

    def __init__(self, m, p, request_offset):
        self._m, self._p = m, p
        sb, P = p.slot_addr_bits, p.cols_per_cycle
        self._k = min(sb, 3)
        self._slot_low = {}
        self.gated = set()
        if self._k < sb:
            assert 1 << self._k == LANE_BLOCK
            # A tree of copies from the access's own address (a copy in cycle t, a copy
            # per block in t+1): the decoded address's one hop to every block was a wire
            # across the die.
            self._slot_low = {kind: block_copies(
                                m, offset_fields(p, number, request_offset)["slot"][:self._k], P,
                                f"{kind}_slot_low", suffix="_q", tree=True)
                              for kind, number in (("row", Region.WEIGHT), ("lane", Region.COMP))}
            self.gated = {Region.WEIGHT, Region.STUCK_MASK, Region.STUCK_VALUE, Region.COMP,
                          Region.THRESH, Region.OFFSET, Region.GAIN, Region.ACC}

    def select(self, slot_q, data, width, name, kind, read_flag):
        """Lane ``slot_q`` of ``data`` (P lanes of ``width`` bits) of a ``kind`` ("row"
        or "lane") region, 0 unless ``read_flag`` (a cycle before) when gated."""
        m, p, k = self._m, self._p, self._k
        sb, P = p.slot_addr_bits, p.cols_per_cycle
        if k == sb:
            return select_packed(m, slot_q[:sb], data, P, width, name)
        blocks = -(-P // (1 << k))
        firsts = Signal(blocks * width, name=f"{name}_blocks", reset_less=True)
        m.d.sync += firsts.eq(_block_selects(m, self._slot_low[kind], k, data, P, width, name))
        high = Signal(sb - k, name=f"{name}_slot_high")
        m.d.sync += high.eq(slot_q[k:sb])
        fan_bits = min(TREE_FANOUT.bit_length() - 1, sb - k)
        fan = 1 << fan_bits
        groups = -(-blocks // fan)
        seconds = Signal(groups * width, name=f"{name}_groups", reset_less=True)
        spans = [(j * fan, min(blocks, (j + 1) * fan)) for j in range(groups)]
        # Each group selects its block from a copy of its own of the select bits (one
        # register for all groups was a wire to every bit of every group).
        block_selects = []
        for j in range(groups):
            copy = Signal(max(1, fan_bits), name=f"{name}_slot_high_g{j}",
                          attrs={REPLICA_ATTR: 1} if groups > 1 else {}, reset_less=True)
            m.d.sync += copy.eq(slot_q[k:k + fan_bits])
            block_selects.append(copy[:fan_bits])
        m.d.sync += seconds.eq(Cat(*(
            select_packed(m, block_selects[j], firsts[lo * width:hi * width], hi - lo, width,
                          f"{name}_group{j}")
            for j, (lo, hi) in enumerate(spans))))
        group_select = Signal(groups, name=f"{name}_group_select")
        m.d.sync += group_select.eq(onehot(m, high[fan_bits:], groups, f"{name}_group_hit")
                                    & read_flag.replicate(groups))
        return or_words(Cat(*(seconds[j * width:(j + 1) * width]
                              & group_select[j].replicate(width) for j in range(groups))),
                        groups, width)


def _block_selects(m, slot_low, k, data, lanes, width, name):
    """Per block of 2^k lanes, the lane of the block's copy of the slot's low bits."""
    blocks = -(-lanes // (1 << k))
    return Cat(*(
        select_packed(m, slot_low[b * k:(b + 1) * k],
                      data[b * (1 << k) * width:min(lanes, (b + 1) << k) * width],
                      min(lanes, (b + 1) << k) - (b << k), width, f"{name}_block{b}")
        for b in range(blocks)))
