# amaranth: UnusedElaboratable=no
"""Tests of ``rtl/compute_array.py`` against section 1 and the port row of section 7.

Every readout the simulated array produces is compared with the golden model
:func:`models.macro.readout`, fed the same plane, weights and registers for the P
columns of one group. Stimulus is random (seeded by the ``rng`` fixture) and biased
towards the corners: empty and full planes and weight columns (``s = ±R``), the extreme
offsets, gains 0 and 255, ``sat = 0``, every ``qshift`` up to 15 and dense stuck masks.
Small spaces are swept exhaustively. The transfer table is written and read back
through its bus port before it is used.
"""

import itertools

import numpy as np
import pytest
from amaranth.hdl import Cat, Elaboratable, Module, Shape, Signal, Value
from amaranth.sim import Simulator

from models.macro import readout as model_readout
from models.params import NONIDEALITIES, MacroParams
from rtl.compute_array import ComputeArray, lane_popcounts, lane_sign_fills
from rtl.replicas import lane_blocks
from .lane_words import pack, unpack_signed

# Parameter sets of the random test: tiny, the paper's 32x96 folded, two row chunks,
# K = 2 and 16, 8 input bits, non-power-of-two rows, a readout wider than needed, every
# non-ideality and none.
PARAMS = {
    "2x3-all": dict(rows=2, cols=3, nonideal=NONIDEALITIES),
    "1x2-all": dict(rows=1, cols=2, nonideal=NONIDEALITIES),
    "32x96-P12-all": dict(rows=32, cols=96, cols_per_cycle=12, nonideal=NONIDEALITIES),
    "32x96-P8-none": dict(rows=32, cols=96, cols_per_cycle=8, nonideal=()),
    "64x10-default": dict(rows=64, cols=10),
    "64x10-K16-all": dict(rows=64, cols=10, comp_rows=16, nonideal=NONIDEALITIES),
    "16x4-K2-B8-gain-stuck": dict(rows=16, cols=4, input_bits=8, comp_rows=2,
                                  nonideal=("gain", "stuck")),
    "20x6-K16-table": dict(rows=20, cols=6, cols_per_cycle=3, comp_rows=16, nonideal=("table",)),
    "5x3-W12-gain-readout": dict(rows=5, cols=3, readout_bits=12, nonideal=("gain", "readout")),
}
VECTORS = 120


# --- helpers -------------------------------------------------------------------------


def bits_to_int(bits):
    return sum(int(b) << r for r, b in enumerate(bits))


def run(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-6, if_exists=True)
    sim.add_testbench(testbench)
    sim.run()


def random_bits(rng, shape):
    """0/1 array whose density is itself random, including all zeros and all ones."""
    density = rng.choice([0.0, 0.1, 0.5, 0.9, 1.0])
    return (rng.random(shape) < density).astype(np.int64)


def pick(rng, corners, lo, hi, size=None):
    """Uniform integers in [lo, hi], a third of them replaced by corner values."""
    values = rng.integers(lo, hi + 1, size=size)
    corner = rng.random(size) < 1 / 3
    return np.where(corner, rng.choice(corners, size=size), values)


def random_case(p, rng):
    """One random stimulus for a group: plane, weights and every built register."""
    R, P, W, K, M = p.rows, p.cols_per_cycle, p.readout_bits, p.comp_rows, p.readout_max
    case = dict(plane=random_bits(rng, R), weights=random_bits(rng, (R, P)),
                comp=2 * rng.integers(0, K + 1, size=P) - K)
    if p.has("offset"):
        case["offset"] = pick(rng, [-(1 << (W - 1)), -1, 0, 1, M], -(1 << (W - 1)), M, P)
    if p.has("gain"):
        case["gain"] = pick(rng, [0, 1, 63, 64, 65, 128, 255], 0, 255, P)
    if p.has("readout"):
        case["sat"] = int(pick(rng, [0, 1, M - 1, M], 0, M))
        case["qshift"] = int(rng.integers(0, 16))
    if p.has("stuck"):
        case["stuck_mask"] = random_bits(rng, (R, P))
        case["stuck_value"] = random_bits(rng, (R, P))
    return case


