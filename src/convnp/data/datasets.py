"""The built-in datasets by name: ``DATASETS`` describes each one, ``load(name)`` loads it.

One module per dataset does the reading (``digits``, ``mnist`` for MNIST and
Fashion-MNIST, ``cifar10``); ``locate`` finds their files or downloads them.
"""

from __future__ import annotations

import os

from convnp.data.cifar10 import CIFAR10, load_cifar10
from convnp.data.dataset_info import DatasetInfo, Split
from convnp.data.digits import DIGITS, load_digits
from convnp.data.mnist import FASHION_MNIST, MNIST, load_idx_dataset

__all__ = ["load", "DATASETS", "DatasetInfo"]

DATASETS: dict[str, DatasetInfo] = {info.name: info for info in (DIGITS, MNIST, FASHION_MNIST, CIFAR10)}

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
}


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return key


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
        dataset); searched first (the whole search order: ``convnp.data.locate``).
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
        return load_digits()
    if key == "cifar10":
        return load_cifar10(data_dir, download, cache_dir, verbose)
    return load_idx_dataset(DATASETS[key], data_dir, download, cache_dir, verbose)
