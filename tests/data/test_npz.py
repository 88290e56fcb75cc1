"""load_npz: the tutorials' mndata.npz layout, normalised to float32 NCHW."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from convnp.data import load_npz


def _save(path, **arrays):
    np.savez(path, **arrays)
    return path


def _mnist_like(n_train=5, n_test=3):
    rng = np.random.default_rng(0)
    return {
        "trainimages": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "trainlabels": rng.integers(0, 10, size=n_train).astype(np.uint8),
        "testimages": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "testlabels": rng.integers(0, 10, size=n_test).astype(np.int32),
    }


@pytest.mark.parametrize(
    "layout",
    [
        lambda a: a.reshape(len(a), 784),  # (N, 784)
        lambda a: a,  # (N, 28, 28)
        lambda a: a[:, None],  # (N, 1, 28, 28)
    ],
)
def test_layouts_become_float32_nchw_in_unit_range(tmp_path, layout):
    arrays = _mnist_like()
    stored = dict(arrays)
    stored["trainimages"] = layout(arrays["trainimages"])
    stored["testimages"] = layout(arrays["testimages"])
    (x_train, y_train), (x_test, y_test) = load_npz(_save(tmp_path / "mndata.npz", **stored))

    assert x_train.shape == (5, 1, 28, 28) and x_test.shape == (3, 1, 28, 28)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    np.testing.assert_array_equal(x_train[:, 0], arrays["trainimages"].astype(np.float32) / 255)
    np.testing.assert_array_equal(x_test[:, 0], arrays["testimages"].astype(np.float32) / 255)
    np.testing.assert_array_equal(y_train, arrays["trainlabels"])
    np.testing.assert_array_equal(y_test, arrays["testlabels"])


def test_known_pixel_values(tmp_path):
    images = np.array([[0, 51, 255, 255]], dtype=np.uint8)  # (1, 4): a 2x2 image
    path = _save(
        tmp_path / "m.npz",
        trainimages=images,
        trainlabels=np.array([7]),
        testimages=images,
        testlabels=np.array([[3]]),  # a (N, 1) column is accepted
    )
    (x_train, y_train), (_, y_test) = load_npz(path)
    np.testing.assert_allclose(x_train, [[[[0.0, 0.2], [1.0, 1.0]]]], rtol=1e-7)
    assert y_train.tolist() == [7] and y_test.tolist() == [3]


def test_float_images_in_0_255_and_in_0_1(tmp_path):
    arrays = _mnist_like()
    stored = dict(arrays)
    stored["trainimages"] = arrays["trainimages"].astype(np.float64)  # still 0..255
    stored["testimages"] = arrays["testimages"].astype(np.float32) / 255  # already 0..1
    (x_train, _), (x_test, _) = load_npz(_save(tmp_path / "m.npz", **stored))
    np.testing.assert_allclose(x_train[:, 0], arrays["trainimages"] / 255, rtol=1e-6)
    np.testing.assert_allclose(x_test[:, 0], arrays["testimages"] / 255, rtol=1e-6)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32


def test_missing_keys_are_named(tmp_path):
    arrays = _mnist_like()
    del arrays["testlabels"]
    path = _save(tmp_path / "m.npz", **arrays)
    with pytest.raises(ValueError, match=r"missing keys \['testlabels'\]") as info:
        load_npz(path)
    assert str(path) in str(info.value)


def test_object_arrays_are_refused_never_unpickled(tmp_path):
    arrays = _mnist_like()
    arrays["trainlabels"] = np.array([1, "two", None, 4, 5], dtype=object)
    path = tmp_path / "m.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="object arrays would need pickle"):
        load_npz(path)


def test_image_label_count_mismatch(tmp_path):
    arrays = _mnist_like()
    arrays["trainlabels"] = arrays["trainlabels"][:-1]
    with pytest.raises(ValueError, match="5 images but trainlabels has 4 labels"):
        load_npz(_save(tmp_path / "m.npz", **arrays))


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 783), dtype=np.uint8), "square number of pixels"),
        (np.zeros((2,), dtype=np.uint8), "expected"),
        (np.full((2, 4), 300.0), "values in"),
        (np.full((2, 4), -1, dtype=np.int16), "values in"),
    ],
)
def test_bad_images(tmp_path, images, message):
    arrays = _mnist_like()
    arrays["trainimages"] = images
    arrays["trainlabels"] = np.zeros(len(images), dtype=np.int64)
    with pytest.raises(ValueError, match=message):
        load_npz(_save(tmp_path / "m.npz", **arrays))


def test_not_an_npz(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(ValueError) as info:
        load_npz(path)
    assert str(path) in str(info.value)

    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="single .npy array"):
        load_npz(single)


def test_a_header_asking_for_gigabytes_is_refused_before_reading(tmp_path):
    """A crafted entry whose .npy header declares 10^12 images is refused by its size, not by memory."""
    path = _save(tmp_path / "m.npz", **_mnist_like())
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": "|u1", "fortran_order": False, "shape": (10**12, 784)})
    huge = stream.getvalue() + _mnist_like()["trainimages"].tobytes()  # the header lies about the data
    crafted = tmp_path / "crafted.npz"
    with zipfile.ZipFile(crafted, "w") as archive:
        for name, data in {**entries, "trainimages.npy": huge}.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match="damaged") as info:
        load_npz(crafted)
    assert str(crafted) in str(info.value)
