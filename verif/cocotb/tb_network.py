"""cocotb end-to-end test: an exported BNN classifies images through the RTL via the driver.

``CIM_ARGS``: ``net`` (NAME of an exported network, docs/MODEL_FORMAT.md), ``images`` (an
``.npz`` with ``x`` and ``y``), ``count`` (images to run, default all), ``trace`` (run
the first ``trace`` images again with the per-layer trace and compare every layer's
ACC and OUT, default 5), ``chip`` (a seed: inject a chip instance and calibrate before
the run; the reference is then the register model run through the same driver),
``chip_sigma`` (with ``chip``: the instance is ``models.chip.sample_chip`` with
comparator offsets of this sigma in cell units, mapped by ``chip_to_rtl``; default: a
typical instance with every built non-ideality), ``trim`` (with ``chip``: after the
calibrated run, measure the residual and run again with the trim, compare with the
register model doing the same, and require the accuracy within 1 point of the ideal
macro's), ``fold_polls`` (default true), ``check_errors`` (the driver's STATUS read
after every load, default false: faults still surface at the next command's STATUS),
``transport`` (``burst``, default, or ``edge``: the per-edge cocotb master, for
comparison), ``label``.

The network runs through :func:`host.network.run_network` and :class:`MacroDriver` on
the :class:`BurstTransport`, so no Python runs per clock cycle. The predictions must
equal the golden model's on every image (``models.export.infer_folded`` for the ideal
macro); the accuracy against the labels, the simulated cycles and the wall time are
logged and returned to the runner as statistics.
"""

from __future__ import annotations

import cocotb
import numpy as np

from models.chip import ChipConfig, chip_to_rtl, sample_chip
from models.export import infer_folded, load_folded
from models.macro import MacroModel
from host.driver import MacroDriver
from host.network import measure_residual, run_network
from host.transport import ModelTransport
from verif.wishbone_master import CocotbWishboneTransport

from .burst import BurstTransport
from .tb import TB, Stopwatch, context, save_stats

TIMEOUT_S = 3600


def typical_chip(p, rng) -> dict:
    """A chip instance a calibrated network should survive: comparator offsets of about
    two cells (calibration cancels them), gains within a few percent, one stuck cell in a
    hundred, a transfer curve within one step of the identity, the full readout range."""
    W, M = p.readout_bits, p.readout_max
    chip = {}
    if p.has("offset"):
        chip["offset"] = np.clip(np.rint(rng.normal(0, 2, p.cols)), -(1 << (W - 1)), M).astype(int)
    if p.has("gain"):
        chip["gain"] = np.clip(np.rint(rng.normal(64, 2, p.cols)), 0, 255).astype(int)
    if p.has("table"):
        index = np.arange(1 << W)
        identity = np.where(index >= 1 << (W - 1), index - (1 << W), index)
        noise = np.where(rng.random(1 << W) < 0.1, rng.integers(-1, 2, 1 << W), 0)
        chip["table"] = np.clip(identity + noise, -(1 << (W - 1)), M)
    if p.has("stuck"):
        chip["stuck_mask"] = (rng.random((p.rows, p.cols)) < 0.01).astype(int)
        chip["stuck_value"] = rng.integers(0, 2, (p.rows, p.cols))
    if p.has("readout"):
        chip["sat"], chip["qshift"] = M, 0
    return chip


def sampled_chip(p, seed: int, offset_sigma: float) -> dict:
    """``models.chip.sample_chip`` with comparator offsets of ``offset_sigma`` cell units
    (EXPERIMENTS.md 3.3: 4 = two compensation steps), as registers (``chip_to_rtl``)."""
    chip = sample_chip(ChipConfig(offset_sigma=offset_sigma), seed, p.rows, p.cols, p.comp_rows)
    regs = chip_to_rtl(chip, p)
    out = {}
    if regs["offset"] is not None:
        out["offset"] = regs["offset"]
    if regs["sat"] is not None:
        out["sat"], out["qshift"] = regs["sat"], regs["qshift"]
    return out


