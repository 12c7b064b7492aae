"""Training through sampled chips (models.chip_training): the chip hook, fresh chips per
step for noise-aware training, and batch norm through chips."""

import numpy as np
import pytest

from models.bnn import BNN, TrainConfig, train
from models.chip import ChipConfig
from models.chip_readout import ChipReadout
from models.chip_training import (NOISE_AWARE, TRAINING_CHIP_BASE, FreshChips, chip_hook,
                                  noise_aware_config, noise_aware_train)
from models.datasets import load_dataset
from models.export import export_model, macro_hook

pytestmark = pytest.mark.usefixtures("one_blas_thread")

OFFSETS = ChipConfig(offset_sigma=3.0)          # deterministic: the bit-true macro backend


def small_model(seed=0, n_in=64):
    return BNN((n_in, 40, 24, 10), seed=seed)


def test_chip_hook_spreads_a_batch_over_its_chips_in_blocks(rng):
    model = small_model()
    model.recompute_bn_stats(rng.integers(0, 32, (50, 64)))
    net = export_model(model, 32, 32)
    x = rng.integers(0, 32, (5, 64)).astype(np.uint8)
    hook = chip_hook(net, OFFSETS, [7, 9], backend="macro", calibrate=True)
    # 5 images on 2 chips: padded to 6, images 0-2 on chip 7, images 3-4 on chip 9.
    got = model.trace(x, hook=hook)
    for seed, rows in ((7, slice(0, 3)), (9, slice(3, 5))):
        one = macro_hook(32, 32, 5, ChipReadout(net, OFFSETS, [seed], backend="macro",
                                                 calibrate=True))
        want = model.trace(x[rows], hook=one)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g["acc"][rows], w["acc"])
    ideal = model.trace(x)
    assert not np.array_equal(got[0]["acc"], ideal[0]["acc"])     # the chips did act


def test_fresh_chips_are_new_every_step_and_far_from_evaluated_seeds():
    net = export_model(small_model(), 32, 32)
    fresh = FreshChips(net, OFFSETS, seed=3, chips_per_step=4, backend="macro")
    seen = [s for step in range(5) for s in fresh.seeds(step)]
    assert len(set(seen)) == 20 and min(seen) >= TRAINING_CHIP_BASE
    assert fresh.seeds(2) == FreshChips(net, OFFSETS, seed=3, chips_per_step=4).seeds(2)
    assert set(fresh.seeds(0)).isdisjoint(FreshChips(net, OFFSETS, seed=4).seeds(0))
    hook = fresh(4)
    assert hook.readout.seeds == fresh.seeds(4) and fresh.used == 20
    with pytest.raises(ValueError, match="chips_per_step must be an integer >= 1, not 0"):
        FreshChips(net, OFFSETS, chips_per_step=0)


def test_noise_aware_config_keeps_the_recipe():
    base = TrainConfig(epochs=150, seed=5, augment=dict(rotate=6.0), loss="xent",
                       acc_noise=[[30, 10], [1, 1]])
    cfg = noise_aware_config(base, epochs=3)
    assert (cfg.epochs, cfg.lr, cfg.schedule) == (3, NOISE_AWARE["lr"], NOISE_AWARE["schedule"])
    assert cfg.seed == 5 and cfg.augment == dict(rotate=6.0) and cfg.loss == "xent"
    assert cfg.acc_noise is None            # the sampled chips make the errors


