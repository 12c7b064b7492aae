"""The command line ``python -m models``: train, evaluate and sweep BNNs on sampled chips.

* ``train``: train the default recipe on digits or MNIST (optionally with DVA noise and a
  chip in the loop), fold batch norm and write the exported model ``MODEL.json`` +
  ``MODEL.npz`` (docs/MODEL_FORMAT.md).
* ``eval``: accuracy of an exported model on IDX images, on ideal hardware or on sampled
  chip instances (SRAM offsets and cell variation, ReRAM conductance variation), with or
  without calibration.
* ``sweep``: accuracy versus variation over N chip instances (docs/EXPERIMENTS.md),
  writing ``sweep.csv`` and one PNG per experiment.
* ``energy``: events, energy, TOPS/W, area and latency of a macro or of a network on it,
  priced with a technology preset (docs/ENERGY.md).

Every bad invocation (missing or malformed file, bad number, unknown data set,
incompatible options) ends with exit status 2 and one line on stderr,
``models: error: ...``, naming the bad value and what is allowed, and writes nothing:
outputs are written to temporary names in the target folder and renamed at the end.
Progress bars (tqdm) go to stderr, only when stderr is a terminal and ``--quiet`` is not
given. The seed in use is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .bnn import TrainConfig, accuracy, recipe
from .chip import ChipConfig
from .datasets import (DEFAULT_MNIST_DIR, Dataset, downsample, load_dataset,
                       load_idx, quantize)
from .export import export_model, infer_folded, load_folded, macro_hook, save_folded

__all__ = ["main", "build_parser", "UsageError"]

PROG = "models"
DATASETS = ("digits", "mnist")
EXPERIMENTS = ("offset", "rram", "all")


class UsageError(Exception):
    """A bad invocation; the message is the one line printed after ``models: error:``."""


def _one_line(text) -> str:
    return " ".join(str(text).split())


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        message = _one_line(message)
        if message.startswith(("unrecognized arguments", "the following arguments are required")):
            message += f" ({self.prog} --help lists every option)"
        self.exit(2, f"{PROG}: error: {message}\n")


# --- argument types -----------------------------------------------------------------

def _int_type(name, lo, hi=None):
    allowed = f">= {lo}" if hi is None else f"in {lo}..{hi}"

    def parse(text):
        try:
            v = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer {allowed}, not {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{name} must be an integer {allowed}, not {v}")
        return v
    parse.__name__ = name
    return parse


def _float_type(name, lo=0.0, *, strict=False, allow_inf=False):
    allowed = f"a number {'>' if strict else '>='} {lo:g}" + (" (or inf)" if allow_inf else "")

    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, not {text!r}") from None
        if math.isnan(v) or (math.isinf(v) and not allow_inf) or v < lo or (strict and v == lo):
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, not {text!r}")
        return v
    parse.__name__ = name
    return parse


def _float_list(name, lo=0.0):
    one = _float_type(name, lo)

    def parse(text):
        items = [t for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{name} must be a comma-separated list of numbers >= {lo:g}, "
                                             f"not {text!r}")
        return tuple(one(t.strip()) for t in items)
    parse.__name__ = name
    return parse


def _range_type(text):
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        a, b = int(parts[0], 10), int(parts[1], 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"range must be START:STOP with integers 0 <= START < STOP, "
                                         f"not {text!r}") from None
    if not 0 <= a < b:
        raise argparse.ArgumentTypeError(f"range must be START:STOP with integers 0 <= START < STOP, "
                                         f"not {text!r}")
    return a, b


# --- shared pieces --------------------------------------------------------------------

def _progress(total, desc, quiet):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False,
                disable=quiet or not sys.stderr.isatty())


def _check_output_base(path: Path, what: str) -> None:
    """The folder that will hold ``path`` must exist (or be creatable) and be a folder."""
    for parent in [path.parent, *path.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"argument {what}: {parent} is not a folder")
            if not os.access(parent, os.W_OK):
                raise UsageError(f"argument {what}: folder {parent} is not writable")
            return


def _chip_config(args) -> tuple[ChipConfig | None, str]:
    """ChipConfig from the chip options, and the backend; (None, backend) for ideal hardware."""
    sram = {k: getattr(args, k) for k in ("sram_offset_sigma", "sram_cell_sigma", "read_noise")
            if getattr(args, k) is not None}
    rram = {k: getattr(args, k) for k in ("rram_sigma", "on_off_ratio") if getattr(args, k) is not None}
    if sram and rram:
        raise UsageError(f"argument --{next(iter(rram)).replace('_', '-')}: a chip is either SRAM or "
                         f"ReRAM; not allowed with --{next(iter(sram)).replace('_', '-')}")
    if rram:
        for opt in ("calibrate", "trim"):
            if getattr(args, opt):
                raise UsageError(f"argument --{opt}: needs SRAM compensation rows; not allowed "
                                 f"with ReRAM options (--rram-sigma, --on-off-ratio)")
        if args.backend == "macro":
            raise UsageError("argument --backend: 'macro' is the SRAM golden model; ReRAM chips "
                             "need --backend analog")
        cfg = ChipConfig(technology="rram", cell_sigma=args.rram_sigma or 0.0,
                         on_off_ratio=args.on_off_ratio if args.on_off_ratio is not None else math.inf)
        return cfg, "analog"
    backend = args.backend or "macro"
    if args.read_noise and backend == "macro":
        raise UsageError("argument --read-noise: per-read noise exists only in the analog model; "
                         "add --backend analog")
    cfg = ChipConfig(offset_sigma=args.sram_offset_sigma or 0.0,
                     cell_sigma=args.sram_cell_sigma or 0.0, read_noise=args.read_noise or 0.0)
    if cfg.is_ideal and not (args.calibrate or args.trim):
        return None, backend
    return cfg, backend


def _add_chip_options(p, *, seed_help=None):
    g = p.add_argument_group("chip instance (default: ideal hardware)")
    if seed_help is not None:
        g.add_argument("--chip-seed", type=_int_type("chip-seed", 0), default=0, metavar="S",
                       help=seed_help)
    g.add_argument("--sram-offset-sigma", type=_float_type("sram-offset-sigma"), metavar="X",
                   help="SRAM comparator offset spread, cell units (1 compensation step = 2 units)")
    g.add_argument("--sram-cell-sigma", type=_float_type("sram-cell-sigma"), metavar="X",
                   help="SRAM bitcell current spread (std of ln I)")
    g.add_argument("--read-noise", type=_float_type("read-noise"), metavar="X",
                   help="SRAM noise per read, cell units (needs --backend analog)")
    g.add_argument("--rram-sigma", type=_float_type("rram-sigma"), metavar="X",
                   help="ReRAM conductance spread (std of ln G); binary weights on 1-bit cells, "
                        "differential, analog model")
    g.add_argument("--on-off-ratio", type=_float_type("on-off-ratio", 1.0, strict=True, allow_inf=True),
                   metavar="R", help="ReRAM G_LRS/G_HRS (default inf)")
    g.add_argument("--calibrate", action="store_true",
                   help="run the compensation-row calibration search first (SRAM)")
    g.add_argument("--trim", action="store_true",
                   help="after calibration, read each column's residual with zero input and "
                        "fold it into the thresholds (SRAM)")
    g.add_argument("--backend", choices=("macro", "analog"), default=None,
                   help="macro: bit-true golden model with the chip mapped onto the RTL's "
                        "registers (SRAM default); analog: the device model (ReRAM default)")
    g.add_argument("--comp-rows", type=_int_type("comp-rows", 2, 32), default=8, metavar="K",
                   help="compensation rows per column, a power of two in [2, 32] (default 8)")


def _check_macro(args) -> None:
    from .params import MacroParams
    try:
        MacroParams(rows=args.rows, cols=args.cols, comp_rows=args.comp_rows)
    except ValueError as exc:
        msg = _one_line(exc)
        opt = "--" + msg.split()[0].replace("_", "-")
        raise UsageError(f"argument {opt}: {msg}") from None


def _load_model(path_text):
    path = Path(path_text)
    try:
        return load_folded(path)
    except ValueError as exc:
        raise UsageError(f"argument --model: {_one_line(exc)}") from None


def _load_idx_pair(images, labels, rng_sel):
    try:
        x = load_idx(images, ndim=3)
        y = load_idx(labels, ndim=1)
    except ValueError as exc:
        opt = "--images" if str(exc).startswith(str(images)) else "--labels"
        raise UsageError(f"argument {opt}: {_one_line(exc)}") from None
    if x.dtype != np.uint8:
        raise UsageError(f"argument --images: {images}: images must be unsigned bytes (IDX type 0x08), "
                         f"not {x.dtype}")
    if y.dtype != np.uint8 or (y.size and y.max() > 9):
        raise UsageError(f"argument --labels: {labels}: labels must be unsigned bytes in 0..9")
    if len(x) != len(y):
        raise UsageError(f"argument --labels: {labels} has {len(y)} labels, {images} has "
                         f"{len(x)} images")
    if rng_sel is not None:
        a, b = rng_sel
        if b > len(x):
            raise UsageError(f"argument --range: {a}:{b} exceeds the {len(x)} images of {images}")
        x, y = x[a:b], y[a:b]
    return x, y


def _preprocess(net, images, images_path):
    """Raw IDX images -> the model's integer inputs, following its preprocessing record."""
    pre = net.meta.get("preprocessing") or {}
    bits = net.layers[0].planes
    source = pre.get("source")
    if source == "sklearn-digits":
        if images.shape[1:] != (8, 8) or (images.size and images.max() > 16):
            raise UsageError(f"argument --images: {images_path}: a digits model needs 8x8 images "
                             f"with values 0..16 (scikit-learn's scale), not shape "
                             f"{images.shape[1:]} max {int(images.max()) if images.size else 0}")
        if pre.get("normalisation", "none") == "minmax":
            x = quantize(images.astype(np.int64), bits, normalisation="minmax")
        else:
            full = (1 << bits) - 1
            x = (2 * images.astype(np.int64) * full + 16) // 32
    else:
        size = pre.get("downsample") or [10, 10]
        if (size[0] * size[1]) != net.layers[0].inputs:
            raise UsageError(f"argument --model: preprocessing downsample {size} does not give the "
                             f"model's {net.layers[0].inputs} inputs")
        small = downsample(images, size[0], size[1]) if tuple(images.shape[1:]) != tuple(size) \
            else images.astype(np.float64)
        x = quantize(small, bits, normalisation=pre.get("normalisation", "minmax"), full_scale=255.0)
    x = x.reshape(len(x), -1).astype(np.int64)
    if x.shape[1] != net.layers[0].inputs:
        raise UsageError(f"argument --images: {images_path}: images give {x.shape[1]} inputs, the "
                         f"model needs {net.layers[0].inputs}")
    return x


