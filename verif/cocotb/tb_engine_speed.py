"""cocotb benchmark of the network engine: a whole network classifies a buffer of images.

``CIM_ARGS``: ``net`` (NAME of an exported network), ``images`` (an ``.npz`` with ``x``,
the preprocessed inputs), ``count``. The host driver (:class:`host.engine.EngineDriver`)
loads the network into the banks and writes every image into the image buffer; then one
CLASSIFY of all ``count`` slots runs with no bus traffic but the final STATUS polls
(the test waits the engine's own cycle count in one trigger, then polls). The statistics
handed back to the runner (``bench.engine_speed``): the classes, ENGINE_CYCLES, the bus
cycles the image writes took per image, and the wall time and simulated cycles of the
CLASSIFY. The bench compares the classes with the golden model, never this test.
"""

from __future__ import annotations

import time

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from host.engine import EngineDriver
from models.engine import build_program
from models.export import load_folded

from .tb import save_stats

TIMEOUT_S = 7200


def _transport(dut, ep):
    """The harness's Verilog burst engine when it has one, else the per-edge master."""
    if hasattr(dut, "eng_start"):
        from .burst import BurstTransport
        return BurstTransport(dut, region_shift=ep.region_shift)
    from verif.wishbone_master import CocotbWishboneTransport
    return CocotbWishboneTransport.from_dut(dut)


def _now(dut) -> int:
    """The harness's cycle counter."""
    return int(dut.tb_cycles.value)


@cocotb.test(timeout_time=TIMEOUT_S, timeout_unit="sec")
async def speed(dut):
    import json
    import os

    from verif.engine_runner import engine_from_dict

    ep = engine_from_dict(json.loads(os.environ["CIM_ENGINE"]))
    args = json.loads(os.environ.get("CIM_ARGS", "{}"))
    net = load_folded(args["net"])
    x = np.load(args["images"])["x"].astype(np.int64)
    count = int(args.get("count", len(x)))
    x = x[:count]

    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 1)
    bus = _transport(dut, ep)
    drv = await EngineDriver.connect(bus)
    assert drv.params == ep, (drv.params, ep)
    await drv.load_network(net)
    per_image = build_program(net, ep.macro).image_cycles()

    start = _now(dut)
    await drv.write_images(x)
    await drv.macro.read_csr("STATUS")          # flush the posted writes
    load_cycles = _now(dut) - start

    wall = time.perf_counter()
    start = _now(dut)
    await drv.start(count)
    if hasattr(bus, "flush"):
        await bus.flush()                       # the burst engine posts writes
    # The engine needs count x its cycles per image: one trigger, then the driver's poll.
    await ClockCycles(dut.clk, count * per_image)
    await drv.wait(count)
    simulated = _now(dut) - start
    seconds = time.perf_counter() - wall
    classes = await drv.results(count)
    engine_cycles = await drv.cycles()
    save_stats(classes=[int(c) for c in classes], engine_cycles=int(engine_cycles),
               load_cycles=int(load_cycles), count=count, seconds=round(seconds, 3),
               simulated_cycles=int(simulated))
