"""``python -m fpga sweep``: a grid of FPGA builds as Dask tasks, a CSV and a plot.

Every point of the grid (board x rows x cols x cols per cycle x pipeline x clock x
placement seed) is one :func:`fpga.build.build` in ``DIR/points/KEY/`` and one Dask task
in a worker process (:class:`models.cluster.Runner`: a local cluster by default,
``--scheduler`` for a real one). As each build finishes, the client writes its row to
``DIR/points/KEY/result.json`` and rewrites ``DIR/sweep.csv`` and ``DIR/sweep.png``
(Fmax against LUTs, timing met or failed) through temporary files and renames, so an
interrupted sweep leaves the finished points and a consistent CSV; run the same command
again and it skips every point that has a result. A build that fails (does not fit, a
tool error) is a row with status ``error`` and its message. An interrupted sweep stops
the builds running on its workers (:func:`fpga.build.stop_builds` on each), whose points
stay unbuilt.

With a real cluster the builds run on the workers' disks at the same ``DIR`` path (a
shared file system keeps the bitstreams in one place); the results, CSV and plot are
written by the client. docs/SCALING.md has the commands.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import time
from pathlib import Path
from typing import Callable

__all__ = ["CSV_COLUMNS", "CSV_NAME", "PNG_NAME", "point_key", "grid", "build_point",
           "read_results", "csv_bytes", "png_bytes", "run_sweep"]

CSV_COLUMNS = ("board", "rows", "cols", "cols_per_cycle", "pipeline", "freq_mhz",
               "placement_seed", "status", "fmax_mhz", "clock_mhz", "luts", "ffs", "logic_used",
               "logic_available", "seconds", "error")
CSV_NAME, PNG_NAME = "sweep.csv", "sweep.png"
#: nextpnr cell types of the logic (columns logic_used, logic_available): iCE40 logic
#: cells, ECP5 LUT4s.
LOGIC_CELLS = ("ICESTORM_LC", "TRELLIS_COMB")
_PARAMS = ("board", "rows", "cols", "cols_per_cycle", "pipeline", "freq_mhz", "placement_seed")


def point_key(point: dict) -> str:
    """The folder name of a point, e.g. ``icebreaker-32x96-p4-l2-f24-s1``."""
    p = point["cols_per_cycle"]
    f = point["freq_mhz"]
    return (f"{point['board']}-{point['rows']}x{point['cols']}-p{'all' if p is None else p}"
            f"-l{point['pipeline']}-f{'osc' if f is None else f'{f:g}'}-s{point['placement_seed']}")


def grid(boards, rows, cols, cols_per_cycle, pipelines, freqs, placement_seeds) -> list[dict]:
    """Every combination, as point dicts (``cols_per_cycle``/``freq_mhz`` None: all
    columns / the board oscillator). Each point's macro parameters are checked
    (ValueError: the problem as ``MacroParams`` words it, then the point)."""
    from models.params import MacroParams

    from .boards import BOARDS
    points = []
    for b, r, c, p, l, f, s in itertools.product(boards, rows, cols, cols_per_cycle, pipelines,
                                                  freqs, placement_seeds):
        if b not in BOARDS:
            raise ValueError(f"board must be one of {', '.join(sorted(BOARDS))}, not {b!r}")
        point = dict(board=b, rows=r, cols=c, cols_per_cycle=p, pipeline=l, freq_mhz=f,
                     placement_seed=s)
        try:
            MacroParams(r, c, cols_per_cycle=p, pipeline=l)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{exc} (point {point_key(point)})") from None
        if f is not None and not f > 0:
            raise ValueError(f"freq must be > 0 MHz, not {f} (point {point_key(point)})")
        if s < 0:
            raise ValueError(f"placement_seed must be >= 0, not {s} (point {point_key(point)})")
        points.append(point)
    return points


def build_point(point: dict, *, out: str, build_fn: Callable | None = None) -> dict:
    """Build one point in ``out/points/KEY`` and return its row (a Dask task).

    ``build_fn`` (default :func:`fpga.build.build`) takes the arguments of ``build``; any
    exception it raises becomes a row with status ``error``, except
    :class:`fpga.build.BuildStopped` (the sweep was interrupted: the point stays unbuilt).
    """
    from .build import BuildStopped, stoppable
    if build_fn is None:
        from .build import build as build_fn
    row = {k: point[k] for k in _PARAMS}
    row.update(status="error", fmax_mhz="", clock_mhz="", luts="", ffs="", logic_used="",
               logic_available="", seconds="", error="")
    start = time.monotonic()
    try:
        with stoppable():
            report = build_fn(point["board"], point["rows"], point["cols"],
                              cols_per_cycle=point["cols_per_cycle"], pipeline=point["pipeline"],
                              freq_mhz=point["freq_mhz"], seed=point["placement_seed"],
                              out_dir=str(Path(out) / "points" / point_key(point)))
    except BuildStopped:
        raise
    except Exception as exc:                     # every failure is a row of the sweep
        row["error"] = " ".join(f"{type(exc).__name__}: {exc}".split())
        row["seconds"] = round(time.monotonic() - start, 1)
        return row
    t = report["timing"]
    logic = next((report["utilization"][cell] for cell in LOGIC_CELLS
                  if cell in report["utilization"]), None)
    row.update(status="met" if t["met"] else "failed",
               fmax_mhz="" if t["fmax_hz"] is None else round(t["fmax_hz"] / 1e6, 2),
               clock_mhz=round(t["clock_hz"] / 1e6, 3), luts=report["luts"], ffs=report["ffs"],
               logic_used="" if logic is None else logic["used"],
               logic_available="" if logic is None else logic["available"],
               seconds=round(time.monotonic() - start, 1))
    return row


def read_results(out) -> dict:
    """``key -> row`` of every finished point under ``out/points``."""
    found = {}
    for path in sorted(Path(out).glob("points/*/result.json")):
        try:
            row = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue                              # an unfinished write: build it again
        if isinstance(row, dict) and all(k in row for k in CSV_COLUMNS):
            found[path.parent.name] = row
    return found


def csv_bytes(rows) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r[k] is None else r[k]) for k in CSV_COLUMNS})
    return buf.getvalue().encode()


def png_bytes(rows) -> bytes:
    """Fmax against LUTs, one marker per board; filled circles met, crosses failed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    boards = sorted({r["board"] for r in rows})
    for i, board in enumerate(boards):
        for status, marker in (("met", "o"), ("failed", "x")):
            pts = [(r["luts"], r["fmax_mhz"]) for r in rows
                   if r["board"] == board and r["status"] == status and r["fmax_mhz"] != ""]
            if pts:
                xs, ys = zip(*pts)
                ax.scatter(xs, ys, marker=marker, color=f"C{i}",
                           label=f"{board}: timing {status} ({len(pts)})")
    errors = sum(r["status"] == "error" for r in rows)
    ax.set_xlabel("LUTs (iCE40 LCs / ECP5 LUT4)")
    ax.set_ylabel("Fmax (MHz)")
    ax.set_title(f"FPGA sweep: {len(rows)} builds" + (f", {errors} failed to build" if errors else ""))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _write(out: Path, results: dict, order: list) -> None:
    from models.cmdline import atomic_write
    rows = [results[k] for k in order if k in results]
    atomic_write(out / CSV_NAME, csv_bytes(rows))
    atomic_write(out / PNG_NAME, png_bytes(rows))


def run_sweep(points: list, out, runner, *, build_fn: Callable | None = None) -> tuple[list, int]:
    """Build every point of ``points`` that has no result yet on ``runner`` (a started
    or unstarted :class:`models.cluster.Runner`); returns the rows in grid order and the
    number of points built now."""
    from models.cmdline import atomic_write

    out = Path(out)
    (out / "points").mkdir(parents=True, exist_ok=True)
    order = [point_key(p) for p in points]
    results = {k: v for k, v in read_results(out).items() if k in order}
    todo = [p for p in points if point_key(p) not in results]

    def finished(point, row):
        key = point_key(point)
        folder = out / "points" / key
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "result.json", json.dumps(row, indent=1) + "\n")
        results[key] = row
        _write(out, results, order)

    from .build import stop_builds
    with runner:
        runner.map(build_point, todo, shared=dict(out=str(out), build_fn=build_fn),
                   desc="builds", done=finished, stop=stop_builds)
    _write(out, results, order)
    return [results[k] for k in order], len(todo)
