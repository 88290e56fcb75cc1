"""Image files and .npy arrays as model inputs for ``convnp predict`` and ``convnp explain``.

PNG/JPEG/BMP files are read by ``convnp.data.read_image``, the reader
``image_folder`` trains from, so a picture reaches the model the same way in
training and in prediction.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np

from convnp.checks import InputWarning
from convnp.cli.errors import CLIError
from convnp.data.image_files import ImageFileError, read_image

__all__ = ["load_image", "load_array"]


def load_image(path: str | os.PathLike, input_shape: Sequence[int], invert: bool = False) -> np.ndarray:
    """Read a PNG/JPEG/BMP as a float32 (C, H, W) array in [0, 1] fitting ``input_shape``.

    Converted to grayscale (C=1) or RGB (C=3), resized to (H, W) with Pillow's
    antialiased bilinear filter, divided by 255 (``convnp.data.read_image``);
    ``invert`` gives 1 - x.
    """
    channels, height, width = (int(d) for d in input_shape)
    if channels not in (1, 3):
        raise CLIError(f"the model takes {channels}-channel inputs; pass the images as .npy arrays")
    try:
        pixels = read_image(path, (height, width), channels)
    except ImageFileError as error:
        raise CLIError(str(error)) from None
    except ImportError:
        raise CLIError(
            "reading PNG/JPEG/BMP files needs Pillow: pip install convnp[images] (or pass the image as a .npy array)"
        ) from None
    return 1.0 - pixels if invert else pixels


def load_array(path: str | os.PathLike, input_shape: Sequence[int]) -> np.ndarray:
    """Read a .npy file as a batch (N, C, H, W) for a model with per-sample ``input_shape``.

    A (K, H, W) array for a one-channel model could be K images or one
    K-channel image; it is read as K images, and an ``InputWarning`` says so.
    An array in channels-last order (H, W, C) is refused with the transpose
    that fixes it.
    """
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise CLIError(f"{path} is not a readable .npy array ({error})") from None
    shape = tuple(int(d) for d in input_shape)
    if array.shape == shape or (shape[0] == 1 and array.shape == shape[1:]):
        return array.reshape((1, *shape))  # one image
    if shape[0] == 1 and array.ndim == len(shape) and array.shape[1:] == shape[1:]:
        warnings.warn(
            InputWarning(
                f"{path} holds an array of shape {array.shape}: read as {len(array)} one-channel images of "
                f"{shape[1]}x{shape[2]} for this one-channel model (not one {len(array)}-channel image)"
            ),
            stacklevel=2,
        )
        return array
    if array.ndim == len(shape) + 1 or (shape[0] == 1 and array.ndim == len(shape)):
        return array  # a batch; the model checks the rest
    channels_last = (*shape[1:], shape[0])
    if len(shape) == 3 and array.shape[-3:] == channels_last and array.ndim in (3, 4):
        axes = "(2, 0, 1)" if array.ndim == 3 else "(0, 3, 1, 2)"
        raise CLIError(
            f"{path} holds an array of shape {array.shape}, channels last; the model takes channels first "
            f"{shape}: save numpy.transpose(array, {axes})"
        )
    raise CLIError(
        f"{path} holds an array of shape {array.shape}; the model takes images of shape {shape} (or a batch of them)"
    )
