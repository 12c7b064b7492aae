"""Batchnorm-binarize: one output bit per column from its accumulator.

Implements section 3 of ``docs/ARCHITECTURE.md`` (golden model:
``models/macro.py: binarize``). Batch norm is folded into an integer threshold and a
flip bit per column, so the block is a signed comparison and an XOR.
"""

from amaranth.hdl import Cat, Module, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from models.params import MacroParams

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
        Accumulator of each lane.
    theta : In(ArrayLayout(signed(A), P))
        Folded batch-norm threshold of each lane.
    flip : In(unsigned(P))
        Bit ``i``: invert lane ``i`` (negative batch-norm scale).
    y : Out(unsigned(P))
        Bit ``i``: the binarized output of lane ``i``.
    """

    def __init__(self, p):
        if not isinstance(p, MacroParams):
            raise TypeError(f"p must be a MacroParams, not {p!r}")
        self._p = p
        P, A = p.cols_per_cycle, p.acc_bits
        super().__init__({
            "acc": In(data.ArrayLayout(signed(A), P)),
            "theta": In(data.ArrayLayout(signed(A), P)),
            "flip": In(unsigned(P)),
            "y": Out(unsigned(P)),
        })

    @property
    def params(self):
        """The :class:`MacroParams` this block was built from."""
        return self._p

    def elaborate(self, platform):
        P = self._p.cols_per_cycle
        m = Module()
        at_least = Cat(*(self.acc[i] >= self.theta[i] for i in range(P)))
        m.d.comb += self.y.eq(at_least ^ self.flip)
        return m
