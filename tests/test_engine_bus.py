"""The network engine's bus interface (docs/ENGINE.md section 8, models/engine_bus.py):
every error of the map, read-back of every register and memory, the clock (BUSY,
RESULTS, STOP), and classification through the bus equal to ``EngineModel``."""

import asyncio

import numpy as np
import pytest

from models import engine as E
from models.engine_bus import EngineBusModel
from models.engine_params import ENGINE_REG_BITS, EngineRegion, EngineStatus, ProgramWord
from models.macro import MacroModel
from models.params import (CONTRACT_VERSION, NONIDEALITIES, EngineErrCode, ErrCode,
                           MacroParams, Op, Region, Status)
from host.engine import EngineDriver, EngineRegisterMap
from host.transport import ModelTransport

from .random_nets import random_net

ALL = frozenset(NONIDEALITIES)
#: 32x12 macro, P = 4; 6 banks (a hole at bank 6, 7), 3 layers (hole at 3), 3 slots.
MACRO = MacroParams(32, 12, input_bits=5, cols_per_cycle=4, nonideal=ALL)
PARAMS = E.EngineParams(MACRO, weight_banks=6, layers=3, image_slots=3, max_width=70)
SIZES = (70, 20, 5)          # banks 3x2 + 1x1 = 7 > 6: the small net below fits
FIT = (40, 20, 5)            # row tiles 2, col tiles 2 -> 4 banks; then 1x1 -> 5 banks


def amap():
    return EngineRegisterMap(PARAMS)


def A(region, **fields):
    return int(amap().addr(region, **fields))


def csr(name):
    return amap().csr(name)


def state(bus):
    """Everything a faulty access must leave alone (not the error registers, not the
    clock, not the event counts)."""
    m = bus.macro
    arrays = [bus.bank_weights, bus.bank_thresh, bus.bank_flip, bus.program_words,
              bus.image_planes, bus.results, m.weights, m.comp_bits, m.thresh, m.flip,
              m.input_planes, m.acc, m.out, m.calflag, m.offset, m.gain, m.table,
              m.stuck_mask, m.stuck_value]
    return [a.copy() for a in arrays] + [bus.classify_count, m.sat, m.qshift, m.cmd,
                                         m.status & ~(1 << Status.ERROR), m.cycles]


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def loaded_bus(rng, net_sizes=FIT, images=3):
    """A bus model with a random network of ``net_sizes`` loaded and ``images`` images
    written, through the driver; and the driver."""
    bus = EngineBusModel(PARAMS)
    drv = EngineDriver(ModelTransport(bus), PARAMS)
    net = random_net(rng, net_sizes, 5, MACRO.rows, MACRO.cols)

    async def go():
        await drv.load_network(net)
        await drv.write_images(rng.integers(0, 32, (images, net_sizes[0])))
    asyncio.run(go())
    return bus, drv, net


def start(bus, count=2):
    bus.write(csr("CLASSIFY"), count)
    assert bus.busy()


# --- every error: (setup, access, code); the access changes nothing else ---------------

MODE = ProgramWord.MODE
TILES = ProgramWord.TILES


def mode(first_bank=0, planes=5, source=0, binary=1):
    return (first_bank | planes << ProgramWord.PLANES_SHIFT | source << ProgramWord.SOURCE_BIT
            | binary << ProgramWord.BINARY_BIT)


