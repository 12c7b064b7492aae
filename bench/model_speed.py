"""Speed of chip Monte Carlo against the matrix-product floor of the same work.

``python -m bench.model_speed`` (defaults: 100 chip instances, 2000 images of the MNIST
subset, 100-96-96-10 on a 32x96 macro) runs, per configuration, N chips x M images
through the network (:meth:`models.chip_readout.ChipReadout.predict`, chips in blocks of
``--chunk``) and times, on the same single thread, the bare float32 matrix products of
the same shapes: per layer, tile and input plane one product ``(M, r) @ (r, c)`` (``r``,
``c`` the rows and columns the tile uses), once per chip where each chip's weights are
its own (cell spread or stuck cells, analog model) and once for all chips where they are
shared (the first layer's inputs are the same for every chip; later layers' inputs are
per chip, so those products have ``N M`` rows). The floor is the faster of the products
done whole and done in the image blocks the evaluation uses. It prints one table row per
configuration with both times and their ratio (target: within 3 times), the number of
predictions that differ from the straightforward evaluation
(:meth:`~models.chip_readout.ChipReadout.predict_reference`) on a subset, and ends with
one JSON line: per configuration ``seconds`` (sampling, calibration and inference),
``floor_seconds``, ``ratio``, ``chip_images_per_s``, and the comparison. Times are the
process's CPU seconds (``time.process_time``): on a shared machine other jobs inflate
wall time, not CPU time, and with one thread the two agree on an idle machine; the JSON
line also holds each run's wall seconds, and ``cpu``, the CPU and its widest SIMD
extension (the ratios depend on it: the floor's products use the widest vectors, and so
do the compiled passes, whose per-read table loads become gathers with AVX-512).

``--model MODEL`` uses a trained exported model; by default an untrained network of the
same shape (the cost does not depend on the weights). ``--readout numpy`` times the numpy
pass instead of the compiled one (:mod:`models.fused_readout`; the default where numba is
installed; its first call, which compiles it or loads it from numba's cache, is made
outside the clock). OpenBLAS runs as in ``python -m models`` (:mod:`models.blas_env`:
one thread, its SkylakeX kernel where the CPU runs it), so the evaluation and the floor
use the products a Monte Carlo of ``models eval`` uses; the header and the JSON line
(``blas``) name the kernel.
"""

from __future__ import annotations

import os

from models.blas_env import set_blas_environment

set_blas_environment()

import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from models import cmdline  # noqa: E402
from models.blas_env import blas_in_use  # noqa: E402
from models.bnn import BNN  # noqa: E402
from models.chip import ChipConfig  # noqa: E402
from models.chip_readout import ChipReadout  # noqa: E402
from models.datasets import load_dataset  # noqa: E402
from models.export import export_model  # noqa: E402
from models.montecarlo import DEFAULT_MAX_ELEMENTS  # noqa: E402

#: name -> (config, backend, calibrate, trim)
CONFIGS = {
    "typical SRAM + read noise 0.3, analog, calibrated": (
        ChipConfig.typical("sram"), "analog", True, False),
    "typical SRAM + read noise 0.5, analog, calibrated + trim": (
        ChipConfig.typical("sram", read_noise=0.5), "analog", True, True),
    "offsets sigma 4, analog": (ChipConfig(offset_sigma=4.0), "analog", False, False),
    "offsets sigma 4, bit-true macro, calibrated": (
        ChipConfig(offset_sigma=4.0), "macro", True, False),
    "typical SRAM, bit-true macro, calibrated + trim": (
        ChipConfig.typical("sram", read_noise=0.0), "macro", True, True),
}
QUICK = ("typical SRAM + read noise 0.3, analog, calibrated",)


def per_chip_weights(config: ChipConfig, backend: str) -> bool:
    """Whether each chip's weight matrices are its own (so one product per chip)."""
    return config.stuck_prob > 0 or (backend == "analog" and config.cell_sigma > 0)


#: SIMD extensions named by :func:`cpu`, widest first: the passes' vector width (and, on
#: AVX-512, whether the midpoint loads are gathers) follows them.
SIMD = ("avx512f", "avx2", "avx", "sse4_2")


