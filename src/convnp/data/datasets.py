"""``load(name)``: the four built-in datasets as float32 NCHW arrays.

Where the files come from, for ``mnist``, ``fashion-mnist`` and ``cifar10``
(the first folder holding a complete set wins):

1. ``data_dir`` and its sub-folder named after the dataset;
2. ``$CONVNP_DATA`` and its sub-folder named after the dataset;
3. the download cache, ``<cache root>/<name>`` (see ``download.cache_root``);
4. system copies: for ``fashion-mnist``, ``/usr/share/datasets/fashion-mnist``
   (Debian/Ubuntu package ``dataset-fashion-mnist``);
5. with ``download=True``: the mirrors in ``download.MIRRORS``, verified
   against ``download.CHECKSUMS``, saved into the cache of step 3.

``digits`` needs no files: it is scikit-learn's embedded copy of the UCI 8x8
digits, split once with a fixed seed (see ``_load_digits``).
"""

from __future__ import annotations

import math
import os
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convnp._optional import require
from convnp.data import download as _download
from convnp.data.errors import DatasetNotFoundError, DownloadError
from convnp.data.idx import read_idx

__all__ = ["load", "DATASETS", "DatasetInfo", "SYSTEM_DIRS"]

Split = tuple[np.ndarray, np.ndarray]

_DIGIT_NAMES = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class DatasetInfo:
    """What a built-in dataset is: shapes, classes and the files it is read from."""

    name: str
    description: str
    input_shape: tuple[int, int, int]  # per-sample (C, H, W)
    num_classes: int
    class_names: tuple[str, ...]
    train_size: int
    test_size: int
    files: tuple[str, ...]  # what to put in a folder to use it offline; () when embedded


_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_CIFAR_ARCHIVE = "cifar-10-binary.tar.gz"
_CIFAR_FOLDER = "cifar-10-batches-bin"  # the folder inside the archive
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_TEST_BATCHES = ("test_batch.bin",)
_CIFAR_IMAGE_SHAPE = (3, 32, 32)
_CIFAR_RECORD_BYTES = 1 + 3 * 32 * 32  # one label byte, then R, G and B planes of 32x32

DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        name="digits",
        description="8x8 handwritten digits embedded in scikit-learn (UCI), no download",
        input_shape=(1, 8, 8),
        num_classes=10,
        class_names=_DIGIT_NAMES,
        train_size=1437,
        test_size=360,
        files=(),
    ),
    "mnist": DatasetInfo(
        name="mnist",
        description="MNIST handwritten digits, 28x28 grey",
        input_shape=(1, 28, 28),
        num_classes=10,
        class_names=_DIGIT_NAMES,
        train_size=60000,
        test_size=10000,
        files=_IDX_FILES,
    ),
    "fashion-mnist": DatasetInfo(
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
        files=_IDX_FILES,
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        description="CIFAR-10 colour images, 32x32 RGB (binary version, no pickle)",
        input_shape=_CIFAR_IMAGE_SHAPE,
        num_classes=10,
        class_names=(
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
        train_size=50000,
        test_size=10000,
        files=(_CIFAR_ARCHIVE,),
    ),
}

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
}

# Sub-folders of data_dir / $CONVNP_DATA also searched, per dataset. "MNIST/raw"
# and "FashionMNIST/raw" are where torchvision keeps the same files, so a
# torchvision data root works as data_dir.
_SUBFOLDERS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist", "MNIST/raw"),
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
    "cifar10": ("cifar10", "cifar-10"),
}

# Copies installed by the operating system, searched after the cache.
SYSTEM_DIRS: dict[str, list[Path]] = {
    "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],
}

_HOW_TO_PROVIDE = {
    "fashion-mnist": (
        "or install Debian/Ubuntu's copy: apt-get install dataset-fashion-mnist "
        "(files in /usr/share/datasets/fashion-mnist)"
    ),
}


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return key


# ----------------------------------------------------------------------------- search


def _search_places(name: str, data_dir, cache_dir) -> list[tuple[Path, str]]:
    """Folders to look in, in order, each with where it came from."""
    places: list[tuple[Path, str]] = []

    def add_with_subfolders(root: Path, origin: str) -> None:
        places.append((root, origin))
        places.extend((root / sub, origin) for sub in _SUBFOLDERS[name])

    if data_dir is not None:
        add_with_subfolders(Path(data_dir).expanduser(), "data_dir")
    if os.environ.get("CONVNP_DATA"):
        add_with_subfolders(Path(os.environ["CONVNP_DATA"]).expanduser(), "$CONVNP_DATA")
    places.append((_download.cache_root(cache_dir) / name, "download cache"))
    places.extend((Path(folder), "system copy") for folder in SYSTEM_DIRS.get(name, ()))
    return places


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
    for gz_name in _IDX_FILES:
        path = _find_file(folder, gz_name)
        if path is None:
            return None
        found[gz_name] = path
    return found