ERRORS = [
    # BAD_SEL: any write whose sel is not 0b1111
    ("sel", None, ("w", lambda: A("PROGRAM", layer=0, part=0), 5, 0x7), ErrCode.BAD_SEL),
    # BAD_ADDRESS: unmapped regions, holes, unmapped CSRs, a bank/layer/slot beyond capacity
    ("region 14", None, ("r", lambda: 14 << PARAMS.region_shift), ErrCode.BAD_ADDRESS),
    ("region 21", None, ("w", lambda: 21 << PARAMS.region_shift, 1), ErrCode.BAD_ADDRESS),
    ("region 31", None, ("r", lambda: 31 << PARAMS.region_shift), ErrCode.BAD_ADDRESS),
    ("csr 27", None, ("r", lambda: 27), ErrCode.BAD_ADDRESS),
    ("csr 38", None, ("w", lambda: 38, 1), ErrCode.BAD_ADDRESS),
    ("csr 63", None, ("r", lambda: (1 << ENGINE_REG_BITS) - 1), ErrCode.BAD_ADDRESS),
    ("bank 6 weight", None, ("w", lambda: (Region.WEIGHT << PARAMS.region_shift) | 6 << 4, 1),
     ErrCode.BAD_ADDRESS),
    ("bank 7 thresh", None, ("r", lambda: (Region.THRESH << PARAMS.region_shift) | 7 << 4),
     ErrCode.BAD_ADDRESS),
    ("bank 6 flip", None, ("w", lambda: (Region.FLIP << PARAMS.region_shift) | 6, 1),
     ErrCode.BAD_ADDRESS),
    ("layer 3", None, ("w", lambda: (EngineRegion.PROGRAM << PARAMS.region_shift) | 3 << 2, 1),
     ErrCode.BAD_ADDRESS),
    ("overfull image buffer", None,
     ("w", lambda: (EngineRegion.IMAGE << PARAMS.region_shift) | 3 << 5, 1),
     ErrCode.BAD_ADDRESS),
    ("image chunk 3", None, ("w", lambda: (EngineRegion.IMAGE << PARAMS.region_shift) | 3, 1),
     ErrCode.BAD_ADDRESS),
    ("result slot 3", None, ("r", lambda: (EngineRegion.RESULT << PARAMS.region_shift) | 3),
     ErrCode.BAD_ADDRESS),
    ("neuron 70", None, ("r", lambda: (EngineRegion.LAST_SCORE << PARAMS.region_shift) | 70),
     ErrCode.BAD_ADDRESS),
    ("offset above fields", None,
     ("r", lambda: (EngineRegion.RESULT << PARAMS.region_shift) | 1 << 2),
     ErrCode.BAD_ADDRESS),
    # READ_ONLY: the engine's read-only regions and CSRs, and the macro's
    ("RESULT", None, ("w", lambda: A("RESULT", image_slot=0), 1), ErrCode.READ_ONLY),
    ("LAST_ACC", None, ("w", lambda: A("LAST_ACC", neuron=0), 1), ErrCode.READ_ONLY),
    ("LAST_SCORE", None, ("w", lambda: A("LAST_SCORE", neuron=0), 1), ErrCode.READ_ONLY),
    ("ID", None, ("w", lambda: csr("ID"), 1), ErrCode.READ_ONLY),
    ("VERSION", None, ("w", lambda: csr("VERSION"), 1), ErrCode.READ_ONLY),
    ("WEIGHT_BANKS", None, ("w", lambda: csr("WEIGHT_BANKS"), 1), ErrCode.READ_ONLY),
    ("RESULTS", None, ("w", lambda: csr("RESULTS"), 0), ErrCode.READ_ONLY),
    ("ENGINE_CYCLES", None, ("w", lambda: csr("ENGINE_CYCLES"), 0), ErrCode.READ_ONLY),
    ("MACRO_VERSION", None, ("w", lambda: csr("MACRO_VERSION"), 0), ErrCode.READ_ONLY),
    ("macro ROWS", None, ("w", lambda: csr("ROWS"), 32), ErrCode.READ_ONLY),
    ("macro ACC", None, ("w", lambda: A("ACC", group=0, slot=1), 1), ErrCode.READ_ONLY),
    # BUSY: while a CLASSIFY runs
    ("busy WEIGHT", "busy", ("w", lambda: A("WEIGHT", bank=0, group=0, slot=0, chunk=0), 1),
     ErrCode.BUSY),
    ("busy THRESH", "busy", ("w", lambda: A("THRESH", bank=1, group=0, slot=0), 1), ErrCode.BUSY),
    ("busy FLIP", "busy", ("w", lambda: A("FLIP", bank=1, word=0), 1), ErrCode.BUSY),
    ("busy PROGRAM", "busy", ("w", lambda: A("PROGRAM", layer=0, part=0), 40), ErrCode.BUSY),
    ("busy IMAGE", "busy", ("w", lambda: A("IMAGE", image_slot=2, plane=0, image_chunk=0), 1),
     ErrCode.BUSY),
    ("busy CLASSIFY", "busy", ("w", lambda: csr("CLASSIFY"), 1), ErrCode.BUSY),
    ("busy CMD", "busy", ("w", lambda: csr("CMD"), Op.CLEAR), ErrCode.BUSY),
    ("busy SAT", "busy", ("w", lambda: csr("SAT"), 3), ErrCode.BUSY),
    ("busy COMP", "busy", ("w", lambda: A("COMP", group=0, slot=0), 1), ErrCode.BUSY),
    ("busy OFFSET", "busy", ("w", lambda: A("OFFSET", group=0, slot=0), 1), ErrCode.BUSY),
    ("busy read WEIGHT", "busy", ("r", lambda: A("WEIGHT", bank=0, group=0, slot=0, chunk=0)),
     ErrCode.BUSY),
    ("busy read LAST_SCORE", "busy", ("r", lambda: A("LAST_SCORE", neuron=0)), ErrCode.BUSY),
    ("busy read ACC", "busy", ("r", lambda: A("ACC", group=0, slot=0)), ErrCode.BUSY),
    ("busy after a RUN", "run", ("w", lambda: A("IMAGE", image_slot=0, plane=0, image_chunk=0), 1),
     ErrCode.BUSY),
    # BAD_VALUE: program words out of range, THRESH, CLASSIFY counts, the macro's values
    ("inputs 0", None, ("w", lambda: A("PROGRAM", layer=0, part=0), 0), ErrCode.BAD_VALUE),
    ("inputs > max_width", None, ("w", lambda: A("PROGRAM", layer=1, part=0), 71),
     ErrCode.BAD_VALUE),
    ("outputs > max_width", None, ("w", lambda: A("PROGRAM", layer=1, part=1), 1 << 16),
     ErrCode.BAD_VALUE),
    ("row tiles 0", None, ("w", lambda: A("PROGRAM", layer=0, part=TILES), 1 << 16),
     ErrCode.BAD_VALUE),
    ("col tiles > banks", None, ("w", lambda: A("PROGRAM", layer=0, part=TILES), 1 | 7 << 16),
     ErrCode.BAD_VALUE),
    ("tiles reserved", None, ("w", lambda: A("PROGRAM", layer=0, part=TILES), 1 | 1 << 16 | 1 << 31),
     ErrCode.BAD_VALUE),
    ("first bank 6", None, ("w", lambda: A("PROGRAM", layer=0, part=MODE), mode(first_bank=6)),
     ErrCode.BAD_VALUE),
    ("planes 0", None, ("w", lambda: A("PROGRAM", layer=0, part=MODE), mode(planes=0)),
     ErrCode.BAD_VALUE),
    ("planes 6 > B", None, ("w", lambda: A("PROGRAM", layer=0, part=MODE), mode(planes=6)),
     ErrCode.BAD_VALUE),
    ("mode reserved", None, ("w", lambda: A("PROGRAM", layer=0, part=MODE), mode() | 1 << 26),
     ErrCode.BAD_VALUE),
    ("THRESH not sign-extended", None,
     ("w", lambda: A("THRESH", bank=0, group=0, slot=0), 1 << MACRO.acc_bits), ErrCode.BAD_VALUE),
    ("THRESH too negative", None,
     ("w", lambda: A("THRESH", bank=5, group=2, slot=3), (1 << 32) - (1 << MACRO.acc_bits)),
     ErrCode.BAD_VALUE),
    ("CLASSIFY 0", "loaded", ("w", lambda: csr("CLASSIFY"), 0), ErrCode.BAD_VALUE),
    ("CLASSIFY > slots", "loaded", ("w", lambda: csr("CLASSIFY"), 4), ErrCode.BAD_VALUE),
    ("macro OFFSET", None, ("w", lambda: A("OFFSET", group=1, slot=2), 1 << 20), ErrCode.BAD_VALUE),
    ("macro QSHIFT", None, ("w", lambda: csr("QSHIFT"), 16), ErrCode.BAD_VALUE),
    # BAD_COMMAND: the macro's CMD rules
    ("CMD opcode 5", None, ("w", lambda: csr("CMD"), 5), ErrCode.BAD_COMMAND),
    # NO_RESULT: results and scores read before they exist
    ("RESULT before any", None, ("r", lambda: A("RESULT", image_slot=0)), EngineErrCode.NO_RESULT),
    ("LAST_SCORE before any", None, ("r", lambda: A("LAST_SCORE", neuron=0)),
     EngineErrCode.NO_RESULT),
    ("LAST_ACC before any", "loaded", ("r", lambda: A("LAST_ACC", neuron=0)),
     EngineErrCode.NO_RESULT),
    ("RESULT beyond RESULTS", "ran", ("r", lambda: A("RESULT", image_slot=2)), EngineErrCode.NO_RESULT),
    ("LAST_SCORE beyond classes", "ran", ("r", lambda: A("LAST_SCORE", neuron=5)),
     EngineErrCode.NO_RESULT),
    ("RESULT not yet done", "busy", ("r", lambda: A("RESULT", image_slot=1)), EngineErrCode.NO_RESULT),
    # BAD_PROGRAM: CLASSIFY with a program the engine cannot run
    ("reset program", "images", ("w", lambda: csr("CLASSIFY"), 1), EngineErrCode.BAD_PROGRAM),
    ("banks beyond", "loaded+{(0, 3): mode(first_bank=3)}", ("w", lambda: csr("CLASSIFY"), 1), EngineErrCode.BAD_PROGRAM),
    ("tiles inconsistent", "loaded+{(0, 2): 1 | 2 << 16}", ("w", lambda: csr("CLASSIFY"), 1),
     EngineErrCode.BAD_PROGRAM),
    ("chain mismatch", "loaded+{(1, 0): 19, (1, 2): 1 | 1 << 16}",
     ("w", lambda: csr("CLASSIFY"), 1), EngineErrCode.BAD_PROGRAM),
    ("first layer from activations", "loaded+{(0, 3): mode(source=1)}",
     ("w", lambda: csr("CLASSIFY"), 1), EngineErrCode.BAD_PROGRAM),
    ("hidden layer in 5 planes", "loaded+{(1, 3): mode(first_bank=4, planes=5, source=1, binary=0)}",
     ("w", lambda: csr("CLASSIFY"), 1), EngineErrCode.BAD_PROGRAM),
    ("no last layer", "loaded+{(1, 3): mode(first_bank=4, planes=1, source=1, binary=1)}",
     ("w", lambda: csr("CLASSIFY"), 1), EngineErrCode.BAD_PROGRAM),
]


