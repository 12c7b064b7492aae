"""The command line ``python -m models``: train, evaluate and sweep BNNs on sampled chips.

* ``train``: train a recipe (``models.bnn.RECIPES``) on digits or MNIST (optionally with
  DVA noise, noise-aware training through sampled chips and a chip in the loop), fold
  batch norm and write the exported model ``OUT/NAME.json`` + ``OUT/NAME.npz``
  (docs/MODEL_FORMAT.md).
* ``eval``: accuracy of an exported model on IDX images, on ideal hardware or on sampled
  chip instances (SRAM offsets and cell variation, ReRAM conductance variation), with or
  without calibration.
* ``sweep``: accuracy versus variation over N chip instances (docs/EXPERIMENTS.md),
  writing ``OUT/sweep.csv`` and one PNG per experiment; ``--experiment noise`` puts
  trained models side by side against read noise; ``--experiment energy`` accuracy on
  chips against energy per image over the compensation rows.
* ``energy``: events, energy, TOPS/W, area and latency of a macro or of a network on it,
  priced with a technology preset (docs/ENERGY.md).

``eval --chips N`` and ``sweep`` run their chips in blocks of ``--chunk`` in this process,
on a local Dask cluster (``--workers N``) or on a running one (``--scheduler
tcp://HOST:PORT``); the results do not depend on where they ran (docs/SCALING.md).

The conventions of every command of the project (models/cmdline.py, docs/CLI.md): every
bad invocation (missing or damaged file, bad number, unknown data set, options that
contradict each other or would be ignored) ends with exit status 2 and one line on
stderr, ``models: error: ...``, naming the bad value and what is allowed, and writes
nothing; output paths are checked before any work and outputs are written under
temporary names and renamed at the end; Ctrl-C prints one line and exits with 130.
Progress bars (tqdm) go to stderr, only on a terminal and without ``--quiet``. The
seed in use is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from . import cmdline
from .blas_env import blas_in_use
from .bnn import DEFAULT_RECIPES, RECIPES, TrainConfig, accuracy, recipe
from .chip import ChipConfig
from .cmdline import UsageError, integer, number, number_list, one_line, shown
from .datasets import DEFAULT_MNIST_DIR, NORMALISATIONS, Dataset, load_dataset, mnist_split
from .export import export_model, infer_folded, macro_hook, save_folded
from .inputs import (load_images, load_images_labels, load_model, model_inputs,
                     training_overlap)

__all__ = ["main", "build_parser", "UsageError"]

PROG = "models"
DATASETS = ("digits", "mnist")
EXPERIMENTS = ("offset", "rram", "noise", "energy", "all")
#: Output option of every command (docs/CLI.md).
OUT = "-o/--out"

# Upper bounds of the spreads: far beyond any published device, low enough that the
# sampled values stay finite.
MAX_OFFSET_SIGMA = 1000.0   # cell units
MAX_LOG_SIGMA = 5.0         # std of ln I or ln G
MAX_DVA_SIGMA = 10.0
MAX_CONTRAST = 1000.0       # as the model schema: beyond it every pixel saturates


def _comp_rows(text: str) -> int:
    k = integer("comp-rows", 2, 32, allowed="a power of two in [2, 32]")(text)
    if k & (k - 1):
        raise argparse.ArgumentTypeError(f"comp-rows must be a power of two in [2, 32], not {k}")
    return k


def _trim_reads(text: str) -> int:
    from .chip_readout import MAX_TRIM_READS
    allowed = f"a power of two in [1, {MAX_TRIM_READS}] (zero-input reads averaged)"
    k = integer("trim", 1, MAX_TRIM_READS, allowed=allowed)(text)
    if k & (k - 1):
        raise argparse.ArgumentTypeError(f"trim must be {allowed}, not {k}")
    return k


def _assignment(name: str):
    """Type of a repeatable ``FIELD=VALUE`` option; VALUE is read as JSON when it parses
    (``0.5``, ``true``, ``{"rotate": 6}``), else taken as a string (``xent``)."""
    def parse(text: str) -> tuple:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"{name} must be FIELD=VALUE, not {shown(text)}")
        try:
            parsed = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            parsed = value
        return key.strip(), parsed
    parse.__name__ = name
    return parse


def _labelled_models(text: str) -> tuple:
    """Type of ``--models LABEL=MODEL,...``: ((label, model), ...), labels all different."""
    allowed = "LABEL=MODEL pairs separated by commas"
    pairs = []
    for item in text.split(","):
        label, sep, path = item.partition("=")
        if not sep or not label.strip() or not path.strip():
            raise argparse.ArgumentTypeError(f"models must be {allowed}, not {shown(item)}")
        pairs.append((label.strip(), path.strip()))
    labels = [label for label, _ in pairs]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"models labels must all differ, not {shown(text)} "
                                         f"({', '.join(twice)} given twice)")
    return tuple(pairs)


# --- shared pieces --------------------------------------------------------------------

def _given(args, *names) -> list[str]:
    """The options among ``names`` (dest names) that the user gave (their default is None)."""
    return ["--" + n.replace("_", "-") for n in names
            if getattr(args, n) is not None and getattr(args, n) is not False]


def _refuse(given: list[str], reason: str) -> None:
    if given:
        raise UsageError(reason, given[0])


def _chip_config(args) -> tuple[ChipConfig | None, str]:
    """ChipConfig from the chip options, and the backend; (None, backend) for ideal hardware."""
    sram = _given(args, "sram_offset_sigma", "sram_cell_sigma", "read_noise")
    rram = _given(args, "rram_sigma", "on_off_ratio")
    if sram and rram:
        raise UsageError(f"a chip is either SRAM or ReRAM; not allowed with {sram[0]}", rram[0])
    if args.trim and not args.calibrate:
        raise UsageError("measures the residual that --calibrate leaves; add --calibrate", "--trim")
    if rram:
        if args.calibrate:
            raise UsageError("needs SRAM compensation rows; not allowed with ReRAM options "
                             "(--rram-sigma, --on-off-ratio)", "--calibrate")
        if args.comp_rows is not None:
            raise UsageError("compensation rows are SRAM's; not allowed with ReRAM options "
                             "(--rram-sigma, --on-off-ratio)", "--comp-rows")
        if args.backend == "macro":
            raise UsageError("'macro' is the SRAM golden model; ReRAM chips need --backend analog",
                             "--backend")
        cfg = ChipConfig(technology="rram", cell_sigma=args.rram_sigma or 0.0,
                         on_off_ratio=args.on_off_ratio if args.on_off_ratio is not None else math.inf)
        return cfg, "analog"
    backend = args.backend or "macro"
    if args.read_noise and backend == "macro":
        raise UsageError("per-read noise exists only in the analog model; add --backend analog",
                         "--read-noise")
    cfg = ChipConfig(offset_sigma=args.sram_offset_sigma or 0.0,
                     cell_sigma=args.sram_cell_sigma or 0.0, read_noise=args.read_noise or 0.0)
    if not (sram or args.calibrate):
        return None, backend
    return cfg, backend


def _add_chip_options(p, *, seed_help=None):
    g = p.add_argument_group("chip instance (default: ideal hardware)")
    if seed_help is not None:
        g.add_argument("--chip-seed", type=integer("chip-seed", 0, 2**32 - 1), default=None,
                       metavar="S", help=seed_help)
    g.add_argument("--sram-offset-sigma", type=number("sram-offset-sigma", 0, MAX_OFFSET_SIGMA),
                   metavar="X",
                   help="SRAM comparator offset spread, cell units (1 compensation step = 2 units)")
    g.add_argument("--sram-cell-sigma", type=number("sram-cell-sigma", 0, MAX_LOG_SIGMA),
                   metavar="X", help="SRAM bitcell current spread (std of ln I)")
    g.add_argument("--rram-sigma", type=number("rram-sigma", 0, MAX_LOG_SIGMA), metavar="X",
                   help="ReRAM conductance spread (std of ln G); binary weights on 1-bit cells, "
                        "differential, analog model")
    g.add_argument("--on-off-ratio", type=number("on-off-ratio", 1.0, lo_open=True, allow_inf=True),
                   metavar="R", help="ReRAM G_LRS/G_HRS, > 1 (default inf)")
    _add_sram_run_options(g)
    g.add_argument("--comp-rows", type=_comp_rows, default=None, metavar="K",
                   help="compensation rows per column of an SRAM chip, a power of two in "
                        "[2, 32] (default 8)")


def _add_sram_run_options(g):
    """--read-noise, --calibrate, --trim, --backend: of eval, train and sweep's energy
    experiment."""
    g.add_argument("--read-noise", type=number("read-noise", 0, MAX_OFFSET_SIGMA), metavar="X",
                   help="SRAM noise per read, cell units (needs --backend analog)")
    g.add_argument("--calibrate", action="store_true",
                   help="run the compensation-row calibration search first (SRAM)")
    g.add_argument("--trim", type=_trim_reads, nargs="?", const=1, default=None, metavar="T",
                   help="after --calibrate, read each column's residual with zero input (the "
                        "mean of T reads, a power of two; default 1) and fold it into the "
                        "thresholds (SRAM)")
    g.add_argument("--backend", choices=("macro", "analog"), default=None,
                   help="macro: bit-true golden model with the chip mapped onto the RTL's "
                        "registers (SRAM default); analog: the device model (ReRAM default)")


def _check_macro(rows, cols, comp_rows) -> None:
    from .params import MacroParams
    try:
        MacroParams(rows=rows, cols=cols, comp_rows=comp_rows)
    except ValueError as exc:
        msg = one_line(exc)
        raise UsageError(msg, "--" + msg.split()[0].replace("_", "-")) from None


def _load_data(name: str, **kwargs) -> Dataset:
    try:
        return load_dataset(name, **kwargs)
    except ValueError as exc:
        msg = one_line(exc)
        for field in ("n_train", "n_val"):
            if msg.startswith(field):
                raise UsageError(msg, "--" + field.replace("_", "-")) from None
        raise UsageError(f"{name}: {msg}", "--dataset") from None


def _data_for_training(args, inputs: dict) -> Dataset:
    """Digits, or MNIST (the default files or --images/--labels) split by --n-train and
    --n-val and preprocessed with ``inputs`` (keyword arguments of ``mnist_split``)."""
    if args.dataset == "digits":
        return _load_data("digits", seed=args.seed)
    if args.images is None:
        return _load_data("mnist", n_train=args.n_train, n_val=args.n_val, **inputs)
    images, labels = load_images_labels(args.images, args.labels, classes=10)
    n_train = 6000 if args.n_train is None else args.n_train
    if not 0 < n_train < len(images):
        raise UsageError(f"must be in 1..{len(images) - 1} for the {len(images)} images of "
                         f"{args.images}, not {n_train}", "--n-train")
    if args.n_val is not None and args.n_val > len(images) - n_train:
        raise UsageError(f"must be in 1..{len(images) - n_train} for the {len(images)} images "
                         f"of {args.images} with --n-train {n_train}, not {args.n_val}",
                         "--n-val")
    if images.dtype != np.uint8:
        raise UsageError(f"{args.images}: MNIST images are unsigned bytes (IDX type 0x08), "
                         f"not {images.dtype}", "--images")
    return mnist_split(images, labels.astype(np.uint8), n_train=n_train, n_val=args.n_val,
                       **inputs, record=dict(source="mnist-idx",
                                             files=[str(args.images), str(args.labels)]))


def _recorded_data(net, name: str, option: str = "--model") -> Dataset:
    """The validation split of data set ``name`` preprocessed as ``net`` records it (the
    digits split seed; MNIST's train/val ranges, deskew, normalisation and contrast);
    ``option`` gave the model (named in the error of a split it cannot record)."""
    pre = net.meta.get("preprocessing") or {}
    if name == "digits":
        return _load_data("digits", seed=(pre.get("split") or {}).get("seed", 0))
    train, val = pre.get("train") or [0, 6000], pre.get("val")
    _check_recorded_split(train, val, option)
    try:
        return _load_data("mnist", n_train=train[1],
                          n_val=None if val is None else val[1] - val[0],
                          normalisation=pre.get("normalisation", "minmax"),
                          deskew_images=bool(pre.get("deskew")),
                          contrast=pre.get("contrast", 1.0))
    except UsageError as exc:
        if exc.option not in ("--n-train", "--n-val"):
            raise
        raise UsageError(f"the model records training images {list(train)} and validation "
                         f"images {list(val or [])}: {exc.message}", option) from None


def _check_recorded_split(train, val, option: str) -> None:
    """A model's recorded MNIST split is the one training makes: train ``[0, n)``, then
    val ``[n, n + v)``; another pair is a damaged file."""
    if train[0] != 0 or not 0 < train[1]:
        raise UsageError(f"the model records training images {list(train)}; training uses "
                         f"[0, N) with N >= 1", option)
    if val is not None and not train[1] == val[0] < val[1]:
        raise UsageError(f"the model records validation images {list(val)} after training "
                         f"images {list(train)}; validation starts where training ends, "
                         f"[{train[1]}, M) with M > {train[1]}", option)


def _dataset_of(net, option: str) -> str:
    source = (net.meta.get("preprocessing") or {}).get("source")
    names = {"sklearn-digits": "digits", "mnist-idx": "mnist"}
    if source not in names:
        raise UsageError(f"the model records no data set it was trained on (preprocessing.source "
                         f"{source!r}); give --images and --labels", option)
    return names[source]


def _image_index(data: Dataset) -> np.ndarray:
    """Image index of every validation image, the read-noise key: its index in the IDX
    file (``preprocessing.val``), else its position in the validation split."""
    val = data.preprocessing.get("val")
    if val is not None:
        return np.arange(val[0], val[0] + len(data.y_val))
    return np.arange(len(data.y_val))


def _training_hook(readout, hook):
    """``hook`` with a new read-noise pass (purpose ``train``) for every forward pass."""
    passes = iter(range(1, 1 << 62))

    def keyed(layer, inputs, weight_bits, acc):
        if layer == 0:
            readout.use_images(None, purpose="train", pass_index=next(passes))
        return hook(layer, inputs, weight_bits, acc)
    return keyed


#: Chips per block, the unit of work of eval and sweep, when --chunk is not given.
DEFAULT_CHUNK = 20


def _add_cluster_options(p):
    from .cluster import add_cluster_options
    g = add_cluster_options(p, title="where the chips run (default: this process)",
                            workers_help="start a local Dask cluster of N worker processes")
    g.add_argument("--chunk", type=integer("chunk", 1, cmdline.MAX_CHIPS), default=None, metavar="K",
                   help=f"chips per block, the unit of work (default {DEFAULT_CHUNK}); the "
                        f"results do not depend on it")


# --- train ------------------------------------------------------------------------------

#: ``--inputs`` fields (keyword arguments of ``models.datasets.mnist_split``) and what
#: each takes.
INPUT_FIELDS = {"deskew_images": "true or false", "contrast": "a number in [1, 1000]",
                "normalisation": " or ".join(NORMALISATIONS)}
#: TrainConfig fields that have options of their own.
OWN_OPTIONS = {"seed": "--seed", "epochs": "--epochs", "dva_sigma": "--dva"}


def _json_kind(default, name: str = "") -> tuple:
    """(test, description) of the JSON values the TrainConfig field ``name`` with
    ``default`` takes."""
    if name == "acc_noise":
        return (lambda v: v is None or isinstance(v, list)), "a JSON list or null"
    if isinstance(default, bool):
        return (lambda v: isinstance(v, bool)), "true or false"
    if isinstance(default, int):
        return (lambda v: isinstance(v, int) and not isinstance(v, bool)), "an integer"
    if isinstance(default, float):
        return (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                and math.isfinite(v)), "a finite number"
    if isinstance(default, str):
        return (lambda v: isinstance(v, str)), "a string"
    return (lambda v: v is None or isinstance(v, dict)), "a JSON object or null"


def _train_overrides(args) -> tuple[dict, dict]:
    """The ``--config`` TrainConfig fields and the ``--inputs`` preprocessing fields,
    each checked for its name and JSON type (the values' ranges are TrainConfig's and
    ``quantize``'s)."""
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)
              if f.name not in OWN_OPTIONS}
    config = {}
    for key, value in args.config or ():
        if key in OWN_OPTIONS:
            raise UsageError(f"{key} has its own option, {OWN_OPTIONS[key]}", "--config")
        if key not in fields:
            raise UsageError(f"{shown(key)} is not a training field; one of "
                             f"{', '.join(sorted(fields))}", "--config")
        if key in config:
            raise UsageError(f"{key} given twice; give it once", "--config")
        test, kind = _json_kind(fields[key], key)
        if not test(value):
            raise UsageError(f"{key} must be {kind}, not {shown(value)}", "--config")
        config[key] = value
    augment = config.get("augment")
    if augment is not None:
        if args.dataset != "mnist":
            raise UsageError("augment warps full-size MNIST images; not allowed with --dataset "
                             f"{args.dataset}", "--config")
        from .augment import AugmentConfig
        keys = [f.name for f in dataclasses.fields(AugmentConfig)]
        unknown = [k for k in augment if k not in keys]
        if unknown:
            raise UsageError(f"augment fields are {', '.join(keys)}, not {shown(unknown[0])}",
                             "--config")
    inputs = {}
    for key, value in args.inputs or ():
        if args.dataset != "mnist":
            raise UsageError(f"MNIST preprocessing; not allowed with --dataset {args.dataset}",
                             "--inputs")
        if key not in INPUT_FIELDS:
            raise UsageError(f"{shown(key)} is not a preprocessing field; one of "
                             f"{', '.join(INPUT_FIELDS)}", "--inputs")
        if key in inputs:
            raise UsageError(f"{key} given twice; give it once", "--inputs")
        good = {"deskew_images": isinstance(value, bool),
                "contrast": (isinstance(value, (int, float)) and not isinstance(value, bool)
                             and 1 <= value <= MAX_CONTRAST),
                "normalisation": value in NORMALISATIONS}[key]
        if not good:
            raise UsageError(f"{key} must be {INPUT_FIELDS[key]}, not {shown(value)}", "--inputs")
        inputs[key] = value
    return config, inputs


