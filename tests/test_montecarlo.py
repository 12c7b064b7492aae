"""The fast chip Monte Carlo (models/montecarlo.py) against the straightforward evaluation.

* bit-true macro model and ideal-cell analog chips: predictions bit-identical to
  ``ChipReadout.predict_reference`` on seeded random nets and chips;
* analog chips with cell spread and read noise: the number of differing predictions is
  printed and at most ``ANALOG_TOLERANCE`` of all (the same draws, float32 operations in
  another order);
* read noise: the counter-based draws give readouts equal in distribution to numpy's
  normal draws (a chi-square test, its seed printed);
* results do not depend on how chips and images are blocked.
"""

import dataclasses
import json

import numpy as np
import pytest

from models import montecarlo
from models.chip import Chip, ChipConfig, sample_chip
from models.chip_readout import ChipReadout, predict_chips
from models.datasets import DEFAULT_MNIST_DIR, MNIST_FILES
from models.export import layer_acc
from tests.random_nets import random_net

#: Largest fraction of predictions of an analog float path allowed to differ from the
#: straightforward evaluation (measured: 0 in every configuration below).
ANALOG_TOLERANCE = 0.002

BIT_TRUE = {
    "offsets": ChipConfig(offset_sigma=4.0),
    "typical (gain, table)": ChipConfig.typical("sram", read_noise=0.0),
    "stuck, sat, qshift": ChipConfig(offset_sigma=2.0, stuck_prob=0.03, sat=20, qshift=1),
    "exp table, cells": ChipConfig(offset_sigma=1.0, cell_sigma=0.2, bl_vmax=20.0, bl_shape="exp"),
}
ANALOG_EXACT = {
    "offsets": ChipConfig(offset_sigma=4.0),
    "offsets, gain, tanh, sat": ChipConfig(offset_sigma=3.0, gain_sigma=0.05, bl_vmax=30.0, sat=25),
    "stuck, exp, qshift": ChipConfig(offset_sigma=2.0, stuck_prob=0.02, bl_vmax=40.0,
                                     bl_shape="exp", qshift=1),
}
ANALOG_FLOAT = {
    "typical, noise 0.3": ChipConfig.typical("sram"),
    "typical, noise 0.5": ChipConfig.typical("sram", read_noise=0.5),
    "cells only": ChipConfig(cell_sigma=0.15, offset_sigma=2.0),
    "exp, sat, qshift, stuck": ChipConfig.typical("sram", bl_shape="exp", sat=30, qshift=1,
                                                  stuck_prob=0.02),
    "bit-line mode": ChipConfig.typical("sram", bl_mode="bitline", read_noise=0.4),
    "noise, ideal cells": ChipConfig(offset_sigma=3.0, read_noise=0.6),
}


@pytest.fixture(scope="module")
def nets():
    rng = np.random.default_rng(20261206)
    return {
        "32x16, 2x2 tiles": random_net(rng, (40, 24, 20, 10), 5, 32, 16),
        "16x12, 3 planes": random_net(rng, (30, 20, 10), 3, 16, 12),
    }


def _images(rng, net, m):
    return rng.integers(0, 1 << net.layers[0].planes, (m, net.layers[0].inputs))


def _cases(rng, configs):
    """(name, config, calibrate, trim): trim none, or the mean of 1, 4 or 16 reads."""
    for name, cfg in configs.items():
        cal = bool(rng.integers(2))
        yield name, cfg, cal, cal and (0, 1, 4, 16)[int(rng.integers(4))]


@pytest.mark.parametrize("net_name", ["32x16, 2x2 tiles", "16x12, 3 planes"])
@pytest.mark.parametrize("backend, configs", [("macro", BIT_TRUE), ("analog", ANALOG_EXACT)],
                         ids=["bit-true macro", "analog, ideal cells, no noise"])
def test_integer_column_sums_are_bit_identical(nets, net_name, backend, configs, rng):
    net = nets[net_name]
    x = _images(rng, net, 300)
    for name, cfg, cal, trim in _cases(rng, configs):
        seeds = [int(s) for s in rng.integers(0, 10_000, 5)]
        cr = ChipReadout(net, cfg, seeds, backend=backend, calibrate=cal, trim=trim)
        fast, ref = cr.predict(x), cr.predict_reference(x)
        print(f"{name}: calibrate={cal} trim={trim} chips={seeds}: "
              f"{int(np.sum(fast != ref))} of {fast.size} predictions differ")
        np.testing.assert_array_equal(fast, ref)


