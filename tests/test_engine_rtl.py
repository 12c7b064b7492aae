# amaranth: UnusedElaboratable=no
"""The network engine's RTL (``rtl/engine.py`` and its parts) in the Amaranth simulator,
against the golden models only (``models/engine_bus.py``, ``models/engine.py``).

Every bus test runs ``CimEngine`` in lockstep with ``EngineBusModel``
(``tests/engine_bench.py``): every read of the RTL must equal the model's read in the
same cycle, the STATUS polls of a CLASSIFY included, so cycle counts, BUSY, DONE,
RESULTS and ENGINE_CYCLES are checked cycle for cycle. The error table is
``tests/test_engine_bus.py``'s (the same accesses, setups and codes).
"""

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Elaboratable

from host.engine import EngineDriver, EngineRegisterMap
from models import engine as E
from models.engine_params import EngineRegion
from models.params import NONIDEALITIES, MacroParams, Op, Region, Status
from rtl.engine import CimEngine
from rtl.memory_port import MemoryBusPort

from . import test_engine_bus as bus_tests
from .engine_bench import run_engine
from .random_nets import random_net
from .test_engine_model import random_registers

ALL = frozenset(NONIDEALITIES)


def every_word(ep):
    """Every word address of every memory region and every CSR of ``ep``'s map."""
    amap = EngineRegisterMap(ep)
    sizes = ep.field_sizes()
    addrs = [c["offset"] for c in ep.csrs()]
    for r in ep.regions():
        if r["region"] == Region.CSR:
            continue
        for index in np.ndindex(*[sizes[n] for n, _ in r["fields"]]):
            addrs.append(int(amap.addr(r["name"], **dict(zip((n for n, _ in r["fields"]), index)))))
    return addrs


async def read_everything(tr, ep):
    """Read every word of the map on the RTL and the model (the lockstep compares)."""
    for addr in every_word(ep):
        await tr.read(addr)


# --- construction ---------------------------------------------------------------------------

def test_constructor_refuses_what_is_not_built():
    p = MacroParams(8, 6, pipeline=4)
    with pytest.raises(ValueError, match=r"^pipeline must be in 0..3 for the engine, not 4$"):
        CimEngine(E.EngineParams(p, 2, 2, 2, 8))
    with pytest.raises(TypeError, match="params must be an EngineParams"):
        CimEngine(p)
    ep = E.EngineParams(MacroParams(8, 6), 2, 2, 2, 8)
    with pytest.raises(ValueError, match=r"^weights_in_block_ram needs held_until_ack"):
        CimEngine(ep, weights_in_block_ram=True)
    with pytest.raises(ValueError, match=r"^weights_in_block_ram needs banks$"):
        MemoryBusPort(ep.macro, weights_in_block_ram=True)


@pytest.mark.parametrize("p", [MacroParams(8, 6, input_bits=3),
                               MacroParams(16, 12, cols_per_cycle=4, nonideal=ALL, counters=True)],
                         ids=["8x6", "16x12-P4-all-counters"])
def test_engine_converts_to_verilog(p):
    from amaranth.back import verilog
    ep = E.EngineParams(p, weight_banks=5, layers=3, image_slots=3, max_width=40)
    text = verilog.convert(CimEngine(ep), name="cim_engine", emit_src=False)
    assert "module cim_engine" in text and "wb__adr" in text


@pytest.mark.slow
def test_the_32x96_engine_converts_to_verilog():
    from amaranth.back import verilog
    ep = E.EngineParams(MacroParams(32, 96, input_bits=5), weight_banks=10, layers=3,
                        image_slots=200, max_width=100)
    assert "module cim_engine" in verilog.convert(CimEngine(ep), name="cim_engine")


# --- the map: CSRs, every memory, every error -------------------------------------------------

def random_word(rng, region, fields):
    """A random word that a write of ``region`` at ``fields`` accepts."""
    if region["name"] == "PROGRAM":
        return [int(rng.integers(1, 71)), int(rng.integers(1, 71)),
                int(rng.integers(1, 7)) | int(rng.integers(1, 7)) << 16,
                bus_tests.mode(int(rng.integers(0, 6)), int(rng.integers(1, 6)),
                               int(rng.integers(0, 2)), int(rng.integers(0, 2)))
                ][fields["part"]]
    if region["kind"] == "signed":
        lo, hi = -(1 << (region["width"] - 1)), (1 << (region["width"] - 1)) - 1
        return int(rng.integers(lo, hi + 1)) & 0xFFFF_FFFF
    if region["kind"] == "unsigned":
        return int(rng.integers(0, 1 << region["width"]))
    return int(rng.integers(0, 1 << 32))


