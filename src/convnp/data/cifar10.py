"""CIFAR-10, binary version: 32x32 RGB images in records of plain bytes, never a pickle.

``cifar-10-binary.tar.gz`` holds ``data_batch_1.bin`` ... ``data_batch_5.bin``
and ``test_batch.bin``, each a run of records of 1 label byte followed by 3,072
pixel bytes (the red, green and blue 32x32 planes, row-major). The Python
version of CIFAR-10 is a set of pickles, and unpickling runs code; convnp never
reads it. The archive is read in memory (no path inside it touches the disk);
an already extracted ``cifar-10-batches-bin/`` folder works as well.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from pathlib import Path

import numpy as np

from convnp.data.dataset_info import DatasetInfo, Split, check_labels, to_unit_float32
from convnp.data.locate import locate_or_download

__all__ = ["CIFAR10", "load_cifar10"]

_ARCHIVE = "cifar-10-binary.tar.gz"
_FOLDER = "cifar-10-batches-bin"  # the folder inside the archive
_TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_TEST_BATCHES = ("test_batch.bin",)
_IMAGE_SHAPE = (3, 32, 32)
_RECORD_BYTES = 1 + 3 * 32 * 32  # one label byte, then R, G and B planes of 32x32

CIFAR10 = DatasetInfo(
    name="cifar10",
    description="CIFAR-10 colour images, 32x32 RGB (binary version, no pickle)",
    input_shape=_IMAGE_SHAPE,
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
    files=(_ARCHIVE,),
)


def _find_cifar(folder: Path) -> Path | None:
    """A folder with the six .bin batches, or the archive, under ``folder``."""
    for candidate in (folder, folder / _FOLDER):
        if all((candidate / f).is_file() for f in _TRAIN_BATCHES + _TEST_BATCHES):
            return candidate
    archive = folder / _ARCHIVE
    return archive if archive.is_file() else None


def _parse_records(data: bytes, source: str) -> Split:
    """Records of 1 label byte + 3072 pixel bytes (R, G, B planes) -> uint8 arrays."""
    if len(data) % _RECORD_BYTES:
        raise ValueError(f"{source}: {len(data)} bytes is not a whole number of {_RECORD_BYTES}-byte CIFAR-10 records")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _RECORD_BYTES)  # (N, 3073)
    labels = check_labels(records[:, 0], 10, source)
    images = records[:, 1:].reshape(-1, *_IMAGE_SHAPE)  # (N, 3, 32, 32)
    return images, labels


def _read_batches(location: Path) -> dict[str, bytes]:
    """The six batch files' bytes, from a folder or from the .tar.gz (never extracted)."""
    wanted = _TRAIN_BATCHES + _TEST_BATCHES
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


def load_cifar10(
    data_dir: str | os.PathLike | None,
    download: bool,
    cache_dir: str | os.PathLike | None,
    verbose: bool,
) -> tuple[Split, Split]:
    """CIFAR-10 as ``((x_train, y_train), (x_test, y_test))``, located or downloaded.

    Shape:
        x_train: (50000, 3, 32, 32) float32 in [0, 1]; y_train: (50000,) int64
        x_test: (10000, 3, 32, 32); y_test: (10000,)
    """
    wanted_files = f"{_ARCHIVE} (or its extracted {_FOLDER}/ folder)"
    location = locate_or_download("cifar10", _find_cifar, wanted_files, data_dir, download, cache_dir, verbose)
    contents = _read_batches(location)
    splits = []
    for batch_names in (_TRAIN_BATCHES, _TEST_BATCHES):
        parts = [_parse_records(contents[b], f"{location}:{b}") for b in batch_names]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        splits.append((to_unit_float32(images), labels))
    return splits[0], splits[1]