@pytest.mark.parametrize("net_name", ["32x16, 2x2 tiles", "16x12, 3 planes"])
def test_analog_float_paths_differ_within_tolerance(nets, net_name, rng):
    net = nets[net_name]
    x = _images(rng, net, 300)
    total = differ = 0
    for name, cfg, cal, trim in _cases(rng, ANALOG_FLOAT):
        seeds = [int(s) for s in rng.integers(0, 10_000, 5)]
        cr = ChipReadout(net, cfg, seeds, backend="analog", calibrate=cal, trim=trim)
        fast, ref = cr.predict(x), cr.predict_reference(x)
        n = int(np.sum(fast != ref))
        print(f"{name}: calibrate={cal} trim={trim}: {n} of {fast.size} predictions differ")
        total += fast.size
        differ += n
    print(f"all analog float paths: {differ} of {total} predictions differ "
          f"(tolerance {ANALOG_TOLERANCE:.1%})")
    assert differ <= ANALOG_TOLERANCE * total


def test_layer_values_equal_the_readouts_of_the_same_draws(nets, rng):
    """Below the predictions: every tile sum of the first layer, noise included."""
    net = nets["32x16, 2x2 tiles"]
    x = _images(rng, net, 200)
    cfg = ChipConfig.typical("sram", read_noise=0.5)
    cr = ChipReadout(net, cfg, [3, 8, 11], backend="analog", calibrate=True, trim=16)
    assert cr.residual[0, 0, 0].dtype == np.float64       # the 16 noisy reads disagree
    images = np.arange(1000, 1200)
    cr.use_images(images)
    cr._shared_input = True
    ref = layer_acc(np.tile(x, (3, 1)), net.layers[0].weights, net.layers[0].planes, layer=0,
                    readout=cr)
    cr._shared_input = False
    plan = montecarlo._Plan(cr)
    acc, bias, shared = montecarlo._layer(plan, 0, x, True, images)
    assert shared and bias is None
    fast = acc.transpose(1, 0, 2).reshape(ref.shape[0], -1)
    ref = ref[:, :fast.shape[1]]                          # the real columns
    n = int(np.sum(fast != ref))
    print(f"{n} of {ref.size} first-layer accumulators differ")
    assert n <= 1e-4 * ref.size


def test_a_trim_mean_beyond_float32_exactness_is_refused(nets, rng, monkeypatch):
    """The float32 tiles hold the trim's mean to 1/T: accumulators times T must stay below
    2^24 (here the limit is lowered to make real accumulators exceed it)."""
    net = nets["32x16, 2x2 tiles"]
    cr = ChipReadout(net, ChipConfig(offset_sigma=3.0, read_noise=0.5), [5, 6],
                     backend="analog", calibrate=True, trim=16)
    monkeypatch.setattr(montecarlo._OneHot, "EXACT", 1 << 12)
    with pytest.raises(ValueError, match=r"trim of 16 reads are not exact in float32; trim "
                                         r"with at most \d+ reads"):
        cr.predict(_images(rng, net, 10))


@pytest.mark.parametrize("net_name", ["32x16, 2x2 tiles", "16x12, 3 planes"])
def test_one_hot_first_layer_accumulators_are_bit_identical(nets, net_name, rng):
    """Tabled columns shared by every chip's inputs and weights: the per-column product
    of the plane-weighted one-hot sums with the tables gives the macro's accumulators."""
    net = nets[net_name]
    x = _images(rng, net, 150)
    cfg = ChipConfig.typical("sram", read_noise=0.0)
    seeds = [int(s) for s in rng.integers(0, 10_000, 4)]
    print(f"chips {seeds}")
    cr = ChipReadout(net, cfg, seeds, backend="macro", calibrate=True, trim=True)
    cr.use_images(None)
    cr._shared_input = True
    ref = layer_acc(np.tile(x, (len(seeds), 1)), net.layers[0].weights, net.layers[0].planes,
                    layer=0, readout=cr)
    cr._shared_input = False
    plan = montecarlo._Plan(cr)
    assert plan.layers[0][4] is not None, "the typical bit-true chip has tabled columns"
    acc, bias, shared = montecarlo._layer(plan, 0, x, True, np.arange(len(x)))
    assert not shared and bias is None
    fast = acc.reshape(ref.shape[0], -1)
    np.testing.assert_array_equal(fast, ref[:, :fast.shape[1]])


def test_results_do_not_depend_on_blocks_or_subsets(nets, rng):
    net = nets["32x16, 2x2 tiles"]
    x = _images(rng, net, 120)
    cfg = ChipConfig.typical("sram", read_noise=0.5)
    whole = predict_chips(net, cfg, range(6), x, backend="analog", calibrate=True, trim=True)
    chips_2 = predict_chips(net, cfg, range(6), x, backend="analog", calibrate=True, trim=True,
                            max_rows=2 * len(x))
    np.testing.assert_array_equal(whole, chips_2)
    cr = ChipReadout(net, cfg, [2, 3], backend="analog", calibrate=True, trim=True)
    small = cr.predict(x, max_elements=500)
    np.testing.assert_array_equal(small, whole[2:4])
    part = cr.predict(x[40:70], images=np.arange(40, 70))
    np.testing.assert_array_equal(part, whole[2:4, 40:70])


