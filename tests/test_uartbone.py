# amaranth: UnusedElaboratable=no
"""UARTBone bridge (fpga/uartbone.py) in amaranth.sim, against the byte-level model and LiteX.

The bridge's byte streams are driven directly (the UART is tested in test_uart.py); a
Wishbone slave process with random wait states stands for the bus. Every access and
every answer byte of the RTL must equal :class:`fpga.bridge_model.UARTBoneModel`'s on
the same bytes, and LiteX's own host code (when it is installed) must drive the bridge.
"""

import queue
import threading

import pytest
from amaranth.sim import Simulator

from fpga.bridge_model import UARTBoneModel
from host.serial_transport import encode_read, encode_write, split_runs
from fpga.uartbone import BridgeState, Command, UARTBone

_MASK = (1 << 32) - 1


class RamBus:
    """Reference memory for the model: 32-bit words, unwritten words read a hash of the address."""

    def __init__(self):
        self.mem = {}
        self.accesses = []

    def read(self, addr):
        data = self.mem.get(addr, (addr * 0x9E3779B1) & _MASK)
        self.accesses.append(("r", addr, data))
        return data

    def write(self, addr, data):
        self.mem[addr] = data
        self.accesses.append(("w", addr, data))


def simulate(stream_bytes, *, timeout_cycles=1000, gaps=None, wait_states=None, ready=None,
             no_ack=False, idle_after=200, watch=None):
    """Run the bridge on ``stream_bytes``; return (accesses, answer bytes, events).

    ``gaps[i]`` idle cycles go before byte i; ``wait_states(k)`` cycles delay the ack of
    access k; ``ready(cycle)`` is the answer stream's ready; ``no_ack`` never acks.
    ``events`` holds the cycles of timeout pulses and of every byte taken.
    """
    dut = UARTBone(timeout_cycles)
    ram = RamBus()
    accesses, answer = [], []
    events = {"timeout": [], "taken": [], "cyc_after_timeout": []}
    gaps = gaps or [0] * len(stream_bytes)
    state = {"done": False}

    async def slave(ctx):
        count, wait, acked = 0, None, False
        async for _, _, cyc, stb, we, adr, dat_w in ctx.tick().sample(
                dut.bus.cyc, dut.bus.stb, dut.bus.we, dut.bus.adr, dut.bus.dat_w):
            if acked:                    # ack lasts one cycle
                ctx.set(dut.bus.ack, 0)
                acked = False
                continue
            if not (cyc and stb) or no_ack:
                wait = None
                continue
            if wait is None:
                wait = wait_states(count) if wait_states else 0
            if wait:
                wait -= 1
                continue
            wait = None
            if we:
                ram.write(adr, dat_w)
                accesses.append(("w", adr, dat_w))
            else:
                data = ram.read(adr)
                accesses.append(("r", adr, data))
                ctx.set(dut.bus.dat_r, data)
            ctx.set(dut.bus.ack, 1)
            acked = True
            count += 1

    async def feeder(ctx):
        cycle = 0
        for byte, gap in zip(stream_bytes, gaps):
            for _ in range(gap):
                await ctx.tick()
            ctx.set(dut.sink.valid, 1)
            ctx.set(dut.sink.payload, byte)
            await ctx.tick().until(dut.sink.ready)
            ctx.set(dut.sink.valid, 0)
        for _ in range(idle_after):
            await ctx.tick()
        state["done"] = True

    async def monitor(ctx):
        cycle = 0
        timed_out = False
        while not state["done"]:
            ctx.set(dut.source.ready, 1 if ready is None else ready(cycle))
            await ctx.delay(0)
            if timed_out and ctx.get(dut.bus.cyc):
                events["cyc_after_timeout"].append(cycle)
            timed_out = False
            if ctx.get(dut.source.valid) and ctx.get(dut.source.ready):
                answer.append(ctx.get(dut.source.payload))
            if ctx.get(dut.sink.valid) and ctx.get(dut.sink.ready):
                events["taken"].append(cycle)
            if ctx.get(dut.timeout):
                events["timeout"].append(cycle)
                timed_out = True
                # A timeout happens only in a cycle without an ack; cyc falls after it.
                assert not ctx.get(dut.bus.ack)
            if watch:
                watch(ctx, dut, cycle)
            await ctx.tick()
            cycle += 1
        events["final_state"] = ctx.get(dut.state)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_process(slave)
    sim.add_testbench(feeder)
    sim.add_testbench(monitor)
    sim.run()
    return accesses, bytes(answer), events