def expected(p, case, table=None):
    """Golden readouts of one case; registers that are not built are passed as None."""
    return model_readout(
        p, case["plane"], case["weights"], case["comp"],
        offset=case.get("offset"), gain=case.get("gain"), sat=case.get("sat"),
        qshift=case.get("qshift"), table=table,
        stuck_mask=case.get("stuck_mask"), stuck_value=case.get("stuck_value")).tolist()


def apply(ctx, dut, p, case):
    """Drive one case's inputs onto the array (whole arrays at once: one settle each)."""
    W = p.readout_bits
    # The plane port holds one copy per block of 8 lanes.
    ctx.set(Value.cast(dut.plane), bits_to_int(np.tile(case["plane"], lane_blocks(p.cols_per_cycle))))
    if p.pipeline >= 4:
        # The macro counts its planes in advance; here the count of the case's plane.
        ones = int(np.sum(case["plane"]))
        ctx.set(Value.cast(dut.plane_ones),
                pack([ones] * lane_blocks(p.cols_per_cycle), len(dut.plane_ones[0])))
    for name in ("weights", "stuck_mask", "stuck_value"):
        if name in case:
            columns = [bits_to_int(col) for col in case[name].T]
            port = getattr(dut, name)
            if isinstance(port, (list, tuple)):
                # A wiring member array (one signal per lane) rather than an ArrayLayout.
                for lane, column in zip(port, columns):
                    ctx.set(lane, column)
            else:
                ctx.set(Value.cast(port), pack(columns, p.rows))
    ctx.set(Value.cast(dut.comp), pack(case["comp"], p.comp_bits))
    if "offset" in case:
        ctx.set(Value.cast(dut.offset), pack(case["offset"], W))
    if "gain" in case:
        ctx.set(Value.cast(dut.gain), pack(case["gain"], 8))
    if "sat" in case:
        ctx.set(dut.sat, case["sat"])
        ctx.set(dut.qshift, case["qshift"])


def get_readout(ctx, dut, p):
    return unpack_signed(ctx.get(Value.cast(dut.readout)), p.readout_bits, p.cols_per_cycle)


def identity_table(p):
    W = p.readout_bits
    return np.array([i - (1 << W) if i >> (W - 1) else i for i in range(1 << W)])


async def write_table(ctx, dut, table):
    for index, value in enumerate(table):
        ctx.set(dut.table_addr, index)
        ctx.set(dut.table_wdata, int(value))
        ctx.set(dut.table_we, 1)
        await ctx.tick()
    ctx.set(dut.table_we, 0)


async def read_table(ctx, dut, size):
    """Every entry through the bus port: address in cycle t, data in cycle t+1."""
    got = []
    for index in range(size):
        ctx.set(dut.table_addr, index)
        await ctx.tick()
        got.append(ctx.get(dut.table_rdata))
    return got


# --- construction and ports ----------------------------------------------------------

@pytest.mark.parametrize("bad", [None, 3, dict(rows=2, cols=3), "MacroParams"])
def test_rejects_non_params(bad):
    with pytest.raises(TypeError, match="MacroParams"):
        ComputeArray(bad)


@pytest.mark.parametrize("nonideal", [(), NONIDEALITIES] + [(n,) for n in NONIDEALITIES])
def test_ports_follow_section_7(nonideal):
    p = MacroParams(rows=64, cols=12, cols_per_cycle=4, comp_rows=4,
                    nonideal=nonideal)
    R, P, W = p.rows, p.cols_per_cycle, p.readout_bits
    members = ComputeArray(p).signature.members
    expect = {"plane": ("In", R, False, lane_blocks(P)), "weights": ("In", R, False, P),
              "comp": ("In", p.comp_bits, True, P), "readout": ("Out", W, True, P)}
    if p.has("stuck"):
        expect["stuck_mask"] = expect["stuck_value"] = ("In", R, False, P)
    if p.has("offset"):
        expect["offset"] = ("In", W, True, P)
    if p.has("gain"):
        expect["gain"] = ("In", 8, False, P)
    if p.has("readout"):
        expect["sat"] = ("In", W - 1, False, None)
        expect["qshift"] = ("In", 4, False, None)
    if p.has("table"):
        expect.update(table_addr=("In", W, False, None), table_wdata=("In", W, True, None),
                      table_we=("In", 1, False, None), table_rdata=("Out", W, True, None))
    assert set(members.keys()) == set(expect)
    for name, (flow, width, is_signed, lanes) in expect.items():
        member = members[name]
        assert member.flow.name == flow, name
        shape = member.shape
        if lanes is not None:
            assert shape.length == lanes, name
            shape = shape.elem_shape
        shape = Shape.cast(shape)
        assert (shape.width, shape.signed) == (width, is_signed), name