def test_noisy_readouts_are_equal_in_distribution_to_numpy_normals(nets, seed):
    """Counter-based draws against numpy's normal generator: the first layer's tile sums
    of one image read 6000 times on two chips, per column, chi-square homogeneity test."""
    from scipy import stats

    net = nets["32x16, 2x2 tiles"]
    rng = np.random.default_rng(seed)
    x = np.repeat(_images(rng, net, 1), 6000, axis=0)
    cfg = ChipConfig.typical("sram", read_noise=0.5)
    chips = [int(s) for s in rng.integers(0, 10_000, 2)]
    keyed = ChipReadout(net, cfg, chips, backend="analog")
    images = np.arange(6000) + int(rng.integers(0, 1 << 30))
    plan = montecarlo._Plan(keyed)
    fast, _, _ = montecarlo._layer(plan, 0, x, True, images)             # (M, N, C)
    numpy_draws = ChipReadout(net, cfg, chips, backend="analog", rng=np.random.default_rng(seed))
    numpy_draws._shared_input = True
    ref = layer_acc(np.tile(x, (2, 1)), net.layers[0].weights, net.layers[0].planes, layer=0,
                    readout=numpy_draws).reshape(2, 6000, -1)[:, :, :fast.shape[2]]
    pvalues = []
    for n in range(2):
        for c in range(fast.shape[2]):
            a, b = fast[:, n, c].astype(np.int64), ref[n, :, c]
            values = np.union1d(a, b)
            table = np.array([[np.sum(a == v) for v in values], [np.sum(b == v) for v in values]])
            # pool sparse outer bins so that every expected count is at least 5
            keep = table.sum(axis=0) >= 10
            table = np.concatenate([table[:, keep], table[:, ~keep].sum(axis=1, keepdims=True)], axis=1)
            table = table[:, table.sum(axis=0) > 0]
            if table.shape[1] < 2:
                continue
            pvalues.append(stats.chi2_contingency(table)[1])
    pvalues = np.array(pvalues)
    print(f"seed {seed}: {len(pvalues)} columns, smallest p-value {pvalues.min():.4f}, "
          f"median {np.median(pvalues):.3f}; Bonferroni threshold {1e-3 / len(pvalues):.2e}")
    assert pvalues.min() > 1e-3 / len(pvalues)
    # and the p-values of equal distributions spread over (0, 1)
    assert 0.2 < np.median(pvalues) < 0.8


def test_rram_and_rng_stacks_use_the_straightforward_evaluation(nets, rng):
    net = nets["16x12, 3 planes"]
    x = _images(rng, net, 40)
    cr = ChipReadout(net, ChipConfig(technology="rram", cell_sigma=0.1, on_off_ratio=10.0), [1, 2],
                     backend="analog")
    np.testing.assert_array_equal(cr.predict(x), cr.predict_reference(x))
    g = ChipReadout(net, ChipConfig(read_noise=0.3), [1], backend="analog",
                    rng=np.random.default_rng(1))
    assert g.predict(x).shape == (1, 40)
    with pytest.raises(ValueError, match="one index per image"):
        ChipReadout(net, ChipConfig(offset_sigma=1.0), [1]).predict(x, images=np.arange(3))


def test_plan_collapses_affine_layers(nets):
    net = nets["32x16, 2x2 tiles"]
    cr = ChipReadout(net, ChipConfig(offset_sigma=2.0), [0, 1], backend="macro", calibrate=True)
    plan = montecarlo._Plan(cr)
    assert all(collapsed is not None for _, _, _, collapsed, _ in plan.layers)
    typical = ChipReadout(net, dataclasses.replace(ChipConfig.typical("sram"), read_noise=0.0),
                          [0, 1], backend="macro")
    # gain and curve make most first-layer columns non-affine
    assert montecarlo._Plan(typical).layers[0][3] is None
    # ... and the first layer reads them as one product per column
    assert montecarlo._Plan(typical).layers[0][4] is not None


#: The noisy readout's stages in ``--stages``, by ``--readout``.
READOUT_STAGES = {
    "numpy": {"product", "hash (bucket bits)", "bucket midpoint lookup",
              "ADC floor, boundary check"},
    "fused": {"product", montecarlo.FUSED_STAGE, "exact draws of the kept reads"},
}


