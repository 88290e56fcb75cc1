"""Image files as model inputs for ``convnp predict``: PNG/JPEG through Pillow, and .npy arrays."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from convnp._optional import optional
from convnp.cli.errors import CLIError

__all__ = ["load_image", "load_array"]


def load_image(path: str | os.PathLike, input_shape: Sequence[int], invert: bool = False) -> np.ndarray:
    """Read a PNG/JPEG as a float32 (C, H, W) array in [0, 1] fitting ``input_shape``.

    Converted to grayscale (C=1) or RGB (C=3), resized to (H, W) with Pillow's
    antialiased bilinear filter, divided by 255; ``invert`` gives 1 - x.
    """
    pil_image = optional("PIL.Image")
    if pil_image is None:
        raise CLIError(
            "reading PNG/JPEG files needs Pillow: pip install convnp[images] (or pass the image as a .npy array)"
        )
    channels, height, width = (int(d) for d in input_shape)
    if channels not in (1, 3):
        raise CLIError(f"the model takes {channels}-channel inputs; pass the images as .npy arrays")
    try:
        with pil_image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != (width, height):
                resampling = getattr(pil_image, "Resampling", pil_image).BILINEAR  # Pillow < 9.1: Image.BILINEAR
                image = image.resize((width, height), resampling)
            pixels = np.asarray(image, dtype=np.float32) / np.float32(255)  # (H, W) or (H, W, 3)
    except pil_image.UnidentifiedImageError:
        raise CLIError(f"{path} is not an image file Pillow can read") from None
    pixels = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)  # (C, H, W)
    return 1.0 - pixels if invert else pixels


def load_array(path: str | os.PathLike, input_shape: Sequence[int]) -> np.ndarray:
    """Read a .npy file as a batch (N, C, H, W) for a model with per-sample ``input_shape``."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise CLIError(f"{path} is not a readable .npy array ({error})") from None
    shape = tuple(int(d) for d in input_shape)
    if array.shape == shape or (shape[0] == 1 and array.shape == shape[1:]):
        return array.reshape((1, *shape))  # one image
    if array.ndim == len(shape) + 1 or (shape[0] == 1 and array.ndim == len(shape)):
        return array  # a batch; the model checks the rest
    raise CLIError(
        f"{path} holds an array of shape {array.shape}; the model takes images of shape {shape} (or a batch of them)"
    )
