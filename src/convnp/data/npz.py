"""Load the ``mndata.npz`` layout used by the tutorials convnp grew from.

The file holds four arrays: ``trainimages``, ``trainlabels``, ``testimages``,
``testlabels``. The images come as 0..255 values (uint8, or floats that the
tutorials divide by 255 themselves), flattened ``(N, 784)``, ``(N, 28, 28)`` or
already ``(N, 1, 28, 28)``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from convnp.files.safe_zip import read_npz

__all__ = ["load_npz", "NPZ_KEYS"]

NPZ_KEYS = ("trainimages", "trainlabels", "testimages", "testlabels")

Split = tuple[np.ndarray, np.ndarray]


def _images_to_nchw(images: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Reshape to (N, C, H, W) and scale to float32 in [0, 1]."""
    if images.ndim == 2:
        # Flattened square grey images, e.g. (N, 784) -> (N, 1, 28, 28).
        side = math.isqrt(images.shape[1])
        if side * side != images.shape[1]:
            raise ValueError(
                f"{path}: {key!r} has shape {images.shape}; a flattened image must have a "
                "square number of pixels (e.g. 784 = 28*28)"
            )
        images = images.reshape(len(images), 1, side, side)  # (N, 1, side, side)
    elif images.ndim == 3:
        images = images[:, None]  # (N, H, W) -> (N, 1, H, W)
    elif images.ndim != 4:
        raise ValueError(f"{path}: {key!r} has shape {images.shape}; expected (N, H*W), (N, H, W) or (N, C, H, W)")

    if images.dtype.kind in "ui":
        scale = 255.0
    elif images.dtype.kind == "f":
        # Floats may already be in [0, 1] (normalised copies) or still 0..255.
        scale = 1.0 if images.size == 0 or images.max() <= 1.0 else 255.0
    else:
        raise ValueError(f"{path}: {key!r} has dtype {images.dtype}; expected integers or floats")
    if images.size and (images.min() < 0 or images.max() > 255):
        raise ValueError(
            f"{path}: {key!r} has values in [{images.min()}, {images.max()}]; expected pixel values 0..255 or 0..1"
        )
    return images.astype(np.float32) / np.float32(scale)


def _labels_to_int64(labels: np.ndarray, key: str, path: Path) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]  # (N, 1) column -> (N,)
    if labels.ndim != 1:
        raise ValueError(f"{path}: {key!r} has shape {labels.shape}; expected (N,) class indices")
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise ValueError(f"{path}: {key!r} holds non-integer values; expected class indices")
    if labels.dtype.kind not in "uif":
        raise ValueError(f"{path}: {key!r} has dtype {labels.dtype}; expected integers")
    return labels.astype(np.int64)


def load_npz(path: str | os.PathLike) -> tuple[Split, Split]:
    """Load an ``mndata.npz``-style file as ``((x_train, y_train), (x_test, y_test))``.

    The file is read by ``convnp.files.safe_zip.read_npz``, not ``numpy.load``:
    object arrays are refused unread (loading never runs code), and every
    entry's declared size is checked against the file before it is read (a
    crafted file cannot exhaust memory).

    Parameters
    ----------
    path : str or path-like
        An ``.npz`` with the keys ``trainimages``, ``trainlabels``,
        ``testimages``, ``testlabels``.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        Images float32 in [0, 1], labels int64.

    Shape:
        images in the file: (N, H*W) with H == W, (N, H, W) or (N, C, H, W)
        x_train, x_test: (N, C, H, W)  (C = 1 for the first two layouts)
        y_train, y_test: (N,)

    Raises
    ------
    ValueError
        Naming the file: missing keys, shapes or values that are not
        images/labels, or image and label counts that differ;
        ``convnp.files.safe_zip.ArchiveError`` (a ValueError) for a file that
        is not an ``.npz``, is damaged, holds object arrays or declares sizes it
        cannot hold.
    """
    path = Path(path)
    # convnp's own .npz reader: no pickle, and every declared size checked against the file
    # before it is read, so a crafted file can neither run code nor ask for gigabytes.
    arrays = read_npz(path, where=str(path), what=f"an .npz archive with {list(NPZ_KEYS)}")
    missing = [key for key in NPZ_KEYS if key not in arrays]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}; expected {list(NPZ_KEYS)}, found {sorted(arrays)}")

    splits = []
    for part in ("train", "test"):
        images = _images_to_nchw(arrays[f"{part}images"], f"{part}images", path)
        labels = _labels_to_int64(arrays[f"{part}labels"], f"{part}labels", path)
        if len(images) != len(labels):
            raise ValueError(f"{path}: {part}images has {len(images)} images but {part}labels has {len(labels)} labels")
        splits.append((images, labels))
    return splits[0], splits[1]
