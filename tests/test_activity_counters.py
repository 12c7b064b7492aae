# amaranth: UnusedElaboratable=no
"""Activity counters (rtl/activity_counters.py) in amaranth.sim against a Python model.

Random event streams on narrow counters (4 and 6 bits) reach saturation many times:
each counter must equal ``min(its exact count since the last clear, 2^bits - 1)``, where
column conversions count P per plane cycle and per calibration read, and a clear wins
over an event in the same cycle. The 32-bit counters of the macro are compared with the
golden model's counts in tests/test_cim_macro.py and the cocotb macro testbench.
"""

import pytest
from amaranth.sim import Simulator

from models.params import MacroParams
from rtl.activity_counters import ActivityCounters


def test_rejects_bad_width():
    with pytest.raises(ValueError, match="bits must be a positive integer, not 0"):
        ActivityCounters(MacroParams(rows=2, cols=3), bits=0)


@pytest.mark.parametrize("bits, lanes", [(4, 3), (6, 5), (4, 1)])
def test_counts_saturate_and_clear(bits, lanes, rng):
    p = MacroParams(rows=4, cols=lanes * 2, cols_per_cycle=lanes)
    dut = ActivityCounters(p, bits=bits)
    top = (1 << bits) - 1

    async def bench(ctx):
        exact = dict(plane_operations=0, column_conversions=0, calibration_reads=0,
                     bus_accesses=0)
        for cycle in range(600):
            # Plane cycles and calibration reads never coincide (RUN against CALIBRATE).
            kind = int(rng.integers(3))
            plane, cal = kind == 1, kind == 2
            access = bool(rng.integers(2))
            clear = bool(rng.random() < 0.03)
            ctx.set(dut.plane_cycle, plane)
            ctx.set(dut.calibration_read, cal)
            ctx.set(dut.access, access)
            ctx.set(dut.clear, clear)
            await ctx.tick()
            if clear:
                exact = dict.fromkeys(exact, 0)
            else:
                exact["plane_operations"] += plane
                exact["calibration_reads"] += cal
                exact["column_conversions"] += lanes * (plane or cal)
                exact["bus_accesses"] += access
            for name, count in exact.items():
                assert ctx.get(getattr(dut, name)) == min(count, top), (cycle, name)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
