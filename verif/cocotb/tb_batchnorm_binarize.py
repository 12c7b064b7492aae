"""cocotb testbench of ``rtl/batchnorm_binarize.py`` against ``models.macro.binarize``.

Random accumulators and thresholds over the whole signed A-bit range, with a third of
the lanes at a tie (``acc == theta``, which gives 1 before the flip), a third one step
either side of the threshold, and the extremes of the range; random flips.
"""

from __future__ import annotations

import cocotb
import numpy as np

from models.macro import binarize

from .tb import TB, context

TIMEOUT_US = 20_000


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def random_thresholds(dut):
    """Random vectors (``CIM_ARGS`` ``vectors``, default 1000) against the golden model."""
    ctx = context("random_thresholds")
    tb = TB(dut, ctx)
    p, rng = ctx.p, ctx.rng
    P, A = p.cols_per_cycle, p.acc_bits
    lo, hi = -(1 << (A - 1)), (1 << (A - 1)) - 1
    await tb.reset()
    ties = near = 0
    for n in range(int(ctx.args.get("vectors", 1000))):
        theta = np.where(rng.random(P) < 0.2, rng.choice([lo, hi, 0], P), rng.integers(lo, hi + 1, P))
        kind = rng.integers(0, 4, P)
        acc = np.where(kind == 0, theta,
                       np.where(kind == 1, theta + rng.choice([-1, 1], P),
                                np.where(kind == 2, rng.choice([lo, hi], P), rng.integers(lo, hi + 1, P))))
        acc = np.clip(acc, lo, hi)
        flip = rng.integers(0, 2, P)
        tb.set_lanes("acc", acc, A)
        tb.set_lanes("theta", theta, A)
        tb.set("flip", int(sum(int(f) << i for i, f in enumerate(flip))))
        await tb.settle()
        y = tb.get("y")
        got = np.array([(y >> i) & 1 for i in range(P)])
        want = binarize(acc, theta, flip)
        assert np.array_equal(got, want), \
            f"vector {n}: y {got} != golden {want} (acc {acc}, theta {theta}, flip {flip})"
        ties += int(np.sum(acc == theta))
        near += int(np.sum(np.abs(acc - theta) == 1))
    assert ties and near, "the stimulus never produced a tie or a near miss"
    dut._log.info(f"{ties} ties and {near} near misses among the lanes checked")
    ctx.save()
