"""Where a dataset's files are looked for, and the download into the cache when they are nowhere.

For ``mnist``, ``fashion-mnist`` and ``cifar10``, in this order (the first
folder holding a complete set wins):

1. ``data_dir`` and its sub-folders named after the dataset;
2. ``$CONVNP_DATA`` and the same sub-folders of it;
3. the download cache, ``<cache root>/<name>`` (see ``download.cache_root``);
4. system copies: for ``fashion-mnist``, ``/usr/share/datasets/fashion-mnist``
   (Debian/Ubuntu package ``dataset-fashion-mnist``);
5. with ``download=True``: the mirrors in ``download.MIRRORS``, verified
   against ``download.CHECKSUMS``, saved into the cache of step 3.

What counts as a complete set is the dataset's own business: each loader
passes a ``find(folder)`` that returns what it needs from a folder, or None.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from convnp.data import download as _download
from convnp.data.errors import DatasetNotFoundError, DownloadError

__all__ = ["SYSTEM_DIRS", "search_places", "not_found_message", "locate_or_download"]

Found = TypeVar("Found")

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


def search_places(
    name: str, data_dir: str | os.PathLike | None, cache_dir: str | os.PathLike | None
) -> list[tuple[Path, str]]:
    """Folders to look in, in order, each with where it came from ("data_dir", "download cache"...)."""
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


def not_found_message(name: str, wanted_files: str, places: list[tuple[Path, str]], attempts: list[str] | None) -> str:
    """Every folder searched, every mirror tried (``attempts``; None: not downloaded) and how to provide the files.

    ``wanted_files`` says what to put in a folder, e.g. "a.gz, b.gz (gzipped or not)".
    """
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
    lines.append(
        f"To use it offline, put {wanted_files} in a folder and pass load({name!r}, data_dir=FOLDER) "
        f"in Python or --data-dir FOLDER on the command line (convnp train --dataset {name} --data-dir FOLDER), "
        f"or set CONVNP_DATA=FOLDER (files in FOLDER or FOLDER/{name})"
    )
    if name in _HOW_TO_PROVIDE:
        lines.append(_HOW_TO_PROVIDE[name])
    return "\n".join(lines)


def locate_or_download(
    name: str,
    find: Callable[[Path], Found | None],
    wanted_files: str,
    data_dir: str | os.PathLike | None,
    download: bool,
    cache_dir: str | os.PathLike | None,
    verbose: bool,
) -> Found:
    """What ``find`` returns for the first searched folder with a complete set; else download into the cache.

    Raises ``DatasetNotFoundError`` (message from ``not_found_message``) when
    the files are nowhere and ``download`` is False or every mirror failed;
    ``ChecksumError`` when a mirror served a file with the wrong digest.
    """
    places = search_places(name, data_dir, cache_dir)
    for folder, _origin in places:
        found = find(folder)
        if found is not None:
            return found
    if not download:
        raise DatasetNotFoundError(not_found_message(name, wanted_files, places, attempts=None))

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
        raise DatasetNotFoundError(not_found_message(name, wanted_files, places, error.attempts)) from error
    found = find(target)
    if found is None:  # CHECKSUMS edited to name files this loader does not read
        raise DatasetNotFoundError(not_found_message(name, wanted_files, places, attempts=[]))
    return found
