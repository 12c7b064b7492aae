# amaranth: UnusedElaboratable=no
"""Tests of ``rtl/column_memory.py``: per-group word storage with sliced writes.

Random reads and writes with random enables are compared cycle by cycle with a list of
Python integers (the reference model of a synchronous-read memory), for one and several
words, one and several banks, and lane or chunk granularity, with and without
``block_ram``; Yosys maps a ``block_ram`` memory onto ECP5 block RAM with no logic beside.
"""

import re
import subprocess

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from fpga.build import tool_environment

from rtl import column_memory
from rtl.column_memory import ColumnMemory

CASES = {
    "one-word": dict(lane_bits=5, lanes=3, depth=1),
    "groups": dict(lane_bits=7, lanes=4, depth=6),
    "chunks": dict(lane_bits=64, lanes=3, depth=5, granularity=32),
    "init": dict(lane_bits=8, lanes=2, depth=3, lane_init=0x40),
    "banked": dict(lane_bits=2048, lanes=5, depth=2, granularity=32),   # 10240 bits: 2 banks
    "block-ram": dict(lane_bits=16, lanes=3, depth=5, lane_init=0x1234, block_ram=True),
    "block-ram-banked": dict(lane_bits=2048, lanes=5, depth=3, granularity=32, block_ram=True),
}


@pytest.mark.parametrize("key", sorted(CASES))
def test_random_reads_and_writes(key, rng):
    kw = CASES[key]
    dut = ColumnMemory(**kw)
    width = kw["lane_bits"] * kw["lanes"]
    gran = kw.get("granularity", kw["lane_bits"])
    slices = width // gran
    depth = kw["depth"]
    words = [dut.word_init] * depth
    if key.endswith("banked"):
        assert width > column_memory.MAX_BANK_BITS

    def random_word():
        return int.from_bytes(rng.bytes((width + 7) // 8), "little") & ((1 << width) - 1)

    async def testbench(ctx):
        for _ in range(60):
            read_addr = int(rng.integers(depth))
            write_addr = int(rng.integers(depth))
            data = random_word()
            density = rng.choice([0.0, 0.3, 1.0], p=[0.3, 0.6, 0.1])
            en = sum(1 << int(i) for i in np.flatnonzero(rng.random(slices) < density))
            ctx.set(dut.read_addr, read_addr)
            ctx.set(dut.write_addr, write_addr)
            ctx.set(dut.write_data, data)
            ctx.set(dut.write_en, en)
            await ctx.tick()
            # The read port returns the word as it was before this cycle's write.
            assert ctx.get(dut.read_data) == words[read_addr]
            for i in range(slices):
                if en >> i & 1:
                    mask = ((1 << gran) - 1) << (i * gran)
                    words[write_addr] = (words[write_addr] & ~mask) | (data & mask)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def test_word_init():
    assert ColumnMemory(8, 3, 2, lane_init=0x40).word_init == 0x404040
    assert ColumnMemory(4, 2, 1).word_init == 0


@pytest.mark.parametrize("kw, error, match", [
    (dict(lane_bits=0, lanes=1, depth=1), ValueError, "lane_bits"),
    (dict(lane_bits=4, lanes=1.0, depth=1), TypeError, "lanes"),
    (dict(lane_bits=4, lanes=1, depth=0), ValueError, "depth"),
    (dict(lane_bits=4, lanes=3, depth=1, granularity=5), ValueError, "granularity"),
    (dict(lane_bits=4, lanes=1, depth=1, lane_init=16), ValueError, "lane_init"),
    (dict(lane_bits=4, lanes=1, depth=1, lane_init=True), TypeError, "lane_init"),
])
def test_rejects_bad_arguments(kw, error, match):
    with pytest.raises(error, match=match):
        ColumnMemory(**kw)


@pytest.mark.parametrize("block_ram, cells", [
    # The bank of a 32x96 engine's ten tiles: shallow, so Yosys chooses LUT RAM and a
    # register per bit; in block RAM, one DP16KD per 32-bit write slice and no logic (a
    # read-before-write emulation would add a register and a multiplexer per bit).
    (False, {"TRELLIS_DPR16X4": 768, "TRELLIS_FF": 3072}),
    (True, {"DP16KD": 96}),
])
def test_ecp5_mapping(tmp_path, block_ram, cells):
    il = tmp_path / "memory.il"
    il.write_text(rtlil.convert(ColumnMemory(32, 96, 10, block_ram=block_ram), name="top"))
    env = tool_environment()
    subprocess.run([env["YOSYS"], "-q", "-p", "read_rtlil memory.il; synth_ecp5 -top top; "
                    "tee -q -o stat.txt stat"],
                   env=env, check=True, capture_output=True, cwd=tmp_path)
    stat = (tmp_path / "stat.txt").read_text()
    found = {name: int(n) for n, name in re.findall(r"^\s+(\d+)\s+(\w+)$", stat, re.M)
             if name[0].isupper()}
    assert found == cells
