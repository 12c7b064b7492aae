"""``python -m fpga build|run|endpoints ...``: bitstreams, inference on a board, timing.

build
    Board top -> YoWASP Yosys/nextpnr -> bitstream and ``report.json``; prints one line.
    Exit status 0 when timing is met at the design clock, 1 when it is not (the
    bitstream and report are still written), 2 when the design does not fit or a tool
    fails.

run
    Loads an exported network (docs/MODEL_FORMAT.md), reads images and labels from IDX
    files, connects to the board's UARTBone bridge with the project's driver, calibrates
    the macro (unless ``--no-calibrate``), with ``--trim`` measures each column's residual
    and folds it into the run (docs/DRIVER.md, calibration trim), runs the network and
    prints the accuracy. ``--port model`` runs the same code against the golden model
    behind a byte-level model of the bridge (a dry run without a board); ``--chip-seed S``
    gives that model the non-idealities of sampled chip S, as ``build --chip-seed S``
    bakes them into a board.

endpoints
    Reads the ``work/report.json`` of a build made with ``--detailed-timing`` and lists
    the flip-flop endpoints whose worst arrival exceeds ``--period`` ns (default the
    report's own clock), grouped by register (``fpga/endpoints.py``). Exit status 0 when
    none fail, 1 when some do, 2 for a missing or unusable report.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import numpy as np

from .boards import BOARDS
from host.serial_transport import DEFAULT_BAUD, DEFAULT_BRIDGE_TIMEOUT


def _parser():
    ap = argparse.ArgumentParser(prog="python -m fpga", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build a bitstream and its report")
    b.add_argument("--board", required=True, choices=sorted(BOARDS))
    b.add_argument("--rows", type=int, required=True)
    b.add_argument("--cols", type=int, required=True)
    b.add_argument("--cols-per-cycle", type=int, default=None, metavar="P",
                   help="columns computed per cycle (folding); default all")
    b.add_argument("--input-bits", type=int, default=5)
    b.add_argument("--pipeline", type=int, default=0, metavar="L",
                   help="register stages in the readout path, 0..4 (default 0)")
    b.add_argument("--nonideal", default=None,
                   help="comma-separated non-idealities to build (default offset,readout)")
    b.add_argument("--chip-seed", type=int, default=None, metavar="S",
                   help="bake the sampled SRAM chip instance S into the reset state")
    b.add_argument("--freq", type=float, default=None, metavar="MHZ",
                   help="design clock from a PLL; default the board oscillator")
    b.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    b.add_argument("--bridge-timeout", type=float, default=DEFAULT_BRIDGE_TIMEOUT, metavar="S",
                   help="silence after which the bridge drops an unfinished frame")
    b.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    b.add_argument("--mapper", choices=("abc", "abc9"), default=None,
                   help="Yosys LUT mapper (default abc9 on iCE40, abc on ECP5)")
    b.add_argument("--no-tmg-ripup", dest="tmg_ripup", action="store_false", default=None,
                   help="ECP5: route without nextpnr's timing-driven ripup (faster when "
                        "timing cannot be met; see docs/FPGA.md)")
    b.add_argument("--detailed-timing", action="store_true",
                   help="nextpnr also writes every net's timing to work/report.json")
    b.add_argument("-o", "--out", default=None, metavar="DIR",
                   help="output folder (default build/fpga/BOARD-RxC-pP)")

    r = sub.add_parser("run", help="run a network on a board and print the accuracy")
    r.add_argument("--port", required=True,
                   help="serial device or pyserial URL of the board; 'model' for a dry run")
    r.add_argument("--model", required=True, help="exported network (NAME, NAME.json or NAME.npz)")
    r.add_argument("--images", required=True, help="IDX file of images")
    r.add_argument("--labels", required=True, help="IDX file of labels")
    r.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    r.add_argument("--bridge-timeout", type=float, default=DEFAULT_BRIDGE_TIMEOUT, metavar="S")
    r.add_argument("--limit", type=int, default=None, metavar="N", help="first N images only")
    r.add_argument("--no-calibrate", action="store_true", help="keep the macro's COMP as it is")
    r.add_argument("--trim", action="store_true",
                   help="after CALIBRATE, read each column's residual (one zero-input RUN) and "
                        "fold it into the thresholds and scores")
    r.add_argument("--chip-seed", type=int, default=None, metavar="S",
                   help="with --port model: give the model the sampled SRAM chip instance S")
    e = sub.add_parser("endpoints", help="flip-flops that miss the clock, by register")
    e.add_argument("report", help="nextpnr report of a --detailed-timing build (DIR/work/report.json)")
    e.add_argument("--period", type=float, default=None, metavar="NS",
                   help="clock period in ns (default: from the report's clock constraint)")
    e.add_argument("--all", action="store_true", help="also list groups that meet the period")
    return ap


def _check_run_args(args) -> None:
    """One-line errors for options that contradict each other (before any file or port)."""
    if args.trim and args.no_calibrate:
        raise ValueError("--trim measures the residual that CALIBRATE leaves; "
                         "it cannot be combined with --no-calibrate")
    if args.chip_seed is not None and args.port != "model":
        raise ValueError("--chip-seed gives the dry-run model (--port model) a sampled chip; "
                         "a board has its own (bake one in with 'fpga build --chip-seed')")
    if args.chip_seed is not None and args.chip_seed < 0:
        raise ValueError(f"--chip-seed must be >= 0, not {args.chip_seed}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, not {args.limit}")


def prepare_images(images: np.ndarray, net) -> np.ndarray:
    """First-layer inputs ``(N, inputs)`` from IDX images, as the network was trained on.

    Images already at the network's input size (``(N, inputs)`` or ``(N, h, w)`` with
    ``h * w == inputs``) and within ``0 .. 2^planes - 1`` are taken as they are; larger
    ``(N, H, W)`` images go through the model's recorded preprocessing
    (``models.datasets.downsample`` and ``quantize``).
    """
    from models.datasets import downsample, quantize
    first = net.layers[0]
    x = np.asarray(images)
    top = (1 << first.planes) - 1
    if x.ndim >= 2 and int(np.prod(x.shape[1:])) == first.inputs:
        flat = x.reshape(len(x), -1).astype(np.int64)
        if flat.size and (flat.min() < 0 or flat.max() > top):
            raise ValueError(f"images are {first.inputs} pixels but hold values up to "
                             f"{flat.max()}, the network takes 0..{top}")
        return flat
    pre = (net.meta or {}).get("preprocessing") or {}
    size = pre.get("downsample")
    if x.ndim != 3 or not size:
        raise ValueError(f"images of shape {x.shape} do not fit the network's {first.inputs} "
                         f"inputs, and the model records no downsampling to apply")
    small = downsample(x.astype(np.int64), int(size[0]), int(size[1]))
    q = quantize(small, int(pre.get("input_bits", first.planes)),
                 normalisation=pre.get("normalisation", "minmax"))
    flat = q.reshape(len(q), -1).astype(np.int64)
    if flat.shape[1] != first.inputs:
        raise ValueError(f"preprocessed images have {flat.shape[1]} pixels, the network "
                         f"takes {first.inputs}")
    return flat


def _prepare_run(args):
    """Network, inputs, labels and port of ``run``; everything that needs no event loop
    (``chip_image`` runs the driver on a model under its own ``asyncio.run``)."""
    from models.datasets import load_idx
    from models.export import load_folded

    _check_run_args(args)
    net = load_folded(args.model)
    images = load_idx(args.images)
    labels = np.asarray(load_idx(args.labels)).reshape(-1).astype(np.int64)
    if len(labels) != len(images):
        raise ValueError(f"{args.images} has {len(images)} images but {args.labels} "
                         f"{len(labels)} labels")
    if args.limit is not None:
        images, labels = images[:args.limit], labels[:args.limit]
    x = prepare_images(images, net)

    if args.port == "model":
        from models.macro import MacroModel
        from models.params import MacroParams

        from .bridge_model import BoardBus, FakeBridgePort
        p = MacroParams(net.rows, net.cols, input_bits=max(net.input_bits, net.layers[0].planes))
        if p.acc_bits < net.min_acc_bits:
            p = MacroParams(net.rows, net.cols, input_bits=p.input_bits,
                            acc_bits=net.min_acc_bits)
        model = MacroModel(p)
        if args.chip_seed is not None:
            from .top import chip_image
            for addr, data in chip_image(p, args.chip_seed)[0]:
                model.write(addr, data, 0xF)
        port = FakeBridgePort(BoardBus(model, p.addr_bits), baudrate=args.baud,
                              bridge_timeout=args.bridge_timeout)
    else:
        port = args.port
    return net, x, labels, port


async def _run(args, net, x, labels, port) -> int:
    from host.driver import MacroDriver
    from host.network import measure_residual, run_network

    from host.serial_transport import SerialTransport

    transport = SerialTransport(port, baudrate=args.baud, bridge_timeout=args.bridge_timeout)
    start = time.monotonic()
    drv = await MacroDriver.connect(transport)
    notes = []
    residual = None
    if not args.no_calibrate:
        await drv.calibrate()
        flags = await drv.read_calflags()
        notes.append(f"calibrated: {int(flags.sum())} of {drv.p.cols} columns out of the "
                     f"compensation range (CALFLAG)")
    if args.trim:
        residual = await measure_residual(drv)
        notes.append(f"trim: residual {int(residual.min())}..{int(residual.max())}, "
                     f"nonzero in {int(np.count_nonzero(residual))} of {drv.p.cols} columns")
    predictions = await run_network(drv, net, x, residual=residual)
    seconds = time.monotonic() - start
    correct = int(np.sum(predictions == labels))
    print(f"accuracy {100.0 * correct / len(labels):.2f}% ({correct}/{len(labels)} images) "
          f"on {transport.name}, macro {drv.p.rows}x{drv.p.cols} P={drv.p.cols_per_cycle}, "
          f"{seconds:.1f} s, {transport.frames} frames, {transport.resyncs} resyncs")
    for note in notes:
        print(note)
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "build":
        from .build import BuildError, build, summary_line
        nonideal = None if args.nonideal is None else [n for n in args.nonideal.split(",") if n]
        try:
            report = build(args.board, args.rows, args.cols, cols_per_cycle=args.cols_per_cycle,
                           chip_seed=args.chip_seed, out_dir=args.out, freq_mhz=args.freq,
                           baud=args.baud, bridge_timeout=args.bridge_timeout,
                           nonideal=nonideal, input_bits=args.input_bits,
                           pipeline=args.pipeline, seed=args.seed,
                           mapper=args.mapper, detailed_timing=args.detailed_timing,
                           tmg_ripup=args.tmg_ripup)
        except (BuildError, ValueError, TypeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(summary_line(report))
        return 0 if report["timing"]["met"] else 1
    if args.command == "endpoints":
        from .endpoints import EndpointsError, format_groups, group_endpoints, load_report
        try:
            report = load_report(args.report)
            period = args.period
            if period is None:
                fmax = report.get("fmax") or {}
                constraints = [v.get("constraint") for v in fmax.values() if isinstance(v, dict)]
                constraints = [c for c in constraints if isinstance(c, (int, float)) and c > 0]
                if not constraints:
                    raise EndpointsError(f"{args.report} names no clock constraint; pass --period NS")
                period = 1e3 / max(constraints)
            groups = group_endpoints(report, period)
        except EndpointsError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(format_groups(groups, period, show_all=args.all))
        return 1 if any(g.failing for g in groups) else 0
    try:
        return asyncio.run(_run(args, *_prepare_run(args)))
    except (OSError, ValueError, TypeError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
