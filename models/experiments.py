"""Accuracy-versus-variation experiments: SRAM offsets and calibration, ReRAM DFP and DVA.

Two experiments, each a sweep of one spread over N chip instances, returning rows
``dict(experiment, method, sigma, chip_seed, accuracy)`` that :func:`write_csv` and
:func:`plot_sweep` turn into ``sweep.csv`` and one PNG per experiment. The command line
is ``python -m models sweep`` (:mod:`models.cli`); ``docs/EXPERIMENTS.md`` lists every
measured figure with its command.

``offset`` (Zhang and Verma, JETCAS 2019)
    A trained BNN, folded onto an ``R x C`` macro, runs on chips whose every column
    (every tile of every layer is its own array, see :mod:`models.chip_readout`) has a
    comparator offset ``N(0, sigma)`` cell units, through the bit-true golden model
    (:func:`models.macro.readout`, offsets rounded half up into OFFSET). Methods:

    * ``none``: compensation balanced (n = K/2), no calibration;
    * ``calibrated``: the calibration search of docs/ARCHITECTURE.md section 4
      (:func:`models.macro.calibrate`) sets every column's compensation cells; the
      residual is ``o + 2n - K`` in ``[-2, 1]`` per bit-plane readout;
    * ``calibrated+trim``: after the search, one RUN with all inputs 0 reads every
      column's residual ``r`` (the readout is a signed integer, not just a sign), and
      the host folds it into the thresholds: ``THRESH += r (2^P - 1)`` per row tile
      (and subtracts it from the last layer's scores). That is exactly the same as
      subtracting ``r`` from every plane readout, which is how it is computed here.

    One compensation *step* (one cell flipped) moves the column by 2 cell units, so
    ``sigma = 4`` cell units is a spread of two compensation steps.

``rram`` (Long, She, Mukhopadhyay, DATE 2019)
    A float MLP with multi-bit weights (default 8-bit symmetric fixed point, bit-sliced
    onto 2-bit ReRAM cells, differential mapping, on/off ratio 10) runs on ReRAM chips
    with log-normal conductance variation ``sigma`` (:func:`models.devices.rram_mac`;
    layer ``l`` of instance ``s`` is ``sample_chip(config, (s, l), n_in, n_out)``).
    Inputs are the 5-bit pixels applied bit-serially (linear, so the shift-added
    bit-plane currents equal ``rram_mac`` of the integer input); activations (ReLU) and
    biases are digital and exact. Methods:

    * ``fixed``: one radix point for the whole network (:func:`models.dfp.fixed_frac`);
    * ``dva``: the same, for an MLP trained with DVA (every mini-batch multiplies the
      weights element-wise by fresh ``N(1, dva_sigma)`` noise);
    * ``dfp``: each layer its own radix point (:func:`models.dfp.dfp_frac`);
    * ``dfp+dva``: both.
"""

from __future__ import annotations

import csv
import dataclasses
import io

import numpy as np

from .augment import Augmenter
from .bnn import BNN, RECIPES, TrainConfig, accuracy, recipe, train
from .chip import ChipConfig, sample_chips
from .chip_readout import predict_chips
from .datasets import Dataset
from .devices import rram_mac
from .dfp import dfp_frac, fixed_frac, to_fixed
from .export import FoldedNet, infer_folded

__all__ = [
    "CSV_COLUMNS", "OFFSET_METHODS", "RRAM_METHODS", "DEFAULT_OFFSET_SIGMAS",
    "DEFAULT_RRAM_SIGMAS", "MLP", "train_mlp", "mlp_accuracy", "RramSetup",
    "offset_experiment", "rram_experiment", "read_noise_experiment", "DEFAULT_READ_NOISES",
    "summarize", "write_csv", "read_csv", "energy_experiment", "ENERGY_CSV_COLUMNS",
    "DEFAULT_COMP_ROWS", "energy_csv_bytes", "energy_png_bytes",
    "plot_sweep", "atomic_write_bytes", "train_bnn", "chip_blocks", "block_correct", "mlp_block",
]

