"""The counter-based read-noise sampler (models/sampler.py) and what it guarantees:
the same draws whatever the order, subset, batch or split of the work; normal draws;
and ``models train --chip-in-loop`` recording the accuracy ``models eval`` reproduces."""

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import sampler as S
from models.chip import ChipConfig, sample_chips
from models.devices import rram_mac, sram_column, sram_mac
from models.sampler import ReadNoise

ROOT = Path(__file__).resolve().parent.parent


def _cdf(z):
    return 0.5 * math.erfc(-z / math.sqrt(2))


def test_inverse_normal_cdf_matches_the_standard_library(rng):
    p = np.concatenate([rng.random(2000), 10.0 ** -rng.uniform(1, 15, 200),
                        1 - 10.0 ** -rng.uniform(1, 15, 200)])
    p = p[(p > 0) & (p < 1)]
    want = np.array([statistics.NormalDist().inv_cdf(float(v)) for v in p])
    np.testing.assert_allclose(S.inverse_normal_cdf(p), want, rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match="0 < p < 1"):
        S.inverse_normal_cdf([0.5, 1.0])


def test_interpolated_quantiles_are_within_3e8_of_the_normal_cdf():
    edges = S.bucket_edges()
    i = np.arange(S.TAIL_BUCKETS, S.BUCKETS - S.TAIL_BUCKETS)
    worst = 0.0
    for f in (0.1, 0.3, 0.5, 0.7, 0.9):
        z = edges[i] + f * (edges[i + 1] - edges[i])
        err = np.abs(np.vectorize(_cdf)(z) - (i + f) / S.BUCKETS)
        worst = max(worst, float(err.max()))
    print(f"largest CDF error of the interpolated quantiles: {worst:.3g}")
    assert worst < 3e-8


def test_draws_from_bits_lie_in_their_bucket(rng):
    bucket = rng.integers(0, S.BUCKETS, 200_000).astype(np.uint16)
    fine = rng.integers(0, S.BUCKETS, 200_000).astype(np.uint16)
    z = S.normal_from_bits(bucket, fine).astype(np.float64)
    edges = S.bucket_edges()
    assert np.all(z >= edges[bucket] - 1e-6) and np.all(z <= edges[bucket.astype(int) + 1] + 1e-6)
    mid = S.bucket_midpoints()[bucket]
    central = ~np.isnan(mid)
    assert np.max(np.abs(z[central] - mid[central])) <= S.central_half_width()
    assert np.all(np.isnan(mid[(bucket < S.TAIL_BUCKETS) | (bucket >= S.BUCKETS - S.TAIL_BUCKETS)]))