def _find_cifar(folder: Path) -> Path | None:
    """A folder with the six .bin batches, or the archive, under ``folder``."""
    for candidate in (folder, folder / _CIFAR_FOLDER):
        if all((candidate / f).is_file() for f in _CIFAR_TRAIN_BATCHES + _CIFAR_TEST_BATCHES):
            return candidate
    archive = folder / _CIFAR_ARCHIVE
    return archive if archive.is_file() else None


def _not_found_message(name: str, places: list[tuple[Path, str]], attempts: list[str] | None) -> str:
    info = DATASETS[name]
    lines = [f"dataset {name!r}: files not found. Searched, in order:"]
    for folder, origin in places:
        note = "" if folder.is_dir() else ", does not exist"
        lines.append(f"  - {folder}  ({origin}{note})")
    if attempts is None:
        mirrors = ", ".join(_download.MIRRORS.get(name, [])) or "none configured"
        lines.append(f"Not downloaded (download=False); mirrors: {mirrors}")
    else:
        lines.append("Download failed. Mirrors tried:")
        lines.extend(f"  - {attempt}" for attempt in attempts)
    files = ", ".join(info.files)
    if name == "cifar10":
        files += f" (or its extracted {_CIFAR_FOLDER}/ folder)"
    else:
        files += " (gzipped or not)"
    lines.append(
        f"To use it offline, put {files} in a folder and pass load({name!r}, data_dir=FOLDER), "
        f"or set CONVNP_DATA=FOLDER (files in FOLDER or FOLDER/{name})"
    )
    if name in _HOW_TO_PROVIDE:
        lines.append(_HOW_TO_PROVIDE[name])
    return "\n".join(lines)


def _locate_or_download(
    name: str,
    data_dir,
    download: bool,
    cache_dir,
    verbose: bool,
    find: Callable[[Path], object],
):
    """Search the places in order; fall back to downloading into the cache."""
    places = _search_places(name, data_dir, cache_dir)
    for folder, _origin in places:
        found = find(folder)
        if found is not None:
            return found
    if not download:
        raise DatasetNotFoundError(_not_found_message(name, places, attempts=None))

    target = _download.cache_root(cache_dir) / name
    checksums = _download.CHECKSUMS[name]
    try:
        for filename in checksums:
            # A verified file from an earlier, interrupted run is kept (only
            # verified files ever land under these names).
            if not (target / filename).is_file():
                _download.download_file(
                    filename,
                    _download.MIRRORS.get(name, []),
                    target / filename,
                    checksums[filename],
                    verbose=verbose,
                )
    except DownloadError as error:
        raise DatasetNotFoundError(_not_found_message(name, places, error.attempts)) from error
    found = find(target)
    if found is None:  # CHECKSUMS edited to name files this loader does not read
        raise DatasetNotFoundError(_not_found_message(name, places, attempts=[]))
    return found


# ----------------------------------------------------------------------------- readers


