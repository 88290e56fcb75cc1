"""Image files (PNG, JPEG, BMP) as float32 (C, H, W) arrays in [0, 1], read through Pillow.

One reader serves training and prediction: ``image_folder`` reads every
training image with ``read_image``, and ``convnp predict`` / ``convnp explain``
read the images they are given with it too, so a model sees a file the same
way in both. Reading an image:

1. the EXIF orientation of a photo is applied (the image as a viewer shows it);
2. transparent pixels are laid over white (a drawing with a transparent
   background shows as it does in a viewer, not as whatever colour its
   invisible pixels hold);
3. converted to grey (ITU-R 601-2 luma: L = 0.299 R + 0.587 G + 0.114 B) or RGB;
   16-bit grey images keep their 16 bits;
4. resized to (H, W) with Pillow's bilinear filter, which averages over the
   pixels a shrunk output pixel covers (antialiasing);
5. divided by the largest pixel value (255, or 65535 for 16-bit grey).

Pillow is optional (``pip install convnp[images]``); without it reading raises
``ImportError`` naming that command.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType

import numpy as np

from convnp._optional import require

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFileError",
    "pillow",
    "open_image",
    "read_image",
    "image_to_array",
    "is_grey",
    "oriented_size",
]

#: File name endings read as images (any case), as torchvision's and Keras's folder readers do.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")

_GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
# An RGB image whose channels differ by at most this many 8-bit levels is grey (a grey
# picture saved as a colour JPEG comes back with channels a level or two apart).
_GREY_TOLERANCE = 2
_ORIENTATION_TAG = 0x0112  # EXIF orientation; 5-8 turn the picture by 90 degrees


class ImageFileError(ValueError):
    """A file that is not an image Pillow can read (not an image, damaged, truncated, too large).

    ``path`` is the file, ``reason`` Pillow's words for what is wrong.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path} is not an image file Pillow can read ({reason})")
        self.path, self.reason = path, reason


def pillow() -> ModuleType:
    """``PIL.Image``, or ``ImportError`` saying ``pip install convnp[images]``."""
    return require("PIL.Image", "reading PNG/JPEG/BMP files", "images")


def open_image(path: str | os.PathLike):
    """Open and decode ``path`` with Pillow, its EXIF orientation applied.

    Raises ``ImageFileError`` naming the file for anything Pillow cannot decode
    (not an image, truncated, damaged, a decompression bomb);
    ``FileNotFoundError``/``PermissionError`` as raised.
    """
    image_module = pillow()
    from PIL import ImageOps

    try:
        with image_module.open(path) as image:
            image.load()
            return ImageOps.exif_transpose(image)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (OSError, SyntaxError, ValueError, image_module.DecompressionBombError) as error:
        # UnidentifiedImageError is an OSError; damaged PNG chunks raise SyntaxError.
        raise ImageFileError(path, str(error) or type(error).__name__) from None


def is_grey(image) -> bool:
    """Whether a Pillow image holds no colour: a grey mode, or RGB channels equal within two levels."""
    if image.mode in _GREY_MODES:
        return True
    if image.mode == "P" and image.palette is not None and image.palette.mode in ("L", "LA"):
        return True
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)  # (H, W, 3)
    return bool(
        np.abs(pixels[..., 0] - pixels[..., 1]).max() <= _GREY_TOLERANCE
        and np.abs(pixels[..., 1] - pixels[..., 2]).max() <= _GREY_TOLERANCE
    )


def _over_white(image, image_module):
    """An image with transparency laid over a white background (RGBA, then RGB)."""
    rgba = image.convert("RGBA")
    background = image_module.new("RGBA", rgba.size, (255, 255, 255, 255))
    return image_module.alpha_composite(background, rgba).convert("RGB")


def image_to_array(image, size: Sequence[int] | None, channels: int) -> np.ndarray:
    """A decoded Pillow image as float32 (C, H, W) in [0, 1] (steps 2-5 of the module docstring).

    ``size`` is (H, W), or None to keep the image's own size; ``channels`` is 1 or 3.

    Shape:
        out: (channels, H, W)
    """
    if channels not in (1, 3):
        raise ValueError(f"image files give 1 (grey) or 3 (RGB) channels, not {channels}")
    image_module = pillow()
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        image = _over_white(image, image_module)
    if image.mode.startswith("I"):
        image, scale, grey = image.convert("F"), 65535.0, True  # 16-bit grey: keep every level
    elif image.mode == "F":
        scale, grey = 1.0, True  # float pixels are taken as they are
    else:
        image, scale, grey = image.convert("L" if channels == 1 else "RGB"), 255.0, channels == 1
    if size is not None:
        height, width = (int(d) for d in size)
        if image.size != (width, height):
            resampling = getattr(image_module, "Resampling", image_module).BILINEAR  # Pillow < 9.1: Image.BILINEAR
            image = image.resize((width, height), resampling)
    pixels = np.clip(np.asarray(image, dtype=np.float32) / np.float32(scale), 0.0, 1.0)  # (H, W) or (H, W, 3)
    if grey:
        return np.repeat(pixels[None], channels, axis=0)  # (C, H, W)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))  # (H, W, 3) -> (3, H, W)


def read_image(path: str | os.PathLike, size: Sequence[int] | None = None, channels: int = 3) -> np.ndarray:
    """Read an image file as float32 (C, H, W) in [0, 1]: grey (C=1) or RGB (C=3), resized to ``size`` = (H, W).

    Raises ``ImageFileError`` when Pillow cannot decode the file and
    ``ImportError`` without Pillow.

    Shape:
        out: (channels, H, W)
    """
    return image_to_array(open_image(path), size, channels)


def oriented_size(image) -> tuple[int, int]:
    """(H, W) of an opened, not yet decoded image as a viewer shows it (EXIF rotations swap the sides)."""
    width, height = image.size
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError):  # a damaged EXIF block: decoding will tell
        orientation = 1
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)
