"""Network-engine speed: the engine generated for a model classifies a buffer of images in
Verilator, against the golden model, in the engine's own cycles.

    python -m bench.engine_speed --model build/models/mnist            # 200 MNIST images
    python -m bench.engine_speed --model M --images IDX --labels IDX --range 0:500
    python -m bench.engine_speed --model M --cols-per-cycle 4 --report build/fpga/.../report.json

The engine is ``models.engine.EngineParams.for_model`` of the model on its R x C macro
(by default fully parallel, pipeline 0; ``--cols-per-cycle`` and ``--pipeline`` fold and
pipeline it) with one image slot per image, so that the whole batch is in the buffer
before CLASSIFY starts. The testbench (``verif/cocotb/tb_engine_speed.py``) loads the
network and the images through the host driver, runs one CLASSIFY of the batch and hands
back the classes and ENGINE_CYCLES; the golden model (``models.engine.EngineModel``)
classifies the same images here, and ``identical`` says whether every class agrees.

Without ``--images`` the images are the MNIST subset's validation images from 6000
(``../shared/data/mnist``) for an MNIST model, the first 200 of the digits set's
validation split for a digits model. ``--report`` takes the ``report.json`` of an FPGA
build of that engine (``python -m fpga build --model``) and adds Fmax, LUTs, images per
second, images per second per kLUT and binary MACs per second per LUT, beside FINN's
LFC-W1A1 on the PYNQ-Z1 (BNN-PYNQ: 356,633 images/s with 30,249 LUTs and 112 BRAMs;
2.91 M binary MACs per image). The last line is one JSON object.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from models import cmdline
from models.cmdline import UsageError

PROG = "bench.engine_speed"
DEFAULT_IMAGES = 200
MNIST_VALIDATION_START = 6000
#: FINN LFC-W1A1 on the PYNQ-Z1 (BNN-PYNQ's LFC notebook and README).
FINN_LFC = dict(images_per_s=356_633, luts=30_249, brams=112, macs_per_image=2_910_000)

__all__ = ["binary_macs", "figures", "build_parser", "main"]


def binary_macs(net) -> int:
    """Binary multiply-accumulates of one image: inputs x outputs x input planes, summed
    over the layers (58,176 for the MNIST 100-96-96-10 network with 5 planes)."""
    return sum(layer.inputs * layer.outputs * layer.planes for layer in net.layers)


def figures(report: dict, cycles_per_image: float, macs_per_image: int) -> dict:
    """Fmax, LUTs, images/s, images/s per kLUT and MACs/s per LUT of an FPGA report."""
    fmax_hz = report["timing"]["fmax_hz"]
    clock_hz = report["timing"]["clock_hz"]
    luts = report["luts"]
    # Throughput at the clock the build met (Fmax when it failed: then it is a bound).
    hz = clock_hz if report["timing"]["met"] else fmax_hz
    images_per_s = hz / cycles_per_image
    return dict(fmax_mhz=round(fmax_hz / 1e6, 1), clock_mhz=round(clock_hz / 1e6, 3),
                met=report["timing"]["met"], luts=luts,
                images_per_s=round(images_per_s, 1),
                images_per_s_per_klut=round(images_per_s / (luts / 1000), 1),
                macs_per_s_per_lut=round(images_per_s * macs_per_image / luts, 1))


def build_parser() -> cmdline.CommandParser:
    ap = cmdline.CommandParser(
        name=PROG, prog="python -m bench.engine_speed",
        description="Simulate the network engine generated for a model in Verilator on a "
                    "buffer of images; print a table and, as the last line, one JSON object "
                    "(images, identical, accuracy, cycles_per_image, ...).",
        renamed={"--output": "-o/--out DIR", "--n-images": "--limit N"})
    ap.add_argument("--model", required=True, metavar="MODEL",
                    help="exported network: NAME, NAME.json or NAME.npz")
    ap.add_argument("--images", metavar="IDX", help="IDX file of images (with --labels)")
    ap.add_argument("--labels", metavar="IDX", help="IDX file of labels (with --images)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--range", type=cmdline.index_range(), metavar="START:STOP",
                       help="images START..STOP-1")
    which.add_argument("--limit", type=cmdline.integer("limit", 1, 65536), metavar="N",
                       help=f"the first N images (default {DEFAULT_IMAGES})")
    ap.add_argument("--cols-per-cycle", type=cmdline.integer("cols-per-cycle", 1, 1024),
                    default=None, metavar="P", help="fold the macro: a divisor of C (default C)")
    ap.add_argument("--pipeline", type=cmdline.integer("pipeline", 0, 4), default=0,
                    metavar="L", help="register stages in the readout path (default 0)")
    ap.add_argument("--sim", choices=("verilator", "icarus"), default="verilator",
                    help="simulator (default verilator)")
    ap.add_argument("--report", metavar="JSON",
                    help="report.json of an FPGA build of this engine: adds Fmax, LUTs and "
                         "images per second")
    ap.add_argument("-o", "--out", default=None, metavar="DIR",
                    help="also write the JSON object to DIR/engine_speed.json")
    return ap


def _inputs(args, net):
    """(x, labels) of the chosen images, preprocessed for the model."""
    import numpy as np

    from models.inputs import load_images_labels, model_inputs

    if (args.images is None) != (args.labels is None):
        raise UsageError("needs --images and --labels together",
                         "--images" if args.images is None else "--labels")
    if args.images is not None:
        selection = args.range
        images, labels = load_images_labels(args.images, args.labels, classes=net.classes,
                                            selection=selection, image_ndims=(2, 3))
        if args.limit is not None:
            if args.limit > len(images):
                raise UsageError(f"asks for {args.limit} images, {args.images} has "
                                 f"{len(images)}", "--limit")
            images, labels = images[:args.limit], labels[:args.limit]
        elif selection is None and len(images) > DEFAULT_IMAGES:
            images, labels = images[:DEFAULT_IMAGES], labels[:DEFAULT_IMAGES]
        return model_inputs(net, images, args.images), labels
    # The validation split the model records (models eval's default images).
    from models.cli import _dataset_of, _recorded_data

    dataset = _dataset_of(net, "--model")
    data = _recorded_data(net, dataset)
    x, y = data.x_val.astype(np.int64), data.y_val.astype(np.int64)
    # The recorded validation split: the MNIST subset's images from 6000 on.
    if args.range is not None:
        start, stop = args.range
        if stop > len(x):
            raise UsageError(f"stop {stop} is beyond the {len(x)} validation images of "
                             f"{dataset}", "--range")
        return x[start:stop], y[start:stop]
    n = DEFAULT_IMAGES if args.limit is None else args.limit
    if n > len(x):
        raise UsageError(f"asks for {n} images, the validation split of {dataset} has "
                         f"{len(x)}", "--limit")
    return x[:n], y[:n]


def _simulate(ep, sim, net_path, x, work) -> dict:
    """Run ``verif/cocotb/tb_engine_speed.py`` on the engine ``ep``; its statistics."""
    import numpy as np

    from verif import engine_runner

    images = Path(work) / "images.npz"
    np.savez(images, x=x)
    label = (f"speed-{ep.macro.rows}x{ep.macro.cols}-p{ep.macro.cols_per_cycle}"
             f"-l{ep.macro.pipeline}-b{ep.weight_banks}-s{ep.image_slots}")
    return engine_runner.run(ep, sim, "speed", module="verif.cocotb.tb_engine_speed",
                             label=label, args=dict(net=str(net_path), images=str(images),
                                                    count=len(x))).stats


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np

    from models.engine import EngineModel, EngineParams, build_program
    from models.export import model_files
    from models.inputs import load_model
    from models.params import MacroParams

    net = load_model(args.model, "--model")
    report = None
    if args.report is not None:
        from models.schema import SchemaError, load_json
        try:
            report = load_json(args.report, "fpga-report")
        except SchemaError as exc:
            raise UsageError(cmdline.one_line(exc), "--report") from None
    bits = max(net.input_bits, net.layers[0].planes)
    try:
        macro = MacroParams(net.rows, net.cols, input_bits=bits,
                            cols_per_cycle=args.cols_per_cycle or net.cols,
                            pipeline=args.pipeline)
        if macro.acc_bits < net.min_acc_bits:
            macro = MacroParams(net.rows, net.cols, input_bits=bits, acc_bits=net.min_acc_bits,
                                cols_per_cycle=args.cols_per_cycle or net.cols,
                                pipeline=args.pipeline)
    except ValueError as exc:
        message = cmdline.one_line(exc)
        raise UsageError(message, "--pipeline" if message.startswith("pipeline")
                         else "--cols-per-cycle") from None
    ep = EngineParams.for_model(net, macro)
    from rtl.engine import check_supported
    try:
        check_supported(ep)
    except ValueError as exc:
        message = cmdline.one_line(exc)
        raise UsageError(message, "--pipeline" if message.startswith("pipeline")
                         else "--cols-per-cycle") from None
    if report is not None and report.get("engine") is None:
        raise UsageError(f"{args.report} is the report of a bare macro's build; give the "
                         f"report of 'python -m fpga build --model'", "--report")
    x, labels = _inputs(args, net)
    if len(x) != ep.image_slots:
        ep = EngineParams.for_model(net, macro, image_slots=len(x))
    out = None
    if args.out is not None:
        out = cmdline.check_output_folder(args.out, "-o/--out", files=["engine_speed.json"])

    golden = EngineModel(ep)
    golden.load(net)
    want = golden.classify(x)
    per_image_formula = build_program(net, macro).image_cycles()

    with tempfile.TemporaryDirectory(prefix="engine-speed-") as work:
        wall = time.perf_counter()
        stats = _simulate(ep, args.sim, model_files(args.model)[0].resolve().with_suffix(""),
                          x, work)
        wall = time.perf_counter() - wall
    got = np.asarray(stats["classes"], np.int64)
    n = len(x)
    identical = bool(np.array_equal(got, want))
    result = dict(
        images=n, identical=identical, differing=int(np.sum(got != want)),
        accuracy=round(float(np.mean(got == labels)), 4),
        golden_accuracy=round(float(np.mean(want == labels)), 4),
        cycles_per_image=stats["engine_cycles"] / n, formula_cycles_per_image=per_image_formula,
        load_bus_cycles_per_image=stats["load_cycles"] / n,
        binary_macs_per_image=binary_macs(net),
        simulator=args.sim, sim_seconds=stats["seconds"],
        sim_images_per_s=round(n / stats["seconds"], 1) if stats["seconds"] else None,
        run_seconds=round(wall, 1),
        engine=dict(rows=macro.rows, cols=macro.cols, cols_per_cycle=macro.cols_per_cycle,
                    pipeline=macro.pipeline, weight_banks=ep.weight_banks,
                    image_slots=ep.image_slots))
    if report is not None:
        result.update(figures(report, result["cycles_per_image"], result["binary_macs_per_image"]))
    finn_per_klut = FINN_LFC["images_per_s"] / (FINN_LFC["luts"] / 1000)
    finn_macs = FINN_LFC["images_per_s"] * FINN_LFC["macs_per_image"] / FINN_LFC["luts"]
    print(f"| engine | images | identical | accuracy | cycles/image | bus cycles to load "
          f"an image | {args.sim} images/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {macro.rows}x{macro.cols} P={macro.cols_per_cycle} L={macro.pipeline} | {n} | "
          f"{'yes' if identical else 'NO: ' + str(result['differing']) + ' differ'} | "
          f"{100 * result['accuracy']:.2f}% | {result['cycles_per_image']:g} | "
          f"{result['load_bus_cycles_per_image']:g} | {result['sim_images_per_s']} |")
    if report is not None:
        print()
        print("| design | Fmax MHz | LUTs | images/s | images/s per kLUT | binary MACs/s per LUT |")
        print("| --- | --- | --- | --- | --- | --- |")
        print(f"| this engine ({report['family']}) | {result['fmax_mhz']} | {result['luts']} | "
              f"{result['images_per_s']:,.0f} | {result['images_per_s_per_klut']:,.0f} | "
              f"{result['macs_per_s_per_lut']:,.0f} |")
        print(f"| FINN LFC-W1A1, PYNQ-Z1 (6-input LUTs, {FINN_LFC['brams']} BRAMs) | | "
              f"{FINN_LFC['luts']} | {FINN_LFC['images_per_s']:,} | {finn_per_klut:,.0f} | "
              f"{finn_macs:,.0f} |")
    line = json.dumps(result)
    if out is not None:
        cmdline.write_files(out, {"engine_speed.json": line + "\n"})
    print(line)
    return 0 if identical else 1


def main(argv=None) -> int:
    """Run the bench; exit status 0 (identical), 1 (classes differ), 2 (bad input)."""
    return cmdline.run(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(cmdline.main_entry(PROG, lambda: main))
