"""``python -m bench.engine_speed`` (bench/engine_speed.py): a small engine classifies a
buffer of images in Verilator; the classes equal the golden model's, the engine's own
cycle count equals the contract's formula, and the FPGA figures follow from a report.
"""

import json

import numpy as np
import pytest

from bench import engine_speed
from models.datasets import save_idx
from models.engine import EngineModel, EngineParams, build_program
from models.export import save_folded

from .random_nets import random_net


def test_a_small_engine_in_verilator(tmp_path, rng, capsys):
    net = random_net(rng, (20, 9, 7), 4, 8, 6)
    save_folded(net, tmp_path / "tiny")
    images = rng.integers(0, 16, (12, 20)).astype(np.uint8)
    x = images.astype(np.int64)
    golden = EngineModel(EngineParams.for_model(net, image_slots=12))
    golden.load(net)
    want = golden.classify(x)
    labels = want.copy()
    labels[:3] = (labels[:3] + 1) % 7                # three wrong labels
    save_idx(tmp_path / "images.idx", images)
    save_idx(tmp_path / "labels.idx", labels.astype(np.uint8))
    status = engine_speed.main(["--model", str(tmp_path / "tiny"), "--images",
                                str(tmp_path / "images.idx"), "--labels",
                                str(tmp_path / "labels.idx"), "-o", str(tmp_path / "out")])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert status == 0 and result["identical"] and result["differing"] == 0
    assert result["images"] == 12 and result["accuracy"] == pytest.approx(9 / 12, abs=1e-4)
    per_image = build_program(net, golden.params.macro).image_cycles()
    assert result["cycles_per_image"] == result["formula_cycles_per_image"] == per_image
    assert result["binary_macs_per_image"] == 20 * 9 * 4 + 9 * 7
    assert json.loads((tmp_path / "out" / "engine_speed.json").read_text()) == result


def test_figures_of_a_report():
    report = dict(luts=20_000, timing=dict(fmax_hz=120e6, clock_hz=100e6, met=True))
    f = engine_speed.figures(report, 50, 58_176)
    assert f["images_per_s"] == 2e6                  # the met clock, not Fmax
    assert f["images_per_s_per_klut"] == 1e5
    assert f["macs_per_s_per_lut"] == pytest.approx(2e6 * 58_176 / 20_000, rel=1e-6)
    failed = dict(report, timing=dict(fmax_hz=80e6, clock_hz=100e6, met=False))
    assert engine_speed.figures(failed, 50, 1)["images_per_s"] == 1.6e6
