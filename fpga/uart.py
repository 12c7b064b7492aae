"""8N1 UART receiver and transmitter with byte streams, for the UARTBone bridge.

Both blocks run in the ``sync`` domain and take the bit time as a whole number of clock
cycles (``divisor``, use :func:`uart_divisor` to pick it from a clock and a baud rate).
Bytes travel least significant bit first between one start bit (0) and one stop bit (1);
the line idles at 1.

Receiver
    The line goes through a two-flip-flop synchroniser (it comes from another clock).
    A falling edge starts a byte; the start bit is checked again in its middle (a
    shorter glitch is ignored), then every data bit and the stop bit are sampled in
    their middles, ``divisor`` cycles apart. A byte whose stop bit reads 0 is a framing
    error (noise, a wrong baud rate or a break): it is dropped, ``frame_error`` pulses,
    and the receiver waits for the line to return to 1 before it looks for the next
    start bit, so a break never produces bytes. Sampling in the middle tolerates a
    total clock mismatch of a few percent over the ten bits of a frame.

Transmitter
    Takes a byte from its stream whenever it is idle and shifts out start bit, eight data
    bits and stop bit, ``divisor`` cycles each; the next byte may follow right after the
    stop bit.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["MIN_DIVISOR", "MAX_BAUD_ERROR", "uart_divisor", "RxState", "UARTReceiver",
           "UARTTransmitter"]

#: Fewest clock cycles per bit: the receiver needs a distinct middle-of-bit sample.
MIN_DIVISOR = 4
#: Largest relative baud-rate error :func:`uart_divisor` accepts. Each side may be off
#: by this much and the middle-of-bit sample of the stop bit still lands inside the bit.
MAX_BAUD_ERROR = 0.02


def _check_divisor(divisor):
    if isinstance(divisor, bool) or not isinstance(divisor, int):
        raise TypeError(f"divisor must be an integer, not {divisor!r}")
    if divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be >= {MIN_DIVISOR} clock cycles per bit, not {divisor}")


def uart_divisor(clk_freq, baud):
    """Clock cycles per bit for ``baud`` at ``clk_freq`` Hz, rounded to the nearest.

    Raises ValueError with the achieved rate when the rounding error exceeds
    :data:`MAX_BAUD_ERROR` or the clock is too slow for the rate.
    """
    for name, value in (("clk_freq", clk_freq), ("baud", baud)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, not {value!r}")
        if not value > 0:
            raise ValueError(f"{name} must be positive, not {value}")
    divisor = round(clk_freq / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud {baud} is too fast for a {clk_freq / 1e6:g} MHz clock: the UART "
                         f"needs at least {MIN_DIVISOR} cycles per bit (baud <= "
                         f"{int(clk_freq // MIN_DIVISOR)})")
    actual = clk_freq / divisor
    error = abs(actual - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"baud {baud} is off by {100 * error:.1f}% at {clk_freq / 1e6:g} MHz "
                         f"({divisor} cycles per bit give {actual:.0f} baud); at most "
                         f"{100 * MAX_BAUD_ERROR:g}% works")
    return divisor


class RxState(enum.Enum, shape=3):
    """Phase of the UART receiver, exposed on its ``state`` port.

    Members
    -------
    IDLE
        Line at 1, waiting for a start bit.
    START
        Falling edge seen; waiting for the middle of the start bit.
    DATA
        Sampling the eight data bits.
    STOP
        Waiting for the middle of the stop bit.
    BREAK
        After a framing error: waiting for the line to return to 1.
    """
    IDLE = 0
    START = 1
    DATA = 2
    STOP = 3
    BREAK = 4


class UARTReceiver(wiring.Component):
    """8N1 UART receiver producing a stream of bytes.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    rx : In(1)
        The serial line (asynchronous; idles at 1).
    stream : Out(stream.Signature(8))
        Received bytes. A byte stays valid until taken; when the next byte completes
        before that, the new byte is dropped and ``overrun`` pulses.
    frame_error : Out(1)
        One-cycle pulse: a byte ended with a 0 stop bit and was dropped.
    overrun : Out(1)
        One-cycle pulse: a byte was dropped because the previous one was not taken.
    state : Out(RxState)
        Current phase.
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "stream": Out(stream.Signature(8)),
            "frame_error": Out(1),
            "overrun": Out(1),
            "state": Out(RxState),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(div))          # cycles left until the next sample
        bits_left = Signal(range(8))
        shift = Signal(8)
        state = self.state

        with m.If(self.stream.ready):
            m.d.sync += self.stream.valid.eq(0)

        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)

        with m.Switch(state):
            with m.Case(RxState.IDLE):
                with m.If(~line):
                    # Middle of the start bit: (div - 1) // 2 more cycles after this one.
                    m.d.sync += [timer.eq((div - 1) // 2), state.eq(RxState.START)]
            with m.Case(RxState.START):
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.sync += state.eq(RxState.IDLE)      # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(div - 1), bits_left.eq(7),
                                     state.eq(RxState.DATA)]
            with m.Case(RxState.DATA):
                with m.If(timer == 0):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), timer.eq(div - 1)]
                    with m.If(bits_left == 0):
                        m.d.sync += state.eq(RxState.STOP)
                    with m.Else():
                        m.d.sync += bits_left.eq(bits_left - 1)
            with m.Case(RxState.STOP):
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.sync += state.eq(RxState.IDLE)
                        with m.If(self.stream.valid & ~self.stream.ready):
                            m.d.comb += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.stream.payload.eq(shift), self.stream.valid.eq(1)]
                    with m.Else():
                        m.d.comb += self.frame_error.eq(1)
                        m.d.sync += state.eq(RxState.BREAK)
            with m.Case(RxState.BREAK):
                with m.If(line):
                    m.d.sync += state.eq(RxState.IDLE)
            with m.Default():
                m.d.sync += state.eq(RxState.IDLE)
        return m


class UARTTransmitter(wiring.Component):
    """8N1 UART transmitter taking a stream of bytes.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    stream : In(stream.Signature(8))
        Bytes to send; one is taken (``ready`` high) whenever the transmitter is idle.
    tx : Out(1)
        The serial line, 1 while idle.
    busy : Out(1)
        A frame is being shifted out.
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({
            "stream": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        timer = Signal(range(div))
        # Start bit, 8 data bits, stop bit; the register shifts right and refills with 1s
        # so that the line returns to idle by itself.
        frame = Signal(10, init=(1 << 10) - 1)
        bits_left = Signal(range(11))

        m.d.comb += [self.tx.eq(frame[0]), self.busy.eq(bits_left != 0),
                     self.stream.ready.eq(bits_left == 0)]
        with m.If(bits_left == 0):
            with m.If(self.stream.valid):
                m.d.sync += [frame.eq(Cat(Const(0, 1), self.stream.payload, Const(1, 1))),
                             timer.eq(div - 1), bits_left.eq(10)]
        with m.Elif(timer == 0):
            m.d.sync += [frame.eq(Cat(frame[1:], Const(1, 1))), timer.eq(div - 1),
                         bits_left.eq(bits_left - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m