def _data_for_training(args) -> Dataset:
    if args.images is None:
        try:
            return load_dataset(args.dataset, seed=args.seed if args.dataset == "digits" else 0)
        except ValueError as exc:
            raise UsageError(f"argument --dataset: {args.dataset}: {_one_line(exc)}") from None
    images, labels = _load_idx_pair(args.images, args.labels, None)
    n_train = args.n_train
    if not 0 < n_train < len(images):
        raise UsageError(f"argument --n-train: must be in 1..{len(images) - 1} for the "
                         f"{len(images)} images of {args.images}, not {n_train}")
    small = downsample(images, 10, 10)
    x = quantize(small, 5, normalisation="minmax", full_scale=255.0).reshape(len(images), -1)
    pre = dict(source="mnist-idx", files=[str(args.images), str(args.labels)],
               image_shape=list(images.shape[1:]), downsample=[10, 10],
               downsample_method="exact area average", input_bits=5, normalisation="minmax",
               train=[0, n_train], val=[n_train, len(images)])
    return Dataset("mnist", x[:n_train], labels[:n_train], x[n_train:], labels[n_train:], 5,
                   (10, 10), pre)


def _atomic_model(net, out: Path) -> tuple[Path, Path]:
    """save_folded into a temporary folder beside ``out``, then rename both files."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        jtmp, ntmp = save_folded(net, tmp / out.name)
        jpath, npath = out.parent / jtmp.name, out.parent / ntmp.name
        os.replace(ntmp, npath)
        os.replace(jtmp, jpath)
        return jpath, npath
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _model_base(text) -> Path:
    path = Path(text)
    return path.with_suffix("") if path.suffix in (".json", ".npz") else path


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
        raise UsageError("argument --images/--labels: give both IDX files or neither")
    if args.images is not None and args.dataset != "mnist":
        raise UsageError(f"argument --images: IDX files are MNIST-format images; not allowed with "
                         f"--dataset {args.dataset} (use --dataset mnist)")
    if args.chip_in_loop is None:
        for opt in ("sram_offset_sigma", "sram_cell_sigma", "read_noise", "rram_sigma",
                    "on_off_ratio", "backend"):
            if getattr(args, opt) is not None:
                raise UsageError(f"argument --{opt.replace('_', '-')}: chip options of train need "
                                 f"--chip-in-loop SEED")
        if args.calibrate or args.trim:
            raise UsageError("argument --calibrate/--trim: chip options of train need "
                             "--chip-in-loop SEED")
    out = _model_base(args.output)
    _check_output_base(out, "-o")
    chip_cfg, backend = _chip_config(args) if args.chip_in_loop is not None else (None, None)
    if args.chip_in_loop is not None and chip_cfg is None:
        raise UsageError("argument --chip-in-loop: the chip is ideal; give a spread "
                         "(--sram-offset-sigma, --sram-cell-sigma, --rram-sigma, ...)")
    data = _data_for_training(args)
    print(f"seed: {args.seed}")
    from . import experiments
    from .chip_readout import ChipReadout, predict_chips

    start = time.perf_counter()
    epochs_total = args.epochs if args.epochs is not None else recipe(data.name)[1].epochs
    bar = _progress(epochs_total, f"train {data.name}", args.quiet)

    def progress(entry):
        bar.update(1)
        bar.set_postfix(loss=f"{entry['loss']:.3f}", train=f"{100 * entry['train_acc']:.1f}%")

    model, history = experiments.train_bnn(data, seed=args.seed, epochs=args.epochs,
                                           dva=args.dva, progress=progress)
    bar.close()
    meta_training = dict(history[-1]) if history else {}
    if args.chip_in_loop is not None:
        from .bnn import train as bnn_train
        net0 = export_model(model, args.rows, args.cols)
        readout = ChipReadout(net0, chip_cfg, [args.chip_in_loop], comp_rows=args.comp_rows,
                              backend=backend, calibrate=args.calibrate, trim=args.trim)
        hook = _training_hook(readout, macro_hook(args.rows, args.cols, data.input_bits, readout))
        config = TrainConfig(epochs=args.chip_epochs, lr=1e-3, lr_final=3e-5, seed=args.seed,
                             dva_sigma=args.dva)
        bar = _progress(args.chip_epochs, "chip in the loop", args.quiet)
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
                          seed=args.chip_in_loop, epochs=args.chip_epochs,
                          config=chip_cfg.__dict__ if chip_cfg else None, backend=backend,
                          calibrate=args.calibrate, trim=args.trim)),
        accuracy=dict(val_ideal=val, on="validation split: " + json.dumps(
            data.preprocessing.get("val") or data.preprocessing.get("split"))))
    if args.chip_in_loop is not None:
        # Exactly what `models eval` computes for this chip and these images.
        pred = predict_chips(net, chip_cfg, [args.chip_in_loop], data.x_val.astype(np.int64),
                             comp_rows=args.comp_rows, backend=backend, calibrate=args.calibrate,
                             trim=args.trim, images=_image_index(data))
        on_chip = accuracy(pred[0], data.y_val)
        net.meta["accuracy"]["val_chip"] = on_chip
    jpath, npath = _atomic_model(net, out)
    print(f"trained {data.name} {'-'.join(map(str, model.sizes))} in {seconds:.1f} s; "
          f"validation accuracy (ideal hardware, {len(data.y_val)} images): {100 * val:.2f} %")
    if args.chip_in_loop is not None:
        print(f"validation accuracy on chip {args.chip_in_loop} ({backend} model): "
              f"{100 * on_chip:.2f} %")
    print(f"wrote {jpath} {npath}")
    return 0


# --- eval -------------------------------------------------------------------------------

def cmd_eval(args) -> int:
    if (args.images is None) != (args.labels is None):
        raise UsageError("argument --images/--labels: give both IDX files or neither")
    if args.images is None and args.dataset is None:
        raise UsageError("argument --images: give --images IDX --labels IDX, or --dataset "
                         "digits|mnist for that data set's validation split")
    if args.images is not None and args.dataset is not None:
        raise UsageError("argument --dataset: not allowed with --images/--labels")
    if args.range is not None and args.images is None:
        raise UsageError("argument --range: selects images of --images; not allowed with --dataset")
    cfg, backend = _chip_config(args)
    net = _load_model(args.model)
    if args.images is not None:
        images, y = _load_idx_pair(args.images, args.labels, args.range)
        x = _preprocess(net, images, args.images)
        first = args.range[0] if args.range is not None else 0
        index = np.arange(first, first + len(y))
    else:
        source = (net.meta.get("preprocessing") or {}).get("source")
        want = {"digits": "sklearn-digits", "mnist": "mnist-idx"}[args.dataset]
        if source != want:
            raise UsageError(f"argument --dataset: the model was trained on {source!r} data, not "
                             f"{args.dataset}")
        seed = ((net.meta.get("preprocessing") or {}).get("split") or {}).get("seed", 0)
        data = load_dataset(args.dataset, seed=seed)
        x, y = data.x_val.astype(np.int64), data.y_val
        index = _image_index(data)
    energy = _energy_suffix(args, net, x)
    print(f"seed: {args.chip_seed}")
    if cfg is None:
        acc = accuracy(infer_folded(net, x), y)
        print(f"accuracy: {100 * acc:.2f} % ({int(round(acc * len(y)))}/{len(y)} images, "
              f"ideal hardware){energy}")
        return 0
    from .chip_readout import predict_chips

    seeds = list(range(args.chip_seed, args.chip_seed + args.chips))
    bar = _progress(len(seeds), "chips", args.quiet)
    pred = predict_chips(net, cfg, seeds, x, comp_rows=args.comp_rows, backend=backend,
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
              f"{100 * accs.min():.2f} % min over {len(seeds)} chips ({len(y)} images, {what}){energy}")
    return 0


# --- sweep ------------------------------------------------------------------------------

def cmd_sweep(args) -> int:
    from . import experiments as E

    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"argument -o: {outdir} exists and is not a folder")
    _check_output_base(outdir / "sweep.csv", "-o")
    experiments = ("offset", "rram") if args.experiment == "all" else (args.experiment,)
    if args.model is not None and "offset" not in experiments:
        raise UsageError("argument --model: only the offset experiment uses a trained BNN; "
                         "not allowed with --experiment rram")
    net = _load_model(args.model) if args.model is not None else None
    if net is not None:
        source = (net.meta.get("preprocessing") or {}).get("source")
        want = {"digits": "sklearn-digits", "mnist": "mnist-idx"}[args.dataset]
        if source != want:
            raise UsageError(f"argument --model: the model was trained on {source!r} data; "
                             f"not allowed with --dataset {args.dataset}")
    try:
        data = load_dataset(args.dataset, seed=0)
    except ValueError as exc:
        raise UsageError(f"argument --dataset: {args.dataset}: {_one_line(exc)}") from None
    print(f"seed: {args.seed}")
    rows, notes = [], {}
    start = time.perf_counter()
    if "offset" in experiments:
        if net is None:
            model, _ = E.train_bnn(data, seed=args.seed, epochs=args.epochs)
            net = export_model(model, args.rows, args.cols)
        total = len(args.offset_sigmas) * len(E.OFFSET_METHODS) * args.chips
        bar = _progress(total, "offset sweep", args.quiet)
        rows += E.offset_experiment(net, data.x_val, data.y_val, sigmas=args.offset_sigmas,
                                    chips=args.chips, comp_rows=args.comp_rows,
                                    progress=bar.update)
        bar.close()
    if "rram" in experiments:
        setup = E.RramSetup(weight_bits=args.weight_bits, cell_bits=args.cell_bits,
                            on_off_ratio=args.rram_on_off)
        total = len(args.rram_sigmas) * len(E.RRAM_METHODS) * args.chips
        bar = _progress(total, "rram sweep", args.quiet)
        rr, info = E.rram_experiment(data, sigmas=args.rram_sigmas, chips=args.chips, setup=setup,
                                     dva_sigma=args.dva, epochs=args.mlp_epochs or 30,
                                     seed=args.seed, progress=bar.update)
        bar.close()
        rows += rr
        notes["rram"] = info
    seconds = time.perf_counter() - start
    # Everything is computed before anything is written.
    outputs = {outdir / "sweep.csv": E.csv_bytes(rows)}
    for exp in experiments:
        outputs[outdir / f"{exp}.png"] = E.png_bytes(rows, exp)
    outdir.mkdir(parents=True, exist_ok=True)
    for path, blob in outputs.items():
        E.atomic_write_bytes(path, blob)
    print(f"{'experiment':10} {'method':16} {'sigma':>6} {'chips':>5} {'mean %':>7} {'std %':>6} {'min %':>6}")
    for s in E.summarize(rows):
        print(f"{s['experiment']:10} {s['method']:16} {s['sigma']:6.3g} {s['n']:5d} "
              f"{100 * s['mean']:7.2f} {100 * s['std']:6.2f} {100 * s['min']:6.2f}")
    if "rram" in notes:
        info = notes["rram"]
        print("rram: float accuracy " + ", ".join(f"{k} {100 * v:.2f} %" for k, v in
                                                   info["float_accuracy"].items())
              + "; fractional lengths " + ", ".join(f"{k} {v}" for k, v in info["fracs"].items()))
    print(f"{len(rows)} rows in {seconds:.1f} s; wrote " + " ".join(str(p) for p in outputs))
    return 0


# --- energy -------------------------------------------------------------------------------

def _load_preset(text, option="--preset"):
    from .energy import PresetError, load_preset
    try:
        return load_preset(text)
    except PresetError as exc:
        raise UsageError(f"argument {option}: {_one_line(exc)}") from None


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


def _energy_suffix(args, net, x) -> str:
    """``eval --energy P``: energy and latency per image, appended to the accuracy line."""
    if getattr(args, "energy", None) is None:
        return ""
    preset = _load_preset(args.energy, "--energy")
    _, r = _network_report(net, x, preset, args.comp_rows)
    return (f"; {r.energy_pj_per_decision / 1e3:.4g} nJ and {r.latency_ns / 1e3:.4g} us per "
            f"image (preset {preset.name}, {r.clock_mhz:g} MHz)")


def _energy_images(args, net):
    """The images ``energy --model`` runs: --images (with --range) or a validation split."""
    if args.images is not None:
        images, _ = _load_idx_pair(args.images, args.labels, args.range) if args.labels \
            else (_load_images_only(args.images, args.range), None)
        x = _preprocess(net, images, args.images)
    else:
        source = (net.meta.get("preprocessing") or {}).get("source")
        name = args.dataset or {"sklearn-digits": "digits", "mnist-idx": "mnist"}.get(source)
        if name is None:
            raise UsageError(f"argument --model: the model's data ({source!r}) is not a known "
                             f"data set; give --images IDX")
        seed = ((net.meta.get("preprocessing") or {}).get("split") or {}).get("seed", 0)
        try:
            x = load_dataset(name, seed=seed).x_val.astype(np.int64)
        except ValueError as exc:
            raise UsageError(f"argument --dataset: {name}: {_one_line(exc)}") from None
    if args.count is not None:
        x = x[:args.count]
    return x


def _load_images_only(path, rng_sel):
    try:
        x = load_idx(path, ndim=3)
    except ValueError as exc:
        raise UsageError(f"argument --images: {_one_line(exc)}") from None
    if rng_sel is not None:
        a, b = rng_sel
        if b > len(x):
            raise UsageError(f"argument --range: {a}:{b} exceeds the {len(x)} images of {path}")
        x = x[a:b]
    return x


def cmd_energy(args) -> int:
    from . import energy as E
    from .params import MacroParams

    preset = _load_preset(args.preset)
    if args.model is not None and args.rows is not None:
        raise UsageError("argument --rows: a macro of its own or --model's macro; not allowed "
                         "with --model")
    if (args.rows is None) != (args.cols is None):
        raise UsageError("argument --rows/--cols: give both or neither")
    if args.model is None:
        for opt in ("images", "labels", "range", "dataset", "count"):
            if getattr(args, opt) is not None:
                raise UsageError(f"argument --{opt}: selects the images of --model; not allowed "
                                 f"without it")
    clock = None
    if args.fpga_report is not None:
        try:
            clock = E.fpga_clock(args.fpga_report)
        except ValueError as exc:
            raise UsageError(f"argument --fpga-report: {_one_line(exc)}") from None
    comparison = []
    if args.model is not None:
        net = _load_model(args.model)
        x = _energy_images(args, net)
        if not len(x):
            raise UsageError("argument --count: no images selected")
        if clock is not None:
            from .export import check_fits
            try:
                check_fits(net, clock[1])
            except ValueError as exc:
                raise UsageError(f"argument --fpga-report: {_one_line(exc)}") from None
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
                                    pipeline=args.pipeline, readout_bits=args.readout_bits,
                                    acc_bits=args.acc_bits)
                except (TypeError, ValueError) as exc:
                    msg = _one_line(exc)
                    raise UsageError(f"argument --{msg.split()[0].replace('_', '-')}: {msg}") from None
            shape = E.ArrayShape.of(p)
            planes = shape.input_bits if args.planes is None else args.planes
            if planes > shape.input_bits:
                raise UsageError(f"argument --planes: must be in 1..{shape.input_bits} "
                                 f"(input bits), not {planes}")
            config = dict(rows=shape.rows, cols=shape.cols, input_bits=shape.input_bits,
                          planes=planes, comp_rows=shape.comp_rows,
                          cols_per_cycle=shape.cols_per_cycle, pipeline=shape.pipeline,
                          input_density=args.input_density)
            header = (f"macro {shape.rows}x{shape.cols} (B={shape.input_bits}, "
                      f"K={shape.comp_rows}, P={shape.cols_per_cycle}, L={shape.pipeline}): one "
                      f"RUN of {planes} planes, input bits 1 with probability "
                      f"{args.input_density:g}, compute events only")
        else:
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

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m models", allow_abbrev=False,
                     description="Train, evaluate and sweep BNNs for the CiM macro on sampled "
                                 "chips (docs/EXPERIMENTS.md).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="{train,eval,sweep,energy}")

    t = sub.add_parser("train", allow_abbrev=False, help="train a BNN and write MODEL.json/.npz",
                       description="Train the default BNN recipe, fold batch norm and write "
                                   "MODEL.json + MODEL.npz (docs/MODEL_FORMAT.md).")
    t.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="digits (embedded 8x8, default) or mnist (10x10, 5-bit; "
                        f"default files in {DEFAULT_MNIST_DIR})")
    t.add_argument("--images", metavar="IDX", help="MNIST-format image file (with --labels; "
                                                   "--dataset mnist)")
    t.add_argument("--labels", metavar="IDX", help="MNIST-format label file")
    t.add_argument("--n-train", type=_int_type("n-train", 1), default=6000, metavar="N",
                   help="with --images: the first N images train, the rest validate (default 6000)")
    t.add_argument("--epochs", type=_int_type("epochs", 1, 10000), default=None, metavar="E",
                   help="epochs (default: the recipe's, digits 30, mnist 150)")
    t.add_argument("--dva", type=_float_type("dva"), default=0.0, metavar="SIGMA",
                   help="DVA: multiply the weights by N(1, SIGMA) noise every batch (default 0)")
    t.add_argument("--seed", type=_int_type("seed", 0), default=0, help="seed (default 0)")
    t.add_argument("--rows", type=_int_type("rows", 1, 1024), default=32, metavar="R",
                   help="macro rows R the model is mapped onto (default 32)")
    t.add_argument("--cols", type=_int_type("cols", 1, 1024), default=96, metavar="C",
                   help="macro columns C (default 96)")
    t.add_argument("--chip-in-loop", type=_int_type("chip-in-loop", 0), default=None, metavar="SEED",
                   help="after training, fine-tune with chip instance SEED in the loop "
                        "(give its spreads with the chip options)")
    t.add_argument("--chip-epochs", type=_int_type("chip-epochs", 1, 10000), default=10, metavar="E",
                   help="epochs of chip-in-the-loop fine-tuning (default 10)")
    t.add_argument("-o", "--output", required=True, metavar="MODEL",
                   help="output: MODEL.json and MODEL.npz")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_chip_options(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", allow_abbrev=False, help="accuracy of a model, ideal or on chips",
                       description="Accuracy of an exported model on IDX images (preprocessed as "
                                   "recorded in the model) on ideal hardware or sampled chips.")
    e.add_argument("--model", required=True, metavar="MODEL", help="MODEL(.json)")
    e.add_argument("--images", metavar="IDX", help="image file (IDX, raw: 28x28 MNIST or 8x8 digits)")
    e.add_argument("--labels", metavar="IDX", help="label file (IDX)")
    e.add_argument("--range", type=_range_type, metavar="START:STOP",
                   help="use images START..STOP-1 only (e.g. 6000:8000)")
    e.add_argument("--dataset", choices=DATASETS, default=None,
                   help="instead of --images/--labels: the data set's validation split")
    e.add_argument("--chips", type=_int_type("chips", 1, 100000), default=1, metavar="N",
                   help="evaluate N instances, seeds S..S+N-1 (default 1)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.add_argument("--energy", metavar="PRESET", default=None,
                   help="also print energy and latency per image with this preset (a name: "
                        "jssc17, jetcas19, valavi18, or a preset file; docs/ENERGY.md)")
    _add_chip_options(e, seed_help="chip instance seed S (default 0)")
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("sweep", allow_abbrev=False, help="accuracy versus variation: CSV and PNG",
                       description="Accuracy versus variation over N chip instances; writes "
                                   "OUT/sweep.csv and OUT/<experiment>.png.")
    s.add_argument("--experiment", choices=EXPERIMENTS, default="all",
                   help="offset: SRAM offsets, calibration on/off; rram: ReRAM variation, "
                        "fixed point/DVA/DFP/DFP+DVA; all (default)")
    s.add_argument("--dataset", choices=DATASETS, default="digits", help="digits (default) or mnist")
    s.add_argument("--model", metavar="MODEL", help="offset experiment: use this trained model "
                                                    "(default: train the recipe)")
    s.add_argument("--chips", type=_int_type("chips", 1, 100000), default=20, metavar="N",
                   help="chip instances per point (default 20)")
    s.add_argument("--offset-sigmas", type=_float_list("offset-sigmas"),
                   default=(0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0), metavar="LIST",
                   help="offset spreads, cell units (default 0,1,2,3,4,6,8)")
    s.add_argument("--rram-sigmas", type=_float_list("rram-sigmas"),
                   default=(0.0, 0.05, 0.1, 0.15, 0.2, 0.3), metavar="LIST",
                   help="ReRAM spreads, std of ln G (default 0,0.05,0.1,0.15,0.2,0.3)")
    s.add_argument("--comp-rows", type=_int_type("comp-rows", 2, 32), default=8, metavar="K",
                   help="compensation rows per column (default 8)")
    s.add_argument("--rows", type=_int_type("rows", 1, 1024), default=32, metavar="R",
                   help="macro rows (default 32)")
    s.add_argument("--cols", type=_int_type("cols", 1, 1024), default=96, metavar="C",
                   help="macro columns (default 96)")
    s.add_argument("--epochs", type=_int_type("epochs", 1, 10000), default=None, metavar="E",
                   help="BNN training epochs when no --model (default: the recipe's)")
    s.add_argument("--mlp-epochs", type=_int_type("mlp-epochs", 1, 10000), default=None, metavar="E",
                   help="rram: float MLP epochs (default 30)")
    s.add_argument("--dva", type=_float_type("dva"), default=0.3, metavar="SIGMA",
                   help="rram: DVA noise of the dva methods (default 0.3)")
    s.add_argument("--weight-bits", type=_int_type("weight-bits", 2, 16), default=8, metavar="B",
                   help="rram: weight width (default 8)")
    s.add_argument("--cell-bits", type=_int_type("cell-bits", 1, 2), default=2, metavar="b",
                   help="rram: bits per ReRAM cell, 1 or 2 (default 2)")
    s.add_argument("--rram-on-off", type=_float_type("rram-on-off", 1.0, strict=True, allow_inf=True),
                   default=10.0, metavar="R", help="rram: on/off ratio (default 10)")
    s.add_argument("--seed", type=_int_type("seed", 0), default=0, help="training seed (default 0)")
    s.add_argument("-o", "--output", default="build/sweep", metavar="DIR",
                   help="output folder (default build/sweep)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_sweep)

    n = sub.add_parser("energy", allow_abbrev=False,
                       help="events, energy, TOPS/W, area and latency with a technology preset",
                       description="Events, energy per decision (or image), TOPS/W, area and "
                                   "latency of a macro or of a network on it, priced with a "
                                   "technology preset (docs/ENERGY.md). Without --model and "
                                   "--rows: the preset's paper configuration and its published "
                                   "figures.")
    n.add_argument("--preset", required=True, metavar="P",
                   help="jssc17, jetcas19, valavi18, or the path of a preset file")
    n.add_argument("--model", metavar="MODEL", help="a network (MODEL.json): energy per image")
    n.add_argument("--images", metavar="IDX", help="with --model: images (IDX; default: the "
                                                   "model's validation split)")
    n.add_argument("--labels", metavar="IDX", help="label file (optional, not used)")
    n.add_argument("--range", type=_range_type, metavar="START:STOP", help="images START..STOP-1")
    n.add_argument("--dataset", choices=DATASETS, default=None,
                   help="with --model: that data set's validation split")
    n.add_argument("--count", type=_int_type("count", 1), default=None, metavar="N",
                   help="with --model: the first N images only")
    g = n.add_argument_group("a macro of its own (python -m gen's options)")
    g.add_argument("--rows", type=_int_type("rows", 1, 1024), default=None, metavar="R")
    g.add_argument("--cols", type=_int_type("cols", 1, 1024), default=None, metavar="C")
    g.add_argument("--input-bits", type=_int_type("input-bits", 1, 8), default=5, metavar="B")
    g.add_argument("--comp-rows", type=_int_type("comp-rows", 2, 32), default=8, metavar="K",
                   help="compensation rows (also of --model's macro; default 8)")
    g.add_argument("--cols-per-cycle", type=_int_type("cols-per-cycle", 1, 1024), default=None,
                   metavar="P")
    g.add_argument("--pipeline", type=_int_type("pipeline", 0, 4), default=0, metavar="L")
    g.add_argument("--readout-bits", type=_int_type("readout-bits", 1, 16), default=None, metavar="W")
    g.add_argument("--acc-bits", type=_int_type("acc-bits", 1, 32), default=None, metavar="A")
    g.add_argument("--planes", type=_int_type("planes", 1, 8), default=None, metavar="p",
                   help="planes of the RUN (default B)")
    g.add_argument("--input-density", type=_float_type("input-density"), default=0.5, metavar="D",
                   help="probability of an input bit being 1, for word-line events (default 0.5)")
    n.add_argument("--fpga-report", metavar="REPORT", default=None,
                   help="an FPGA build's report.json (python -m fpga build): its macro and "
                        "its achieved Fmax as the clock")
    n.add_argument("--json", action="store_true",
                   help="also print the results as one JSON object on the last line")
    n.set_defaults(func=cmd_energy)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        comp_rows = getattr(args, "comp_rows", 8)
        if comp_rows & (comp_rows - 1):
            raise UsageError(f"argument --comp-rows: must be a power of two in [2, 32], not {comp_rows}")
        if hasattr(args, "rows") and args.command != "energy":
            _check_macro(args)
        return args.func(args)
    except UsageError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
