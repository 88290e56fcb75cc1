"""convnp.plots: every function writes a non-empty PNG; the helpers compute the right values."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from convnp import nn, plots
from convnp.models import mnist_cnn
from convnp.training import History

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) read from the IHDR chunk, after checking the PNG signature."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def assert_png(path: Path, written: Path) -> None:
    assert written == path
    width, height = png_size(path)
    assert width > 0 and height > 0


@pytest.fixture
def small_model():
    return mnist_cnn(input_shape=(1, 8, 8), seed=0)


def test_learning_curves_from_history_and_dict(tmp_path):
    history = History()
    for epoch in range(3):
        history.append({"loss": 1.0 / (epoch + 1), "accuracy": 0.5 + 0.1 * epoch,
                        "val_loss": 1.2 / (epoch + 1), "val_accuracy": 0.45 + 0.1 * epoch})  # fmt: skip
    assert_png(tmp_path / "a.png", plots.plot_learning_curves(history, tmp_path / "a.png"))
    no_validation = {"loss": [0.9], "accuracy": [0.6], "val_loss": [None], "val_accuracy": [None]}
    assert_png(tmp_path / "b.png", plots.plot_learning_curves(no_validation, tmp_path / "b.png"))


def test_confusion_matrix(tmp_path):
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 10, size=200)
    y_pred = np.where(rng.random(200) < 0.8, y_true, rng.integers(0, 10, size=200))
    path = tmp_path / "cm.png"
    assert_png(path, plots.plot_confusion_matrix(y_true, y_pred, path))
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]
    assert_png(tmp_path / "named.png", plots.plot_confusion_matrix(y_true, y_pred, tmp_path / "named.png", names))


def test_confusion_counts_values():
    counts = plots.confusion_counts([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], num_classes=4)
    expected = np.array([[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(counts, expected)
    assert plots.confusion_counts([1, 2], [2, 2]).shape == (3, 3)
    with pytest.raises(ValueError, match="y_pred"):
        plots.confusion_counts([0, 1], [0])


def test_filters_grey_and_rgb(tmp_path, small_model):
    assert_png(tmp_path / "f.png", plots.plot_filters(small_model, tmp_path / "f.png"))
    rgb = np.random.default_rng(0).standard_normal((6, 3, 5, 5)).astype(np.float32)
    assert_png(tmp_path / "rgb.png", plots.plot_filters(rgb, tmp_path / "rgb.png"))
    with pytest.raises(ValueError, match="F, C, KH, KW"):
        plots.plot_filters(rgb[0], tmp_path / "bad.png")


def test_filters_need_a_conv_layer(tmp_path):
    dense_only = nn.Sequential([nn.Flatten(), nn.Dense(3)], input_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="Conv2D"):
        plots.plot_filters(dense_only, tmp_path / "x.png")


def test_feature_maps(tmp_path, small_model):
    image = np.random.default_rng(0).random((1, 8, 8), dtype=np.float32)
    path = tmp_path / "maps.png"
    assert_png(path, plots.plot_feature_maps(small_model, image, path, image_title="input (class 3)"))
    # (H, W) works for a one-channel model; an RGB model shows a colour input.
    assert_png(tmp_path / "hw.png", plots.plot_feature_maps(small_model, image[0], tmp_path / "hw.png"))
    rgb_model = nn.Sequential([nn.Conv2D(4, 3, padding=1), nn.BatchNorm2D(), nn.ReLU(), nn.Flatten(), nn.Dense(2)],
                              input_shape=(3, 6, 6), seed=0)  # fmt: skip
    rgb_image = np.random.default_rng(1).random((3, 6, 6), dtype=np.float32)
    assert_png(tmp_path / "rgb.png", plots.plot_feature_maps(rgb_model, rgb_image, tmp_path / "rgb.png"))


def test_first_conv_block(small_model):
    assert plots.first_conv_block(small_model) == [0, 1]  # Conv2D, ReLU; MaxPool2D ends the block
    model = nn.Sequential([nn.Flatten(), nn.Dense(4)], input_shape=(1, 2, 2))
    with pytest.raises(ValueError, match="Conv2D"):
        plots.first_conv_block(model)


def test_plots_create_the_folder(tmp_path):
    path = tmp_path / "new" / "folder" / "cm.png"
    assert_png(path, plots.plot_confusion_matrix([0, 1], [0, 1], path))


def test_missing_matplotlib_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install convnp\[plots\]"):
        plots.plot_confusion_matrix([0], [0], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