def model_run(stream_bytes):
    ram = RamBus()
    model = UARTBoneModel(ram)
    answer = model.feed(bytes(stream_bytes))
    return ram.accesses, answer, model


def random_stream(rng, frames=14):
    """Frames of every command with garbage between them (non-commands and stray commands)."""
    out = bytearray()
    for _ in range(frames):
        if rng.random() < 0.3:
            out += bytes(int(b) for b in rng.choice([0x00, 0x05, 0x55, 0xFF, 0x80], size=rng.integers(1, 4)))
        cmd = int(rng.choice(Command.ALL))
        length = int(rng.integers(0, 5))
        addr = int(rng.choice([rng.integers(0, 64), _MASK - int(rng.integers(0, 3)),
                               rng.integers(0, 1 << 32)]))
        out += bytes([cmd, length]) + addr.to_bytes(4, "big")
        if cmd in (Command.WRITE_INCR, Command.WRITE_FIXED):
            for _ in range(length):
                out += int(rng.integers(0, 1 << 32)).to_bytes(4, "big")
    return bytes(out)


def test_parameter_checks():
    with pytest.raises(ValueError, match="timeout_cycles must be >= 1, not 0"):
        UARTBone(0)
    with pytest.raises(TypeError):
        UARTBone(1.5)


def test_frames_match_model_and_litex_layout():
    """Hand-written frames: big-endian word addresses and data, incr and fixed bursts."""
    stream = (bytes([0x01, 2, 0, 0, 0, 5]) + bytes([1, 2, 3, 4, 5, 6, 7, 8])
              + bytes([0x02, 2, 0, 0, 0, 5])
              + bytes([0x03, 2, 0, 0, 0, 9]) + bytes([0xA, 0, 0, 0xB, 0xC, 0, 0, 0xD])
              + bytes([0x04, 2, 0, 0, 0, 9]))
    accesses, answer, events = simulate(stream)
    assert accesses == [("w", 5, 0x01020304), ("w", 6, 0x05060708), ("r", 5, 0x01020304),
                        ("r", 6, 0x05060708), ("w", 9, 0x0A00000B), ("w", 9, 0x0C00000D),
                        ("r", 9, 0x0C00000D), ("r", 9, 0x0C00000D)]
    assert answer == bytes.fromhex("0102030405060708" "0c00000d0c00000d")
    assert events["timeout"] == [] and events["final_state"] == BridgeState.COMMAND
    # The transport's encoder writes exactly these frames.
    assert encode_write(5, [0x01020304, 0x05060708]) == stream[:14]
    assert encode_read(5, 2) == stream[14:20]
    assert encode_write(9, [0x0A00000B, 0x0C00000D], fixed=True) == stream[20:34]
    assert encode_read(9, 2, fixed=True) == stream[34:]


@pytest.mark.parametrize("trial", range(3))
def test_random_streams_match_model(trial, rng):
    """Random frames, garbage, gaps, wait states and answer back-pressure: RTL == model."""
    stream = random_stream(rng)
    gaps = [int(g) for g in rng.integers(0, 4, len(stream))]
    waits = [int(w) for w in rng.integers(0, 3, 200)]
    readies = [int(r) for r in rng.integers(0, 2, 20000)]
    accesses, answer, events = simulate(stream, gaps=gaps, wait_states=lambda k: waits[k % 200],
                                        ready=lambda c: readies[c % 20000], idle_after=400)
    ref_accesses, ref_answer, model = model_run(stream)
    assert accesses == ref_accesses
    assert answer == ref_answer
    assert events["timeout"] == []
    assert events["final_state"] == BridgeState.COMMAND and model.idle


