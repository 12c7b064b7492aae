"""Generator speed: wall time and peak memory of ``python -m gen`` for three macro sizes.

Run as ``python -m bench.gen_speed`` (``make bench``). Every build runs in a fresh
``python -m gen`` process, exactly as a user runs it, so the time includes Python start,
elaboration, conversion by the builtin Yosys (a subprocess of gen) and writing the files.
``wait4`` on the gen process gives its peak resident memory (the largest of gen and the
Yosys process it waited for) and its CPU time (user plus system, both included). One
unmeasured warm-up build first fills the tool caches. Prints a Markdown table and exits
with status 1 when a target is missed.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from models import cmdline

ROOT = Path(__file__).resolve().parent.parent

#: (rows, cols, wall-time target in seconds or None); every size must stay under MEMORY_TARGET.
SIZES = [(32, 96, 3.0), (128, 128, None), (256, 256, 60.0)]
MEMORY_TARGET_MIB = 2048


def run_once(rows: int, cols: int, out: Path) -> dict:
    """Build one macro in a fresh process; wall seconds, peak MiB and Verilog lines."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "gen", "--rows", str(rows), "--cols", str(cols), "-o", str(out)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 reports this child's own peak RSS; read the pipes only afterwards (gen prints
    # one line, far below the pipe buffer, so the child cannot block on them).
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    result = dict(seconds=seconds, cpu_seconds=usage.ru_utime + usage.ru_stime,
                  peak_mib=usage.ru_maxrss / 1024, status=proc.returncode,
                  summary=stdout.strip(), error=None, lines=None)
    if proc.returncode != 0:
        # The last line of a traceback names the exception; gen's own errors are one line.
        last = (stderr.strip().splitlines() or ["(no output)"])[-1]
        result["error"] = f"gen exited with {proc.returncode}: {last}"
        print(f"{' '.join(cmd)}:\n{stderr}", file=sys.stderr)
    else:
        result["lines"] = (out / "cim_macro.v").read_text().count("\n")
    return result


PROG = "bench.gen_speed"


def build_parser():
    parser = cmdline.CommandParser(name=PROG, prog="python -m bench.gen_speed",
                                   description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--repeat", type=cmdline.integer("repeat", 1, 100), default=1, metavar="N",
                        help="builds per size; the table shows the fastest time and the largest peak")
    return parser


def main(argv=None) -> int:
    """Run the benchmark; exit status 0 all targets met, 1 one missed, 2 bad input."""
    return cmdline.run(PROG, _main, argv)


def _main(argv) -> int:
    args = build_parser().parse_args(argv)

    rows_out = []
    failed = False
    # Wall time is what the targets are about, but on a shared machine it grows with the
    # load; CPU time (the child and its Yosys subprocess) shows how much of it is ours.
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="gen_speed-") as tmp:
        warmup = run_once(2, 3, Path(tmp) / "warmup")
        if warmup["error"]:
            print(f"warm-up build failed: {warmup['error']}", file=sys.stderr)
            return 1
        for rows, cols, time_target in SIZES:
            runs = [run_once(rows, cols, Path(tmp) / f"{rows}x{cols}-{i}") for i in range(args.repeat)]
            seconds = min(r["seconds"] for r in runs)
            cpu = min(r["cpu_seconds"] for r in runs)
            peak = max(r["peak_mib"] for r in runs)
            errors = [r["error"] for r in runs if r["error"]]
            ok = not errors and peak < MEMORY_TARGET_MIB and (time_target is None or seconds <= time_target)
            failed |= not ok
            target = (f"<= {time_target:g} s, " if time_target is not None else "") + \
                f"< {MEMORY_TARGET_MIB // 1024} GiB"
            verdict = "pass" if ok else "FAIL" + (f" ({errors[0]})" if errors else "")
            rows_out.append((f"{rows}x{cols}", f"{seconds:.2f}", f"{cpu:.2f}", f"{peak:.0f}",
                             str(runs[0]["lines"] if runs[0]["lines"] is not None else "-"),
                             target, verdict))
            print(f"{rows}x{cols}: {seconds:.2f} s, {peak:.0f} MiB, {verdict}", file=sys.stderr)

    print(f"python -m gen, fresh process per build, {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
          f"load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after")
    print()
    header = ("size", "wall s", "CPU s", "peak MiB", "Verilog lines", "target", "result")
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for row in rows_out:
        print("| " + " | ".join(row) + " |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