def prepare(kind, rng):
    bus = EngineBusModel(PARAMS)
    if kind is None:
        return bus
    if kind == "images":
        bus.write(A("IMAGE", image_slot=0, plane=0, image_chunk=0), 0xFFFF)
        return bus
    if kind == "run":
        bus.write(csr("CMD"), Op.RUN)
        assert bus.busy()
        return bus
    bus, _, _ = loaded_bus(rng)
    if kind == "busy":
        start(bus)
    elif kind == "ran":
        bus.write(csr("CLASSIFY"), 2)
        bus.idle(10_000)
    elif kind.startswith("loaded+"):
        for (layer, part), word in eval(kind[len("loaded+"):]).items():
            bus.write(A("PROGRAM", layer=layer, part=part), word)
        assert bus.macro.errcode == 0
    return bus


@pytest.mark.parametrize("name, kind, access, code", ERRORS, ids=[e[0] for e in ERRORS])
def test_every_error_sets_errcode_and_erraddr_and_changes_nothing_else(name, kind, access,
                                                                      code, rng):
    bus = prepare(kind, rng)
    assert not bus.macro.status >> Status.ERROR & 1
    before = state(bus)
    addr = access[1]()
    if access[0] == "w":
        bus.write(addr, *access[2:])
    else:
        assert bus.read(addr) == 0                  # a faulty read returns 0
    assert same(state(bus), before), "a faulty access changed the state"
    assert bus.read(csr("STATUS")) >> Status.ERROR & 1
    assert (bus.read(csr("ERRCODE")), bus.read(csr("ERRADDR"))) == (code, addr)
    if kind != "busy" or code == EngineErrCode.NO_RESULT:
        # The first error wins; clearing it clears ERRCODE and ERRADDR.
        bus.read(14 << PARAMS.region_shift)
        assert bus.read(csr("ERRCODE")) == code
        bus.write(csr("STATUS"), 1 << Status.ERROR)
        assert (bus.read(csr("STATUS")) >> Status.ERROR & 1, bus.read(csr("ERRCODE")),
                bus.read(csr("ERRADDR"))) == (0, 0, 0)


