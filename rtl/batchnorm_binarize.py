"""Batchnorm-binarize: one output bit per column from its accumulator.

Implements section 3 of ``docs/ARCHITECTURE.md`` (golden model:
``models/macro.py: binarize``). Batch norm is folded into an integer threshold and a
flip bit per column, so the block is a signed comparison and an XOR.

With a pipelined readout (``p.pipeline`` > 0, built for FPGA clock rates) the block
splits the comparison so that the write-back cycle holds one adder instead of the
accumulator's adder, clamp and comparator in series: while the planes run it registers
``margin = acc_base - theta`` (``acc_base`` is the accumulator the RUN adds to: ACC, or 0
without ACCUMULATE), and in the write-back cycle ``y = (tile + margin >= 0) XOR flip``,
which equals ``(clamp(acc_base + tile) >= theta) XOR flip`` for every in-range theta
except the lowest, ``-2^(A-1)``, where the clamped sum always reaches theta (a registered
flag covers it).
"""

from amaranth.hdl import Cat, Const, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from models.params import MacroParams

from .compute_array import add_same_width, lane_sign_fills

__all__ = ["BatchnormBinarize"]


class BatchnormBinarize(wiring.Component):
    """Combinational ``y[i] = (acc[i] >= theta[i]) XOR flip[i]`` for ``P`` lanes.

    Ties (``acc == theta``) give 1 before the flip.

    Parameters
    ----------
    p : MacroParams
        Macro parameters: ``cols_per_cycle`` P and ``acc_bits`` A.

    Members
    -------
    acc : In(ArrayLayout(signed(A), P))
        ``pipeline`` = 0 only: accumulator of each lane.
    acc_base : In(ArrayLayout(signed(A), P))
        ``pipeline`` > 0 only: the accumulator each lane's tile is added to.
    tile : In(ArrayLayout(signed(W + B), P))
        ``pipeline`` > 0 only: each lane's shift-accumulated tile sum.
    capture : In(unsigned(P))
        ``pipeline`` > 0 only: bit ``i``: register lane ``i``'s ``acc_base - theta`` at
        this clock edge (one bit per lane, so that the macro can drive it from copies
        of a register, see ``rtl/replicas.py``).
    theta : In(ArrayLayout(signed(A), P))
        Folded batch-norm threshold of each lane.
    flip : In(unsigned(P))
        Bit ``i``: invert lane ``i`` (negative batch-norm scale).
    y : Out(unsigned(P))
        Bit ``i``: the binarized output of lane ``i``; with ``pipeline`` > 0, of
        ``clamp(acc_base + tile)`` with ``acc_base`` and ``theta`` as last captured.
    """

    def __init__(self, p):
        if not isinstance(p, MacroParams):
            raise TypeError(f"p must be a MacroParams, not {p!r}")
        self._p = p
        P, A = p.cols_per_cycle, p.acc_bits
        if p.pipeline:
            members = {"acc_base": In(data.ArrayLayout(signed(A), P)),
                       "tile": In(data.ArrayLayout(signed(p.tile_bits), P)),
                       "capture": In(unsigned(P))}
        else:
            members = {"acc": In(data.ArrayLayout(signed(A), P))}
        super().__init__({
            **members,
            "theta": In(data.ArrayLayout(signed(A), P)),
            "flip": In(unsigned(P)),
            "y": Out(unsigned(P)),
        })

    @property
    def params(self):
        """The :class:`MacroParams` this block was built from."""
        return self._p

    def elaborate(self, platform):
        p = self._p
        P, A, T = p.cols_per_cycle, p.acc_bits, p.tile_bits
        m = Module()
        if not p.pipeline:
            at_least = Cat(*(self.acc[i] >= self.theta[i] for i in range(P)))
            m.d.comb += self.y.eq(at_least ^ self.flip)
            return m

        def lane(value, width, i):
            return value[i * width:(i + 1) * width]

        # margin = acc_base - theta = acc_base + ~theta + 1 in A + 1 bits (exact: both
        # are A-bit values), equal-width operands and a 1-bit constant (Verilator -Wall).
        base, theta = self.acc_base.as_value(), self.theta.as_value()
        not_theta = Signal(P * A, name="not_theta")
        m.d.comb += not_theta.eq(~theta)
        fill = lane_sign_fills(m, P, [(base, A, 1), (not_theta, A, 1)], "margin_sign")
        margin_now = Cat(*(
            (add_same_width(Cat(lane(base, A, i), fill(0, i)),
                            Cat(lane(not_theta, A, i), fill(1, i))).as_unsigned()
             + Const(1, 1))[:A + 1]
            for i in range(P)))
        lowest_now = Cat(*(lane(theta, A, i)[-1] & ~lane(theta, A, i)[:-1].any()
                           for i in range(P)))
        # The FPGA-clock build (L = 4) keeps them off the reset net, which would
        # otherwise reach every lane: both are captured before every use.
        margin = Signal(P * (A + 1), name="margin", reset_less=p.pipeline >= 4)
        lowest = Signal(P, name="theta_lowest", reset_less=p.pipeline >= 4)
        # Per lane, as one assignment each.
        take = Cat(*(self.capture[i].replicate(A + 1) for i in range(P)))
        m.d.sync += [margin.eq((margin_now & take) | (margin & ~take)),
                     lowest.eq((lowest_now & self.capture) | (lowest & ~self.capture))]

        # tile + margin >= 0, in A + 2 bits (exact).
        tile = self.tile.as_value()
        fill2 = lane_sign_fills(m, P, [(tile, T, A + 2 - T), (margin, A + 1, 1)], "cmp_sign")
        negative = Cat(*(
            add_same_width(Cat(lane(tile, T, i), fill2(0, i)),
                           Cat(lane(margin, A + 1, i), fill2(1, i)))[-1]
            for i in range(P)))
        m.d.comb += self.y.eq((~negative | lowest) ^ self.flip)
        return m