def _to_unit_float32(images: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 0..1 (one allocation)."""
    out = images.astype(np.float32)
    out /= 255.0
    return out


def _check_labels(labels: np.ndarray, num_classes: int, source: str) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{source}: labels in [{labels.min()}, {labels.max()}], expected 0..{num_classes - 1}")
    return labels.astype(np.int64)


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
    x = _to_unit_float32(images)[:, None]  # (N, H, W) -> (N, 1, H, W)
    return x, _check_labels(labels, info.num_classes, str(labels_path))


def _load_idx_dataset(name: str, data_dir, download: bool, cache_dir, verbose: bool):
    files = _locate_or_download(name, data_dir, download, cache_dir, verbose, _find_idx_set)
    info = DATASETS[name]
    train = _read_idx_pair(files[_IDX_FILES[0]], files[_IDX_FILES[1]], info)
    test = _read_idx_pair(files[_IDX_FILES[2]], files[_IDX_FILES[3]], info)
    return train, test


def _parse_cifar_records(data: bytes, source: str) -> Split:
    """Records of 1 label byte + 3072 pixel bytes (R, G, B planes) -> uint8 arrays."""
    if len(data) % _CIFAR_RECORD_BYTES:
        raise ValueError(
            f"{source}: {len(data)} bytes is not a whole number of {_CIFAR_RECORD_BYTES}-byte CIFAR-10 records"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _CIFAR_RECORD_BYTES)  # (N, 3073)
    labels = _check_labels(records[:, 0], 10, source)
    images = records[:, 1:].reshape(-1, *_CIFAR_IMAGE_SHAPE)  # (N, 3, 32, 32)
    return images, labels


def _read_cifar_batches(location: Path) -> dict[str, bytes]:
    """The six batch files' bytes, from a folder or from the .tar.gz (never extracted)."""
    wanted = _CIFAR_TRAIN_BATCHES + _CIFAR_TEST_BATCHES
    if location.is_dir():
        return {name: (location / name).read_bytes() for name in wanted}
    contents: dict[str, bytes] = {}
    try:
        with tarfile.open(location, "r:*") as archive:
            # One pass over the stream; members are matched by base name and
            # read into memory, so no path inside the archive touches the disk.
            for member in archive:
                base_name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base_name in wanted and base_name not in contents:
                    contents[base_name] = archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise ValueError(f"{location}: damaged CIFAR-10 archive ({error})") from error
    missing = [name for name in wanted if name not in contents]
    if missing:
        raise ValueError(f"{location}: CIFAR-10 archive lacks {missing}")
    return contents


def _load_cifar10(data_dir, download: bool, cache_dir, verbose: bool):
    location = _locate_or_download("cifar10", data_dir, download, cache_dir, verbose, _find_cifar)
    contents = _read_cifar_batches(location)
    splits = []
    for batch_names in (_CIFAR_TRAIN_BATCHES, _CIFAR_TEST_BATCHES):
        parts = [_parse_cifar_records(contents[b], f"{location}:{b}") for b in batch_names]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        splits.append((_to_unit_float32(images), labels))
    return splits[0], splits[1]


# ----------------------------------------------------------------------------- digits

DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2


def _stratified_split(
    labels: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with each class split in proportion, both shuffled.

    n_test = ceil(test_fraction * N) (as scikit-learn's train_test_split); each
    class gets floor(n_c * n_test / N) test samples and the remaining ones go,
    one each, to the classes with the largest fractional parts (ties: lower
    class first), so the test set's class mix follows the whole set's.
    """
    classes, counts = np.unique(labels, return_counts=True)
    n_test = math.ceil(test_fraction * len(labels))
    exact = counts * n_test / len(labels)
    test_counts = np.floor(exact).astype(np.int64)
    leftover = n_test - int(test_counts.sum())
    by_remainder = np.argsort(-(exact - test_counts), kind="stable")
    test_counts[by_remainder[:leftover]] += 1

    train_parts, test_parts = [], []
    for cls, n_cls_test in zip(classes, test_counts, strict=True):
        members = rng.permutation(np.flatnonzero(labels == cls))
        test_parts.append(members[:n_cls_test])
        train_parts.append(members[n_cls_test:])
    # Shuffle so neither split is ordered by class.
    train_idx = rng.permutation(np.concatenate(train_parts))
    test_idx = rng.permutation(np.concatenate(test_parts))
    return train_idx, test_idx


def _load_digits():
    """scikit-learn's 1,797 8x8 digits, split 1,437 train / 360 test.

    Pixel values 0..16 are divided by 16. The split is fixed: a stratified
    shuffle (20% test per class, see ``_stratified_split``) drawn from
    ``numpy.random.default_rng(0)``, so every call and every machine get the
    same two sets.
    """
    sklearn_datasets = require("sklearn.datasets", "the 'digits' dataset (embedded in scikit-learn)", "digits")
    bunch = sklearn_datasets.load_digits()
    images = bunch.images.astype(np.float32)[:, None] / np.float32(16.0)  # (1797, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = _stratified_split(labels, DIGITS_TEST_FRACTION, np.random.default_rng(DIGITS_SEED))
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


# ----------------------------------------------------------------------------- load


def load(
    name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    *,
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = True,
) -> tuple[Split, Split]:
    """Load a built-in dataset as ``((x_train, y_train), (x_test, y_test))``.

    Parameters
    ----------
    name : str
        ``"digits"``, ``"mnist"``, ``"fashion-mnist"`` (or ``"fashion_mnist"``)
        or ``"cifar10"``; case does not matter.
    data_dir : str or path-like, optional
        A folder holding the dataset's files (or a sub-folder named after the
        dataset); searched first.
    download : bool
        Download into the cache when the files are found nowhere.
    cache_dir : str or path-like, optional
        Cache root (default ``$CONVNP_CACHE``, ``$XDG_CACHE_HOME/convnp`` or
        ``~/.cache/convnp``); files go to ``<cache_dir>/<name>/``.
    verbose : bool
        Show a progress bar while downloading (when tqdm is installed).

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        Images float32 in [0, 1], labels int64 class indices.

    Shape:
        digits: x (N, 1, 8, 8); mnist, fashion-mnist: x (N, 1, 28, 28);
        cifar10: x (N, 3, 32, 32); y (N,)

    Raises
    ------
    ValueError
        Unknown ``name`` (the message lists the valid names), or a file that is
        damaged or not what the dataset needs.
    DatasetNotFoundError
        Files not found and not downloadable; the message names every folder
        searched, every mirror tried and how to provide the files.
    ChecksumError
        A download did not match its published checksum (nothing is kept).
    ImportError
        ``digits`` without scikit-learn installed.
    """
    key = _canonical_name(name)
    if key == "digits":
        return _load_digits()
    if key == "cifar10":
        return _load_cifar10(data_dir, download, cache_dir, verbose)
    return _load_idx_dataset(key, data_dir, download, cache_dir, verbose)
