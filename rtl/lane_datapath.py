"""The P lanes of the macro: compute array, shift-accumulate, batchnorm-binarize and the
calibration FSM, with what joins them (``docs/ARCHITECTURE.md`` sections 1-4).

The column memories' words of the current group come in (weights, compensation bits,
offsets, gains, thresholds, the accumulator), with the input plane and the sequencer's
lane strobes; what goes out is what the group stores: the new ACC and OUT, the search's
COMP and CALFLAG results, and the flags for STATUS.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from models.params import GAIN_BITS, QSHIFT_BITS

from .batchnorm_binarize import BatchnormBinarize
from .calibration_fsm import CalibrationFSM
from .compute_array import ComputeArray, count_bits, lane_popcount_planes
from .logic import any_per_block
from .pipeline_timing import PipelineTiming
from .replicas import LANE_BLOCK, lane_blocks
from .shift_accumulate import ShiftAccumulate

__all__ = ["LaneDatapath"]


class LaneDatapath(wiring.Component):
    """The compute blocks of one column group's P lanes and their glue.

    Parameters
    ----------
    p : MacroParams

    Members
    -------
    plane : In(lane_blocks(P) * R)
        The input plane, one copy per block of 8 lanes (0: rows off).
    plane_ones : In(lane_blocks(P) * count_bits)
        With copy trees: each block's plane's ones count, with the plane.
    weights, stuck_mask, stuck_value : In(P * R)
        The group's WEIGHT (and STUCK_*) words.
    comp_bits : In(P * K)
        The group's COMP word: each lane's compensation cells.
    offset : In(P * W), gain : In(P * 8)
        The group's OFFSET and GAIN words (when built).
    theta : In(P * A)
        The group's THRESH word.
    acc : In(P * A)
        The group's ACC word.
    flip : In(P)
        The group's FLIP bits.
    sat : In(W - 1), qshift : In(4)
        When ``readout`` is built.
    table_addr, table_wdata, table_we, table_rdata
        The transfer table's bus port (when ``table`` is built).
    calibrating : In(P)
        Per lane: the array's compensation comes from the search, not from COMP.
    calibration_start : In(1)
        Begin a group's search.
    calibrated : In(1)
        The verification read: the search's results and flags are valid.
    tile_clear, step, accumulate, margin_capture, margin_capture_late : In(P)
        The shift-accumulator's and the threshold margin's lane strobes (see
        :class:`~rtl.sequencer.Sequencer`).
    store, store_result : In(P)
        Lanes whose ACC and OUT are stored, and whether they store the RUN's result.
    acc_result : Out(P * A)
        The ACC word to store (0 in lanes that do not store a result).
    out_bits : Out(P)
        The OUT bits to store.
    acc_saturated : Out(1)
        Some lane's accumulator saturated (with copy trees: stored lanes, two cycles
        after the store).
    calibration_done : Out(1)
        The search's verification read.
    calibration_read : Out(1)
        The last cycle of each search or verification read.
    comp_result : Out(P * K)
        The search's compensation cells, for COMP (a cycle after the verification read
        with a pipeline).
    flags : Out(P), any_flag : Out(1)
        CALFLAG of the lanes, and their OR (as ``comp_result``).
    """

    def __init__(self, p):
        self._p = p
        self._timing = timing = PipelineTiming.of(p.pipeline)
        R, P, K, W, A = p.rows, p.cols_per_cycle, p.comp_rows, p.readout_bits, p.acc_bits
        blocks = lane_blocks(P)
        members = {
            "plane": In(blocks * R),
            "weights": In(P * R),
            "comp_bits": In(P * K),
            "theta": In(P * A),
            "acc": In(P * A),
            "flip": In(P),
            "calibrating": In(P),
            "calibration_start": In(1),
            "calibrated": In(1),
            "tile_clear": In(P),
            "step": In(P),
            "accumulate": In(P),
            "store": In(P),
            "store_result": In(P),
            "acc_result": Out(P * A),
            "out_bits": Out(P),
            "acc_saturated": Out(1),
            "calibration_done": Out(1),
            "calibration_read": Out(1),
            "comp_result": Out(P * K),
            "flags": Out(P),
            "any_flag": Out(1),
        }
        if timing.copy_trees:
            members["plane_ones"] = In(blocks * count_bits(R))
        if p.has("stuck"):
            members.update(stuck_mask=In(P * R), stuck_value=In(P * R))
        if p.has("offset"):
            members["offset"] = In(P * W)
        if p.has("gain"):
            members["gain"] = In(P * GAIN_BITS)
        if p.has("readout"):
            members.update(sat=In(W - 1), qshift=In(QSHIFT_BITS))
        if p.has("table"):
            members.update(table_addr=In(W), table_wdata=In(signed(W)), table_we=In(1),
                           table_rdata=Out(signed(W)))
        if timing.pipelined:
            members["margin_capture"] = In(P)
        if timing.copy_trees:
            members["margin_capture_late"] = In(P)
        super().__init__(members)

    def elaborate(self, platform):
        p, timing = self._p, self._timing
        P, K, A = p.cols_per_cycle, p.comp_rows, p.acc_bits
        m = Module()
        m.submodules.array = array = ComputeArray(p)
        m.submodules.shift_acc = shift_acc = ShiftAccumulate(p)
        m.submodules.binarize = binarize = BatchnormBinarize(p)
        m.submodules.calibration = calibration = CalibrationFSM(p)

        # 2n - K for n = popcount of each lane's COMP bits, all lanes bit-sliced: n's bit
        # planes (K is a power of two, so they are complete), then 2 (n - K/2), whose
        # bits are 0, n's low k-1 bits, ~n[k-1] and ~(n[k] ^ n[k-1]) for K = 2^k (n - K/2
        # is n + 3 * 2^(k-1) modulo 2^(k+1)).
        n_planes, _ = lane_popcount_planes(m, self.comp_bits, P, K, "stored_ones")
        k = len(n_planes) - 1
        half_bit = Signal(P, name="stored_half_bit")
        sign_bit = Signal(P, name="stored_sign_bit")
        m.d.comb += [half_bit.eq(~n_planes[k - 1]),
                     sign_bit.eq(~(n_planes[k] ^ n_planes[k - 1]))]
        comp_planes = n_planes[:k - 1] + [half_bit, sign_bit]
        stored_comp = Signal(P * p.comp_bits)
        m.d.comb += stored_comp.eq(Cat(*(Cat(Const(0, 1), *(plane[i] for plane in comp_planes))
                                         for i in range(P))))
        # The array's compensation comes from the search while calibrating: a
        # multiplexer in every lane.
        search_comp, comp_w = calibration.comp.as_value(), p.comp_bits
        m.d.comb += array.comp.eq(Cat(*(
            Mux(self.calibrating[i], search_comp[i * comp_w:(i + 1) * comp_w],
                stored_comp[i * comp_w:(i + 1) * comp_w]) for i in range(P))))

        m.d.comb += [
            array.plane.eq(self.plane),
            array.weights.eq(self.weights),
            calibration.readout.eq(array.readout),
            calibration.start.eq(self.calibration_start),
            shift_acc.readout.eq(array.readout),
            shift_acc.step.eq(self.step),
            shift_acc.clear.eq(self.tile_clear),
            binarize.theta.eq(self.theta),
            binarize.flip.eq(self.flip),
            self.calibration_done.eq(calibration.done),
            self.calibration_read.eq(calibration.read_done),
        ]
        if timing.copy_trees:
            m.d.comb += array.plane_ones.eq(self.plane_ones)
        if p.has("stuck"):
            m.d.comb += [array.stuck_mask.eq(self.stuck_mask),
                         array.stuck_value.eq(self.stuck_value)]
        if p.has("offset"):
            m.d.comb += array.offset.eq(self.offset)
        if p.has("gain"):
            m.d.comb += array.gain.eq(self.gain)
        if p.has("readout"):
            m.d.comb += [array.sat.eq(self.sat), array.qshift.eq(self.qshift)]
        if p.has("table"):
            m.d.comb += [array.table_addr.eq(self.table_addr),
                         array.table_wdata.eq(self.table_wdata),
                         array.table_we.eq(self.table_we),
                         self.table_rdata.eq(array.table_rdata)]

        if timing.pipelined:
            # The threshold margin is captured while the planes run: the write-back then
            # adds it to the tile instead of adding, clamping and comparing.
            acc_base = self.acc & Cat(*(self.accumulate[i].replicate(A) for i in range(P)))
            m.d.comb += binarize.tile.eq(shift_acc.tile)
            if timing.copy_trees:
                # The accumulator operand is captured in each lane first: the write-back
                # and the margin, a cycle after it (still before the write-back), then
                # start at a register of the lane.
                base_q = Signal(P * A, name="acc_base_q", reset_less=True)
                loads = Cat(*(self.margin_capture[i].replicate(A) for i in range(P)))
                m.d.sync += base_q.eq((acc_base & loads) | (base_q & ~loads))
                m.d.comb += [shift_acc.acc_prev.eq(base_q),
                             shift_acc.accumulate.eq(Const((1 << P) - 1, P)),
                             binarize.acc_base.eq(base_q),
                             binarize.capture.eq(self.margin_capture_late)]
            else:
                m.d.comb += [binarize.acc_base.eq(acc_base),
                             binarize.capture.eq(self.margin_capture)]
        if not timing.copy_trees:
            m.d.comb += [shift_acc.acc_prev.eq(self.acc), shift_acc.accumulate.eq(self.accumulate)]
        if not timing.pipelined:
            m.d.comb += binarize.acc.eq(shift_acc.acc)

        result = self.store_result
        m.d.comb += [self.acc_result.eq(shift_acc.acc.as_value()
                                        & Cat(*(result[i].replicate(A) for i in range(P)))),
                     self.out_bits.eq(binarize.y & result)]
        if timing.copy_trees:
            # STATUS.acc_sat two cycles after the write-back: each lane's flag into a
            # register (the accumulator's carry chain ends there), then an OR per block
            # of lanes.
            sat_lanes = Signal(P, name="acc_sat_lanes")
            m.d.sync += sat_lanes.eq(shift_acc.saturated & self.store & result)
            sat_blocks = Signal(-(-P // LANE_BLOCK), name="acc_sat_blocks")
            m.d.sync += sat_blocks.eq(any_per_block(sat_lanes))
            m.d.comb += self.acc_saturated.eq(sat_blocks.any())
        else:
            m.d.comb += self.acc_saturated.eq(shift_acc.saturated.any())

        # The search's results: with a pipeline registered in the verification read, to
        # be stored in the write-back cycle.
        if timing.pipelined:
            therm_q = Signal(P * K, name="comp_result_q")
            m.d.sync += therm_q.eq(calibration.therm.as_value())
            flags_q = Signal(P, name="cal_flags_q")
            with m.If(self.calibrated):
                m.d.sync += flags_q.eq(calibration.flags)
            m.d.comb += [self.comp_result.eq(therm_q), self.flags.eq(flags_q)]
        else:
            m.d.comb += [self.comp_result.eq(calibration.therm.as_value()),
                         self.flags.eq(calibration.flags)]
        if timing.copy_trees:
            # The OR over the lanes in two steps: per block of lanes into a register with
            # the flags, then over the blocks.
            flag_blocks = Signal(-(-P // LANE_BLOCK), name="cal_flag_blocks")
            with m.If(self.calibrated):
                m.d.sync += flag_blocks.eq(any_per_block(calibration.flags))
            m.d.comb += self.any_flag.eq(flag_blocks.any())
        else:
            m.d.comb += self.any_flag.eq(self.flags.any())
        return m