def _check_train_options(args) -> str:
    """The option combinations of ``train`` (UsageError on the first one not allowed);
    returns the recipe's name."""
    if (args.images is None) != (args.labels is None):
        raise UsageError("give both IDX files or neither", "--images/--labels")
    if args.images is not None and args.dataset != "mnist":
        raise UsageError(f"IDX files are MNIST-format images; not allowed with --dataset "
                         f"{args.dataset} (use --dataset mnist)", "--images")
    _refuse(_given(args, "n_train", "n_val") if args.dataset != "mnist" else [],
            "splits MNIST images; the digits split is fixed (80 % train, seeded); not allowed "
            "with --dataset digits")
    name = args.recipe or DEFAULT_RECIPES[args.dataset]
    if RECIPES[name]["dataset"] != args.dataset:
        raise UsageError(f"{name} is a recipe for {RECIPES[name]['dataset']}; not allowed with "
                         f"--dataset {args.dataset}", "--recipe")
    if not args.noise_aware:
        _refuse(_given(args, "noise_epochs", "chips_per_step"), "needs --noise-aware")
    if args.chip_in_loop is None:
        _refuse(_given(args, "chip_epochs"), "needs --chip-in-loop SEED")
    if args.chip_in_loop is None and not args.noise_aware:
        _refuse(_given(args, "sram_offset_sigma", "sram_cell_sigma", "read_noise", "rram_sigma",
                       "on_off_ratio", "backend", "comp_rows", "calibrate", "trim"),
                "a chip option of train needs --chip-in-loop SEED or --noise-aware")
    return name


