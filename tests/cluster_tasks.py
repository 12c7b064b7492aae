"""Task functions for the Dask tests (importable by worker processes)."""

import os
import time

from models import experiments


def slow_block_correct(task, *, delay, **shared):
    """:func:`models.experiments.block_correct` after ``delay`` seconds, and the worker's
    process id (to see which blocks a killed worker's neighbours recomputed)."""
    time.sleep(delay)
    return experiments.block_correct(task, **shared), os.getpid()


def fake_build(board, rows, cols, *, cols_per_cycle, pipeline, freq_mhz, seed, out_dir):
    """A stand-in for fpga.build.build: a report whose Fmax falls with the design size,
    'timing' met below 64 columns, and a tool failure for pipeline 3."""
    os.makedirs(out_dir, exist_ok=True)
    if pipeline == 3:
        raise RuntimeError(f"{board}: the FPGA tools failed (logs in {out_dir}): ERROR: injected")
    luts = rows * cols * 3 + 100 * pipeline
    clock = (freq_mhz or 12.0) * 1e6
    fmax = clock * (1.5 if cols < 64 else 0.8)
    return dict(timing=dict(met=fmax >= clock, fmax_hz=fmax, clock_hz=clock),
                luts=luts, ffs=luts // 2,
                utilization={"ICESTORM_LC": dict(used=luts + 7, available=5280,
                                                 label="logic cells (LCs)")})