def cpu() -> str:
    """The CPU's model name and its widest SIMD extension of :data:`SIMD` (Linux's
    /proc/cpuinfo; ``"unknown"`` where it cannot be read), e.g. ``"AMD EPYC, avx512f"``."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown"
    fields = dict(line.split(":", 1) for line in text.splitlines()[:40] if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    simd = next((f for f in SIMD if f in flags), "none of " + ", ".join(SIMD))
    return f"{fields.get('model name', 'unknown model')}, {simd}"


def clock() -> float:
    """The process's CPU seconds: on a shared machine the other jobs' load inflates wall
    time, not this (one thread: CPU time is wall time on an idle machine)."""
    return time.process_time()


def _best(f, repeat=3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = clock()
        f()
        best = min(best, clock() - t0)
    return best


def _product_seconds(x, w, block_rows) -> float:
    """Best time of ``x @ w`` (batched when 3-d) done whole or in blocks of rows."""
    out = np.empty(x.shape[:-1] + w.shape[-1:], np.float32)
    whole = _best(lambda: np.matmul(x, w, out=out))
    rows = x.shape[-2]

    def blocked():
        for m0 in range(0, rows, block_rows):
            np.matmul(x[..., m0:m0 + block_rows, :], w, out=out[..., m0:m0 + block_rows, :])
    return min(whole, _best(blocked))


def floor_seconds(net, chips: int, chunk: int, images: int, own_weights: bool, block: int) -> float:
    """Seconds of the bare float32 products of the evaluation's shapes (module docstring)
    for ``chips`` chips evaluated ``chunk`` at a time with blocks of ``block`` elements."""
    rng = np.random.default_rng(0)
    total = 0.0
    R, C = net.rows, net.cols
    per_chunk = chips / chunk
    for l, layer in enumerate(net.layers):
        for t in range(layer.row_tiles):
            r = min(R, layer.inputs - t * R)
            for j in range(layer.col_tiles):
                c = min(C, layer.outputs - j * C)
                if l == 0 and not own_weights:
                    # One product of the shared inputs and shared weights for every chip.
                    x = (rng.random((images, r)) < 0.5).astype(np.float32)
                    w = rng.standard_normal((r, c)).astype(np.float32)
                    seconds = _product_seconds(x, w, max(1, block // c))
                elif l == 0:
                    # Shared inputs, every chip's own matrix: side by side in one product.
                    x = (rng.random((images, r)) < 0.5).astype(np.float32)
                    w = rng.standard_normal((r, c * chunk)).astype(np.float32)
                    seconds = per_chunk * _product_seconds(x, w, max(1, block // (c * chunk)))
                elif own_weights:
                    x = (rng.random((chunk, images, r)) < 0.5).astype(np.float32)
                    w = rng.standard_normal((chunk, r, c)).astype(np.float32)
                    seconds = per_chunk * _product_seconds(x, w, max(1, block // (c * chunk)))
                else:
                    x = (rng.random((chunk * images, r)) < 0.5).astype(np.float32)
                    w = rng.standard_normal((r, c)).astype(np.float32)
                    seconds = per_chunk * _product_seconds(x, w, max(1, block // c))
                total += layer.planes * seconds
    return total


def run(net, x, config, chips, backend, calibrate, trim, chunk):
    """Predictions (chips, M) and seconds of sampling+calibration and of inference."""
    t_sample = t_infer = 0.0
    preds = []
    # Outside the clock: the compiled readout's first call compiles it (or loads it from
    # numba's cache).
    ChipReadout(net, config, [chips], backend=backend, calibrate=calibrate,
                trim=trim).predict(x[:1])
    wall = time.perf_counter()
    for s0 in range(0, chips, chunk):
        seeds = list(range(s0, min(chips, s0 + chunk)))
        t0 = clock()
        cr = ChipReadout(net, config, seeds, backend=backend, calibrate=calibrate, trim=trim)
        t1 = clock()
        preds.append(cr.predict(x))
        t2 = clock()
        t_sample += t1 - t0
        t_infer += t2 - t1
    return np.concatenate(preds), t_sample, t_infer, time.perf_counter() - wall


def compare(net, x, config, backend, calibrate, trim, chips) -> int:
    """Predictions that differ between the fast and the straightforward evaluation."""
    cr = ChipReadout(net, config, list(range(chips)), backend=backend, calibrate=calibrate,
                     trim=trim)
    return int(np.sum(cr.predict(x) != cr.predict_reference(x)))


class StageClock:
    """CPU seconds per stage of the noisy readout (``FloatTile.stage_clock``)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.last = clock()

    def __call__(self, stage):
        now = clock()
        if stage is not None:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.last
        self.last = now


#: Configurations ``--stages`` breaks down: by stage of the noisy readout, or by layer.
STAGED = {QUICK[0]: "readout", "typical SRAM, bit-true macro, calibrated + trim": "layers"}