def test_program_problems_name_the_entry(rng):
    """The model's one-line reasons behind BAD_PROGRAM (what the driver prevents)."""
    bus = prepare("loaded+{(1, 0): 19, (1, 2): 1 | 1 << 16}", rng)
    assert bus.program_problems() == ["layer 1: 19 inputs after 20 outputs"]
    bus = EngineBusModel(PARAMS)
    assert bus.program_problems()[0] == "layer 0: inputs 0 and outputs 0 must be in 1..70"


# --- the map and read-back ----------------------------------------------------------------

def test_csrs_read_their_values_and_the_map_is_the_documented_one():
    bus = EngineBusModel(PARAMS)
    want = {c["name"]: c["reset"] for c in PARAMS.csrs()}
    got = {c["name"]: bus.read(c["offset"]) for c in PARAMS.csrs()}
    assert got == want
    assert got["ID"] == 0x43694531 and got["VERSION"] == 0x00010000
    assert got["MACRO_ID"] == 0x43694D31
    assert got["MACRO_VERSION"] == CONTRACT_VERSION[0] << 16 | CONTRACT_VERSION[1]
    assert (got["WEIGHT_BANKS"], got["LAYERS"], got["IMAGE_SLOTS"], got["MAX_WIDTH"]) == \
        (6, 3, 3, 70)
    assert (got["ROWS"], got["COLS"], got["COLS_PER_CYCLE"]) == (32, 12, 4)
    # 32x12, P = 4: WEIGHT = bank(3) group(2) slot(2) chunk(0); IMAGE = slot(2) plane(3)
    # image_chunk(2); TABLE index(W = 7): the widest is 7 bits of LAST_*'s neuron (70).
    assert got["REGION_SHIFT"] == PARAMS.region_shift == 7
    assert PARAMS.addr_bits == 12
    assert A("WEIGHT", bank=5, group=2, slot=3, chunk=0) == 1 << 7 | 5 << 4 | 2 << 2 | 3
    assert A("PROGRAM", layer=2, part=3) == 16 << 7 | 2 << 2 | 3
    assert A("IMAGE", image_slot=2, plane=4, image_chunk=1) == 17 << 7 | 2 << 5 | 4 << 2 | 1
    assert csr("CLASSIFY") == 40 and csr("STATUS") == 17


