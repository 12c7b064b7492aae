"""cocotb test of the FPGA host path to a network engine: SerialTransport -> UART line ->
bridge -> engine.

The design is :class:`fpga.top.BoardCore` around an :class:`rtl.engine.CimEngine`
(UART, UARTBone bridge, chip image writer, engine) converted to Verilog; the host side is
:class:`host.engine.EngineDriver` over :class:`host.serial_transport.SerialTransport` on
the bit-level :class:`CocotbUartPort`, driven through the helpers ``python -m fpga run``
uses for an engine (``fpga/engine_run.py``: calibrate and trim, load the network, stream
the images through the image buffer). Every step is repeated by the same driver on the
golden model (``ModelTransport(EngineBusModel)`` holding the same chip image), and the
answers must be equal: the expectations never come from the RTL.

``tests/test_fpga_host_engine.py`` builds the design and passes the test data through the
file named by ``FPGA_HOST_DATA`` (a JSON with the engine's parameters, the clock and UART
settings, the chip image and the network's path, plus an ``.npz`` with the images).
"""

from __future__ import annotations

import types

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge

from models.export import load_folded
from models.params import CSR
from host.engine import EngineDriver
from host.transport import ModelTransport

from .fpga_host import _load, _start


def _params(cfg):
    from verif.engine_runner import engine_from_dict
    return engine_from_dict(cfg["params"])


def _golden(cfg, ep):
    """An engine driver on the golden bus model holding the same chip image."""
    from models.engine_bus import EngineBusModel
    model = EngineBusModel(ep)
    for addr, data in cfg["image"]:
        model.write(addr, data, 0xF)
    return EngineDriver(ModelTransport(model), ep)


async def _watch_requests(dut, seen):
    """Check, every cycle, what the engine's ``held_until_ack`` relies on: the board's
    masters keep ``adr``, ``dat_w`` and ``we`` from each access to its ack and keep
    ``cyc`` high up to it. ``seen`` counts the accesses watched."""
    bus = dut.macro
    request = None
    while True:
        await FallingEdge(dut.clk)
        if not (bus.wb__cyc.value.is_resolvable and bus.wb__stb.value.is_resolvable):
            continue
        now = (int(bus.wb__adr.value), int(bus.wb__dat_w.value), int(bus.wb__we.value))
        if request is None and int(bus.wb__cyc.value) and int(bus.wb__stb.value):
            request = now
            seen[0] += 1
        elif request is not None:
            assert int(bus.wb__cyc.value), f"the master dropped cyc before the ack: {request}"
            assert now == request, f"the request changed before its ack: {request} -> {now}"
        if request is not None and int(bus.wb__ack.value):
            request = None


class _Bar:
    """The progress bar ``engine_run._classify`` updates: counts the images."""

    def __init__(self):
        self.n = 0

    def update(self, n):
        self.n += n


@cocotb.test()
async def fpga_host_engine_end_to_end(dut):
    """Connect, check the baked chip, calibrate and trim, load a network, classify through
    the image buffer: classes, last ACC and scores, ENGINE_CYCLES equal the golden model's."""
    from fpga.engine_run import _classify, _prepare_chip
    from models.engine_params import ENGINE_ID_MAGIC, EngineCSR
    from models.params import ID_MAGIC

    cfg, arrays = _load()
    ep = _params(cfg)
    port, transport = await _start(dut, cfg, ep)
    watched = [0]
    cocotb.start_soon(_watch_requests(dut, watched))
    start = get_sim_time("us")
    assert await transport.read(CSR.ID) == ENGINE_ID_MAGIC       # "CiE1": an engine
    assert await transport.read(EngineCSR.MACRO_ID) == ID_MAGIC
    drv = await EngineDriver.connect(transport)
    gold = _golden(cfg, ep)
    assert drv.params == ep, (drv.params, ep)

    # The baked chip instance is the reset state.
    offsets = await drv.macro.read_offsets()
    assert np.array_equal(offsets, arrays["offsets"])
    assert np.array_equal(offsets, await gold.macro.read_offsets())

    # CALIBRATE and the trim as ``fpga run --trim`` does them.
    args = types.SimpleNamespace(no_calibrate=False, trim=True)
    notes, gold_notes = [], []
    residual = await _prepare_chip(drv, None, args, notes)
    want_residual = await _prepare_chip(gold, None, args, gold_notes)
    assert notes == gold_notes, (notes, gold_notes)
    assert np.array_equal(residual, want_residual), (residual, want_residual)
    assert np.array_equal(await drv.macro.read_comp(packed=True),
                          await gold.macro.read_comp(packed=True))
    dut._log.info("; ".join(notes))

    net = load_folded(cfg["network"])
    program = await drv.load_network(net, residual=residual)
    await gold.load_network(net, residual=want_residual)
    images = arrays["images"]
    want, want_cycles = await _classify(gold, images, _Bar())
    classify_start = get_sim_time("us")
    bar = _Bar()
    got, cycles = await _classify(drv, images, bar)
    classify_us = get_sim_time("us") - classify_start
    assert bar.n == len(images)
    dut._log.info(f"classes {got.tolist()} (golden {want.tolist()}), ENGINE_CYCLES {cycles} "
                  f"(golden {want_cycles}, {program.image_cycles()} per image)")
    assert np.array_equal(got, want), (got, want)
    assert cycles == want_cycles, (cycles, want_cycles)
    assert cycles == len(images) * program.image_cycles()
    assert await drv.results_count() == await gold.results_count()
    acc, want_acc = await drv.last_acc(), await gold.last_acc()
    assert np.array_equal(acc, want_acc), (acc, want_acc)
    scores, want_scores = await drv.last_scores(), await gold.last_scores()
    assert np.array_equal(scores, want_scores), (scores, want_scores)
    status = await drv.macro.status()
    assert status["error"] is False, status

    dut._log.info(f"{len(images)} images in {classify_us:.0f} us simulated "
                  f"({-(-len(images) // ep.image_slots)} CLASSIFYs of at most "
                  f"{ep.image_slots}), whole session {get_sim_time('us') - start:.0f} us "
                  f"simulated, {transport.frames} frames")
    assert transport.resyncs == 0 and transport.retried == 0
    assert watched[0] >= transport.frames, (watched[0], transport.frames)
    assert port.framing_errors == 0
