"""The engine's host driver (host/engine.py) on the golden-model backend: the digits
network end to end, argument checks before any bus access, the engine's faults as
EngineError, connect, and the bus traffic of loading and classifying."""

import asyncio

import numpy as np
import pytest

from models import engine as E
from models.engine_bus import EngineBusModel
from models.export import load_folded
from models.macro import MacroModel
from models.params import MacroParams
from host.driver import MacroDriver, ProtocolError
from host.engine import EngineDriver, EngineError, program_words
from host.network import run_network
from host.transport import CountingTransport, ModelTransport

from .random_nets import random_net
from .test_engine_model import digits_model  # noqa: F401  (the fixture)

M3296 = MacroParams(32, 96, nonideal={"offset", "gain", "readout"})


def driver_for(ep):
    bus = EngineBusModel(ep)
    counting = CountingTransport(ModelTransport(bus))
    return asyncio.run(EngineDriver.connect(counting)), counting, bus


def test_digits_end_to_end_equals_the_engine_model_and_the_host_runner(digits_model):  # noqa: F811
    """200 validation images streamed through a 64-slot buffer (4 CLASSIFYs): the
    driver's classes equal EngineModel's and run_network's on the macro, the last
    scores and the engine's cycles EngineModel's."""
    path, x, y = digits_model
    x = x[:200]
    net = load_folded(path)
    ep = E.EngineParams.for_model(net, M3296, image_slots=64)
    drv, _, _ = driver_for(ep)

    async def go():
        await drv.load_network(path)
        return (await drv.classify(x), await drv.last_scores(), await drv.cycles())
    got, scores, cycles = asyncio.run(go())
    ref = E.EngineModel(ep)
    ref.load(net)
    want = ref.classify(x)
    runner = asyncio.run(run_network(asyncio.run(MacroDriver.connect(
        ModelTransport(MacroModel(M3296)))), net, x))
    assert len(got) == 200
    assert np.array_equal(got, want) and np.array_equal(got, runner)
    assert np.array_equal(scores, ref.scores[-1])
    assert cycles == 8 * E.build_program(net, M3296).image_cycles()      # the last 8
    assert np.mean(got == y[:200]) > 0.85


def test_digits_on_a_calibrated_chip_equals_the_engine_model(digits_model, seed):  # noqa: F811
    """A sampled chip written through the engine's map, CALIBRATE, the trim folded in
    at load: 200 images equal EngineModel doing the same."""
    from models.chip import ChipConfig, chip_to_rtl, sample_chip
    path, x, _ = digits_model
    x = x[200:400]
    net = load_folded(path)
    chip = sample_chip(ChipConfig(offset_sigma=4.0, cell_sigma=0.05), seed, 32, 96, 8)
    regs = {k: v for k, v in chip_to_rtl(chip, M3296, strict=False).items() if v is not None}
    ep = E.EngineParams.for_model(net, M3296, image_slots=200)
    drv, _, _ = driver_for(ep)

    async def go():
        await drv.write_chip(**regs)
        flags = await drv.calibrate()
        r = await drv.measure_residual()
        await drv.load_network(net, residual=r)
        return flags, r, await drv.classify(x)
    flags, residual, got = asyncio.run(go())
    ref = E.EngineModel(ep)
    ref.set_nonideal(**regs)
    assert np.array_equal(flags, ref.calibrate())
    assert np.array_equal(residual, ref.measure_residual()) and np.any(residual != 0)
    ref.load(net, residual=residual)
    assert np.array_equal(got, ref.classify(x))


SMALL = MacroParams(32, 12, cols_per_cycle=4)


@pytest.fixture
def small(rng):
    net = random_net(rng, (40, 20, 5), 5, 32, 12)
    ep = E.EngineParams.for_model(net, SMALL, image_slots=4)
    return net, ep


