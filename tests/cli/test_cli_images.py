"""Image files as model inputs: PNG/JPEG read, converted and resized for ``convnp predict``."""

from __future__ import annotations

import re

import numpy as np
import pytest

from convnp.cli import main
from convnp.cli.images import load_image


def test_predict_resizes_large_images(trained_run, tmp_path, capsys):
    image_module = pytest.importorskip("PIL.Image")
    canvas = np.zeros((64, 48), dtype=np.uint8)
    canvas[8:56, 20:28] = 255  # a white vertical stroke
    image_module.fromarray(canvas).save(tmp_path / "stroke.png")
    image = load_image(tmp_path / "stroke.png", (1, 8, 8))
    assert image.shape == (1, 8, 8) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image[0, 4, 3:5].mean() > 0.5
    inverted = load_image(tmp_path / "stroke.png", (1, 8, 8), invert=True)
    np.testing.assert_allclose(inverted, 1.0 - image)
    assert main(["predict", str(trained_run / "model.npz"), str(tmp_path / "stroke.png")]) == 0
    assert re.search(r"stroke\.png: \d \(p=", capsys.readouterr().out)
