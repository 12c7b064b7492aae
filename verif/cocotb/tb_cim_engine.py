"""cocotb testbench of the network engine (``rtl/engine.py``) on Icarus and Verilator.

Every access goes through :class:`verif.engine_lockstep.LockstepTransport`: the
per-edge Wishbone master on the RTL (two cycles per access) and
``models.engine_bus.EngineBusModel`` on the same clock; any read the two answer
differently fails the test. ``CIM_ENGINE`` holds the engine's parameters (JSON of
``verif.engine_runner.engine_to_dict``), ``CIM_SEED`` the seed, ``CIM_ARGS``:

``networks`` (test ``networks``)
    A list of ``{"model": path, "images": [[...]], "chip": {register: values}}``: each
    network (a model file within the engine's capacity) is loaded on a chip with these
    registers, calibrated and trimmed through ``host.engine.EngineDriver``, and the
    images are classified through the buffer, one slot per CLASSIFY when
    ``"one_by_one"`` is true (then every image's LAST_ACC and LAST_SCORE are read); the
    classes, scores and ACC must equal ``models.engine.EngineModel``'s and
    ENGINE_CYCLES the images' ``image_cycles``. Statistics (``save_stats``): per case
    ``network<i>``: ``predictions``, ``identical``, ``cycles_per_image``, ``accesses``
    and, with ``"labels"``, ``accuracy``.
``errors`` (test ``errors``)
    The error table: ``{"name", "setup": [[op, addr, data]...], "access": [op, addr,
    data, sel], "code"}`` entries, each after a reset (on the RTL: a CLEAR, every
    writable memory word rewritten with its reset value, ``rst``) on both: the same
    ERRCODE and ERRADDR, a faulty read 0, the first error kept, the clear, and then
    every word of the map read on both.
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge

from host.engine import EngineDriver, EngineRegisterMap
from models.engine import EngineModel
from models.engine_bus import EngineBusModel
from models.engine_params import EngineRegion
from models.export import load_folded
from models.params import CSR, Op, Status
from verif.engine_lockstep import LockstepTransport
from verif.engine_runner import engine_from_dict
from verif.wishbone_master import CocotbWishboneTransport

from .tb import save_stats

TIMEOUT_S = 3600


def _setup():
    ep = engine_from_dict(json.loads(os.environ["CIM_ENGINE"]))
    seed = int(os.environ.get("CIM_SEED", "0"))
    args = json.loads(os.environ.get("CIM_ARGS", "{}"))
    return ep, seed, args


async def _reset(dut):
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def every_word(ep):
    """Every CSR and every word of every memory region of ``ep``'s map."""
    amap = EngineRegisterMap(ep)
    sizes = ep.field_sizes()
    addrs = [c["offset"] for c in ep.csrs()]
    for r in ep.regions():
        if r["region"] == 0:
            continue
        names = [n for n, _ in r["fields"]]
        for index in np.ndindex(*[sizes[n] for n in names]):
            addrs.append(int(amap.addr(r["name"], **dict(zip(names, index)))))
    return addrs


def _lockstep(dut, ep):
    rtl = CocotbWishboneTransport.from_dut(dut)

    async def idle(cycles):
        await ClockCycles(dut.clk, cycles)
    return LockstepTransport(rtl, EngineBusModel(ep), idle), rtl