def cmd_train(args) -> int:
    name = _check_train_options(args)
    on_chip = args.chip_in_loop is not None or args.noise_aware
    config_overrides, input_overrides = _train_overrides(args)
    try:
        _, train_config = recipe(name, seed=args.seed, dva_sigma=args.dva,
                                 **config_overrides,
                                 **({} if args.epochs is None else dict(epochs=args.epochs)))
    except (TypeError, ValueError) as exc:
        raise UsageError(one_line(exc), "--config") from None
    out_name = args.name or args.dataset
    files = [f"{out_name}.json", f"{out_name}.npz"]
    out = cmdline.check_output_folder(args.out, OUT, files=files)
    chip_cfg, backend = _chip_config(args) if on_chip else (None, None)
    if on_chip and chip_cfg is None:
        raise UsageError("the chip is ideal; give a spread (--sram-offset-sigma, "
                         "--sram-cell-sigma, --rram-sigma, ...)",
                         "--noise-aware" if args.noise_aware else "--chip-in-loop")
    comp_rows = args.comp_rows or 8
    _check_macro(args.rows, args.cols, comp_rows)
    chip_epochs = args.chip_epochs or 10
    data = _data_for_training(args, {**RECIPES[name]["inputs"], **input_overrides})
    print(f"seed: {args.seed}")
    from . import experiments
    from .chip_readout import ChipReadout, predict_chips, trim_record

    start = time.perf_counter()
    bar = cmdline.progress_bar(train_config.epochs, f"train {name}", args.quiet)

    def progress(entry):
        bar.update(1)
        bar.set_postfix(loss=f"{entry['loss']:.3f}", train=f"{100 * entry['train_acc']:.1f}%")

    model, history = experiments.train_bnn(data, recipe_name=name, config=train_config,
                                           progress=progress)
    bar.close()
    noise_aware = None
    if args.noise_aware:
        from .chip_training import noise_aware_config, noise_aware_train
        na_config = noise_aware_config(train_config, epochs=args.noise_epochs)
        bar = cmdline.progress_bar(na_config.epochs, "noise-aware", args.quiet)
        noise_aware = noise_aware_train(
            model, data, chip_cfg, train_config=na_config, rows=args.rows, cols=args.cols,
            chips_per_step=args.chips_per_step or 4, comp_rows=comp_rows, backend=backend,
            calibrate=args.calibrate, trim=args.trim, progress=lambda e: bar.update(1))
        bar.close()
    if args.chip_in_loop is not None:
        from .bnn import train as bnn_train
        net0 = export_model(model, args.rows, args.cols)
        readout = ChipReadout(net0, chip_cfg, [args.chip_in_loop], comp_rows=comp_rows,
                              backend=backend, calibrate=args.calibrate, trim=args.trim)
        hook = _training_hook(readout, macro_hook(args.rows, args.cols, data.input_bits, readout))
        config = TrainConfig(epochs=chip_epochs, lr=1e-3, lr_final=3e-5, seed=args.seed,
                             dva_sigma=args.dva)
        bar = cmdline.progress_bar(chip_epochs, "chip in the loop", args.quiet)
        bnn_train(model, data.x_train, data.y_train, config=config, hook=hook,
                  progress=lambda e: bar.update(1))
        bar.close()
    seconds = time.perf_counter() - start
    net = export_model(model, args.rows, args.cols)
    val = accuracy(infer_folded(net, data.x_val), data.y_val)
    net.meta.update(
        preprocessing=data.preprocessing,
        training=dict(dataset=data.name, recipe=name, seed=args.seed, epochs=train_config.epochs,
                      dva_sigma=args.dva, sizes=list(model.sizes), seconds=round(seconds, 2),
                      numpy=np.__version__, blas=blas_in_use(),
                      config=train_config.to_dict(), noise_aware=noise_aware,
                      chip_in_loop=None if args.chip_in_loop is None else dict(
                          seed=args.chip_in_loop, epochs=chip_epochs,
                          config=chip_cfg.__dict__ if chip_cfg else None, backend=backend,
                          calibrate=args.calibrate, trim=trim_record(args.trim))),
        accuracy=dict(val_ideal=val, on="validation split: " + json.dumps(
            data.preprocessing.get("val") or data.preprocessing.get("split"))))
    if args.chip_in_loop is not None:
        # Exactly what `models eval` computes for this chip and these images.
        pred = predict_chips(net, chip_cfg, [args.chip_in_loop], data.x_val.astype(np.int64),
                             comp_rows=comp_rows, backend=backend, calibrate=args.calibrate,
                             trim=args.trim, images=_image_index(data))
        on_chip_acc = accuracy(pred[0], data.y_val)
        net.meta["accuracy"]["val_chip"] = on_chip_acc
    if args.noise_aware:
        from .chip_training import EVAL_CHIPS
        # What `models eval --chips EVAL_CHIPS` computes with the same chip options.
        pred = predict_chips(net, chip_cfg, list(range(EVAL_CHIPS)), data.x_val.astype(np.int64),
                             comp_rows=comp_rows, backend=backend, calibrate=args.calibrate,
                             trim=args.trim, images=_image_index(data))
        accs = np.mean(pred == np.asarray(data.y_val)[None], axis=1)
        net.meta["accuracy"]["val_chips"] = dict(
            chip_seeds=[0, EVAL_CHIPS - 1], mean=float(accs.mean()), std=float(accs.std()),
            min=float(accs.min()))
    with cmdline.staged_outputs(out, files) as stage:
        save_folded(net, stage / out_name)
    print(f"trained {data.name} {'-'.join(map(str, model.sizes))} (recipe {name}) in "
          f"{seconds:.1f} s; validation accuracy (ideal hardware, {len(data.y_val)} images): "
          f"{100 * val:.2f} %")
    if args.chip_in_loop is not None:
        print(f"validation accuracy on chip {args.chip_in_loop} ({backend} model): "
              f"{100 * on_chip_acc:.2f} %")
    if args.noise_aware:
        v = net.meta["accuracy"]["val_chips"]
        print(f"validation accuracy on chips 0..{EVAL_CHIPS - 1} ({backend} model): "
              f"{100 * v['mean']:.2f} % mean, {100 * v['std']:.2f} % std, "
              f"{100 * v['min']:.2f} % min")
    print(f"wrote {out / files[0]} {out / files[1]}")
    return 0