CSV_COLUMNS = ("experiment", "method", "sigma", "chip_seed", "accuracy")
OFFSET_METHODS = ("none", "calibrated", "calibrated+trim")
RRAM_METHODS = ("fixed", "dva", "dfp", "dfp+dva")
DEFAULT_OFFSET_SIGMAS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
DEFAULT_RRAM_SIGMAS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
DEFAULT_READ_NOISES = (0.0, 0.25, 0.5, 0.75, 1.0)


# --- BNN training -------------------------------------------------------------------

def train_bnn(data: Dataset, *, seed: int = 0, epochs: int | None = None, dva: float = 0.0,
              recipe_name: str | None = None, config: TrainConfig | None = None, hook=None,
              progress=None) -> tuple[BNN, list]:
    """Train the recipe ``recipe_name`` (``models.bnn.RECIPES``; default: the one named
    like the data set, ``data.name``) on ``data``; returns the model and the per-epoch
    history.

    ``config`` replaces the recipe's :class:`TrainConfig` (``seed``, ``epochs`` and
    ``dva`` are then ignored); the recipe still gives the layer sizes. A configuration
    with augmentation warps ``data.train_images`` (:class:`models.augment.Augmenter`,
    through the data set's own pipeline). The caller loads ``data`` with the recipe's
    preprocessing (``RECIPES[name]["inputs"]``).
    """
    name = data.name if recipe_name is None else recipe_name
    if RECIPES.get(name, {}).get("dataset", data.name) != data.name:
        raise ValueError(f"recipe {name!r} is for {RECIPES[name]['dataset']}, not {data.name}")
    overrides = dict(seed=seed, dva_sigma=dva)
    if epochs is not None:
        overrides["epochs"] = epochs
    sizes, default = recipe(name, **overrides)
    config = default if config is None else config
    seed = config.seed
    augmenter = None if config.augment is None else Augmenter.for_dataset(data, config.augment)
    sizes = (data.features,) + tuple(sizes[1:])
    model = BNN(sizes, input_bits=data.input_bits, seed=seed)
    history = train(model, data.x_train, data.y_train, config=config, hook=hook,
                    augment=augmenter, progress=progress)
    return model, history


# --- SRAM offsets and calibration ----------------------------------------------------

def chip_blocks(seeds, chunk: int) -> list:
    """``seeds`` cut into blocks of at most ``chunk`` chips: the unit of work."""
    seeds = list(seeds)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, not {chunk!r}")
    return [seeds[i:i + chunk] for i in range(0, len(seeds), chunk)]


def block_correct(task: dict, *, x, y, net: FoldedNet | None = None, nets: dict | None = None,
                  images=None, comp_rows: int = 8) -> np.ndarray:
    """Correct predictions ``(len(seeds),)`` of one block of chips: ``task`` holds
    ``config`` (ChipConfig), ``seeds``, ``backend``, ``calibrate`` and ``trim``
    (:func:`models.chip_readout.predict_chips`), and ``net``, the label of its network
    in ``nets``, when ``net`` is not given. A Dask task of ``models eval/sweep``."""
    if net is None:
        net = nets[task["net"]]
    pred = predict_chips(net, task["config"], task["seeds"], x, comp_rows=comp_rows,
                         backend=task["backend"], calibrate=task["calibrate"],
                         trim=task["trim"], images=images)
    return np.sum(pred == np.asarray(y)[None], axis=1)


def _local(runner):
    from .cluster import Runner
    return Runner(quiet=True) if runner is None else runner


def offset_experiment(net: FoldedNet, x, y, *, sigmas=DEFAULT_OFFSET_SIGMAS, chips: int = 20,
                      comp_rows: int = 8, methods=OFFSET_METHODS, runner=None,
                      chunk: int = 20) -> list[dict]:
    """Accuracy of ``net`` on chips with comparator offsets ``N(0, sigma)`` cell units.

    Returns one row per (method, sigma, chip instance), plus the ideal-hardware
    accuracy as method ``ideal`` (sigma 0, ``chip_seed`` -1). The chips run in blocks of
    ``chunk`` on ``runner`` (a :class:`models.cluster.Runner`; default this process).
    """
    for m in methods:
        if m not in OFFSET_METHODS:
            raise ValueError(f"method must be one of {', '.join(OFFSET_METHODS)}, not {m!r}")
    y = np.asarray(y)
    rows = [dict(experiment="offset", method="ideal", sigma=0.0, chip_seed=-1,
                 accuracy=accuracy(infer_folded(net, x), y))]
    tasks = []
    for sigma in sigmas:
        config = ChipConfig(offset_sigma=float(sigma))
        for method in methods:
            for block in chip_blocks(range(chips), chunk):
                tasks.append(dict(config=config, seeds=block, backend="macro",
                                  calibrate=method != "none", trim=method == "calibrated+trim",
                                  method=method, sigma=float(sigma)))
    runner = _local(runner)
    with runner:
        correct = runner.map(block_correct, tasks, shared=dict(net=net, x=np.asarray(x), y=y,
                                                               comp_rows=comp_rows),
                             weights=[len(t["seeds"]) for t in tasks], desc="offset sweep")
    return rows + _chip_rows("offset", tasks, correct, len(y))