def test_every_csr_and_every_memory_word_reads_back(rng):
    """Random words into every writable word (the model's read-back test), then every word
    of the map read on both."""
    ep = bus_tests.PARAMS

    async def body(tr, model):
        for addr in [c["offset"] for c in ep.csrs()]:
            await tr.read(addr)
        amap = EngineRegisterMap(ep)
        sizes = ep.field_sizes()
        for r in ep.regions():
            if r["access"] == "ro" or r["region"] == Region.CSR:
                continue
            for index in np.ndindex(*[sizes[n] for n, _ in r["fields"]]):
                fields = dict(zip((n for n, _ in r["fields"]), index))
                await tr.write(int(amap.addr(r["name"], **fields)), random_word(rng, r, fields))
        assert model.macro.errcode == 0
        await read_everything(tr, ep)
        return tr.accesses
    assert run_engine(ep, body) > 600


def _prepare(kind, rng):
    """``tests/test_engine_bus.py``'s setups, as accesses through the transport."""
    async def prepare(tr, model):
        if kind is None:
            return
        if kind == "images":
            await tr.write(bus_tests.A("IMAGE", image_slot=0, plane=0, image_chunk=0), 0xFFFF)
            return
        if kind == "run":
            await tr.write(bus_tests.csr("CMD"), Op.RUN)
            assert model.busy()
            return
        drv = EngineDriver(tr, bus_tests.PARAMS)
        net = random_net(rng, bus_tests.FIT, 5, bus_tests.MACRO.rows, bus_tests.MACRO.cols)
        await drv.load_network(net)
        await drv.write_images(rng.integers(0, 32, (3, bus_tests.FIT[0])))
        if kind == "busy":
            await tr.write(bus_tests.csr("CLASSIFY"), 2)
            assert model.busy()
        elif kind == "ran":
            await tr.write(bus_tests.csr("CLASSIFY"), 2)
            await tr.idle(10_000)
        elif kind.startswith("loaded+"):
            for (layer, part), word in eval(kind[len("loaded+"):], vars(bus_tests)).items():
                await tr.write(bus_tests.A("PROGRAM", layer=layer, part=part), word)
            assert model.macro.errcode == 0
    return prepare


#: The table's cases of the default run here (the whole table runs by default on
#: Verilator in tests/test_cocotb_engine.py; here it is ``slow``: about 4 minutes).
DEFAULT_ERRORS = {"sel", "overfull image buffer", "WEIGHT_BANKS", "busy CLASSIFY",
                  "mode reserved", "RESULT not yet done", "no last layer"}
ERROR_CASES = [pytest.param(*e, id=e[0], marks=() if e[0] in DEFAULT_ERRORS else pytest.mark.slow)
               for e in bus_tests.ERRORS]


@pytest.mark.parametrize("pipeline", [0, 2])
def test_abandoned_writes_are_performed_as_presented(pipeline, rng):
    """A write to a random word of every writable memory region whose master drops
    ``cyc`` 1..bus_latency cycles after the access and presents another request at once
    (ARCHITECTURE.md section 6): no ack, and the engine performs the write as it was
    presented (at L = 2 it acts a cycle after the access, from its own copy of the
    request), as the model does; then every word of the map is read on both."""
    ep = dataclasses.replace(bus_tests.PARAMS,
                             macro=dataclasses.replace(bus_tests.MACRO, pipeline=pipeline))

    async def body(tr, model):
        amap, sizes = EngineRegisterMap(ep), ep.field_sizes()
        for r in ep.regions():
            if r["access"] == "ro" or r["region"] == Region.CSR:
                continue
            fields = {n: int(rng.integers(sizes[n])) for n, _ in r["fields"]}
            addr, word = int(amap.addr(r["name"], **fields)), random_word(rng, r, fields)
            await tr.rtl.abandoned_write(addr, word, int(rng.integers(1, ep.bus_latency + 1)))
            model.write(addr, word)
        assert model.macro.errcode == 0
        await read_everything(tr, ep)
    run_engine(ep, body)


