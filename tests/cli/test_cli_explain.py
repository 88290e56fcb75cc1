"""``convnp explain MODEL IMAGE --out FILE.png``: the prediction, and Grad-CAM with the feature maps as a PNG."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from convnp.cli import main
from convnp.models import resnet20
from tests.cli.helpers import png_size

pytest.importorskip("matplotlib")


def test_explain_prints_the_prediction_and_writes_the_png(trained_run, digits_test, tmp_path, capsys):
    np.save(tmp_path / "digit.npy", digits_test[0][2])
    out = tmp_path / "explained.png"
    assert main(["explain", str(trained_run), str(tmp_path / "digit.npy"), "--out", str(out), "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert main(["predict", str(trained_run), str(tmp_path / "digit.npy"), "--top", "2"]) == 0
    assert lines[0] == capsys.readouterr().out.strip()  # the same line as predict
    assert re.fullmatch(rf"wrote {re.escape(str(out))} \(Grad-CAM at ReLU \(layer \d+\), 4x4 maps\)", lines[1])
    width, height = png_size(out)
    assert width > 300 and height > 300


def test_explain_a_png_a_layer_by_name_and_a_graph_model(tmp_path, capsys):
    image_module = pytest.importorskip("PIL.Image")
    model = resnet20(input_shape=(3, 8, 8), num_classes=3, seed=0)
    model.class_names = ["red", "green", "blue"]
    model.save(tmp_path / "resnet.npz")
    colours = (np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8)
    image_module.fromarray(colours).save(tmp_path / "colours.png")
    args = ["explain", str(tmp_path / "resnet.npz"), str(tmp_path / "colours.png"), "--out", str(tmp_path / "r.png")]
    assert main([*args, "--layer", "layer2.0.conv1", "--max-maps", "2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"colours\.png: \d \((red|green|blue)\) \(p=", out)
    assert "Grad-CAM at Conv2D (layer 24) 'layer2.0.conv1', 4x4 maps" in out
    assert png_size(tmp_path / "r.png")[0] > 0


def test_explain_errors_are_one_line(trained_run, digits_test, tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "batch.npy", digits_test[0][:2])
    np.save(tmp_path / "one.npy", digits_test[0][0])
    out = str(tmp_path / "x.png")
    assert main(["explain", str(trained_run), str(tmp_path / "batch.npy"), "--out", out]) == 1
    assert "holds 2 images; explain takes one" in capsys.readouterr().err
    assert main(["explain", str(trained_run), str(tmp_path / "one.npy"), "--out", out, "--layer", "nope"]) == 1
    assert "no layer named 'nope'" in capsys.readouterr().err
    assert main(["explain", str(trained_run), str(tmp_path / "one.npy"), "--out", out, "--layer", "-2"]) == 1
    assert "not maps" in capsys.readouterr().err
    assert main(["explain", str(trained_run), str(tmp_path / "one.npy")]) == 2  # --out is required
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["explain", str(trained_run), str(tmp_path / "one.npy"), "--out", out]) == 1
    err = capsys.readouterr().err
    assert "pip install convnp[plots]" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_explain_warns_about_an_inverted_image(trained_run, digits_test, tmp_path, capsys):
    np.save(tmp_path / "paper.npy", 1 - digits_test[0][2])
    assert main(["explain", str(trained_run), str(tmp_path / "paper.npy"), "--out", str(tmp_path / "p.png")]) == 0
    assert re.search(r"convnp explain: warning: .*look inverted.*; add --invert", capsys.readouterr().err)
