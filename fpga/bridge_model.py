"""Byte-level Python model of the UARTBone bridge (:mod:`fpga.uartbone`) and the board's bus.

:class:`UARTBoneModel` consumes the bytes a host sends and returns the bytes the bridge
answers, performing the same Wishbone accesses in the same order as the RTL; the tests
check it against the RTL on random byte streams with garbage and gaps. It lets the
serial transport be tested without a simulator (:class:`FakeBridgePort` is a
pyserial-like port around it), and it is the reference of the bridge's tests.

:class:`BoardBus` is the address decoder of the board tops: the macro answers word
addresses below ``2**addr_bits``; every other address reads 0 and ignores writes.
"""

from __future__ import annotations

from host.uartbone_protocol import ADDR_BYTES, DATA_BYTES, Command

__all__ = ["UARTBoneModel", "BoardBus", "FakeBridgePort"]

_WORD_MASK = (1 << 32) - 1


class BoardBus:
    """The board top's decoder in front of a macro (or any ``read``/``write`` backend).

    Parameters
    ----------
    backend : object
        ``read(addr) -> int`` and ``write(addr, data, sel)``, e.g. ``models.macro.MacroModel``.
    addr_bits : int
        Word-address width of the macro.

    Members
    -------
    accesses : list of tuple
        ``("r", addr, data)`` and ``("w", addr, data)`` for every access, in order.
    """

    def __init__(self, backend, addr_bits: int):
        self.backend = backend
        self.addr_bits = addr_bits
        self.accesses: list[tuple] = []

    def read(self, addr: int) -> int:
        data = int(self.backend.read(addr)) if addr >> self.addr_bits == 0 else 0
        self.accesses.append(("r", addr, data))
        return data

    def write(self, addr: int, data: int) -> None:
        if addr >> self.addr_bits == 0:
            self.backend.write(addr, data, 0xF)
        self.accesses.append(("w", addr, data))


class UARTBoneModel:
    """The bridge's state machine, one byte at a time.

    Parameters
    ----------
    bus : object
        ``read(addr) -> int`` and ``write(addr, data)`` on 32-bit word addresses.
    timeout : float or None
        Silence (in the caller's time unit) after which an unfinished frame is abandoned;
        ``None`` never abandons.

    Members
    -------
    timeouts : int
        Frames abandoned so far.
    """

    def __init__(self, bus, timeout: float | None = None):
        self.bus = bus
        self.timeout = timeout
        self.timeouts = 0
        self._reset_frame()

    def _reset_frame(self):
        self._state = "command"
        self._cmd = 0
        self._length = 0
        self._address = 0
        self._pending = []       # bytes of the address or the data word being received
        self._words = 0

    @property
    def idle(self) -> bool:
        """No frame is under way."""
        return self._state == "command"

    def silence(self, duration: float) -> None:
        """Nothing happens on the line for ``duration``: an unfinished frame may time out."""
        if self.timeout is not None and not self.idle and duration >= self.timeout:
            self.timeouts += 1
            self._reset_frame()

    def feed(self, data: bytes) -> bytes:
        """Process the bytes ``data`` (received back to back); return the answer bytes."""
        out = bytearray()
        for byte in bytes(data):
            out += self._byte(byte)
        return bytes(out)

    def _byte(self, byte: int) -> bytes:
        if self._state == "command":
            if byte in Command.ALL:
                self._cmd = byte
                self._state = "length"
            return b""
        if self._state == "length":
            self._length = byte
            self._state = "address"
            self._pending = []
            return b""
        self._pending.append(byte)
        if self._state == "address":
            if len(self._pending) < ADDR_BYTES:
                return b""
            self._address = int.from_bytes(bytes(self._pending), "big")
            self._pending = []
            self._words = 0
            if self._length == 0:
                self._reset_frame()
                return b""
            if self._cmd in (Command.READ_INCR, Command.READ_FIXED):
                out = bytearray()
                for _ in range(self._length):
                    out += (self.bus.read(self._address) & _WORD_MASK).to_bytes(DATA_BYTES, "big")
                    self._advance()
                self._reset_frame()
                return bytes(out)
            self._state = "data"
            return b""
        # data
        if len(self._pending) < DATA_BYTES:
            return b""
        self.bus.write(self._address, int.from_bytes(bytes(self._pending), "big"))
        self._pending = []
        self._advance()
        self._words += 1
        if self._words == self._length:
            self._reset_frame()
        return b""

    def _advance(self):
        if self._cmd in (Command.WRITE_INCR, Command.READ_INCR):
            self._address = (self._address + 1) & _WORD_MASK