@pytest.mark.parametrize("name, kind, access, code", ERROR_CASES)
def test_every_error_of_the_bus_model_table(name, kind, access, code, rng):
    """Each access of the model's error table on the RTL: the same ERRCODE and ERRADDR,
    a faulty read 0, the first error kept, the clear; then every word of the map (after
    the engine is idle) equals the model's, which the faulty access left unchanged."""
    ep = bus_tests.PARAMS
    prepare = _prepare(kind, rng)
    csr = bus_tests.csr

    async def body(tr, model):
        await prepare(tr, model)
        before = bus_tests.state(model)
        addr = access[1]()
        if access[0] == "w":
            await tr.write(addr, *access[2:])
        else:
            assert await tr.read(addr) == 0
        assert bus_tests.same(bus_tests.state(model), before)
        assert await tr.read(csr("STATUS")) >> Status.ERROR & 1
        assert (await tr.read(csr("ERRCODE")), await tr.read(csr("ERRADDR"))) == (code, addr)
        await tr.read(14 << ep.region_shift)
        assert await tr.read(csr("ERRCODE")) == code
        await tr.write(csr("STATUS"), 1 << Status.ERROR)
        assert await tr.read(csr("ERRCODE")) == 0
        while model.busy():
            await tr.idle(50)
        await read_everything(tr, ep)
    run_engine(ep, body)


# --- classifying: the clock, STOP, random networks ------------------------------------------

@pytest.mark.parametrize("pipeline, board", [(0, False), (2, False), (3, True)])
def test_results_image_by_image_stop_and_a_run_through_cmd(pipeline, board, rng):
    """The model's clock test on the RTL: STATUS and RESULTS polled every access while a
    CLASSIFY runs, STOP at a random cycle, a STOP when idle; then a RUN through CMD with
    bank 0, polled until done; every word of the map read back in between. The map of
    tests/test_engine_bus.py's engine, at L = 0 and L = 2 (bus latency 3); and fully
    parallel at L = 3 as the board tops build it (the weight banks in block RAM, the
    lanes' weights registered after it)."""
    csr = bus_tests.csr
    ep = dataclasses.replace(bus_tests.PARAMS, macro=dataclasses.replace(
        bus_tests.MACRO, pipeline=pipeline, counters=True,
        cols_per_cycle=bus_tests.MACRO.cols if board else bus_tests.MACRO.cols_per_cycle))
    net = random_net(rng, bus_tests.FIT, 5, bus_tests.MACRO.rows, bus_tests.MACRO.cols)
    per = E.build_program(net, ep.macro).image_cycles()

    async def body(tr, model):
        drv = EngineDriver(tr, ep)
        await drv.load_network(net)
        await drv.write_images(rng.integers(0, 32, (3, bus_tests.FIT[0])))
        await tr.write(csr("CLASSIFY"), 3)
        while model.busy():
            await tr.read(csr("STATUS"))
            await tr.read(csr("RESULTS"))
            await tr.read(csr("ENGINE_CYCLES"))
            await tr.read(bus_tests.A("RESULT", image_slot=int(rng.integers(0, 3))))
            await tr.write(csr("STATUS"), 1 << Status.ERROR)
        assert await tr.read(csr("ENGINE_CYCLES")) == 3 * per
        await tr.write(csr("CLASSIFY"), 3)
        await tr.idle(int(rng.integers(0, per)))
        await tr.write(csr("STATUS"), 1 << 6)
        await tr.idle(3 * per)
        assert 1 <= await tr.read(csr("RESULTS")) <= 2
        # After a STOP: ACC, OUT, INPUT, STATUS and the counters those of the images done.
        await read_everything(tr, ep)
        await tr.write(csr("STATUS"), 1 << Status.ERROR | 1 << 6)
        await read_everything(tr, ep)
        await tr.write(csr("CLASSIFY"), 2)
        await tr.idle(2 * per)
        await read_everything(tr, ep)
        # The bank address stays where a bus access left it until the CMD write acts:
        # the last bank first, so that the RUN's switch to bank 0 is seen in time.
        await tr.read(int(EngineRegisterMap(ep).addr("WEIGHT", bank=ep.weight_banks - 1, group=0,
                                                      slot=0, chunk=0)))
        await tr.write(csr("CMD"), Op.RUN | 3 << 8)
        while model.busy():
            await tr.read(csr("STATUS"))
        await read_everything(tr, ep)
    run_engine(ep, body, board=board)