def test_address_wraps_and_length_zero_does_nothing():
    stream = (bytes([0x01, 0, 0, 0, 0, 1])                    # length 0: no access, no data
              + bytes([0x02, 3, 0xFF, 0xFF, 0xFF, 0xFE]))      # incr wraps past 2**32 - 1
    accesses, answer, _ = simulate(stream)
    assert [(k, a) for k, a, _ in accesses] == [("r", _MASK - 1), ("r", _MASK), ("r", 0)]
    assert len(answer) == 12
    assert (accesses, answer) == model_run(stream)[:2]


def test_silence_abandons_a_partial_frame():
    """Lost bytes: a half frame is dropped after exactly timeout_cycles idle cycles."""
    timeout = 60
    partial = bytes([0x01, 1, 0, 0, 0, 7, 0xAA, 0xBB])        # two data bytes lost
    full = encode_write(3, [0x11223344]) + encode_read(3, 1)
    gaps = [0] * len(partial) + [timeout + 20] + [0] * (len(full) - 1)
    accesses, answer, events = simulate(partial + full, timeout_cycles=timeout, gaps=gaps)
    assert len(events["timeout"]) == 1
    last_partial_byte = events["taken"][len(partial) - 1]
    assert events["timeout"][0] - last_partial_byte == timeout
    assert accesses == [("w", 3, 0x11223344), ("r", 3, 0x11223344)]
    assert answer == bytes.fromhex("11223344")

    # Gaps one cycle short of the timeout inside a frame are fine.
    frame = encode_write(4, [0xCAFEF00D]) + encode_read(4, 1)
    accesses, answer, events = simulate(frame, timeout_cycles=timeout,
                                        gaps=[0] + [timeout - 1] * (len(frame) - 1))
    assert events["timeout"] == []
    assert answer == bytes.fromhex("cafef00d")


def test_slow_answer_is_not_a_timeout_but_a_dead_bus_is():
    timeout = 40
    # The host takes answer bytes slowly (one every 30 cycles): progress, no timeout.
    accesses, answer, events = simulate(encode_read(0, 3), timeout_cycles=timeout,
                                        ready=lambda c: int(c % 30 == 0), idle_after=500)
    assert events["timeout"] == [] and len(answer) == 12
    # A slave that never acks: the bridge gives up, drops cyc, and takes the next frame.
    accesses, answer, events = simulate(encode_read(0, 1) + encode_read(1, 1),
                                        timeout_cycles=timeout, no_ack=True,
                                        gaps=[0] * 6 + [0] * 6, idle_after=300)
    assert len(events["timeout"]) == 2 and answer == b""
    assert events["cyc_after_timeout"] == []


@pytest.fixture(scope="module")
def litex_comm():
    comm_uart = pytest.importorskip("litex.tools.remote.comm_uart",
                                    reason="LiteX is not installed (pip install litex migen)")
    return comm_uart


class _QueuePort:
    """A pyserial-like port between LiteX's CommUART (another thread) and the simulation."""

    def __init__(self):
        self.to_bridge = queue.Queue()
        self.to_host = queue.Queue()

    def write(self, data):
        for b in bytes(data):
            self.to_bridge.put(b)
        return len(data)

    def read(self, n):
        out = bytearray()
        while len(out) < n:
            out.append(self.to_host.get(timeout=20))
        return bytes(out)

    def inWaiting(self):
        return self.to_host.qsize()

    def close(self):
        pass


