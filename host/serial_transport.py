"""The host driver's transport over a serial port: LiteX UARTBone frames (the bridge is
``fpga/uartbone.py``; the framing constants are :mod:`host.uartbone_protocol`).

:class:`SerialTransport` implements :class:`host.transport.Transport` on a pyserial port
(or anything with the same few methods), so :class:`host.driver.MacroDriver` runs a
macro on an FPGA exactly as on the golden model. A burst of consecutive addresses goes
out as one frame (up to ``max_burst`` words); write frames are sent back to back, and
every read waits for its answer before the next frame.

Failure handling (UARTBone has no checksum and writes have no answer, so the host can
only judge a link by the answers to its reads):

* **Silence or lost answer bytes**: every read has a deadline computed from the baud
  rate (the bytes still queued before it, its own frame and its answer) plus
  ``latency``. A short answer is retried after a resynchronisation.
* **Garbage towards the host**: after an answer the transport listens for
  ``guard_bytes`` byte times; bytes arriving then mean the answer was polluted, and it
  is retried.
* **Resynchronisation**: the transport stays silent until the line has been quiet for
  longer than the bridge's silence timeout (``bridge_timeout``), which makes the bridge
  abandon any half-received frame, then empties its input buffer.
* **Unconfirmed writes**: a read that fails after writes were sent since the last good
  answer may mean that a write frame lost bytes (the bridge then took bytes of the next
  frame as data and may have written wrong words). After resynchronising, the transport
  raises :class:`SerialDesyncError` naming how many written words are unconfirmed, so
  the caller reloads the macro instead of computing with corrupted weights.
* After ``retries`` failed retries a read raises :class:`SerialLinkError` with what was
  expected and what came back. No call waits longer than its deadlines: the transport
  never hangs.

Corruption that keeps the byte count (a flipped bit) is not detected: the protocol has
no checksum.

Ports: ``port`` is a pyserial ``Serial`` (or a URL/device name to open), or any object
with ``write(bytes)``, ``read(n)`` honouring a ``timeout`` attribute (seconds, total),
``reset_input_buffer()`` and ``in_waiting``. Any of these may be coroutine functions
(a simulated port in cocotb); a ``sleep(seconds)`` method, when the port has one,
replaces :func:`time.sleep` (simulated or virtual time).
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Iterable

from .transport import Transport
from .uartbone_protocol import ADDR_BYTES, DATA_BYTES, Command

__all__ = ["SerialTransport", "SerialLinkError", "SerialDesyncError", "encode_write",
           "encode_read", "split_runs", "DEFAULT_BAUD", "DEFAULT_BRIDGE_TIMEOUT"]

DEFAULT_BAUD = 115200
#: The board tops' silence timeout (seconds): an unfinished frame is dropped after it.
DEFAULT_BRIDGE_TIMEOUT = 0.1
_WORD_MASK = (1 << 32) - 1
_HEADER_BYTES = 2 + ADDR_BYTES
#: UART bits per byte: start, 8 data, stop.
_BITS_PER_BYTE = 10


class SerialLinkError(IOError):
    """The UARTBone link did not answer as the protocol says (silent, short, polluted)."""


class SerialDesyncError(SerialLinkError):
    """The link lost and regained sync while written words were unconfirmed.

    Members
    -------
    unconfirmed_words : int
        Words written since the last good answer; any of them (and other addresses, by
        a misparsed frame) may hold wrong data. Reload the macro before going on.
    """

    def __init__(self, message: str, unconfirmed_words: int):
        super().__init__(message)
        self.unconfirmed_words = unconfirmed_words


def _check_word(what: str, value, bits: int = 32) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_int = int(value)
        except (TypeError, ValueError):
            raise TypeError(f"{what} must be an integer, not {value!r}") from None
        if as_int != value or isinstance(value, float):
            raise TypeError(f"{what} must be an integer, not {value!r}")
        value = as_int
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{what} must be in [0, 2**{bits}), not {value:#x}")
    return value


def encode_write(addr: int, words: list[int], fixed: bool = False) -> bytes:
    """One UARTBone write frame: ``words`` (1..255) from word address ``addr`` on."""
    if not 1 <= len(words) <= 255:
        raise ValueError(f"a frame carries 1..255 words, not {len(words)}")
    cmd = Command.WRITE_FIXED if fixed else Command.WRITE_INCR
    return (bytes([cmd, len(words)]) + addr.to_bytes(ADDR_BYTES, "big")
            + b"".join(w.to_bytes(DATA_BYTES, "big") for w in words))


def encode_read(addr: int, count: int, fixed: bool = False) -> bytes:
    """One UARTBone read frame of ``count`` (1..255) words from word address ``addr`` on."""
    if not 1 <= count <= 255:
        raise ValueError(f"a frame carries 1..255 words, not {count}")
    cmd = Command.READ_FIXED if fixed else Command.READ_INCR
    return bytes([cmd, count]) + addr.to_bytes(ADDR_BYTES, "big")


def split_runs(addrs: list[int], max_burst: int) -> list[tuple[int, int]]:
    """``(start, count)`` runs of consecutive word addresses, each at most ``max_burst``."""
    runs: list[tuple[int, int]] = []
    for a in addrs:
        if runs and a == runs[-1][0] + runs[-1][1] and runs[-1][1] < max_burst \
                and a <= _WORD_MASK:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((a, 1))
    return runs


async def _maybe_await(value):
    if inspect.isawaitable(value):
        return await value
    return value


class SerialTransport(Transport):
    """Word reads and writes as UARTBone frames on a serial port.

    Parameters
    ----------
    port : str or port object
        A device or pyserial URL (opened at ``baudrate``), or an open port (see the
        module docstring for what it needs).
    baudrate : int or None
        Line rate; default the port's ``baudrate`` attribute, else 115200. It sets the
        deadlines, so it must be right.
    bridge_timeout : float
        The bridge's silence timeout in seconds (the build's ``--bridge-timeout``,
        default 0.1).
    latency : float
        Extra seconds allowed for every answer (USB-serial adapters buffer for a few
        milliseconds).
    retries : int
        Further tries of a failed read after a resynchronisation.
    max_burst : int
        Most words per frame (1..255). 64 keeps a frame well under LiteX's own bridge's
        100 ms frame limit at 115200 baud.
    guard_bytes : float
        Byte times to listen for stray bytes after each answer (0: do not).

    Members
    -------
    frames, resyncs, retried : int
        Frames sent, resynchronisations done and reads retried.
    unconfirmed_words : int
        Words written since the last good answer.
    """

    def __init__(self, port, *, baudrate: int | None = None,
                 bridge_timeout: float = DEFAULT_BRIDGE_TIMEOUT, latency: float = 0.05,
                 retries: int = 2, max_burst: int = 64, guard_bytes: float = 2.0):
        if isinstance(max_burst, bool) or not isinstance(max_burst, int):
            raise TypeError(f"max_burst must be an integer, not {max_burst!r}")
        if not 1 <= max_burst <= 255:
            raise ValueError(f"max_burst must be in [1, 255], not {max_burst}")
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise TypeError(f"retries must be an integer, not {retries!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, not {retries}")
        for name, value in (("bridge_timeout", bridge_timeout), ("latency", latency),
                            ("guard_bytes", guard_bytes)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, not {value!r}")
            if not value >= 0 or math.isinf(value):
                raise ValueError(f"{name} must be a finite number >= 0, not {value}")
        if isinstance(port, str):
            import serial
            # A write that cannot drain (a stuck adapter) fails after write_timeout
            # rather than blocking: 10 s is ten times the longest frame at 9600 baud.
            try:
                port = serial.serial_for_url(port, baudrate=baudrate or DEFAULT_BAUD, timeout=0,
                                             write_timeout=10.0)
            except ValueError as exc:
                # An URL pyserial does not know ("foo://..."): the port is at fault.
                raise SerialLinkError(f"{port}: {' '.join(str(exc).split())}") from None
        for method in ("write", "read", "reset_input_buffer"):
            if not callable(getattr(port, method, None)):
                raise TypeError(f"port must have a {method}() method (a pyserial port), not {port!r}")
        if baudrate is None:
            baudrate = getattr(port, "baudrate", None) or DEFAULT_BAUD
        if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate <= 0:
            raise ValueError(f"baudrate must be a positive integer, not {baudrate!r}")
        self.port = port
        self.baudrate = baudrate
        self.bridge_timeout = float(bridge_timeout)
        self.latency = float(latency)
        self.retries = retries
        self.max_burst = max_burst
        self.guard_bytes = float(guard_bytes)
        self.frames = 0
        self.resyncs = 0
        self.retried = 0
        self.unconfirmed_words = 0
        self._queued_bytes = 0       # bytes sent since the last answer (may still be in flight)

    # --- port access -------------------------------------------------------------------

    @property
    def byte_time(self) -> float:
        return _BITS_PER_BYTE / self.baudrate

    @property
    def name(self) -> str:
        return str(getattr(self.port, "port", None) or getattr(self.port, "name", None) or self.port)

    async def _send(self, data: bytes) -> None:
        sent = 0
        while sent < len(data):
            n = await _maybe_await(self.port.write(data[sent:]))
            n = len(data) - sent if n is None else int(n)
            if n <= 0:
                raise SerialLinkError(f"{self.name}: the port accepted no bytes")
            sent += n
        self.frames += 1
        self._queued_bytes += len(data)

    async def _recv(self, count: int, seconds: float) -> bytes:
        self.port.timeout = seconds
        got = await _maybe_await(self.port.read(count))
        return bytes(got or b"")

    async def _sleep(self, seconds: float) -> None:
        sleep = getattr(self.port, "sleep", None)
        if callable(sleep):
            await _maybe_await(sleep(seconds))
        else:
            time.sleep(seconds)

    async def _drain(self) -> None:
        await _maybe_await(self.port.reset_input_buffer())

    async def _in_waiting(self) -> int:
        n = getattr(self.port, "in_waiting", 0)
        return int(await _maybe_await(n() if callable(n) else n))

    async def resync(self) -> None:
        """Stay silent until the bridge has certainly dropped any unfinished frame.

        The bridge abandons a frame after ``bridge_timeout`` without a byte in either
        direction; it may still be answering a long read, so this waits until a whole
        window of that length (plus margin) passes without a byte arriving, at most
        until the longest possible answer has drained.
        """
        self.resyncs += 1
        window = 1.25 * self.bridge_timeout + self.latency + 4 * self.byte_time
        longest = (self._queued_bytes + 4 * 255 + _HEADER_BYTES) * self.byte_time
        windows = 2 + math.ceil(longest / window)
        for _ in range(windows):
            await self._drain()
            await self._sleep(window)
            if await self._in_waiting() == 0:
                break
        await self._drain()
        self._queued_bytes = 0

    # --- frames ------------------------------------------------------------------------

    async def _read_run(self, start: int, count: int) -> list[int]:
        frame = encode_read(start, count)
        want = DATA_BYTES * count
        last_problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
            await self._drain()
            in_flight = self._queued_bytes
            await self._send(frame)
            deadline = (self.latency
                        + 1.5 * (in_flight + len(frame) + want) * self.byte_time)
            answer = await self._recv(want, deadline)
            extra = b""
            if len(answer) == want and self.guard_bytes:
                extra = await self._recv(1, self.guard_bytes * self.byte_time)
            if len(answer) == want and not extra:
                self._queued_bytes = 0
                self.unconfirmed_words = 0
                return [int.from_bytes(answer[i:i + DATA_BYTES], "big")
                        for i in range(0, want, DATA_BYTES)]
            if len(answer) < want:
                last_problem = (f"{len(answer)} of {want} answer bytes within "
                                f"{deadline * 1e3:.1f} ms")
            else:
                last_problem = f"more than the {want} answer bytes (stray bytes on the line)"
            await self.resync()
            if self.unconfirmed_words:
                lost = self.unconfirmed_words
                self.unconfirmed_words = 0
                raise SerialDesyncError(
                    f"UARTBone link on {self.name} lost sync (read of {count} word(s) at "
                    f"{start:#x}: {last_problem}) with {lost} written word(s) unconfirmed "
                    f"since the last good answer; it is resynchronised, but the macro may "
                    f"hold wrong data: reload it", lost)
        raise SerialLinkError(
            f"no valid answer from the UARTBone bridge on {self.name} (read of {count} "
            f"word(s) at {start:#x}: {last_problem}; {self.retries + 1} tries): is the "
            f"board programmed (python -m fpga build), connected, and set to "
            f"{self.baudrate} baud?")

    # --- Transport ---------------------------------------------------------------------

    async def read(self, addr: int) -> int:
        return (await self.read_burst([addr]))[0]

    async def write(self, addr: int, data: int, sel: int = 0xF) -> None:
        sel = _check_word("sel", sel, 4)
        if sel != 0xF:
            raise ValueError(f"UARTBone writes whole words: sel must be 0xF, not {sel:#x}")
        await self.write_burst([(addr, data)])

    async def read_burst(self, addrs: Iterable[int]) -> list[int]:
        addrs = [_check_word("read address", a) for a in addrs]
        result: list[int] = []
        for start, count in split_runs(addrs, self.max_burst):
            result += await self._read_run(start, count)
        return result

    async def write_burst(self, pairs: Iterable[tuple[int, int]]) -> None:
        pairs = [(_check_word("write address", a), _check_word("write data", d))
                 for a, d in pairs]
        addrs = [a for a, _ in pairs]
        pos = 0
        for start, count in split_runs(addrs, self.max_burst):
            words = [d for _, d in pairs[pos:pos + count]]
            pos += count
            await self._send(encode_write(start, words))
            self.unconfirmed_words += count

    async def close(self) -> None:
        close = getattr(self.port, "close", None)
        if callable(close):
            await _maybe_await(close())

    def __repr__(self):
        return f"SerialTransport({self.name!r}, baudrate={self.baudrate})"