# --- eval -------------------------------------------------------------------------------

def cmd_eval(args) -> int:
    if (args.images is None) != (args.labels is None):
        raise UsageError("give both IDX files or neither", "--images/--labels")
    if args.images is None and args.dataset is None:
        raise UsageError("give --images IDX --labels IDX, or --dataset digits|mnist for that "
                         "data set's validation split", "--images")
    if args.images is not None and args.dataset is not None:
        raise UsageError("not allowed with --images/--labels", "--dataset")
    if args.range is not None and args.images is None:
        raise UsageError("selects images of --images; not allowed with --dataset", "--range")
    cfg, backend = _chip_config(args)
    if cfg is None:
        # --comp-rows is the energy model's K too (--energy); otherwise it needs a chip.
        _refuse(_given(args, "chip_seed", "chips", "backend", "csv", "chunk", "workers",
                       "scheduler", "connect_timeout",
                       *(() if args.energy else ("comp_rows",))),
                "needs a chip: give a spread (--sram-offset-sigma, --sram-cell-sigma, "
                "--read-noise, --rram-sigma, --on-off-ratio) or --calibrate; on ideal "
                "hardware it would be ignored")
    comp_rows = args.comp_rows or 8
    chip_seed = args.chip_seed or 0
    chips = args.chips or 1
    if chip_seed + chips - 1 > 2**32 - 1:
        raise UsageError(f"the seeds {chip_seed}..{chip_seed + chips - 1} go past 2^32 - 1",
                         "--chips")
    from .cluster import runner_from_args, running
    runner = runner_from_args(args)
    if args.csv is not None:
        cmdline.check_output_file(args.csv, "--csv")
    net = load_model(args.model)
    if cfg is not None:
        _check_macro(net.rows, net.cols, comp_rows)
    note = None
    if args.images is not None:
        images, y = load_images_labels(args.images, args.labels, classes=net.classes,
                                       selection=args.range, image_ndims=(2, 3))
        x = model_inputs(net, images, args.images)
        note = training_overlap(net, args.images, args.range or (0, len(images)))
        first = args.range[0] if args.range is not None else 0
        index = np.arange(first, first + len(y))
    else:
        want = _dataset_of(net, "--dataset")
        if want != args.dataset:
            raise UsageError(f"the model was trained on {want}, not {args.dataset}", "--dataset")
        data = _recorded_data(net, args.dataset)
        x, y = data.x_val.astype(np.int64), data.y_val.astype(np.int64)
        index = _image_index(data)
        if x.shape[1] != net.layers[0].inputs:
            raise UsageError(f"the {args.dataset} images give {x.shape[1]} inputs, the model "
                             f"takes {net.layers[0].inputs}", "--dataset")
    energy = _energy_suffix(args, net, x, comp_rows)
    if note:
        print(note)
    if cfg is None:
        acc = accuracy(infer_folded(net, x), y)
        print(f"accuracy: {100 * acc:.2f} % ({int(round(acc * len(y)))}/{len(y)} images, "
              f"ideal hardware){energy}")
        return 0
    from . import experiments as E

    seeds = list(range(chip_seed, chip_seed + chips))
    tasks = [dict(config=cfg, seeds=block, backend=backend, calibrate=args.calibrate,
                  trim=args.trim) for block in E.chip_blocks(seeds, args.chunk or DEFAULT_CHUNK)]
    with running(runner):
        print(f"seed: {chip_seed}", flush=True)
        correct = runner.map(E.block_correct, tasks,
                             shared=dict(net=net, x=x, y=np.asarray(y), images=index,
                                         comp_rows=comp_rows),
                             weights=[len(t["seeds"]) for t in tasks], desc="chips")
    correct = np.concatenate(correct)
    accs = correct / len(y)
    if args.csv is not None:
        rows = "".join(f"{s},{int(k)},{len(y)},{k / len(y):.6f}\n" for s, k in zip(seeds, correct))
        # Its folder passed check_output_file as one that can be created.
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        cmdline.atomic_write(args.csv, "chip_seed,correct,images,accuracy\n" + rows)
    what = f"{backend} model, {cfg.technology}" + (", calibrated" if args.calibrate else "")
    if args.trim:
        what += ", trimmed" + (f" (mean of {args.trim} reads)" if args.trim > 1 else "")
    if len(seeds) == 1:
        print(f"accuracy: {100 * accs[0]:.2f} % ({int(round(accs[0] * len(y)))}/{len(y)} images, "
              f"chip {seeds[0]}, {what}){energy}")
    else:
        for s, a in zip(seeds, accs):
            print(f"chip {s}: {100 * a:.2f} %")
        print(f"accuracy: {100 * accs.mean():.2f} % mean, {100 * accs.std():.2f} % std, "
              f"{100 * accs.min():.2f} % min over {len(seeds)} chips ({len(y)} images, "
              f"{what}){energy}")
    if args.csv is not None:
        print(f"wrote {args.csv} (ran on {runner.where})")
    return 0


# --- sweep ------------------------------------------------------------------------------

#: Options of sweep that only some experiments use (dest names; their default is None).
USED_BY = {
    "model": ("offset", "energy"), "offset_sigmas": ("offset",), "rows": ("offset",),
    "cols": ("offset",), "epochs": ("offset",), "comp_rows": ("offset", "noise"),
    "rram_sigmas": ("rram",), "mlp_epochs": ("rram",), "dva": ("rram",),
    "weight_bits": ("rram",), "cell_bits": ("rram",), "on_off_ratio": ("rram",),
    "models": ("noise",), "read_noises": ("noise",), "sram_offset_sigma": ("noise", "energy"),
    "sram_cell_sigma": ("noise", "energy"), "preset": ("energy",), "comp_rows_list": ("energy",),
    "read_noise": ("energy",), "calibrate": ("energy",), "trim": ("energy", "noise"),
    "backend": ("energy",),
}


