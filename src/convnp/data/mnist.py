"""MNIST and Fashion-MNIST: four IDX files each, 28x28 grey images, 10 classes.

The files go by their official names (``train-images-idx3-ubyte.gz`` ...),
gzipped or not; the dotted spelling of some re-uploads
(``train-images.idx3-ubyte``) is found too. The four must sit in one folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from convnp.data.dataset_info import DIGIT_NAMES, DatasetInfo, Split, check_labels, to_unit_float32
from convnp.data.idx import read_idx
from convnp.data.locate import locate_or_download

__all__ = ["MNIST", "FASHION_MNIST", "IDX_FILES", "load_idx_dataset"]

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

MNIST = DatasetInfo(
    name="mnist",
    description="MNIST handwritten digits, 28x28 grey",
    input_shape=(1, 28, 28),
    num_classes=10,
    class_names=DIGIT_NAMES,
    train_size=60000,
    test_size=10000,
    files=IDX_FILES,
)

FASHION_MNIST = DatasetInfo(
    name="fashion-mnist",
    description="Zalando's Fashion-MNIST clothing images, 28x28 grey",
    input_shape=(1, 28, 28),
    num_classes=10,
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    train_size=60000,
    test_size=10000,
    files=IDX_FILES,
)


def _find_file(folder: Path, gz_name: str) -> Path | None:
    """The file under its official name, raw or gzipped, or Kaggle's dotted spelling."""
    stem = gz_name.removesuffix(".gz")
    dotted = stem.replace("-idx", ".idx")  # train-images.idx3-ubyte, as some re-uploads name it
    for candidate in (stem, gz_name, dotted, dotted + ".gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def _find_idx_set(folder: Path) -> dict[str, Path] | None:
    """The four IDX files if ``folder`` holds all of them, else None."""
    found = {}
    for gz_name in IDX_FILES:
        path = _find_file(folder, gz_name)
        if path is None:
            return None
        found[gz_name] = path
    return found


def _read_idx_pair(images_path: Path, labels_path: Path, info: DatasetInfo) -> Split:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.shape[1:] != info.input_shape[1:]:
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (N, {info.input_shape[1]}, "
            f"{info.input_shape[2]}), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "ui":
        raise ValueError(f"{labels_path}: expected integer labels of shape (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    x = to_unit_float32(images)[:, None]  # (N, H, W) -> (N, 1, H, W)
    return x, check_labels(labels, info.num_classes, str(labels_path))


def load_idx_dataset(
    info: DatasetInfo,
    data_dir: str | os.PathLike | None,
    download: bool,
    cache_dir: str | os.PathLike | None,
    verbose: bool,
) -> tuple[Split, Split]:
    """``MNIST`` or ``FASHION_MNIST`` as ``((x_train, y_train), (x_test, y_test))``, located or downloaded.

    Shape:
        x_train: (60000, 1, 28, 28) float32 in [0, 1]; y_train: (60000,) int64
        x_test: (10000, 1, 28, 28); y_test: (10000,)
    """
    wanted_files = ", ".join(info.files) + " (gzipped or not)"
    files = locate_or_download(info.name, _find_idx_set, wanted_files, data_dir, download, cache_dir, verbose)
    train = _read_idx_pair(files[IDX_FILES[0]], files[IDX_FILES[1]], info)
    test = _read_idx_pair(files[IDX_FILES[2]], files[IDX_FILES[3]], info)
    return train, test