# --- against the golden model --------------------------------------------------------

@pytest.mark.parametrize("key", sorted(PARAMS))
def test_random_against_model(key, rng):
    p = MacroParams(**PARAMS[key])
    dut = ComputeArray(p)
    cases = [random_case(p, rng) for _ in range(VECTORS)]
    W = p.readout_bits
    if p.has("table"):
        tables = [rng.integers(-(1 << (W - 1)), 1 << (W - 1), size=1 << W) for _ in range(2)]
    failures = []

    async def testbench(ctx):
        table = None
        for n, case in enumerate(cases):
            if p.has("table") and n % (VECTORS // 2) == 0:
                # A fresh table twice per test, checked through the bus before use.
                table = tables[n // (VECTORS // 2)]
                await write_table(ctx, dut, table)
                assert await read_table(ctx, dut, 1 << W) == table.tolist()
            apply(ctx, dut, p, case)
            got, want = get_readout(ctx, dut, p), expected(p, case, table)
            if got != want:
                failures.append((n, case, got, want))

    run(dut, testbench)
    assert not failures, f"{len(failures)} of {VECTORS} differ; first: {failures[0]}"


def test_exhaustive_two_rows_offset_comp():
    """R = 2, K = 2, one lane: every plane, weight column, comp and offset."""
    p = MacroParams(rows=2, cols=1, comp_rows=2, nonideal=("offset",))
    W, M = p.readout_bits, p.readout_max
    dut = ComputeArray(p)
    seen = set()

    async def testbench(ctx):
        for plane in range(4):
            for weights in range(4):
                for comp in (-2, 0, 2):
                    for offset in range(-(1 << (W - 1)), M + 1):
                        case = dict(plane=np.array([plane & 1, plane >> 1]),
                                    weights=np.array([[weights & 1], [weights >> 1]]),
                                    comp=np.array([comp]), offset=np.array([offset]))
                        apply(ctx, dut, p, case)
                        got = get_readout(ctx, dut, p)
                        assert got == expected(p, case), case
                        seen.add(got[0])

    run(dut, testbench)
    # The clamp was reached on both sides, so both saturating paths were exercised.
    assert {-M, M} <= seen


def test_exhaustive_readout_registers():
    """R = 2, every a (through offset), sat and qshift; also every gain for a few a."""
    p = MacroParams(rows=2, cols=1, comp_rows=2, nonideal=("offset", "gain", "readout"))
    W, M = p.readout_bits, p.readout_max
    dut = ComputeArray(p)
    zero = dict(plane=np.zeros(2, dtype=np.int64), weights=np.zeros((2, 1), dtype=np.int64),
                comp=np.array([0]))

    async def testbench(ctx):
        for offset in range(-(1 << (W - 1)), M + 1):
            for sat in range(M + 1):
                for qshift in range(16):
                    case = dict(zero, offset=np.array([offset]), gain=np.array([64]),
                                sat=sat, qshift=qshift)
                    apply(ctx, dut, p, case)
                    assert get_readout(ctx, dut, p) == expected(p, case), case
        for offset in (-(1 << (W - 1)), -5, -1, 1, 3, M):
            for gain in range(256):
                case = dict(zero, offset=np.array([offset]), gain=np.array([gain]),
                            sat=M, qshift=0)
                apply(ctx, dut, p, case)
                assert get_readout(ctx, dut, p) == expected(p, case), case

    run(dut, testbench)


def test_exhaustive_stuck_cells():
    """R = 2: every plane, weight, stuck mask and stuck value of one column."""
    p = MacroParams(rows=2, cols=1, comp_rows=2, nonideal=("stuck",))
    dut = ComputeArray(p)

    def col(v):
        return np.array([[v & 1], [v >> 1]])

    async def testbench(ctx):
        for plane in range(4):
            for weights in range(4):
                for mask in range(4):
                    for value in range(4):
                        case = dict(plane=np.array([plane & 1, plane >> 1]),
                                    weights=col(weights), comp=np.array([0]),
                                    stuck_mask=col(mask), stuck_value=col(value))
                        apply(ctx, dut, p, case)
                        assert get_readout(ctx, dut, p) == expected(p, case), case

    run(dut, testbench)


def test_table_index_is_k_mod_2w(rng):
    """Every clamped value k reads the entry k mod 2^W of a random table."""
    p = MacroParams(rows=2, cols=1, comp_rows=2, nonideal=("offset", "table"))
    W, M = p.readout_bits, p.readout_max
    dut = ComputeArray(p)
    table = rng.integers(-(1 << (W - 1)), 1 << (W - 1), size=1 << W)
    zero = dict(plane=np.zeros(2, dtype=np.int64), weights=np.zeros((2, 1), dtype=np.int64),
                comp=np.array([0]))

    async def testbench(ctx):
        await write_table(ctx, dut, table)
        for offset in range(-(1 << (W - 1)), M + 1):
            case = dict(zero, offset=np.array([offset]))
            apply(ctx, dut, p, case)
            k = max(-M, min(M, offset))
            assert get_readout(ctx, dut, p) == [int(table[k % (1 << W)])], offset
            assert get_readout(ctx, dut, p) == expected(p, case, table), offset

    run(dut, testbench)


# --- the table's bus port ------------------------------------------------------------

def test_table_resets_to_identity_and_reads_one_cycle_late(rng):
    p = MacroParams(rows=4, cols=2, nonideal=("table",))
    W = p.readout_bits
    dut = ComputeArray(p)
    identity = identity_table(p)
    new = rng.integers(-(1 << (W - 1)), 1 << (W - 1), size=1 << W)

    async def testbench(ctx):
        assert await read_table(ctx, dut, 1 << W) == identity.tolist()
        # The data follows the address by one cycle: a changed address does not show
        # before the clock edge.
        ctx.set(dut.table_addr, 3)
        await ctx.tick()
        ctx.set(dut.table_addr, 5)
        assert ctx.get(dut.table_rdata) == identity[3]
        await ctx.tick()
        assert ctx.get(dut.table_rdata) == identity[5]
        # A write in the cycle of the read: the read returns the entry as it was.
        ctx.set(dut.table_addr, 6)
        ctx.set(dut.table_wdata, int(new[6]))
        ctx.set(dut.table_we, 1)
        await ctx.tick()
        ctx.set(dut.table_we, 0)
        assert ctx.get(dut.table_rdata) == identity[6]
        await ctx.tick()
        assert ctx.get(dut.table_rdata) == new[6]
        # table_we low: nothing is written.
        ctx.set(dut.table_addr, 7)
        ctx.set(dut.table_wdata, int(identity[7]) ^ 1)
        await ctx.tick()
        await ctx.tick()
        assert ctx.get(dut.table_rdata) == identity[7]
        await write_table(ctx, dut, new)
        assert await read_table(ctx, dut, 1 << W) == new.tolist()

    run(dut, testbench)


# --- the ideal chain, independently of the model -------------------------------------

@pytest.mark.parametrize("nonideal", [(), NONIDEALITIES])
def test_reset_registers_give_the_column_sum(nonideal, rng):
    """Registers at their reset values and balanced comp: the readout is s exactly."""
    p = MacroParams(rows=32, cols=8, cols_per_cycle=8, nonideal=nonideal)
    dut = ComputeArray(p)
    P, R = p.cols_per_cycle, p.rows
    ideal = dict(comp=np.zeros(P, dtype=np.int64))
    if p.has("offset"):
        ideal["offset"] = np.zeros(P, dtype=np.int64)
    if p.has("gain"):
        ideal["gain"] = np.full(P, 64)
    if p.has("readout"):
        ideal.update(sat=p.readout_max, qshift=0)
    if p.has("stuck"):
        ideal["stuck_mask"] = np.zeros((R, P), dtype=np.int64)
        ideal["stuck_value"] = random_bits(rng, (R, P))

    async def testbench(ctx):
        for _ in range(40):
            case = dict(ideal, plane=random_bits(rng, R), weights=random_bits(rng, (R, P)))
            apply(ctx, dut, p, case)
            s = case["plane"] @ (2 * case["weights"] - 1)
            assert get_readout(ctx, dut, p) == s.tolist()

    run(dut, testbench)


# --- the lane-parallel helpers, against plain Python -----------------------------------

class _LaneHelpers(Elaboratable):
    """``lane_popcounts`` (and its bit-sliced levels) and ``lane_sign_fills`` of a value."""

    def __init__(self, lanes, count, max_terms, extra):
        self.lanes, self.count, self.max_terms, self.extra = lanes, count, max_terms, extra
        self.value = Signal(lanes * count)
        width = (count - 1).bit_length() + 1 if count > 1 else 1
        self.width = width
        self.counts = Signal(lanes * width)
        self.extended = Signal(lanes * (count + extra))

    def elaborate(self, platform):
        m = Module()
        counts = lane_popcounts(m, self.value, self.lanes, self.count, "pc",
                                max_terms=self.max_terms)
        assert all(len(c) == self.width for c in counts)
        m.d.comb += self.counts.eq(Cat(*counts))
        fill = lane_sign_fills(m, self.lanes, [(self.value, self.count, self.extra)], "fill")
        m.d.comb += self.extended.eq(Cat(*(
            Cat(self.value[i * self.count:(i + 1) * self.count], fill(0, i))
            for i in range(self.lanes))))
        return m


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13, 32, 33])
@pytest.mark.parametrize("max_terms", [1, 2, 8])
def test_lane_popcounts_and_sign_fills(count, max_terms, rng):
    lanes, extra = 3, 2
    dut = _LaneHelpers(lanes, count, max_terms, extra)
    mask = (1 << count) - 1

    async def testbench(ctx):
        for _ in range(40):
            words = [int(w) & mask for w in rng.integers(0, 1 << 62, size=lanes)]
            words = [rng.choice([w, 0, mask]) for w in words]   # empty and full lanes too
            ctx.set(dut.value, sum(int(w) << (i * count) for i, w in enumerate(words)))
            got = ctx.get(dut.counts)
            ext = ctx.get(dut.extended)
            for i, w in enumerate(words):
                w = int(w)
                assert (got >> (i * dut.width)) & ((1 << dut.width) - 1) == bin(w).count("1")
                sign = w >> (count - 1) & 1
                want = w | ((((1 << extra) - 1) if sign else 0) << count)
                assert (ext >> (i * (count + extra))) & ((1 << (count + extra)) - 1) == want

    run(dut, testbench)