def test_litex_commuart_drives_the_bridge(litex_comm, rng):
    """LiteX's own host code (CommUART, used by litex_server --uart) against the RTL."""
    port = _QueuePort()
    comm = litex_comm.CommUART("loop://", baudrate=115200)
    comm.port = port
    ref = {}
    results = {}

    def host():
        try:
            words = [int(w) for w in rng.integers(0, 1 << 32, 11)]
            comm.write(4 * 0x20, words)                 # byte address; two frames (8 + 3)
            ref.update({0x20 + i: w for i, w in enumerate(words)})
            comm.write(4 * 0x7, 0xDEADBEEF)
            ref[0x7] = 0xDEADBEEF
            results["burst"] = comm.read(4 * 0x20, 11)
            results["single"] = comm.read(4 * 0x7)
        except Exception as e:                           # reported in the main thread
            results["error"] = e

    dut = UARTBone(10_000)
    mem = {}

    async def slave(ctx):
        acked = False
        async for _, _, cyc, stb, we, adr, dat_w in ctx.tick().sample(
                dut.bus.cyc, dut.bus.stb, dut.bus.we, dut.bus.adr, dut.bus.dat_w):
            if acked:
                ctx.set(dut.bus.ack, 0)
                acked = False
            elif cyc and stb:
                if we:
                    mem[adr] = dat_w
                else:
                    ctx.set(dut.bus.dat_r, mem.get(adr, 0))
                ctx.set(dut.bus.ack, 1)
                acked = True

    thread = threading.Thread(target=host, daemon=True)

    async def bench(ctx):
        thread.start()
        ctx.set(dut.source.ready, 1)
        for _ in range(200_000):
            if not ctx.get(dut.sink.valid):
                try:
                    ctx.set(dut.sink.payload, port.to_bridge.get_nowait())
                    ctx.set(dut.sink.valid, 1)
                except queue.Empty:
                    if not thread.is_alive():
                        break
            await ctx.delay(0)
            took = ctx.get(dut.sink.valid) and ctx.get(dut.sink.ready)
            if ctx.get(dut.source.valid):
                port.to_host.put(ctx.get(dut.source.payload))
            await ctx.tick()
            if took:
                ctx.set(dut.sink.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_process(slave)
    sim.add_testbench(bench)
    sim.run()
    thread.join(timeout=5)
    assert "error" not in results, results.get("error")
    assert mem == ref
    assert results["burst"] == [ref[0x20 + i] for i in range(11)]
    assert results["single"] == 0xDEADBEEF


def test_transport_frames_equal_litex_frames(litex_comm, rng):
    """SerialTransport's frames are byte for byte the frames CommUART sends."""
    sent = bytearray()

    class Recorder:
        def write(self, data):
            sent.extend(bytes(data))
            return len(data)

        def read(self, n):
            return bytes(4 * ((n + 3) // 4))[:n]

        def inWaiting(self):
            return 0

    comm = litex_comm.CommUART("loop://")
    comm.port = Recorder()
    words = [int(w) for w in rng.integers(0, 1 << 32, 20)]
    comm.write(4 * 0x40, words)
    comm.read(4 * 0x13, 5)
    mine = b""
    for start, count in split_runs(list(range(0x40, 0x40 + 20)), 8):
        mine += encode_write(start, words[start - 0x40:start - 0x40 + count])
    mine += encode_read(0x13, 5)
    assert bytes(sent) == mine


def test_bus_decoder_answers_outside_addresses_itself():
    """Addresses at or above 2**addr_bits read 0, drop writes and never reach the macro."""
    from fpga.top import BusDecoder
    dut = BusDecoder(6)
    seen = []
    results = []

    async def macro(ctx):
        acked = False
        async for _, _, cyc, stb, we, adr in ctx.tick().sample(
                dut.macro.cyc, dut.macro.stb, dut.macro.we, dut.macro.adr):
            if acked:
                ctx.set(dut.macro.ack, 0)
                acked = False
            elif cyc and stb:
                seen.append((we, adr))
                ctx.set(dut.macro.dat_r, 0x1000 + adr)
                ctx.set(dut.macro.ack, 1)
                acked = True

    async def master(ctx):
        for addr, we in [(5, 0), (64, 0), (0xFFFFFFFF, 1), (63, 1), (1 << 20, 0)]:
            ctx.set(dut.bus.adr, addr)
            ctx.set(dut.bus.we, we)
            ctx.set(dut.bus.cyc, 1)
            ctx.set(dut.bus.stb, 1)
            for _ in range(5):
                await ctx.tick()
                if ctx.get(dut.bus.ack):
                    results.append(ctx.get(dut.bus.dat_r))
                    break
            else:
                raise AssertionError(f"no ack for {addr:#x}")
            ctx.set(dut.bus.cyc, 0)
            ctx.set(dut.bus.stb, 0)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_process(macro)
    sim.add_testbench(master)
    sim.run()
    assert seen == [(0, 5), (1, 63)]
    assert results == [0x1005, 0, 0, 0x1000 + 63, 0]
