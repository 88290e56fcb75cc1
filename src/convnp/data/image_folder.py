"""Your own pictures as a dataset: ``image_folder(path)``, one sub-folder per class.

    photos/
        cat/  001.jpg  002.png ...
        dog/  a.jpeg   b.bmp   ...

    (x_train, y_train), (x_val, y_val), class_names = image_folder("photos", image_size=(32, 32))

The layout of torchvision's ``ImageFolder`` and Keras's
``image_dataset_from_directory``: the class names are the sub-folder names in
sorted order, and label k is the k-th of them. Files are found in the class
folders and any folders below them.

What is read and what is left out:

- PNG, JPEG and BMP files (by their name ending, any case), read with
  ``convnp.data.image_files.read_image``, the reader ``convnp predict`` uses;
- hidden files and folders (names starting with ".", such as ``.DS_Store`` or
  ``.ipynb_checkpoints``) are ignored, and so are files directly in ``path``;
- every other file, and every image file Pillow cannot decode (damaged,
  truncated, not really an image), is **skipped with a warning**
  (``convnp.InputWarning``) naming it and why, and the rest is used. A class
  left without any image is an error.

Every image is resized to one size (see ``image_size``) and converted to grey
or RGB (see ``color_mode``), so the result is one float32 array in [0, 1].
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from convnp.checks import InputWarning
from convnp.data.batching import stratified_split
from convnp.data.dataset_info import Split
from convnp.data.image_files import (
    IMAGE_EXTENSIONS,
    ImageFileError,
    image_to_array,
    is_grey,
    open_image,
    oriented_size,
    pillow,
)

__all__ = ["image_folder", "ImageFolderData", "AUTO_MAX_SIDE", "COLOR_MODES"]

#: With ``image_size=None``, the common size is shrunk (aspect ratio kept) to at most this many pixels a side.
AUTO_MAX_SIDE = 64
COLOR_MODES = ("auto", "grayscale", "rgb")
_LISTED_SKIPS = 5  # how many skipped files a warning names


class ImageFolderData(NamedTuple):
    """What ``image_folder`` returns: ``(x_train, y_train), (x_val, y_val), class_names``.

    Images float32 (N, C, H, W) in [0, 1], labels int64 indices into ``class_names``.
    """

    train: Split
    validation: Split
    class_names: list[str]


def _visible(entry: Path) -> bool:
    return not entry.name.startswith(".")


def _class_files(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(image files, [(other file, why skipped)]) under ``folder``, in sorted order, hidden ones left out."""
    images, others = [], []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                images.append(path)
            else:
                others.append((path, f"not a {'/'.join(IMAGE_EXTENSIONS)} file"))
    return images, others


def _check_arguments(image_size, color_mode: str, validation_split) -> tuple[int, int] | None:
    if color_mode not in COLOR_MODES:
        raise ValueError(f"image_folder: color_mode must be one of {COLOR_MODES}, got {color_mode!r}")
    if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float, np.floating)):
        raise TypeError(f"image_folder: validation_split must be a number in [0, 1), got {validation_split!r}")
    if not 0 <= validation_split < 1:
        raise ValueError(f"image_folder: validation_split must lie in [0, 1), got {validation_split!r}")
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in size)
    ):
        raise TypeError(f"image_folder: image_size must be an int or a pair (height, width), got {image_size!r}")
    if min(size) < 1:
        raise ValueError(f"image_folder: image_size must be positive, got {image_size!r}")
    return int(size[0]), int(size[1])