MACROS = {
    "8x6-all": MacroParams(8, 6, input_bits=3, nonideal=ALL),
    "8x6-P2-all": MacroParams(8, 6, input_bits=3, cols_per_cycle=2, nonideal=ALL),
    "16x12-P4-B2": MacroParams(16, 12, input_bits=2, cols_per_cycle=4),
    "12x5-P1-K2-offset": MacroParams(12, 5, input_bits=3, cols_per_cycle=1, comp_rows=2,
                                     nonideal=("offset",)),
    "64x5-B2": MacroParams(64, 5, input_bits=2),
    "96x4-B2-gain": MacroParams(96, 4, input_bits=2, nonideal=("gain",)),
    "8x6-P2-all-L1": MacroParams(8, 6, input_bits=3, cols_per_cycle=2, nonideal=ALL, pipeline=1),
    "16x12-P4-L2-counters": MacroParams(16, 12, input_bits=2, cols_per_cycle=4, pipeline=2,
                                        counters=True),
    "8x6-all-L3": MacroParams(8, 6, input_bits=3, nonideal=ALL, pipeline=3),
    "8x6-A32-W12": MacroParams(8, 6, input_bits=3, acc_bits=32, readout_bits=12),
}
#: Slower sets: the 32x96 macro.
SLOW_MACROS = {"32x96-B5": MacroParams(32, 96, input_bits=5)}


def random_sizes(rng, p):
    """Random layer sizes: 2..4 layers, several row and column tiles, any last width."""
    layers = int(rng.integers(2, 5))
    sizes = [int(rng.integers(1, 3 * p.rows + 1))]
    sizes += [int(rng.integers(1, 3 * p.cols + 1)) for _ in range(layers - 1)]
    return tuple(sizes)


@pytest.mark.parametrize("name", sorted(MACROS) + [
    pytest.param(name, marks=pytest.mark.slow) for name in sorted(SLOW_MACROS)])
def test_random_networks_classify_as_the_engine_model(name, seed, rng):
    """Random networks and chips through ``EngineDriver`` on the RTL (chip registers
    through the macro's map, CALIBRATE, the trim, the program, images streamed through a
    small buffer): every read in lockstep with the bus model; classes, the last scores
    and ACC equal ``EngineModel``'s (of every image with one slot, of each batch's last
    with more); ENGINE_CYCLES = images x
    ``image_cycles``. The runs with several slots build the engine as the board tops do
    (weight banks in block RAM, requests held to the ack)."""
    p = {**MACROS, **SLOW_MACROS}[name]
    for slots in (1, int(rng.integers(2, 4))):      # one slot: every image's ACC is read
        sizes = random_sizes(rng, p)
        net = random_net(rng, sizes, p.input_bits, p.rows, p.cols)
        ep = E.EngineParams.for_model(net, p, image_slots=slots)
        images = rng.integers(0, 1 << net.layers[0].planes, (5, sizes[0]))
        regs = random_registers(rng, p)
        ref = E.EngineModel(ep)
        ref.set_nonideal(**regs)
        ref.calibrate()
        ref.load(net, residual=ref.measure_residual())
        want = ref.classify(images)
        print(f"seed {seed}: {name} net {sizes} slots {slots}")

        async def body(tr, model):
            drv = EngineDriver(tr, ep)
            await drv.write_chip(**regs)
            await drv.calibrate()
            await drv.load_network(net, residual=await drv.measure_residual())
            got, acc, scores = [], [], []
            for start in range(0, len(images), slots):
                batch = images[start:start + slots]
                await drv.write_images(batch)
                got.append(await drv.run(len(batch)))
                acc.append(await drv.last_acc())
                scores.append(await drv.last_scores())
            for c in ep.csrs():             # the activity counters too, when built
                await tr.read(c["offset"])
            return np.concatenate(got), acc, scores, await drv.cycles()
        got, acc, scores, cycles = run_engine(ep, body, board=slots > 1)
        assert np.array_equal(got, want)
        ends = [min(s + slots, len(images)) - 1 for s in range(0, len(images), slots)]
        assert all(np.array_equal(a, ref.acc[i]) for a, i in zip(acc, ends))
        assert all(np.array_equal(s, ref.scores[i]) for s, i in zip(scores, ends))
        last = len(images) - ends[-2] - 1 if len(ends) > 1 else len(images)
        assert cycles == last * ref.program.image_cycles()


# --- lint ---------------------------------------------------------------------------------

LINT_SETS = {
    "8x6-B3": E.EngineParams(MacroParams(8, 6, input_bits=3), 5, 3, 3, 40),
    "16x12-P4-all-counters": E.EngineParams(
        MacroParams(16, 12, cols_per_cycle=4, nonideal=ALL, counters=True), 5, 2, 1, 40),
    "96x7-P1-B1": E.EngineParams(MacroParams(96, 7, input_bits=1, cols_per_cycle=1), 3, 1, 4, 300),
    "16x12-P4-all-L2": E.EngineParams(
        MacroParams(16, 12, cols_per_cycle=4, nonideal=ALL, pipeline=2), 5, 3, 2, 40),
    "8x6-A32": E.EngineParams(MacroParams(8, 6, input_bits=3, acc_bits=32, readout_bits=12),
                              4, 2, 2, 20),
}


