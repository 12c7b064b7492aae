"""Chip blocks and FPGA builds as Dask tasks (models/cluster.py, fpga/sweep.py).

Results must not depend on the block size or the number of workers, a killed worker's
blocks are recomputed elsewhere, a CSV is written whole. Bad options and an unreachable
scheduler are rows of the bad-input tables (tests/test_cli_bad_input.py).
"""

import csv
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from fpga import sweep as S
from models import experiments as E
from models.chip import ChipConfig
from models.cluster import ClusterError, Runner, check_address
from tests.cluster_tasks import fake_build, slow_block_correct
from tests.random_nets import random_net

ROOT = Path(__file__).resolve().parent.parent


def _run(module, args):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def _models(args, capsys) -> str:
    """stdout of ``python -m models ARGS`` run in this process (status 0 asserted)."""
    from models.cli import main
    capsys.readouterr()
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    from models.cli import main
    out = tmp_path_factory.mktemp("cluster")
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--quiet", "-o", str(out)]) == 0
    return out / "digits"


CHIP = ["--sram-offset-sigma", "3", "--sram-cell-sigma", "0.1", "--read-noise", "0.5",
        "--backend", "analog", "--calibrate", "--trim"]


def test_eval_and_sweep_csvs_do_not_depend_on_workers_or_blocks(digits_model, tmp_path, capsys):
    """eval: this process against a local cluster of 2 (--workers 2); sweep: this process
    against a running cluster (--scheduler)."""
    ev = ["eval", "--model", digits_model, "--dataset", "digits", "--chips", "9", *CHIP, "--quiet"]
    # The CSV's folder is created (it does not exist yet).
    assert "ran on this process" in _models([*ev, "--csv", tmp_path / "new" / "serial.csv"], capsys)
    two = _models([*ev, "--csv", tmp_path / "two.csv", "--workers", "2", "--chunk", "2"], capsys)
    assert "local Dask cluster of 2 worker processes" in two
    a, b = (tmp_path / "new" / "serial.csv").read_bytes(), (tmp_path / "two.csv").read_bytes()
    assert a == b and len(a.splitlines()) == 10
    sw = ["sweep", "--dataset", "digits", "--model", digits_model, "--experiment", "offset",
          "--chips", "5", "--offset-sigmas", "0,4", "--quiet"]
    _models([*sw, "-o", tmp_path / "sw1"], capsys)
    # A cluster of its own, reached through --scheduler as a real one would be.
    import logging

    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        out = _models([*sw, "-o", tmp_path / "sw2", "--scheduler", cluster.scheduler_address,
                       "--connect-timeout", "20", "--chunk", "1"], capsys)
    assert f"on Dask scheduler {cluster.scheduler_address}" in out
    assert (tmp_path / "sw1" / "sweep.csv").read_bytes() == (tmp_path / "sw2" / "sweep.csv").read_bytes()


def test_a_killed_worker_has_its_chips_recomputed(rng):
    net = random_net(rng, (30, 20, 10), 5, 16, 12)
    x = rng.integers(0, 32, (60, 30))
    y = rng.integers(0, 10, 60)
    cfg = ChipConfig.typical("sram", read_noise=0.5)
    tasks = [dict(config=cfg, seeds=b, backend="analog", calibrate=True, trim=False)
             for b in E.chip_blocks(range(24), 2)]
    shared = dict(net=net, x=x, y=y)
    want = [E.block_correct(t, **shared) for t in tasks]
    with Runner(workers=2, quiet=True) as runner:
        pids = runner.client.run(os.getpid)
        victim = sorted(pids.values())[0]
        killer = threading.Timer(1.5, os.kill, (victim, signal.SIGKILL))
        killer.start()
        try:
            got = runner.map(slow_block_correct, tasks, shared=dict(shared, delay=0.3))
        finally:
            killer.cancel()
    done_by = {pid for _, pid in got}
    print(f"workers {sorted(pids.values())}, killed {victim}; blocks finished by {sorted(done_by)}")
    with pytest.raises(OSError):
        os.kill(victim, 0)                          # it is gone
    # what the victim had computed died with it: every result came from the others
    assert victim not in done_by
    for (correct, _), w in zip(got, want):
        np.testing.assert_array_equal(correct, w)