def cmd_sweep(args) -> int:
    from . import experiments as E

    experiments = ("offset", "rram") if args.experiment == "all" else (args.experiment,)
    _check_sweep_options(args, experiments)
    if args.experiment == "energy":
        return _sweep_energy(args)
    files = ["sweep.csv"] + [f"{exp}.png" for exp in experiments]
    outdir = cmdline.check_output_folder(args.out, OUT, files=files)
    from .cluster import runner_from_args, running
    runner = runner_from_args(args)
    comp_rows = args.comp_rows or 8
    setup = _rram_setup(args) if "rram" in experiments else None
    net = load_model(args.model) if args.model is not None else None
    noise_nets = {label: load_model(path, "--models") for label, path in args.models or ()}
    for option, model in [("--model", net)] + [("--models", n) for n in noise_nets.values()]:
        if model is None:
            continue
        trained_on = _dataset_of(model, option)
        if trained_on != args.dataset:
            raise UsageError(f"the model was trained on {trained_on}; not allowed with "
                             f"--dataset {args.dataset}", option)
        _check_macro(model.rows, model.cols, comp_rows)
    if net is None and "offset" in experiments:
        _check_macro(args.rows or 32, args.cols or 96, comp_rows)
    # Every model runs on the validation images preprocessed as it records (deskew,
    # contrast); models preprocessed alike share one load.
    loaded = {}

    def data_for(model=None) -> Dataset:
        pre = {} if model is None else (model.meta.get("preprocessing") or {})
        key = json.dumps({k: pre.get(k) for k in ("deskew", "contrast", "normalisation",
                                                  "train", "val", "split")}, sort_keys=True)
        if key not in loaded:
            loaded[key] = (_load_data(args.dataset, seed=0) if model is None
                           else _recorded_data(model, args.dataset,
                                               "--model" if model is net else "--models"))
        return loaded[key]

    # Loaded before anything is printed: a missing data file is one line on its own.
    data = data_for(net) if "offset" in experiments else None
    plain = data_for() if "rram" in experiments else None
    for n in noise_nets.values():
        data_for(n)
    chunk = args.chunk or DEFAULT_CHUNK
    rows, notes = [], {}
    start = time.perf_counter()
    with running(runner):
        print(f"seed: {args.seed}", flush=True)
        if "offset" in experiments:
            if net is None:
                model, _ = E.train_bnn(data, seed=args.seed, epochs=args.epochs)
                net = export_model(model, args.rows or 32, args.cols or 96)
            rows += E.offset_experiment(net, data.x_val, data.y_val,
                                        sigmas=args.offset_sigmas or E.DEFAULT_OFFSET_SIGMAS,
                                        chips=args.chips, comp_rows=comp_rows, runner=runner,
                                        chunk=chunk)
        if "noise" in experiments:
            base = ChipConfig(offset_sigma=4.0 if args.sram_offset_sigma is None
                              else args.sram_offset_sigma,
                              cell_sigma=0.1 if args.sram_cell_sigma is None
                              else args.sram_cell_sigma)
            own = {label: ((n.meta.get("training") or {}).get("chip_in_loop") or {}).get("seed")
                   for label, n in noise_nets.items()}
            groups = {}
            for label, n in noise_nets.items():
                groups.setdefault(id(data_for(n)), (data_for(n), {}))[1][label] = n
            for group_data, nets in groups.values():
                rows += E.read_noise_experiment(
                    nets, group_data.x_val, group_data.y_val,
                    noises=args.read_noises or E.DEFAULT_READ_NOISES, chips=args.chips,
                    base=base, comp_rows=comp_rows, trim=args.trim or 1,
                    own_chips={k: own[k] for k in nets if own[k] is not None},
                    images=_image_index(group_data), runner=runner, chunk=chunk)
        if "rram" in experiments:
            rr, info = E.rram_experiment(plain, sigmas=args.rram_sigmas or E.DEFAULT_RRAM_SIGMAS,
                                         chips=args.chips, setup=setup,
                                         dva_sigma=0.3 if args.dva is None else args.dva,
                                         epochs=args.mlp_epochs or 30, seed=args.seed,
                                         runner=runner, chunk=chunk)
            rows += rr
            notes["rram"] = info
    seconds = time.perf_counter() - start
    # Everything is computed before anything is written.
    outputs = {"sweep.csv": E.csv_bytes(rows)}
    for exp in experiments:
        title = None
        if exp == "noise" and (args.trim or 1) > 1:
            title = (f"SRAM read noise, calibrated chips trimmed by the mean of {args.trim} "
                     "reads: training methods")
        outputs[f"{exp}.png"] = E.png_bytes(rows, exp, title)
    written = cmdline.write_files(outdir, outputs)
    _print_sweep(rows, notes)
    print(f"{len(rows)} rows in {seconds:.1f} s on {runner.where}; wrote "
          + " ".join(str(p) for p in written))
    return 0


def _check_sweep_options(args, experiments) -> None:
    """The sweep's option combinations (UsageError on the first one not allowed)."""
    if args.experiment == "energy" and args.comp_rows is not None:
        raise UsageError("the energy experiment sweeps compensation rows; give them as "
                         "--comp-rows-list LIST", "--comp-rows")
    for dest, users in USED_BY.items():
        if not set(users) & set(experiments):
            _refuse(_given(args, dest), f"used by the {' and '.join(users)} experiment"
                                        f"{'s' if len(users) > 1 else ''} only; not allowed "
                                        f"with --experiment {args.experiment}")
    if args.experiment == "energy":
        return
    if "noise" in experiments and args.models is None:
        raise UsageError("the noise experiment compares trained models; give --models "
                         "LABEL=MODEL,...", "--models")
    if args.model is not None:
        _refuse(_given(args, "epochs", "rows", "cols"),
                "trains and maps the recipe's model; not allowed with --model (already "
                "trained and mapped)")


def _rram_setup(args):
    """The ReRAM experiment's encoding from the options, checked (a UsageError naming
    the option at fault)."""
    from . import experiments as E
    setup = E.RramSetup(weight_bits=args.weight_bits or 8, cell_bits=args.cell_bits or 2,
                        on_off_ratio=args.on_off_ratio if args.on_off_ratio is not None else 10.0)
    try:
        setup.config(0.0)
    except ValueError as exc:
        msg = one_line(exc)
        raise UsageError(msg, "--" + msg.split()[0].replace("_", "-")) from None
    return setup


def _print_sweep(rows, notes) -> None:
    """The sweep's summary table, and the ReRAM experiment's float accuracies."""
    from . import experiments as E
    print(f"{'experiment':10} {'method':16} {'sigma':>6} {'chips':>5} {'mean %':>7} {'std %':>6} {'min %':>6}")
    for s in E.summarize(rows):
        print(f"{s['experiment']:10} {s['method']:16} {s['sigma']:6.3g} {s['n']:5d} "
              f"{100 * s['mean']:7.2f} {100 * s['std']:6.2f} {100 * s['min']:6.2f}")
    if "rram" in notes:
        info = notes["rram"]
        print("rram: float accuracy " + ", ".join(f"{k} {100 * v:.2f} %" for k, v in
                                                   info["float_accuracy"].items())
              + "; fractional lengths " + ", ".join(f"{k} {v}" for k, v in info["fracs"].items()))


def _sweep_energy(args) -> int:
    """``sweep --experiment energy``: accuracy on chips and energy per image for every K
    of --comp-rows-list; each row is what ``models eval`` prints with the same options
    (``--chips N --comp-rows K --energy P`` and the chip options)."""
    from . import experiments as E
    from .cluster import runner_from_args, running

    if args.model is None:
        raise UsageError("the energy experiment evaluates a trained model; give --model MODEL",
                         "--model")
    if args.preset is None:
        raise UsageError("the energy experiment prices the network's events with a preset; "
                         "give --preset jssc17, jetcas19, valavi18 or a preset file", "--preset")
    chip = argparse.Namespace(**vars(args), rram_sigma=None)
    cfg, backend = _chip_config(chip)
    if cfg is None:
        raise UsageError("the energy experiment compares chips; give a spread "
                         "(--sram-offset-sigma, --sram-cell-sigma, --read-noise) or --calibrate",
                         "--experiment")
    outdir = cmdline.check_output_folder(args.out, OUT, files=["sweep.csv", "energy.png"])
    runner = runner_from_args(args)
    preset = _load_preset(args.preset)
    net = load_model(args.model)
    trained_on = _dataset_of(net, "--model")
    if trained_on != args.dataset:
        raise UsageError(f"the model was trained on {trained_on}; not allowed with --dataset "
                         f"{args.dataset}", "--model")
    comp_rows = args.comp_rows_list or E.DEFAULT_COMP_ROWS
    for k in comp_rows:
        _check_macro(net.rows, net.cols, k)
    data = _recorded_data(net, args.dataset)
    start = time.perf_counter()
    with running(runner):
        print(f"seed: 0 (chips 0..{args.chips - 1})", flush=True)
        rows = E.energy_experiment(net, data.x_val, data.y_val, preset=preset, config=cfg,
                                   comp_rows=comp_rows, chips=args.chips, backend=backend,
                                   calibrate=args.calibrate, trim=args.trim,
                                   images=_image_index(data), runner=runner,
                                   chunk=args.chunk or DEFAULT_CHUNK)
    seconds = time.perf_counter() - start
    written = cmdline.write_files(outdir, {"sweep.csv": E.energy_csv_bytes(rows),
                                           "energy.png": E.energy_png_bytes(rows)})
    print(f"{'K':>3} {'planes':>6} {'chips':>5} {'mean %':>7} {'worst %':>7} "
          f"{'nJ/image':>9} {'us/image':>9}")
    for s in E.energy_summary(rows):
        print(f"{s['comp_rows']:3d} {s['planes']:6d} {s['n']:5d} {100 * s['mean']:7.2f} "
              f"{100 * s['min']:7.2f} {s['energy_pj_per_image'] / 1e3:9.4g} "
              f"{s['latency_ns_per_image'] / 1e3:9.4g}")
    print(f"ideal hardware {100 * rows[0]['accuracy']:.2f} %; preset {preset.name}, "
          f"{len(data.y_val)} images; {len(rows)} rows in {seconds:.1f} s on {runner.where}; "
          f"wrote " + " ".join(str(p) for p in written))
    return 0


