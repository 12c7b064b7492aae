# amaranth: UnusedElaboratable=no
"""Tests of ``rtl/sequencer.py`` (Sequencer and Phase) alone, against section 5 and the
port row of section 7 of ``docs/ARCHITECTURE.md``.

The testbench plays the bus front end (CMD write records in the acting cycle, the early
record a cycle before at L = 4, random invalid records and other accepted accesses in
between) and the calibration FSM (``calibration_done`` in the last cycle of the
verification read, ``(S + 1)(L + 1)`` cycles after ``calibration_start``, as section 7
times it); ``acc_saturated`` and ``any_flag`` change at random every cycle. For each
accepted command a schedule written here from section 5 gives every cycle's phase and
group, and when each strobe must be high: BUSY for ``run_cycles``, ``calibrate_cycles``
or ``clear_cycles``; per group a read cycle, the planes most significant first (NPLANES
0 meaning B), L drain cycles and the write-back, or the search and its write-back, or a
CLEAR cycle; ``step`` L cycles after each plane cycle, ``margin_capture`` one and
``margin_capture_late`` two; ``tile_clear``; the ACC/OUT store lanes and what they store;
COMP's store, CALFLAG's group and the STATUS events; ``plane_cycle`` (the activity
counters' plane operations: high in the plane cycles and no other); the plane of the
next cycle (L < 4) or the one-hot plane select two cycles ahead (L = 4). Every lane
strobe must be the same in all lanes.
"""

import pytest

from models.params import CSR, MacroParams, Op, Region
from rtl.sequencer import Phase, Sequencer
from verif.address_space import ACCUMULATE, NPLANES_SHIFT
from .bus_contract import ACTS_AFTER, PIPELINES, address_map, record
from .command_schedule import STROBES, schedule
from .component_bench import Inputs, random_bits, random_record, run_bench

PARAMS = {
    "2x6-P3-B3-K4": dict(rows=2, cols=6, cols_per_cycle=3, input_bits=3, comp_rows=4),
    # Three groups of 12 lanes (two blocks of copies), K = 2 (one search move).
    "2x36-P12-B2-K2": dict(rows=2, cols=36, cols_per_cycle=12, input_bits=2, comp_rows=2),
    # One group, one input plane, K = 8.
    "2x4-P4-B1-K8": dict(rows=2, cols=4, input_bits=1, comp_rows=8),
}
DEFAULT_RUNS = ({("2x6-P3-B3-K4", L) for L in PIPELINES} | {("2x36-P12-B2-K2", 0),
                ("2x36-P12-B2-K2", 4), ("2x4-P4-B1-K8", 1)})


