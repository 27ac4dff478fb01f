"""ImageNet preprocessing of two_routes in PIL and numpy, without PyTorch: the same operations, with the
same parameters, as the torchvision transforms of ``impls.two_routes.imagenet`` (papers/two_routes/README.md,
"Training protocol at paper scale").

Caller: ``impls.two_routes.imagenet_tfds`` (the TFDS stream), one decoded PIL image at a time.

- validation: the short side resized (bilinear, with PIL's antialiasing) to round(size·256/224), the
  long side scaled by the same factor and truncated, then the centre crop of ``size``, offsets rounded.
  This is exactly what ``Resize(int)`` + ``CenterCrop`` do to a PIL image (tests/test_imagenet_tfds.py
  checks equality with torchvision byte for byte).
- training: the Inception crop (a box of 8-100 % of the area and aspect 3/4-4/3, both drawn
  log-uniformly for the aspect, up to 10 tries, else the centre crop clamped to those aspects), resized
  to ``size`` x ``size``, then a horizontal flip with probability 1/2: ``RandomResizedCrop`` +
  ``RandomHorizontalFlip``, drawing from a numpy Generator instead of torch's global RNG, so the same
  boxes are not drawn (the distribution is the same).
- both: pixels / 255 in float32, minus the ImageNet mean, over its std, HWC.
"""
from __future__ import annotations

import math

import numpy as np

from impls.two_routes.imagenet import MEAN, STD

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)


def normalise(image) -> np.ndarray:
    """A PIL RGB image as float32 HWC, ImageNet mean/std normalised."""
    return (np.asarray(image, np.uint8).astype(np.float32) / np.float32(255) - MEAN) / STD


def resize_short_side(image, size: int):
    """Short side to ``size``, the long one scaled alike and truncated (bilinear)."""
    from PIL import Image

    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_long = int(size * long / short)
    new = (size, new_long) if width <= height else (new_long, size)
    return image.resize(new, Image.BILINEAR)


def centre_crop(image, size: int):
    """The ``size`` x ``size`` centre, offsets rounded (the image is at least ``size`` on each side)."""
    width, height = image.size
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def crop_box(rng: np.random.Generator, width: int, height: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of an Inception crop of a ``width`` x ``height`` image."""
    area = width * height
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    aspect = width / height
    if aspect < RATIO[0]:
        w, h = width, int(round(width / RATIO[0]))
    elif aspect > RATIO[1]:
        w, h = int(round(height * RATIO[1])), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(image, box: tuple[int, int, int, int], size: int):
    """The ``box`` (top, left, height, width) of ``image``, resized to ``size`` x ``size`` (bilinear)."""
    from PIL import Image

    top, left, h, w = box
    return image.crop((left, top, left + w, top + h)).resize((size, size), Image.BILINEAR)


def train_image(image, size: int, rng: np.random.Generator) -> np.ndarray:
    """Inception crop to ``size``, horizontal flip with probability 1/2, normalised."""
    from PIL import Image

    out = resized_crop(image, crop_box(rng, *image.size), size)
    if rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return normalise(out)


def val_image(image, size: int) -> np.ndarray:
    """Short side to round(size·256/224), centre ``size`` crop, normalised."""
    return normalise(centre_crop(resize_short_side(image, int(round(size * 256 / 224))), size))
