"""Affine warps, deskewing and training-set augmentation (models.datasets, models.augment)."""

import numpy as np
import pytest

from models.augment import AugmentConfig, Augmenter, random_warps
from models.datasets import affine_warp, deskew, downsample, quantize, to_pixels


def digits_like(rng, n=6, size=28):
    """Random blobby uint8 images: a few bright strokes on black."""
    img = np.zeros((n, size, size), np.uint8)
    for k in range(n):
        for _ in range(3):
            y, x = rng.integers(6, size - 6, 2)
            img[k, y - 3:y + 4, x - 1:x + 2] = rng.integers(128, 256)
    return img


class Upper:
    """A stand-in generator whose uniform draws are always the upper bound."""

    def uniform(self, low, high, size):
        return np.full(size, high, np.float64)


def test_affine_warp_identity_and_integer_shift(rng):
    img = digits_like(rng)
    np.testing.assert_array_equal(affine_warp(img, np.eye(2), [0, 0]), img)
    moved = affine_warp(img, np.eye(2), [-2, -3])          # output (y, x) reads (y-2, x-3)
    np.testing.assert_array_equal(moved[:, 2:, 3:], img[:, :-2, :-3])
    assert not moved[:, :2].any() and not moved[:, :, :3].any()


def test_random_warps_ranges_and_rotation_sense(rng):
    img = digits_like(rng, n=2)
    m, o = random_warps(2, AugmentConfig(rotate=90), Upper(), img.shape[1:])
    np.testing.assert_allclose(affine_warp(img, m, o), np.rot90(img, 1, axes=(1, 2)), atol=1e-3)
    m, o = random_warps(2, AugmentConfig(shift=2), Upper(), img.shape[1:])
    np.testing.assert_array_equal(affine_warp(img, m, o)[:, 2:, 2:], img[:, :-2, :-2])
    cfg = AugmentConfig(shift=1.5, rotate=8, scale=0.1)
    m, o = random_warps(500, cfg, rng, (28, 28))
    det = np.linalg.det(m)                                  # 1 / factor^2
    assert np.all(det >= 1 / 1.1 ** 2 - 1e-9) and np.all(det <= 1 / 0.9 ** 2 + 1e-9)
    assert det.min() < 0.9 and det.max() > 1.1             # the whole range is used


@pytest.mark.parametrize("field, value, words", [
    ("shift", -1.0, "shift must be a finite number >= 0"),
    ("rotate", float("nan"), "rotate must be a finite number >= 0"),
    ("scale", 1.0, "scale must be below 1"),
])
def test_augment_config_validation(field, value, words):
    with pytest.raises(ValueError, match=words):
        AugmentConfig(**{field: value})


def test_deskew_straightens_a_slanted_bar():
    img = np.zeros((1, 28, 28), np.uint8)
    for y in range(6, 22):                                  # one column per two rows: slant 0.5
        x = 10 + (y - 6) // 2
        img[0, y, x:x + 3] = 255
    out = deskew(img)

    def slant(a):
        v = a[0].astype(np.float64)
        yy, xx = np.mgrid[:28, :28]
        t = v.sum()
        my, mx = (v * yy).sum() / t, (v * xx).sum() / t
        return (v * (yy - my) * (xx - mx)).sum() / (v * (yy - my) ** 2).sum(), my, mx

    a_in, _, _ = slant(img)
    a_out, my, mx = slant(out)
    assert a_in == pytest.approx(0.5, abs=0.05)
    assert abs(a_out) < 0.05
    assert my == pytest.approx(13.5, abs=0.3) and mx == pytest.approx(13.5, abs=0.3)
    assert out.dtype == np.uint8


def test_deskew_is_per_image(rng):
    """Each image's result is independent of the batch around it (eval deskews a range
    of a file, training the whole file); a blank image stays blank."""
    img = digits_like(rng, n=7)
    img[3] = 0
    whole = deskew(img)
    for i in range(len(img)):
        np.testing.assert_array_equal(deskew(img[i:i + 1])[0], whole[i])
    assert not whole[3].any()
    with pytest.raises(TypeError, match="images must be integers"):
        deskew(img.astype(np.float32))


def test_augmenter_pipeline_and_draws(rng):
    img = digits_like(rng, n=20)
    plain = quantize(downsample(img, 10, 10), 5).reshape(20, -1)
    ident = Augmenter(img, AugmentConfig())
    np.testing.assert_array_equal(ident(rng), plain)
    aug = Augmenter(img, AugmentConfig(shift=1, rotate=6, scale=0.06))
    np.testing.assert_array_equal(aug.pipeline(img), plain)
    a1 = aug(np.random.default_rng(3))
    a2 = aug(np.random.default_rng(3))
    a3 = aug(np.random.default_rng(4))
    np.testing.assert_array_equal(a1, a2)
    assert a1.shape == plain.shape and a1.dtype == np.uint8 and a1.max() <= 31
    assert not np.array_equal(a1, a3) and not np.array_equal(a1, plain)
    with pytest.raises(ValueError, match=r"images must be \(N, H, W\) uint8"):
        Augmenter(img.astype(np.int64), AugmentConfig())


def test_to_pixels_rounds_half_up_and_clips():
    np.testing.assert_array_equal(to_pixels([-3.0, 0.5, 1.49, 254.5, 300.0]), [0, 1, 1, 255, 255])
