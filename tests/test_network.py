"""The network runner (host/network.py) on the golden model: results, bus traffic, trim.

``run_network`` drives ``MacroDriver`` over ``ModelTransport(MacroModel(p))``. The
references are independent numpy computations: ``models.export.infer_folded`` (ideal
macro, or with a readout callback built from ``models.macro.readout`` and
``models.macro.calibrate`` for a sampled chip), never the driver or the bus model.
"""

import asyncio

import numpy as np
import pytest

from models import macro
from models.chip import ChipConfig, chip_to_rtl, sample_chip
from models.export import infer_folded
from models.macro import MacroModel
from models.params import NONIDEALITIES, MacroParams
from host.driver import MacroDriver, RegisterMap
from host.network import measure_residual, order_free, run_network, trim_shift
from host.transport import CountingTransport, ModelTransport

from .random_nets import random_net

ALL = frozenset(NONIDEALITIES)


def run(coro):
    return asyncio.run(coro)


async def connect(p, log=False):
    bus = CountingTransport(ModelTransport(MacroModel(p)), log=log)
    return await MacroDriver.connect(bus), bus


def assert_trace_equal(got, want):
    assert len(got) == len(want)
    for layer, (a, b) in enumerate(zip(got, want)):
        assert a.keys() == b.keys(), layer
        for key in a:
            assert np.array_equal(a[key], b[key]), (layer, key)


# --- ideal macro --------------------------------------------------------------------------

@pytest.mark.parametrize("sizes, p", [
    ((70, 30, 20, 5), MacroParams(32, 12, cols_per_cycle=4)),    # 3 row tiles, 3 col tiles
    ((20, 9, 4), MacroParams(8, 8, input_bits=3, comp_rows=2)),  # 3 row tiles, 2 col tiles
    ((64, 10, 3), MacroParams(64, 10)),                          # one tile per layer
    ((5, 40, 7), MacroParams(32, 40, input_bits=6, cols_per_cycle=8, nonideal=ALL)),
], ids=["70-30-20-5@32x12", "20-9-4@8x8", "64-10-3@64x10", "5-40-7@32x40-all"])
def test_run_network_equals_infer_folded(sizes, p, rng):
    net = random_net(rng, sizes, min(p.input_bits, 5), p.rows, p.cols)
    images = rng.integers(0, 1 << net.layers[0].planes, (7, sizes[0]))
    want, want_trace = infer_folded(net, images, acc_bits=p.acc_bits, return_trace=True)
    d, _ = run(connect(p))
    got, trace = run(run_network(d, net, images, return_trace=True))
    assert np.array_equal(got, want)
    assert_trace_equal(trace, want_trace)
    assert np.array_equal(run(run_network(d, net, images[:2])), want[:2])
    # A hidden layer that always outputs one value would make the comparison weak.
    assert 0 < np.mean(want_trace[0]["y"]) < 1


def test_run_network_rejects_a_net_for_another_macro(rng):
    net = random_net(rng, (10, 4, 2), 5, 8, 4)
    d, bus = run(connect(MacroParams(8, 5)))
    bus.reset()
    with pytest.raises(ValueError, match="mapped for a 8x4 macro, not 8x5"):
        run(run_network(d, net, np.zeros((1, 10), int)))
    d, bus = run(connect(MacroParams(8, 4)))
    bus.reset()
    with pytest.raises(ValueError, match=r"images must be in 0..31"):
        run(run_network(d, net, np.full((1, 10), 32)))
    with pytest.raises(ValueError, match=r"residual must have shape \(4,\)"):
        run(run_network(d, net, np.zeros((1, 10), int), residual=np.zeros(5, int)))
    with pytest.raises(ValueError, match=r"residual\[1\] = 64 is not a readout"):
        run(run_network(d, net, np.zeros((1, 10), int), residual=[0, 64, 0, 0]))
    with pytest.raises(TypeError, match="residual must hold integers"):
        run(run_network(d, net, np.zeros((1, 10), int), residual=np.zeros(4)))
    assert bus.total == 0


# --- bus traffic: resident tiles, reversed order, padding columns -------------------------

def weight_log(bus, p):
    """``(column, word)`` of every WEIGHT write in the access log, in order."""
    m = RegisterMap(p)
    column = {int(a): c for c, row in enumerate(m.column_chunk_addrs("WEIGHT")) for a in row}
    return [(column[a], v) for kind, a, v, *_ in bus.accesses
            if kind == "w" and a >> m.region_shift == m.regions["WEIGHT"]["region"]]


def expected_weight_log(net, p, n, reorder):
    """The WEIGHT writes the docs promise: per column tile, a row tile is written unless it
    is the one written last; odd images visit the row tiles backwards when ``reorder``;
    only the real columns of a column tile (R <= 32: one word per column, bit r = row r)."""
    assert p.chunks == 1
    log = []
    for layer in net.layers:
        T = layer.row_tiles
        for ct in range(layer.col_tiles):
            live = min(p.cols, layer.outputs - ct * p.cols)
            resident = None
            for i in range(n):
                for rt in (range(T - 1, -1, -1) if reorder(layer) and i % 2 else range(T)):
                    if rt == resident:
                        continue
                    bits = layer.weights[rt, ct].astype(np.int64)
                    words = (bits << np.arange(p.rows)[:, None]).sum(axis=0)
                    log += [(c, int(words[c])) for c in range(live)]
                    resident = rt
    return log


