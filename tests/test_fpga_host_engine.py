"""The serial host path to a network engine, end to end in cocotb.

Builds the board core (UART, UARTBone bridge, chip image, :class:`rtl.engine.CimEngine`)
as Verilog in the test's own folder and runs ``verif/cocotb/fpga_host_engine.py``: the
engine driver, over SerialTransport, over a bit-level UART line, into the RTL, compared
with the same driver on the golden engine (``models.engine_bus.EngineBusModel``) holding
the same chip image. The macro's counterpart is ``tests/test_fpga_host.py``.
"""

import json
import shutil

import numpy as np
import pytest

from host.engine import EngineDriver
from host.transport import ModelTransport
from models.engine import EngineParams
from models.params import MacroParams

from .random_nets import random_net
from .test_fpga_host import board_files, run_board


def _net_and_images(rng, sizes, macro, count, pool=64, tries=20):
    """A random network whose ideal classes (``infer_folded``) are not the same for every
    image of a random pool, and ``count`` images of the pool that cover as many of those
    classes as they can (random small networks often give one class to every image)."""
    from models.export import infer_folded
    for _ in range(tries):
        net = random_net(rng, sizes, macro.input_bits, macro.rows, macro.cols)
        x = rng.integers(0, 1 << macro.input_bits, (pool, sizes[0]))
        classes = infer_folded(net, x)
        if len(np.unique(classes)) > 1:
            break
    first = [int(np.flatnonzero(classes == c)[0]) for c in np.unique(classes)][:count]
    rest = [i for i in range(pool) if i not in first][:count - len(first)]
    return net, x[first + rest]


def _e2e_engine(simulator, tmp_path, rng, sizes=(20, 12, 8, 4), image_slots=3, images=4,
                pipeline=0, macro=None):
    import asyncio
    from fpga.top import chip_image
    from models.engine_bus import EngineBusModel
    from models.export import save_folded
    from verif.engine_runner import engine_to_dict

    if macro is None:
        macro = MacroParams(16, 8, cols_per_cycle=4, input_bits=4, pipeline=pipeline)
    net, x = _net_and_images(rng, sizes, macro, images)
    ep = EngineParams.for_model(net, macro, image_slots=image_slots)
    image, summary = chip_image(ep, seed=int(rng.integers(1 << 16)))
    assert "offset" in summary["baked"]
    src, cfg = board_files(ep, image, tmp_path)
    save_folded(net, tmp_path / "net")
    bus = EngineBusModel(ep)
    for a, d in image:
        bus.write(a, d, 0xF)
    offsets = asyncio.run(EngineDriver(ModelTransport(bus), ep).macro.read_offsets())
    assert np.any(offsets)                         # the chip has offsets to bake
    np.savez(tmp_path / "data.npz", offsets=offsets, images=x)
    cfg.update(params=engine_to_dict(ep), network=str(tmp_path / "net"),
               arrays=str(tmp_path / "data.npz"))
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    print(f"engine {macro.rows}x{macro.cols} P={macro.cols_per_cycle} L={macro.pipeline}: "
          f"{ep.weight_banks} banks, {ep.layers} layers, {ep.image_slots} slots, network "
          f"{sizes}, {images} images, chip image of {len(image)} writes "
          f"({', '.join(summary['baked'])})")

    run_board(simulator, tmp_path, src, "verif.cocotb.fpga_host_engine", tests=1)


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_engine_end_to_end_icarus(tmp_path, rng):
    """A 3-layer network in 6 banks of a 16x8 P=4 engine, 4 images through 3 slots."""
    _e2e_engine("icarus", tmp_path, rng)


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_engine_end_to_end_icarus_pipelined(tmp_path, rng):
    """The iCE40 build's macro (L = 2; the engine acts a cycle late, ack in t + 3): a 2-layer
    network in 7 banks, 5 images through 2 slots."""
    _e2e_engine("icarus", tmp_path, rng, sizes=(40, 16, 4), image_slots=2, images=5,
                pipeline=2)


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_engine_end_to_end_icarus_through_the_bus_slices(tmp_path, rng):
    """The ECP5 build's engine (L = 3) behind the board's two register slices: a 2-layer
    network, 4 images through 2 slots."""
    from fpga.top import board_bus_slices
    macro = MacroParams(16, 8, cols_per_cycle=4, input_bits=4, pipeline=3)
    assert board_bus_slices(EngineParams(macro, weight_banks=7, layers=2, max_width=40,
                                         image_slots=2)) == 2
    _e2e_engine("icarus", tmp_path, rng, sizes=(40, 16, 4), image_slots=2, images=4,
                macro=macro)


@pytest.mark.parametrize("pipeline, engine, slices, latency", [
    (2, True, 0, 3), (3, True, 2, 7), (3, False, 0, 2), (4, False, 2, 9)])
def test_board_bus_slices_front_the_designs_built_at_speed(pipeline, engine, slices, latency):
    from amaranth.hdl import Fragment
    from fpga.top import BoardCore, board_bus_latency, board_bus_slices
    macro = MacroParams(8, 4, pipeline=pipeline)
    p = EngineParams(macro, weight_banks=2, layers=2, max_width=8, image_slots=1) \
        if engine else macro
    assert board_bus_slices(p) == slices
    assert board_bus_latency(p) == p.bus_latency + 2 * slices == latency
    core = BoardCore(p, divisor=104, timeout_cycles=1000)
    names = {name for _, name, *_ in Fragment.get(core, None).subfragments}
    assert ({"bus_slice_near", "bus_slice_far"} <= names) == bool(slices)


@pytest.mark.slow
def test_engine_end_to_end_verilator(tmp_path, rng):
    from verif.toolchain import apply_tool_env
    apply_tool_env()
    _e2e_engine("verilator", tmp_path, rng)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_engine_end_to_end_icarus_every_nonideality(tmp_path, rng):
    """A 32x12 P=4 engine with every non-ideality: the chip image bakes offsets, gains,
    the table, stuck cells and the readout; a 3-layer network, 6 images through 4 slots."""
    from models.params import NONIDEALITIES
    macro = MacroParams(32, 12, cols_per_cycle=4, input_bits=5, nonideal=set(NONIDEALITIES))
    _e2e_engine("icarus", tmp_path, rng, sizes=(50, 20, 12, 6), image_slots=4, images=6,
                macro=macro)
