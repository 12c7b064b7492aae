"""A serial port made of a cocotb UART line model, for :class:`host.serial_transport.SerialTransport`.

:class:`CocotbUartPort` has the methods of a pyserial port as coroutines: ``write``
drives the design's receive pin bit by bit (8N1, ``bit_time_ns`` per bit), a background
task decodes the design's transmit pin into an input buffer, ``read(n)`` waits in
simulated time up to ``timeout`` seconds for ``n`` bytes, and ``sleep`` waits simulated
time. The serial transport then talks to the UART and UARTBone RTL exactly as it talks
to a board.

Faults for the tests: ``drop_host_bytes`` (indices of bytes written by the host that
never reach the line), ``garbage_to_bridge`` / ``garbage_to_host`` (extra bytes sent in
front of the byte with that index), and ``mute`` (the line carries nothing either way).
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import FallingEdge, Timer

__all__ = ["CocotbUartPort"]


class CocotbUartPort:
    """pyserial-like port on a simulated UART line.

    Parameters
    ----------
    rx : cocotb handle
        The design's receive input (the host drives it).
    tx : cocotb handle
        The design's transmit output (the host decodes it).
    bit_time_ns : int
        One bit on the line, in simulated nanoseconds (the design's divisor times its
        clock period).
    baudrate : int
        Reported to the transport, which sizes its deadlines by it (``1e9 / bit_time_ns``
        by default).

    Members
    -------
    timeout : float
        Seconds (simulated) a ``read`` may wait.
    sent, answered : int
        Bytes written by the host and bytes decoded from the design so far.
    framing_errors : int
        Bytes from the design whose stop bit was 0.
    """

    def __init__(self, rx, tx, bit_time_ns: int, baudrate: int | None = None):
        self.rx = rx
        self.tx = tx
        self.bit_time_ns = int(bit_time_ns)
        self.baudrate = baudrate or round(1e9 / self.bit_time_ns)
        self.timeout = 1.0
        self.port = "sim-uart"
        self.drop_host_bytes: set[int] = set()
        self.garbage_to_bridge: dict[int, bytes] = {}
        self.garbage_to_host: dict[int, bytes] = {}
        self.mute = False
        self.sent = 0
        self.answered = 0
        self.framing_errors = 0
        self._buffer = bytearray()
        self.rx.value = 1
        self._monitor = cocotb.start_soon(self._decode())

    async def _drive_byte(self, byte: int) -> None:
        for level in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
            self.rx.value = level
            await Timer(self.bit_time_ns, unit="ns")

    async def _decode(self) -> None:
        half = self.bit_time_ns // 2
        while True:
            await FallingEdge(self.tx)
            await Timer(half, unit="ns")
            if int(self.tx.value) != 0:
                continue                      # a glitch, not a start bit
            byte = 0
            for i in range(8):
                await Timer(self.bit_time_ns, unit="ns")
                byte |= int(self.tx.value) << i
            await Timer(self.bit_time_ns, unit="ns")
            if int(self.tx.value) != 1:
                self.framing_errors += 1
                continue
            if not self.mute:
                self._buffer += self.garbage_to_host.get(self.answered, b"")
                self._buffer.append(byte)
            self.answered += 1

    async def write(self, data) -> int:
        for byte in bytes(data):
            index = self.sent
            self.sent += 1
            if self.mute:
                await Timer(10 * self.bit_time_ns, unit="ns")
                continue
            for extra in self.garbage_to_bridge.get(index, b""):
                await self._drive_byte(extra)
            if index in self.drop_host_bytes:
                await Timer(10 * self.bit_time_ns, unit="ns")
                continue
            await self._drive_byte(byte)
        return len(bytes(data))

    async def read(self, size: int = 1) -> bytes:
        step = 10 * self.bit_time_ns
        waited = 0.0
        limit = float("inf") if self.timeout is None else self.timeout * 1e9
        while len(self._buffer) < size and waited < limit:
            await Timer(min(step, max(1, int(limit - waited))), unit="ns")
            waited += step
        got = bytes(self._buffer[:size])
        del self._buffer[:size]
        return got

    @property
    def in_waiting(self) -> int:
        return len(self._buffer)

    def reset_input_buffer(self) -> None:
        self._buffer.clear()

    async def sleep(self, seconds: float) -> None:
        await Timer(max(1, int(seconds * 1e9)), unit="ns")

    def close(self) -> None:
        self._monitor.cancel()
