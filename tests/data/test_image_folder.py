"""``convnp.data.image_folder`` and ``read_image`` on small PNG/JPEG/BMP folders generated in tmp_path."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from convnp import InputWarning
from convnp.data import ImageFileError, image_folder, read_image
from convnp.data.image_folder import AUTO_MAX_SIDE

Image = pytest.importorskip("PIL.Image")


def grey_pixels(value: int, shape=(8, 8), seed: int = 0) -> np.ndarray:
    """A uint8 grey picture around ``value`` (a little noise, so that resizing has something to average)."""
    noise = np.random.default_rng(seed).integers(-8, 9, size=shape)
    return np.clip(value + noise, 0, 255).astype(np.uint8)


def write(path, pixels: np.ndarray, **save_options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **save_options)


@pytest.fixture
def three_classes(tmp_path):
    """dark/ (value 30), light/ (220), mid/ (128): 5 images each, as PNG, BMP and JPEG, 8x8 grey."""
    root = tmp_path / "pictures"
    for name, value in (("mid", 128), ("dark", 30), ("light", 220)):
        for index in range(5):
            suffix = (".png", ".bmp", ".PNG", ".jpg", ".jpeg")[index]
            write(root / name / f"{index}{suffix}", grey_pixels(value, seed=index))
    return root


def test_classes_in_sorted_order_and_labels_that_match_the_pictures(three_classes):
    (x_train, y_train), (x_val, y_val), names = image_folder(three_classes)
    assert names == ["dark", "light", "mid"]
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.shape == (12, 1, 8, 8) and x_val.shape == (
        3,
        1,
        8,
        8,
    )  # grey: one channel; 1 of 5 per class held out
    assert sorted(y_val.tolist()) == [0, 1, 2]  # the split is stratified
    for x, y in ((x_train, y_train), (x_val, y_val)):
        means = x.mean(axis=(1, 2, 3)) * 255
        expected = np.array([30, 220, 128])[y]
        np.testing.assert_allclose(means, expected, atol=6)
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0


def test_pixel_values_are_read_exactly(tmp_path):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    write(tmp_path / "a" / "one.png", pixels)
    write(tmp_path / "b" / "two.png", 255 - pixels)
    (x, y), (x_val, _), _ = image_folder(tmp_path, validation_split=0)
    assert len(x_val) == 0 and x_val.shape[1:] == (1, 8, 8)
    np.testing.assert_array_equal(x[y == 0][0, 0], pixels / np.float32(255))
    np.testing.assert_array_equal(x[y == 1][0, 0], (255 - pixels) / np.float32(255))


def test_the_split_is_seeded_disjoint_and_complete(three_classes):
    first = image_folder(three_classes, validation_split=0.4, seed=1)
    again = image_folder(three_classes, validation_split=0.4, seed=1)
    other = image_folder(three_classes, validation_split=0.4, seed=2)
    np.testing.assert_array_equal(first.train[0], again.train[0])
    np.testing.assert_array_equal(first.validation[1], again.validation[1])
    assert not np.array_equal(first.validation[0], other.validation[0])
    assert np.bincount(first.validation[1]).tolist() == [2, 2, 2]  # round(5 * 0.4) per class
    every = np.concatenate([first.train[0], first.validation[0]]).reshape(15, -1)
    assert len(np.unique(every, axis=0)) == 15  # no image in both splits, none lost


def test_color_modes(tmp_path):
    write(tmp_path / "a" / "grey.png", grey_pixels(50))
    rgb_grey = np.repeat(grey_pixels(200)[..., None], 3, axis=2)  # a grey picture saved as RGB
    write(tmp_path / "b" / "rgb-but-grey.png", rgb_grey)
    (x, _), _, _ = image_folder(tmp_path, validation_split=0)
    assert x.shape == (2, 1, 8, 8)  # every image is grey: one channel
    (x_rgb, _), _, _ = image_folder(tmp_path, color_mode="rgb", validation_split=0)
    assert x_rgb.shape == (2, 3, 8, 8)
    np.testing.assert_array_equal(x_rgb[:, 0], x_rgb[:, 2])

    red = np.zeros((8, 8, 3), dtype=np.uint8)
    red[..., 0] = 255
    write(tmp_path / "b" / "red.png", red)
    (x, y), _, _ = image_folder(tmp_path, validation_split=0)
    assert x.shape == (3, 3, 8, 8)  # one colour image makes the dataset RGB
    (x_grey, _), _, _ = image_folder(tmp_path, color_mode="grayscale", validation_split=0, seed=0)
    assert x_grey.shape == (3, 1, 8, 8)
    # luma of pure red: 0.299 * 255 rounded, as Pillow converts
    assert np.isclose(x_grey[:, 0].reshape(3, -1).mean(axis=1), 76 / 255, atol=1e-6).sum() == 1


def test_a_grey_dataset_reads_each_image_as_predict_does(tmp_path):
    write(tmp_path / "a" / "small.png", grey_pixels(60, shape=(6, 10)))
    write(tmp_path / "a" / "common.png", grey_pixels(90, shape=(12, 12)))
    rgb_grey = np.repeat(grey_pixels(180, shape=(12, 12))[..., None], 3, axis=2)
    rgb_grey[..., 2] = np.clip(rgb_grey[..., 2].astype(int) + 1, 0, 255)  # JPEG-like one-level differences
    write(tmp_path / "b" / "common-rgb.png", rgb_grey)
    write(tmp_path / "b" / "common2.png", grey_pixels(200, shape=(12, 12)))
    (x, y), _, _ = image_folder(tmp_path, validation_split=0, seed=None)
    assert x.shape == (4, 1, 12, 12)  # the most common size
    files = sorted(tmp_path.rglob("*.png"))
    expected = sorted(read_image(file, (12, 12), channels=1).tobytes() for file in files)
    assert sorted(image.tobytes() for image in x) == expected


def test_image_size(tmp_path):
    write(tmp_path / "a" / "wide.png", grey_pixels(10, shape=(300, 400)))
    write(tmp_path / "b" / "wide.jpg", grey_pixels(240, shape=(300, 400)))
    (x, _), _, _ = image_folder(tmp_path, validation_split=0)
    assert x.shape[2:] == (48, AUTO_MAX_SIDE)  # the common size, shrunk to 64 on its long side
    assert image_folder(tmp_path, image_size=16, validation_split=0).train[0].shape[2:] == (16, 16)
    assert image_folder(tmp_path, image_size=(10, 20), validation_split=0).train[0].shape[2:] == (10, 20)


def test_exif_orientation_transparency_and_16_bit(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned by 90 degrees
    write(tmp_path / "a" / "photo.jpg", grey_pixels(100, shape=(8, 16)), exif=exif)
    assert read_image(tmp_path / "a" / "photo.jpg", channels=1).shape == (1, 16, 8)

    drawing = np.zeros((8, 8, 4), dtype=np.uint8)  # transparent black everywhere...
    drawing[2:6, 2:6] = (0, 0, 0, 255)  # ...but an opaque black square
    write(tmp_path / "b" / "drawing.png", drawing)
    image = read_image(tmp_path / "b" / "drawing.png", channels=1)[0]
    assert image[0, 0] == 1.0 and image[3, 3] == 0.0  # laid over white, as a viewer shows it

    levels = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    write(tmp_path / "deep.png", levels)
    np.testing.assert_allclose(read_image(tmp_path / "deep.png", channels=1)[0], levels / 65535, rtol=1e-6)


def test_other_and_broken_files_are_skipped_with_one_warning(three_classes):
    (three_classes / "dark" / "notes.txt").write_text("not a picture")
    (three_classes / "light" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    jpeg = (three_classes / "mid" / "3.jpg").read_bytes()
    (three_classes / "mid" / "truncated.jpg").write_bytes(jpeg[:40])
    (three_classes / "mid" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: ignored silently
    (three_classes / "mid" / ".ipynb_checkpoints").mkdir()
    write(three_classes / "mid" / ".ipynb_checkpoints" / "copy.png", grey_pixels(0))
    write(three_classes / "mid" / "nested" / "deeper.png", grey_pixels(128))  # below a class folder: used
    (three_classes / "README.md").write_text("files directly in the folder belong to no class")
    with pytest.warns(InputWarning) as caught:
        (x_train, y_train), (x_val, y_val), _ = image_folder(three_classes)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "skipped 3 files" in message
    for name in ("dark/notes.txt", "light/broken.png", "mid/truncated.jpg"):
        assert name in message
    assert "DS_Store" not in message and "README" not in message and "copy.png" not in message
    assert len(y_train) + len(y_val) == 16 and np.bincount(np.concatenate([y_train, y_val]))[2] == 6


def test_the_warning_can_be_silenced_or_made_an_error(three_classes):
    (three_classes / "dark" / "notes.txt").write_text("x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=InputWarning)
        image_folder(three_classes)
        warnings.filterwarnings("error", category=InputWarning)
        with pytest.raises(InputWarning, match="notes.txt"):
            image_folder(three_classes)


def test_clear_errors(tmp_path, three_classes):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        image_folder(tmp_path / "absent")
    write(tmp_path / "loose" / "one.png", grey_pixels(0))
    with pytest.raises(NotADirectoryError, match="not a folder"):
        image_folder(tmp_path / "loose" / "one.png")
    with pytest.raises(ValueError, match=r"no class sub-folders \(it holds 1 image files directly\)"):
        image_folder(tmp_path / "loose")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders; put each class in its own"):
        image_folder(tmp_path / "empty")
    write(tmp_path / "single" / "cat" / "1.png", grey_pixels(0))
    with pytest.raises(ValueError, match="one class sub-folder \\('cat'\\); a classifier needs at least two"):
        image_folder(tmp_path / "single")
    (three_classes / "zebra").mkdir()
    (three_classes / "zebra" / "bad.jpg").write_text("not a jpeg")
    with pytest.warns(InputWarning, match="zebra/bad.jpg"), pytest.raises(ValueError, match=r"\['zebra'\]"):
        image_folder(three_classes)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"color_mode": "cmyk"}, ValueError, "color_mode"),
        ({"validation_split": 1.0}, ValueError, r"\[0, 1\)"),
        ({"validation_split": -0.1}, ValueError, r"\[0, 1\)"),
        ({"validation_split": "0.2"}, TypeError, "validation_split"),
        ({"image_size": 0}, ValueError, "positive"),
        ({"image_size": (8, 8, 8)}, TypeError, "pair"),
        ({"image_size": 8.5}, TypeError, "image_size"),
    ],
)
def test_invalid_arguments(three_classes, kwargs, error, match):
    with pytest.raises(error, match=match):
        image_folder(three_classes, **kwargs)


def test_read_image_errors(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageFileError, match="text.png is not an image file Pillow can read"):
        read_image(tmp_path / "text.png")
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "absent.png")


def test_without_pillow_the_message_names_the_extra(three_classes, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(ImportError, match=r"pip install convnp\[images\]"):
        image_folder(three_classes)