def test_every_memory_reads_back_what_was_written(rng):
    """Random in-range words into every writable word of every memory; each reads back
    (bits beyond a memory's width read 0)."""
    bus = EngineBusModel(PARAMS)
    p = MACRO
    writes = {}
    for r in PARAMS.regions():
        if r["access"] == "ro" or r["region"] == Region.CSR:
            continue
        sizes = [PARAMS.field_sizes()[n] for n, _ in r["fields"]]
        for index in np.ndindex(*sizes):
            fields = {n: v for (n, _), v in zip(r["fields"], index)}
            addr = A(r["name"], **fields)
            if r["name"] == "PROGRAM":
                word = [int(rng.integers(1, 71)), int(rng.integers(1, 71)),
                        int(rng.integers(1, 7)) | int(rng.integers(1, 7)) << 16,
                        mode(int(rng.integers(0, 6)), int(rng.integers(1, 6)),
                             int(rng.integers(0, 2)), int(rng.integers(0, 2)))][fields["part"]]
                want = word
            elif r["kind"] == "signed":
                lo, hi = -(1 << (r["width"] - 1)), (1 << (r["width"] - 1)) - 1
                want = word = int(rng.integers(lo, hi + 1)) & 0xFFFF_FFFF
            elif r["kind"] == "unsigned":
                want = word = int(rng.integers(0, 1 << r["width"]))
            else:
                word = int(rng.integers(0, 1 << 32))
                if r["name"] == "IMAGE":
                    live = min(32, p_width(fields))
                elif r["kind"] == "packed":
                    live = min(32, p.cols - 32 * fields["word"])
                else:
                    live = r["width"]
                want = word & ((1 << live) - 1)
            bus.write(addr, word)
            writes[addr] = want
    assert bus.macro.errcode == 0
    assert {a: bus.read(a) for a in writes} == writes
    assert bus.macro.errcode == 0
    assert len(writes) > 6 * 12 + 6 * 12 + 3 * 4 + 3 * 5 * 3