class SequencerBench:
    """The sequencer between a front end's records and a calibration FSM's timing."""

    def __init__(self, ctx, dut, p, rng):
        self.ctx, self.dut, self.p, self.rng = ctx, dut, p, rng
        L = p.pipeline
        self.acts_after = ACTS_AFTER[L]
        self.mapped = address_map(p)
        ports = dict(access=dut.access, calibration_done=dut.calibration_done,
                     acc_saturated=dut.acc_saturated, any_flag=dut.any_flag)
        if self.acts_after:
            ports["early"] = dut.early
        self.inputs = Inputs(p, ports)
        self.cycle = 0
        self.records = {}           # cycle -> {"access" | "early": record}
        self.command = None         # the schedule of the running (or last) command
        self.cmd_word = 0
        self.cycles_register = 0
        self.fsm_done = set()       # cycles of calibration_done
        self.seen = dict(commands=0, plane_cycles=0)

    def csr(self, reg):
        return (Region.CSR << self.p.region_shift) | reg

    def present(self, addr, we, data, valid=True):
        """An access whose record acts ``acts_after`` cycles from now."""
        rec = record(self.p, addr, valid=valid, we=we, data=data, mapped=self.mapped)
        act = self.cycle + self.acts_after
        self.records.setdefault(act, {})["access"] = rec
        if self.acts_after:
            self.records.setdefault(act - 1, {})["early"] = rec
        return act

    async def command_and_wait(self, cmd, gap=0):
        """CMD write in this cycle; run to the end of the command and ``gap`` more."""
        act = self.present(self.csr(CSR.CMD), 1, cmd)
        sched = schedule(self.p, cmd, act)
        self.command, self.cmd_word = sched, cmd & 0xFFF
        self.seen["commands"] += 1
        while self.cycle <= sched["last"] + gap:
            await self.step()

    async def idle(self, cycles):
        """Idle cycles with accesses that must not start a command: accepted accesses of
        other registers, CMD reads, rejected CMD writes."""
        for _ in range(cycles):
            choice = self.rng.random()
            if choice < 0.2:
                self.present(self.csr(CSR.STATUS), 1, Op.RUN)
            elif choice < 0.4:
                self.present(self.csr(CSR.CMD), 0, Op.RUN)
            elif choice < 0.6:
                self.present(self.csr(CSR.CMD), 1, Op.RUN, valid=False)
            await self.step()

    async def step(self):
        ctx, dut, p, rng, k = self.ctx, self.dut, self.p, self.rng, self.cycle
        P = p.cols_per_cycle
        recs = self.records.pop(k, {})
        values = dict(access=recs.get("access", random_record(p, rng)),
                      calibration_done=int(k in self.fsm_done),
                      acc_saturated=random_bits(rng, 1), any_flag=random_bits(rng, 1))
        if self.acts_after:
            values["early"] = recs.get("early", random_record(p, rng))
        self.inputs.values.update(values)
        self.inputs.apply(ctx)

        where = f"cycle {k}"
        sched = self.command
        running = sched is not None and k in sched["busy"]
        phase, group = sched["phases"][k] if running else (Phase.IDLE, None)
        assert ctx.get(dut.phase) == phase, f"{where}: phase"
        assert ctx.get(dut.busy) == running, f"{where}: busy"
        if running:
            assert ctx.get(dut.group) == group, f"{where}: group"
            assert ctx.get(dut.cmd) == self.cmd_word, f"{where}: cmd"
        assert ctx.get(dut.cycles) == self.cycles_register, f"{where}: cycles"
        high = sched["high"] if sched is not None else {}
        for name in STROBES:
            if not hasattr(dut, name):
                continue
            got = ctx.get(getattr(dut, name))
            assert got in (0, (1 << P) - 1), f"{where}: {name} differs between lanes: {got:#x}"
            if name in ("calibrating", "accumulate") and not running:
                continue                    # the last command's copies, unused while idle
            if name == "store_result" and k not in high.get("store", ()):
                continue                    # only what a store stores matters
            assert bool(got) == (k in high.get(name, ())), f"{where}: {name} = {got:#x}"
        done_cycle = sched is not None and k == sched["last"]
        assert ctx.get(dut.command_done) == done_cycle, f"{where}: command_done"
        if hasattr(dut, "run_ends_next"):
            run_ends = (sched is not None and k + 1 == sched["last"]
                        and self.cmd_word & 7 == Op.RUN)
            assert ctx.get(dut.run_ends_next) == run_ends, f"{where}: run_ends_next"
        start = k in high.get("calibration_start", ())
        assert ctx.get(dut.calibration_start) == start, f"{where}: calibration_start"
        if start:
            # The FSM's verification read ends (S + 1)(L + 1) cycles after its start.
            self.fsm_done.add(k + (p.comp_steps + 1) * (p.pipeline + 1))
        calibrated = k in self.fsm_done and phase == Phase.SEARCH
        assert ctx.get(dut.calibrated) == calibrated, f"{where}: calibrated"
        flag_write = k in high.get("calflag_groups", ())
        assert ctx.get(dut.calflag_groups) == (1 << group if flag_write else 0), f"{where}"
        assert ctx.get(dut.set_cal_range) == (flag_write and values["any_flag"]), f"{where}"
        if k in high.get("store", ()):
            assert ctx.get(dut.out_groups) == 1 << group, f"{where}: out_groups"
        if p.pipeline == 4:
            assert ctx.get(dut.set_acc_sat) == values["acc_saturated"], f"{where}: set_acc_sat"
        else:
            run_write = (phase == Phase.WRITE and self.cmd_word & 7 == Op.RUN)
            assert ctx.get(dut.set_acc_sat) == (run_write and values["acc_saturated"]), where
        self._check_planes(k, sched)

        if done_cycle:
            self.cycles_register = len(sched["busy"])
        self.cycle += 1
        await ctx.tick()

    def _check_planes(self, k, sched):
        ctx, dut, p = self.ctx, self.dut, self.p
        planes = sched["planes"] if sched is not None else {}
        if k in planes:
            self.seen["plane_cycles"] += 1
        assert ctx.get(dut.plane_cycle) == (k in planes), f"cycle {k}: plane_cycle"
        if p.pipeline == 4:
            ahead = planes.get(k + 2)
            expected = 0 if ahead is None else 1 << ahead
            assert ctx.get(dut.plane_select) == expected, f"cycle {k}: plane_select"
        else:
            ahead = planes.get(k + 1)
            assert ctx.get(dut.planes_next) == (ahead is not None), f"cycle {k}: planes_next"
            if ahead is not None:
                assert ctx.get(dut.plane_next) == ahead, f"cycle {k}: plane_next"


