"""load("cifar10") from the binary version: records of 1 label byte + 3072 pixel bytes."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest

from convnp.data import DatasetNotFoundError, download, load

TRAIN_BATCHES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_BATCH = "test_batch.bin"


def _records(n: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """n records; returns (bytes, labels (n,), pixel bytes (n, 3072))."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    return np.column_stack([labels, pixels]).tobytes(), labels, pixels


def _batches(per_batch: int = 2, n_test: int = 3):
    contents, train_labels, train_pixels = {}, [], []
    for index, name in enumerate(TRAIN_BATCHES):
        contents[name], labels, pixels = _records(per_batch, seed=index)
        train_labels.append(labels)
        train_pixels.append(pixels)
    contents[TEST_BATCH], test_labels, test_pixels = _records(n_test, seed=99)
    contents["batches.meta.txt"] = b"airplane\nautomobile\n"
    expected = {
        "train": (np.concatenate(train_pixels), np.concatenate(train_labels)),
        "test": (test_pixels, test_labels),
    }
    return contents, expected


def _write_archive(path, contents, folder="cifar-10-batches-bin"):
    with tarfile.open(path, "w:gz") as archive:
        for name, data in contents.items():
            member = tarfile.TarInfo(f"{folder}/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))


def _assert_matches(loaded, expected):
    for (x, y), part in zip(loaded, ("train", "test"), strict=True):
        pixels, labels = expected[part]
        assert x.shape == (len(labels), 3, 32, 32) and x.dtype == np.float32
        assert y.dtype == np.int64
        np.testing.assert_array_equal(y, labels)
        # Channel planes R, G, B of 32x32, row-major: byte 1 + c*1024 + i*32 + j.
        np.testing.assert_array_equal(x.reshape(len(labels), 3072), pixels / np.float32(255))
    (x_train, _), _ = loaded
    pixels = expected["train"][0]
    assert x_train[0, 1, 2, 3] == np.float32(pixels[0, 1024 + 2 * 32 + 3]) / 255  # G, row 2, col 3


def test_from_archive_in_data_dir(tmp_path):
    contents, expected = _batches()
    _write_archive(tmp_path / "cifar-10-binary.tar.gz", contents)
    _assert_matches(load("cifar10", data_dir=tmp_path, download=False), expected)


@pytest.mark.parametrize("layout", ["cifar-10-batches-bin", "cifar10/cifar-10-batches-bin", "."])
def test_from_extracted_folder(tmp_path, layout):
    contents, expected = _batches()
    folder = tmp_path / layout
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    _assert_matches(load("CIFAR-10", data_dir=tmp_path, download=False), expected)


def test_download_from_local_mirror(local_mirror, monkeypatch, isolated_data_env):
    contents, expected = _batches()
    archive = local_mirror.root / "cifar-10-binary.tar.gz"
    _write_archive(archive, contents)
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(download.CHECKSUMS, "cifar10", {archive.name: f"md5:{digest}"})
    monkeypatch.setitem(download.MIRRORS, "cifar10", [local_mirror.url])

    _assert_matches(load("cifar10", verbose=False), expected)
    # Kept as the archive (read in memory, never extracted to disk).
    assert [p.name for p in (isolated_data_env / "cifar10").iterdir()] == [archive.name]
    _assert_matches(load("cifar10", verbose=False), expected)
    assert local_mirror.paths_requested() == [f"/{archive.name}"]


def test_partial_record_is_refused(tmp_path):
    contents, _ = _batches()
    contents[TEST_BATCH] = contents[TEST_BATCH][:-1]
    _write_archive(tmp_path / "cifar-10-binary.tar.gz", contents)
    with pytest.raises(ValueError, match="not a whole number of 3073-byte"):
        load("cifar10", data_dir=tmp_path, download=False)


def test_archive_missing_a_batch_is_refused(tmp_path):
    contents, _ = _batches()
    del contents["data_batch_3.bin"]
    _write_archive(tmp_path / "cifar-10-binary.tar.gz", contents)
    with pytest.raises(ValueError, match="data_batch_3.bin"):
        load("cifar10", data_dir=tmp_path, download=False)


def test_damaged_archive_is_refused(tmp_path):
    contents, _ = _batches()
    path = tmp_path / "cifar-10-binary.tar.gz"
    _write_archive(path, contents)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ValueError, match="damaged CIFAR-10 archive"):
        load("cifar10", data_dir=tmp_path, download=False)


def test_members_outside_the_folder_are_never_written(tmp_path):
    # A hostile archive: a member path escaping the folder. It is read (by base
    # name) into memory, so nothing is created outside, or anywhere.
    contents, expected = _batches()
    (tmp_path / "data").mkdir()
    _write_archive(tmp_path / "data" / "cifar-10-binary.tar.gz", contents, folder="../../escape")
    before = sorted(tmp_path.rglob("*"))
    _assert_matches(load("cifar10", data_dir=tmp_path / "data", download=False), expected)
    assert sorted(tmp_path.rglob("*")) == before


def test_not_found_message_describes_the_archive(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar-10-binary.tar.gz") as info:
        load("cifar10", data_dir=tmp_path, download=False)
    assert "cifar-10-batches-bin/" in str(info.value)