def test_noise_aware_training_records_its_chips_and_sets_bn_through_chips():
    data = load_dataset("digits", seed=0)
    data.x_train, data.y_train = data.x_train[:256], data.y_train[:256]
    model = small_model()
    start = {k: v.copy() for k, v in model.params.items()}
    record = noise_aware_train(model, data, OFFSETS, rows=32, cols=32,
                               train_config=TrainConfig(epochs=2, seed=1), chips_per_step=2,
                               backend="macro", calibrate=True)
    steps = 2 * (256 // 64)
    first = TRAINING_CHIP_BASE + (1 << 24)
    assert record["training_chips"] == [first, first + 2 * steps - 1]
    assert record["bn_chips"] == [first + 2 * steps, first + 2 * steps + 15]
    assert record["calibrate"] and record["epochs"] == 2
    assert not np.array_equal(model.params["W0"], start["W0"])
    # The statistics are those of the training images over the 16 statistics chips.
    net = export_model(model, 32, 32)
    hook = chip_hook(net, OFFSETS, list(range(record["bn_chips"][0], record["bn_chips"][1] + 1)),
                     backend="macro", calibrate=True)
    acc = model.trace(data.x_train, hook=hook)[0]["acc"]
    np.testing.assert_allclose(model.buffers["mean0"], acc.mean(axis=0), rtol=1e-6)


def test_readout_errors_split_a_chips_fixed_shift_from_its_per_image_noise(rng):
    from models.chip_training import readout_errors
    model = small_model()
    x = rng.integers(0, 32, (40, 64))
    model.recompute_bn_stats(x)
    net = export_model(model, 32, 32)
    # No spread: the analog chip is the ideal macro.
    assert readout_errors(net, x, ChipConfig(), [0, 1]) == [(0.0, 0.0)] * 3
    # Read noise 0.5 with a trim: the trim read's error is a fixed shift of every
    # readout, times 2^5 - 1 = 31 on the 5-plane first layer (2 row tiles of 32).
    errs = readout_errors(net, x, ChipConfig(read_noise=0.5), range(8), calibrate=True,
                          trim=True)
    (fixed0, image0), (fixed1, image1) = errs[0], errs[1]
    assert 15 < fixed0 < 60 and 8 < image0 < 30
    assert 0.3 < fixed1 < 2 and 0.3 < image1 < 2
    # The mean of 16 trim reads: a quarter of the fixed error (1/sqrt(16)) or less.
    (fixed16, image16) = readout_errors(net, x, ChipConfig(read_noise=0.5), range(8),
                                        calibrate=True, trim=16)[0]
    print(f"first layer, fixed error: trim of 1 read {fixed0:.2f}, of 16 reads {fixed16:.2f}")
    assert fixed16 < 0.35 * fixed0 and image16 == pytest.approx(image0, rel=0.3)


def test_acc_noise_training_is_seeded_and_changes_the_model(rng):
    data = load_dataset("digits")
    x, y = data.x_train[:300], data.y_train[:300]
    noisy = dict(epochs=2, acc_noise=[[30, 10], [1, 1], [1, 1]], seed=4)
    runs = []
    for cfg in (noisy, noisy, dict(noisy, acc_noise=None)):
        model = small_model()
        train(model, x, y, config=TrainConfig(**cfg))
        runs.append(model)
    np.testing.assert_array_equal(runs[0].params["W0"], runs[1].params["W0"])
    np.testing.assert_array_equal(runs[0].buffers["var0"], runs[1].buffers["var0"])
    assert not np.array_equal(runs[0].params["W0"], runs[2].params["W0"])
    # The batch-norm statistics include the injected errors (variance 30^2 + 10^2 more).
    noisy_var = runs[0].buffers["var0"].copy()
    runs[0].recompute_bn_stats(x)
    assert 700 < np.mean(noisy_var - runs[0].buffers["var0"]) < 1300


@pytest.mark.parametrize("field, value, message", [
    ("acc_noise", [[1, 2, 3]], "acc_noise must be a list of \\[fixed, per_image\\] pairs"),
    ("acc_noise", [[1, -2]], "acc_noise must be a list of"),
    ("acc_noise", 5, "acc_noise must be a list of"),
    ("acc_noise_groups", 0, "acc_noise_groups must be >= 1, not 0"),
])
def test_acc_noise_config_errors(field, value, message):
    with pytest.raises((TypeError, ValueError), match=message):
        TrainConfig(**{field: value})
