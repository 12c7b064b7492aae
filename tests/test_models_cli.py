"""The command line ``python -m models``: train, eval and sweep end to end on digits (tiny
settings). Bad input (exit status 2, one line on stderr naming the bad value, nothing
written) is tests/test_cli_bad_input.py.

Commands run in subprocesses (``sys.executable -m models`` from the repository root),
because the exit status, the output and the files are what a user sees.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.datasets import load_digits, save_idx
from models.export import infer_folded, load_folded

ROOT = Path(__file__).resolve().parent.parent


def run_models(args, cwd=ROOT, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "models", *map(str, args)], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits model trained for 2 epochs by the CLI, and raw digits as IDX files."""
    d = tmp_path_factory.mktemp("cli")
    r = run_models(["train", "--dataset", "digits", "--epochs", "2", "--seed", "3",
                    "-o", d / "m"])
    assert r.returncode == 0, r.stderr
    images, labels = load_digits_raw()
    save_idx(d / "img.idx", images)
    save_idx(d / "lab.idx.gz", labels)
    return d, r


def load_digits_raw():
    from sklearn.datasets import load_digits as sk
    b = sk()
    return b.images.astype(np.uint8), b.target.astype(np.uint8)


def accuracy_line(stdout):
    lines = [l for l in stdout.splitlines() if l.startswith("accuracy:")]
    assert len(lines) == 1, stdout
    return float(lines[0].split()[1])


def test_train_writes_model_and_prints_seed(trained):
    d, r = trained
    assert "seed: 3" in r.stdout
    assert sorted(p.name for p in (d / "m").iterdir()) == ["digits.json", "digits.npz"]
    doc = json.loads((d / "m" / "digits.json").read_text())
    assert doc["training"]["seed"] == 3 and doc["training"]["epochs"] == 2
    assert doc["preprocessing"]["source"] == "sklearn-digits"
    net = load_folded(d / "m" / "digits")
    assert (net.rows, net.cols) == (32, 96)
    reported = float(r.stdout.split("validation accuracy")[1].split(":")[1].split("%")[0])
    assert reported == pytest.approx(100 * doc["accuracy"]["val_ideal"], abs=0.006)


def test_eval_idx_matches_in_process_inference(trained):
    d, _ = trained
    r = run_models(["eval", "--model", d / "m" / "digits.json", "--images", d / "img.idx",
                    "--labels", d / "lab.idx.gz", "--range", "100:400"])
    assert r.returncode == 0, r.stderr
    images, labels = load_digits_raw()
    x, _ = load_digits(5)
    net = load_folded(d / "m" / "digits")
    pred = infer_folded(net, x[100:400].reshape(300, -1))
    expected = 100 * np.mean(pred == labels[100:400])
    assert accuracy_line(r.stdout) == pytest.approx(expected, abs=0.006)
    assert "seed:" not in r.stdout          # ideal hardware samples nothing


def test_eval_on_chips_calibration(trained):
    d, _ = trained
    base = ["eval", "--model", d / "m" / "digits", "--dataset", "digits", "--chips", "3",
            "--sram-offset-sigma", "4", "--quiet"]
    plain = run_models(base)
    cal = run_models(base + ["--calibrate"])
    trim = run_models(base + ["--calibrate", "--trim"])
    ideal = run_models(["eval", "--model", d / "m" / "digits", "--dataset", "digits"])
    for r in (plain, cal, trim, ideal):
        assert r.returncode == 0, r.stderr
    assert len([l for l in plain.stdout.splitlines() if l.startswith("chip ")]) == 3
    assert accuracy_line(cal.stdout) >= accuracy_line(plain.stdout)
    assert accuracy_line(trim.stdout) == pytest.approx(accuracy_line(ideal.stdout))
    rram = run_models(["eval", "--model", d / "m" / "digits", "--dataset", "digits",
                       "--rram-sigma", "0.2", "--on-off-ratio", "10", "--chip-seed", "7"])
    assert rram.returncode == 0, rram.stderr
    assert "seed: 7" in rram.stdout and "chip 7" in rram.stdout


def test_train_chip_in_the_loop(tmp_path):
    r = run_models(["train", "--dataset", "digits", "--epochs", "1", "--chip-in-loop", "2",
                    "--chip-epochs", "1", "--sram-offset-sigma", "2", "--quiet",
                    "-o", tmp_path, "--name", "cil"])
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "cil.json").read_text())
    assert doc["training"]["chip_in_loop"]["seed"] == 2
    assert doc["training"]["chip_in_loop"]["config"]["offset_sigma"] == 2.0
    on_chip = float(r.stdout.split("on chip 2 (macro model):")[1].split("%")[0])
    assert on_chip == pytest.approx(100 * doc["accuracy"]["val_chip"], abs=0.006)


def test_train_noise_aware_and_eval_reproduces_it(tmp_path):
    chip = ["--sram-offset-sigma", "4", "--sram-cell-sigma", "0.1", "--read-noise", "0.5",
            "--backend", "analog", "--calibrate", "--trim"]
    r = run_models(["train", "--dataset", "digits", "--epochs", "2", "--noise-aware",
                    "--noise-epochs", "1", "--chips-per-step", "8", *chip, "--quiet",
                    "-o", tmp_path / "na"])
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "na.json").read_text())
    na = doc["training"]["noise_aware"]
    assert na["epochs"] == 1 and na["chips_per_step"] == 8 and na["trim"]
    assert na["config"]["read_noise"] == 0.5 and na["training_chips"][0] >= 1 << 32
    rec = doc["accuracy"]["val_chips"]
    assert rec["chip_seeds"] == [0, 19]
    e = run_models(["eval", "--model", tmp_path / "na", "--dataset", "digits", "--chips", "20",
                    *chip, "--quiet"])
    assert e.returncode == 0, e.stderr
    last = e.stdout.strip().splitlines()[-1].split()
    assert float(last[1]) == pytest.approx(100 * rec["mean"], abs=0.006)
    assert float(last[7]) == pytest.approx(100 * rec["min"], abs=0.006)
    assert f"{100 * rec['mean']:.2f} % mean" in r.stdout


def test_sweep_writes_csv_and_png(tmp_path):
    out = tmp_path / "sw"
    r = run_models(["sweep", "--dataset", "digits", "--chips", "2", "--epochs", "2",
                    "--mlp-epochs", "2", "--offset-sigmas", "0,4", "--rram-sigmas", "0,0.3",
                    "-o", out])
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["offset.png", "rram.png", "sweep.csv"]
    lines = (out / "sweep.csv").read_text().splitlines()
    assert lines[0] == "experiment,method,sigma,chip_seed,accuracy"
    # offset: ideal + 3 methods x 2 sigmas x 2 chips; rram: 4 methods x 2 sigmas x 2 chips
    assert len(lines) - 1 == 1 + 3 * 2 * 2 + 4 * 2 * 2
    for name in ("offset.png", "rram.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "seed: 0" in r.stdout