@cocotb.test(timeout_time=TIMEOUT_S, timeout_unit="sec")
async def networks(dut):
    """Random networks and chips through EngineDriver, equal to EngineModel."""
    ep, seed, args = _setup()
    await _reset(dut)
    cases = args.get("networks", [])
    assert cases, "CIM_ARGS has no networks"
    for index, case in enumerate(cases):
        tr, _ = _lockstep(dut, ep)
        await _reset(dut)
        net = load_folded(case["model"])
        images = np.asarray(case["images"], np.int64)
        chip = {k: (np.asarray(v) if isinstance(v, list) else v) for k, v in case["chip"].items()}
        ref = EngineModel(ep)
        ref.set_nonideal(**chip)
        ref.calibrate()
        ref.load(net, residual=ref.measure_residual())
        want = ref.classify(images)
        drv = EngineDriver(tr, ep)
        await drv.write_chip(**chip)
        await drv.calibrate()
        await drv.load_network(net, residual=await drv.measure_residual())
        slots = 1 if case.get("one_by_one") else ep.image_slots
        got = []
        for start in range(0, len(images), slots):
            batch = images[start:start + slots]
            await drv.write_images(batch)
            got.append(await drv.run(len(batch)))
            last = start + len(batch) - 1
            assert np.array_equal(await drv.last_acc(), ref.acc[last]), f"image {last}: ACC"
            assert np.array_equal(await drv.last_scores(), ref.scores[last]), \
                f"image {last}: scores"
            assert await drv.cycles() == len(batch) * ref.program.image_cycles()
        got = np.concatenate(got)
        assert np.array_equal(got, want), f"classes {got.tolist()} != {want.tolist()}"
        stats = dict(predictions=got.tolist(), identical=True,
                     cycles_per_image=ref.program.image_cycles(), accesses=tr.accesses)
        if "labels" in case:
            accuracy = float(np.mean(got == np.asarray(case["labels"])))
            stats["accuracy"] = accuracy
            dut._log.info(f"accuracy {accuracy:.4f} on {len(got)} images, "
                          f"{ref.program.image_cycles()} cycles per image")
        save_stats(**{f"network{index}": stats})
        dut._log.info(f"seed {seed}: network {[l.inputs for l in net.layers]} -> "
                      f"{net.layers[-1].outputs}: {len(images)} images equal, "
                      f"{tr.accesses} accesses in lockstep")


@cocotb.test(timeout_time=TIMEOUT_S, timeout_unit="sec")
async def errors(dut):
    """The error table, each case from the reset state."""
    ep, seed, args = _setup()
    await _reset(dut)
    fresh = EngineBusModel(ep)
    # The memories keep their words through rst (the layer program is registers).
    resets = [(a, fresh.read(a)) for a in every_word(ep)
              if a >> ep.region_shift not in (0, EngineRegion.PROGRAM)
              and _writable(ep, a >> ep.region_shift)]
    status, errcode, erraddr = CSR.STATUS, CSR.ERRCODE, CSR.ERRADDR
    for case in args["errors"]:
        tr, rtl = _lockstep(dut, ep)
        await _reset(dut)
        await rtl.write(CSR.CMD, Op.CLEAR)               # ACC, a memory, to 0
        while await rtl.read(status) >> Status.BUSY & 1:
            pass
        for addr, word in resets:
            await rtl.write(addr, word)
        await _reset(dut)
        for op, addr, data in case["setup"]:
            if op == "w":
                await tr.write(addr, data)
            elif op == "idle":
                await tr.idle(data)
            else:
                await tr.read(addr)
        op, addr, data, sel = case["access"]
        if op == "w":
            await tr.write(addr, data, sel)
        else:
            assert await tr.read(addr) == 0, case["name"]
        assert await tr.read(status) >> Status.ERROR & 1, case["name"]
        assert (await tr.read(errcode), await tr.read(erraddr)) == (case["code"], addr), \
            case["name"]
        await tr.read(14 << ep.region_shift)
        assert await tr.read(errcode) == case["code"], case["name"]
        await tr.write(status, 1 << Status.ERROR)
        assert await tr.read(errcode) == 0, case["name"]
        while tr.model.busy():
            await tr.idle(50)
        for word in every_word(ep):
            await tr.read(word)
    dut._log.info(f"seed {seed}: {len(args['errors'])} error cases equal the model")


def _writable(ep, region):
    return any(r["region"] == region and r["access"] != "ro" for r in ep.regions())