def _chip_rows(experiment: str, tasks: list, correct: list, images: int) -> list[dict]:
    """One row per chip of every block: ``correct`` holds the blocks' counts of correct
    predictions, in the order of ``tasks`` (with their ``method`` and ``sigma``)."""
    return [dict(experiment=experiment, method=task["method"], sigma=task["sigma"], chip_seed=s,
                 accuracy=float(k) / images)
            for task, c in zip(tasks, correct) for s, k in zip(task["seeds"], c)]


# --- SRAM read noise: trained networks side by side ------------------------------------

def read_noise_experiment(nets: dict, x, y, *, base: ChipConfig, noises=DEFAULT_READ_NOISES,
                          chips: int = 20, comp_rows: int = 8, calibrate: bool = True,
                          trim=True, own_chips: dict | None = None, images=None,
                          runner=None, chunk: int = 20) -> list[dict]:
    """Accuracy of several trained networks against the chips' read noise.

    Every network of ``nets`` (label -> FoldedNet) runs on the same chip instances
    ``0 .. chips-1`` of ``base`` (its spreads) with ``read_noise`` set to each value of
    ``noises``, through the analog model, calibrated and trimmed as asked. Rows: method
    ``label`` (or, for a label in ``own_chips`` (label -> chip seed, a network trained
    with that chip in the loop), ``"label, own chip"`` on that chip alone and
    ``"label, other chips"`` on the instances other than it), ``sigma`` = read noise;
    plus ``"label: ideal hardware"`` (sigma 0, ``chip_seed`` -1). ``images``: the image
    index of every row of ``x`` (the read-noise key, :func:`predict_chips`), so that each
    chip's figure is the one ``models eval`` gives. The chips run in blocks of ``chunk``
    on ``runner`` (a :class:`models.cluster.Runner`; default this process).
    """
    if base.technology != "sram":
        raise ValueError("the read-noise experiment needs SRAM chips")
    own_chips = dict(own_chips or {})
    unknown = set(own_chips) - set(nets)
    if unknown:
        raise ValueError(f"own_chips names networks not in nets: {sorted(unknown)}")
    y = np.asarray(y)
    rows = []
    for label, net in nets.items():
        rows.append(dict(experiment="noise", method=f"{label}: ideal hardware", sigma=0.0,
                         chip_seed=-1, accuracy=accuracy(infer_folded(net, x), y)))
    tasks = []
    for noise in noises:
        config = dataclasses.replace(base, read_noise=float(noise))
        for label in nets:
            own = own_chips.get(label)
            groups = [(label, list(range(chips)))] if own is None else [
                (f"{label}, own chip", [own]),
                (f"{label}, other chips", [s for s in range(chips) if s != own][:chips])]
            for method, seeds in groups:
                for block in chip_blocks(seeds, chunk):
                    tasks.append(dict(config=config, seeds=block, backend="analog",
                                      calibrate=calibrate, trim=trim, net=label, method=method,
                                      sigma=float(noise)))
    runner = _local(runner)
    with runner:
        correct = runner.map(block_correct, tasks,
                             shared=dict(nets=nets, x=np.asarray(x), y=y, images=images,
                                         comp_rows=comp_rows),
                             weights=[len(t["seeds"]) for t in tasks], desc="noise sweep")
    return rows + _chip_rows("noise", tasks, correct, len(y))


# --- accuracy against energy per image: compensation rows ------------------------------

ENERGY_CSV_COLUMNS = ("experiment", "comp_rows", "planes", "chip_seed", "accuracy",
                      "energy_pj_per_image", "latency_ns_per_image", "preset")
