"""The command line ``python -m models``: train, evaluate and sweep BNNs on sampled chips.

* ``train``: train the default recipe on digits or MNIST (optionally with DVA noise and a
  chip in the loop), fold batch norm and write the exported model ``OUT/NAME.json`` +
  ``OUT/NAME.npz`` (docs/MODEL_FORMAT.md).
* ``eval``: accuracy of an exported model on IDX images, on ideal hardware or on sampled
  chip instances (SRAM offsets and cell variation, ReRAM conductance variation), with or
  without calibration.
* ``sweep``: accuracy versus variation over N chip instances (docs/EXPERIMENTS.md),
  writing ``OUT/sweep.csv`` and one PNG per experiment.
* ``energy``: events, energy, TOPS/W, area and latency of a macro or of a network on it,
  priced with a technology preset (docs/ENERGY.md).

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
import json
import math
import time
from pathlib import Path

import numpy as np

from . import cmdline
from .bnn import TrainConfig, accuracy, recipe
from .chip import ChipConfig
from .cmdline import UsageError, integer, number, number_list, one_line
from .datasets import DEFAULT_MNIST_DIR, Dataset, load_dataset, quantize, downsample
from .export import export_model, infer_folded, macro_hook, save_folded
from .inputs import (load_images, load_images_labels, load_model, model_inputs,
                     training_overlap)

__all__ = ["main", "build_parser", "UsageError"]

PROG = "models"
DATASETS = ("digits", "mnist")
EXPERIMENTS = ("offset", "rram", "all")
#: Output option of every command (docs/CLI.md).
OUT = "-o/--out"

# Upper bounds of the spreads: far beyond any published device, low enough that the
# sampled values stay finite.
MAX_OFFSET_SIGMA = 1000.0   # cell units
MAX_LOG_SIGMA = 5.0         # std of ln I or ln G
MAX_DVA_SIGMA = 10.0


def _comp_rows(text: str) -> int:
    k = integer("comp-rows", 2, 32, allowed="a power of two in [2, 32]")(text)
    if k & (k - 1):
        raise argparse.ArgumentTypeError(f"comp-rows must be a power of two in [2, 32], not {k}")
    return k


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
    g.add_argument("--read-noise", type=number("read-noise", 0, MAX_OFFSET_SIGMA), metavar="X",
                   help="SRAM noise per read, cell units (needs --backend analog)")
    g.add_argument("--rram-sigma", type=number("rram-sigma", 0, MAX_LOG_SIGMA), metavar="X",
                   help="ReRAM conductance spread (std of ln G); binary weights on 1-bit cells, "
                        "differential, analog model")
    g.add_argument("--on-off-ratio", type=number("on-off-ratio", 1.0, lo_open=True, allow_inf=True),
                   metavar="R", help="ReRAM G_LRS/G_HRS, > 1 (default inf)")
    g.add_argument("--calibrate", action="store_true",
                   help="run the compensation-row calibration search first (SRAM)")
    g.add_argument("--trim", action="store_true",
                   help="after --calibrate, read each column's residual with zero input and "
                        "fold it into the thresholds (SRAM)")
    g.add_argument("--backend", choices=("macro", "analog"), default=None,
                   help="macro: bit-true golden model with the chip mapped onto the RTL's "
                        "registers (SRAM default); analog: the device model (ReRAM default)")
    g.add_argument("--comp-rows", type=_comp_rows, default=None, metavar="K",
                   help="compensation rows per column of an SRAM chip, a power of two in "
                        "[2, 32] (default 8)")


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
        if msg.startswith("n_train"):
            raise UsageError(msg, "--n-train") from None
        raise UsageError(f"{name}: {msg}", "--dataset") from None


def _data_for_training(args) -> Dataset:
    if args.images is None:
        if args.dataset == "mnist":
            return _load_data("mnist", n_train=args.n_train)
        return _load_data("digits", seed=args.seed)
    images, labels = load_images_labels(args.images, args.labels, classes=10)
    n_train = 6000 if args.n_train is None else args.n_train
    if not 0 < n_train < len(images):
        raise UsageError(f"must be in 1..{len(images) - 1} for the {len(images)} images of "
                         f"{args.images}, not {n_train}", "--n-train")
    if images.dtype != np.uint8:
        raise UsageError(f"{args.images}: MNIST images are unsigned bytes (IDX type 0x08), "
                         f"not {images.dtype}", "--images")
    small = downsample(images, 10, 10)
    x = quantize(small, 5, normalisation="minmax", full_scale=255.0).reshape(len(images), -1)
    pre = dict(source="mnist-idx", files=[str(args.images), str(args.labels)],
               image_shape=list(images.shape[1:]), downsample=[10, 10],
               downsample_method="exact area average", input_bits=5, normalisation="minmax",
               train=[0, n_train], val=[n_train, len(images)])
    labels = labels.astype(np.uint8)
    return Dataset("mnist", x[:n_train], labels[:n_train], x[n_train:], labels[n_train:], 5,
                   (10, 10), pre)


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


# --- train ------------------------------------------------------------------------------

def cmd_train(args) -> int:
    if (args.images is None) != (args.labels is None):
        raise UsageError("give both IDX files or neither", "--images/--labels")
    if args.images is not None and args.dataset != "mnist":
        raise UsageError(f"IDX files are MNIST-format images; not allowed with --dataset "
                         f"{args.dataset} (use --dataset mnist)", "--images")
    if args.n_train is not None and args.dataset != "mnist":
        raise UsageError("splits MNIST images; the digits split is fixed (80 % train, seeded); "
                         "not allowed with --dataset digits", "--n-train")
    if args.chip_in_loop is None:
        _refuse(_given(args, "sram_offset_sigma", "sram_cell_sigma", "read_noise", "rram_sigma",
                       "on_off_ratio", "backend", "comp_rows", "calibrate", "trim",
                       "chip_epochs"),
                "a chip option of train needs --chip-in-loop SEED")
    name = args.name or args.dataset
    files = [f"{name}.json", f"{name}.npz"]
    out = cmdline.check_output_folder(args.out, OUT, files=files)
    chip_cfg, backend = _chip_config(args) if args.chip_in_loop is not None else (None, None)
    if args.chip_in_loop is not None and chip_cfg is None:
        raise UsageError("the chip is ideal; give a spread (--sram-offset-sigma, "
                         "--sram-cell-sigma, --rram-sigma, ...)", "--chip-in-loop")
    comp_rows = args.comp_rows or 8
    _check_macro(args.rows, args.cols, comp_rows)
    chip_epochs = args.chip_epochs or 10
    data = _data_for_training(args)
    print(f"seed: {args.seed}")
    from . import experiments
    from .chip_readout import ChipReadout, predict_chips

    start = time.perf_counter()
    epochs_total = args.epochs if args.epochs is not None else recipe(data.name)[1].epochs
    bar = cmdline.progress_bar(epochs_total, f"train {data.name}", args.quiet)

    def progress(entry):
        bar.update(1)
        bar.set_postfix(loss=f"{entry['loss']:.3f}", train=f"{100 * entry['train_acc']:.1f}%")

    model, history = experiments.train_bnn(data, seed=args.seed, epochs=args.epochs,
                                           dva=args.dva, progress=progress)
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
        training=dict(dataset=data.name, seed=args.seed, epochs=epochs_total, dva_sigma=args.dva,
                      sizes=list(model.sizes), seconds=round(seconds, 2),
                      chip_in_loop=None if args.chip_in_loop is None else dict(
                          seed=args.chip_in_loop, epochs=chip_epochs,
                          config=chip_cfg.__dict__ if chip_cfg else None, backend=backend,
                          calibrate=args.calibrate, trim=args.trim)),
        accuracy=dict(val_ideal=val, on="validation split: " + json.dumps(
            data.preprocessing.get("val") or data.preprocessing.get("split"))))
    if args.chip_in_loop is not None:
        # Exactly what `models eval` computes for this chip and these images.
        pred = predict_chips(net, chip_cfg, [args.chip_in_loop], data.x_val.astype(np.int64),
                             comp_rows=comp_rows, backend=backend, calibrate=args.calibrate,
                             trim=args.trim, images=_image_index(data))
        on_chip = accuracy(pred[0], data.y_val)
        net.meta["accuracy"]["val_chip"] = on_chip
    with cmdline.staged_outputs(out, files) as stage:
        save_folded(net, stage / name)
    print(f"trained {data.name} {'-'.join(map(str, model.sizes))} in {seconds:.1f} s; "
          f"validation accuracy (ideal hardware, {len(data.y_val)} images): {100 * val:.2f} %")
    if args.chip_in_loop is not None:
        print(f"validation accuracy on chip {args.chip_in_loop} ({backend} model): "
              f"{100 * on_chip:.2f} %")
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
        _refuse(_given(args, "chip_seed", "chips", "backend",
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
        pre = net.meta.get("preprocessing") or {}
        if args.dataset == "digits":
            data = _load_data("digits", seed=(pre.get("split") or {}).get("seed", 0))
        else:
            train, val = pre.get("train") or [0, 6000], pre.get("val")
            data = _load_data("mnist", n_train=train[1],
                              n_val=None if val is None else val[1] - val[0])
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
    print(f"seed: {chip_seed}")
    from .chip_readout import predict_chips

    seeds = list(range(chip_seed, chip_seed + chips))
    bar = cmdline.progress_bar(len(seeds), "chips", args.quiet)
    pred = predict_chips(net, cfg, seeds, x, comp_rows=comp_rows, backend=backend,
                         calibrate=args.calibrate, trim=args.trim, images=index,
                         progress=bar.update)
    bar.close()
    accs = np.mean(pred == np.asarray(y)[None], axis=1)
    what = f"{backend} model, {cfg.technology}" + (", calibrated" if args.calibrate else "") + \
        (", trimmed" if args.trim else "")
    if len(seeds) == 1:
        print(f"accuracy: {100 * accs[0]:.2f} % ({int(round(accs[0] * len(y)))}/{len(y)} images, "
              f"chip {seeds[0]}, {what}){energy}")
    else:
        for s, a in zip(seeds, accs):
            print(f"chip {s}: {100 * a:.2f} %")
        print(f"accuracy: {100 * accs.mean():.2f} % mean, {100 * accs.std():.2f} % std, "
              f"{100 * accs.min():.2f} % min over {len(seeds)} chips ({len(y)} images, "
              f"{what}){energy}")
    return 0


# --- sweep ------------------------------------------------------------------------------

#: Options of sweep that only one experiment uses (dest names; their default is None).
OFFSET_ONLY = ("model", "offset_sigmas", "comp_rows", "rows", "cols", "epochs")
RRAM_ONLY = ("rram_sigmas", "mlp_epochs", "dva", "weight_bits", "cell_bits", "on_off_ratio")


def cmd_sweep(args) -> int:
    from . import experiments as E

    experiments = ("offset", "rram") if args.experiment == "all" else (args.experiment,)
    if "offset" not in experiments:
        _refuse(_given(args, *OFFSET_ONLY), "used by the offset experiment only; not allowed "
                                            "with --experiment rram")
    if "rram" not in experiments:
        _refuse(_given(args, *RRAM_ONLY), "used by the rram experiment only; not allowed with "
                                          "--experiment offset")
    if args.model is not None:
        _refuse(_given(args, "epochs", "rows", "cols"),
                "trains and maps the recipe's model; not allowed with --model (already "
                "trained and mapped)")
    files = ["sweep.csv"] + [f"{exp}.png" for exp in experiments]
    outdir = cmdline.check_output_folder(args.out, OUT, files=files)
    comp_rows = args.comp_rows or 8
    setup = None
    if "rram" in experiments:
        setup = E.RramSetup(weight_bits=args.weight_bits or 8, cell_bits=args.cell_bits or 2,
                            on_off_ratio=args.on_off_ratio if args.on_off_ratio is not None else 10.0)
        try:
            setup.config(0.0)
        except ValueError as exc:
            msg = one_line(exc)
            raise UsageError(msg, "--" + msg.split()[0].replace("_", "-")) from None
    net = load_model(args.model) if args.model is not None else None
    if net is not None:
        trained_on = _dataset_of(net, "--model")
        if trained_on != args.dataset:
            raise UsageError(f"the model was trained on {trained_on}; not allowed with "
                             f"--dataset {args.dataset}", "--model")
        _check_macro(net.rows, net.cols, comp_rows)
    else:
        _check_macro(args.rows or 32, args.cols or 96, comp_rows)
    data = _load_data(args.dataset, seed=0)
    print(f"seed: {args.seed}")
    rows, notes = [], {}
    start = time.perf_counter()
    if "offset" in experiments:
        if net is None:
            model, _ = E.train_bnn(data, seed=args.seed, epochs=args.epochs)
            net = export_model(model, args.rows or 32, args.cols or 96)
        sigmas = args.offset_sigmas or E.DEFAULT_OFFSET_SIGMAS
        total = len(sigmas) * len(E.OFFSET_METHODS) * args.chips
        bar = cmdline.progress_bar(total, "offset sweep", args.quiet)
        rows += E.offset_experiment(net, data.x_val, data.y_val, sigmas=sigmas,
                                    chips=args.chips, comp_rows=comp_rows, progress=bar.update)
        bar.close()
    if "rram" in experiments:
        sigmas = args.rram_sigmas or E.DEFAULT_RRAM_SIGMAS
        total = len(sigmas) * len(E.RRAM_METHODS) * args.chips
        bar = cmdline.progress_bar(total, "rram sweep", args.quiet)
        rr, info = E.rram_experiment(data, sigmas=sigmas, chips=args.chips, setup=setup,
                                     dva_sigma=0.3 if args.dva is None else args.dva,
                                     epochs=args.mlp_epochs or 30, seed=args.seed,
                                     progress=bar.update)
        bar.close()
        rows += rr
        notes["rram"] = info
    seconds = time.perf_counter() - start
    # Everything is computed before anything is written.
    outputs = {"sweep.csv": E.csv_bytes(rows)}
    for exp in experiments:
        outputs[f"{exp}.png"] = E.png_bytes(rows, exp)
    written = cmdline.write_files(outdir, outputs)
    print(f"{'experiment':10} {'method':16} {'sigma':>6} {'chips':>5} {'mean %':>7} {'std %':>6} {'min %':>6}")
    for s in E.summarize(rows):
        print(f"{s['experiment']:10} {s['method']:16} {s['sigma']:6.3g} {s['n']:5d} "
              f"{100 * s['mean']:7.2f} {100 * s['std']:6.2f} {100 * s['min']:6.2f}")
    if "rram" in notes:
        info = notes["rram"]
        print("rram: float accuracy " + ", ".join(f"{k} {100 * v:.2f} %" for k, v in
                                                   info["float_accuracy"].items())
              + "; fractional lengths " + ", ".join(f"{k} {v}" for k, v in info["fracs"].items()))
    print(f"{len(rows)} rows in {seconds:.1f} s; wrote " + " ".join(str(p) for p in written))
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
        pre = net.meta.get("preprocessing") or {}
        x = _load_data(name, seed=(pre.get("split") or {}).get("seed", 0)).x_val.astype(np.int64)
        if x.shape[1] != net.layers[0].inputs:
            raise UsageError(f"the {name} images give {x.shape[1]} inputs, the model takes "
                             f"{net.layers[0].inputs}", "--dataset")
    if args.count is not None:
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

    t = sub.add_parser("train", help="train a BNN and write OUT/NAME.json and OUT/NAME.npz",
                       renamed={"--output": "-o/--out DIR (a folder) and --name NAME"},
                       description="Train the default BNN recipe, fold batch norm and write "
                                   "OUT/NAME.json + OUT/NAME.npz (docs/MODEL_FORMAT.md).")
    t.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="digits (embedded 8x8) or mnist (10x10, 5-bit; default files in "
                        f"{DEFAULT_MNIST_DIR})")
    t.add_argument("--images", metavar="IDX", help="MNIST-format image file (with --labels; "
                                                   "--dataset mnist)")
    t.add_argument("--labels", metavar="IDX", help="MNIST-format label file, labels 0..9")
    t.add_argument("--n-train", type=integer("n-train", 1), default=None, metavar="N",
                   help="mnist: the first N images train, the rest validate (default 6000)")
    t.add_argument("--epochs", type=integer("epochs", 1, 10000), default=None, metavar="E",
                   help="epochs (default: the recipe's, digits 30, mnist 150)")
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
    t.add_argument("-o", "--out", default="build/models", metavar="DIR",
                   help="output folder, created if missing: writes DIR/NAME.json and DIR/NAME.npz")
    t.add_argument("--name", type=cmdline.file_name("name"), default=None, metavar="NAME",
                   help="file name of the model (default: the data set, digits or mnist)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_chip_options(t)
    t.set_defaults(func=cmd_train)

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
    e.add_argument("--chips", type=integer("chips", 1, 100000), default=None, metavar="N",
                   help="evaluate N chip instances, seeds S..S+N-1 (default 1)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.add_argument("--energy", metavar="PRESET", default=None,
                   help="also print energy and latency per image with this preset (a name: "
                        "jssc17, jetcas19, valavi18, or a preset file; docs/ENERGY.md)")
    _add_chip_options(e, seed_help="chip instance seed S (default 0)")
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("sweep", help="accuracy versus variation: CSV and PNG",
                       renamed={"--output": "-o/--out"},
                       description="Accuracy versus variation over N chip instances; writes "
                                   "OUT/sweep.csv and OUT/<experiment>.png.")
    s.add_argument("--experiment", choices=EXPERIMENTS, default="all",
                   help="offset: SRAM offsets, calibration on/off; rram: ReRAM variation, "
                        "fixed point/DVA/DFP/DFP+DVA; all: both")
    s.add_argument("--dataset", choices=DATASETS, default="digits", help="digits or mnist")
    s.add_argument("--chips", type=integer("chips", 1, 100000), default=20, metavar="N",
                   help="chip instances per point")
    s.add_argument("--seed", type=integer("seed", 0, 2**32 - 1), default=0, metavar="S",
                   help="training seed")
    s.add_argument("-o", "--out", default="build/sweep", metavar="DIR",
                   help="output folder, created if missing: DIR/sweep.csv, DIR/<experiment>.png")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    o = s.add_argument_group("offset experiment")
    o.add_argument("--model", metavar="MODEL", help="use this trained model (default: train "
                                                    "the recipe)")
    o.add_argument("--offset-sigmas", type=number_list("offset-sigmas", 0, MAX_OFFSET_SIGMA),
                   default=None, metavar="LIST",
                   help="offset spreads, cell units (default 0,1,2,3,4,6,8)")
    o.add_argument("--comp-rows", type=_comp_rows, default=None, metavar="K",
                   help="compensation rows per column, a power of two in [2, 32] (default 8)")
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
    s.set_defaults(func=cmd_sweep)

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
    return parser


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if args.command in ("train", "sweep"):
            raise KeyboardInterrupt("nothing written") from None
        raise


def main(argv=None) -> int:
    """Run ``python -m models`` with ``argv`` (default ``sys.argv[1:]``); returns the exit
    status: 0 done, 2 bad input (one line on stderr), 130 interrupted."""
    return cmdline.run(PROG, _main, argv)
