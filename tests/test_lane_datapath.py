# amaranth: UnusedElaboratable=no
"""Tests of ``rtl/lane_datapath.py`` (LaneDatapath) alone: one column group's RUN,
CALIBRATE and CLEAR through the P lanes against the golden model ``models/macro.py``
(``docs/ARCHITECTURE.md`` sections 1-4, timing of section 5, ports of section 7).

The testbench plays the sequencer, the plane select and the memories: for each command
it drives the strobes in the cycles of the schedule of section 5
(``tests/command_schedule.py``), the input plane of each plane cycle (most significant
first; at L = 4 with its ones count) and 0 otherwise, and the group's memory words from
the cycle after the read cycle on (another group's before) with the registers (random
weights, COMP words, offsets, gains, stuck cells, thresholds, FLIP,
the accumulator, SAT, QSHIFT and a random transfer table loaded through the table port).
In the write-back cycle ``acc_result`` and ``out_bits`` must be the model's
:func:`run_tile` and :func:`binarize` (``acc_saturated`` there, two cycles later at
L = 4, where STATUS takes it as it is: high then and only then), and 0 in a CLEAR's
store cycle; a CALIBRATE's ``calibration_done`` must come in the last cycle of the
verification read and ``comp_result``, ``flags`` and ``any_flag`` (a cycle later with a
pipeline) must be :func:`calibrate`'s. ``calibration_read`` (the activity counters'
calibration reads) must be high in the last cycle of each of the S + 1 reads of a
CALIBRATE and in no other cycle.
"""

import numpy as np
import pytest

from models.macro import binarize, calibrate, comp_value, run_tile, thermometer
from models.params import NONIDEALITIES, MacroParams, Op
from rtl.compute_array import count_bits
from rtl.lane_datapath import LaneDatapath
from rtl.replicas import lane_blocks
from verif.address_space import ACCUMULATE, NPLANES_SHIFT
from .command_schedule import schedule
from .component_bench import Inputs, run_bench
from .lane_words import pack, unpack_signed

# One group (cols = P): the datapath holds one group's lanes.
PARAMS = {
    "5x3-B3-K4-all": dict(rows=5, cols=3, input_bits=3, comp_rows=4, nonideal=NONIDEALITIES),
    # Two blocks of lanes, 32 rows, the default non-idealities.
    "32x10-B2-K8": dict(rows=32, cols=10, input_bits=2, comp_rows=8),
}
PIPELINE_SET = (0, 2, 4)