# --- pipelined arrays: readout(t + L) is the readout of the inputs of cycle t ------------

PIPELINED = {
    "2x3-all-L1": dict(rows=2, cols=3, nonideal=NONIDEALITIES, pipeline=1),
    "32x96-P12-all-L2": dict(rows=32, cols=96, cols_per_cycle=12, nonideal=NONIDEALITIES,
                             pipeline=2),
    "64x10-default-L1": dict(rows=64, cols=10, pipeline=1),
    "16x4-K2-B8-gain-stuck-L2": dict(rows=16, cols=4, input_bits=8, comp_rows=2,
                                     nonideal=("gain", "stuck"), pipeline=2),
    "20x6-K16-table-L2": dict(rows=20, cols=6, cols_per_cycle=3, comp_rows=16,
                              nonideal=("table",), pipeline=2),
    "24x5-all-L3": dict(rows=24, cols=5, nonideal=NONIDEALITIES, pipeline=3),
    "64x6-K16-all-L4": dict(rows=64, cols=6, comp_rows=16, nonideal=NONIDEALITIES, pipeline=4),
    "1x3-offset-L4": dict(rows=1, cols=3, nonideal=("offset",), pipeline=4),
    # Without gain, L = 4 compares with the clamp limits a stage before the clamp.
    "32x20-default-L4": dict(rows=32, cols=20, pipeline=4),
    "24x9-K4-readout-table-stuck-L4": dict(rows=24, cols=9, comp_rows=4,
                                           nonideal=("readout", "table", "stuck"), pipeline=4),
}


