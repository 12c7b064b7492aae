"""The command line ``python -m gen``: validate parameters, emit ``NAME.v`` and ``NAME.json``.

Without engine options it emits one macro (docs/ARCHITECTURE.md); with ``--model`` or
the capacity options (``--weight-banks``, ``--layers``, ``--image-slots``,
``--max-width``) it emits a network engine around that macro (docs/ENGINE.md), sized
for the model or for a network loaded later.

Every bad invocation ends with exit status 2 and exactly one line on stderr,
``gen: error: argument --OPTION: <what is wrong>``, naming the parameter, the bad value
and what is allowed, and writes nothing: all parameters and the output folder are checked
before the Verilog is generated, and both files are written to temporary names and
renamed only after the conversion succeeded (see :func:`gen.emit.write_outputs`).
Parsing, errors, output checks and Ctrl-C follow the project's shared command-line layer
(:mod:`models.cmdline`, docs/CLI.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from models import cmdline
from models.cmdline import UsageError
from models.engine_params import MAX_IMAGE_SLOTS, MAX_LAYERS, MAX_WEIGHT_BANKS, MAX_WIDTH
from models.params import (CONTRACT_VERSION, DEFAULT_NONIDEALITIES, MAX_ACC_BITS, MAX_COLS,
                           MAX_COMP_ROWS, MAX_INPUT_BITS, MAX_PIPELINE, MAX_READOUT_BITS, MAX_ROWS,
                           NONIDEALITIES, MacroParams)

from . import __version__

__all__ = ["OPTIONS", "ENGINE_OPTIONS", "ALLOWED", "UsageError", "build_parser",
           "params_from_args", "engine_from_args", "EngineBuild", "check_output", "summary_line",
           "engine_summary_line", "macro_int_type", "nonideal_type", "main"]

PROG = "gen"
#: The top module's name when --name is not given.
DEFAULT_NAME = "cim_macro"
DEFAULT_ENGINE_NAME = "cim_engine"
#: Image slots of an engine when --image-slots is not given.
DEFAULT_IMAGE_SLOTS = 256
#: Longest module name accepted: NAME.json must stay a legal file name everywhere.
MAX_NAME_LENGTH = 128

#: Option string of every MacroParams field, used to name the option in error messages.
OPTIONS = {
    "rows": "--rows", "cols": "--cols", "input_bits": "--input-bits",
    "comp_rows": "--comp-rows", "readout_bits": "--readout-bits", "acc_bits": "--acc-bits",
    "cols_per_cycle": "--cols-per-cycle", "nonideal": "--nonideal", "name": "--name",
    "pipeline": "--pipeline", "counters": "--counters",
}

#: Option string of every EngineParams capacity field.
ENGINE_OPTIONS = {
    "weight_banks": "--weight-banks", "layers": "--layers", "image_slots": "--image-slots",
    "max_width": "--max-width",
}

#: What each integer option allows, in words (help text and "not an integer" errors).
ALLOWED = {
    "rows": f"1..32, or a multiple of 32 up to {MAX_ROWS}",
    "cols": f"1..{MAX_COLS}",
    "input_bits": f"1..{MAX_INPUT_BITS}",
    "comp_rows": f"a power of two in [2, {MAX_COMP_ROWS}]",
    "readout_bits": f"smallest width holding ±(rows + comp_rows) .. {MAX_READOUT_BITS}",
    "acc_bits": f"readout_bits + input_bits .. {MAX_ACC_BITS}",
    "cols_per_cycle": "a divisor of cols",
    "pipeline": f"0..{MAX_PIPELINE}",
    "weight_banks": f"1..{MAX_WEIGHT_BANKS}",
    "layers": f"1..{MAX_LAYERS}",
    "image_slots": f"1..{MAX_IMAGE_SLOTS}",
    "max_width": f"1..{MAX_WIDTH}",
}

# Verilog-2005 and SystemVerilog-2017 reserved words: a module named like one would not
# parse, so --name rejects them although they match the identifier pattern.
VERILOG_KEYWORDS = frozenset("""
accept_on alias always always_comb always_ff always_latch and assert assign assume automatic
before begin bind bins binsof bit break buf bufif0 bufif1 byte case casex casez cell chandle
checker class clocking cmos config const constraint context continue cover covergroup
coverpoint cross deassign default defparam design disable dist do edge else end endcase
endchecker endclass endclocking endconfig endfunction endgenerate endgroup endinterface
endmodule endpackage endprimitive endprogram endproperty endspecify endsequence endtable
endtask enum event eventually expect export extends extern final first_match for force
foreach forever fork forkjoin function generate genvar global highz0 highz1 if iff ifnone
ignore_bins illegal_bins implements implies import incdir include initial inout input inside
instance int integer interconnect interface intersect join join_any join_none large let
liblist library local localparam logic longint macromodule matches medium modport module
nand negedge nettype new nexttime nmos nor noshowcancelled not notif0 notif1 null or output
package packed parameter pmos posedge primitive priority program property protected pull0
pull1 pulldown pullup pulsestyle_ondetect pulsestyle_onevent pure rand randc randcase
randsequence rcmos real realtime ref reg reject_on release repeat restrict return rnmos
rpmos rtran rtranif0 rtranif1 s_always s_eventually s_nexttime s_until s_until_with
scalared sequence shortint shortreal showcancelled signed small soft solve specify
specparam static string strong strong0 strong1 struct super supply0 supply1 sync_accept_on
sync_reject_on table tagged task this throughout time timeprecision timeunit tran tranif0
tranif1 tri tri0 tri1 triand trior trireg type typedef union unique unique0 unsigned until
until_with untyped use uwire var vectored virtual void wait wait_order wand weak weak0 weak1
while wildcard wire with within wor xnor xor
""".split())


def macro_int_type(field: str):
    """argparse type of the integer macro option ``field`` (its range is MacroParams's)."""
    return cmdline.integer(field, allowed=f"an integer ({ALLOWED[field]})")


def nonideal_type(text: str) -> frozenset:
    """argparse type of ``--nonideal``: names, or ``none`` (MacroParams checks the names)."""
    names = [n.strip() for n in text.split(",")]
    if "" in names:
        raise argparse.ArgumentTypeError(
            f"a comma-separated list of non-ideality names (or none), not {text!r}")
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise argparse.ArgumentTypeError(f"{twice!r} is named twice in {text!r}")
    if names == ["none"]:
        return frozenset()
    # Unknown names are left to MacroParams, which words the error like every other one.
    return frozenset(names)


def build_parser() -> cmdline.CommandParser:
    """The argument parser of ``python -m gen`` (its ``--help`` is the option reference)."""
    default_nonideal = ",".join(n for n in NONIDEALITIES if n in DEFAULT_NONIDEALITIES)
    parser = cmdline.CommandParser(
        name=PROG, prog="python -m gen",
        description=(
            "Generate one in-memory-computing BNN macro: writes OUT/NAME.v (Verilog of the\n"
            "top module NAME, a Wishbone B4 slave) and OUT/NAME.json (manifest: every\n"
            "parameter and width, the ports, the register map with addresses, cycle counts,\n"
            "versions and the Verilog's sha256). The same options give the same bytes on\n"
            "every machine. Semantics: docs/ARCHITECTURE.md; this command: docs/GEN.md."),
        epilog=(
            "examples:\n"
            "  python -m gen --rows 32 --cols 96                  # the paper's layer, build/\n"
            "  python -m gen --rows 64 --cols 10 --cols-per-cycle 5 --ideal -o out --name l3\n"
            "  python -m gen --rows 32 --cols 96 --nonideal offset,gain,readout\n"
            "  python -m gen --rows 32 --cols 96 --model build/models/mnist -o out   # engine\n"
            "  python -m gen --rows 32 --cols 96 --weight-banks 16 --layers 4 --max-width 256\n"
            "\n"
            "Bad input exits with status 2 and one line on stderr; nothing is written."),
    )
    size = parser.add_argument_group("array size")
    size.add_argument("--rows", type=macro_int_type("rows"), required=True, metavar="R",
                      help=f"data word lines R (inputs per column): {ALLOWED['rows']}; required")
    size.add_argument("--cols", type=macro_int_type("cols"), required=True, metavar="C",
                      help=f"columns C (neurons): {ALLOWED['cols']}; required")
    size.add_argument("--input-bits", type=macro_int_type("input_bits"), default=5, metavar="B",
                      help=f"bit-planes B of an unsigned input: {ALLOWED['input_bits']} (default 5)")
    size.add_argument("--comp-rows", type=macro_int_type("comp_rows"), default=8, metavar="K",
                      help=f"compensation rows K per column: {ALLOWED['comp_rows']} (default 8)")
    size.add_argument("--cols-per-cycle", type=macro_int_type("cols_per_cycle"), default=None,
                      metavar="P",
                      help="columns computed in parallel P (folding: C/P groups run one after "
                           "another): a divisor of C (default C, no folding)")
    size.add_argument("--pipeline", type=macro_int_type("pipeline"), default=0, metavar="L",
                      help=f"register stages in the readout path: {ALLOWED['pipeline']} "
                           "(default 0; each stage adds a cycle per group to a RUN; 2 is the "
                           "iCE40 builds' choice, 4, which also registers the bus decode "
                           "and answers in 5 cycles, the fully parallel ECP5 build's)")
    readout = parser.add_argument_group("readout and accumulator")
    readout.add_argument("--readout-bits", type=macro_int_type("readout_bits"), default=None,
                         metavar="W",
                         help="signed readout (ADC) width W: from the smallest width holding "
                              f"±(R+K) up to {MAX_READOUT_BITS} (default the smallest)")
    readout.add_argument("--acc-bits", type=macro_int_type("acc_bits"), default=None, metavar="A",
                         help=f"signed accumulator width A: W+B .. {MAX_ACC_BITS} "
                              f"(default W+B+4, room for 16 row tiles)")
    noise = parser.add_argument_group("non-idealities built into the array model")
    which = noise.add_mutually_exclusive_group()
    which.add_argument("--nonideal", type=nonideal_type, default=None, metavar="LIST",
                       help="comma-separated subset of " + ",".join(NONIDEALITIES) +
                            " (offset: per-column offset; gain: per-column gain; readout: "
                            "saturation and quantisation; table: transfer curve; stuck: "
                            "stuck-at cells), or 'none' (default " + default_nonideal + ")")
    which.add_argument("--ideal", dest="nonideal", action="store_const", const=frozenset(),
                       help="build no non-ideality (same as --nonideal none)")
    which.add_argument("--all-nonidealities", dest="nonideal", action="store_const",
                       const=frozenset(NONIDEALITIES), help="build all five non-idealities")
    parser.add_argument("--counters", action="store_true", default=None,
                        help="build the activity counters: read-only CSRs PLANE_OPS, "
                             "CONVERSIONS, CAL_READS and BUS_ACCESSES, the events of the "
                             "energy model (docs/ENERGY.md); default off")
    engine = parser.add_argument_group(
        "network engine (docs/ENGINE.md): the macro with weight banks, a layer program, "
        "image and result buffers and a sequencer; given any of these options, gen emits "
        "an engine")
    engine.add_argument("--model", metavar="MODEL",
                        help="size the engine for this exported model (NAME, NAME.json or "
                             "NAME.npz, as 'python -m models eval --model' takes it); the "
                             "capacity options below may only enlarge it")
    engine.add_argument("--weight-banks", type=macro_int_type("weight_banks"), metavar="N",
                        help="weight banks, one tile (R x C weights, C thresholds and flips) "
                             f"each: {ALLOWED['weight_banks']} (default the model's tiles; "
                             "required without --model)")
    engine.add_argument("--layers", type=macro_int_type("layers"), metavar="N",
                        help=f"entries of the layer program: {ALLOWED['layers']} (default the "
                             "model's layers; required without --model)")
    engine.add_argument("--max-width", type=macro_int_type("max_width"), metavar="N",
                        help="the widest layer's inputs or outputs: "
                             f"{ALLOWED['max_width']} (default the model's; required without "
                             "--model)")
    engine.add_argument("--image-slots", type=macro_int_type("image_slots"), metavar="N",
                        help="images the image buffer holds (classes the result buffer "
                             f"holds): {ALLOWED['image_slots']} (default {DEFAULT_IMAGE_SLOTS})")
    out = parser.add_argument_group("output")
    out.add_argument("-o", "--out", default="build/", metavar="DIR",
                     help="output folder, created if missing (default build/)")
    out.add_argument("--name", default=None,
                     help="name of the top module and of both files: a Verilog identifier "
                          f"([A-Za-z_][A-Za-z0-9_]*, at most {MAX_NAME_LENGTH} characters, "
                          f"not a keyword) (default {DEFAULT_NAME}, an engine's "
                          f"{DEFAULT_ENGINE_NAME})")
    parser.add_argument("--version", action="version",
                        version=f"gen {__version__} (contract {CONTRACT_VERSION[0]}.{CONTRACT_VERSION[1]})")
    return parser


def params_from_args(args: argparse.Namespace) -> MacroParams:
    """MacroParams of the parsed options; a bad value raises :class:`UsageError`.

    Options a command does not have (``fpga build`` has no ``--comp-rows``) keep the
    parameter's default.
    """
    kwargs = {field: getattr(args, field) for field in OPTIONS
              if getattr(args, field, None) is not None}
    try:
        p = MacroParams(**kwargs)
    except (ValueError, TypeError) as err:
        message = cmdline.one_line(err)
        # MacroParams messages start with the field they are about.
        field = message.split(" ", 1)[0]
        raise UsageError(message, OPTIONS.get(field, "parameters")) from None
    if len(p.name) > MAX_NAME_LENGTH:
        raise UsageError(f"name must be at most {MAX_NAME_LENGTH} characters, "
                         f"not {len(p.name)} ({p.name[:20]!r}...)", "--name")
    if p.name in VERILOG_KEYWORDS:
        raise UsageError(f"name must not be a Verilog keyword, not {p.name!r}", "--name")
    return p


@dataclasses.dataclass(frozen=True)
class EngineBuild:
    """What ``gen`` builds when it builds an engine.

    Members
    -------
    params : EngineParams
    net : FoldedNet or None
        The model the engine was sized for (``--model``).
    model_files : tuple of Path
        The model's files (NAME.json, NAME.npz), hashed into the manifest.
    """

    params: object
    net: object = None
    model_files: tuple = ()


#: Which option a line of ``EngineParams.misfits`` is about, by a phrase it contains.
_MISFIT_OPTIONS = (("input bits", "--input-bits"), ("acc_bits", "--acc-bits"),
                   ("weight banks", "--weight-banks"), ("layers", "--layers"),
                   ("max_width", "--max-width"), ("mapped for", "--model"))


def engine_from_args(args: argparse.Namespace, macro: MacroParams) -> EngineBuild | None:
    """The engine the options ask for around ``macro``, or None for a bare macro.

    Raises :class:`UsageError` naming the option: a capacity out of range, a capacity
    missing without ``--model``, a model that cannot be read or that does not fit (a
    capacity smaller than the model needs, another macro size, more input bits than
    ``--input-bits``, an ``--acc-bits`` too narrow), or an engine the RTL does not build.
    Without ``--acc-bits`` (``fpga build`` has none) the accumulator is as wide as the
    model needs.
    """
    from models.engine import EngineParams

    given = {f: getattr(args, f, None) for f in ENGINE_OPTIONS}
    model = getattr(args, "model", None)
    if model is None and all(v is None for v in given.values()):
        return None
    net, files = None, ()
    if model is None:
        missing = [ENGINE_OPTIONS[f] for f in ("weight_banks", "layers", "max_width")
                   if given[f] is None]
        if missing:
            raise UsageError(f"an engine without --model needs --weight-banks, --layers and "
                             f"--max-width; missing {', '.join(missing)}", missing[0])
        capacity = dict(given)
    else:
        from models.export import model_files
        from models.inputs import load_model

        net = load_model(model, "--model")
        files = model_files(model)
        if getattr(args, "acc_bits", None) is None and macro.acc_bits < net.min_acc_bits:
            # No accumulator width asked for (or no --acc-bits, as in fpga build): the
            # model's, as fpga run and models eval size it.
            try:
                macro = dataclasses.replace(macro, acc_bits=net.min_acc_bits)
            except ValueError as err:
                raise UsageError(f"{model}: {cmdline.one_line(err)}", "--model") from None
        capacity = dict(EngineParams.needs(net))
        capacity.update({f: v for f, v in given.items() if v is not None})
    if capacity.get("image_slots") is None:
        capacity["image_slots"] = DEFAULT_IMAGE_SLOTS
    try:
        params = EngineParams(macro, **capacity)
    except (ValueError, TypeError) as err:
        message = cmdline.one_line(err)
        raise UsageError(message, ENGINE_OPTIONS.get(message.split(" ", 1)[0], "parameters")) from None
    if net is not None:
        problems = params.misfits(net)
        if problems:
            option = next((o for phrase, o in _MISFIT_OPTIONS if phrase in problems[0]), "--model")
            raise UsageError(f"{model}: {problems[0]}", option)
    _check_engine_builds(params)
    return EngineBuild(params, net, tuple(files))


def _check_engine_builds(params) -> None:
    """A combination the engine's RTL does not build (``rtl.engine.check_supported``) is a
    usage error before anything is written."""
    from rtl.engine import check_supported

    try:
        check_supported(params)
    except (ValueError, TypeError) as err:
        message = cmdline.one_line(err)
        field = message.split(" ", 1)[0]
        raise UsageError(message, OPTIONS.get(field) or ENGINE_OPTIONS.get(field, "parameters")) from None


def check_output(out: str, file_names: list[str]) -> Path:
    """Check that ``out`` is, or can be created as, a folder where ``file_names`` can go.

    Nothing is left behind (:func:`models.cmdline.check_output_folder`). Raises
    :class:`UsageError` naming ``-o/--out``.
    """
    return cmdline.check_output_folder(out, "-o/--out", files=file_names)


def summary_line(p: MacroParams, verilog_path, verilog_lines: int, manifest_path) -> str:
    """The one line printed after a successful build."""
    nonideal = ",".join(n for n in NONIDEALITIES if p.has(n)) or "none"
    return (f"{p.name}: {p.rows}x{p.cols}, B={p.input_bits}, K={p.comp_rows}, "
            f"W={p.readout_bits}, A={p.acc_bits}, P={p.cols_per_cycle}, L={p.pipeline}, nonideal={nonideal}"
            f"{', counters' if p.counters else ''} "
            f"-> {verilog_path} ({verilog_lines} lines), {manifest_path}")


def engine_summary_line(build: EngineBuild, name: str, verilog_path, verilog_lines: int,
                        manifest_path) -> str:
    """The one line printed after a successful engine build."""
    e, p = build.params, build.params.macro
    nonideal = ",".join(n for n in NONIDEALITIES if p.has(n)) or "none"
    model = ""
    if build.net is not None:
        from models.engine import build_program

        cycles = build_program(build.net, p).image_cycles()
        model = f"; model {build.model_files[0].stem}: {cycles} cycles per image"
    return (f"{name}: engine of a {p.rows}x{p.cols} macro (B={p.input_bits}, K={p.comp_rows}, "
            f"W={p.readout_bits}, A={p.acc_bits}, P={p.cols_per_cycle}, L={p.pipeline}, "
            f"nonideal={nonideal}), {e.weight_banks} weight banks, {e.layers} layers, "
            f"{e.image_slots} image slots, max width {e.max_width}{model} "
            f"-> {verilog_path} ({verilog_lines} lines), {manifest_path}")


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    engine_asked = args.model is not None or any(
        getattr(args, f) is not None for f in ENGINE_OPTIONS)
    if args.name is None:
        args.name = DEFAULT_ENGINE_NAME if engine_asked else DEFAULT_NAME
    p = params_from_args(args)
    build = engine_from_args(args, p)
    files = [f"{p.name}.v", f"{p.name}.json"]
    check_output(args.out, files)

    from .emit import generate, generate_engine, write_outputs
    try:
        # An exception here is a bug (the parameters were accepted, so the RTL must build
        # them): it propagates with its traceback, exit status 1.
        if build is None:
            built = generate(p)
        else:
            built = generate_engine(build.params, p.name, build.net, build.model_files)
    except KeyboardInterrupt:
        raise KeyboardInterrupt("nothing written") from None
    try:
        write_outputs(args.out, {files[0]: built.verilog, files[1]: built.manifest_text})
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"nothing written to {args.out!r}") from None
    except OSError as err:
        # What check_output cannot foresee: a file system refusing new folders, a full disk.
        reason = cmdline.one_line(err.strerror or err)
        raise UsageError(f"cannot write to {args.out!r}: {reason}", "-o/--out") from None
    lines = built.verilog.count("\n")
    paths = os.path.join(args.out, files[0]), os.path.join(args.out, files[1])
    if build is None:
        print(summary_line(p, paths[0], lines, paths[1]))
    else:
        print(engine_summary_line(build, p.name, paths[0], lines, paths[1]))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 done, 2 bad input, 130 Ctrl-C)."""
    # Before Amaranth is imported anywhere: the pinned builtin Yosys makes the output
    # independent of any Yosys on PATH.
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    return cmdline.run(PROG, _main, argv)
