"""The engine's results (docs/ENGINE.md sections 3 and 7): the argmax over the last
layer's scores ACC + CORR with the lowest index among equal maxima, the class of every
image (region RESULT), and the last image's last-layer ACC and scores (LAST_ACC,
LAST_SCORE).

The sequencer presents one class per cycle (``compare``); its score is formed here from
the ACC and CORR lanes of the macro's memories, written to the LAST memory and compared
with the best so far. RESULT and LAST_* are memories: one write port for the sequencer,
one read port for the bus (RESULT is readable while the engine runs).

The argmax is a two-stage pipeline, so that no path runs from the lane's choice among P
words to the best-score registers: in the presented cycle the lane's ACC word and its
score ACC + CORR are registered, and the next cycle compares that score with the best,
writes LAST and updates the best. No cycle is added: the last class of a column tile is
compared in the cycle after the scan, the result write (whose class is the winner of that
compare when it wins) or the next column tile's RUN, which the argmax does not touch.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from models.engine_params import EngineRegion
from models.params import BUS_DATA_BITS

from .engine_front_end import engine_access_layout, engine_fields
from .logic import clog2, select_packed

__all__ = ["ResultBuffer"]


def class_bits(ep):
    """Bits of a class index (a neuron of a layer of up to max_width)."""
    return max(1, clog2(ep.max_width))


class ResultBuffer(wiring.Component):
    """Argmax, RESULT memory and LAST_ACC / LAST_SCORE memory.

    Parameters
    ----------
    ep : EngineParams

    Members
    -------
    access : In(engine_access_layout(ep))
        The bus access in the cycle it acts in (RESULT, LAST_ACC, LAST_SCORE reads).
    compare : In(1)
        A scan cycle: class ``neuron`` (lane ``lane`` of the macro's words) is scored; it
        is compared with the best, and written to LAST, in the cycle after.
    first : In(1)
        With ``compare``: the image's first class (the best so far is forgotten).
    lane : In(max(1, ceil(log2 P)))
    neuron : In(max(1, ceil(log2 max_width)))
    acc_lanes, corr_lanes : In(P * A)
        The macro's ACC word and the bank's threshold words (CORR), P lanes.
    result_write : In(1)
        The class of the image (the best after its last compare, which may be the compare
        of this cycle) is written to ``slot``.
    slot : In(max(1, ceil(log2 image_slots)))
    answer : Out(32)
        The word of a RESULT, LAST_ACC or LAST_SCORE read, in the ack's cycle.
    """

    def __init__(self, ep):
        self._ep = ep
        p = ep.macro
        P, A = p.cols_per_cycle, p.acc_bits
        super().__init__({
            "access": In(engine_access_layout(ep)),
            "compare": In(1),
            "first": In(1),
            "lane": In(max(1, clog2(P))),
            "neuron": In(class_bits(ep)),
            "acc_lanes": In(P * A),
            "corr_lanes": In(P * A),
            "result_write": In(1),
            "slot": In(max(1, clog2(ep.image_slots))),
            "answer": Out(BUS_DATA_BITS),
        })

    def elaborate(self, platform):
        ep, p = self._ep, self._ep.macro
        P, A = p.cols_per_cycle, p.acc_bits
        m = Module()
        access = self.access
        read = access.valid & ~access.we
        lane_bits = clog2(P)

        # Stage 1 (the presented cycle): the lane's words and the score into registers.
        acc = select_packed(m, self.lane[:lane_bits], self.acc_lanes, P, A, "scan_acc")
        corr = select_packed(m, self.lane[:lane_bits], self.corr_lanes, P, A, "scan_corr")
        acc_q = Signal(A, name="scored_acc")
        score_q = Signal(signed(A + 1), name="scored_score")
        compare_q = Signal(name="scored_compare")
        first_q = Signal(name="scored_first")
        neuron_q = Signal(class_bits(ep), name="scored_neuron")
        m.d.sync += [acc_q.eq(acc), score_q.eq(acc.as_signed() + corr.as_signed()),
                     compare_q.eq(self.compare), first_q.eq(self.first),
                     neuron_q.eq(self.neuron)]
        # Stage 2 (the cycle after): the compare with the best so far.
        best = Signal(signed(A + 1), name="best_score")
        best_class = Signal(class_bits(ep), name="best_class")
        wins = Signal(name="scored_wins")
        m.d.comb += wins.eq(compare_q & (first_q | (score_q > best)))
        with m.If(wins):
            m.d.sync += [best.eq(score_q), best_class.eq(neuron_q)]
        # The image's class: the last compare may take place in the result write's cycle.
        image_class = Signal(class_bits(ep), name="image_class")
        m.d.comb += image_class.eq(Mux(wins, neuron_q, best_class))

        results = Memory(shape=class_bits(ep), depth=ep.image_slots, init=[])
        last = Memory(shape=2 * A + 1, depth=ep.max_width, init=[])
        m.submodules.result_mem = results
        m.submodules.last_mem = last
        result_w, result_r = results.write_port(), results.read_port()
        last_w, last_r = last.write_port(), last.read_port()
        slot_bits, neuron_bits = clog2(ep.image_slots), clog2(ep.max_width)
        bus_slot = engine_fields(ep, EngineRegion.RESULT, access.offset)["image_slot"]
        bus_neuron = engine_fields(ep, EngineRegion.LAST_ACC, access.offset)["neuron"]
        m.d.comb += [result_w.en.eq(self.result_write), result_w.data.eq(image_class),
                     last_w.en.eq(compare_q), last_w.data.eq(Cat(acc_q, score_q))]
        if slot_bits:
            m.d.comb += [result_w.addr.eq(self.slot[:slot_bits]), result_r.addr.eq(bus_slot)]
        if neuron_bits:
            m.d.comb += [last_w.addr.eq(neuron_q[:neuron_bits]), last_r.addr.eq(bus_neuron)]

        reads = {n: Signal(name=f"{name}_read_q") for n, name in
                 ((EngineRegion.RESULT, "result"), (EngineRegion.LAST_ACC, "last_acc"),
                  (EngineRegion.LAST_SCORE, "last_score"))}
        m.d.sync += [flag.eq(read & access.regions[n]) for n, flag in reads.items()]
        last_acc = Signal(BUS_DATA_BITS, name="last_acc_word")
        last_score = Signal(BUS_DATA_BITS, name="last_score_word")
        stored = last_r.data[A:].as_signed()
        if A + 1 > BUS_DATA_BITS:
            # A 33-bit score clamped to 32 bits: its top two bits differ when it is out
            # of range, and the top one is its sign.
            top, next_bit = stored[BUS_DATA_BITS], stored[BUS_DATA_BITS - 1]
            stored = Mux(top == next_bit, stored[:BUS_DATA_BITS],
                         Mux(top, 1 << (BUS_DATA_BITS - 1), (1 << (BUS_DATA_BITS - 1)) - 1))
        m.d.comb += [last_acc.eq(last_r.data[:A].as_signed()), last_score.eq(stored)]
        m.d.comb += self.answer.eq(
            Mux(reads[EngineRegion.RESULT], result_r.data, 0)
            | Mux(reads[EngineRegion.LAST_ACC], last_acc, 0)
            | Mux(reads[EngineRegion.LAST_SCORE], last_score, 0))
        return m