@pytest.mark.parametrize("sizes, p", [
    ((100, 96, 96, 10), MacroParams(32, 96)),                    # the MNIST shape: T = 4, 3, 3
    ((70, 30, 20, 5), MacroParams(32, 12, cols_per_cycle=4)),    # several column tiles
], ids=["100-96-96-10@32x96", "70-30-20-5@32x12"])
def test_weight_loads_and_acc_reads(sizes, p, rng):
    """A weight tile is written only when it is not the one loaded, odd images visit the
    row tiles backwards, padding columns are neither written nor read."""
    net = random_net(rng, sizes, 5, p.rows, p.cols)
    n = 5
    images = rng.integers(0, 32, (n, sizes[0]))
    d, bus = run(connect(p, log=True))
    bus.reset()
    got = run(run_network(d, net, images))
    assert np.array_equal(got, infer_folded(net, images, acc_bits=p.acc_bits))
    assert all(order_free(p, layer) for layer in net.layers)
    want = expected_weight_log(net, p, n, reorder=lambda layer: True)
    assert weight_log(bus, p) == want
    T = [layer.row_tiles for layer in net.layers]
    tiles = sum((1 + n * (t - 1)) * layer.col_tiles for t, layer in zip(T, net.layers))
    assert len(want) < tiles * p.cols               # the last layer's padding is skipped
    m = RegisterMap(p)
    acc_col = {int(a): c for c, a in enumerate(m.column_addrs("ACC"))}
    acc_reads = [acc_col[a] for kind, a, *_ in bus.accesses
                 if kind == "r" and a >> m.region_shift == m.regions["ACC"]["region"]]
    last = net.layers[-1]
    assert acc_reads == [c for _ in range(n) for ct in range(last.col_tiles)
                         for c in range(min(p.cols, last.outputs - ct * p.cols))]


def test_row_tiles_stay_in_order_when_acc_can_clamp(rng):
    """A macro whose ACC is too narrow for order-free row tiles runs them in order for
    every image, reloading each, and still equals the numpy model with the same offsets."""
    p = MacroParams(8, 8, input_bits=3, comp_rows=2, nonideal={"offset"}, acc_bits=8)
    net = random_net(rng, (17, 8, 4), 3, p.rows, p.cols)       # T = 3 row tiles, planes 3
    assert net.min_acc_bits <= p.acc_bits and not order_free(p, net.layers[0])
    assert order_free(p, net.layers[1])
    offset = rng.integers(-15, 16, p.cols)
    n = 12
    images = rng.integers(0, 8, (n, 17))
    d, bus = run(connect(p, log=True))
    run(d.write_offsets(offset))
    comp = 2 * run(d.read_comp()).sum(axis=0).astype(np.int64) - p.comp_rows

    def readout(layer, rt, ct, plane, bits, wbits):
        return macro.readout(p, bits, wbits, comp, offset=offset)

    want, want_trace = infer_folded(net, images, readout=readout, acc_bits=p.acc_bits,
                                    return_trace=True)
    bus.reset()
    got, trace = run(run_network(d, net, images, return_trace=True))
    assert np.array_equal(got, want)
    assert_trace_equal(trace, want_trace)
    assert weight_log(bus, p) == expected_weight_log(net, p, n,
                                                     reorder=lambda layer: order_free(p, layer))


# --- calibration trim -----------------------------------------------------------------------

def sampled_chip(p, seed, sigma=4.0):
    """chip_to_rtl of ``models.chip.sample_chip`` with comparator offsets of ``sigma``."""
    chip = sample_chip(ChipConfig(offset_sigma=sigma), seed, p.rows, p.cols, p.comp_rows)
    regs = chip_to_rtl(chip, p)
    return regs["offset"], regs["sat"], regs["qshift"]


async def calibrate_and_trim(d, offset, sat, qshift):
    await d.write_offsets(offset)
    await d.set_readout(sat=sat, qshift=qshift)
    await d.calibrate()
    return await measure_residual(d)


def expected_trim(p, net, images, offset, sat, qshift):
    """The trimmed inference in numpy: calibrate with ``models.macro.calibrate``, read the
    zero-input readout, subtract it from every readout (no bus, no driver)."""
    n, _, _ = macro.calibrate(p, offset=offset, sat=sat, qshift=qshift)
    comp = 2 * n - p.comp_rows
    zero = np.zeros(p.rows, np.uint8)
    residual = macro.readout(p, zero, np.zeros((p.rows, p.cols), np.uint8), comp,
                             offset=offset, sat=sat, qshift=qshift)
    saturated = np.zeros(len(images), bool)

    def readout(layer, rt, ct, plane, bits, wbits):
        s = bits.astype(np.int64) @ (2 * wbits.astype(np.int64) - 1)
        saturated[:] |= np.any(np.abs(s + comp + offset) > sat, axis=1)
        return macro.readout(p, bits, wbits, comp, offset=offset, sat=sat, qshift=qshift) - residual

    preds, trace = infer_folded(net, images, readout=readout, acc_bits=p.acc_bits,
                                return_trace=True)
    return residual, preds, trace, saturated


