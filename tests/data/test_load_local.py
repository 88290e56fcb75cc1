"""load() from local files: formats, folder layouts, the search order, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from convnp.data import DATASETS, DatasetNotFoundError, load, locate, write_idx


def _assert_matches(loaded, arrays):
    (x_train, y_train), (x_test, y_test) = loaded
    assert x_train.shape == (len(arrays["x_train"]), 1, 28, 28)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    np.testing.assert_array_equal(x_train[:, 0], arrays["x_train"].astype(np.float32) / 255)
    np.testing.assert_array_equal(x_test[:, 0], arrays["x_test"].astype(np.float32) / 255)
    np.testing.assert_array_equal(y_train, arrays["y_train"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_data_dir(tmp_path, gz, make_idx_files):
    arrays = make_idx_files(tmp_path / "files", gz=gz)
    _assert_matches(load("mnist", data_dir=tmp_path / "files", download=False), arrays)


@pytest.mark.parametrize(
    ("name", "subfolder"),
    [
        ("mnist", "mnist"),
        ("mnist", "MNIST/raw"),  # torchvision's layout
        ("fashion-mnist", "fashion-mnist"),
        ("fashion_mnist", "fashion_mnist"),
        ("Fashion-MNIST", "FashionMNIST/raw"),
    ],
)
def test_dataset_subfolders_and_name_aliases(tmp_path, name, subfolder, make_idx_files):
    arrays = make_idx_files(tmp_path / "root" / subfolder)
    _assert_matches(load(name, data_dir=str(tmp_path / "root"), download=False), arrays)


def test_dotted_file_names_as_some_reuploads_spell_them(tmp_path, make_idx_files):
    arrays = make_idx_files(tmp_path / "official", gz=False)
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        dotted = stem.replace("-idx", ".idx")  # train-images.idx3-ubyte
        (tmp_path / "official" / stem).rename(tmp_path / "official" / dotted)
    _assert_matches(load("mnist", data_dir=tmp_path / "official", download=False), arrays)


def test_search_order_data_dir_then_env_then_cache_then_system(
    tmp_path, monkeypatch, isolated_data_env, make_idx_files
):
    in_data_dir = make_idx_files(tmp_path / "given", seed=1)
    in_env = make_idx_files(tmp_path / "env" / "fashion-mnist", seed=2)
    in_cache = make_idx_files(isolated_data_env / "fashion-mnist", seed=3)
    in_system = make_idx_files(tmp_path / "usr-share", seed=4)
    monkeypatch.setenv("CONVNP_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(locate, "SYSTEM_DIRS", {"fashion-mnist": [tmp_path / "usr-share"]})

    name = "fashion-mnist"
    _assert_matches(load(name, data_dir=tmp_path / "given", download=False), in_data_dir)
    _assert_matches(load(name, download=False), in_env)
    monkeypatch.delenv("CONVNP_DATA")
    _assert_matches(load(name, download=False), in_cache)
    for path in (isolated_data_env / "fashion-mnist").iterdir():
        path.unlink()
    _assert_matches(load(name, download=False), in_system)


def test_an_incomplete_folder_is_skipped(tmp_path, monkeypatch, make_idx_files):
    make_idx_files(tmp_path / "partial", seed=1)
    (tmp_path / "partial" / "t10k-labels-idx1-ubyte.gz").unlink()
    complete = make_idx_files(tmp_path / "env", seed=2)
    monkeypatch.setenv("CONVNP_DATA", str(tmp_path / "env"))
    _assert_matches(load("mnist", data_dir=tmp_path / "partial", download=False), complete)


def test_cache_dir_argument_and_xdg_cache_home(tmp_path, monkeypatch, make_idx_files):
    arrays = make_idx_files(tmp_path / "my-cache" / "mnist")
    _assert_matches(load("mnist", cache_dir=tmp_path / "my-cache", download=False), arrays)
    monkeypatch.delenv("CONVNP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    arrays = make_idx_files(tmp_path / "xdg" / "convnp" / "mnist", seed=9)
    _assert_matches(load("mnist", download=False), arrays)


def test_not_found_without_download_names_every_place_and_the_remedy(tmp_path, monkeypatch, isolated_data_env):
    monkeypatch.setenv("CONVNP_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        load("fashion-mnist", data_dir=tmp_path / "given", download=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    places = [
        tmp_path / "given",
        tmp_path / "given" / "fashion-mnist",
        tmp_path / "env",
        tmp_path / "env" / "fashion-mnist",
        isolated_data_env / "fashion-mnist",
    ]
    positions = [message.index(f"  - {place}  (") for place in places]
    assert positions == sorted(positions)  # listed in search order
    for needle in (
        "download=False",
        "train-images-idx3-ubyte.gz",
        "data_dir=FOLDER",
        "CONVNP_DATA=FOLDER",
        "apt-get install dataset-fashion-mnist",
    ):
        assert needle in message


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'") as info:
        load("imagenet")
    for name in DATASETS:
        assert name in str(info.value)


def test_wrong_image_size_is_refused(tmp_path, make_idx_files):
    make_idx_files(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((6, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"shape \(N, 28, 28\)"):
        load("mnist", data_dir=tmp_path, download=False)


def test_label_count_mismatch_is_refused(tmp_path, make_idx_files):
    make_idx_files(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="has 4 images but .* has 3 labels"):
        load("mnist", data_dir=tmp_path, download=False)


def test_out_of_range_labels_are_refused(tmp_path, make_idx_files):
    make_idx_files(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2, 10], dtype=np.uint8))
    with pytest.raises(ValueError, match=r"labels in \[0, 10\], expected 0..9"):
        load("mnist", data_dir=tmp_path, download=False)


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist package is not installed",
)
def test_debian_system_copy_of_fashion_mnist(monkeypatch):
    # The package recompresses the files (their md5s differ from the published
    # ones), which is why local files are validated by structure, not checksum.
    monkeypatch.setattr(locate, "SYSTEM_DIRS", {"fashion-mnist": [DEBIAN_FASHION_MNIST]})
    (x_train, y_train), (x_test, y_test) = load("fashion-mnist", download=False)
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert x_train.dtype == np.float32 and 0.0 == x_train.min() and x_train.max() == 1.0
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10


def test_not_found_names_the_command_line_option_too(tmp_path, isolated_data_env):
    with pytest.raises(DatasetNotFoundError) as info:
        load("mnist", data_dir=tmp_path / "given", download=False)
    message = str(info.value)
    assert "load('mnist', data_dir=FOLDER)" in message
    assert "convnp train --dataset mnist --data-dir FOLDER" in message