def p_width(fields):
    return PARAMS.max_width - 32 * fields["image_chunk"]


def test_classify_results_and_last_scores_read_back(rng):
    bus, drv, net = loaded_bus(rng, images=3)
    want = E.EngineModel(PARAMS)
    want.load(net)
    x = np.array([[sum(bus.image_planes[s, b, i] << b for b in range(5)) for i in range(40)]
                  for s in range(3)])
    classes = want.classify(x)
    bus.write(csr("CLASSIFY"), 3)
    bus.idle(10_000)
    assert [bus.read(A("RESULT", image_slot=s)) for s in range(3)] == classes.tolist()
    acc = [bus.read(A("LAST_ACC", neuron=c)) for c in range(5)]
    score = [bus.read(A("LAST_SCORE", neuron=c)) for c in range(5)]
    mask = (1 << 32) - 1
    assert acc == [int(v) & mask for v in want.acc[-1]]
    assert score == [int(v) & mask for v in want.scores[-1]]
    assert bus.read(csr("ENGINE_CYCLES")) == want.cycles
    assert bus.read(csr("RESULTS")) == bus.read(csr("CLASSIFY")) == 3
    assert bus.macro.errcode == 0


# --- the clock: BUSY, RESULTS image by image, STOP -----------------------------------------

def test_results_appear_image_by_image_and_stop_ends_after_the_current_image(rng):
    bus, _, net = loaded_bus(rng, images=3)
    per = E.build_program(net, MACRO).image_cycles()
    bus.write(csr("CLASSIFY"), 3)
    seen, status = [], []
    while bus.busy():
        status.append(bus.read(csr("STATUS")))
        seen.append(bus.read(csr("RESULTS")))
    assert all(s >> Status.BUSY & 1 and not s >> Status.DONE & 1 for s in status[:-1])
    assert seen == sorted(seen) and set(seen) >= {0, 1, 2}
    assert bus.read(csr("STATUS")) >> Status.DONE & 1
    assert bus.read(csr("ENGINE_CYCLES")) == 3 * per
    # STOP in the first image: that image completes, no other starts.
    bus.write(csr("CLASSIFY"), 3)
    assert bus.read(csr("RESULTS")) == 0
    bus.write(csr("STATUS"), 1 << EngineStatus.STOP)
    bus.idle(10 * per)
    assert not bus.busy()
    assert bus.read(csr("RESULTS")) == 1 and bus.read(csr("ENGINE_CYCLES")) == per
    assert bus.read(A("RESULT", image_slot=1)) == 0 and bus.macro.errcode == EngineErrCode.NO_RESULT
    # A STOP when idle changes nothing.
    bus.write(csr("STATUS"), 1 << Status.ERROR | 1 << EngineStatus.STOP)
    assert bus.read(csr("RESULTS")) == 1 and bus.read(csr("STATUS")) >> Status.DONE & 1