def stages(net, x, chips: int, name: str) -> dict:
    """Where the inference time of configuration ``name`` goes for ``chips`` chips (one
    block) and every image: CPU seconds per stage of the noisy readout (the plan built
    before), or per layer (the plan included), and the reads they cover."""
    from models import montecarlo
    cfg, backend, cal, trim = CONFIGS[name]
    by_readout = STAGED[name] == "readout"
    cr = ChipReadout(net, cfg, list(range(chips)), backend=backend, calibrate=cal, trim=trim)
    if by_readout:
        cr.predict(x[:1])                                     # build the plan outside the clock
    hook = (montecarlo.FloatTile, "stage_clock") if by_readout else (montecarlo, "layer_clock")
    recorder = StageClock()
    montecarlo.FloatTile.exact_draws[0] = 0
    setattr(*hook, recorder)
    try:
        t0 = clock()
        cr.predict(x)
        total = clock() - t0
    finally:
        setattr(*hook, None)
    reads = sum(layer.planes * len(x) * chips * tile.cols
                for layer, tiles, *_ in cr._plan.layers for tile in tiles.values()
                if not by_readout or (isinstance(tile, montecarlo.FloatTile) and tile.sigma > 0))
    rows = dict(recorder.seconds)
    rows["other (integer tiles, thresholds, blocks)" if by_readout else "other"] = (
        total - sum(rows.values()))
    floor = floor_seconds(net, chips, chips, len(x), per_chip_weights(cfg, backend),
                          DEFAULT_MAX_ELEMENTS)
    return dict(inference_seconds=total, reads=reads, stages=rows, floor_seconds=floor,
                exact_draws=int(montecarlo.FloatTile.exact_draws[0]))


PROG = "bench.model_speed"


def build_parser():
    ap = cmdline.CommandParser(name=PROG, prog="python -m bench.model_speed",
                               description=__doc__.split("\n")[0],
                               renamed={"--images": "--n-images N"})
    ap.add_argument("--chips", type=cmdline.integer("chips", 1, 100000), default=100, metavar="N",
                    help="chip instances")
    ap.add_argument("--n-images", type=cmdline.integer("n-images", 1), default=2000, metavar="N",
                    help="MNIST validation images (at most the 2000 of the subset)")
    ap.add_argument("--chunk", type=cmdline.integer("chunk", 1, 10000), default=20, metavar="K",
                    help="chip instances per block (memory)")
    ap.add_argument("--model", default=None, metavar="MODEL",
                    help="exported MNIST model, 100 inputs (default: an untrained network)")
    ap.add_argument("--quick", action="store_true", help="only the headline configuration")
    ap.add_argument("--compare-chips", type=cmdline.integer("compare-chips", 0, 100000), default=4,
                    metavar="N", help="chips compared with the straightforward evaluation "
                                      "(0: none)")
    ap.add_argument("--stages", action="store_true",
                    help="also time each stage of the noisy readout of the headline "
                         "configuration, and each layer of the typical bit-true one (one "
                         "block of --chunk chips)")
    ap.add_argument("--readout", choices=("fused", "numpy"), default="fused",
                    help="noisy readouts in one compiled pass (numba), or the numpy pass")
    ap.add_argument("--n-compare-images", type=cmdline.integer("n-compare-images", 1),
                    default=None, metavar="N",
                    help="images of that comparison, at most --n-images (default 500, or "
                         "--n-images when fewer)")
    return ap


def main(argv=None) -> int:
    """Run the benchmark; exit status 0, or 2 for bad input."""
    return cmdline.run(PROG, _main, argv)


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    _check_comparison(args)
    from models import fused_readout, montecarlo
    if args.readout == "fused" and not fused_readout.available():
        raise cmdline.UsageError("readout fused needs numba, which is not installed; "
                                 "allowed here: numpy", "--readout")
    before, montecarlo.use_fused = montecarlo.use_fused, args.readout == "fused"
    try:
        return _run(args)
    finally:
        montecarlo.use_fused = before


def _check_comparison(args) -> None:
    """The comparison's sizes within the run's (UsageError), and its image count."""
    if args.compare_chips > args.chips:
        raise cmdline.UsageError(f"compare-chips must be at most the --chips {args.chips}, "
                                 f"not {args.compare_chips}", "--compare-chips")
    if args.n_compare_images is None:
        args.n_compare_images = min(500, args.n_images)
    elif not args.compare_chips:
        raise cmdline.UsageError("sizes the comparison; not allowed with --compare-chips 0",
                                 "--n-compare-images")
    elif args.n_compare_images > args.n_images:
        raise cmdline.UsageError(f"n-compare-images must be at most the --n-images "
                                 f"{args.n_images}, not {args.n_compare_images}",
                                 "--n-compare-images")