# --- energy -------------------------------------------------------------------------------

def _load_preset(text, option="--preset"):
    from .energy import PresetError, load_preset
    try:
        return load_preset(text)
    except PresetError as exc:
        raise UsageError(one_line(exc), option) from None
    except RecursionError:            # json's parser on a file nested thousands deep
        raise UsageError(f"{text}: not JSON (nested too deeply)", option) from None


def _network_report(net, x, preset, comp_rows, *, clock=None):
    """Energy report per image of ``net`` on ``x`` run by the network runner on the
    macro of ``macro_params_for(net, comp_rows)`` (or the FPGA build's ``clock`` = (MHz,
    params, source))."""
    from .chip_readout import macro_params_for
    from .energy import ArrayShape, evaluate, macs_per_image, network_events

    p = macro_params_for(net, comp_rows)
    clock_mhz = source = None
    if clock is not None:
        clock_mhz, p, source = clock
    events = network_events(p, net, x)
    return p, evaluate(preset, events, ArrayShape.of(p), ops=2.0 * macs_per_image(net),
                       decisions=len(x), clock_mhz=clock_mhz, clock_source=source)


def _energy_suffix(args, net, x, comp_rows) -> str:
    """``eval --energy P``: energy and latency per image, appended to the accuracy line."""
    if getattr(args, "energy", None) is None:
        return ""
    preset = _load_preset(args.energy, "--energy")
    _, r = _network_report(net, x, preset, comp_rows)
    return (f"; {r.energy_pj_per_decision / 1e3:.4g} nJ and {r.latency_ns / 1e3:.4g} us per "
            f"image (preset {preset.name}, {r.clock_mhz:g} MHz)")


def _energy_images(args, net):
    """The images ``energy --model`` runs: --images (with --range) or a validation split."""
    if args.images is not None:
        if args.labels is not None:
            images, _ = load_images_labels(args.images, args.labels, classes=net.classes,
                                           selection=args.range, image_ndims=(2, 3))
        else:
            images = load_images(args.images, selection=args.range, image_ndims=(2, 3))
        x = model_inputs(net, images, args.images)
    else:
        name = args.dataset or _dataset_of(net, "--model")
        x = _recorded_data(net, name).x_val.astype(np.int64)
        if x.shape[1] != net.layers[0].inputs:
            raise UsageError(f"the {name} images give {x.shape[1]} inputs, the model takes "
                             f"{net.layers[0].inputs}", "--dataset")
    if args.count is not None:
        if args.count > len(x):
            raise UsageError(f"{args.count} images asked for, the images given are "
                             f"{len(x)} (at most {len(x)})", "--count")
        x = x[:args.count]
    return x


def _fpga_clock(path):
    """(MHz, MacroParams, source) of an FPGA build's report.json, checked against its schema."""
    from .energy import fpga_clock
    from .schema import SchemaError, check, load_json
    try:
        doc = load_json(cmdline.check_input_file(path, "--fpga-report", what="report"))
        kind = doc.get("format") if isinstance(doc, dict) else None
        if kind != "cim-fpga-report":
            raise SchemaError(f"{path}: format must be 'cim-fpga-report' (an FPGA build's "
                              f"report.json), not {kind!r}")
        check(doc, "fpga-report", path)
        return fpga_clock(path)
    except (SchemaError, ValueError) as exc:
        raise UsageError(one_line(exc), "--fpga-report") from None


def cmd_energy(args) -> int:
    from . import energy as E
    from .params import MacroParams

    if args.model is not None and args.rows is not None:
        raise UsageError("a macro of its own or --model's macro; not allowed with --model",
                         "--rows")
    if (args.rows is None) != (args.cols is None):
        raise UsageError("give both or neither", "--rows/--cols")
    if args.model is None:
        _refuse(_given(args, "images", "labels", "range", "dataset", "count"),
                "selects the images of --model; not allowed without it")
    else:
        _refuse(_given(args, "cols_per_cycle", "pipeline", "readout_bits", "acc_bits", "planes",
                       "input_density") + (["--input-bits"] if args.input_bits != 5 else []),
                "describes a macro of its own; not allowed with --model (the model's macro)")
        if args.images is not None and args.dataset is not None:
            raise UsageError("not allowed with --images", "--dataset")
        if args.range is not None and args.images is None:
            raise UsageError("selects images of --images; not allowed without it", "--range")
        if args.labels is not None and args.images is None:
            raise UsageError("goes with --images", "--labels")
    preset = _load_preset(args.preset)
    clock = _fpga_clock(args.fpga_report) if args.fpga_report is not None else None
    comparison = []
    if args.model is not None:
        net = load_model(args.model)
        x = _energy_images(args, net)
        if clock is not None:
            from .export import check_fits
            try:
                check_fits(net, clock[1])
            except ValueError as exc:
                raise UsageError(one_line(exc), "--fpga-report") from None
        p, report = _network_report(net, x, preset, args.comp_rows, clock=clock)
        what = "image"
        header = (f"network {Path(args.model).name}: {'-'.join(str(l.inputs) for l in net.layers)}"
                  f"-{net.classes}, {len(x)} images through the runner on a {p.rows}x{p.cols} macro "
                  f"(B={p.input_bits}, K={p.comp_rows}, P={p.cols_per_cycle}, L={p.pipeline}); "
                  f"events per image (bus traffic included)")
    else:
        if args.rows is not None or clock is not None:
            if clock is not None and args.rows is None:
                p = clock[1]
            else:
                try:
                    p = MacroParams(rows=args.rows, cols=args.cols, input_bits=args.input_bits,
                                    comp_rows=args.comp_rows, cols_per_cycle=args.cols_per_cycle,
                                    pipeline=args.pipeline or 0, readout_bits=args.readout_bits,
                                    acc_bits=args.acc_bits)
                except (TypeError, ValueError) as exc:
                    msg = one_line(exc)
                    raise UsageError(msg, "--" + msg.split()[0].replace("_", "-")) from None
            shape = E.ArrayShape.of(p)
            planes = shape.input_bits if args.planes is None else args.planes
            if planes > shape.input_bits:
                raise UsageError(f"must be in 1..{shape.input_bits} (input bits), not {planes}",
                                 "--planes")
            density = 0.5 if args.input_density is None else args.input_density
            config = dict(rows=shape.rows, cols=shape.cols, input_bits=shape.input_bits,
                          planes=planes, comp_rows=shape.comp_rows,
                          cols_per_cycle=shape.cols_per_cycle, pipeline=shape.pipeline,
                          input_density=density)
            header = (f"macro {shape.rows}x{shape.cols} (B={shape.input_bits}, "
                      f"K={shape.comp_rows}, P={shape.cols_per_cycle}, L={shape.pipeline}): one "
                      f"RUN of {planes} planes, input bits 1 with probability "
                      f"{density:g}, compute events only")
        else:
            _refuse(_given(args, "cols_per_cycle", "pipeline", "readout_bits", "acc_bits",
                           "planes", "input_density"),
                    "describes a macro of its own; give --rows and --cols (without them: the "
                    "preset's paper configuration)")
            config = preset.configuration
            header = (f"paper configuration {config['rows']}x{config['cols']} (B="
                      f"{config['input_bits']}, {config['planes']} planes, K={config['comp_rows']}, "
                      f"P={config['cols_per_cycle']}, L={config['pipeline']}): {config['note']}")
            comparison = E.paper_comparison(preset)
        shape = preset.shape(config)
        events = E.run_decision_events(shape, config["planes"], config["input_density"])
        report = E.evaluate(preset, events, shape, ops=2.0 * shape.rows * shape.cols,
                            clock_mhz=None if clock is None else clock[0],
                            clock_source=None if clock is None else clock[2])
        what = "decision"
    print(f"preset {preset.name}: {preset.title}")
    print(header)
    for line in E.format_report(report, what):
        print(line)
    if comparison:
        print("published figures (model / paper):")
        for c in comparison:
            model = "n/a" if c["model"] is None else f"{c['model']:.4g}"
            ratio = "" if c["ratio"] is None else f" = {c['ratio']:.3g}x"
            print(f"  {c['kind']:9} {c['figure']}: {model} / {c['published']:g} {c['unit']}{ratio} "
                  f"(allowed factor {c['factor']:g})")
    print("coverage: " + "; ".join(f"{k} {v}" for k, v in preset.coverage.items()))
    if args.json:
        out = report.to_json()
        out["energy_pj_per_" + what] = report.energy_pj_per_decision
        if comparison:
            out["published"] = comparison
        print(json.dumps(out, sort_keys=True))
    return 0


