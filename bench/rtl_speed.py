"""RTL simulation speed: cycles/s and images/s end to end, Verilator against Icarus.

One run measures, on the same 32x96 macro (``verif.runner`` parameter set ``32x96``) and
the same exported network (default: the three-layer MNIST network 100-96-96-10 of the
``models.bnn`` recipe), the end-to-end inference through the RTL exactly as the test
suite does it (``verif/cocotb/tb_network.py``: ``host.network.run_network`` and the host
driver over the burst-engine transport, predictions checked against the golden model),
on Verilator and on Icarus, and reports simulated clock cycles per second of wall time,
images per second and the Verilator/Icarus ratio of both. The wall time covers the
driver, the transport and the simulator (not the build, the training or the golden
model). ``--edge`` adds a Verilator run over the per-edge cocotb Wishbone master
(Python awaiting every clock edge) for comparison.

    python -m bench.rtl_speed                       # MNIST, 200 images Verilator, 3 Icarus
    python -m bench.rtl_speed --dataset digits --n-images 500 --n-icarus-images 5 --edge

Results are printed as a Markdown table and written to ``OUT/rtl_speed.json`` (``-o/--out``,
default ``build/bench``).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

from models import cmdline
from verif import runner
from verif.cocotb.nets import prepare

MODULE = "verif.cocotb.tb_network"


def measure(sim: str, net: dict, count: int, **args) -> dict:
    d = runner.design("cim_macro", "32x96")
    build = runner.build(d, sim)
    label = f"bench-{args.get('transport', 'burst')}-{count}"
    result = runner.run(d, sim, MODULE, seed=0, label=label,
                        args=dict(net=net["net"], images=net["images"], count=count, trace=0, **args))
    stats = dict(result.stats, build_seconds=round(build.seconds, 1), build_cached=build.cached)
    return stats


PROG = "bench.rtl_speed"


def build_parser():
    parser = cmdline.CommandParser(
        name=PROG, prog="python -m bench.rtl_speed", description=__doc__.split("\n")[0],
        renamed={"--images": "--n-images N", "--icarus-images": "--n-icarus-images N",
                 "--output": "-o/--out DIR"})
    parser.add_argument("--dataset", choices=("mnist", "digits"), default="mnist",
                        help="network and images: the MNIST recipe or the digits recipe")
    parser.add_argument("--n-images", type=cmdline.integer("n-images", 1, 2000), default=200,
                        metavar="N", help="images on Verilator")
    parser.add_argument("--n-icarus-images", type=cmdline.integer("n-icarus-images", 1, 200),
                        default=3, metavar="N", help="images on Icarus")
    parser.add_argument("--edge", action="store_true", help="also Verilator with the per-edge master")
    parser.add_argument("-o", "--out", default=str(runner.ROOT / "build" / "bench"), metavar="DIR",
                        help="output folder of rtl_speed.json, created if missing")
    return parser


def main(argv=None) -> int:
    """Run the benchmark; exit status 0, or 2 for bad input."""
    return cmdline.run(PROG, _main, argv)


def _main(argv) -> int:
    opts = build_parser().parse_args(argv)
    out = cmdline.check_output_folder(opts.out, "-o/--out", files=["rtl_speed.json"])
    start = time.perf_counter()
    net = prepare(opts.dataset, images=max(opts.n_images, opts.n_icarus_images))
    print(f"network: {opts.dataset} ({net['net']}), validation accuracy "
          f"{100 * net['val_accuracy']:.2f} %", flush=True)
    runs = {}
    runs["verilator"] = measure("verilator", net, opts.n_images)
    print(f"verilator: {runs['verilator']['images_per_s']:.1f} images/s", flush=True)
    runs["icarus"] = measure("icarus", net, opts.n_icarus_images)
    print(f"icarus: {runs['icarus']['images_per_s']:.3f} images/s", flush=True)
    if opts.edge:
        runs["verilator-edge"] = measure("verilator", net, min(opts.n_images, 50), transport="edge")
    v, i = runs["verilator"], runs["icarus"]
    ratio = dict(cycles_per_s=v["cycles_per_s"] / i["cycles_per_s"],
                 images_per_s=v["images_per_s"] / i["images_per_s"])
    report = dict(dataset=opts.dataset, macro="32x96 (B=5, K=8, offset+readout)", runs=runs,
                  ratio_verilator_over_icarus=ratio, cpu_count=os.cpu_count(),
                  load_average=os.getloadavg(), python=sys.version.split()[0],
                  machine=platform.machine(), seconds=time.perf_counter() - start)

    print()
    print(f"| simulator | transport | images | images/s | cycles/s | cycles/image | accuracy |")
    print(f"| --- | --- | --- | --- | --- | --- | --- |")
    for name, s in runs.items():
        print(f"| {s['sim']} | {s['transport']} | {s['images']} | {s['images_per_s']:.2f} | "
              f"{s['cycles_per_s']:,.0f} | {s['cycles_per_image']:.0f} | {100 * s['accuracy']:.1f} % |")
    print(f"\nVerilator / Icarus: {ratio['cycles_per_s']:.0f}x cycles/s, "
          f"{ratio['images_per_s']:.0f}x images/s (load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores)")
    written = cmdline.write_files(out, {"rtl_speed.json": json.dumps(report, indent=1)})
    print(f"written: {written[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