def simulate(p, rng, scenario, component=Sequencer):
    run_bench(component, SequencerBench, p, rng, scenario)


def commands(p):
    """Every accepted command of ``p``: RUN with each NPLANES and ACCUMULATE, CALIBRATE
    and CLEAR."""
    runs = [Op.RUN | acc | n << NPLANES_SHIFT for n in range(p.input_bits + 1)
            for acc in (0, ACCUMULATE)]
    return runs + [Op.CALIBRATE, Op.CLEAR]


@pytest.mark.parametrize("key, pipeline", [
    pytest.param(key, L, marks=() if (key, L) in DEFAULT_RUNS else pytest.mark.slow)
    for key in sorted(PARAMS) for L in PIPELINES])
def test_every_command_cycle_by_cycle(key, pipeline, rng):
    """Each accepted command twice in random order, some written in the first idle
    cycle after the previous one, others after idle cycles with other accesses."""
    p = MacroParams(**PARAMS[key], pipeline=pipeline)
    cmds = commands(p) * 2
    order = rng.permutation(len(cmds))

    async def scenario(bench):
        await bench.idle(4)
        for i in order:
            await bench.command_and_wait(cmds[i])
            await bench.idle(int(rng.choice([0, 0, 1, 3])))
        assert bench.seen["commands"] == len(cmds)
        assert bench.seen["plane_cycles"] > 0

    simulate(p, rng, scenario)


@pytest.mark.parametrize("pipeline", [1, 2, 3])
def test_run_end_ahead_announces_each_runs_end(pipeline, rng):
    """``run_end_ahead`` (the network engine's): ``run_ends_next`` in exactly the cycle
    before each RUN's ``command_done``, never for CALIBRATE or CLEAR; every other port
    as without it."""
    p = MacroParams(**PARAMS["2x6-P3-B3-K4"], pipeline=pipeline)
    cmds = commands(p) * 2
    order = rng.permutation(len(cmds))

    async def scenario(bench):
        assert hasattr(bench.dut, "run_ends_next")
        await bench.idle(3)
        for i in order:
            await bench.command_and_wait(cmds[i])
            await bench.idle(int(rng.choice([0, 0, 2])))

    simulate(p, rng, scenario, lambda p: Sequencer(p, run_end_ahead=True))


def test_run_end_ahead_needs_a_pipeline():
    with pytest.raises(ValueError, match="run_end_ahead needs a pipelined sequencer "
                                         r"\(pipeline 1..4\), not pipeline 0"):
        Sequencer(MacroParams(2, 4), run_end_ahead=True)


def test_schedule_lengths_are_the_contract_cycles():
    """The test's schedule has the BUSY lengths of ``MacroParams`` for every L."""
    for L in PIPELINES:
        p = MacroParams(**PARAMS["2x6-P3-B3-K4"], pipeline=L)
        for cmd in commands(p):
            sched = schedule(p, cmd, 0)
            n = (cmd >> NPLANES_SHIFT & 0xF) or p.input_bits
            expected = {Op.RUN: p.run_cycles(n), Op.CALIBRATE: p.calibrate_cycles(),
                        Op.CLEAR: p.clear_cycles()}[cmd & 7]
            assert len(sched["busy"]) == expected == sched["last"]
