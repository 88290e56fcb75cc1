"""convnp.plots.plot_explanation: Grad-CAM of the top classes over the image and every conv block's maps, as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from convnp import nn
from convnp.models import mnist_cnn, resnet20
from convnp.plots import plot_explanation
from convnp.plots.explain import class_label

pytest.importorskip("matplotlib")


def png_size(path: Path) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_a_sequential_on_a_grey_image(tmp_path):
    model = mnist_cnn(input_shape=(1, 12, 12), num_classes=4, seed=0)
    model.class_names = ["a", "b", "c", "d"]
    image = np.random.default_rng(0).random((1, 12, 12), dtype=np.float32)
    path = tmp_path / "explain.png"
    assert plot_explanation(model, image, path, top=3) == path
    width, height = png_size(path)
    assert width > 400 and height > 300
    # (H, W) works for a one-channel model; top larger than the number of classes shows them all
    assert png_size(plot_explanation(model, image[0], tmp_path / "hw.png", top=9))[0] > 0


def test_a_graph_resnet_on_a_colour_image(tmp_path):
    model = resnet20(input_shape=(3, 8, 8), num_classes=3, seed=0)
    image = np.random.default_rng(1).random((3, 8, 8), dtype=np.float32)
    width, height = png_size(plot_explanation(model, image, tmp_path / "resnet.png", top=2, max_maps=4))
    assert height > width  # 19 rows of feature maps below the heat maps


def test_a_residual_block_inside_a_sequential(tmp_path):
    model = nn.Sequential([nn.Conv2D(4, 3, padding=1), nn.ReLU(),
                           nn.Residual([nn.Conv2D(4, 3, padding=1), nn.BatchNorm2D()]), nn.ReLU(),
                           nn.GlobalAvgPool2D(), nn.Flatten(), nn.Dense(2), nn.Softmax()],
                          input_shape=(1, 6, 6), seed=0)  # fmt: skip
    image = np.random.default_rng(2).random((1, 6, 6), dtype=np.float32)
    assert png_size(plot_explanation(model, image, tmp_path / "block.png", class_names=["x", "y"]))[0] > 0


def test_class_labels():
    assert class_label(["cat", "dog"], 1) == "1 (dog)"
    assert class_label([str(d) for d in range(10)], 7) == "7"
    assert class_label(None, 3) == "3" and class_label(["a"], 4) == "4"