def _run(args) -> int:
    net = None
    if args.model:
        from models.inputs import load_model
        net = load_model(args.model)
    try:
        data = load_dataset("mnist")
    except ValueError as exc:
        raise cmdline.UsageError(f"the MNIST subset is needed: {cmdline.one_line(exc)}") from None
    if args.n_images > len(data.x_val):
        raise cmdline.UsageError(f"n-images must be at most the {len(data.x_val)} validation "
                                 f"images of the MNIST subset, not {args.n_images}", "--n-images")
    x = data.x_val[:args.n_images].astype(np.int64)
    y = data.y_val[:args.n_images]
    if net is None:
        net = export_model(BNN((100, 96, 96, 10), seed=0), 32, 96)
    elif (net.layers[0].inputs, net.layers[0].planes, net.classes) != (x.shape[1], 5, 10):
        raise cmdline.UsageError(f"{args.model}: the benchmark runs MNIST 10x10 (100 inputs of "
                                 f"5 bits, 10 classes), the model takes {net.layers[0].inputs} "
                                 f"inputs of {net.layers[0].planes} bits and {net.classes} "
                                 f"classes", "--model")
    names = QUICK if args.quick else tuple(CONFIGS)
    binary_macs = sum(l.inputs * l.outputs * l.planes for l in net.layers)
    machine = cpu()
    blas = blas_in_use()
    print(f"{args.chips} chip instances x {len(x)} MNIST images, "
          f"{'-'.join(str(l.inputs) for l in net.layers)}-{net.layers[-1].outputs} on a "
          f"{net.rows}x{net.cols} macro, {binary_macs} binary MACs per image and chip, blocks of "
          f"{args.chunk} chips, {blas['library']} {blas['version']} kernel {blas['kernel']}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
          f"{os.cpu_count()} CPUs ({machine}), load average {os.getloadavg()[0]:.1f}, noisy "
          f"readouts: {args.readout} pass")
    print("CPU seconds of this process (wall seconds in the JSON line).")
    print("| configuration | sample+calibrate s | inference s | total s | floor s | ratio | "
          "chip-images/s | mean acc | differing predictions |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    results = {}
    for name in names:
        cfg, backend, cal, trim = CONFIGS[name]
        pred, ts, ti, wall = run(net, x, cfg, args.chips, backend, cal, trim, args.chunk)
        total = ts + ti
        block = DEFAULT_MAX_ELEMENTS
        floor = floor_seconds(net, args.chips, args.chunk, len(x), per_chip_weights(cfg, backend),
                              block)
        acc = float(np.mean(pred == y[None]))
        n_cmp = args.compare_chips
        if n_cmp:
            xc = x[:args.n_compare_images]
            differ = compare(net, xc, cfg, backend, cal, trim, n_cmp)
            cmp_text = f"{differ} of {n_cmp * len(xc)}"
        else:
            differ, cmp_text = None, "-"
        results[name] = dict(seconds=round(total, 4), floor_seconds=round(floor, 4),
                             ratio=round(total / floor, 3),
                             chip_images_per_s=round(args.chips * len(x) / total),
                             sample_seconds=round(ts, 4), inference_seconds=round(ti, 4),
                             wall_seconds=round(wall, 4),
                             mean_accuracy=round(acc, 5), differing_predictions=differ,
                             compared_predictions=n_cmp * args.n_compare_images)
        print(f"| {name} | {ts:.2f} | {ti:.2f} | {total:.2f} | {floor:.3f} | {total / floor:.2f} | "
              f"{args.chips * len(x) / total:,.0f} | {100 * acc:.1f} % | {cmp_text} |", flush=True)
    staged = None
    if args.stages:
        chips = min(args.chunk, args.chips)
        staged = {}
        for name in STAGED:
            st = staged[name] = stages(net, x, chips, name)
            per = 1e9 / st["reads"]
            what = "noisy reads" if STAGED[name] == "readout" else "reads"
            print(f"\nStages of {name}: {chips} chips x {len(x)} images, {st['reads']:,} "
                  f"{what}, inference {st['inference_seconds']:.3f} s CPU "
                  f"({st['inference_seconds'] * per:.2f} ns per read)")
            print("| stage | CPU s | ns per read |")
            print("| --- | ---: | ---: |")
            for stage, sec in st["stages"].items():
                print(f"| {stage} | {sec:.3f} | {sec * per:.2f} |")
            print(f"| (floor: the bare products of the same shapes) | {st['floor_seconds']:.3f} | "
                  f"{st['floor_seconds'] * per:.2f} |")
            if STAGED[name] == "readout" and args.readout == "fused":
                print(f"Reads that got their exact draw in the compiled pass: "
                      f"{st['exact_draws']:,} ({100 * st['exact_draws'] / st['reads']:.3f} %)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worst = max(r["ratio"] for r in results.values())
    print(f"peak RSS {rss:.0f} MiB; CPU time {time.process_time():.1f} s; worst ratio {worst:.2f} "
          f"(target <= 3): {'PASS' if worst <= 3 else 'FAIL'}")
    print(json.dumps(dict(chips=args.chips, images=len(x), chunk=args.chunk, readout=args.readout,
                          cpu=machine, blas=blas, load_average=round(os.getloadavg()[0], 2),
                          configurations=results,
                          **({} if staged is None else dict(stages=staged)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