def random_state(p, rng):
    """The group's memory words and registers: random, with offsets and accumulators
    often near their limits (calibration range reports, saturation)."""
    R, P, K, W, A, M = (p.rows, p.cols_per_cycle, p.comp_rows, p.readout_bits, p.acc_bits,
                        p.readout_max)
    lo_a, hi_a = -(1 << (A - 1)), (1 << (A - 1)) - 1
    acc = rng.integers(lo_a, hi_a + 1, size=P)
    near = rng.random(P) < 0.4
    acc = np.where(near, np.where(rng.random(P) < 0.5, lo_a, hi_a) - np.sign(acc) * rng.integers(0, 64, size=P), acc)
    state = dict(weights=rng.integers(0, 2, size=(R, P)), comp_bits=rng.integers(0, 1 << K, size=P),
                 theta=rng.integers(lo_a // 64, hi_a // 64 + 1, size=P), acc=np.clip(acc, lo_a, hi_a),
                 flip=rng.integers(0, 2, size=P), inputs=rng.integers(0, 2, size=(p.input_bits, R)))
    if p.has("offset"):
        wide = rng.random(P) < 0.3
        state["offset"] = np.where(wide, rng.integers(-(1 << (W - 1)), M + 1, size=P),
                                   rng.integers(-K - 2, K + 2, size=P))
    if p.has("gain"):
        state["gain"] = np.where(rng.random(P) < 0.5, 64, rng.integers(0, 256, size=P))
    if p.has("readout"):
        state["sat"] = int(rng.integers(M // 2, M + 1)) if rng.random() < 0.7 else int(rng.integers(0, M + 1))
        state["qshift"] = int(rng.choice([0, 0, 1, 2, 15]))
    if p.has("stuck"):
        state["stuck_mask"] = (rng.random((R, P)) < 0.2).astype(np.int64)
        state["stuck_value"] = rng.integers(0, 2, size=(R, P))
    return state


def readout_kwargs(p, state, table):
    kwargs = dict(offset=state.get("offset"), gain=state.get("gain"), sat=state.get("sat"),
                  qshift=state.get("qshift") if p.has("readout") else None, table=table)
    return kwargs


def columns(bits, rows):
    """(R, P) bits as the lane-major word of R-bit lanes."""
    return pack([sum(int(b) << r for r, b in enumerate(col)) for col in bits.T], rows)


class DatapathBench:
    """The datapath and a sequencer, plane select and memories around it."""

    def __init__(self, ctx, dut, p, rng):
        self.ctx, self.dut, self.p, self.rng = ctx, dut, p, rng
        names = ["plane", "weights", "comp_bits", "theta", "acc", "flip", "calibrating",
                 "calibration_start", "calibrated", "tile_clear", "step", "accumulate", "store",
                 "store_result", "plane_ones", "stuck_mask", "stuck_value", "offset", "gain",
                 "sat", "qshift", "table_addr", "table_wdata", "table_we", "margin_capture",
                 "margin_capture_late"]
        self.inputs = Inputs(p, {n: getattr(dut, n) for n in names if hasattr(dut, n)})
        self.cycle = 0
        self.table = None
        if p.has("table"):
            W = p.readout_bits
            self.table = rng.integers(-(1 << (W - 1)), 1 << (W - 1), size=1 << W)
        self.checked = dict(runs=0, calibrations=0, saturations=0, flags=0)

    async def tick(self):
        self.inputs.apply(self.ctx)
        self.cycle += 1
        await self.ctx.tick()

    async def load_table(self):
        """The transfer table written through its bus port, then read back."""
        v = self.inputs.values
        W = self.p.readout_bits
        for index, value in enumerate(self.table):
            v.update(table_addr=index, table_wdata=int(value) & ((1 << W) - 1), table_we=1)
            await self.tick()
        v["table_we"] = 0
        for index, value in enumerate(self.table):
            v["table_addr"] = index
            await self.tick()
            assert self.ctx.get(self.dut.table_rdata) == value, f"TABLE[{index}]"

    def hold(self, state):
        """Drive the group's words and registers."""
        p, v = self.p, self.inputs.values
        A, K, W = p.acc_bits, p.comp_rows, p.readout_bits
        v.update(weights=columns(state["weights"], p.rows), comp_bits=pack(state["comp_bits"], K),
                 theta=pack(state["theta"], A), acc=pack(state["acc"], A),
                 flip=pack(state["flip"], 1))
        if p.has("stuck"):
            v.update(stuck_mask=columns(state["stuck_mask"], p.rows),
                     stuck_value=columns(state["stuck_value"], p.rows))
        if p.has("offset"):
            v["offset"] = pack(state["offset"], W)
        if p.has("gain"):
            v["gain"] = pack(state["gain"], 8)
        if p.has("readout"):
            v.update(sat=state["sat"], qshift=state["qshift"])

    async def command(self, cmd, state):
        """One group of ``cmd`` from its read cycle to two cycles after its write-back,
        with every check; the command is accepted in the cycle before the read."""
        p, ctx, dut, v = self.p, self.ctx, self.dut, self.inputs.values
        P, R, L = p.cols_per_cycle, p.rows, p.pipeline
        ones_lanes = (1 << P) - 1
        # The memories answer the read cycle's group address a cycle later: their words
        # are the group's from the cycle after the read cycle, another group's before.
        self.hold(random_state(p, self.rng))
        accepted = self.cycle
        sched = schedule(p, cmd, accepted)
        planes = sched["planes"]
        high = sched["high"]
        run = cmd & 7 != Op.CALIBRATE                     # RUN or CLEAR: stores
        expected = self.expected(cmd, state)
        v.update(accumulate=ones_lanes if cmd & 7 == Op.RUN and cmd & ACCUMULATE else 0,
                 calibrating=0 if run else ones_lanes)
        await self.tick()                                  # the accepted cycle
        write = max(sched["busy"])
        while self.cycle <= write + 2:
            k = self.cycle
            if k == accepted + 2:
                self.hold(state)
            plane = planes.get(k)
            bits = 0 if plane is None else sum(int(b) << r for r, b in enumerate(state["inputs"][plane]))
            v["plane"] = pack([bits] * lane_blocks(P), R)
            if L == 4:
                v["plane_ones"] = pack([bin(bits).count("1")] * lane_blocks(P), count_bits(R))
            for name in ("tile_clear", "step", "store", "store_result", "margin_capture",
                         "margin_capture_late"):
                v[name] = ones_lanes if k in high.get(name, ()) else 0
            v["calibration_start"] = int(k in high["calibration_start"])
            v["calibrated"] = int(k in high["calibrated"])
            self.inputs.apply(ctx)
            if p.pipeline == 4:
                # STATUS.acc_sat takes it as it is: a pulse two cycles after a saturating
                # RUN's write-back and nothing else.
                pulse = run and k == write + 2 and expected["saturated"]
                assert ctx.get(dut.acc_saturated) == pulse, f"cycle {k}: acc_saturated"
                self.checked["saturations"] += pulse
            assert ctx.get(dut.calibration_read) == (k in high["calibration_read"]), \
                f"cycle {k}: calibration_read"
            if run:
                self.check_run(k, write, expected)
            else:
                self.check_calibration(k, sched, expected)
            await self.tick()

    def expected(self, cmd, state):
        p = self.p
        table = self.table
        if cmd & 7 == Op.CLEAR:
            # CLEAR stores 0 (store_result low).
            zeros = np.zeros(p.cols_per_cycle, dtype=np.int64)
            return dict(acc=zeros, out=zeros, saturated=False, clear=True)
        if cmd & 7 == Op.RUN:
            n = (cmd >> NPLANES_SHIFT & 0xF) or p.input_bits
            x = sum(state["inputs"][b].astype(np.int64) << b for b in range(n))
            acc, saturated = run_tile(
                p, x, state["weights"], comp_value(p, state["comp_bits"]),
                stuck_mask=state.get("stuck_mask"), stuck_value=state.get("stuck_value"),
                planes=n, acc_prev=state["acc"], accumulate=bool(cmd & ACCUMULATE),
                **readout_kwargs(p, state, table))
            return dict(acc=acc, out=binarize(acc, state["theta"], state["flip"]),
                        saturated=bool(saturated.any()), clear=False)
        n, flags, _ = calibrate(p, **readout_kwargs(p, state, table))
        return dict(comp=thermometer(p, n), flags=flags)

    def check_run(self, k, write, expected):
        ctx, dut, p = self.ctx, self.dut, self.p
        where = f"cycle {k}"
        if k == write:
            acc = unpack_signed(ctx.get(dut.acc_result), p.acc_bits, p.cols_per_cycle)
            assert acc == expected["acc"].tolist(), f"{where}: ACC"
            out = ctx.get(dut.out_bits)
            assert out == pack(expected["out"], 1), f"{where}: OUT"
            self.checked["runs"] += 1
        if p.pipeline < 4 and k == write and expected["clear"] is False:
            # Read by the sequencer in a RUN's write-back cycle only.
            assert ctx.get(dut.acc_saturated) == expected["saturated"], f"{where}: acc_saturated"
            self.checked["saturations"] += expected["saturated"]

    def check_calibration(self, k, sched, expected):
        ctx, dut, p = self.ctx, self.dut, self.p
        done = min(sched["high"]["calibrated"])
        where = f"cycle {k}"
        assert ctx.get(dut.calibration_done) == (k == done), f"{where}: calibration_done"
        result = done + (1 if p.pipeline else 0)
        if k == result:
            comp = [ctx.get(dut.comp_result) >> (i * p.comp_rows) & ((1 << p.comp_rows) - 1)
                    for i in range(p.cols_per_cycle)]
            assert comp == expected["comp"].tolist(), f"{where}: COMP"
            assert ctx.get(dut.flags) == pack(expected["flags"], 1), f"{where}: CALFLAG"
            assert ctx.get(dut.any_flag) == bool(expected["flags"].any()), f"{where}: any_flag"
            self.checked["calibrations"] += 1
            self.checked["flags"] += int(expected["flags"].any())


@pytest.mark.parametrize("pipeline", PIPELINE_SET)
@pytest.mark.parametrize("key", sorted(PARAMS))
def test_run_and_calibrate_against_the_model(key, pipeline, rng):
    """Runs with every NPLANES (0 meaning B), with and without ACCUMULATE,
    calibrations and clears, each on a fresh random state, back to back."""
    p = MacroParams(**PARAMS[key], pipeline=pipeline)
    runs = [Op.RUN | n << NPLANES_SHIFT | acc for n in range(p.input_bits + 1)
            for acc in (0, ACCUMULATE)]
    cmds = runs * 2 + [Op.CALIBRATE] * 6 + [Op.CLEAR] * 2
    order = rng.permutation(len(cmds))

    async def scenario(bench):
        if p.has("table"):
            await bench.load_table()
        for i in order:
            await bench.command(cmds[i], random_state(p, rng))
        assert bench.checked["runs"] == len(runs) * 2 + 2
        assert bench.checked["calibrations"] == 6
        assert bench.checked["saturations"] > 0 and bench.checked["flags"] > 0

    run_bench(LaneDatapath, DatapathBench, p, rng, scenario)
