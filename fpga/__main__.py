"""``python -m fpga build|run|sweep|endpoints|area ...``: bitstreams, inference on a board,
timing, area.

build
    Board top -> YoWASP Yosys/nextpnr -> bitstream and ``report.json``; shows its stages
    on stderr (synthesis, placement, routing with the router's iterations, bitstream)
    and names its logs; prints one line. Exit status 0 when timing is met at the design
    clock, 1 when it is not (the bitstream and report are still written), 2 for bad
    input, a design that does not fit, or a tool that fails. SIGTERM (``timeout``, ``kill``)
    ends it as Ctrl-C does: the tools stopped, no bitstream or report, status 130.

run
    Loads an exported network (docs/MODEL_FORMAT.md), reads images and labels from IDX
    files, connects to the board's UARTBone bridge with the project's driver, calibrates
    the macro (unless ``--no-calibrate``), with ``--trim`` measures each column's residual
    and folds it into the run (docs/DRIVER.md, calibration trim), runs the network and
    prints the accuracy; a progress bar on a terminal. ``--port model`` runs the same
    code against the golden model behind a byte-level model of the bridge (a dry run
    without a board); ``--chip-seed S`` gives that model the non-idealities of sampled
    chip S, as ``build --chip-seed S`` bakes them into a board.

sweep
    A grid of builds (boards x rows x cols x cols per cycle x pipeline x clock x placement
    seed) as Dask tasks in worker processes (``fpga/sweep.py``): a local cluster of
    ``--workers`` (default 1) or ``--scheduler tcp://HOST:PORT``; writes ``DIR/sweep.csv``
    and ``DIR/sweep.png`` (Fmax against LUTs) as builds finish, skips the points that
    already have a result, and records a failed build as a row with its error. Ctrl-C or
    SIGTERM stops the builds running on the workers (their tools too), status 130.

endpoints
    Reads the ``work/report.json`` of a build made with ``--detailed-timing`` and lists
    the flip-flop endpoints whose worst arrival exceeds ``--period`` ns (default the
    report's own clock), grouped by register (``fpga/endpoints.py``). Exit status 0 when
    none fail, 1 when some do, 2 for a missing or unusable report.

area
    Runs the Yosys script of a build folder again with the hierarchy kept and prints the
    cells of each part with its submodules (``fpga/area.py``): where the logic goes.

Arguments, errors, output paths and Ctrl-C follow the project's command-line layer
(:mod:`models.cmdline`, docs/CLI.md): bad input is one line ``fpga: error: ...`` and exit
status 2, checked before anything is created.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import threading
import time

from gen.cli import ALLOWED, engine_from_args, macro_int_type, nonideal_type, params_from_args
from models import cmdline
from models.cmdline import UsageError, integer, number, one_line
from models.engine_params import MAX_IMAGE_SLOTS
from models.params import NONIDEALITIES

# Amaranth (behind .boards and host.serial_transport) and numpy load inside the functions,
# where Ctrl-C is one line: `python -m fpga` runs this module itself.

PROG = "fpga"
OUT = "-o/--out"
#: Serial rates the host and the bridge are checked for (the FTDI chips of both boards
#: top out at 12 Mbaud).
BAUD_RANGE = (300, 12_000_000)
MAX_BRIDGE_TIMEOUT = 10.0
#: The bridge's silence timeout must exceed this many bit times (three bytes with start
#: and stop bits), or it drops frames whose bytes arrive back to back.
MIN_TIMEOUT_BITS = 30


def _baud():
    return integer("baud", *BAUD_RANGE)


def _bridge_timeout():
    return number("bridge-timeout", 0, MAX_BRIDGE_TIMEOUT, lo_open=True, unit="s")


def build_parser() -> cmdline.CommandParser:
    from .boards import BOARDS

    ap = cmdline.CommandParser(
        name=PROG, prog="python -m fpga",
        description="Build the macro for an FPGA board, run a network on it, list the "
                    "flip-flops that miss the clock, count the cells of a build's parts "
                    "(docs/FPGA.md).",
        epilog="Bad input exits with status 2 and one line on stderr; nothing is written.")
    sub = ap.add_subparsers(dest="command", required=True,
                            metavar="{build,run,sweep,endpoints,area}")

    _add_build_parser(sub, BOARDS)
    _add_run_parser(sub)
    _add_sweep_parser(sub, BOARDS)
    _add_endpoints_parser(sub)
    _add_area_parser(sub)
    return ap


def _add_build_parser(sub, boards) -> None:
    from host.serial_transport import DEFAULT_BAUD, DEFAULT_BRIDGE_TIMEOUT

    b = sub.add_parser(
        "build", help="build a bitstream and its report",
        renamed={"--seed": "--placement-seed (the nextpnr seed)", "--output": "-o/--out"},
        description="Board top -> Yosys -> nextpnr -> bitstream and report.json in OUT; the "
                    "stages and the logs (OUT/work) are shown on stderr. Exit status 0: "
                    "timing met; 1: timing failed (bitstream still written); 2: bad input, "
                    "no fit or a tool failed.")
    m = b.add_argument_group("the macro (as python -m gen)")
    m.add_argument("--board", required=True, choices=sorted(boards),
                   help="icebreaker: iCE40 UP5K, 12 MHz oscillator; ulx3s: ECP5-85F, 25 MHz")
    m.add_argument("--rows", type=macro_int_type("rows"), required=True, metavar="R",
                   help=f"data word lines R: {ALLOWED['rows']}; required")
    m.add_argument("--cols", type=macro_int_type("cols"), required=True, metavar="C",
                   help=f"columns C: {ALLOWED['cols']}; required")
    m.add_argument("--cols-per-cycle", type=macro_int_type("cols_per_cycle"), default=None,
                   metavar="P", help="columns computed in parallel (folding): a divisor of C "
                                     "(default C)")
    m.add_argument("--input-bits", type=macro_int_type("input_bits"), default=5, metavar="B",
                   help=f"bit-planes of an input: {ALLOWED['input_bits']}")
    m.add_argument("--pipeline", type=macro_int_type("pipeline"), default=0, metavar="L",
                   help=f"register stages in the readout path: {ALLOWED['pipeline']}")
    which = m.add_mutually_exclusive_group()
    which.add_argument("--nonideal", type=nonideal_type, default=None, metavar="LIST",
                       help="non-idealities to build: comma-separated subset of "
                            + ",".join(NONIDEALITIES) + ", or 'none' (default offset,readout)")
    which.add_argument("--ideal", dest="nonideal", action="store_const", const=frozenset(),
                       help="build no non-ideality (same as --nonideal none)")
    which.add_argument("--all-nonidealities", dest="nonideal", action="store_const",
                       const=frozenset(NONIDEALITIES), help="build all five non-idealities")
    n = b.add_argument_group("a network engine around the macro (as python -m gen; "
                             "docs/ENGINE.md)")
    n.add_argument("--model", metavar="MODEL",
                   help="build the engine sized for this exported model (NAME, NAME.json "
                        "or NAME.npz); the capacity options may only enlarge it")
    for field, what in (("weight_banks", "weight banks"), ("layers", "layer-program entries"),
                        ("max_width", "the widest layer"),
                        ("image_slots", "image slots (default 256)")):
        n.add_argument("--" + field.replace("_", "-"), type=macro_int_type(field),
                       default=None, metavar="N", help=f"{what}: {ALLOWED[field]}")
    c = b.add_argument_group("clock, UART and the baked chip")
    c.add_argument("--freq", type=number("freq", 0, lo_open=True, unit="MHz"), default=None,
                   metavar="MHZ", help="design clock from the PLL: icebreaker 16..275, ulx3s "
                                       "10..400 (default the board oscillator, no PLL)")
    c.add_argument("--baud", type=_baud(), default=DEFAULT_BAUD,
                   help=f"UART rate of the bridge, {BAUD_RANGE[0]}..{BAUD_RANGE[1]}; at most "
                        "2%% off at the design clock")
    c.add_argument("--bridge-timeout", type=_bridge_timeout(), default=DEFAULT_BRIDGE_TIMEOUT,
                   metavar="S", help="silence in seconds after which the bridge drops an "
                                     "unfinished frame, in (0, 10]")
    c.add_argument("--chip-seed", type=integer("chip-seed", 0, 2**32 - 1), default=None,
                   metavar="S", help="bake the sampled SRAM chip instance S into the reset "
                                     "state (default none: an ideal chip)")
    t = b.add_argument_group("the tools")
    t.add_argument("--placement-seed", type=integer("placement-seed", 0, 2**31 - 1), default=1,
                   metavar="S", help="nextpnr placement seed")
    t.add_argument("--mapper", choices=("abc", "abc9"), default=None,
                   help="Yosys LUT mapper (default abc9 on iCE40, the only one there; abc on ECP5)")
    t.add_argument("--no-tmg-ripup", dest="tmg_ripup", action="store_false", default=None,
                   help="ECP5 only: route without nextpnr's timing-driven ripup (faster when "
                        "timing cannot be met; docs/FPGA.md)")
    t.add_argument("--detailed-timing", action="store_true",
                   help="nextpnr also writes every net's timing to OUT/work/report.json "
                        "(for python -m fpga endpoints)")
    b.add_argument("-o", "--out", default=None, metavar="DIR",
                   help="output folder, created if missing (default build/fpga/BOARD-RxC-pP)")
    b.add_argument("--quiet", action="store_true", help="no stage lines on stderr")


def _add_run_parser(sub) -> None:
    from host.serial_transport import DEFAULT_BAUD, DEFAULT_BRIDGE_TIMEOUT

    r = sub.add_parser(
        "run", help="run a network on a board and print the accuracy",
        renamed={"--limit": "--range START:STOP"},
        description="Calibrate the board's macro (or not), run an exported network on IDX "
                    "images over the UART and print the accuracy (docs/DRIVER.md).")
    r.add_argument("--port", required=True, type=cmdline.non_empty("port"),
                   help="serial device or pyserial URL of the board; 'model' for a dry run on "
                        "the golden model behind a model of the bridge")
    r.add_argument("--model", required=True, metavar="MODEL",
                   help="exported network: NAME, NAME.json or NAME.npz")
    r.add_argument("--images", required=True, metavar="IDX",
                   help="IDX file of images at the size the model records")
    r.add_argument("--labels", required=True, metavar="IDX", help="IDX file of labels")
    r.add_argument("--range", type=cmdline.index_range(), metavar="START:STOP",
                   help="use images START..STOP-1 only (e.g. 6000:8000, the validation images "
                        "of the MNIST subset; default all)")
    r.add_argument("--baud", type=_baud(), default=DEFAULT_BAUD,
                   help=f"UART rate, {BAUD_RANGE[0]}..{BAUD_RANGE[1]}, as built")
    r.add_argument("--bridge-timeout", type=_bridge_timeout(), default=DEFAULT_BRIDGE_TIMEOUT,
                   metavar="S", help="the bridge's silence timeout in seconds, as built, in (0, 10]")
    r.add_argument("--no-calibrate", action="store_true", help="keep the macro's COMP as it is")
    r.add_argument("--trim", action="store_true",
                   help="after CALIBRATE, read each column's residual (one zero-input RUN) and "
                        "fold it into the thresholds and scores")
    r.add_argument("--chip-seed", type=integer("chip-seed", 0, 2**32 - 1), default=None,
                   metavar="S", help="with --port model: give the model the sampled SRAM chip "
                                     "instance S (default an ideal chip)")
    g = r.add_argument_group("a board with a network engine (built with --model; found by "
                             "its ID)")
    g.add_argument("--engine", action="store_true",
                   help="with --port model: the dry-run board carries a network engine sized "
                        "for the model (default a macro)")
    g.add_argument("--image-slots", type=integer("image-slots", 1, MAX_IMAGE_SLOTS),
                   default=None, metavar="N",
                   help="with --port model --engine: image slots of the dry-run engine, "
                        f"1..{MAX_IMAGE_SLOTS} (default 256)")
    g.add_argument("--chips", type=cmdline.index_range("chips", max_items=cmdline.MAX_CHIPS), default=None,
                   metavar="START:STOP",
                   help="chip Monte Carlo: for each chip seed in START..STOP-1 write the "
                        "sampled SRAM chip's registers, calibrate (and --trim), classify, "
                        "and check every class against the golden model on the same chip")
    g.add_argument("--benchmark", action="store_true",
                   help="classify the image buffer once more with the images already in it "
                        "and report the engine's own cycle count (ENGINE_CYCLES)")
    g.add_argument("--freq", type=number("freq", 0, lo_open=True, unit="MHz"), default=None,
                   metavar="MHZ", help="the design clock the board was built for: images "
                                       "per second from the engine's cycle count")
    r.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_endpoints_parser(sub) -> None:
    e = sub.add_parser(
        "endpoints", help="flip-flops that miss the clock, by register",
        description="List the flip-flop endpoints of a --detailed-timing build whose worst "
                    "arrival exceeds the period, grouped by register. Exit status 0: none "
                    "fails; 1: some do; 2: bad input.")
    e.add_argument("report", metavar="REPORT",
                   help="nextpnr report of a --detailed-timing build (DIR/work/report.json)")
    e.add_argument("--period", type=number("period", 0, 1e6, lo_open=True, unit="ns"),
                   default=None, metavar="NS",
                   help="clock period in ns (default: from the report's clock constraint)")
    e.add_argument("--all", action="store_true", help="also list groups that meet the period")


def _add_area_parser(sub) -> None:
    a = sub.add_parser(
        "area", help="cells of each part of a build, hierarchy kept",
        description="Run the Yosys script of a build again with the hierarchy kept and print "
                    "the cells of each part (logic, flip-flops, LUT RAM, block RAM, DSP) with "
                    "its submodules, then a JSON line (docs/FPGA.md). Yosys's counts before "
                    "placement: they differ from the build's totals. Exit status 0, or 2: bad "
                    "input.")
    a.add_argument("build_dir", metavar="DIR", type=cmdline.non_empty("DIR"),
                   help="the output folder of python -m fpga build or bench.plain_datapath "
                        "(report.json and work/top.ys, work/top.il)")
    a.add_argument("--depth", type=integer("depth", 0, 64), default=4, metavar="N",
                   help="levels below the top to list (default 4)")
    a.add_argument("--quiet", action="store_true",
                   help="no stage line on stderr (shown on a terminal only)")


def _add_sweep_parser(sub, boards) -> None:
    from models.cluster import add_cluster_options

    def ints(field):
        return f"a comma-separated list of distinct integers ({ALLOWED[field]})"
    w = sub.add_parser(
        "sweep", help="a grid of builds as Dask tasks: CSV and plot",
        renamed={"--seed": "--placement-seed LIST (nextpnr seeds)"},
        description="Build every combination of the lists (each a comma-separated list) as "
                    "Dask tasks in worker processes; writes OUT/sweep.csv and OUT/sweep.png "
                    "(Fmax against LUTs) as builds finish, and skips the points that already "
                    "have a result (OUT/points/KEY/result.json) when run again. A build that "
                    "fails is a row with its error (docs/SCALING.md).")
    w.add_argument("--board", required=True, metavar="LIST",
                   type=cmdline.value_list("board", _one_of(boards), allowed=(
                       f"a comma-separated list of distinct boards ({', '.join(sorted(boards))})")),
                   help=f"boards: {', '.join(sorted(boards))}; required")
    w.add_argument("--rows", required=True, metavar="LIST",
                   type=cmdline.value_list("rows", macro_int_type("rows"), allowed=ints("rows")),
                   help=f"data word lines R: {ALLOWED['rows']}; required")
    w.add_argument("--cols", required=True, metavar="LIST",
                   type=cmdline.value_list("cols", macro_int_type("cols"), allowed=ints("cols")),
                   help=f"columns C: {ALLOWED['cols']}; required")
    w.add_argument("--cols-per-cycle", default=(None,), metavar="LIST",
                   type=cmdline.value_list("cols-per-cycle", macro_int_type("cols_per_cycle"),
                                           allowed="a comma-separated list of distinct divisors "
                                                   "of C, or 'all' for C", none="all"),
                   help="columns computed in parallel, divisors of C; 'all' for C (default all)")
    w.add_argument("--pipeline", default=(0,), metavar="LIST",
                   type=cmdline.value_list("pipeline", macro_int_type("pipeline"),
                                           allowed=ints("pipeline")),
                   help=f"register stages in the readout path: {ALLOWED['pipeline']} (default 0)")
    w.add_argument("--freq", default=(None,), metavar="LIST",
                   type=cmdline.value_list("freq", number("freq", 0, lo_open=True),
                                           allowed="a comma-separated list of distinct clocks "
                                                   "> 0 MHz, or 'osc' for the board oscillator",
                                           none="osc"),
                   help="design clocks in MHz from the PLL; 'osc' for the board oscillator "
                        "(default osc)")
    w.add_argument("--placement-seed", default=(1,), metavar="LIST",
                   type=cmdline.value_list("placement-seed",
                                           integer("placement-seed", 0, 2**31 - 1),
                                           allowed="a comma-separated list of distinct "
                                                   "integers in 0..2147483647"),
                   help="nextpnr placement seeds (default 1)")
    w.add_argument("-o", "--out", default="build/fpga/sweep", metavar="DIR",
                   help="output folder, created if missing: DIR/sweep.csv, DIR/sweep.png, "
                        "DIR/points/KEY/ (one build each)")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    add_cluster_options(w, title="where the builds run (default: a local cluster of 1 worker)",
                        workers_help="worker processes of the local Dask cluster (default 1), "
                                     "each running one build at a time")


def _one_of(names):
    """Argument type of one of ``names`` (its message is value_list's)."""
    def parse(text: str) -> str:
        if text not in names:
            import argparse
            raise argparse.ArgumentTypeError(text)
        return text
    return parse


def _check_timeout(baud: int, timeout: float) -> None:
    need = MIN_TIMEOUT_BITS / baud
    if timeout < need:
        raise UsageError(f"{timeout:g} s is shorter than {MIN_TIMEOUT_BITS} bit times at "
                         f"{baud} baud ({need:.3g} s); the bridge would drop frames",
                         "--bridge-timeout")


# --- build ----------------------------------------------------------------------------------

#: Which option a ValueError of fpga.build.build is about, by the start of its message.
_BUILD_OPTIONS = (("baud", "--baud"), ("no PLL setting", "--freq"), ("freq", "--freq"),
                  ("bridge_timeout", "--bridge-timeout"), ("mapper", "--mapper"),
                  ("iCE40 builds map", "--mapper"), ("tmg_ripup", "--no-tmg-ripup"),
                  ("seed", "--placement-seed"))


@contextlib.contextmanager
def sigterm_as_ctrl_c():
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` in the main thread, as Ctrl-C
    does; the previous handler is restored afterwards (build, run, sweep).

    A build stops its tools (their own process group, which a signal to this process does
    not reach) on ``KeyboardInterrupt``; SIGTERM's default would end this process and
    leave nextpnr running. Further SIGTERMs are ignored until the block ends, so that
    they do not cut the stopping of the tools short (SIGKILL still ends everything).
    Outside the main thread (no signal handlers there) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_build(args) -> int:
    from .boards import BOARDS
    from .build import BuildError, bitstream_name, build, check_freq, default_out_dir, summary_line
    board = BOARDS[args.board]
    if args.tmg_ripup is False and board.family != "ecp5":
        raise UsageError(f"timing-driven ripup is router2's, used on ECP5 (ulx3s) only; "
                         f"not allowed with --board {args.board}", "--no-tmg-ripup")
    if args.mapper == "abc" and board.family == "ice40":
        raise UsageError(f"iCE40 builds map LUTs with abc9 only; not allowed with --board "
                         f"{args.board}", "--mapper")
    p = params_from_args(args)
    engine = engine_from_args(args, p)
    target = p if engine is None else engine.params
    # An engine's macro is p with the accumulator the model needs (engine_from_args).
    macro = p if engine is None else target.macro
    try:
        check_freq(args.board, args.freq)
    except ValueError as exc:
        raise UsageError(one_line(exc), "--freq") from None
    _check_timeout(args.baud, args.bridge_timeout)
    # The option's own text: Path("") would be the current folder.
    files = [bitstream_name(args.board, target, args.chip_seed), "report.json"]
    out = cmdline.check_output_folder(args.out if args.out is not None
                                      else default_out_dir(args.board, target), OUT, files=files)
    if (out / "work").exists() and not (out / "work").is_dir():
        raise UsageError(f"{str(out / 'work')!r} is a file; the tools need it as their folder", OUT)
    status = cmdline.StatusLine(PROG, quiet=args.quiet)
    try:
        with sigterm_as_ctrl_c():
            report = build(args.board, macro.rows, macro.cols,
                           cols_per_cycle=macro.cols_per_cycle,
                           chip_seed=args.chip_seed, out_dir=out, freq_mhz=args.freq,
                           baud=args.baud, bridge_timeout=args.bridge_timeout,
                           nonideal=macro.nonideal, input_bits=macro.input_bits,
                           pipeline=macro.pipeline, acc_bits=macro.acc_bits,
                           seed=args.placement_seed, mapper=args.mapper,
                           detailed_timing=args.detailed_timing, tmg_ripup=args.tmg_ripup,
                           engine=None if engine is None else dict(
                               weight_banks=target.weight_banks, layers=target.layers,
                               image_slots=target.image_slots, max_width=target.max_width),
                           status=status)
    except (ValueError, TypeError) as exc:
        msg = one_line(exc)
        option = next((o for prefix, o in _BUILD_OPTIONS if msg.startswith(prefix)), None)
        raise UsageError(msg, option) from None
    except (BuildError, RuntimeError) as exc:
        # A tool failed (BuildError, FitError) or could not run (the PLL calculator).
        raise UsageError(one_line(exc)) from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"tools stopped; no bitstream or report written (logs in "
                                f"{out / 'work'})") from None
    print(summary_line(report))
    return 0 if report["timing"]["met"] else 1


# --- run ------------------------------------------------------------------------------------

def _model_port(net, args):
    from models.macro import MacroModel
    from models.params import MacroParams

    from .bridge_model import BoardBus, FakeBridgePort
    p = MacroParams(net.rows, net.cols, input_bits=max(net.input_bits, net.layers[0].planes))
    if p.acc_bits < net.min_acc_bits:
        p = MacroParams(net.rows, net.cols, input_bits=p.input_bits, acc_bits=net.min_acc_bits)
    if args.engine:
        from models.engine import EngineParams
        from models.engine_bus import EngineBusModel
        target = EngineParams.for_model(net, p, image_slots=args.image_slots or 256)
        model = EngineBusModel(target)
    else:
        target = p
        model = MacroModel(p)
    if args.chip_seed is not None:
        from .top import chip_image
        for addr, data in chip_image(target, args.chip_seed)[0]:
            model.write(addr, data, 0xF)
    return FakeBridgePort(BoardBus(model, target.addr_bits), baudrate=args.baud,
                          bridge_timeout=args.bridge_timeout)


def _prepare_run(args):
    """Network, inputs, labels, port and note of ``run``: every check that needs no port
    (``chip_image`` runs the driver on a model under its own ``asyncio.run``)."""
    from models.inputs import load_images_labels, load_model, model_inputs, training_overlap

    if args.trim and args.no_calibrate:
        raise UsageError("measures the residual that CALIBRATE leaves; not allowed with "
                         "--no-calibrate", "--trim")
    if args.chip_seed is not None and args.port != "model":
        raise UsageError("gives the dry-run model (--port model) a sampled chip; a board has "
                         "its own (bake one in with 'fpga build --chip-seed')", "--chip-seed")
    if args.engine and args.port != "model":
        raise UsageError("makes the dry-run model (--port model) an engine; a board's ID says "
                         "what it carries", "--engine")
    if args.image_slots is not None and not args.engine:
        raise UsageError("sizes the dry-run engine; needs --port model --engine", "--image-slots")
    if args.chips is not None and args.chip_seed is not None:
        raise UsageError("writes each chip's registers over the bus; not allowed with "
                         "--chip-seed", "--chips")
    _check_timeout(args.baud, args.bridge_timeout)
    net = load_model(args.model)
    images, labels = load_images_labels(args.images, args.labels, classes=net.classes,
                                        selection=args.range, image_ndims=(2, 3))
    x = model_inputs(net, images, args.images)
    note = training_overlap(net, args.images, args.range or (0, len(images)))
    port = _model_port(net, args) if args.port == "model" else args.port
    return net, x, labels, port, note


#: Images per call of run_network between two updates of the progress bar.
RUN_CHUNK = 25


async def _run(args, net, x, labels, port) -> int:
    from host.serial_transport import SerialTransport
    from models.engine_params import ENGINE_ID_MAGIC
    from models.params import CSR

    transport = SerialTransport(port, baudrate=args.baud, bridge_timeout=args.bridge_timeout)
    if int(await transport.read(CSR.ID)) == ENGINE_ID_MAGIC:
        from .engine_run import run_engine
        return await run_engine(args, net, x, labels, transport)
    engine_only = [o for o, given in (("--chips", args.chips is not None),
                                      ("--benchmark", args.benchmark),
                                      ("--freq", args.freq is not None)) if given]
    if engine_only:
        raise UsageError(f"needs a board with a network engine; the one at {args.port!r} "
                         f"carries a bare macro", engine_only[0])
    return await _run_macro(args, net, x, labels, transport)


async def _run_macro(args, net, x, labels, transport) -> int:
    import numpy as np

    from host.driver import MacroDriver
    from host.network import measure_residual, run_network

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
    bar = cmdline.progress_bar(len(x), "images", args.quiet)
    predictions = []
    try:
        # In chunks, for the progress bar; each chunk reloads the layers' weights.
        for i in range(0, len(x), RUN_CHUNK):
            predictions.append(await run_network(drv, net, x[i:i + RUN_CHUNK], residual=residual))
            bar.update(len(predictions[-1]))
            # Let the event loop run: asyncio delivers Ctrl-C as a cancellation, which
            # needs a suspension point (the model port never suspends on its own).
            await asyncio.sleep(0)
    finally:
        bar.close()
    predictions = np.concatenate(predictions)
    seconds = time.monotonic() - start
    correct = int(np.sum(predictions == labels))
    print(f"accuracy {100.0 * correct / len(labels):.2f}% ({correct}/{len(labels)} images) "
          f"on {transport.name}, macro {drv.p.rows}x{drv.p.cols} P={drv.p.cols_per_cycle}, "
          f"{seconds:.1f} s, {transport.frames} frames, {transport.resyncs} resyncs")
    for note in notes:
        print(note)
    return 0


def cmd_run(args) -> int:
    from host.driver import FeatureError, MacroError, ProtocolError
    from host.serial_transport import SerialLinkError

    net, x, labels, port, note = _prepare_run(args)
    try:
        with sigterm_as_ctrl_c():
            status = asyncio.run(_run(args, net, x, labels, port))
    except (SerialLinkError, ProtocolError) as exc:
        raise UsageError(one_line(exc), "--port") from None
    except OSError as exc:
        # pyserial cannot open the port (SerialException is an OSError).
        msg = one_line(exc.strerror or exc)
        raise UsageError(msg if args.port in msg else f"{args.port}: {msg}", "--port") from None
    except FeatureError as exc:
        raise UsageError(one_line(exc), "--model") from None
    except ValueError as exc:
        # The network does not fit the board's macro (models.export.check_fits).
        raise UsageError(one_line(exc), "--model") from None
    except MacroError as exc:
        raise UsageError(f"the macro reported an error: {one_line(exc)}") from None
    # After the run: a port that fails leaves one line and nothing on stdout.
    if note:
        print(note)
    return status


# --- sweep ---------------------------------------------------------------------------------

def cmd_sweep(args) -> int:
    from models.cluster import runner_from_args, running

    from .build import check_freq
    from .sweep import CSV_NAME, PNG_NAME, grid, run_sweep
    for board in args.board:
        for freq in args.freq:
            try:
                check_freq(board, freq)
            except ValueError as exc:
                raise UsageError(f"{one_line(exc)} on {board}", "--freq") from None
    try:
        points = grid(args.board, args.rows, args.cols, args.cols_per_cycle, args.pipeline,
                      args.freq, args.placement_seed)
    except ValueError as exc:
        msg = one_line(exc)
        raise UsageError(msg, "--" + msg.split()[0].replace("_", "-")) from None
    out = cmdline.check_output_folder(args.out, OUT, files=[CSV_NAME, PNG_NAME])
    if (out / "points").exists() and not (out / "points").is_dir():
        raise UsageError(f"{str(out / 'points')!r} is a file; the builds need it as their "
                         f"folder", OUT)
    runner = runner_from_args(args, default_workers=1)
    try:
        with sigterm_as_ctrl_c(), running(runner):
            rows, built = run_sweep(points, out, runner)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"the finished builds are kept in {out}; run the same "
                                f"command again to resume") from None
    counts = {k: sum(r["status"] == k for r in rows) for k in ("met", "failed", "error")}
    print(f"{len(rows)} points ({built} built now, {len(rows) - built} from earlier runs) on "
          f"{runner.where}: timing met {counts['met']}, failed {counts['failed']}, "
          f"build errors {counts['error']}; wrote {out / CSV_NAME} {out / PNG_NAME}")
    return 0


# --- endpoints ------------------------------------------------------------------------------

def cmd_endpoints(args) -> int:
    from models.schema import SchemaError, check, load_json

    from .endpoints import format_groups, group_endpoints
    try:
        report = load_json(args.report)
        if not isinstance(report, dict) or "detailed_net_timings" not in report:
            raise SchemaError(f"{args.report} has no per-net timing (detailed_net_timings); "
                              f"build with --detailed-timing and pass DIR/work/report.json")
        check(report, "nextpnr-report", args.report)
    except SchemaError as exc:
        raise UsageError(one_line(exc), "REPORT") from None
    period = args.period
    if period is None:
        fmax = report.get("fmax") or {}
        constraints = [v.get("constraint") for v in fmax.values() if isinstance(v, dict)]
        constraints = [c for c in constraints if isinstance(c, (int, float)) and c > 0]
        if not constraints:
            raise UsageError(f"{args.report} names no clock constraint; pass --period NS", "REPORT")
        period = 1e3 / max(constraints)
    groups = group_endpoints(report, period)
    print(format_groups(groups, period, show_all=args.all))
    return 1 if any(g.failing for g in groups) else 0


def cmd_area(args) -> int:
    from .area import AreaError, format_parts, parts, summary
    from .build import tool_environment

    try:
        # On a terminal only, where a failure clears it: bad input stays one line.
        status = cmdline.StatusLine(PROG, quiet=args.quiet or not sys.stderr.isatty())
        family, found = parts(args.build_dir, env=tool_environment(), status=status)
    except AreaError as exc:
        raise UsageError(one_line(exc), "DIR") from None
    print(format_parts(family, found, args.depth))
    print(json.dumps({"family": family, "parts": summary(family, found)}))
    return 0


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    return {"build": cmd_build, "run": cmd_run, "sweep": cmd_sweep,
            "endpoints": cmd_endpoints, "area": cmd_area}[args.command](args)


def main(argv=None) -> int:
    """Run ``python -m fpga`` with ``argv`` (default ``sys.argv[1:]``); returns the exit
    status (build: 0 timing met, 1 not met; endpoints: 1 when some fail; 2 bad input;
    130 Ctrl-C, and SIGTERM during a build, a run or a sweep)."""
    return cmdline.run(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(cmdline.main_entry(PROG, lambda: main))