@pytest.mark.parametrize("key", sorted(PIPELINED))
def test_pipelined_stream_against_model(key, rng):
    # A new random case every cycle, every input changing: each readout must be that of
    # the case applied exactly L cycles earlier, so a stage that lets an input bypass
    # its register (or registers it twice) fails.
    p = MacroParams(**PIPELINED[key])
    L = p.pipeline
    dut = ComputeArray(p)
    cases = [random_case(p, rng) for _ in range(VECTORS)]
    W = p.readout_bits
    table = rng.integers(-(1 << (W - 1)), 1 << (W - 1), size=1 << W) if p.has("table") else None
    failures = []

    async def testbench(ctx):
        if table is not None:
            await write_table(ctx, dut, table)
        for n in range(len(cases) + L):
            if n < len(cases):
                apply(ctx, dut, p, cases[n])
            if n >= L:
                got, want = get_readout(ctx, dut, p), expected(p, cases[n - L], table)
                if got != want:
                    failures.append((n - L, got, want))
            await ctx.tick()

    run(dut, testbench)
    assert not failures, f"{len(failures)} of {VECTORS} differ; first: {failures[0]}"


#: (plane, weights) pairs per R for s = 2 * agree - ones in {-R, ..., R}.
BOUNDARY_SUMS = {
    2: [((1, 1), (0, 0)), ((0, 0), (0, 0)), ((1, 0), (1, 0)), ((1, 1), (1, 1))],  # -2 0 1 2
    4: [((1, 1, 1, 1), (0, 0, 0, 0)), ((1, 1, 1, 0), (0, 0, 1, 1)),             # -4 -1
        ((1, 0, 0, 0), (1, 0, 0, 0)), ((1, 1, 1, 1), (1, 1, 1, 0)),             # 1 2
        ((1, 1, 1, 1), (1, 1, 1, 1))],                                          # 4
}