def test_runner_checks_its_arguments():
    with pytest.raises(ClusterError, match="not both"):
        Runner(2, "tcp://h:1")
    with pytest.raises(ClusterError, match="workers must be an integer >= 1"):
        Runner(0)
    assert check_address("tcp://10.0.0.1:8786") == "tcp://10.0.0.1:8786"
    seen = []
    with Runner(quiet=True) as r:
        assert r.map(pow, [2, 3], shared=dict(exp=2), done=lambda t, v: seen.append((t, v))) == [4, 9]
    assert seen == [(2, 4), (3, 9)]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_fpga_sweep_grid_resume_and_errors(tmp_path):
    points = S.grid(["icebreaker"], [4], [16, 96], [4], [0, 3], [None, 24.0], [1])
    assert len(points) == 8 and S.point_key(points[0]) == "icebreaker-4x16-p4-l0-fosc-s1"
    with Runner(workers=2, quiet=True) as runner:
        rows, built = S.run_sweep(points[:5], tmp_path, runner, build_fn=fake_build)
    assert built == 5
    rows, built = S.run_sweep(points, tmp_path, Runner(quiet=True), build_fn=fake_build)
    assert built == 3 and len(rows) == 8                  # the first 5 were skipped
    table = _rows(tmp_path / "sweep.csv")
    assert [S.point_key({**r, "rows": int(r["rows"]), "cols": int(r["cols"]),
                         "cols_per_cycle": int(r["cols_per_cycle"]),
                         "placement_seed": int(r["placement_seed"]),
                         "freq_mhz": None if r["freq_mhz"] == "" else float(r["freq_mhz"])})
            for r in table] == [S.point_key(p) for p in points]
    assert all(int(r["logic_used"]) == int(r["luts"]) + 7 and r["logic_available"] == "5280"
               for r in table if r["status"] != "error")
    status = {(int(r["cols"]), int(r["pipeline"])): r["status"] for r in table}
    assert status[16, 0] == "met" and status[96, 0] == "failed" and status[16, 3] == "error"
    errors = [r for r in table if r["status"] == "error"]
    assert len(errors) == 4 and all("RuntimeError" in r["error"] and "injected" in r["error"]
                                    for r in errors)
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="cols_per_cycle must divide cols=6"):
        S.grid(["icebreaker"], [4], [6], [4], [0], [None], [1])
    with pytest.raises(ValueError, match="board must be one of"):
        S.grid(["arty"], [4], [4], [2], [0], [None], [1])


def test_build_point_calls_the_real_build_as_it_is_declared(tmp_path):
    import inspect

    from fpga.build import build
    calls = []

    def bound(*args, **kwargs):
        calls.append(inspect.signature(build).bind(*args, **kwargs))
        return fake_build(*args, **kwargs)
    (point,) = S.grid(["ulx3s"], [32], [96], [24], [2], [100.0], [7])
    row = S.build_point(point, out=str(tmp_path), build_fn=bound)
    (call,) = calls
    assert call.arguments["seed"] == 7 and call.arguments["freq_mhz"] == 100.0
    assert row["status"] in ("met", "failed") and row["placement_seed"] == 7


def test_stop_builds_stops_a_running_flow_and_one_not_started(tmp_path):
    """stop_builds() from another thread: a flow running in a stoppable() thread has its
    tools stopped and raises BuildStopped; one asked before it starts runs no tool; a
    thread outside stoppable() is not touched; build_point lets BuildStopped through
    (the point stays unbuilt) instead of making it an error row."""
    from fpga import build as B
    marker = tmp_path / "started"
    argv = ["sh", "-c", f"echo $$ > {marker}; exec sleep 300"]
    outcome = {}

    def flow(name, stop_first=False):
        try:
            with B.stoppable():
                if stop_first:
                    assert B.stop_builds(timeout=0) == 1       # its own: no waiting
                B._run_flow(argv, tmp_path, dict(os.environ), tmp_path / f"{name}.log",
                            B.FlowMonitor(tmp_path))
        except B.BuildStopped as exc:
            outcome[name] = exc

    early = threading.Thread(target=flow, args=("early", True))
    early.start()
    early.join(30)
    assert isinstance(outcome.get("early"), B.BuildStopped) and not marker.exists()
    running = threading.Thread(target=flow, args=("running",))
    running.start()
    for _ in range(600):
        if marker.exists() and marker.read_text().strip():
            break
        threading.Event().wait(0.05)
    pid = int(marker.read_text())
    assert B.stop_builds() == 1
    B._check_stop()                           # this thread is outside stoppable(): untouched
    assert not running.is_alive() and isinstance(outcome.get("running"), B.BuildStopped)
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().rsplit(
        ")", 1)[1].split()[0] == "Z"
    assert B.stop_builds() == 0

    def stopped_build(*args, **kwargs):
        raise B.BuildStopped("stopped")
    (point,) = S.grid(["icebreaker"], [4], [4], [2], [0], [None], [1])
    with pytest.raises(B.BuildStopped):
        S.build_point(point, out=str(tmp_path), build_fn=stopped_build)


@pytest.mark.slow
def test_fpga_sweep_builds_a_tiny_ice40_design(tmp_path):
    """The one real build (30 s): a 4x4 macro folded by 2 on the iCEBreaker, then a rerun
    that skips it. The default run checks build_point's call against fpga.build.build."""
    args = ["sweep", "--board", "icebreaker", "--rows", "4", "--cols", "4", "--cols-per-cycle", "2",
            "-o", tmp_path, "--quiet"]
    r = _run("fpga", args)
    assert r.returncode == 0, r.stderr
    assert "1 points (1 built now, 0 from earlier runs)" in r.stdout
    (row,) = _rows(tmp_path / "sweep.csv")
    assert row["status"] == "met" and float(row["fmax_mhz"]) > 12 and int(row["luts"]) > 0
    assert int(row["logic_used"]) >= int(row["luts"]) and row["logic_available"] == "5280"
    assert list((tmp_path / "points").iterdir())[0].joinpath("result.json").exists()
    again = _run("fpga", args)
    assert again.returncode == 0 and "0 built now, 1 from earlier runs" in again.stdout