@pytest.mark.parametrize("sizes, p", [
    ((100, 96, 96, 10), MacroParams(32, 96)),                    # the MNIST shape
    ((70, 60, 10), MacroParams(32, 48, cols_per_cycle=12)),      # two column tiles, folded
], ids=["100-96-96-10@32x96", "70-60-10@32x48"])
def test_trim_equals_numpy_and_restores_the_ideal_predictions(sizes, p, rng):
    """Sampled chip, comparator offsets of sigma 4 cell units (two compensation steps),
    K = 8: CALIBRATE, measure the residual, run with the trim. Equal to the independent
    numpy computation, and to the ideal macro on every image (no readout saturates)."""
    net = random_net(rng, sizes, 5, p.rows, p.cols)
    images = rng.integers(0, 32, (12, sizes[0]))
    offset, sat, qshift = sampled_chip(p, int(rng.integers(1 << 20)))
    assert p.comp_rows == 8 and np.std(offset) > 2
    d, _ = run(connect(p))
    residual = run(calibrate_and_trim(d, offset, sat, qshift))
    want_r, want, want_trace, saturated = expected_trim(p, net, images, offset, sat, qshift)
    assert np.array_equal(residual, want_r)
    assert np.any(residual != 0)
    got, trace = run(run_network(d, net, images, residual=residual, return_trace=True))
    assert np.array_equal(got, want)
    assert_trace_equal(trace, want_trace)
    # No readout saturates (|s + comp + offset| <= R + K + small < M), so the trim is
    # exactly the ideal macro, trace and all.
    ideal, ideal_trace = infer_folded(net, images, acc_bits=p.acc_bits, return_trace=True)
    assert not saturated.any()
    assert np.array_equal(got, ideal)
    assert_trace_equal(trace, ideal_trace)
    # Without the trim the calibrated chip is not ideal: the residual is visible.
    _, untrimmed = run(run_network(d, net, images, return_trace=True))
    assert not np.array_equal(untrimmed[0]["acc"], ideal_trace[0]["acc"])


def test_trim_with_saturating_readouts_still_equals_numpy(rng):
    """SAT 12: large column sums saturate, so the trim cannot restore the ideal there,
    but the folded trim is still exactly the per-readout subtraction."""
    p = MacroParams(32, 96)
    net = random_net(rng, (100, 96, 96, 10), 5, p.rows, p.cols)
    images = rng.integers(0, 32, (10, 100))
    offset, _, qshift = sampled_chip(p, int(rng.integers(1 << 20)))
    d, _ = run(connect(p))
    residual = run(calibrate_and_trim(d, offset, 12, qshift))
    want_r, want, want_trace, saturated = expected_trim(p, net, images, offset, 12, qshift)
    assert saturated.any()
    assert np.array_equal(residual, want_r)
    got, trace = run(run_network(d, net, images, residual=residual, return_trace=True))
    assert np.array_equal(got, want)
    assert_trace_equal(trace, want_trace)


def test_measure_residual_is_the_zero_input_readout_whatever_the_weights(rng):
    p = MacroParams(16, 12, cols_per_cycle=4, nonideal=ALL)
    d, _ = run(connect(p))
    offset = rng.integers(-20, 21, p.cols)
    gain = rng.integers(50, 80, p.cols)
    run(d.write_offsets(offset))
    run(d.write_gains(gain))
    run(d.calibrate())
    comp = 2 * run(d.read_comp()).sum(axis=0).astype(np.int64) - p.comp_rows
    want = macro.readout(p, np.zeros(p.rows, np.uint8), np.zeros((p.rows, p.cols), np.uint8),
                         comp, offset=offset, gain=gain, sat=p.readout_max)
    for _ in range(2):
        run(d.write_weights(rng.integers(0, 2, (p.rows, p.cols))))
        assert np.array_equal(run(measure_residual(d)), want)


def test_trim_shift_and_threshold_range(rng):
    p = MacroParams(32, 12, cols_per_cycle=4)
    net = random_net(rng, (70, 30, 20, 5), 5, p.rows, p.cols)
    r = rng.integers(-3, 3, p.cols)
    first, hidden = net.layers[0], net.layers[1]
    assert np.array_equal(trim_shift(p, first, r), np.tile(3 * 31 * r, 3))
    assert np.array_equal(trim_shift(p, hidden, r), np.tile(1 * 1 * r, 2))
    # A threshold pushed out of THRESH's A bits by the residual is refused before any
    # bus access.
    top = (1 << (p.acc_bits - 1)) - 1
    net.layers[0].thresh[0, 0] = top - 3 * 31 + 1
    d, bus = run(connect(p))
    bus.reset()
    with pytest.raises(ValueError, match=f"trimmed threshold of neuron 0 is {top + 1}"):
        run(run_network(d, net, np.zeros((1, 70), int), residual=np.ones(p.cols, int)))
    assert bus.total == 0
