# amaranth: UnusedElaboratable=no
"""The plain datapath (bench/plain_datapath.py), the engine's area yardstick: simulated
against the golden model's ideal RUN, its argument checks, and FPGA builds (a small iCE40
one in the default run; the target sizes behind -m slow)."""

import json

import numpy as np
import pytest
from amaranth.sim import Simulator

from bench import plain_datapath as pd
from bench.plain_datapath import PlainDatapath
from models.macro import binarize, ideal_matvec
from models.params import MacroParams


def simulate(dp, weights, thresh, inputs):
    """Load ``weights`` (R x C bits) and ``thresh`` (C), then RUN each input vector of
    ``inputs`` (runs x R, B-bit); return per run ``(out bits, tiles by column, cycles
    from start to done)``, the tiles collected from the ``acc`` stream."""
    R, C, P, B, A = dp.rows, dp.cols, dp.cols_per_cycle, dp.input_bits, dp.acc_bits
    results = []

    async def bench(ctx):
        for c in range(C):
            ctx.set(dp.load_en, 1)
            ctx.set(dp.load_weights, int("".join(str(b) for b in weights[::-1, c]), 2))
            ctx.set(dp.load_thresh, int(thresh[c]))
            await ctx.tick()
        ctx.set(dp.load_en, 0)
        for x in inputs:
            for b in range(B):                       # plane 0 first
                ctx.set(dp.plane_en, 1)
                ctx.set(dp.plane, sum(((int(v) >> b) & 1) << r for r, v in enumerate(x)))
                await ctx.tick()
            ctx.set(dp.plane_en, 0)
            ctx.set(dp.start, 1)
            await ctx.tick()
            ctx.set(dp.start, 0)
            tiles = np.full(C, None, dtype=object)
            cycles = 1
            while not ctx.get(dp.done):
                assert ctx.get(dp.busy), "busy fell before done"
                if ctx.get(dp.acc_valid):
                    g = ctx.get(dp.acc_group)
                    word = ctx.get(dp.acc)
                    for j in range(P):
                        lane = (word >> (j * A)) & ((1 << A) - 1)
                        tiles[g * P + j] = lane - (1 << A) if lane >> (A - 1) else lane
                await ctx.tick()
                cycles += 1
                assert cycles < 10 * (C // P) * (B + 1) + 20, "no done"
            assert not ctx.get(dp.busy)
            out = ctx.get(dp.out)
            results.append((np.array([(out >> c) & 1 for c in range(C)]), tiles, cycles))

    sim = Simulator(dp)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


CASES = [  # rows, cols, cols_per_cycle, cuts, storage
    (7, 6, 6, 0, None), (7, 6, 6, 2, None), (7, 6, 6, 4, None),
    (9, 6, 2, 0, None), (9, 6, 2, 2, None), (9, 6, 2, 4, None),
    (5, 6, 3, 4, "ff"), (8, 4, 4, 2, "ram"), (1, 3, 1, 0, None),
    (3, 18, 18, 0, None), (4, 18, 9, 4, None),     # 3 and 2 blocks of plane copies
]


@pytest.mark.parametrize("rows,cols,P,cuts,storage", CASES)
def test_run_matches_the_ideal_macro(rows, cols, P, cuts, storage, rng):
    B = 3
    dp = PlainDatapath(rows, cols, cols_per_cycle=P, input_bits=B, cuts=cuts, storage=storage)
    p = MacroParams(rows, cols, input_bits=B)
    weights = rng.integers(0, 2, (rows, cols))
    inputs = rng.integers(0, 1 << B, (3, rows))
    inputs[1] = (1 << B) - 1                          # all ones: the largest |tile|
    tiles = ideal_matvec(p, inputs, weights)
    # Thresholds at a tile, one above and one below (the tie gives 1), and random ones.
    thresh = tiles[0] + rng.integers(-1, 2, cols)
    thresh[::3] = rng.integers(-rows * (2**B - 1), rows * (2**B - 1) + 1, len(thresh[::3]))
    got = simulate(dp, weights, thresh, inputs)
    G = cols // P
    for run, (out, acc, cycles) in enumerate(got):
        assert list(acc) == list(tiles[run]), f"run {run}: tiles"
        assert list(out) == list(binarize(tiles[run], thresh, 0)), f"run {run}: out"
        assert cycles == G * (B + 1) + cuts + 3


@pytest.mark.parametrize("kwargs,message", [
    (dict(rows=0, cols=4), "rows must be >= 1, not 0"),
    (dict(rows=4, cols=6, cols_per_cycle=4), "cols_per_cycle must divide cols (6), not 4"),
    (dict(rows=4, cols=6, cols_per_cycle=7), "cols_per_cycle must be in 1..6, not 7"),
    (dict(rows=4, cols=6, input_bits=9), "input_bits must be in 1..8, not 9"),
    (dict(rows=4, cols=6, cuts=3), "cuts must be one of 0, 2, 4, not 3"),
    (dict(rows=4, cols=6, storage="lut"), "storage must be ff or ram, not 'lut'"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError) as info:
        PlainDatapath(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("argv,option,text", [
    (["--board", "icebreaker", "--rows", "8", "--cols", "6", "--cols-per-cycle", "4"],
     "--cols-per-cycle", "must be a divisor of --cols 6, not 4"),
    (["--board", "icebreaker", "--rows", "8", "--cols", "6", "--cuts", "3"],
     "--cuts", "must be one of 0, 2, 4, not 3"),
    (["--board", "icebreaker", "--rows", "8", "--cols", "6", "--no-tmg-ripup"],
     "--no-tmg-ripup", "ECP5 (ulx3s) only"),
    (["--board", "icebreaker", "--rows", "8", "--cols", "6", "--freq", "500"], "--freq", "500"),
    (["--board", "ice", "--rows", "8", "--cols", "6"], "--board", "'ice'"),
    (["--board", "ulx3s", "--rows", "0", "--cols", "6"], "--rows", "0"),
    (["--board", "ulx3s", "--rows", "8"], "--cols", "required"),
    (["--board", "ulx3s", "--rows", "8", "--cols", "6", "--engine-pipeline", "2"],
     "--engine-pipeline", "needs --engine MODEL"),
    (["--board", "ulx3s", "--rows", "8", "--cols", "6", "--engine", "no-such-model"],
     "--engine", "no-such-model"),
    (["--board", "ulx3s", "--rows", "8", "--cols", "6", "--engine-ideal"],
     "--engine-nonideal/--engine-ideal", "needs --engine MODEL"),
    (["--board", "ulx3s", "--rows", "8", "--cols", "6", "--engine", "no-such-model",
      "--engine-nonideal", "offset,foo"], "--engine-nonideal", "not 'foo'"),
    (["--board", "ulx3s", "--rows", "8", "--cols", "6", "--engine", "no-such-model",
      "--engine-ideal", "--engine-nonideal", "offset"], "--engine-nonideal", "not allowed"),
])
def test_bad_command_lines(argv, option, text, tmp_path, capsys):
    out = tmp_path / "out"
    assert pd.main(argv + ["-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{pd.PROG}: error: ")
    assert option in err[0] and text in err[0]
    assert not out.exists()


def _build_and_check(argv, tmp_path, capsys, family):
    out = tmp_path / "build"
    status = pd.main(argv + ["-o", str(out), "--quiet"])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    report = json.loads((out / "report.json").read_text())
    assert status == (0 if result["met"] else 1)
    assert lines[0] == pd.TABLE_HEAD.splitlines()[0] and lines[2].startswith("| ")
    assert result["logic"] == report["utilization"][pd.LOGIC_CELL[family]]["used"] > 0
    assert result["luts"] == report["luts"] > 0
    # The weights and thresholds are flip-flops that synthesis kept (none folded away).
    return result, report


def test_build_icebreaker_small(tmp_path, capsys):
    result, report = _build_and_check(
        ["--board", "icebreaker", "--rows", "8", "--cols", "8", "--cuts", "2"],
        tmp_path, capsys, "ice40")
    assert result["ffs"] >= 8 * 8 + 8 * report["params"]["acc_bits"]
    assert result["met"]


@pytest.mark.slow
def test_build_icebreaker_32x96_folded(tmp_path, capsys):
    result, _ = _build_and_check(
        ["--board", "icebreaker", "--rows", "32", "--cols", "96", "--cols-per-cycle", "4",
         "--cuts", "2", "--freq", "24"], tmp_path, capsys, "ice40")
    assert result["block_ram"] > 0 and result["met"]


@pytest.mark.slow
def test_build_ulx3s_32x96_fully_parallel(tmp_path, capsys):
    result, _ = _build_and_check(
        ["--board", "ulx3s", "--rows", "32", "--cols", "96", "--cuts", "4", "--freq", "100"],
        tmp_path, capsys, "ecp5")
    assert result["ffs"] >= 32 * 96 and result["met"]
