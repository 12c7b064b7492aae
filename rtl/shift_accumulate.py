"""Shift-accumulate: combines the bit-plane readouts of a RUN into the accumulators.

Implements section 2 of ``docs/ARCHITECTURE.md`` (golden model:
``models/macro.py: shift_accumulate``). The tile sum is a register formed Horner-style,
most significant plane first; the accumulator update and its saturation are
combinational, so the controller writes ``acc`` back in the cycle after the last plane.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from models.params import MacroParams

from .compute_array import add_same_width, lane_sign_fills

__all__ = ["ShiftAccumulate"]


class ShiftAccumulate(wiring.Component):
    """Horner tile register and saturating accumulator update for ``P`` lanes.

    Per lane ``i``:

    * ``tile`` register, ``signed(W + B)``, reset 0 (power-on 0 and no reset with
      ``pipeline`` = 4, the FPGA-clock build): ``clear[i]`` loads 0; otherwise
      ``step[i]`` loads ``2 * tile + readout`` (``clear`` wins when both are high). Within a
      RUN (at most B steps after a clear) the tile never overflows; a longer sequence
      wraps modulo ``2^(W+B)``.
    * ``acc = clamp((acc_prev if accumulate[i] else 0) + tile, -2^(A-1), 2^(A-1) - 1)``,
      combinational, and ``saturated[i]`` is 1 when the clamp changed the value.

    Parameters
    ----------
    p : MacroParams
        Macro parameters: ``cols_per_cycle`` P, ``readout_bits`` W, ``input_bits`` B,
        ``acc_bits`` A.

    Members
    -------
    readout : In(ArrayLayout(signed(W), P))
        The compute array's readout of the current plane.
    clear : In(unsigned(P))
        Bit ``i``: lane ``i``'s tile := 0 on the next clock edge.
    step : In(unsigned(P))
        Bit ``i``: lane ``i``'s tile := 2 * tile + readout on the next clock edge (unless
        ``clear``).
    acc_prev : In(ArrayLayout(signed(A), P))
        Accumulator before the command.
    accumulate : In(unsigned(P))
        Bit ``i``: the command's ACCUMULATE bit for lane ``i``: add the tile to
        ``acc_prev`` instead of to 0.

    The controls are one bit per lane so that the macro can drive them from copies of
    its registers, one per block of lanes (``rtl/replicas.py``); it drives every lane
    alike.
    tile : Out(ArrayLayout(signed(W + B), P))
        The tile register.
    acc : Out(ArrayLayout(signed(A), P))
        The saturated accumulator update.
    saturated : Out(unsigned(P))
        Bit ``i``: the clamp changed lane ``i``'s value.
    """

    def __init__(self, p):
        if not isinstance(p, MacroParams):
            raise TypeError(f"p must be a MacroParams, not {p!r}")
        self._p = p
        P, W, A = p.cols_per_cycle, p.readout_bits, p.acc_bits
        super().__init__({
            "readout": In(data.ArrayLayout(signed(W), P)),
            "clear": In(unsigned(P)),
            "step": In(unsigned(P)),
            "acc_prev": In(data.ArrayLayout(signed(A), P)),
            "accumulate": In(unsigned(P)),
            "tile": Out(data.ArrayLayout(signed(p.tile_bits), P)),
            "acc": Out(data.ArrayLayout(signed(A), P)),
            "saturated": Out(unsigned(P)),
        })

    @property
    def params(self):
        """The :class:`MacroParams` this block was built from."""
        return self._p

    def elaborate(self, platform):
        p = self._p
        P, W, T, A = p.cols_per_cycle, p.readout_bits, p.tile_bits, p.acc_bits
        acc_min, acc_max = -(1 << (A - 1)), (1 << (A - 1)) - 1
        m = Module()

        # Each step is one assignment for all lanes (lane-major) whose per-lane parts are
        # plain expressions: a signal and an assignment per lane would cost the
        # conversion more than the logic itself. Values used more than once are signals
        # (Amaranth copies an expression at each use).
        def lane(value, width, i):
            return value[i * width:(i + 1) * width]

        tile = self.tile.as_value()
        if p.pipeline >= 4:
            # The FPGA-clock build keeps the tile off the reset net, which would otherwise
            # reach every lane of the die: a RUN clears it before its first step.
            tile = Signal(P * T, name="tile_register", reset_less=True)
            m.d.comb += self.tile.eq(tile)
        readout = self.readout.as_value()
        acc_prev = self.acc_prev.as_value()

        # tile := 2 * tile + readout modulo 2^T; 2 * tile is a shift that drops the MSB.
        readout_fill = lane_sign_fills(m, P, [(readout, W, T - W)], "readout_sign")
        stepped = Cat(*(
            add_same_width(Cat(Const(0, 1), lane(tile, T, i)[:-1]),
                           Cat(lane(readout, W, i), readout_fill(0, i))).as_unsigned()
            for i in range(P)))
        # Per lane, as one assignment: keep, step or clear.
        step_bits = Cat(*(self.step[i].replicate(T) for i in range(P)))
        keep_bits = Cat(*((~self.step[i] & ~self.clear[i]).replicate(T) for i in range(P)))
        m.d.sync += tile.eq((stepped & step_bits & ~Cat(*(self.clear[i].replicate(T)
                                                          for i in range(P))))
                            | (tile & keep_bits))

        # The sum in A + 1 bits holds every (acc_prev + tile): out of the A-bit range
        # exactly when its two top bits differ.
        prev = Signal(P * A)
        m.d.comb += prev.eq(acc_prev & Cat(*(self.accumulate[i].replicate(A) for i in range(P))))
        fill = lane_sign_fills(m, P, [(prev, A, 1), (tile, T, A + 1 - T)], "sum_sign")
        total = Signal(P * (A + 1))
        m.d.comb += total.eq(Cat(*(
            add_same_width(Cat(lane(prev, A, i), fill(0, i)),
                           Cat(lane(tile, T, i), fill(1, i))).as_unsigned()
            for i in range(P))))
        top = Cat(*(total[(A + 1) * i + A] for i in range(P)))
        below_top = Cat(*(total[(A + 1) * i + A - 1] for i in range(P)))
        m.d.comb += self.saturated.eq(top ^ below_top)
        m.d.comb += self.acc.eq(Cat(*(
            Mux(self.saturated[i],
                Mux(total[(A + 1) * i + A], Const(acc_min, signed(A)), Const(acc_max, signed(A))),
                lane(total, A + 1, i)[:A].as_signed())
            for i in range(P))))
        return m
