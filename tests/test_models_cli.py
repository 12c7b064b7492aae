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

from models import schema
from models.datasets import DEFAULT_MNIST_DIR, MNIST_FILES, load_digits, save_idx
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
    # The BLAS kernel the training's products ran in: the tests set the command's
    # (tests/conftest.py), so this process has it too.
    from models.blas_env import blas_in_use
    assert doc["training"]["blas"] == blas_in_use() and blas_in_use()["kernel"]
    assert doc["training"]["numpy"] == np.__version__
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
            "--backend", "analog", "--calibrate", "--trim", "4"]
    r = run_models(["train", "--dataset", "digits", "--epochs", "2", "--noise-aware",
                    "--noise-epochs", "1", "--chips-per-step", "8", *chip, "--quiet",
                    "--config", "acc_noise=[[20, 5], [1, 1], [1, 1]]",
                    "-o", tmp_path, "--name", "na"])
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "na.json").read_text())
    schema.check(doc, "model", "na.json")
    assert doc["training"]["recipe"] == "digits" and doc["training"]["config"]["epochs"] == 2
    assert doc["training"]["config"]["acc_noise"] == [[20.0, 5.0], [1.0, 1.0], [1.0, 1.0]]
    na = doc["training"]["noise_aware"]
    assert na["train_config"]["acc_noise"] is None      # the sampled chips make the errors
    assert na["epochs"] == 1 and na["chips_per_step"] == 8 and na["trim"] == 4
    assert na["config"]["read_noise"] == 0.5 and na["training_chips"][0] >= 1 << 32
    rec = doc["accuracy"]["val_chips"]
    assert rec["chip_seeds"] == [0, 19]
    e = run_models(["eval", "--model", tmp_path / "na", "--dataset", "digits", "--chips", "20",
                    *chip, "--quiet"])
    assert e.returncode == 0, e.stderr
    assert "trimmed (mean of 4 reads)" in e.stdout
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


def test_sweep_noise_experiment(trained, tmp_path):
    d, _ = trained
    out = tmp_path / "sw"
    r = run_models(["sweep", "--experiment", "noise", "--dataset", "digits", "--models",
                    f"a={d / 'm' / 'digits'},b={d / 'm' / 'digits.json'}", "--chips", "2",
                    "--read-noises", "0,0.5", "--quiet", "-o", out])
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["noise.png", "sweep.csv"]
    lines = (out / "sweep.csv").read_text().splitlines()
    assert len(lines) - 1 == 2 + 2 * 2 * 2          # ideal rows + models x noises x chips
    # The same model under two labels: the same figures, chip by chip.
    rows = [l.split(",") for l in lines[1:]]
    a = [r[2:] for r in rows if r[1] == "a"]
    assert a and a == [r[2:] for r in rows if r[1] == "b"]


def test_sweep_noise_with_a_trim_of_several_reads_is_what_eval_gives(trained, tmp_path):
    """--trim 4 in the noise experiment: every chip's accuracy at read noise 0.5 equals
    `models eval --chips` with the experiment's chip options and the same trim."""
    d, _ = trained
    model = d / "m" / "digits"
    out = tmp_path / "sw"
    r = run_models(["sweep", "--experiment", "noise", "--dataset", "digits", "--models",
                    f"a={model}", "--chips", "3", "--read-noises", "0.5", "--trim", "4",
                    "--quiet", "-o", out])
    assert r.returncode == 0, r.stderr
    rows = [l.split(",") for l in (out / "sweep.csv").read_text().splitlines()[1:]]
    swept = {int(r[3]): float(r[4]) for r in rows if r[1] == "a"}
    csv_path = tmp_path / "chips.csv"
    e = run_models(["eval", "--model", model, "--dataset", "digits", "--chips", "3",
                    "--sram-offset-sigma", "4", "--sram-cell-sigma", "0.1", "--read-noise",
                    "0.5", "--backend", "analog", "--calibrate", "--trim", "4", "--quiet",
                    "--csv", csv_path])
    assert e.returncode == 0, e.stderr
    evaluated = {int(l.split(",")[0]): float(l.split(",")[3])
                 for l in csv_path.read_text().splitlines()[1:]}
    assert swept.keys() == evaluated.keys() == {0, 1, 2}
    for seed in swept:
        assert swept[seed] == pytest.approx(evaluated[seed], abs=1e-6)


