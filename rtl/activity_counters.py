"""Activity counters: the macro's events as the energy model counts them.

Built when ``MacroParams.counters`` is set; read as CSRs PLANE_OPS, CONVERSIONS,
CAL_READS and BUS_ACCESSES (``docs/ARCHITECTURE.md`` section 6) and defined in
``docs/ENERGY.md`` (golden model: ``models.macro.MacroModel.events.counters()``).
"""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from models.energy import COUNTER_BITS

__all__ = ["ActivityCounters"]


class ActivityCounters(wiring.Component):
    """Four saturating event counters, cleared together.

    Parameters
    ----------
    p : MacroParams
    bits : int
        Counter width (the contract's 32; smaller widths let tests reach saturation).

    Members
    -------
    plane_cycle : In(1)
        A plane cycle of a RUN (one group, one plane).
    calibration_read : In(1)
        The last cycle of a calibration read of a group.
    access : In(1)
        A bus access, faulty or abandoned ones included, in the cycle it acts in (so that
        a read of BUS_ACCESSES answers the count of the accesses before it).
    clear : In(1)
        Zero every counter at the clock edge (wins over a count in the same cycle).
    plane_operations, column_conversions, calibration_reads, bus_accesses : Out(32)
        The counts, saturating at ``2^32 - 1``: +1 per plane cycle; +P per plane cycle
        and per calibration read; +1 per calibration read; +1 per access.
    """

    def __init__(self, p, bits=COUNTER_BITS):
        if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
            raise ValueError(f"bits must be a positive integer, not {bits!r}")
        self._p, self._bits = p, bits
        super().__init__({
            "plane_cycle": In(1),
            "calibration_read": In(1),
            "access": In(1),
            "clear": In(1),
            "plane_operations": Out(bits),
            "column_conversions": Out(bits),
            "calibration_reads": Out(bits),
            "bus_accesses": Out(bits),
        })

    def elaborate(self, platform):
        m = Module()
        bits = self._bits
        full = 2 ** bits - 1
        P = self._p.cols_per_cycle
        for name, event, step in (
                ("plane_operations", self.plane_cycle, 1),
                ("column_conversions", self.plane_cycle | self.calibration_read, P),
                ("calibration_reads", self.calibration_read, 1),
                ("bus_accesses", self.access, 1)):
            count = Signal(bits, name=name)
            # Saturating: a count within `step` of the maximum goes to the maximum. Below it,
            # count + step is count - (2**bits - step) modulo 2**bits: a full-width constant,
            # which the Verilog keeps at the counter's width (a small one, like 5'h12 for
            # P = 18, is a Verilator WIDTHEXPAND).
            near_full = Signal(name=f"{name}_near_full")
            m.d.comb += near_full.eq(count > Const(full - step, bits))
            with m.If(self.clear):
                m.d.sync += count.eq(0)
            with m.Elif(event):
                m.d.sync += count.eq(Mux(near_full, Const(full, bits),
                                         (count - Const(full + 1 - step, bits))[:bits]))
            m.d.comb += getattr(self, name).eq(count)
        return m