@cocotb.test(timeout_time=TIMEOUT_S, timeout_unit="sec")
async def network(dut):
    ctx = context("network")
    tb = TB(dut, ctx)
    p, args = ctx.p, ctx.args
    net = load_folded(args["net"])
    data = np.load(args["images"])
    count = int(args.get("count", len(data["y"])))
    x, y = data["x"][:count].astype(np.int64), data["y"][:count].astype(np.int64)
    await tb.reset()
    if args.get("transport", "burst") == "edge":
        # For comparison: the per-edge cocotb master, Python awaiting every clock edge.
        bus = CocotbWishboneTransport.from_dut(dut)
        bus.bursts, bus.fold_polls = 0, False
    else:
        bus = BurstTransport(dut, fold_polls=bool(args.get("fold_polls", True)))
    drv = await MacroDriver.connect(bus)
    assert drv.p == p
    # STATUS is still checked after every command (the driver's poll), so a fault in a
    # load is reported at the next RUN; the per-write STATUS read would cost a burst.
    drv.check_errors = bool(args.get("check_errors", False))
    reference = None
    if args.get("chip") is not None:
        if args.get("chip_sigma") is not None:
            chip = sampled_chip(p, int(args["chip"]), float(args["chip_sigma"]))
        else:
            chip = typical_chip(p, np.random.default_rng(int(args["chip"])))
        reference = MacroDriver(ModelTransport(MacroModel(p)), p)
        for d in (drv, reference):
            await d.write_nonidealities(**chip)
            await d.calibrate()
        assert np.array_equal(await drv.read_comp(packed=True), await reference.read_comp(packed=True))

    watch = Stopwatch(tb)
    watch.start()
    predictions = await run_network(drv, net, x)
    seconds, cycles = watch.stop()

    if reference is None:
        golden = infer_folded(net, x, acc_bits=p.acc_bits)
    else:
        golden = await run_network(reference, net, x)
    wrong = np.flatnonzero(predictions != golden)
    assert wrong.size == 0, (f"{wrong.size} of {count} predictions differ from the golden model, "
                             f"first images {wrong[:10].tolist()}: RTL {predictions[wrong[:10]].tolist()}, "
                             f"golden {golden[wrong[:10]].tolist()}")

    traced = min(int(args.get("trace", 5)), count)
    if traced:
        _, trace = await run_network(drv, net, x[:traced], return_trace=True)
        if reference is None:
            _, want = infer_folded(net, x[:traced], acc_bits=p.acc_bits, return_trace=True)
        else:
            _, want = await run_network(reference, net, x[:traced], return_trace=True)
        for layer, (got_l, want_l) in enumerate(zip(trace, want)):
            for key in want_l:
                assert np.array_equal(got_l[key], want_l[key]), \
                    f"layer {layer} {key} differs from the golden trace on the first {traced} images"

    accuracy = float(np.mean(predictions == y))
    golden_accuracy = float(np.mean(golden == y))
    ideal = golden if reference is None else infer_folded(net, x, acc_bits=p.acc_bits)
    ideal_accuracy = float(np.mean(ideal == y))
    trimmed = {}
    if reference is not None and args.get("trim"):
        # The calibration procedure: CALIBRATE (done above), then one zero-input RUN
        # reads each column's residual, which the runner folds into the thresholds and
        # the scores. Exact for the bit-true macro unless ACC clamps.
        residual = await measure_residual(drv)
        want_residual = await measure_residual(reference)
        assert np.array_equal(residual, want_residual), \
            (f"residual on the RTL {residual.tolist()} differs from the model's "
             f"{want_residual.tolist()}")
        got = await run_network(drv, net, x, residual=residual)
        want = await run_network(reference, net, x, residual=want_residual)
        wrong = np.flatnonzero(got != want)
        assert wrong.size == 0, (f"trimmed: {wrong.size} of {count} predictions differ from the "
                                 f"register model, first images {wrong[:10].tolist()}")
        trimmed = dict(trim_accuracy=float(np.mean(got == y)),
                       trim_equals_ideal=int(np.sum(got == ideal)),
                       residual_min=int(residual.min()), residual_max=int(residual.max()),
                       residual_nonzero=int(np.count_nonzero(residual)))
        dut._log.info(
            f"calibrated + trim: residual {residual.min()}..{residual.max()} "
            f"({np.count_nonzero(residual)} of {p.cols} columns nonzero); accuracy "
            f"{100 * trimmed['trim_accuracy']:.2f} % (calibrated only "
            f"{100 * accuracy:.2f} %, ideal {100 * ideal_accuracy:.2f} %); "
            f"{trimmed['trim_equals_ideal']} of {count} predictions equal the ideal macro's")
        assert abs(trimmed["trim_accuracy"] - ideal_accuracy) <= 0.01, \
            (f"calibrated + trim accuracy {100 * trimmed['trim_accuracy']:.2f} % is not within 1 "
             f"point of the ideal macro's {100 * ideal_accuracy:.2f} %")
    stats = dict(label=args.get("label", ""), images=count, seconds=seconds, cycles=cycles,
                 images_per_s=count / seconds, cycles_per_s=cycles / seconds,
                 cycles_per_image=cycles / count, accuracy=accuracy,
                 golden_accuracy=golden_accuracy, ideal_accuracy=ideal_accuracy,
                 **trimmed, bursts=bus.bursts, bus_reads=bus.reads,
                 bus_writes=bus.writes, traced=traced, sim=ctx.sim,
                 chip=args.get("chip"), fold_polls=bus.fold_polls,
                 transport=args.get("transport", "burst"))
    save_stats(**stats)
    dut._log.info(
        f"{count} images through the RTL ({ctx.sim}): predictions identical to the golden model; "
        f"accuracy {100 * accuracy:.2f} %; {count / seconds:.1f} images/s, "
        f"{cycles / seconds:.0f} cycles/s, {cycles / count:.0f} cycles/image, "
        f"{bus.bursts} bursts")
    ctx.save()
