"""Data augmentation for training: random small affine warps of the full-size images.

The BNN sees 10x10 images, each pixel the area average of a 2.8 x 2.8 patch of the
28x28 original (:func:`models.datasets.downsample`). Shifting or rotating the 10x10
image itself would move whole coarse pixels; warping the 28x28 image *before*
downsampling moves the strokes by fractions of a coarse pixel and gives genuinely new
10x10 inputs. :class:`Augmenter` does that for a training set: every call draws one
random warp per image (translation, rotation, scale), resamples the 28x28 image with
bilinear interpolation (zero outside the image), rounds it back to 8-bit pixels and runs
the data set's own pipeline (downsample, normalise, quantise) on it. Only the training
images are ever warped; validation and deployment images go through the plain pipeline.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .datasets import NORMALISATIONS, affine_warp, downsample, quantize, to_pixels

__all__ = ["AugmentConfig", "random_warps", "Augmenter"]


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random warp, each drawn uniformly and independently per image.

    Members
    -------
    shift : float
        Largest translation along each axis, in pixels of the full-size image (a 10x10
        pixel of MNIST is 2.8 of them).
    rotate : float
        Largest rotation about the image centre, degrees.
    scale : float
        Largest relative change of size: the factor is drawn from ``1 +- scale``.
    """

    shift: float = 0.0
    rotate: float = 0.0
    scale: float = 0.0

    def __post_init__(self):
        for name in ("shift", "rotate", "scale"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) \
                    or v < 0:
                raise ValueError(f"augment {name} must be a finite number >= 0, not {v!r}")
        if self.scale >= 1:
            raise ValueError(f"augment scale must be below 1, not {self.scale}")

    @property
    def is_identity(self) -> bool:
        return self.shift == 0 and self.rotate == 0 and self.scale == 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def random_warps(n: int, config: AugmentConfig, rng: np.random.Generator, shape) -> tuple:
    """``(matrix, offset)`` of :func:`models.datasets.affine_warp` for ``n`` random warps
    of images of ``shape`` ``(H, W)`` about their centre.

    Each warp rotates by an angle uniform in ``+-rotate`` degrees (counter-clockwise on
    screen for a positive angle), scales by a factor uniform in ``1 +- scale`` and
    shifts by amounts uniform in ``+-shift`` pixels along each axis; the draws are made
    in that order from ``rng``.
    """
    angle = np.deg2rad(rng.uniform(-config.rotate, config.rotate, n))
    factor = 1 + rng.uniform(-config.scale, config.scale, n)
    shift = rng.uniform(-config.shift, config.shift, (n, 2))
    cos, sin = np.cos(angle) / factor, np.sin(angle) / factor
    # Output (y, x) reads the input at R^-1 (p - c - t) / factor + c, with R the rotation
    # by +angle in (row down, column right) coordinates.
    matrix = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], 1)
    centre = (np.asarray(shape, np.float64) - 1) / 2
    offset = centre - np.einsum("nij,nj->ni", matrix, centre + shift)
    return matrix, offset


class Augmenter:
    """Fresh warped copies of a training set, through the data set's own pipeline.

    Parameters
    ----------
    images : ndarray (N, H, W) uint8
        The full-size training images (e.g. 28x28 MNIST), in the order of the labels.
    config : AugmentConfig
    size : (int, int)
        Downsampled image shape (``models.datasets.downsample``).
    input_bits : int
        B of :func:`models.datasets.quantize`.
    normalisation : str
        ``"minmax"`` or ``"none"`` (:func:`models.datasets.quantize`).
    full_scale : float
        Full scale of ``"none"`` normalisation.
    contrast : float
        :func:`models.datasets.quantize`'s contrast.

    Calling ``augmenter(rng)`` returns ``(N, height * width)`` uint8 inputs, one random
    warp per image drawn from ``rng``.
    """

    def __init__(self, images, config: AugmentConfig, *, size=(10, 10), input_bits: int = 5,
                 normalisation: str = "minmax", full_scale: float = 255.0,
                 contrast: float = 1.0):
        images = np.asarray(images)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be (N, H, W) uint8, not {images.shape} {images.dtype}")
        if not isinstance(config, AugmentConfig):
            raise TypeError(f"config must be an AugmentConfig, not {type(config).__name__}")
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, "
                             f"not {normalisation!r}")
        self.images, self.config = images, config
        self.size, self.input_bits = tuple(size), int(input_bits)
        self.normalisation, self.full_scale = normalisation, float(full_scale)
        self.contrast = float(contrast)

    @classmethod
    def for_dataset(cls, data, augment: dict) -> "Augmenter":
        """The augmenter of a :class:`models.datasets.Dataset` (its ``train_images``,
        image shape, input bits and normalisation) for ``augment``, a dict of
        :class:`AugmentConfig` fields (``TrainConfig.augment``)."""
        if data.train_images is None:
            raise ValueError(f"the {data.name} data set holds no full-size training images "
                             f"to augment")
        pre = data.preprocessing
        return cls(data.train_images, AugmentConfig(**augment), size=data.image_shape,
                   input_bits=data.input_bits, normalisation=pre.get("normalisation", "minmax"),
                   contrast=pre.get("contrast", 1.0))

    def __len__(self):
        return len(self.images)

    def pipeline(self, images) -> np.ndarray:
        """The plain preprocessing of full-size uint8 images: ``(N, features)`` uint8."""
        small = downsample(images, *self.size)
        x = quantize(small, self.input_bits, normalisation=self.normalisation,
                     full_scale=self.full_scale, contrast=self.contrast)
        return x.reshape(len(x), -1)

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        n = len(self.images)
        if cfg.is_identity:
            return self.pipeline(self.images)
        matrix, offset = random_warps(n, cfg, rng, self.images.shape[1:])
        return self.pipeline(to_pixels(affine_warp(self.images, matrix, offset)))