# --- parser -----------------------------------------------------------------------------

def build_parser() -> cmdline.CommandParser:
    parser = cmdline.CommandParser(
        name=PROG, prog="python -m models",
        description="Train, evaluate and sweep BNNs for the CiM macro on sampled chips "
                    "(docs/EXPERIMENTS.md).",
        epilog="Bad input exits with status 2 and one line on stderr; nothing is written.")
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{train,eval,sweep,energy}")

    _add_train(sub)
    _add_eval(sub)
    _add_sweep(sub)
    _add_energy(sub)
    return parser


def _add_train(sub) -> None:
    """``models train``'s options."""
    t = sub.add_parser("train", help="train a BNN and write OUT/NAME.json and OUT/NAME.npz",
                       renamed={"--output": "-o/--out DIR (a folder) and --name NAME"},
                       description="Train a BNN recipe (default: the data set's), optionally "
                                   "go on through sampled chips (--noise-aware, "
                                   "--chip-in-loop), fold batch norm and write OUT/NAME.json "
                                   "+ OUT/NAME.npz (docs/MODEL_FORMAT.md, docs/EXPERIMENTS.md).")
    t.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="digits (embedded 8x8) or mnist (10x10, 5-bit; default files in "
                        f"{DEFAULT_MNIST_DIR})")
    t.add_argument("--images", metavar="IDX", help="MNIST-format image file (with --labels; "
                                                   "--dataset mnist)")
    t.add_argument("--labels", metavar="IDX", help="MNIST-format label file, labels 0..9")
    t.add_argument("--n-train", type=integer("n-train", 1), default=None, metavar="N",
                   help="mnist: the first N images train, the rest validate (default 6000)")
    t.add_argument("--n-val", type=integer("n-val", 1), default=None, metavar="N",
                   help="mnist: only the N images after the training ones validate (default: "
                        "all of them; --n-train 4800 --n-val 1200 tunes on a split of images "
                        "0-5999)")
    t.add_argument("--recipe", choices=tuple(RECIPES), default=None,
                   help="training recipe: "
                        + "; ".join(f"{k}: {v['about']}" for k, v in RECIPES.items())
                        + " (default: "
                        + ", ".join(f"{v} for {k}" for k, v in DEFAULT_RECIPES.items()) + ")")
    t.add_argument("--config", type=_assignment("config"), action="append",
                   metavar="FIELD=VALUE",
                   help="replace a field of the recipe's training configuration "
                        "(models.bnn.TrainConfig; VALUE in JSON, or a plain string), e.g. "
                        "--config loss=xent --config 'augment={\"rotate\": 10}'; repeatable")
    t.add_argument("--inputs", type=_assignment("inputs"), action="append",
                   metavar="FIELD=VALUE",
                   help="mnist: replace a preprocessing field of the recipe: "
                        + "; ".join(f"{k}={v}" for k, v in INPUT_FIELDS.items())
                        + "; repeatable")
    t.add_argument("--epochs", type=integer("epochs", 1, 10000), default=None, metavar="E",
                   help="epochs (default: the recipe's)")
    t.add_argument("--dva", type=number("dva", 0, MAX_DVA_SIGMA), default=0.0, metavar="SIGMA",
                   help="DVA: multiply the weights by N(1, SIGMA) noise every batch")
    t.add_argument("--seed", type=integer("seed", 0, 2**32 - 1), default=0, metavar="S",
                   help="training seed")
    t.add_argument("--rows", type=integer("rows", 1, 1024), default=32, metavar="R",
                   help="macro rows R the model is mapped onto (1..32 or a multiple of 32)")
    t.add_argument("--cols", type=integer("cols", 1, 1024), default=96, metavar="C",
                   help="macro columns C")
    t.add_argument("--chip-in-loop", type=integer("chip-in-loop", 0, 2**32 - 1), default=None,
                   metavar="SEED", help="after training, fine-tune with chip instance SEED in "
                                        "the loop (give its spreads with the chip options)")
    t.add_argument("--chip-epochs", type=integer("chip-epochs", 1, 10000), default=None,
                   metavar="E", help="epochs of chip-in-the-loop fine-tuning (default 10)")
    t.add_argument("--noise-aware", action="store_true",
                   help="after training, go on training through chip instances sampled afresh "
                        "at every step (give their spreads with the chip options)")
    t.add_argument("--noise-epochs", type=integer("noise-epochs", 1, 10000), default=None,
                   metavar="E", help="epochs of noise-aware training (default 40)")
    t.add_argument("--chips-per-step", type=integer("chips-per-step", 1, 1024), default=None,
                   metavar="N", help="noise-aware: fresh chip instances per training step "
                                     "(default 4)")
    t.add_argument("-o", "--out", default="build/models", metavar="DIR",
                   help="output folder, created if missing: writes DIR/NAME.json and DIR/NAME.npz")
    t.add_argument("--name", type=cmdline.file_name("name"), default=None, metavar="NAME",
                   help="file name of the model (default: the data set, digits or mnist)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_chip_options(t)
    t.set_defaults(func=cmd_train)


def _add_eval(sub) -> None:
    """``models eval``'s options."""
    e = sub.add_parser("eval", help="accuracy of a model, ideal or on chips",
                       description="Accuracy of an exported model on IDX images (preprocessed as "
                                   "recorded in the model) on ideal hardware or sampled chips.")
    e.add_argument("--model", required=True, metavar="MODEL",
                   help="exported model: NAME, NAME.json or NAME.npz")
    e.add_argument("--images", metavar="IDX", help="image file (IDX) at the size the model "
                                                   "records: 28x28 MNIST or 8x8 digits")
    e.add_argument("--labels", metavar="IDX", help="label file (IDX), classes of the model")
    e.add_argument("--range", type=cmdline.index_range(), metavar="START:STOP",
                   help="use images START..STOP-1 only (e.g. 6000:8000)")
    e.add_argument("--dataset", choices=DATASETS, default=None,
                   help="instead of --images/--labels: the validation split the model records")
    e.add_argument("--chips", type=integer("chips", 1, cmdline.MAX_CHIPS), default=None, metavar="N",
                   help="evaluate N chip instances, seeds S..S+N-1 (default 1)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.add_argument("--energy", metavar="PRESET", default=None,
                   help="also print energy and latency per image with this preset (a name: "
                        "jssc17, jetcas19, valavi18, or a preset file; docs/ENERGY.md)")
    e.add_argument("--csv", default=None, metavar="FILE",
                   help="also write the accuracy of every chip to FILE (chip_seed, correct, "
                        "images, accuracy; written whole or not at all; its folder created "
                        "if missing)")
    _add_chip_options(e, seed_help="chip instance seed S (default 0)")
    _add_cluster_options(e)
    e.set_defaults(func=cmd_eval)


def _add_sweep(sub) -> None:
    """``models sweep``'s options, grouped by experiment."""
    s = sub.add_parser("sweep", help="accuracy versus variation: CSV and PNG",
                       renamed={"--output": "-o/--out"},
                       description="Accuracy versus variation over N chip instances; writes "
                                   "OUT/sweep.csv and OUT/<experiment>.png.")
    s.add_argument("--experiment", choices=EXPERIMENTS, default="all",
                   help="offset: SRAM offsets, calibration on/off; rram: ReRAM variation, "
                        "fixed point/DVA/DFP/DFP+DVA; noise: read noise on calibrated, trimmed "
                        "analog chips for the --models side by side; energy: accuracy on "
                        "chips and energy per image for every K of --comp-rows-list; all: "
                        "offset and rram")
    s.add_argument("--dataset", choices=DATASETS, default="digits", help="digits or mnist")
    s.add_argument("--chips", type=integer("chips", 1, cmdline.MAX_CHIPS), default=20, metavar="N",
                   help="chip instances per point")
    s.add_argument("--seed", type=integer("seed", 0, 2**32 - 1), default=0, metavar="S",
                   help="training seed")
    s.add_argument("-o", "--out", default="build/sweep", metavar="DIR",
                   help="output folder, created if missing: DIR/sweep.csv, DIR/<experiment>.png")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_cluster_options(s)
    o = s.add_argument_group("offset experiment")
    o.add_argument("--model", metavar="MODEL", help="use this trained model (default: train "
                                                    "the recipe)")
    o.add_argument("--offset-sigmas", type=number_list("offset-sigmas", 0, MAX_OFFSET_SIGMA),
                   default=None, metavar="LIST",
                   help="offset spreads, cell units (default 0,1,2,3,4,6,8)")
    o.add_argument("--comp-rows", type=_comp_rows, default=None, metavar="K",
                   help="compensation rows per column, a power of two in [2, 32] (default 8; "
                        "also of the noise experiment's chips)")
    o.add_argument("--rows", type=integer("rows", 1, 1024), default=None, metavar="R",
                   help="macro rows when no --model (default 32)")
    o.add_argument("--cols", type=integer("cols", 1, 1024), default=None, metavar="C",
                   help="macro columns when no --model (default 96)")
    o.add_argument("--epochs", type=integer("epochs", 1, 10000), default=None, metavar="E",
                   help="BNN training epochs when no --model (default: the recipe's)")
    r = s.add_argument_group("rram experiment")
    r.add_argument("--rram-sigmas", type=number_list("rram-sigmas", 0, MAX_LOG_SIGMA),
                   default=None, metavar="LIST",
                   help="ReRAM spreads, std of ln G (default 0,0.05,0.1,0.15,0.2,0.3)")
    r.add_argument("--mlp-epochs", type=integer("mlp-epochs", 1, 10000), default=None,
                   metavar="E", help="float MLP epochs (default 30)")
    r.add_argument("--dva", type=number("dva", 0, MAX_DVA_SIGMA), default=None, metavar="SIGMA",
                   help="DVA noise of the dva methods (default 0.3)")
    r.add_argument("--weight-bits", type=integer("weight-bits", 2, 16), default=None,
                   metavar="B", help="weight width, 2..16 (default 8)")
    r.add_argument("--cell-bits", type=integer("cell-bits", 1, 2), default=None, metavar="b",
                   help="bits per ReRAM cell, 1 or 2 (default 2)")
    r.add_argument("--on-off-ratio", "--rram-on-off", dest="on_off_ratio",
                   type=number("on-off-ratio", 1.0, lo_open=True, allow_inf=True), default=None,
                   metavar="R", help="ReRAM on/off ratio G_LRS/G_HRS, > 1 (default 10; "
                                     "--rram-on-off is an older spelling)")
    q = s.add_argument_group("noise experiment (its chips are calibrated and trimmed; --trim T "
                             "as below: the trim's reads, default 1)")
    q.add_argument("--models", type=_labelled_models, metavar="LABEL=MODEL,...",
                   help="the trained models to compare, e.g. "
                        "ideal=build/models/mnist,noise-aware=build/models/mnist-na")
    q.add_argument("--read-noises", type=number_list("read-noises", 0, MAX_OFFSET_SIGMA),
                   default=None, metavar="LIST",
                   help="read noise values, cell units (default 0,0.25,0.5,0.75,1)")
    q.add_argument("--sram-offset-sigma", type=number("sram-offset-sigma", 0, MAX_OFFSET_SIGMA),
                   default=None, metavar="X",
                   help="comparator offset spread of the chips, cell units (default 4)")
    q.add_argument("--sram-cell-sigma", type=number("sram-cell-sigma", 0, MAX_LOG_SIGMA),
                   default=None, metavar="X",
                   help="bitcell current spread of the chips, std of ln I (default 0.1)")
    w = s.add_argument_group("energy experiment (--model, --sram-offset-sigma, "
                             "--sram-cell-sigma as above, default 0)")
    w.add_argument("--preset", metavar="P", default=None,
                   help="technology preset pricing the events: jssc17, jetcas19, valavi18, or "
                        "a preset file (docs/ENERGY.md)")
    w.add_argument("--comp-rows-list", type=cmdline.value_list(
                       "comp-rows-list", _comp_rows,
                       allowed="comma-separated powers of two in [2, 32]"),
                   default=None, metavar="LIST",
                   help="compensation rows K to sweep (default 2,4,8,16,32)")
    _add_sram_run_options(w)
    s.set_defaults(func=cmd_sweep)


def _add_energy(sub) -> None:
    """``models energy``'s options."""
    n = sub.add_parser("energy",
                       help="events, energy, TOPS/W, area and latency with a technology preset",
                       description="Events, energy per decision (or image), TOPS/W, area and "
                                   "latency of a macro or of a network on it, priced with a "
                                   "technology preset (docs/ENERGY.md). Without --model and "
                                   "--rows: the preset's paper configuration and its published "
                                   "figures.")
    n.add_argument("--preset", required=True, metavar="P",
                   help="jssc17, jetcas19, valavi18, or the path of a preset file")
    n.add_argument("--model", metavar="MODEL", help="a network (NAME, NAME.json or NAME.npz): "
                                                    "energy per image")
    n.add_argument("--images", metavar="IDX", help="with --model: images (IDX; default: the "
                                                   "model's validation split)")
    n.add_argument("--labels", metavar="IDX", help="with --images: label file (checked, not used)")
    n.add_argument("--range", type=cmdline.index_range(), metavar="START:STOP",
                   help="with --images: images START..STOP-1")
    n.add_argument("--dataset", choices=DATASETS, default=None,
                   help="with --model: that data set's validation split")
    n.add_argument("--count", type=integer("count", 1), default=None, metavar="N",
                   help="with --model: the first N images only")
    g = n.add_argument_group("a macro of its own (python -m gen's options)")
    g.add_argument("--rows", type=integer("rows", 1, 1024), default=None, metavar="R",
                   help="rows R (with --cols)")
    g.add_argument("--cols", type=integer("cols", 1, 1024), default=None, metavar="C",
                   help="columns C (with --rows)")
    g.add_argument("--input-bits", type=integer("input-bits", 1, 8), default=5, metavar="B",
                   help="bit-planes of an input")
    g.add_argument("--comp-rows", type=_comp_rows, default=8, metavar="K",
                   help="compensation rows, a power of two in [2, 32] (also of --model's macro)")
    g.add_argument("--cols-per-cycle", type=integer("cols-per-cycle", 1, 1024), default=None,
                   metavar="P", help="columns computed in parallel, a divisor of C (default C)")
    g.add_argument("--pipeline", type=integer("pipeline", 0, 4), default=None, metavar="L",
                   help="readout pipeline stages (default 0)")
    g.add_argument("--readout-bits", type=integer("readout-bits", 1, 16), default=None,
                   metavar="W", help="readout width (default the smallest)")
    g.add_argument("--acc-bits", type=integer("acc-bits", 1, 32), default=None, metavar="A",
                   help="accumulator width (default W+B+4)")
    g.add_argument("--planes", type=integer("planes", 1, 8), default=None, metavar="p",
                   help="planes of the RUN (default B)")
    g.add_argument("--input-density", type=number("input-density", 0, 1), default=None,
                   metavar="D", help="probability of an input bit being 1, for word-line "
                                     "events (default 0.5)")
    n.add_argument("--fpga-report", metavar="REPORT", default=None,
                   help="an FPGA build's report.json (python -m fpga build): its macro and "
                        "its achieved Fmax as the clock")
    n.add_argument("--json", action="store_true",
                   help="also print the results as one JSON object on the last line")
    n.set_defaults(func=cmd_energy)


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if args.command in ("train", "sweep") or getattr(args, "csv", None) is not None:
            raise KeyboardInterrupt("nothing written") from None
        raise


def main(argv=None) -> int:
    """Run ``python -m models`` with ``argv`` (default ``sys.argv[1:]``); returns the exit
    status: 0 done, 2 bad input (one line on stderr), 130 interrupted."""
    return cmdline.run(PROG, _main, argv)
