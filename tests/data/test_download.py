"""Downloads against a local HTTP mirror: success, fallback, corruption, offline."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from convnp.data import ChecksumError, DatasetNotFoundError, DownloadError, download, load
from convnp.data.download import download_file

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def served_mnist(local_mirror, monkeypatch, make_idx_files):
    """A tiny MNIST on the local mirror, with CHECKSUMS set to its files' digests."""
    arrays = make_idx_files(local_mirror.root)
    checksums = {name: "md5:" + _md5(local_mirror.root / name) for name in FILES}
    # One sha256 to show any hashlib algorithm works.
    sha = hashlib.sha256((local_mirror.root / FILES[1]).read_bytes()).hexdigest()
    checksums[FILES[1]] = "sha256:" + sha
    monkeypatch.setitem(download.CHECKSUMS, "mnist", checksums)
    monkeypatch.setitem(download.MIRRORS, "mnist", [local_mirror.url])
    return arrays


def _files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_download_verifies_caches_and_is_not_repeated(served_mnist, local_mirror, isolated_data_env):
    (x_train, y_train), (x_test, y_test) = load("mnist", verbose=False)
    np.testing.assert_array_equal(x_train[:, 0], served_mnist["x_train"] / np.float32(255))
    np.testing.assert_array_equal(y_test, served_mnist["y_test"])
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64

    # Files land in <cache>/mnist, byte-identical, with no temporary leftovers.
    assert _files_under(isolated_data_env) == sorted(f"mnist/{name}" for name in FILES)
    for name in FILES:
        cached = (isolated_data_env / "mnist" / name).read_bytes()
        assert cached == (local_mirror.root / name).read_bytes()
    assert sorted(local_mirror.paths_requested()) == sorted(f"/{name}" for name in FILES)

    (x_train_again, _), _ = load("mnist", verbose=False)
    np.testing.assert_array_equal(x_train_again, x_train)
    assert len(local_mirror.requests) == 4  # served from the cache the second time


def test_first_mirror_404_then_second_mirror(served_mnist, local_mirror, monkeypatch):
    monkeypatch.setitem(download.MIRRORS, "mnist", [local_mirror.url + "gone/", local_mirror.url])
    (_, y_train), _ = load("mnist", verbose=False)
    np.testing.assert_array_equal(y_train, served_mnist["y_train"])
    statuses = {path: status for path, status in local_mirror.requests}
    for name in FILES:
        assert statuses[f"/gone/{name}"] == 404
        assert statuses[f"/{name}"] == 200


def test_only_missing_files_are_downloaded(served_mnist, local_mirror, isolated_data_env):
    # An earlier run fetched (and verified) two files before it was interrupted.
    (isolated_data_env / "mnist").mkdir(parents=True)
    for name in FILES[:2]:
        (isolated_data_env / "mnist" / name).write_bytes((local_mirror.root / name).read_bytes())
    load("mnist", verbose=False)
    assert sorted(local_mirror.paths_requested()) == sorted(f"/{name}" for name in FILES[2:])


def test_corrupted_file_raises_checksum_error_and_leaves_nothing(served_mnist, local_mirror, isolated_data_env):
    images = local_mirror.root / FILES[0]
    damaged = bytearray(images.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte after the checksum was taken
    images.write_bytes(bytes(damaged))

    with pytest.raises(ChecksumError) as info:
        load("mnist", verbose=False)
    message = str(info.value)
    expected = download.CHECKSUMS["mnist"][FILES[0]].removeprefix("md5:")
    assert FILES[0] in message and expected in message and _md5(images) in message
    assert local_mirror.url + FILES[0] in message
    assert _files_under(isolated_data_env) == []  # no partial or temporary file


def test_corrupted_later_file_keeps_only_verified_ones(served_mnist, local_mirror, isolated_data_env):
    labels = local_mirror.root / FILES[3]
    labels.write_bytes(labels.read_bytes()[:-3] + b"xyz")
    with pytest.raises(ChecksumError):
        load("mnist", verbose=False)
    assert _files_under(isolated_data_env) == sorted(f"mnist/{name}" for name in FILES[:3])


def test_corrupted_mirror_falls_back_to_a_good_one(served_mnist, local_mirror, monkeypatch, isolated_data_env):
    bad = local_mirror.root / "bad"
    bad.mkdir()
    for name in FILES:
        (bad / name).write_bytes(b"not the file")
    monkeypatch.setitem(download.MIRRORS, "mnist", [local_mirror.url + "bad/", local_mirror.url])
    (x_train, _), _ = load("mnist", verbose=False)
    np.testing.assert_array_equal(x_train[:, 0], served_mnist["x_train"] / np.float32(255))
    assert _files_under(isolated_data_env) == sorted(f"mnist/{name}" for name in FILES)


def test_offline_names_places_searched_and_mirrors_tried(tmp_path, monkeypatch, isolated_data_env, unreachable_url):
    monkeypatch.setenv("CONVNP_DATA", str(tmp_path / "env"))
    monkeypatch.setitem(download.MIRRORS, "mnist", [unreachable_url, unreachable_url + "b/"])
    with pytest.raises(DatasetNotFoundError) as info:
        load("mnist", data_dir=tmp_path / "given", verbose=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for place in (tmp_path / "given", tmp_path / "env" / "mnist", isolated_data_env / "mnist"):
        assert f"  - {place}  (" in message
    assert f"  - {unreachable_url}{FILES[0]}: " in message
    assert f"  - {unreachable_url}b/{FILES[0]}: " in message
    assert "refused" in message.lower()
    assert "data_dir=FOLDER" in message and "CONVNP_DATA=FOLDER" in message
    assert not isolated_data_env.exists()  # nothing created while offline


def test_incomplete_transfer_is_retried_elsewhere_and_never_cached(local_mirror, tmp_path):
    payload = b"0123456789" * 1000
    (local_mirror.root / "blob.bin").write_bytes(payload)
    checksum = "md5:" + hashlib.md5(payload).hexdigest()
    destination = tmp_path / "out" / "blob.bin"

    with pytest.raises(DownloadError, match="incomplete transfer: 10000 of 10100 bytes"):
        download_file("blob.bin", [local_mirror.url + "short/"], destination, checksum)
    assert _files_under(tmp_path / "out") == []

    download_file("blob.bin", [local_mirror.url + "short/", local_mirror.url], destination, checksum)
    assert destination.read_bytes() == payload


def test_progress_bar_only_when_verbose(local_mirror, tmp_path, capsys):
    pytest.importorskip("tqdm")
    payload = bytes(range(256)) * 64
    (local_mirror.root / "blob.bin").write_bytes(payload)
    checksum = "md5:" + hashlib.md5(payload).hexdigest()

    download_file("blob.bin", [local_mirror.url], tmp_path / "quiet.bin", checksum, verbose=False)
    assert capsys.readouterr().err == ""
    download_file("blob.bin", [local_mirror.url], tmp_path / "shown.bin", checksum, verbose=True)
    assert "shown.bin" in capsys.readouterr().err  # tqdm draws on stderr, labelled by file


def test_bad_checksum_spec_is_rejected(local_mirror, tmp_path):
    (local_mirror.root / "blob.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="algorithm:hexdigest"):
        download_file("blob.bin", [local_mirror.url], tmp_path / "blob.bin", "nohash")
