"""The command line ``python -m models``: train, eval and sweep end to end on digits (tiny
settings), and every bad input: exit status 2, one line on stderr naming the bad value,
nothing written.

Commands run in subprocesses (``sys.executable -m models`` from the repository root),
because the exit status, the stderr line and the absence of files are what a user sees.
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
                    "-o", d / "m" / "digits"])
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
    assert "seed: 0" in r.stdout


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
                    "-o", tmp_path / "cil"])
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "cil.json").read_text())
    assert doc["training"]["chip_in_loop"]["seed"] == 2
    assert doc["training"]["chip_in_loop"]["config"]["offset_sigma"] == 2.0
    on_chip = float(r.stdout.split("on chip 2 (macro model):")[1].split("%")[0])
    assert on_chip == pytest.approx(100 * doc["accuracy"]["val_chip"], abs=0.006)


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


def _garbage(path, data=b"not an idx file at all"):
    path.write_bytes(data)
    return path


BAD = [
    # (id, args (T = tmp folder), words the message must contain)
    ("unknown-dataset", ["train", "--dataset", "cifar", "-o", "T/m"], ["cifar", "digits", "mnist"]),
    ("epochs-zero", ["train", "--epochs", "0", "-o", "T/m"], ["epochs", "0", "1..10000"]),
    ("epochs-text", ["train", "--epochs", "ten", "-o", "T/m"], ["epochs", "'ten'"]),
    ("dva-negative", ["train", "--dva", "-0.1", "-o", "T/m"], ["dva", "-0.1", ">= 0"]),
    ("dva-nan", ["train", "--dva", "nan", "-o", "T/m"], ["dva", "nan"]),
    ("missing-idx", ["train", "--dataset", "mnist", "--images", "T/none.idx", "--labels",
                     "T/none2.idx", "-o", "T/m"], ["--images", "none.idx", "no such file"]),
    ("garbage-idx", ["train", "--dataset", "mnist", "--images", "T/garbage.idx", "--labels",
                     "T/garbage.idx", "-o", "T/m"], ["--images", "garbage.idx", "not an IDX"]),
    ("images-without-labels", ["train", "--dataset", "mnist", "--images", "T/garbage.idx",
                               "-o", "T/m"], ["--images/--labels", "both"]),
    ("images-with-digits", ["train", "--images", "T/garbage.idx", "--labels", "T/garbage.idx",
                            "-o", "T/m"], ["--images", "digits", "mnist"]),
    ("chip-option-without-loop", ["train", "--sram-offset-sigma", "2", "-o", "T/m"],
     ["--sram-offset-sigma", "--chip-in-loop"]),
    ("ideal-chip-in-loop", ["train", "--chip-in-loop", "1", "-o", "T/m"], ["--chip-in-loop", "ideal"]),
    ("rows", ["train", "--rows", "33", "-o", "T/m"], ["rows", "33", "multiple of 32"]),
    ("comp-rows", ["train", "--comp-rows", "6", "-o", "T/m"], ["--comp-rows", "6", "power of two"]),
    ("output-under-file", ["train", "-o", "T/file.txt/m"], ["-o", "file.txt", "not a folder"]),
    ("n-train", ["train", "--dataset", "mnist", "--images", "T/img.idx", "--labels", "T/lab.idx",
                 "--n-train", "5", "-o", "T/m"], ["--n-train", "5", "1..4"]),
    ("eval-missing-model", ["eval", "--model", "T/nomodel", "--dataset", "digits"],
     ["--model", "nomodel"]),
    ("eval-garbage-model", ["eval", "--model", "T/bad.json", "--dataset", "digits"],
     ["--model", "bad.json"]),
    ("eval-no-data", ["eval", "--model", "T/bad.json"], ["--images", "--dataset"]),
    ("eval-dataset-and-images", ["eval", "--model", "T/bad.json", "--dataset", "digits",
                                 "--images", "T/img.idx", "--labels", "T/lab.idx"],
     ["--dataset", "--images"]),
    ("eval-range-order", ["eval", "--model", "T/bad.json", "--range", "5:2"], ["range", "5:2"]),
    ("eval-calibrate-rram", ["eval", "--model", "T/bad.json", "--dataset", "digits",
                             "--rram-sigma", "0.1", "--calibrate"], ["--calibrate", "ReRAM"]),
    ("eval-sram-and-rram", ["eval", "--model", "T/bad.json", "--dataset", "digits",
                            "--rram-sigma", "0.1", "--sram-offset-sigma", "1"],
     ["--rram-sigma", "--sram-offset-sigma"]),
    ("eval-noise-macro", ["eval", "--model", "T/bad.json", "--dataset", "digits",
                          "--read-noise", "0.3"], ["--read-noise", "--backend analog"]),
    ("eval-macro-rram", ["eval", "--model", "T/bad.json", "--dataset", "digits",
                         "--rram-sigma", "0.1", "--backend", "macro"], ["--backend", "analog"]),
    ("eval-offset-negative", ["eval", "--model", "T/bad.json", "--dataset", "digits",
                              "--sram-offset-sigma", "-1"], ["sram-offset-sigma", "-1"]),
    ("eval-on-off", ["eval", "--model", "T/bad.json", "--dataset", "digits",
                     "--rram-sigma", "0.1", "--on-off-ratio", "1"], ["on-off-ratio", "'1'", "> 1"]),
    ("sweep-chips", ["sweep", "--chips", "0", "-o", "T/sw"], ["chips", "0"]),
    ("sweep-sigmas", ["sweep", "--offset-sigmas", "1,x", "-o", "T/sw"], ["offset-sigmas", "'x'"]),
    ("sweep-experiment", ["sweep", "--experiment", "spice", "-o", "T/sw"], ["spice", "offset", "rram"]),
    ("sweep-model-rram", ["sweep", "--experiment", "rram", "--model", "T/bad.json", "-o", "T/sw"],
     ["--model", "rram"]),
    ("sweep-output-file", ["sweep", "-o", "T/file.txt"], ["-o", "file.txt", "not a folder"]),
    ("unknown-command", ["fit"], ["fit"]),
]


def run_in_process(args, capsys):
    """``models.cli.main`` in this process (argparse errors exit through SystemExit)."""
    from models import cli
    try:
        rc = cli.main([str(a) for a in args])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out, err)


#: Cases also run as a real subprocess (the rest run in-process: same code, faster).
SUBPROCESS_CASES = {"unknown-dataset", "missing-idx", "eval-garbage-model", "sweep-output-file"}


@pytest.mark.parametrize("case, args, words", BAD, ids=[b[0] for b in BAD])
def test_bad_input(tmp_path, capsys, case, args, words):
    _garbage(tmp_path / "garbage.idx")
    _garbage(tmp_path / "bad.json", b"{not json")
    (tmp_path / "file.txt").write_text("x")
    save_idx(tmp_path / "img.idx", np.zeros((5, 28, 28), np.uint8))
    save_idx(tmp_path / "lab.idx", np.zeros(5, np.uint8))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    argv = [a.replace("T/", f"{tmp_path}/") for a in args]
    r = run_models(argv) if case in SUBPROCESS_CASES else run_in_process(argv, capsys)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("models: error: "), r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert r.stdout == ""
