# amaranth: UnusedElaboratable=no
"""UART receiver and transmitter (fpga/uart.py) in amaranth.sim against a bit-level line model."""

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from fpga.uart import (MAX_BAUD_ERROR, MIN_DIVISOR, RxState, UARTReceiver, UARTTransmitter,
                       uart_divisor)


def line_bits(byte, stop=1):
    """Levels of one 8N1 frame: start bit, data LSB first, stop bit."""
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


def waveform(frames, bit_cycles, idle=0.0):
    """Per-cycle line levels for ``frames`` (lists of bit levels) at ``bit_cycles`` cycles per bit.

    ``bit_cycles`` may be fractional (a transmitter with another clock); bit edges fall at
    ``round(k * bit_cycles)``. ``idle`` bit times of 1 go before every frame.
    """
    levels, t = [], 0.0
    for bits in frames:
        t_idle_end = t + idle * bit_cycles
        while len(levels) < round(t_idle_end):
            levels.append(1)
        t = t_idle_end
        for level in bits:
            t += bit_cycles
            while len(levels) < round(t):
                levels.append(level)
    return levels


def run_rx(divisor, levels, take=True, tail=None):
    """Drive ``levels`` into a receiver; return (bytes, frame_error cycles, overrun cycles)."""
    dut = UARTReceiver(divisor)
    got, errors, overruns = [], [], []
    tail = 3 * divisor if tail is None else tail

    async def bench(ctx):
        ctx.set(dut.stream.ready, int(take))
        for cycle, level in enumerate(levels + [1] * tail):
            ctx.set(dut.rx, level)
            await ctx.delay(0)
            if ctx.get(dut.frame_error):
                errors.append(cycle)
            if ctx.get(dut.overrun):
                overruns.append(cycle)
            if ctx.get(dut.stream.valid) and ctx.get(dut.stream.ready):
                got.append(ctx.get(dut.stream.payload))
            await ctx.tick()
        if not take and ctx.get(dut.stream.valid):
            got.append(ctx.get(dut.stream.payload))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, errors, overruns


def test_divisor_and_parameter_checks():
    assert uart_divisor(12e6, 115200) == 104          # 115385 baud, 0.16% off
    assert uart_divisor(25e6, 1_000_000) == 25
    with pytest.raises(ValueError, match="too fast"):
        uart_divisor(12e6, 12e6 / 3)
    with pytest.raises(ValueError, match=r"off by 7\.5%.*at most 2%"):
        uart_divisor(12e6, 12e6 / 4.3)                 # 4 cycles give 3e6 baud
    with pytest.raises(TypeError):
        uart_divisor("12e6", 9600)
    with pytest.raises(ValueError, match="positive"):
        uart_divisor(12e6, 0)
    with pytest.raises(ValueError, match=f"divisor must be >= {MIN_DIVISOR}"):
        UARTReceiver(MIN_DIVISOR - 1)
    with pytest.raises(TypeError):
        UARTTransmitter(8.0)
    assert MAX_BAUD_ERROR <= 0.025