def test_sweep_energy_rows_are_what_eval_prints(trained, tmp_path):
    """Every K's chip accuracies and energy per image equal `models eval --energy` with
    the same options; a preset that prices the compensation word lines makes the energy
    grow with K."""
    d, _ = trained
    doc = json.loads((ROOT / "models" / "presets" / "jetcas19.json").read_text())
    doc["energy"]["comp_wordline_activations"] = dict(value=5, unit="fJ", source="test")
    preset = tmp_path / "priced.json"
    preset.write_text(json.dumps(doc))
    chip = ["--sram-offset-sigma", "4", "--calibrate"]
    out = tmp_path / "sw"
    r = run_models(["sweep", "--experiment", "energy", "--dataset", "digits", "--model",
                    d / "m" / "digits", "--preset", preset, "--comp-rows-list", "2,8",
                    "--chips", "2", *chip, "--quiet", "-o", out])
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["energy.png", "sweep.csv"]
    assert (out / "energy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (out / "sweep.csv").read_text().splitlines()
    assert lines[0] == ("experiment,comp_rows,planes,chip_seed,accuracy,energy_pj_per_image,"
                        "latency_ns_per_image,preset")
    rows = [dict(zip(lines[0].split(","), l.split(","))) for l in lines[1:]]
    assert len(rows) == 2 * (1 + 2)                 # per K: ideal hardware + 2 chips
    energy = {int(r["comp_rows"]): float(r["energy_pj_per_image"]) for r in rows}
    assert energy[8] > energy[2]
    for k in (2, 8):
        e = run_models(["eval", "--model", d / "m" / "digits", "--dataset", "digits",
                        "--chips", "2", "--comp-rows", str(k), *chip, "--energy", preset,
                        "--quiet"])
        assert e.returncode == 0, e.stderr
        printed = [float(l.split()[2]) for l in e.stdout.splitlines() if l.startswith("chip ")]
        mine = [100 * float(r["accuracy"]) for r in rows
                if int(r["comp_rows"]) == k and r["chip_seed"] != "-1"]
        assert mine == pytest.approx(printed, abs=0.006)
        nj = e.stdout.splitlines()[-1].split("; ")[-1].split()[0]
        assert f"{energy[k] / 1e3:.4g}" == nj
        assert all(r["planes"] == "5" and r["preset"] == doc["name"] for r in rows)


@pytest.mark.skipif(not all((DEFAULT_MNIST_DIR / f).exists() for f in MNIST_FILES),
                    reason=f"the MNIST subset is not in {DEFAULT_MNIST_DIR}")
def test_preprocessed_recipe_round_trip(tmp_path):
    """A recipe with its own preprocessing (deskew, contrast) on 300 MNIST images: the
    model records it, ``models.inputs.model_inputs`` (eval, energy, fpga run) applies it
    to raw images exactly as the training pipeline did, and ``eval --dataset`` loads the
    recorded split with it, so eval reproduces the recorded accuracy both ways."""
    from models.datasets import load_mnist, mnist_split
    from models.inputs import model_inputs

    images, labels = load_mnist()
    save_idx(tmp_path / "img.idx", images[:300])
    save_idx(tmp_path / "lab.idx", labels[:300])
    r = run_models(["train", "--dataset", "mnist", "--recipe", "mnist-chip", "--images",
                    tmp_path / "img.idx", "--labels", tmp_path / "lab.idx", "--n-train", "200",
                    "--epochs", "2", "--quiet", "-o", tmp_path, "--name", "m"])
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["training"]["recipe"] == "mnist-chip"
    assert doc["preprocessing"]["deskew"] == "moments" and doc["preprocessing"]["contrast"] == 1.5
    assert doc["preprocessing"]["val"] == [200, 300]
    e = run_models(["eval", "--model", tmp_path / "m", "--images", tmp_path / "img.idx",
                    "--labels", tmp_path / "lab.idx", "--range", "200:300"])
    assert e.returncode == 0, e.stderr
    assert accuracy_line(e.stdout) == pytest.approx(100 * doc["accuracy"]["val_ideal"], abs=1e-9)
    # The same images as the model's recorded validation split of the default files.
    e = run_models(["eval", "--model", tmp_path / "m", "--dataset", "mnist"])
    assert e.returncode == 0, e.stderr
    assert accuracy_line(e.stdout) == pytest.approx(100 * doc["accuracy"]["val_ideal"], abs=1e-9)
    assert "100 images" in e.stdout
    net = load_folded(tmp_path / "m")
    split = mnist_split(images[:300], labels[:300], n_train=200, deskew_images=True,
                        contrast=1.5)
    np.testing.assert_array_equal(model_inputs(net, images[200:300], "img.idx"), split.x_val)
