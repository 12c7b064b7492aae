"""UARTBone: a byte-stream to Wishbone bridge with LiteX's framing and a resync timeout.

The framing is LiteX's ``Stream2Wishbone`` (``litex/soc/cores/uart.py``), which LiteX's
host tools speak (``litex_server --uart``, ``litex.tools.remote.comm_uart.CommUART``).
Every frame starts with a command byte and a length byte, then a 32-bit *word* address
(big-endian; the host tools send the byte address divided by 4):

============  ===========  =========================================================
command       name         rest of the frame
============  ===========  =========================================================
``0x01``      write, incr  ``length`` data words (4 bytes each, big-endian) to
                           addresses ``addr, addr+1, ...``; no answer
``0x02``      read, incr   none; the bridge answers ``length`` words (big-endian) read
                           from ``addr, addr+1, ...``
``0x03``      write, fixed as 0x01, every word to ``addr``
``0x04``      read, fixed  as 0x02, every word from ``addr``
============  ===========  =========================================================

Every Wishbone access writes all four bytes (``sel`` = 0b1111).

Where this bridge differs from LiteX's (only on input LiteX's host tools never send):

* In the command state a byte that is not a command (not 1..4) is skipped, so that stray
  bytes between frames (line noise, a host that resynchronises) cost nothing; LiteX's
  bridge would take it as a command and swallow the next five bytes.
* A frame with length 0 performs no access and has no answer (LiteX's bridge would
  never finish such a frame before its timer fires).
* The timeout counts *silence*, not frame duration: when a frame is unfinished and
  nothing moves (no byte received, no byte sent, no Wishbone ack) for
  ``timeout_cycles`` cycles, the bridge abandons the frame (dropping ``cyc`` in the next
  cycle if an access is pending: the macro performs it and drops its ack) and waits for
  a new command. A host that lost bytes mid-frame therefore
  resynchronises by staying silent for longer than the timeout. LiteX's timer limits a
  whole frame to 100 ms, which also aborts long bursts at low baud rates.

A read burst must be answered before the next frame is sent: the bridge takes no byte
while it reads or answers, and the UART receiver holds only one byte. Write frames may
follow each other back to back.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from host.uartbone_protocol import ADDR_BYTES, DATA_BYTES, Command
from rtl import wishbone

__all__ = ["Command", "BridgeState", "UARTBone", "ADDR_BYTES", "DATA_BYTES"]



class BridgeState(enum.Enum, shape=3):
    """Phase of the bridge, exposed on its ``state`` port.

    Members
    -------
    COMMAND
        Idle: waiting for a command byte (other bytes are skipped).
    LENGTH
        Waiting for the length byte.
    ADDRESS
        Receiving the four address bytes.
    DATA
        Write frames: receiving the four bytes of the next data word.
    WRITE
        Wishbone write in progress.
    READ
        Wishbone read in progress.
    SEND
        Sending the four bytes of the word just read.
    """
    COMMAND = 0
    LENGTH = 1
    ADDRESS = 2
    DATA = 3
    WRITE = 4
    READ = 5
    SEND = 6


class UARTBone(wiring.Component):
    """Wishbone B4 classic master driven by UARTBone frames on a byte stream.

    Parameters
    ----------
    timeout_cycles : int
        Cycles of silence after which an unfinished frame is abandoned (at least 1).
        Pick it well above one byte time, e.g. 0.1 s worth of clock cycles.

    Members
    -------
    sink : In(stream.Signature(8))
        Bytes from the host (the UART receiver).
    source : Out(stream.Signature(8))
        Bytes to the host (the UART transmitter).
    bus : Out(wishbone.Signature(32))
        The Wishbone master port: 32-bit word address, 32-bit data, ``sel`` always
        0b1111.
    state : Out(BridgeState)
        Current phase.
    timeout : Out(1)
        One-cycle pulse: an unfinished frame was abandoned.
    """

    def __init__(self, timeout_cycles):
        if isinstance(timeout_cycles, bool) or not isinstance(timeout_cycles, int):
            raise TypeError(f"timeout_cycles must be an integer, not {timeout_cycles!r}")
        if timeout_cycles < 1:
            raise ValueError(f"timeout_cycles must be >= 1, not {timeout_cycles}")
        self._timeout_cycles = timeout_cycles
        super().__init__({
            "sink": In(stream.Signature(8)),
            "source": Out(stream.Signature(8)),
            "bus": Out(wishbone.Signature(8 * ADDR_BYTES)),
            "state": Out(BridgeState),
            "timeout": Out(1),
        })

    @property
    def timeout_cycles(self):
        return self._timeout_cycles

    def elaborate(self, platform):
        m = Module()
        state = self.state
        sink, source, bus = self.sink, self.source, self.bus

        fixed = Signal()                    # fixed-address burst (commands 3 and 4)
        is_read = Signal()
        length = Signal(8)
        words_done = Signal(8)              # words transferred so far in this frame
        address = Signal(8 * ADDR_BYTES)
        data = Signal(8 * DATA_BYTES)
        byte_index = Signal(range(max(ADDR_BYTES, DATA_BYTES)))
        last_word = Signal()
        m.d.comb += last_word.eq(words_done == length - 1)

        # Bytes shift in at the bottom, so the first (most significant) byte ends on top.
        take = Signal()
        m.d.comb += take.eq(sink.valid & sink.ready)
        m.d.comb += [
            bus.adr.eq(address),
            bus.dat_w.eq(data),
            bus.sel.eq(Const(0b1111, 4)),
            # Byte i of the answer is byte 3 - i of the word (big-endian); 3 - i is ~i on 2 bits.
            source.payload.eq(data.word_select(~byte_index, 8)),
        ]

        def next_word():
            """After a word: the next one, or the end of the frame."""
            m.d.sync += [words_done.eq(words_done + 1), byte_index.eq(0)]
            with m.If(~fixed):
                m.d.sync += address.eq(address + 1)
            with m.If(last_word):
                m.d.sync += state.eq(BridgeState.COMMAND)
            with m.Else():
                m.d.sync += state.eq(next_after_word)

        # Where a frame goes after its address and after each word but the last.
        next_after_word = Signal(BridgeState)
        m.d.comb += next_after_word.eq(BridgeState.DATA)
        with m.If(is_read):
            m.d.comb += next_after_word.eq(BridgeState.READ)

        with m.Switch(state):
            with m.Case(BridgeState.COMMAND):
                m.d.comb += sink.ready.eq(1)
                m.d.sync += [words_done.eq(0), byte_index.eq(0)]
                with m.If(sink.valid):
                    with m.Switch(sink.payload):
                        for cmd in Command.ALL:
                            with m.Case(cmd):
                                read = cmd in (Command.READ_INCR, Command.READ_FIXED)
                                fix = cmd in (Command.WRITE_FIXED, Command.READ_FIXED)
                                m.d.sync += [is_read.eq(read), fixed.eq(fix),
                                             state.eq(BridgeState.LENGTH)]
            with m.Case(BridgeState.LENGTH):
                m.d.comb += sink.ready.eq(1)
                with m.If(sink.valid):
                    m.d.sync += [length.eq(sink.payload), state.eq(BridgeState.ADDRESS)]
            with m.Case(BridgeState.ADDRESS):
                m.d.comb += sink.ready.eq(1)
                with m.If(sink.valid):
                    m.d.sync += [address.eq(Cat(sink.payload, address)),
                                 byte_index.eq(byte_index + 1)]
                    with m.If(byte_index == ADDR_BYTES - 1):
                        m.d.sync += byte_index.eq(0)
                        with m.If(length == 0):
                            m.d.sync += state.eq(BridgeState.COMMAND)
                        with m.Else():
                            m.d.sync += state.eq(next_after_word)
            with m.Case(BridgeState.DATA):
                m.d.comb += sink.ready.eq(1)
                with m.If(sink.valid):
                    m.d.sync += [data.eq(Cat(sink.payload, data)), byte_index.eq(byte_index + 1)]
                    with m.If(byte_index == DATA_BYTES - 1):
                        m.d.sync += state.eq(BridgeState.WRITE)
            with m.Case(BridgeState.WRITE):
                m.d.comb += [bus.cyc.eq(1), bus.stb.eq(1), bus.we.eq(1)]
                with m.If(bus.ack):
                    next_word()
            with m.Case(BridgeState.READ):
                m.d.comb += [bus.cyc.eq(1), bus.stb.eq(1)]
                with m.If(bus.ack):
                    m.d.sync += [data.eq(bus.dat_r), byte_index.eq(0),
                                 state.eq(BridgeState.SEND)]
            with m.Case(BridgeState.SEND):
                m.d.comb += source.valid.eq(1)
                with m.If(source.ready):
                    m.d.sync += byte_index.eq(byte_index + 1)
                    with m.If(byte_index == DATA_BYTES - 1):
                        next_word()
            with m.Default():
                m.d.sync += state.eq(BridgeState.COMMAND)

        # The silence timer: restarted by every byte in or out and every ack, running
        # only while a frame is unfinished. Its reset overrides every assignment above.
        progress = Signal()
        m.d.comb += progress.eq(take | (source.valid & source.ready) | bus.ack)
        silence = Signal(range(self._timeout_cycles + 1))
        with m.If(progress | (state == BridgeState.COMMAND)):
            m.d.sync += silence.eq(0)
        with m.Elif(silence == self._timeout_cycles - 1):
            m.d.comb += self.timeout.eq(1)
            m.d.sync += [silence.eq(0), state.eq(BridgeState.COMMAND)]
        with m.Else():
            m.d.sync += silence.eq(silence + 1)
        # cyc comes from the state register alone and falls in the cycle after the
        # timeout: dropping it in the timeout cycle itself would close a loop through
        # the slave's ack, which is never high while cyc is low (docs/ARCHITECTURE.md
        # section 6) and is part of `progress`.
        return m