def test_draws_are_standard_normal(seed):
    seeds = [seed % 1000, seed % 1000 + 1]
    z = ReadNoise(seeds).standard_normal((1, 2, 0), 3, np.arange(40_000), 96).astype(np.float64).ravel()
    n = z.size
    print(f"{n} draws: mean {z.mean():.5f}, std {z.std():.5f}")
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.std() - 1) < 5 / math.sqrt(2 * n)
    # Kolmogorov-Smirnov against Phi on a subsample (critical value at p = 0.001: 1.95 / sqrt(n)).
    sub = np.sort(z[:: max(1, n // 20_000)])
    cdf = np.vectorize(_cdf)(sub)
    k = np.arange(1, len(sub) + 1) / len(sub)
    d = max(np.max(k - cdf), np.max(cdf - (k - 1 / len(sub))))
    print(f"KS distance {d:.5f} on {len(sub)} draws (critical {1.95 / math.sqrt(len(sub)):.5f})")
    assert d < 1.95 / math.sqrt(len(sub))
    # Neighbouring reads (columns of one quad, adjacent images) are uncorrelated.
    block = ReadNoise([seed % 1000]).standard_normal((0, 0, 0), 0, np.arange(20_000), 8)[0]
    for a, b in ((block[:, 0], block[:, 1]), (block[:, 3], block[:, 4]), (block[:-1, 0], block[1:, 0])):
        assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(len(a))


def test_bucket_bits_are_uniform(seed):
    b = ReadNoise([seed % 997]).buckets((0, 0, 0), 0, np.arange(8192), 64).ravel()
    counts = np.bincount(b >> 8, minlength=256)
    expected = b.size / 256
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    print(f"chi-square of the top 8 bucket bits: {chi2:.1f} (255 degrees of freedom)")
    assert chi2 < 350           # p < 1e-4 for 255 degrees of freedom


def test_same_draws_for_any_subset_order_block_or_layout():
    seeds = [5, 17, 3, 99]
    full = ReadNoise(seeds).standard_normal((2, 1, 0), 4, np.arange(300), 10)
    # chips in another order and as a subset
    part = ReadNoise([99, 5]).standard_normal((2, 1, 0), 4, np.arange(300), 10)
    np.testing.assert_array_equal(part, full[[3, 0]])
    # images as a subset, in another order
    idx = np.array([250, 3, 17, 299])
    np.testing.assert_array_equal(ReadNoise(seeds).standard_normal((2, 1, 0), 4, idx, 10), full[:, idx])
    # image-major layout
    np.testing.assert_array_equal(
        ReadNoise(seeds).standard_normal((2, 1, 0), 4, np.arange(300), 10, chip_major=False),
        full.transpose(1, 0, 2))
    # scattered reads
    c, m, col = np.array([0, 3, 2]), np.array([7, 299, 0]), np.array([9, 0, 5])
    np.testing.assert_array_equal(ReadNoise(seeds).standard_normal_at((2, 1, 0), 4, c, m, col),
                                  full[c, m, col])
    # every key word matters
    for other in (ReadNoise(seeds).standard_normal((2, 1, 1), 4, np.arange(300), 10),
                  ReadNoise(seeds).standard_normal((2, 1, 0), 3, np.arange(300), 10),
                  ReadNoise(seeds, purpose="train").standard_normal((2, 1, 0), 4, np.arange(300), 10),
                  ReadNoise(seeds, pass_index=1).standard_normal((2, 1, 0), 4, np.arange(300), 10)):
        assert np.mean(other == full) < 0.01


@pytest.mark.parametrize("kw, err, match", [
    (dict(chip_seeds=[-1]), ValueError, "chip_seeds must be >= 0"),
    (dict(chip_seeds=[1.5]), ValueError, "chip_seeds must be a 1-d array of integers"),
    (dict(chip_seeds=[1], purpose="bogus"), ValueError, "purpose must be one of eval, calibration, train"),
    (dict(chip_seeds=[1], purpose=7), ValueError, "purpose must be one of"),
    (dict(chip_seeds=[1], pass_index=-2), ValueError, "pass_index must be a non-negative integer"),
])
def test_read_noise_rejects_bad_keys(kw, err, match):
    with pytest.raises(err, match=match):
        ReadNoise(**kw)


def test_device_models_with_keyed_noise_do_not_depend_on_chunks(rng):
    cfg = ChipConfig.typical("sram", read_noise=0.5)
    chips = sample_chips(cfg, [4, 9, 1], 32, 24, 8)
    x = rng.integers(0, 32, (50, 32))
    w = rng.integers(0, 2, (32, 24))
    noise = ReadNoise(chips.seed).at((0, 0, 0))
    a = sram_mac(x, w, chips, 5, noise=noise)
    b = sram_mac(x, w, chips, 5, noise=noise, max_elements=3 * 24 * 7)
    np.testing.assert_array_equal(a, b)
    # images 10..19 on their own get the draws they had in the whole call
    part = sram_mac(x[10:20], w, chips, 5, noise=ReadNoise(chips.seed).at((0, 0, 0), np.arange(10, 20)))
    np.testing.assert_array_equal(part, a[:, 10:20])
    # one chip of the stack on its own
    one = sram_mac(x, w, chips[1:2], 5, noise=ReadNoise([9]).at((0, 0, 0)))
    np.testing.assert_array_equal(one[0], a[1])
    # the noise changes readouts, and its spread is the configured one
    t0 = sram_column(x[:, :] & 1, w, chips, noise=noise)
    t1 = sram_column(x[:, :] & 1, w, chips, noise=noise, plane=1)
    diff = (t1 - t0).ravel() / np.repeat(chips.gain[:, None, :], 50, axis=1).ravel()
    assert 0.5 * math.sqrt(2) * 0.85 < diff.std() < 0.5 * math.sqrt(2) * 1.15
    rchip = sample_chips(ChipConfig(technology="rram", read_noise=0.2, cell_sigma=0.1), [2, 3], 32, 8)
    q = 2 * w[:, :8] - 1
    r1 = rram_mac(x, q, rchip, noise=ReadNoise([2, 3]).at((0, 0, 0)))
    r2 = rram_mac(x, q, rchip, noise=ReadNoise([2, 3]).at((0, 0, 0)), max_elements=64)
    np.testing.assert_array_equal(r1, r2)


def test_device_models_reject_bad_noise_sources(rng):
    chips = sample_chips(ChipConfig(read_noise=0.3), [0, 1], 8, 4, 2)
    x = rng.integers(0, 2, (5, 8))
    w = rng.integers(0, 2, (8, 4))
    with pytest.raises(ValueError, match="read_noise > 0: pass noise="):
        sram_column(x, w, chips)
    with pytest.raises(ValueError, match="not both"):
        sram_column(x, w, chips, noise=ReadNoise([0, 1]).at(), rng=rng)
    with pytest.raises(ValueError, match="keyed for 3 chips, the call has 2"):
        sram_column(x, w, chips, noise=ReadNoise([0, 1, 2]).at())
    with pytest.raises(ValueError, match="keyed for 4 images, the call has 5"):
        sram_column(x, w, chips, noise=ReadNoise([0, 1]).at((0, 0, 0), np.arange(4)))
    with pytest.raises(TypeError, match="noise must be a models.sampler.ArrayNoise"):
        sram_column(x, w, chips, noise=ReadNoise([0, 1]))


def _models(args):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "models", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


CHIP = ["--sram-offset-sigma", "4", "--sram-cell-sigma", "0.1", "--read-noise", "0.5",
        "--backend", "analog", "--calibrate", "--trim"]


def test_chip_in_the_loop_records_what_eval_reproduces(tmp_path):
    r = _models(["train", "--dataset", "digits", "--epochs", "3", "--chip-in-loop", "3",
                 "--chip-epochs", "2", *CHIP, "--quiet", "-o", tmp_path, "--name", "cil"])
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "cil.json").read_text())
    assert doc["version"] == 2
    reported = r.stdout.split("on chip 3 (analog model):")[1].split("%")[0].strip()
    e = _models(["eval", "--model", tmp_path / "cil", "--dataset", "digits", "--chip-seed", "3",
                 *CHIP, "--quiet"])
    assert e.returncode == 0, e.stderr
    line = next(ln for ln in e.stdout.splitlines() if ln.startswith("accuracy:"))
    correct = int(line.split("(")[1].split("/")[0])
    print(f"train reported {reported} %, recorded {doc['accuracy']['val_chip']}; eval: {line}")
    assert line.split()[1] == reported
    assert correct == round(doc["accuracy"]["val_chip"] * 359)
    assert doc["accuracy"]["val_chip"] == correct / 359
