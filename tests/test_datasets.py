"""Data loading and preprocessing: IDX reader and its errors, downsampling, quantisation."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from models import datasets
from models.datasets import (
    area_weights, downsample, load_dataset, load_digits, load_idx, load_mnist, quantize, save_idx,
)

MNIST_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not (MNIST_DIR / datasets.MNIST_FILES[0]).exists(),
                                 reason="MNIST subset ../shared/data/mnist not present")


def idx_bytes(array, code=0x08):
    array = np.asarray(array)
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) \
        + array.astype(array.dtype.newbyteorder(">")).tobytes()


def expect_error(path, *words):
    with pytest.raises(ValueError) as info:
        load_idx(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    for w in words:
        assert w in msg, msg
    return msg


# --- IDX reader --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, rng, dtype, compress):
    shape = tuple(rng.integers(1, 5, size=rng.integers(1, 4)))
    array = (rng.integers(-100, 100, size=shape) if dtype != "u1"
             else rng.integers(0, 256, size=shape)).astype(dtype)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    save_idx(path, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    back = load_idx(path)
    assert back.shape == array.shape and back.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(back, array)


def test_idx_matches_hand_written_bytes(tmp_path):
    data = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    raw = b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x03" + bytes(range(12))
    (tmp_path / "h").write_bytes(raw)
    np.testing.assert_array_equal(load_idx(tmp_path / "h"), data)


def test_gzip_detected_by_magic_not_name(tmp_path, rng):
    labels = rng.integers(0, 10, 17).astype(np.uint8)
    gz = tmp_path / "labels.idx"              # gzip content, no .gz suffix
    gz.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(load_idx(gz), labels)
    plain = tmp_path / "labels.gz"            # plain content, .gz suffix
    plain.write_bytes(idx_bytes(labels))
    np.testing.assert_array_equal(load_idx(plain), labels)


def test_idx_missing_file(tmp_path):
    expect_error(tmp_path / "nope.idx", "no such file")


def test_idx_truncated_header(tmp_path):
    p = tmp_path / "short"
    p.write_bytes(b"\x00\x00")
    expect_error(p, "truncated IDX header")
    p.write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x02")    # 3 dims need 16 header bytes
    expect_error(p, "truncated IDX header", "3 dimension")


def test_idx_wrong_magic(tmp_path):
    p = tmp_path / "img.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    expect_error(p, "not an IDX file", "89 50 4e 47")


def test_idx_unknown_type(tmp_path):
    p = tmp_path / "t"
    p.write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x05")
    expect_error(p, "unknown IDX type code 0x07")


def test_idx_zero_dims(tmp_path):
    p = tmp_path / "z"
    p.write_bytes(b"\x00\x00\x08\x00")
    expect_error(p, "0 dimensions")


def test_idx_wrong_dims(tmp_path):
    p = tmp_path / "labels"
    p.write_bytes(idx_bytes(np.zeros((3, 2, 2), np.uint8)))
    with pytest.raises(ValueError, match=r"declares 3 dimension\(s\) .*, expected 1 dimensions") as info:
        load_idx(p, ndim=1)
    assert str(p) in str(info.value)


def test_idx_truncated_data(tmp_path):
    p = tmp_path / "cut"
    p.write_bytes(idx_bytes(np.zeros((4, 3, 3), np.uint8))[:-5])
    expect_error(p, "truncated data", "needs 36 bytes", "has 31")


def test_idx_extra_bytes(tmp_path):
    p = tmp_path / "long"
    p.write_bytes(idx_bytes(np.zeros(4, np.uint8)) + b"xyz")
    expect_error(p, "3 unexpected byte")


def test_idx_truncated_gzip(tmp_path):
    p = tmp_path / "cut.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))[:-12])
    expect_error(p, "gzip")


def test_idx_corrupt_gzip(tmp_path):
    blob = bytearray(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8))))
    blob[15:25] = b"\xff" * 10
    p = tmp_path / "bad.gz"
    p.write_bytes(bytes(blob))
    expect_error(p, "gzip")


def test_idx_directory(tmp_path):
    expect_error(tmp_path, "not a regular file")


# --- MNIST pair ----------------------------------------------------------------------------

def write_pair(directory, images, labels, img_code=0x08, lab_code=0x08):
    names = ("img.gz", "lab.gz")
    (directory / names[0]).write_bytes(gzip.compress(idx_bytes(images, img_code)))
    (directory / names[1]).write_bytes(gzip.compress(idx_bytes(labels, lab_code)))
    return names


def test_mnist_pair_ok(tmp_path, rng):
    images = rng.integers(0, 256, (5, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 5).astype(np.uint8)
    names = write_pair(tmp_path, images, labels)
    im, lab = load_mnist(tmp_path, files=names)
    np.testing.assert_array_equal(im, images)
    np.testing.assert_array_equal(lab, labels)


def test_mnist_count_mismatch(tmp_path):
    names = write_pair(tmp_path, np.zeros((5, 28, 28), np.uint8), np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="4 labels but img.gz has 5 images") as info:
        load_mnist(tmp_path, files=names)
    assert "lab.gz" in str(info.value) and "\n" not in str(info.value)


def test_mnist_swapped_files(tmp_path):
    names = write_pair(tmp_path, np.zeros((5, 28, 28), np.uint8), np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match=r"lab.gz: the header declares 1 dimension\(s\) .*, expected 3 dimensions"):
        load_mnist(tmp_path, files=names[::-1])


def test_mnist_images_without_pixels(tmp_path):
    names = write_pair(tmp_path, np.zeros((3, 0, 28), np.uint8), np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=r"images of 0x28 pixels; an image has at least 1x1"):
        load_mnist(tmp_path, files=names)


def test_mnist_bad_label_value(tmp_path):
    names = write_pair(tmp_path, np.zeros((3, 28, 28), np.uint8), np.array([1, 12, 3], np.uint8))
    with pytest.raises(ValueError, match="label 12 outside 0..9"):
        load_mnist(tmp_path, files=names)


def test_mnist_wrong_image_type(tmp_path):
    names = write_pair(tmp_path, np.zeros((3, 2, 2), np.int16), np.zeros(3, np.uint8), img_code=0x0B)
    with pytest.raises(ValueError, match="images must be unsigned bytes"):
        load_mnist(tmp_path, files=names)


def test_mnist_missing(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_mnist(tmp_path)


@needs_mnist
def test_project_mnist_subset():
    images, labels = load_mnist(MNIST_DIR)
    assert images.shape == (8000, 28, 28) and labels.shape == (8000,)
    # Class counts as published in ../shared/data/mnist/README.md.
    assert np.bincount(labels).tolist() == [773, 905, 834, 803, 788, 723, 756, 813, 787, 818]


@needs_mnist
def test_mnist_dataset_pipeline():
    d = load_dataset("mnist", mnist_dir=MNIST_DIR)
    assert d.x_train.shape == (6000, 100) and d.x_val.shape == (2000, 100)
    images, labels = load_mnist(MNIST_DIR)
    np.testing.assert_array_equal(d.y_train, labels[:6000])
    np.testing.assert_array_equal(d.y_val, labels[6000:])
    # Every image spans the full 5-bit range (per-image normalisation).
    assert (d.x_train.min(axis=1) == 0).all() and (d.x_train.max(axis=1) == 31).all()
    again = quantize(downsample(images[6000:6010], 10, 10), 5).reshape(10, -1)
    np.testing.assert_array_equal(d.x_val[:10], again)
    assert d.preprocessing["downsample"] == [10, 10] and d.preprocessing["normalisation"] == "minmax"


# --- downsampling and quantisation --------------------------------------------------------

@pytest.mark.parametrize("n_in,n_out", [(28, 10), (8, 4), (10, 10), (7, 3), (3, 7)])
def test_area_weights_partition(n_in, n_out):
    a = area_weights(n_in, n_out)
    assert (a.sum(axis=1) == n_in).all()          # each output covers n_in/n_out pixels
    assert (a.sum(axis=0) == n_out).all()         # each input pixel is used once in total


@pytest.mark.parametrize("size", [(28, 28, 10, 10), (28, 28, 7, 14), (8, 6, 3, 4)])
def test_downsample_equals_brute_force_area_average(rng, size):
    h, w, oh, ow = size
    img = rng.integers(0, 256, (3, h, w))
    # Replicate every pixel oh x ow times: output pixel (i, j) is then exactly the
    # block (h x w) of the fine grid.
    fine = np.repeat(np.repeat(img, oh, axis=1), ow, axis=2)
    expect = fine.reshape(3, oh, h, ow, w).mean(axis=(2, 4))
    np.testing.assert_allclose(downsample(img, oh, ow), expect, rtol=0, atol=1e-9)


def test_downsample_block_means_and_constants():
    img = np.arange(16).reshape(1, 4, 4)
    np.testing.assert_array_equal(downsample(img, 2, 2)[0], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(downsample(np.full((2, 28, 28), 200), 10, 10), np.full((2, 10, 10), 200.0))


def test_downsample_errors():
    with pytest.raises(ValueError, match="shape"):
        downsample(np.zeros((28, 28), int))
    with pytest.raises(TypeError, match="integers"):
        downsample(np.zeros((1, 28, 28)))


def test_quantize_minmax(rng):
    v = rng.uniform(3, 50, (20, 10, 10))
    q = quantize(v, 5)
    assert q.dtype == np.uint8
    assert (q.reshape(20, -1).min(axis=1) == 0).all() and (q.reshape(20, -1).max(axis=1) == 31).all()
    lo, hi = v.min(axis=(1, 2), keepdims=True), v.max(axis=(1, 2), keepdims=True)
    np.testing.assert_array_equal(q, np.floor((v - lo) / (hi - lo) * 31 + 0.5))
    # Scaling an image's brightness does not change its quantised form.
    np.testing.assert_array_equal(quantize(v * 3.0, 5), q)


def test_quantize_exact_points():
    v = np.array([[0.0, 255.0, 127.5, 4.0, 4.2]])
    # none: x * 31 / 255 rounded half up: 127.5 -> 15.5 -> 16.
    np.testing.assert_array_equal(quantize(v, 5, normalisation="none"), [[0, 31, 16, 0, 1]])
    np.testing.assert_array_equal(quantize(np.full((2, 3), 7.0), 4), np.zeros((2, 3)))
    np.testing.assert_array_equal(quantize(np.array([[0, 1, 2]]), 1), [[0, 1, 1]])


def test_quantize_errors():
    with pytest.raises(ValueError, match="normalisation must be one of"):
        quantize(np.zeros((1, 2)), 5, normalisation="zscore")
    with pytest.raises(ValueError, match="input_bits must be in 1..8, not 9"):
        quantize(np.zeros((1, 2)), 9)
    with pytest.raises(TypeError, match="input_bits must be an integer"):
        quantize(np.zeros((1, 2)), 5.0)


def test_load_digits_rescale():
    from sklearn.datasets import load_digits as sk
    raw = sk().images
    for bits in (1, 4, 5, 8):
        x, y = load_digits(bits)
        assert x.shape == (1797, 8, 8) and y.shape == (1797,)
        full = (1 << bits) - 1
        np.testing.assert_array_equal(x, np.floor(raw * full / 16 + 0.5))
        assert x.max() == full
    x, _ = load_digits(5, normalisation="minmax")
    assert (x.reshape(1797, -1).max(axis=1) == 31).all()


def test_digits_dataset_split():
    a = load_dataset("digits", seed=3)
    b = load_dataset("digits", seed=3)
    c = load_dataset("digits", seed=4)
    assert a.x_train.shape == (1438, 64) and a.x_val.shape == (359, 64)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_val, c.x_val)
    x, y = load_digits(5)
    # The split is a partition of the whole set.
    both = np.concatenate([a.x_train, a.x_val])
    assert sorted(map(bytes, both)) == sorted(map(bytes, x.reshape(1797, -1)))
    assert a.preprocessing["split"]["seed"] == 3


def test_load_dataset_errors():
    with pytest.raises(ValueError, match="name must be 'digits' or 'mnist'"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.5)