@pytest.mark.parametrize("call, exc, message", [
    ("classify_unloaded", ValueError, r"no network is loaded \(EngineDriver.load_network\)"),
    ("shape", ValueError, r"images must have shape \(N, 40\), not \(2, 41\)"),
    ("range", ValueError, r"images must be in 0..31 \(5-bit inputs\), not values in 0..32"),
    ("float", TypeError, r"images must hold integers, not float64"),
    ("too many", ValueError, r"5 images do not fit the image buffer of 4 slots"),
    ("no fit", ValueError, r"the model needs 10 weight banks, the engine has 5"),
    ("other macro", ValueError, r"the program is built for another macro than the engine's"),
    ("program residual", ValueError, r"residual is folded when a program is built"),
    ("scores unloaded", ValueError, r"no network is loaded"),
])
def test_bad_arguments_touch_no_bus(small, rng, call, exc, message):
    net, ep = small
    drv, counting, _ = driver_for(ep)
    if call not in ("classify_unloaded", "scores unloaded"):
        asyncio.run(drv.load_network(net))
    counting.reset()
    calls = {
        "classify_unloaded": lambda: drv.classify(np.zeros((1, 40), np.int64)),
        "shape": lambda: drv.classify(np.zeros((2, 41), np.int64)),
        "range": lambda: drv.classify(np.arange(33)[None, :].repeat(40, 0).T[:, :40] % 33),
        "float": lambda: drv.classify(np.zeros((2, 40))),
        "too many": lambda: drv.write_images(np.zeros((5, 40), np.int64)),
        "no fit": lambda: drv.load_network(random_net(rng, (40, 40, 5), 5, 32, 12)),
        "other macro": lambda: drv.load_network(E.build_program(net, MacroParams(32, 12))),
        "program residual": lambda: drv.load_network(E.build_program(net, SMALL),
                                                     residual=np.zeros(12, np.int64)),
        "scores unloaded": lambda: drv.last_scores(),
    }
    with pytest.raises(exc, match=message):
        asyncio.run(calls[call]())
    assert counting.total == 0


def test_engine_faults_raise_engine_error_and_are_cleared(small, rng):
    net, ep = small
    drv, _, bus = driver_for(ep)
    asyncio.run(drv.load_network(net))
    with pytest.raises(EngineError, match=r"read LAST_SCORE: the engine reports NO_RESULT "
                                          r"\(ERRCODE 7\) at word address 0x[0-9a-f]+ "
                                          r"\(LAST_SCORE\[neuron=0\]\)"):
        asyncio.run(drv.last_scores())
    assert bus.macro.errcode == 0
    bus.program_words[0, 0] = 0                      # a program the engine cannot run
    with pytest.raises(EngineError, match=r"CLASSIFY 1: the engine reports BAD_PROGRAM "
                                          r"\(ERRCODE 8\) at word address 0x28 \(CSR CLASSIFY\)"):
        asyncio.run(drv.classify(rng.integers(0, 32, (1, 40))))


def test_connect_refuses_a_bare_macro_and_reads_the_engine(small):
    net, ep = small
    with pytest.raises(ProtocolError, match=r"no network engine at this transport: a bare "
                                            r"macro \(use host.driver.MacroDriver\), expected "
                                            r"0x43694531"):
        asyncio.run(EngineDriver.connect(ModelTransport(MacroModel(SMALL))))
    drv, counting, _ = driver_for(ep)
    assert drv.params == ep and counting.writes == 0 and counting.reads == 2 + 10 + 4


def test_bus_traffic_of_loading_and_classifying(small, rng, capsys):
    """Load: every bank's C x chunks weight words, C threshold words and the packed flip
    words, PROGRAM_WORDS per layer, one STATUS check. Per batch of n images: p x
    ceil(n_in / 32) image words per image, CLASSIFY, the polls, one STATUS check, n
    result reads."""
    net, ep = small
    drv, counting, _ = driver_for(ep)
    counting.reset()
    program = asyncio.run(drv.load_network(net))
    p = ep.macro
    assert counting.writes == program.banks * (p.cols * p.chunks + p.cols + p.packed_words) \
        + program_words(program).size
    assert counting.reads == 1
    counting.reset()
    asyncio.run(drv.classify(rng.integers(0, 32, (4, 40))))
    image_words = 4 * 5 * 2
    polls = counting.reads - 1 - 1 - 4                 # write check, run check, results
    assert counting.writes == image_words + 1
    cycles = 4 * program.image_cycles()
    assert polls == -(-(cycles + 1) // (p.bus_latency + 1))
    print(f"load: {program.banks} banks, {counting.writes} writes per 4 images, "
          f"{polls} polls for {cycles} cycles")