DEFAULT_COMP_ROWS = (2, 4, 8, 16, 32)


def _comp_rows_block(task: dict, **shared) -> np.ndarray:
    """:func:`block_correct` of one block on the macro with ``task["comp_rows"]`` K."""
    return block_correct(task, comp_rows=task["comp_rows"], **shared)


def energy_experiment(net: FoldedNet, x, y, *, preset, config: ChipConfig | None,
                      comp_rows=DEFAULT_COMP_ROWS, chips: int = 20, backend: str = "macro",
                      calibrate: bool = False, trim=False, images=None, runner=None,
                      chunk: int = 20) -> list[dict]:
    """Accuracy on chips and energy per image of ``net`` for every K of ``comp_rows``.

    For each K the network runs on the macro ``macro_params_for(net, K)``: on chip
    instances ``0 .. chips-1`` of ``config`` (as :func:`block_correct`, the path of
    ``models eval --chips``) and, priced with ``preset`` (:class:`models.energy.Preset`),
    through the network runner's events on ``x`` (the path of ``models eval --energy``).
    The first layer always runs all its planes (``planes`` in the rows): the model format
    fixes NPLANES of every RUN (docs/MODEL_FORMAT.md).

    Returns rows of :data:`ENERGY_CSV_COLUMNS`: per K one ideal-hardware row
    (``chip_seed`` -1) and one row per chip (none when ``config`` is None).
    """
    from .chip_readout import macro_params_for
    from .energy import ArrayShape, evaluate, macs_per_image, network_events

    y = np.asarray(y)
    x = np.asarray(x, dtype=np.int64)
    ideal = accuracy(infer_folded(net, x), y)
    planes = net.layers[0].planes
    rows, priced = [], {}
    for k in comp_rows:
        p = macro_params_for(net, k)
        report = evaluate(preset, network_events(p, net, x), ArrayShape.of(p),
                          ops=2.0 * macs_per_image(net), decisions=len(x))
        priced[k] = dict(experiment="energy", comp_rows=k, planes=planes, preset=preset.name,
                         energy_pj_per_image=report.energy_pj_per_decision,
                         latency_ns_per_image=report.latency_ns)
        rows.append(dict(priced[k], chip_seed=-1, accuracy=ideal))
    if config is None:
        return rows
    tasks = [dict(config=config, seeds=block, backend=backend, calibrate=calibrate, trim=trim,
                  comp_rows=k) for k in comp_rows for block in chip_blocks(range(chips), chunk)]
    runner = _local(runner)
    with runner:
        correct = runner.map(_comp_rows_block, tasks,
                             shared=dict(net=net, x=x, y=y, images=images),
                             weights=[len(t["seeds"]) for t in tasks], desc="energy sweep")
    return rows + [dict(priced[task["comp_rows"]], chip_seed=s, accuracy=float(c) / len(y))
                   for task, block in zip(tasks, correct) for s, c in zip(task["seeds"], block)]