def _find_classes(root: Path) -> list[Path]:
    if not root.exists():
        raise FileNotFoundError(f"image_folder: no such folder: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"image_folder: {root} is not a folder (pass the folder holding one folder per class)")
    folders = sorted((entry for entry in root.iterdir() if entry.is_dir() and _visible(entry)), key=lambda p: p.name)
    loose = [entry for entry in root.iterdir() if entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS]
    layout = f"{root}/<class name>/<image files>, e.g. {root}/cat/1.jpg and {root}/dog/1.jpg"
    if not folders:
        found = f" (it holds {len(loose)} image files directly)" if loose else ""
        raise ValueError(f"image_folder: {root} has no class sub-folders{found}; put each class in its own: {layout}")
    if len(folders) == 1:
        raise ValueError(
            f"image_folder: {root} has one class sub-folder ({folders[0].name!r}); "
            f"a classifier needs at least two: {layout}"
        )
    return folders


def _warn_skipped(skipped: list[tuple[Path, str]], root: Path) -> None:
    if not skipped:
        return
    skipped = sorted(skipped)
    listed = "; ".join(f"{path.relative_to(root)} ({why})" for path, why in skipped[:_LISTED_SKIPS])
    more = f"; and {len(skipped) - _LISTED_SKIPS} more" if len(skipped) > _LISTED_SKIPS else ""
    warnings.warn(
        InputWarning(f"image_folder: skipped {len(skipped)} files that are not readable images: {listed}{more}"),
        stacklevel=3,
    )


def _auto_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The most common (H, W) (ties: the smaller area), shrunk to at most ``AUTO_MAX_SIDE`` a side."""
    counts = Counter(sizes)
    height, width = min(counts, key=lambda hw: (-counts[hw], hw[0] * hw[1], hw))
    scale = min(1.0, AUTO_MAX_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def image_folder(
    path: str | os.PathLike,
    image_size: int | tuple[int, int] | None = None,
    color_mode: str = "auto",
    validation_split: float = 0.2,
    seed: np.random.Generator | int | None = 0,
) -> ImageFolderData:
    """Read a folder of images, one sub-folder per class, as training and validation splits.

    Parameters
    ----------
    path : str or path-like
        The folder holding one sub-folder per class (see the module docstring).
    image_size : int or (int, int), optional
        (H, W) every image is resized to (an int for a square). Default: the
        most common size among the images, shrunk (aspect ratio kept) so that
        neither side exceeds ``AUTO_MAX_SIDE`` = 64 pixels, a size a CNN trains
        on a CPU in seconds per epoch. Resizing does not keep the aspect ratio.
    color_mode : {"auto", "grayscale", "rgb"}
        One channel (luma) or three. "auto": one when every image is grey
        (a grey mode, or RGB with equal channels), else three.
    validation_split : float
        The share of each class held out for validation, in [0, 1): class c
        gives round(n_c * validation_split) of its n_c images (at least one
        stays for training). 0 gives an empty validation split.
    seed : Generator, int or None
        Seeds the split and the order of the images in each split (int64
        labels are not ordered by class).

    Returns
    -------
    ImageFolderData
        ``((x_train, y_train), (x_val, y_val), class_names)``: images float32
        (N, C, H, W) in [0, 1], labels int64, the class names in sorted order.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        ``path`` is missing or not a folder.
    ValueError
        No class sub-folders, only one, a class without any readable image, or
        an invalid argument.
    ImportError
        Pillow is not installed (``pip install convnp[images]``).

    Warns
    -----
    InputWarning
        Files skipped: not PNG/JPEG/BMP, or not decodable (each named, with why).
    """
    size = _check_arguments(image_size, color_mode, validation_split)
    root = Path(path).expanduser()
    folders = _find_classes(root)
    image_module = pillow()

    # First pass: the headers only (size, mode), no pixels decoded.
    skipped: list[tuple[Path, str]] = []
    files, labels, sizes = [], [], []
    for label, folder in enumerate(folders):
        images, others = _class_files(folder)
        skipped += others
        for file in images:
            try:
                with image_module.open(file) as image:
                    sizes.append(oriented_size(image))
            except (OSError, SyntaxError, ValueError, image_module.DecompressionBombError) as error:
                skipped.append((file, str(error) or type(error).__name__))
                continue
            files.append(file)
            labels.append(label)
    if size is None and files:
        size = _auto_size(sizes)

    # Second pass: decode, convert and resize. In "auto" mode each image is kept both grey and
    # RGB until the first colour image, so that grey images come out exactly as read_image(path,
    # size, 1) reads them for predict (luma, not one of three near-equal channels).
    arrays: dict[int, np.ndarray] = {}
    grey_arrays: dict[int, np.ndarray] | None = {} if color_mode == "auto" else None
    channels = 1 if color_mode == "grayscale" else 3
    for index, file in enumerate(files):
        try:
            image = open_image(file)
        except (ImageFileError, OSError) as error:
            skipped.append((file, getattr(error, "reason", None) or str(error)))
            continue
        arrays[index] = image_to_array(image, size, channels)
        if grey_arrays is not None and is_grey(image):
            grey_arrays[index] = image_to_array(image, size, 1)
        elif grey_arrays is not None:
            grey_arrays = None  # a colour image: the dataset is RGB
    _warn_skipped(skipped, root)

    if grey_arrays is not None:
        arrays = grey_arrays
    keep = sorted(arrays)
    y = np.asarray([labels[index] for index in keep], dtype=np.int64)
    empty = [folder.name for label, folder in enumerate(folders) if not np.any(y == label)]
    if empty:
        raise ValueError(
            f"image_folder: no readable PNG/JPEG/BMP image in the class folders {empty} of {root}; "
            "every class needs at least one"
        )
    x = np.stack([arrays[index] for index in keep])  # (N, C, H, W)
    train, validation = stratified_split(y, float(validation_split), seed, num_classes=len(folders))
    class_names = [folder.name for folder in folders]
    return ImageFolderData((x[train], y[train]), (x[validation], y[validation]), class_names)
