"""A register slice for the Wishbone classic bus between the board's masters and the macro.

The fully parallel ECP5 build spreads the macro's lanes, and with them its bus
registers, over much of the die, while the UART bridge sits in one place. Without a
slice the bridge's logic ended on wires from the macro's ack and read data (the bridge's
state, its silence timer and the timeout LED, 11-15 ns at 100 MHz). One slice only moved
the long wire to between the bridge and the slice; the board core therefore chains two,
one placed with the bridge and one with the macro, so that the wire across the die runs
from register to register.

Each slice adds two cycles to an access: the request reaches the slave a cycle after
the master presents it, and the slave's ack and read data reach the master a cycle after
the slave gives them. Masters wait for ack, so none of them needs to know.

A master that drops ``cyc`` before its ack abandons the access, as the macro's bus
allows (docs/ARCHITECTURE.md section 6): the slice still completes it at the slave
(which performs it, as the macro would) and drops only the ack, so that a later access
of the master never takes the abandoned one's answer.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl import wishbone

__all__ = ["WishboneSlice"]


class WishboneSlice(wiring.Component):
    """Registers a Wishbone classic access on its way to the slave and back.

    An access the master presents in cycle t (``cyc & stb``) is presented to the slave
    from registers in cycles t+1 .. u, where u is the cycle of the slave's ack; the
    master sees ack, with the read data registered in cycle u, in cycle u+1 only. The
    slice ignores the master in that cycle (it holds ``stb`` until the ack it sees), so
    each master access reaches the slave exactly once; a new access may start in the
    cycle after. The slave must acknowledge every access (the macro does). An access
    whose master drops ``cyc`` before the ack is completed at the slave and not
    acknowledged, and ``ack`` is never high while ``cyc`` is low.

    Parameters
    ----------
    addr_bits : int
        Width of the word address, at least 1.

    Members
    -------
    up : In(wishbone.Signature(addr_bits))
        From the master.
    down : Out(wishbone.Signature(addr_bits))
        To the slave.
    """

    def __init__(self, addr_bits):
        # wishbone.Signature checks addr_bits (TypeError, ValueError).
        signature = wishbone.Signature(addr_bits)
        super().__init__({"up": In(signature), "down": Out(signature)})

    def elaborate(self, platform):
        m = Module()
        up, down = self.up, self.down

        pending = Signal()        # the access is presented to the slave
        answered = Signal()       # the master sees the ack
        live = Signal()           # the master has held cyc since its access
        adr = Signal.like(up.adr, name="adr_q")
        dat_w = Signal.like(up.dat_w, name="dat_w_q")
        sel = Signal.like(up.sel, name="sel_q")
        we = Signal(name="we_q")
        dat_r = Signal.like(up.dat_r, name="dat_r_q")

        with m.If(answered):
            # The master drops stb at the end of this cycle (or starts its next access).
            m.d.sync += answered.eq(0)
        with m.Elif(pending):
            with m.If(down.ack):
                m.d.sync += [pending.eq(0), answered.eq(1), dat_r.eq(down.dat_r)]
        with m.Elif(up.cyc & up.stb):
            m.d.sync += [pending.eq(1), live.eq(1)]
        with m.If(~up.cyc):
            m.d.sync += live.eq(0)
        # The request is taken in every cycle without one pending (a master holds it
        # from the start of its access to the ack): its registers' only enable is then
        # a flip-flop, and the master's outputs reach them as plain wires.
        with m.If(~pending):
            m.d.sync += [adr.eq(up.adr), dat_w.eq(up.dat_w), sel.eq(up.sel), we.eq(up.we)]

        m.d.comb += [
            down.adr.eq(adr), down.dat_w.eq(dat_w), down.sel.eq(sel), down.we.eq(we),
            down.cyc.eq(pending), down.stb.eq(pending),
            up.ack.eq(answered & live & up.cyc), up.dat_r.eq(dat_r),
        ]
        return m