@pytest.mark.parametrize("rows", sorted(BOUNDARY_SUMS))
@pytest.mark.parametrize("nonideal", [("offset", "readout"), ("readout",)])
def test_pipelined_clamp_boundaries_exhaustive(nonideal, rows):
    """L = 4 without gain (the clamp's comparisons a stage early), streamed one case per
    cycle: several s, every comp, every offset and every sat, so a is met at, just
    inside and just outside every limit on both sides."""
    p = MacroParams(rows=rows, cols=1, comp_rows=2, readout_bits=4, nonideal=nonideal,
                    pipeline=4)
    W, M, L = p.readout_bits, p.readout_max, p.pipeline
    dut = ComputeArray(p)
    sums = BOUNDARY_SUMS[rows]
    offsets = range(-(1 << (W - 1)), M + 1) if "offset" in nonideal else [None]
    cases = []
    for (plane, weights), comp, offset, sat in itertools.product(sums, (-2, 0, 2), offsets,
                                                                 range(M + 1)):
        case = dict(plane=np.array(plane), weights=np.array(weights).reshape(rows, 1),
                    comp=np.array([comp]), sat=sat, qshift=0)
        if offset is not None:
            case["offset"] = np.array([offset])
        cases.append(case)
    failures, seen = [], set()

    async def testbench(ctx):
        for n in range(len(cases) + L):
            if n < len(cases):
                apply(ctx, dut, p, cases[n])
            if n >= L:
                got, want = get_readout(ctx, dut, p), expected(p, cases[n - L])
                seen.add((got[0], cases[n - L]["sat"]))
                if got != want:
                    failures.append((cases[n - L], got, want))
            await ctx.tick()

    run(dut, testbench)
    assert not failures, f"{len(failures)} of {len(cases)} differ; first: {failures[0]}"
    # Both limits were reached (the full range only through offset).
    assert {(1, 1), (-1, 1), (0, 0), (4, 4), (-4, 4)} <= seen
    if "offset" in nonideal:
        assert {(M, M), (-M, M)} <= seen