def energy_csv_bytes(rows) -> bytes:
    """``sweep.csv`` of the energy experiment: columns :data:`ENERGY_CSV_COLUMNS`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ENERGY_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{r[k]:.6f}" if k == "accuracy" else
                             f"{r[k]:.6g}" if k.endswith("_per_image") else r[k])
                         for k in ENERGY_CSV_COLUMNS})
    return buf.getvalue().encode()


def energy_summary(rows) -> list[dict]:
    """Per K: ``comp_rows, planes, n`` (chips), ``mean, min`` (accuracy over the chips,
    the ideal-hardware accuracy when there are none), ``ideal``, ``energy_pj_per_image``,
    ``latency_ns_per_image``."""
    out = []
    for k in dict.fromkeys(r["comp_rows"] for r in rows):
        mine = [r for r in rows if r["comp_rows"] == k]
        ideal = next(r["accuracy"] for r in mine if r["chip_seed"] == -1)
        accs = np.array([r["accuracy"] for r in mine if r["chip_seed"] != -1] or [ideal])
        out.append(dict(comp_rows=k, planes=mine[0]["planes"], n=len(mine) - 1,
                        mean=float(accs.mean()), min=float(accs.min()), ideal=ideal,
                        energy_pj_per_image=mine[0]["energy_pj_per_image"],
                        latency_ns_per_image=mine[0]["latency_ns_per_image"]))
    return out


def energy_png_bytes(rows, title: str | None = None) -> bytes:
    """A PNG of accuracy (%) against energy per image (nJ), one point per K: the mean
    over chips (filled) and the worst chip (open) joined by a line, labelled K/planes;
    the ideal-hardware accuracy dashed. Points at the same place share one label."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = energy_summary(rows)
    if not summary:
        raise ValueError("no rows of the energy experiment to plot")
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    ax.axhline(100 * summary[0]["ideal"], color="k", ls="--", lw=1,
               label=f"ideal hardware ({100 * summary[0]['ideal']:.1f} %)")
    e = np.array([s["energy_pj_per_image"] for s in summary]) / 1e3
    mean = 100 * np.array([s["mean"] for s in summary])
    low = 100 * np.array([s["min"] for s in summary])
    n = summary[0]["n"]
    ax.vlines(e, low, mean, color="C0", lw=1)
    ax.plot(e, mean, "o", color="C0", label=f"mean over {n} chips" if n else "ideal hardware")
    if n:
        ax.plot(e, low, "o", mfc="none", color="C0", label="worst chip")
    labels: dict = {}
    for s, ei, m in zip(summary, e, mean):
        labels.setdefault((round(float(ei), 6), round(float(m), 4)), []).append(
            f"{s['comp_rows']}/{s['planes']}")
    for (ei, m), names in labels.items():
        ax.annotate("K/p " + ", ".join(names), (ei, m), textcoords="offset points",
                    xytext=(6, 4), fontsize=8)
    span = float(e.max() - e.min()) or 0.1 * float(e.max()) or 1.0
    ax.set_xlim(float(e.min()) - 0.3 * span, float(e.max()) + 0.6 * span)
    ax.set_xlabel(f"energy per image (nJ), preset {rows[0]['preset']}")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "accuracy against energy per image: compensation rows K, planes p")
    ax.set_ylim(max(0.0, 5 * np.floor(float(low.min()) / 5) - 5), 100)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return _png(fig)


# --- ReRAM: a multi-bit-weight float MLP, DFP and DVA -----------------------------------

@dataclasses.dataclass
class MLP:
    """Float MLP ``z_l = a_{l-1} W_l + b_l``, ReLU between layers, softmax output.

    Members
    -------
    sizes : tuple of int
        Widths, input first.
    params : dict of str -> ndarray (float32)
        ``W{l}`` (n_in, n_out) and ``b{l}`` (n_out,).
    """

    sizes: tuple
    params: dict

    @property
    def layers(self) -> int:
        return len(self.sizes) - 1

    def weights(self) -> list:
        return [self.params[f"W{l}"] for l in range(self.layers)]