class FakeBridgePort:
    """A pyserial-like port wired to a :class:`UARTBoneModel`, with faults on demand.

    Time is virtual: it advances by the line time of every byte sent and answered
    (10 bits at ``baudrate``), by ``read`` timeouts spent waiting, and by the transport's
    ``sleep``; the bridge times out exactly as the RTL does when the line was silent for
    its timeout. Nothing ever blocks for real.

    Parameters
    ----------
    bus : object
        ``read(addr)``/``write(addr, data)`` behind the bridge (e.g. :class:`BoardBus`).
    baudrate : int
    bridge_timeout : float
        The bridge's silence timeout in seconds.

    Members
    -------
    drop_host_bytes : set of int
        Indices (counted over every byte ever written by the host) lost on the way to
        the bridge.
    garbage_to_host : dict of int to bytes
        Extra bytes that appear in front of the answer byte with that index (counted
        over every byte the bridge ever answered).
    garbage_to_bridge : dict of int to bytes
        Extra bytes that reach the bridge in front of the host byte with that index.
    drop_answer_bytes : set of int
        Indices of answer bytes lost on the way to the host.
    silent : bool
        The port is dead: bytes go nowhere and nothing comes back.
    now : float
        Virtual time in seconds.
    sent, received : int
        Bytes the host has written and read so far.
    """

    def __init__(self, bus, baudrate: int = 115200, bridge_timeout: float = 0.1):
        self.bridge = UARTBoneModel(bus, timeout=bridge_timeout)
        self.baudrate = baudrate
        self.timeout = 1.0
        self.now = 0.0
        self.port = "fake"
        self.is_open = True
        self.drop_host_bytes: set[int] = set()
        self.garbage_to_host: dict[int, bytes] = {}
        self.garbage_to_bridge: dict[int, bytes] = {}
        self.drop_answer_bytes: set[int] = set()
        self.silent = False
        self.sent = 0
        self.received = 0
        self._answered = 0
        self._last_activity = 0.0
        self._rx = bytearray()

    @property
    def byte_time(self) -> float:
        return 10.0 / self.baudrate

    def _bridge_sees(self, data: bytes) -> None:
        self.bridge.silence(self.now - self._last_activity)
        answer = self.bridge.feed(data)
        self.now += self.byte_time * len(data)
        for byte in answer:
            self._rx += self.garbage_to_host.get(self._answered, b"")
            if self._answered not in self.drop_answer_bytes:
                self._rx.append(byte)
            self._answered += 1
        self.now += self.byte_time * len(answer)
        self._last_activity = self.now

    @property
    def bridge_idle(self) -> bool:
        """The bridge waits for a command now (after any timeout the silence so far caused)."""
        self.bridge.silence(self.now - self._last_activity)
        return self.bridge.idle

    # --- the pyserial interface the transport uses ----------------------------------------

    def write(self, data) -> int:
        data = bytes(data)
        for byte in data:
            index = self.sent
            self.sent += 1
            if self.silent:
                continue
            extra = self.garbage_to_bridge.get(index, b"")
            if extra:
                self._bridge_sees(extra)
            if index in self.drop_host_bytes:
                continue
            self._bridge_sees(bytes([byte]))
        return len(data)

    def read(self, size: int = 1) -> bytes:
        got = bytes(self._rx[:size])
        del self._rx[:size]
        self.received += len(got)
        if len(got) < size and self.timeout is not None:
            self.now += self.timeout           # a real port would wait that long
        return got

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def reset_input_buffer(self) -> None:
        self._rx.clear()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.is_open = False

    def sleep(self, seconds: float) -> None:
        """The transport's pause, in virtual time."""
        self.now += seconds