@pytest.mark.skipif(not all((DEFAULT_MNIST_DIR / f).exists() for f in MNIST_FILES),
                    reason=f"the MNIST subset is not in {DEFAULT_MNIST_DIR}")
@pytest.mark.parametrize("readout", ["numpy", "fused"])
def test_bench_stages_account_for_the_reads(readout, capsys):
    """``bench.model_speed --stages``: every stage timed, the reads counted, the hooks off
    again afterwards, the JSON line complete."""
    from bench import model_speed
    from models import fused_readout
    from models.blas_env import blas_in_use
    if readout == "fused" and not fused_readout.available():
        pytest.skip("numba is not installed")
    assert model_speed.main(["--chips", "2", "--chunk", "2", "--n-images", "30", "--quick",
                             "--stages", "--compare-chips", "1", "--n-compare-images", "20",
                             "--readout", readout]) == 0
    assert montecarlo.FloatTile.stage_clock is None and montecarlo.layer_clock is None
    assert montecarlo.use_fused
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["readout"] == readout and result["cpu"] == model_speed.cpu()
    assert result["blas"] == blas_in_use()
    noisy, bit_true = (result["stages"][name] for name in model_speed.STAGED)
    # 100-96-96-10 on 32x96: 5 planes x 4 row tiles x 96 columns, then 3 x 96 and 3 x 10,
    # every read noisy in the headline configuration
    assert noisy["reads"] == bit_true["reads"] == 2 * 30 * 2238
    assert READOUT_STAGES[readout] <= set(noisy["stages"])
    assert {"readout tables and plan", "layer 0: products and readouts",
            "layer 2: products and readouts", "thresholds and scores"} <= set(bit_true["stages"])
    for st in (noisy, bit_true):
        assert all(s >= 0 for s in st["stages"].values()) and st["floor_seconds"] > 0
    # Few reads need their exact draw in the compiled pass (none in the numpy pass's count).
    assert 0 <= noisy["exact_draws"] < noisy["reads"] // 100
    assert (noisy["exact_draws"] > 0) == (readout == "fused")
    headline = result["configurations"][model_speed.QUICK[0]]
    assert headline["differing_predictions"] == 0 and headline["compared_predictions"] == 20


@pytest.mark.parametrize("name", list(BIT_TRUE))
def test_bit_true_tables_equal_the_macro_chain(nets, name, rng):
    """The tables (the chain evaluated once per distinct GAIN where SAT, QSHIFT and TABLE
    are shared, else directly) equal macro._readout_chain on every reachable sum."""
    from models import macro
    net = nets["32x16, 2x2 tiles"]
    seeds = [int(s) for s in rng.integers(0, 10_000, 4)]
    print(f"chips {seeds}")
    cr = ChipReadout(net, BIT_TRUE[name], seeds, backend="macro", calibrate=True)
    for key, tile in montecarlo._Plan(cr).layers[0][1].items():
        regs = cr.regs[(0,) + key]
        C = tile.cols
        sums = np.arange(tile.rows + 1)[:, None, None] - tile.neg[None]
        column = {k: regs[k][:, :C] for k in ("offset", "gain") if k in regs}
        direct = macro._readout_chain(cr.params, sums, cr.comp[(0,) + key][:, :C],
                                      column.get("offset"), column.get("gain"), regs.get("sat"),
                                      regs.get("qshift", 0), regs.get("table"))
        np.testing.assert_array_equal(tile.table, direct.transpose(1, 2, 0))


@pytest.mark.parametrize("technology", ["sram", "rram"])
def test_each_array_is_the_instance_sample_chip_draws(nets, technology):
    """ChipReadout draws every array of every chip in one stack: array (l, t, j) of chip
    s is ``sample_chip(config, (s, l, t, j))``, as when each was drawn on its own."""
    net = nets["32x16, 2x2 tiles"]
    cfg = (ChipConfig.typical("sram", stuck_prob=0.02) if technology == "sram"
           else ChipConfig(technology="rram", cell_sigma=0.1, stuck_prob=0.02))
    seeds = [3, 11]
    cr = ChipReadout(net, cfg, seeds, backend="analog")
    keys = [(l, t, j) for l, layer in enumerate(net.layers)
            for t in range(layer.row_tiles) for j in range(layer.col_tiles)]
    assert sorted(cr.chips) == sorted(keys)
    for key in keys:
        for i, s in enumerate(seeds):
            one = sample_chip(cfg, (s, *key), cr.params.rows, cr.params.cols, cr.params.comp_rows)
            got = cr.chips[key][i]
            assert got.seed == (s, *key)
            for name in Chip._ARRAYS:
                a, b = getattr(got, name), getattr(one, name)
                assert (a is None and b is None) or np.array_equal(a, b), (key, s, name)