def train_mlp(x, y, sizes, *, epochs: int = 30, dva_sigma: float = 0.0, seed: int = 0,
              lr: float = 3e-3, lr_final: float = 1.5e-4, batch_size: int = 64) -> MLP:
    """Train an :class:`MLP` with Adam on softmax cross-entropy.

    ``x`` are the raw unsigned pixels (what the crossbar's rows receive). DVA (DATE
    2019): with ``dva_sigma > 0`` every mini-batch multiplies the weights element-wise
    by fresh ``N(1, dva_sigma)`` noise in the forward pass; the backward pass goes
    through the noisy weights (exact chain rule). He initialisation scaled by the
    input's RMS keeps the first layer's pre-activations near unit spread.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    sizes = tuple(int(s) for s in sizes)
    rms = float(np.sqrt(np.mean(x * x))) or 1.0
    params = {}
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        scale = np.sqrt(2.0 / n_in) / (rms if l == 0 else 1.0)
        params[f"W{l}"] = (rng.standard_normal((n_in, n_out)) * scale).astype(np.float32)
        params[f"b{l}"] = np.zeros(n_out, np.float32)
    m1 = {k: np.zeros_like(v) for k, v in params.items()}
    m2 = {k: np.zeros_like(v) for k, v in params.items()}
    layers = len(sizes) - 1
    step = 0
    for epoch in range(epochs):
        lr_e = lr * (lr_final / lr) ** (epoch / max(1, epochs - 1))
        order = rng.permutation(len(x))
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            acts, w_eff, noise = [x[idx]], [], []
            a = acts[0]
            for l in range(layers):
                w = params[f"W{l}"]
                if dva_sigma > 0:
                    noise.append(rng.normal(1.0, dva_sigma, w.shape).astype(np.float32))
                    w = w * noise[l]
                w_eff.append(w)
                z = a @ w + params[f"b{l}"]
                a = np.maximum(z, 0) if l < layers - 1 else z
                acts.append(a)
            z = acts[-1] - acts[-1].max(axis=1, keepdims=True)
            g = np.exp(z)
            g /= g.sum(axis=1, keepdims=True)
            g[np.arange(len(idx)), y[idx]] -= 1
            g /= len(idx)
            grads = {}
            for l in range(layers - 1, -1, -1):
                gw = acts[l].T @ g
                if dva_sigma > 0:
                    gw *= noise[l]
                grads[f"W{l}"] = gw
                grads[f"b{l}"] = g.sum(axis=0)
                if l:
                    g = (g @ w_eff[l].T) * (acts[l] > 0)
            step += 1
            c1, c2 = 1 - 0.9 ** step, 1 - 0.999 ** step
            for k, gk in grads.items():
                m1[k] = 0.9 * m1[k] + 0.1 * gk
                m2[k] = 0.999 * m2[k] + 0.001 * gk * gk
                params[k] -= lr_e * (m1[k] / c1) / (np.sqrt(m2[k] / c2) + 1e-8)
    return MLP(sizes, params)


@dataclasses.dataclass(frozen=True)
class RramSetup:
    """ReRAM array and weight format of the DFP/DVA experiment.

    Members
    -------
    weight_bits : int
        Width of the symmetric fixed-point weights (sign included).
    cell_bits : int
        Bits per ReRAM cell (1 or 2).
    on_off_ratio : float
        ``G_LRS / G_HRS``.
    mapping : str
        ``"differential"`` or ``"offset"`` (:func:`models.dfp.slice_weights`).
    """

    weight_bits: int = 8
    cell_bits: int = 2
    on_off_ratio: float = 10.0
    mapping: str = "differential"

    def config(self, sigma: float) -> ChipConfig:
        return ChipConfig(technology="rram", cell_sigma=float(sigma), cell_dist="lognormal",
                          on_off_ratio=self.on_off_ratio, cell_bits=self.cell_bits,
                          weight_bits=self.weight_bits, mapping=self.mapping)


def mlp_fracs(model: MLP, bits: int, dfp: bool) -> list[int]:
    """Fractional lengths per layer: each its own (DFP) or one for all (fixed point)."""
    ws = model.weights()
    if dfp:
        return [dfp_frac(w, bits) for w in ws]
    return [fixed_frac(ws, bits)] * len(ws)


def mlp_accuracy(model: MLP, x, y, fracs, setup: RramSetup, sigma: float, seeds) -> np.ndarray:
    """Accuracy ``(len(seeds),)`` of the quantised MLP on ReRAM chip instances ``seeds``
    (one instance = one array per layer, ``sample_chip(config, (s, l), ...)``).
    ``sigma == 0`` evaluates the quantised weights exactly (no chip drawn)."""
    y = np.asarray(y)
    seeds = list(seeds)
    a = np.asarray(x, dtype=np.float32)
    config = setup.config(sigma)
    for l in range(model.layers):
        w = model.params[f"W{l}"]
        q = to_fixed(w, setup.weight_bits, fracs[l])
        if config.is_ideal:
            z = np.matmul(a.astype(np.float64), q.astype(np.float64))
            if z.ndim == 2:
                z = np.broadcast_to(z, (len(seeds),) + z.shape)
        else:
            chips = sample_chips(config, [(s, l) for s in seeds], w.shape[0], w.shape[1])
            z = rram_mac(a, q, chips).astype(np.float64)
        z = np.ldexp(z, -fracs[l]) + model.params[f"b{l}"]
        a = np.maximum(z, 0).astype(np.float32) if l < model.layers - 1 else z
    return np.mean(np.argmax(a, axis=-1) == y[None], axis=1)


def mlp_block(task: dict, *, models: dict, x, y, setup: "RramSetup") -> np.ndarray:
    """Accuracies of one block of ReRAM chips: ``task`` holds ``method``, ``fracs``,
    ``sigma`` and ``seeds`` (:func:`mlp_accuracy`). A Dask task of ``models sweep``."""
    model = models[task["method"]]
    return mlp_accuracy(model, x, y, task["fracs"], setup, task["sigma"], task["seeds"])


def rram_experiment(data: Dataset, *, sigmas=DEFAULT_RRAM_SIGMAS, chips: int = 20,
                    setup: RramSetup = RramSetup(), dva_sigma: float = 0.3, epochs: int = 30,
                    hidden=(96, 96), seed: int = 0, runner=None,
                    chunk: int = 20) -> tuple[list[dict], dict]:
    """DFP and DVA against ReRAM conductance variation (module docstring).

    Returns the rows and an info dict (float accuracies, fractional lengths per method).
    The two MLPs train here; the chips run in blocks of ``chunk`` on ``runner``.
    """
    sizes = (data.features,) + tuple(hidden) + (data.classes,)
    trained = {0.0: train_mlp(data.x_train, data.y_train, sizes, epochs=epochs, seed=seed)}
    trained[dva_sigma] = train_mlp(data.x_train, data.y_train, sizes, epochs=epochs,
                                   dva_sigma=dva_sigma, seed=seed)
    xv = data.x_val.astype(np.float32)
    info = dict(float_accuracy={}, fracs={}, sizes=list(sizes), dva_sigma=dva_sigma,
                setup=dataclasses.asdict(setup))
    models, tasks = {}, []
    for method in RRAM_METHODS:
        model = trained[dva_sigma if "dva" in method else 0.0]
        models[method] = model
        fracs = mlp_fracs(model, setup.weight_bits, dfp=method.startswith("dfp"))
        info["fracs"][method] = fracs
        z = xv
        for l in range(model.layers):
            z = z @ model.params[f"W{l}"] + model.params[f"b{l}"]
            z = np.maximum(z, 0) if l < model.layers - 1 else z
        info["float_accuracy"][method] = accuracy(np.argmax(z, axis=1), data.y_val)
        for sigma in sigmas:
            for block in chip_blocks(range(chips), chunk):
                tasks.append(dict(method=method, fracs=fracs, sigma=float(sigma), seeds=block))
    runner = _local(runner)
    with runner:
        accs = runner.map(mlp_block, tasks, shared=dict(models=models, x=xv, y=data.y_val,
                                                        setup=setup),
                          weights=[len(t["seeds"]) for t in tasks], desc="rram sweep")
    rows = []
    for task, acc in zip(tasks, accs):
        for s, a in zip(task["seeds"], acc):
            rows.append(dict(experiment="rram", method=task["method"], sigma=task["sigma"],
                             chip_seed=s, accuracy=float(a)))
    return rows, info


# --- results: summary, CSV, plots ---------------------------------------------------

def summarize(rows) -> list[dict]:
    """Mean and standard deviation over chip instances per (experiment, method, sigma),
    in first-seen order: dicts with ``experiment, method, sigma, n, mean, std, min``."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["experiment"], r["method"], float(r["sigma"])), []).append(
            float(r["accuracy"]))
    out = []
    for (exp, method, sigma), accs in groups.items():
        a = np.array(accs)
        out.append(dict(experiment=exp, method=method, sigma=sigma, n=len(a), mean=float(a.mean()),
                        std=float(a.std()), min=float(a.min())))
    return out


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a
    rename, so that ``path`` is either absent, its old content, or complete
    (:func:`models.cmdline.atomic_write`)."""
    from .cmdline import atomic_write
    atomic_write(path, data)


def csv_bytes(rows) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{r[k]:.6f}" if k == "accuracy" else r[k]) for k in CSV_COLUMNS})
    return buf.getvalue().encode()


def write_csv(rows, path) -> None:
    """``path``: columns :data:`CSV_COLUMNS`, one row per chip instance (atomic write)."""
    atomic_write_bytes(path, csv_bytes(rows))


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return [dict(experiment=r["experiment"], method=r["method"], sigma=float(r["sigma"]),
                     chip_seed=int(r["chip_seed"]), accuracy=float(r["accuracy"]))
                for r in csv.DictReader(f)]


_LABELS = {
    "offset": ("comparator offset sigma (cell units; 1 compensation step = 2 units)",
               "SRAM comparator offsets: accuracy vs offset spread"),
    "rram": ("ReRAM conductance variation sigma (std of ln G)",
             "ReRAM variation: fixed point vs DFP / DVA"),
    "noise": ("read noise (cell units per read)",
              "SRAM read noise, calibrated and trimmed chips: training methods"),
}

#: Methods drawn as horizontal reference lines: the ideal-hardware accuracy.
_IDEAL_SUFFIX = ": ideal hardware"


def png_bytes(rows, experiment: str, title: str | None = None) -> bytes:
    """A PNG of accuracy (%) versus sigma, one line per method with a mean ± std band
    over chip instances; an ``ideal`` method is drawn as a horizontal dashed line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = [s for s in summarize(rows) if s["experiment"] == experiment]
    if not summary:
        raise ValueError(f"no rows of experiment {experiment!r} to plot")
    xlabel, default_title = _LABELS.get(experiment, ("sigma", experiment))
    fig, ax = plt.subplots(figsize=(10 if experiment == "noise" else 7, 4.5), dpi=100)
    if experiment == "noise":
        _plot_noise(ax, summary)
        ax.set_xlabel(xlabel)
        ax.set_title(title or default_title)
        return _png(fig)
    methods = list(dict.fromkeys(s["method"] for s in summary))
    for i, method in enumerate(methods):
        pts = sorted((s["sigma"], s["mean"], s["std"]) for s in summary if s["method"] == method)
        if method == "ideal":
            ax.axhline(100 * pts[0][1], color="k", ls="--", lw=1,
                       label=f"ideal hardware ({100 * pts[0][1]:.1f} %)")
            continue
        sig, mean, std = (np.array(v) for v in zip(*pts))
        color = f"C{i}"
        ax.plot(sig, 100 * mean, "o-", color=color, label=method, ms=4)
        ax.fill_between(sig, 100 * (mean - std), 100 * (mean + std), color=color, alpha=0.2)
    n = max(s["n"] for s in summary if s["method"] != "ideal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"accuracy (%), mean ± std over {n} chips")
    ax.set_title(title or default_title)
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize=9)
    return _png(fig)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _plot_noise(ax, summary) -> None:
    """The read-noise experiment: per network one colour, its mean over chips (solid,
    ± std band) and its worst chip (dotted); a network's own chip (chip in the loop)
    dashed; the legend gives each network's ideal-hardware accuracy."""
    ideal = {s["method"][:-len(_IDEAL_SUFFIX)]: s["mean"] for s in summary
             if s["method"].endswith(_IDEAL_SUFFIX)}
    labels = list(ideal)
    lowest = 100.0
    for method in dict.fromkeys(s["method"] for s in summary):
        if method.endswith(_IDEAL_SUFFIX):
            continue
        label = next(l for l in labels if method == l or method.startswith(l + ", "))
        color = f"C{labels.index(label)}"
        pts = sorted((s["sigma"], s["mean"], s["std"], s["min"], s["n"]) for s in summary
                     if s["method"] == method)
        sig, mean, std, low, n = (np.array(v) for v in zip(*pts))
        name = method if method != label else f"{label} ({n[0]} chips)"
        if method == label or method == label + ", own chip":
            name += f"; ideal hardware {100 * ideal[label]:.1f} %"
        if method.endswith(", own chip"):
            ax.plot(sig, 100 * mean, "s--", color=color, label=name, ms=4)
        else:
            ax.plot(sig, 100 * mean, "o-", color=color, label=name + ", mean", ms=4)
            ax.fill_between(sig, 100 * (mean - std), 100 * (mean + std), color=color, alpha=0.15)
            ax.plot(sig, 100 * low, ":", color=color, label="worst chip", lw=1.2)
        lowest = min(lowest, 100 * float(low.min()))
    ax.set_ylabel("accuracy (%) on calibrated, trimmed chips")
    ax.set_ylim(max(0.0, 5 * np.floor(lowest / 5) - 5), 100)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)


def plot_sweep(rows, experiment: str, path, title: str | None = None) -> None:
    """Write :func:`png_bytes` to ``path`` atomically."""
    atomic_write_bytes(path, png_bytes(rows, experiment, title))
