"""The input plane the compute array sees in each cycle: INPUT's plane of the current
plane cycle, one copy per block of 8 lanes, 0 (rows off) outside plane cycles, which is
what CALIBRATE needs.

:class:`PlaneSelect` selects the plane centrally, a cycle ahead, into a register copied
per block. :class:`BlockPlaneSelect`, for the macro whose lane controls go through copy
trees (L = 4), selects it inside each block from the block's own copies of INPUT and of
a one-hot plane select, and also delivers each plane's precounted ones.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .compute_array import count_bits, lane_popcount_planes, lane_popcounts_from_planes
from .logic import clog2, or_words, register, select
from .replicas import REPLICA_ATTR, block_copies, lane_blocks

__all__ = ["PlaneSelect", "BlockPlaneSelect"]


class PlaneSelect(wiring.Component):
    """The plane register, selected a cycle ahead and copied per block of lanes.

    Selecting a cycle ahead puts the input multiplexer before the clock edge instead of
    in front of the popcount, the longest path on an FPGA.

    Parameters
    ----------
    p : MacroParams

    Members
    -------
    inputs : In(B * R)
        INPUT: plane b is bits ``[b R, (b + 1) R)``.
    plane_next : In(max(1, ceil(log2 B)))
        The plane of the next cycle.
    planes_next : In(1)
        The next cycle is a plane cycle.
    plane : Out(lane_blocks(P) * R)
        The plane of this cycle, one copy per block of lanes (0 outside plane cycles).
    """

    def __init__(self, p):
        self._p = p
        super().__init__({
            "inputs": In(p.input_bits * p.rows),
            "plane_next": In(max(1, clog2(p.input_bits))),
            "planes_next": In(1),
            "plane": Out(lane_blocks(p.cols_per_cycle) * p.rows),
        })

    def elaborate(self, platform):
        p = self._p
        R, B = p.rows, p.input_bits
        m = Module()
        value = select(m, self.plane_next, [self.inputs[b * R:(b + 1) * R] for b in range(B)],
                       R, "input_plane_value")
        m.d.comb += self.plane.eq(block_copies(m, Mux(self.planes_next, value, Const(0, R)),
                                               p.cols_per_cycle, "plane_value"))
        return m


class BlockPlaneSelect(wiring.Component):
    """Plane registers per block of lanes, each fed from the block's own copies of INPUT
    and of a one-hot plane select, with the plane's precounted ones.

    Selecting the plane centrally and copying it to the blocks put a multiplexer and a
    wire across the die in one cycle (the longest path of the fully parallel ECP5
    build). Here each block registers a copy of the sequencer's one-hot plane select,
    which runs two cycles ahead of the planes (all zeros outside plane cycles), and a
    copy of INPUT (INPUT cannot change while BUSY, and its copies trail it by one cycle,
    well before a command written after the INPUT write's acknowledge can reach its
    first plane), and selects its plane from them.

    Each block also registers the plane's ones count with its plane, selected by the
    same select from copies of the counts of every plane of INPUT (the array then
    subtracts it without counting it on the readout path). Every register here copies
    INPUT and the select, a few cycles late.

    Parameters
    ----------
    p : MacroParams

    Members
    -------
    inputs : In(B * R)
        INPUT.
    select : In(B)
        The sequencer's one-hot plane select (bit b: plane b two cycles later).
    plane : Out(lane_blocks(P) * R)
        Each block's plane, block-major.
    plane_ones : Out(lane_blocks(P) * count_bits)
        Each block's plane's ones count, block-major.
    """

    def __init__(self, p):
        self._p = p
        ones = lane_blocks(p.cols_per_cycle) * count_bits(p.rows)
        super().__init__({
            "inputs": In(p.input_bits * p.rows),
            "select": In(p.input_bits),
            "plane": Out(lane_blocks(p.cols_per_cycle) * p.rows),
            "plane_ones": Out(ones),
        })

    def elaborate(self, platform):
        p = self._p
        R, B, P = p.rows, p.input_bits, p.cols_per_cycle
        m = Module()
        inputs = self.inputs
        selects = block_copies(m, self.select, P, "plane_select")
        input_copies = block_copies(m, inputs, P, "input_copy", reset_less=True)
        # The ones count of every plane of INPUT, in two register stages (bit-sliced
        # levels, then the adder tree), copied to the blocks through a tree: ready two
        # cycles before a command written right after an INPUT write's acknowledge selects
        # its first plane (the L = 4 tests of tests/test_cim_macro.py fail with three
        # more register stages here).
        count_planes, numbers = lane_popcount_planes(m, inputs, B, R, "input_ones", max_terms=8)
        count_planes = [register(m, plane, f"input_ones_plane{j}")
                        for j, plane in enumerate(count_planes)]
        counts = register(m, Cat(*lane_popcounts_from_planes(count_planes, numbers, B)),
                          "input_ones")
        count_bits = len(counts) // B
        count_copies = block_copies(m, counts, P, "input_ones", tree=True)
        planes, ones = [], []
        for k in range(len(selects) // B):
            copy = input_copies[k * B * R:(k + 1) * B * R]
            chosen = Cat(*(selects[k * B + b].replicate(R) & copy[b * R:(b + 1) * R]
                           for b in range(B)))
            word = Signal(R, name=f"plane_value_b{k}", attrs={REPLICA_ATTR: 1}, reset_less=True)
            m.d.sync += word.eq(or_words(chosen, B, R))
            planes.append(word)
            count_copy = count_copies[k * B * count_bits:(k + 1) * B * count_bits]
            chosen = Cat(*(selects[k * B + b].replicate(count_bits)
                           & count_copy[b * count_bits:(b + 1) * count_bits] for b in range(B)))
            count = Signal(count_bits, name=f"plane_ones_b{k}", attrs={REPLICA_ATTR: 1},
                           reset_less=True)
            m.d.sync += count.eq(or_words(chosen, B, count_bits))
            ones.append(count)
        m.d.comb += [self.plane.eq(Cat(*planes)), self.plane_ones.eq(Cat(*ones))]
        return m