@pytest.mark.parametrize("name, board", [(name, False) for name in sorted(LINT_SETS)] + [
    ("16x12-P4-all-L2", True), ("96x7-P1-B1", True)])
def test_engine_verilog_is_lint_clean(name, board, tmp_path):
    """``verilator --lint-only -Wall`` with the waivers of tests/test_lint.py: no warning
    (also as the board tops build the engine: ``board``)."""
    import subprocess

    from amaranth.back import verilog

    from verif.toolchain import require_tool, tool_env
    from .test_lint import LINT_FLAGS
    path = tmp_path / "cim_engine.v"
    engine = CimEngine(LINT_SETS[name], held_until_ack=board, weights_in_block_ram=board)
    path.write_text(verilog.convert(engine, name="cim_engine", emit_src=False))
    env = tool_env()
    result = subprocess.run([require_tool("verilator", env), *LINT_FLAGS, str(path)], env=env,
                            capture_output=True, text=True, timeout=300)
    report = result.stdout + result.stderr
    assert result.returncode == 0 and "%Warning" not in report, report


# --- the program check's stages -------------------------------------------------------------

#: Program words that break the loaded FIT program (layer, part): each rule of the check,
#: the bank range through the table of T x J.
BREAKS = {"bank range": (0, 3, bus_tests.mode(first_bank=3)),
          "tiles": (0, 2, 1 | 2 << 16),
          "chain": (1, 0, 19),
          "no last layer": (1, 3, bus_tests.mode(first_bank=4, planes=1, source=1, binary=1))}


@pytest.mark.parametrize("pipeline", [0, 1])
def test_a_classify_right_after_a_program_write_sees_its_check(pipeline, rng):
    """The program check takes ``bus_latency`` register stages: a CLASSIFY in the first
    cycle the bus allows after a PROGRAM write that breaks the program answers
    BAD_PROGRAM, and one right after the write that repairs it runs (lockstep with the
    model, which checks the program as written)."""
    from models.params import EngineErrCode
    ep = dataclasses.replace(bus_tests.PARAMS,
                             macro=dataclasses.replace(bus_tests.MACRO, pipeline=pipeline))
    csr, A = bus_tests.csr, bus_tests.A

    async def body(tr, model):
        drv = EngineDriver(tr, ep)
        net = random_net(rng, bus_tests.FIT, 5, ep.macro.rows, ep.macro.cols)
        await drv.load_network(net)
        await drv.write_images(rng.integers(0, 32, (2, bus_tests.FIT[0])))
        codes = []
        for layer, part, word in BREAKS.values():
            good = await tr.read(A("PROGRAM", layer=layer, part=part))
            await tr.write(A("PROGRAM", layer=layer, part=part), word)
            await tr.write(csr("CLASSIFY"), 2)
            codes.append(await tr.read(csr("ERRCODE")))
            await tr.write(csr("STATUS"), 1 << Status.ERROR)
            await tr.write(A("PROGRAM", layer=layer, part=part), good)
            await tr.write(csr("CLASSIFY"), 2)
            codes.append(await tr.read(csr("ERRCODE")))
            await tr.idle(2000)
            assert not model.busy()
            codes.append(await tr.read(csr("RESULTS")))
            await tr.read(A("RESULT", image_slot=1))
        return codes
    assert run_engine(ep, body) == [EngineErrCode.BAD_PROGRAM, 0, 2] * len(BREAKS)


# --- the argmax's two stages ------------------------------------------------------------------

