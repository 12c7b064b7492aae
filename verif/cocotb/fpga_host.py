"""cocotb tests of the FPGA host path: SerialTransport -> UART line -> bridge -> macro.

The design is :class:`fpga.top.BoardCore` (UART, UARTBone bridge, chip image writer,
macro) converted to Verilog; the host side is the project's one driver over
:class:`host.serial_transport.SerialTransport` on :class:`CocotbUartPort`. Everything
the host does is mirrored on the golden model with the same chip image, and the answers
must be equal. ``tests/test_fpga_host.py`` builds the design and passes the test data
through the file named by ``FPGA_HOST_DATA`` (a JSON with the parameters, the clock and
UART settings, the chip image and the network's path, plus an ``.npz``).
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import RisingEdge, Timer

from models.export import load_folded
from models.macro import MacroModel
from models.params import MacroParams
from host.driver import MacroDriver
from host.network import run_network
from host.transport import ModelTransport

from .fpga_uart_port import CocotbUartPort


def _load():
    with open(os.environ["FPGA_HOST_DATA"]) as f:
        cfg = json.load(f)
    arrays = np.load(cfg["arrays"])
    return cfg, arrays


async def _start(dut, cfg, params=None):
    """Clock, reset, wait for the chip image writer, and a SerialTransport on the UART
    line. ``params``: the board's MacroParams or EngineParams (default: the macro of
    ``cfg["params"]``), which sets the ack latency the image writer waits for."""
    from host.serial_transport import SerialTransport
    period = cfg["clock_period_ns"]
    Clock(dut.clk, period, unit="ns").start(start_high=False)
    port = CocotbUartPort(dut.rx, dut.tx, cfg["divisor"] * period)
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    # The chip image writer needs the board's ack latency plus two cycles per write.
    from fpga.top import StatusLeds, board_bus_latency
    bit = StatusLeds["ready"].offset
    if params is None:
        params = MacroParams.from_dict(cfg["params"])
    per_write = board_bus_latency(params) + 2
    for cycle in range(per_write * len(cfg["image"]) + 20):
        await RisingEdge(dut.clk)
        if dut.leds.value.is_resolvable and int(dut.leds.value) >> bit & 1:
            break
    else:
        raise AssertionError(f"the chip image writer did not finish: leds = {dut.leds.value}")
    transport = SerialTransport(port, bridge_timeout=cfg["bridge_timeout_s"],
                                latency=cfg["latency_s"], retries=2)
    return port, transport


def _golden(cfg):
    """A driver on the golden model holding the same chip image."""
    p = MacroParams.from_dict(cfg["params"])
    model = MacroModel(p)
    for addr, data in cfg["image"]:
        model.write(addr, data, 0xF)
    return MacroDriver(ModelTransport(model), p)


@cocotb.test()
async def fpga_host_end_to_end(dut):
    """Connect, check the baked chip, calibrate, matvec and a network: RTL == golden model."""
    cfg, arrays = _load()
    port, transport = await _start(dut, cfg)
    drv = await MacroDriver.connect(transport)
    gold = _golden(cfg)
    assert drv.p == gold.p

    # The baked chip instance is the reset state.
    assert np.array_equal(await drv.read_offsets(), arrays["offsets"])
    assert np.array_equal(await drv.read_offsets(), await gold.read_offsets())

    rng = np.random.default_rng(int(cfg["seed"]))
    p = drv.p
    w = rng.choice([-1, 1], size=(p.rows, p.cols))
    for d in (drv, gold):
        await d.write_weights(w)
    assert await drv.calibrate() == await gold.calibrate()
    assert np.array_equal(await drv.read_comp(packed=True), await gold.read_comp(packed=True))
    assert np.array_equal(await drv.read_calflags(), await gold.read_calflags())
    for _ in range(2):
        x = rng.integers(0, 1 << p.input_bits, p.rows)
        got = await drv.matvec(x)
        assert np.array_equal(got, await gold.matvec(x))

    # The network: the same predictions and traces as on the golden model.
    net = load_folded(cfg["network"])
    images = arrays["images"]
    want, want_trace = await run_network(gold, net, images, return_trace=True)
    start = get_sim_time("us")
    got, trace = await run_network(drv, net, images, return_trace=True)
    dut._log.info(f"{len(images)} images in {get_sim_time('us') - start:.0f} us simulated, "
                  f"{transport.frames} frames")
    assert np.array_equal(got, want)
    for a, b in zip(trace, want_trace):
        for key in a:
            assert np.array_equal(a[key], b[key]), key
    assert transport.resyncs == 0 and transport.retried == 0
    assert port.framing_errors == 0


@cocotb.test()
async def fpga_host_faults(dut):
    """Lost bytes, garbage both ways and a dead line: a clear error or a resync, no hang."""
    from host.serial_transport import SerialDesyncError, SerialLinkError
    cfg, arrays = _load()
    port, transport = await _start(dut, cfg)
    drv = await MacroDriver.connect(transport)
    p = drv.p
    rng = np.random.default_rng(int(cfg["seed"]) + 1)
    w = rng.choice([-1, 1], size=(p.rows, p.cols))
    await drv.write_weights(w)

    # Garbage towards the bridge between frames (bytes that are no command): ignored.
    port.garbage_to_bridge[port.sent] = bytes([0x00, 0xFF, 0x55])
    assert np.array_equal(2 * (await drv.read_weights()).astype(int) - 1, w)
    assert transport.resyncs == 0

    # Garbage towards the host in front of an answer: detected and the read retried.
    port.garbage_to_host[port.answered + 1] = b"\xAA"
    assert (await drv.read_weights()).shape == (p.rows, p.cols)
    assert transport.resyncs == 1 and transport.retried == 1
    assert np.array_equal(2 * (await drv.read_weights()).astype(int) - 1, w)

    # A byte of a weight write frame lost: the next read fails, the link resynchronises
    # and the error says that written words are unconfirmed.
    port.drop_host_bytes.add(port.sent + 9)
    try:
        await drv.write_weights(-w)
    except SerialDesyncError as e:
        assert e.unconfirmed_words > 0
        dut._log.info(str(e))
    else:
        raise AssertionError("a lost byte went unnoticed")
    assert transport.resyncs == 2
    # After the resync the link works; reloading restores the macro.
    await drv.clear_errors()
    await drv.write_weights(-w)
    assert np.array_equal(2 * (await drv.read_weights()).astype(int) - 1, -w)

    # A dead line: the read gives up with a clear error after bounded time.
    port.mute = True
    start = get_sim_time("sec")
    try:
        await drv.status()
    except SerialLinkError as e:
        assert "no valid answer from the UARTBone bridge" in str(e), str(e)
    else:
        raise AssertionError("a dead line gave an answer")
    spent = get_sim_time("sec") - start
    bound = 4 * (transport.retries + 1) * (cfg["bridge_timeout_s"] + cfg["latency_s"]) + 1e-3
    assert spent < bound, (spent, bound)
    port.mute = False
    await Timer(1, unit="us")
    assert (await drv.status())["error"] is False
