"""cocotb testbench of the network engine (``verif/cocotb/tb_cim_engine.py``) on Verilator
and Icarus, each engine parameter set built in its own folder
(``build/cocotb/<sim>/engine-<set>/``, ``verif/engine_runner.py``).

Every access runs in lockstep with ``EngineBusModel``. Default: random networks within
the capacity of a folded all-feature 8x6 engine on Icarus (Verilator: slow) and of the
32x12 engine of tests/test_engine_bus.py on Verilator; that file's whole error table on
Verilator, ten of its cases on Icarus (all of them: ``slow``). A failure prints the
seed and the command that re-runs it.
"""

import asyncio

import numpy as np
import pytest

from host.engine import EngineDriver
from host.transport import ModelTransport, Transport
from models import engine as E
from models.engine_bus import EngineBusModel
from models.export import save_folded
from models.params import Op
from verif import engine_runner

from . import test_engine_bus as bus_tests
from .random_nets import random_net
from .test_engine_model import random_registers


def _jsonable(regs):
    return {k: (np.asarray(v).tolist() if not isinstance(v, int) else v) for k, v in regs.items()}


def random_fitting_net(rng, ep):
    """Random layer sizes (2..layers layers) whose banks and widths fit ``ep``."""
    p = ep.macro
    while True:
        layers = int(rng.integers(2, ep.layers + 1))
        sizes = [int(rng.integers(1, ep.max_width + 1)) for _ in range(layers + 1)]
        net = random_net(rng, tuple(sizes), p.input_bits, p.rows, p.cols)
        if not ep.misfits(net):
            return net, sizes


def network_cases(rng, ep, tmp_path, count=2, images=4):
    cases = []
    for i in range(count):
        net, sizes = random_fitting_net(rng, ep)
        path = tmp_path / f"net{i}"
        save_folded(net, path)
        cases.append(dict(model=str(path), one_by_one=i == 0,
                          images=rng.integers(0, 1 << net.layers[0].planes,
                                              (images, sizes[0])).tolist(),
                          chip=_jsonable(random_registers(rng, ep.macro))))
    return cases


#: Verilator builds dominate the default run: the 32x12 engine (shared with the error
#: table) on Verilator, the folded 8x6 engine on Icarus (on Verilator: slow).
NETWORKS = [("icarus", "8x6-P2-all"), ("verilator", "32x12-P4-all"),
            pytest.param("verilator", "8x6-P2-all", marks=pytest.mark.slow,
                         id="verilator-8x6-P2-all")]


@pytest.mark.parametrize("sim, engine", NETWORKS, ids=["icarus-8x6-P2-all",
                                                      "verilator-32x12-P4-all",
                                                      "verilator-8x6-P2-all"])
def test_random_networks_equal_the_engine_model(sim, engine, seed, rng, tmp_path):
    ep = engine_runner.engine_of(engine)
    cases = network_cases(rng, ep, tmp_path)
    result = engine_runner.run(engine, sim, "networks", seed=seed, args=dict(networks=cases))
    assert all(result.stats[f"network{i}"]["identical"] for i in range(len(cases)))
    print(f"seed {seed}: {len(cases)} networks on {sim} {engine} in {result.seconds:.1f} s")


class _Recorder(Transport):
    """The accesses a setup makes, run on a bus model to drive the driver's reads."""

    def __init__(self, model):
        self.model, self.ops = model, []

    async def read(self, addr):
        self.ops.append(("r", int(addr), 0))
        return self.model.read(addr)

    async def write(self, addr, data, sel=0xF):
        self.ops.append(("w", int(addr), int(data)))
        self.model.write(addr, data, sel)


def error_cases(rng):
    """tests/test_engine_bus.py's error table as the testbench's setups and accesses."""
    cases = []
    for name, kind, access, code in bus_tests.ERRORS:
        rec = _Recorder(EngineBusModel(bus_tests.PARAMS))
        if kind == "images":
            asyncio.run(rec.write(bus_tests.A("IMAGE", image_slot=0, plane=0, image_chunk=0),
                                  0xFFFF))
        elif kind == "run":
            asyncio.run(rec.write(bus_tests.csr("CMD"), Op.RUN))
        elif kind is not None:
            async def load():
                drv = EngineDriver(rec, bus_tests.PARAMS)
                net = random_net(rng, bus_tests.FIT, 5, bus_tests.MACRO.rows,
                                 bus_tests.MACRO.cols)
                await drv.load_network(net)
                await drv.write_images(rng.integers(0, 32, (3, bus_tests.FIT[0])))
                if kind in ("busy", "ran"):
                    await rec.write(bus_tests.csr("CLASSIFY"), 2)
                if kind == "ran":
                    rec.ops.append(("idle", 0, 10_000))
                if kind.startswith("loaded+"):
                    for (layer, part), word in eval(kind[len("loaded+"):],
                                                    vars(bus_tests)).items():
                        await rec.write(bus_tests.A("PROGRAM", layer=layer, part=part), word)
            asyncio.run(load())
        if access[0] == "w":
            data, sel = (list(access[2:]) + [0xF])[:2]
            entry = ["w", int(access[1]()), int(data), int(sel)]
        else:
            entry = ["r", int(access[1]()), 0, 0xF]
        cases.append(dict(name=name, setup=rec.ops, code=int(code), access=entry))
    return cases


#: Icarus by default: one case per code and setup (the whole table takes about 2 min).
ICARUS_ERRORS = {"sel", "bank 6 flip", "result slot 3", "LAST_SCORE", "busy IMAGE",
                 "busy after a RUN", "first bank 6", "CMD opcode 5", "RESULT not yet done",
                 "banks beyond"}
ERROR_SIMS = [("verilator", None), ("icarus", ICARUS_ERRORS),
              pytest.param("icarus", None, marks=pytest.mark.slow, id="icarus-all")]


@pytest.mark.parametrize("sim, subset", ERROR_SIMS, ids=["verilator", "icarus", "icarus-all"])
def test_every_error_of_the_bus_model_table(sim, subset, seed, rng):
    engine = "32x12-P4-all"
    assert engine_runner.engine_of(engine) == bus_tests.PARAMS
    cases = [c for c in error_cases(rng) if subset is None or c["name"] in subset]
    result = engine_runner.run(engine, sim, "errors", seed=seed, args=dict(errors=cases))
    print(f"seed {seed}: {len(cases)} error cases on {sim} in {result.seconds:.1f} s")


def _dataset(sim, dataset, count, seed):
    from verif.cocotb.nets import prepare
    files = prepare(dataset)
    data = np.load(files["images"])
    case = dict(model=str(files["net"]), images=data["x"][:count].astype(int).tolist(),
                labels=data["y"][:count].astype(int).tolist(), chip={})
    result = engine_runner.run("32x96-B5", sim, "networks", seed=seed,
                               args=dict(networks=[case]))
    stats = result.stats["network0"]
    assert stats["identical"] and len(stats["predictions"]) == count
    print(f"{dataset}: {count} images on {sim} 32x96-B5 equal the engine model, accuracy "
          f"{stats['accuracy']:.4f}, {stats['cycles_per_image']} cycles per image "
          f"({result.seconds:.1f} s)")


def test_digits_200_images_on_the_32x96_engine(seed):
    """The digits network (models.bnn recipe, 64-96-96-10) end to end: 200 validation
    images through the image buffer, classes equal EngineModel's."""
    _dataset("verilator", "digits", 200, seed)


@pytest.mark.slow
def test_mnist_200_images_on_the_32x96_engine(seed):
    _dataset("verilator", "mnist", 200, seed)