def test_a_run_through_cmd_uses_bank_0_and_the_macro_rules(rng):
    """CMD reaches the macro inside: a RUN computes with bank 0, as MacroModel does with
    the same memories; BUSY lasts the RUN's CYCLES."""
    bus = EngineBusModel(PARAMS)
    ref = MacroModel(MACRO)
    w = rng.integers(0, 2, (32, 12))
    x = rng.integers(0, 32, 32)
    ref.load_weights(w)
    ref.load_inputs(x)
    for c in range(12):
        bus.write(A("WEIGHT", bank=0, group=c // 4, slot=c % 4, chunk=0),
                  int((w[:, c] << np.arange(32)).sum()))
        bus.write(A("WEIGHT", bank=1, group=c // 4, slot=c % 4, chunk=0), 0xFFFF_FFFF)
    for b in range(5):
        bus.write(A("INPUT", plane=b, chunk=0), int((((x >> b) & 1) << np.arange(32)).sum()))
    bus.write(csr("CMD"), Op.RUN)
    polls = 0
    while bus.read(csr("STATUS")) >> Status.BUSY & 1:
        polls += 1
    # Busy for the RUN's cycles after the CMD access; a poll every bus_latency + 1 cycles.
    assert polls == -(-(MACRO.run_cycles(5) + 1) // (MACRO.bus_latency + 1)) - 1 > 0
    ref.run()
    acc = [bus.read(A("ACC", group=c // 4, slot=c % 4)) for c in range(12)]
    assert acc == [int(v) & 0xFFFF_FFFF for v in ref.acc]
    assert bus.read(csr("CYCLES")) == MACRO.run_cycles(5)


# --- classifying through the bus equals EngineModel -----------------------------------------

NETS = [((40, 20, 5), MACRO, 3), ((70, 12, 12, 3), MACRO, 2),
        ((20, 9, 4), MacroParams(8, 8, input_bits=3, comp_rows=2), 5),
        ((64, 10, 3), MacroParams(64, 10, pipeline=4), 4)]


@pytest.mark.parametrize("sizes, p, slots", NETS, ids=["40-20-5", "70-12-12-3", "20-9-4@8x8",
                                                      "64-10-3@64x10-L4"])
def test_classifying_through_the_bus_equals_the_engine_model(sizes, p, slots, rng):
    """Random networks and chips (calibrated and trimmed), 11 images streamed through
    the buffer: classes, last scores and cycles equal EngineModel's."""
    from .test_engine_model import random_registers
    net = random_net(rng, sizes, min(p.input_bits, 5), p.rows, p.cols)
    ep = E.EngineParams.for_model(net, p, image_slots=slots)
    images = rng.integers(0, 1 << net.layers[0].planes, (11, sizes[0]))
    regs = random_registers(rng, p)
    ref = E.EngineModel(ep)
    ref.set_nonideal(**regs)
    ref.calibrate()
    ref.load(net, residual=ref.measure_residual())
    want = ref.classify(images)

    async def go():
        drv = await EngineDriver.connect(ModelTransport(EngineBusModel(ep)))
        await drv.write_chip(**regs)
        await drv.calibrate()
        await drv.load_network(net, residual=await drv.measure_residual())
        got = await drv.classify(images)
        return got, await drv.last_scores(), await drv.last_acc(), await drv.cycles()
    got, scores, acc, cycles = asyncio.run(go())
    assert np.array_equal(got, want)
    assert np.array_equal(scores, ref.scores[-1]) and np.array_equal(acc, ref.acc[-1])
    last = len(images) - (len(images) - 1) // slots * slots
    assert cycles == last * E.build_program(net, p).image_cycles()
    assert len(np.unique(ref.scores, axis=0)) > 1