@pytest.mark.parametrize("cols_per_cycle", [6, 2])
def test_argmax_stages_give_the_lowest_best_class_with_no_added_cycle(cols_per_cycle, rng):
    """The result buffer alone, driven as the sequencer's scan drives it: one class per
    cycle (column tiles apart by idle cycles), the result write in the cycle right after
    the last compare (which that compare must reach: the forward). Scores from a small
    range give ties and last-class winners; the class must be numpy's argmax (the lowest
    index among equal maxima), LAST_ACC / LAST_SCORE every class's ACC and score."""
    from amaranth.sim import Simulator

    from rtl.result_buffer import ResultBuffer

    p = MacroParams(8, 6, input_bits=3, cols_per_cycle=cols_per_cycle)
    ep = E.EngineParams(p, 5, 3, 4, 13)
    P, A, C = p.cols_per_cycle, p.acc_bits, p.cols
    dut = ResultBuffer(ep)
    images = [rng.integers(-3, 3, size=(2, n)) for n in (13, 7, 1, 12)]
    # Last-class winners and ties with the first class.
    images[0][:, -1] = 9
    images[3][0, :] = 2
    images[3][1, :] = 0

    def packed(values):
        return sum((int(v) & ((1 << A) - 1)) << (A * k) for k, v in enumerate(values))

    def read_of(number, offset):
        """The access record of a bus read (no access with ``number`` None)."""
        return {"valid": number is not None, "we": 0, "offset": offset,
                "regions": 0 if number is None else 1 << number, "regs": 0, "data": 0}

    seen = {}

    async def bench(ctx):
        for slot, (acc, corr) in enumerate(images):
            for j in range(-(-len(acc) // C)):
                for c in range(j * C, min(len(acc), (j + 1) * C)):
                    lane = c % P
                    acc_words = rng.integers(-16, 16, size=P)
                    corr_words = rng.integers(-16, 16, size=P)
                    acc_words[lane], corr_words[lane] = acc[c], corr[c]
                    ctx.set(dut.compare, 1)
                    ctx.set(dut.first, c == 0)
                    ctx.set(dut.lane, lane)
                    ctx.set(dut.neuron, c)
                    ctx.set(dut.acc_lanes, packed(acc_words))
                    ctx.set(dut.corr_lanes, packed(corr_words))
                    await ctx.tick()
                ctx.set(dut.compare, 0)
                # The next column tile's RUN: cycles whose words are nobody's.
                ctx.set(dut.acc_lanes, packed(rng.integers(-16, 16, size=P)))
                if (j + 1) * C < len(acc):
                    await ctx.tick().repeat(int(rng.integers(1, 4)))
            ctx.set(dut.result_write, 1)
            ctx.set(dut.slot, slot)
            await ctx.tick()
            ctx.set(dut.result_write, 0)
            if slot == len(images) - 1:
                break
            await ctx.tick().repeat(int(rng.integers(1, 3)))
        for name, number, count in (("result", EngineRegion.RESULT, len(images)),
                                    ("acc", EngineRegion.LAST_ACC, images[-1][0].size),
                                    ("score", EngineRegion.LAST_SCORE, images[-1][0].size)):
            for k in range(count):
                ctx.set(dut.access, read_of(number, k))
                await ctx.tick()
                ctx.set(dut.access, read_of(None, 0))
                seen[name, k] = ctx.get(dut.answer)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert [seen["result", k] for k in range(len(images))] == \
        [int(np.argmax(acc + corr)) for acc, corr in images]
    acc, corr = images[-1]
    assert [seen["acc", k] for k in range(acc.size)] == [int(v) & 0xFFFFFFFF for v in acc]
    assert [seen["score", k] for k in range(acc.size)] == \
        [int(v) & 0xFFFFFFFF for v in acc + corr]


# --- formal: the sequencer's indices stay within the configured ranges --------------------

class SequencerHarness(Elaboratable):
    """``EngineSequencer`` with its ``ProgramMemory`` and a free bus and macro: every
    cycle of a CLASSIFY, the bank presented to the bank memories, the layer and the image
    slot are below WEIGHT_BANKS, LAYERS and IMAGE_SLOTS, and the bank presented is the
    bank of the next cycle's RUN (but in the result write, where it is the current one).

    Assumptions: the front end's rules (at most one access every bus_latency + 1 cycles,
    hitting
    one region; CLASSIFY only while idle, with a program that passes its (registered)
    check and 1..IMAGE_SLOTS images; PROGRAM writes only while idle); the macro's
    sequencer is free (``run_done`` at any time) but in the cycle after a RUN's issue
    (its read cycle: a RUN takes at least three cycles). Invariants that make the proof
    inductive: BUSY is a phase other than IDLE; the program check holds and its
    registers (the first stage's, ``program_ok``) equal it; the current layer lies within the checked program (every
    earlier entry is binary) and its entry registers equal its program words; row and
    column tile within the layer's, bank = first bank + column tile x T + row tile;
    capture, scan and result cycles follow the last row tile of a binary (capture) or
    the last (scan, result) layer; slot < CLASSIFY count <= IMAGE_SLOTS; but in the
    image start and the cycle after an issue: the last-row and last-column flags are
    those of the state, the upcoming bank is bank + 1 or, after the layer's last tile,
    the first bank of the next layer (entry 0's after the last layer), the entry
    registered ahead is the next layer's, and in a scan the last-scan flag is
    scan == live.
    ``drop_program_check``: without the program check's assumption (must fail).
    """

    def __init__(self, ep, drop_program_check=False):
        self.ep, self.drop = ep, drop_program_check

    def elaborate(self, platform):
        from amaranth.asserts import AnySeq
        from amaranth.hdl import Assert, Assume, Cat, Const, Cover, Module, Mux, Signal

        from models.engine_params import EngineCSR
        from rtl.engine_front_end import engine_access_layout
        from rtl.engine_sequencer import EnginePhase, EngineSequencer
        from rtl.logic import ult
        from rtl.program_memory import ProgramMemory, entry_fields, presented as shown
        ep = self.ep
        m = Module()
        program, seq = ProgramMemory(ep), EngineSequencer(ep)
        # Elaborated here, so that their registers (``state``, ``entries``) are at hand
        # (the components themselves are then never elaborated: no warning about that).
        program._MustUse__silence = seq._MustUse__silence = True
        m.submodules.program = program.elaborate(platform)
        m.submodules.seq = seq.elaborate(platform)
        access = Signal(engine_access_layout(ep))
        m.d.comb += [access.eq(AnySeq(len(access.as_value()))), program.access.eq(access),
                     seq.access.eq(access),
                     seq.macro_access.eq(AnySeq(len(seq.macro_access.as_value())))]
        for name in ("run_done", "macro_busy", "group_store", "group", "bus_bank"):
            m.d.comb += getattr(seq, name).eq(AnySeq(len(getattr(seq, name))))
        if ep.macro.pipeline:
            # The macro sequencer's contract (tests/test_sequencer.py): a RUN's end is
            # announced the cycle before.
            announced = Signal()
            m.d.comb += seq.run_ends_next.eq(AnySeq(1))
            m.d.sync += announced.eq(seq.run_ends_next)
            m.d.comb += Assume(seq.run_done == announced)
            # A RUN takes at least four cycles (read, a plane, a drain, the write-back):
            # no announcement right after another or right after the RUN's issue.
            m.d.comb += Assume(~(seq.run_ends_next & (announced | seq.state["issued"])))
        m.d.comb += [getattr(seq, n).eq(getattr(program, n)) for n in entry_fields(ep)]
        m.d.comb += [program.layer.eq(seq.upcoming_layer),
                     seq.program_classes.eq(program.classes)]

        state, entries, entry = seq.state, program.entries, seq.state["entry"]
        busy, phase = state["busy"], state["phase"]
        write = access.valid & access.we
        regions = access.regions
        classify = write & regions[Region.CSR] & access.regs[EngineCSR.CLASSIFY]
        program_ok = Const(1, 1) if self.drop else program.program_ok
        # The front end accepts an access at most every bus_latency + 1 cycles.
        from rtl.pipeline_timing import PipelineTiming
        latency = PipelineTiming.of(ep.macro.pipeline).bus_latency
        accepted_before = Signal(latency)
        m.d.sync += accepted_before.eq(Cat(access.valid, accepted_before[:-1]))
        m.d.comb += [
            Assume(~(access.valid & accepted_before.any())),
            Assume(~access.valid | ~(regions & (regions - 1)[:len(regions)]).any()),
            Assume(~classify | (~busy & program_ok & access.data.any()
                                & ult(access.data, ep.image_slots + 1))),
            Assume(~(write & regions[EngineRegion.PROGRAM]) | ~busy),
            Assume(~(seq.run_done & state["issued"])),
        ]
        P = EnginePhase
        invariants = [program.program_ok, program.program_ok == program.check,
                      *(reg == value for reg, value in program.stage_registers),
                      ult(state["layer"], ep.layers),
                      ult(state["row_tile"], entry["row_tiles"]),
                      ult(state["col_tile"], entry["col_tiles"]),
                      state["bank"] == (entry["first_bank"] + state["col_tile"]
                                        * entry["row_tiles"] + state["row_tile"]
                                        )[:len(state["bank"])],
                      ult(state["slot"], state["count"]),
                      ult(state["count"], ep.image_slots + 1)]
        for l in range(ep.layers):
            here = state["layer"] == l
            invariants.append(~here | Cat(Const(1, 1), *(entries[k]["binary"]
                                                         for k in range(l))).all())
            invariants += [~here | (entry[n] == shown(ep, n, entries[l][n]))
                           for n in entry_fields(ep)]
        late = (phase == P.CAPTURE) | (phase == P.SCAN) | (phase == P.RESULT)
        invariants += [~late | ((state["row_tile"] + 1)[:len(entry["row_tiles"])]
                                == entry["row_tiles"]),
                       ~(phase == P.CAPTURE) | entry["binary"],
                       ~((phase == P.SCAN) | (phase == P.RESULT)) | ~entry["binary"]]
        # The flags and the upcoming bank, from the state (the program's order, written
        # here without the sequencer's own expressions).
        C = ep.macro.cols
        bank_bits = len(state["bank"])
        last_row = (state["row_tile"] + 1) == entry["row_tiles"]
        last_col = (state["col_tile"] + 1) == entry["col_tiles"]
        following = Mux(entry["binary"], state["layer"] + 1, 0)
        following_first = entries[0]["first_bank"]
        for l in range(1, ep.layers):
            following_first = Mux(following == l, entries[l]["first_bank"], following_first)
        left = entry["outputs"] - state["col_tile"] * C
        live = Mux(left < C, left, C)
        settled = (phase != P.START) & ~state["issued"]
        following_entry = {n: shown(ep, n, entries[0][n]) for n in entry_fields(ep)}
        for l in range(1, ep.layers):
            following_entry = {n: Mux(following == l, shown(ep, n, entries[l][n]),
                                      following_entry[n])
                               for n in entry_fields(ep)}
        invariants += [~settled | (state["ahead"][n] == following_entry[n]) for n in entry_fields(ep)]
        invariants += [~settled | (state["last_row"] == last_row),
                       ~settled | (state["last_col"] == last_col),
                       ~settled | (state["upcoming"] == Mux(last_row & last_col,
                                                            following_first,
                                                            state["bank"] + 1)[:bank_bits]),
                       ~settled | (phase != P.SCAN) | (state["scan_end"] == (state["scan"] == live))]
        # The issue of a RUN with the upcoming bank (registered a cycle ahead with a
        # pipeline): a RUN's end but its row tile's last, a capture, a scan's last cycle but
        # the last column tile's.
        invariants.append(state["bank_ahead"] == (
            (phase == P.RUN) & seq.run_done & ~state["last_row"] | (phase == P.CAPTURE)
            | (phase == P.SCAN) & state["scan_end"] & ~state["last_col"]))
        # The bank presented in a cycle is the next cycle's (but in the result write).
        presented, presented_busy = Signal(bank_bits), Signal()
        m.d.sync += [presented.eq(seq.bank), presented_busy.eq(busy & (phase != P.RESULT))]
        with m.If(presented_busy):
            m.d.comb += Assert(presented == state["bank"])
        m.d.comb += Assert(busy == (phase != P.IDLE))
        for l in range(ep.layers):      # a PROGRAM write keeps the first bank's 12 bits
            m.d.comb += Assert(~entries[l]["first_bank"][12:].any())
        with m.If(busy):
            m.d.comb += [Assert(c) for c in invariants]
            m.d.comb += [Assert(ult(seq.bank, ep.weight_banks)),
                         Assert(ult(seq.upcoming_layer, ep.layers)),
                         Assert(ult(seq.image_slot, ep.image_slots))]
        with m.If(seq.result_write):
            m.d.comb += Assert(ult(seq.result_slot, ep.image_slots))
        # Not vacuous: the last slot's class is written.
        m.d.comb += Cover(seq.result_write & (state["slot"] == ep.image_slots - 1))
        return m


FORMAL_ENGINE = E.EngineParams(MacroParams(2, 3, input_bits=2, nonideal=()), weight_banks=5,
                               layers=3, image_slots=3, max_width=7)


@pytest.mark.parametrize("task, depth, pipeline", [("prove", 3, 0), ("cover", 40, 0),
                                                  ("prove", 3, 1)])
def test_formal_sequencer_indices_stay_in_range(task, depth, pipeline, tmp_path):
    """k-induction (yowasp-sby, yices): the bank, layer and slot indices never leave the
    configured ranges; the cover reaches the last slot's result. At L = 1 the program
    check has two register stages and accesses come every third cycle."""
    from verif.formal import run_sby
    ep = dataclasses.replace(FORMAL_ENGINE,
                             macro=dataclasses.replace(FORMAL_ENGINE.macro, pipeline=pipeline))
    result, summary = run_sby(SequencerHarness(ep), "engine", {task: depth}, tmp_path)
    assert result.returncode == 0, "\n".join(summary) or result.stdout[-3000:]
    assert (tmp_path / f"engine_{task}" / "PASS").exists(), "\n".join(summary)


def test_formal_fails_without_the_program_check(tmp_path):
    """A CLASSIFY of a program that was not checked can run the banks out of range: the
    same proof without the check's assumption must fail."""
    from verif.formal import run_sby
    result, summary = run_sby(SequencerHarness(FORMAL_ENGINE, drop_program_check=True),
                              "engine", {"prove": 3}, tmp_path)
    assert result.returncode != 0 and not (tmp_path / "engine_prove" / "PASS").exists()
    assert any("FAIL" in line for line in summary), "\n".join(summary)