@pytest.mark.parametrize("divisor", [MIN_DIVISOR, 7])
def test_transmitter_frames_and_bit_times(divisor, rng):
    """Every bit lasts exactly ``divisor`` cycles, LSB first, framed by 0 and 1."""
    dut = UARTTransmitter(divisor)
    data = [int(b) for b in rng.integers(0, 256, 24)] + [0x00, 0xFF]
    gaps = [int(g) for g in rng.integers(0, 3 * divisor, len(data))]
    trace = []

    async def feeder(ctx):
        for byte, gap in zip(data, gaps):
            for _ in range(gap):
                await ctx.tick()
            ctx.set(dut.stream.valid, 1)
            ctx.set(dut.stream.payload, byte)
            await ctx.tick().until(dut.stream.ready)
            ctx.set(dut.stream.valid, 0)

    total = len(data) * 14 * divisor + sum(gaps) + 50

    async def monitor(ctx):
        async for _, _, tx in ctx.tick().sample(dut.tx):
            trace.append(tx)
            if len(trace) == total:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feeder)
    sim.add_testbench(monitor)
    sim.run()
    assert trace[-10 * divisor:] == [1] * (10 * divisor)     # all sent, line idle

    # Decode: find each start edge, then read the levels of the ten bit cells.
    got, i = [], 0
    while i < len(trace):
        if trace[i] == 0:
            cells = [trace[i + k * divisor:i + (k + 1) * divisor] for k in range(10)]
            for k, cell in enumerate(cells):
                assert len(set(cell)) == 1 and len(cell) == divisor, f"bit {k} of byte {len(got)}"
            bits = [c[0] for c in cells]
            assert bits[0] == 0 and bits[9] == 1
            got.append(sum(b << k for k, b in enumerate(bits[1:9])))
            i += 10 * divisor
        else:
            i += 1
    assert got == data


@pytest.mark.parametrize("mismatch", [-MAX_BAUD_ERROR, 0.0, MAX_BAUD_ERROR])
def test_receiver_every_byte_with_clock_mismatch(mismatch):
    """All 256 bytes back to back (one stop bit) from a sender whose clock is off by ±2%."""
    divisor = 8
    data = list(range(256))
    levels = waveform([line_bits(b) for b in data], divisor * (1 + mismatch), idle=0)
    got, errors, overruns = run_rx(divisor, [1] * 5 + levels)
    assert got == data
    assert errors == [] and overruns == []


def test_receiver_framing_error_break_and_recovery():
    divisor = 6
    frames = [line_bits(0xA5), line_bits(0x3C, stop=0), line_bits(0x5A)]
    got, errors, _ = run_rx(divisor, waveform(frames, divisor, idle=1))
    assert got == [0xA5, 0x5A]
    assert len(errors) == 1

    # A break: the line held low for 30 bit times gives one framing error and no byte,
    # and the receiver takes the byte that follows once the line is back at 1.
    levels = [1] * 10 + [0] * (30 * divisor) + waveform([line_bits(0x81)], divisor, idle=2)
    got, errors, _ = run_rx(divisor, levels)
    assert got == [0x81]
    assert len(errors) == 1


def test_receiver_ignores_short_glitches():
    divisor = 8
    glitch = [1] * 5 + [0] * (divisor // 2 - 1) + [1] * (3 * divisor)
    levels = glitch + waveform([line_bits(0x42)], divisor, idle=1) + glitch
    got, errors, _ = run_rx(divisor, levels)
    assert got == [0x42] and errors == []


def test_receiver_overrun_keeps_first_byte():
    divisor = 5
    levels = waveform([line_bits(0x11), line_bits(0x22)], divisor, idle=1)
    got, errors, overruns = run_rx(divisor, levels, take=False)
    assert got == [0x11]
    assert len(overruns) == 1 and errors == []


def test_loopback_random_bytes(rng):
    """Transmitter into receiver: the bytes come out in order, none lost or added."""
    divisor = 5
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(divisor)
    m.submodules.rx = rx = UARTReceiver(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [int(b) for b in rng.integers(0, 256, 40)]
    got = []

    async def feeder(ctx):
        for byte in data:
            ctx.set(tx.stream.valid, 1)
            ctx.set(tx.stream.payload, byte)
            await ctx.tick().until(tx.stream.ready)
        ctx.set(tx.stream.valid, 0)

    async def sink(ctx):
        ctx.set(rx.stream.ready, 1)
        for _ in range(len(data) * 11 * divisor + 40):
            await ctx.delay(0)
            if ctx.get(rx.stream.valid):
                got.append(ctx.get(rx.stream.payload))
            assert not ctx.get(rx.frame_error)
            await ctx.tick()
        assert ctx.get(rx.state) == RxState.IDLE

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(feeder)
    sim.add_testbench(sink)
    sim.run()
    assert got == data
