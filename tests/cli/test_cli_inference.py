"""``convnp evaluate`` and ``convnp predict``."""

from __future__ import annotations

import re

import numpy as np
import pytest

import convnp
from convnp.cli import main
from convnp.models import MODELS


def test_evaluate_matches_sequential_evaluate(trained_run, digits_test, capsys):
    assert main(["evaluate", str(trained_run / "model.npz"), "--dataset", "digits"]) == 0
    out = capsys.readouterr().out
    match = re.search(r"loss ([\d.]+)\s+accuracy ([\d.]+) \((\d+)/(\d+)\)", out)
    assert match, out
    expected = convnp.load(trained_run / "model.npz").evaluate(*digits_test)
    assert float(match.group(1)) == pytest.approx(expected["loss"], abs=1e-4)
    assert float(match.group(2)) == pytest.approx(expected["accuracy"], abs=1e-4)
    assert int(match.group(3)) == round(expected["accuracy"] * 360) and match.group(4) == "360"


def test_evaluate_flip_average(trained_run, digits_test, capsys):
    path = str(trained_run / "model.npz")
    assert main(["evaluate", path, "--dataset", "digits", "--flip-average"]) == 0
    out = capsys.readouterr().out
    assert "flip-averaged" in out
    match = re.search(r"loss ([\d.]+)\s+accuracy ([\d.]+)", out)
    expected = convnp.load(path).evaluate(*digits_test, flip_average=True)
    assert float(match.group(1)) == pytest.approx(expected["loss"], abs=1e-4)
    assert float(match.group(2)) == pytest.approx(expected["accuracy"], abs=1e-4)
    assert expected["loss"] != pytest.approx(convnp.load(path).evaluate(*digits_test)["loss"], abs=1e-4)


def test_evaluate_uses_the_recorded_dataset(trained_run, capsys):
    assert main(["evaluate", str(trained_run / "model.npz")]) == 0
    assert "digits test split" in capsys.readouterr().out


def test_evaluate_wrong_input_shape(trained_run, tmp_path, capsys):
    model = MODELS["mnist_cnn"]()  # 28x28 inputs
    model.save(tmp_path / "m28.npz")
    assert main(["evaluate", str(tmp_path / "m28.npz"), "--dataset", "digits"]) == 1
    assert "(1, 28, 28)" in capsys.readouterr().err


def test_predict_npy_single_and_batch(trained_run, digits_test, tmp_path, capsys):
    x_test, _ = digits_test
    np.save(tmp_path / "one.npy", x_test[0])  # (1, 8, 8)
    np.save(tmp_path / "hw.npy", x_test[1, 0])  # (8, 8)
    np.save(tmp_path / "batch.npy", x_test[:3])  # (3, 1, 8, 8)
    files = [str(tmp_path / name) for name in ("one.npy", "hw.npy", "batch.npy")]
    assert main(["predict", str(trained_run / "model.npz"), *files]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = convnp.load(trained_run / "model.npz").predict(np.concatenate([x_test[:2], x_test[:3]]))
    assert len(lines) == 5
    assert lines[0].startswith(files[0] + ": ") and lines[2].startswith(files[2] + "[0]: ")
    for line, probs in zip(lines, expected):
        match = re.search(r": (\d+) \(p=([\d.]+)\)$", line)
        assert match, line
        assert int(match.group(1)) == probs.argmax()
        assert float(match.group(2)) == pytest.approx(probs.max(), abs=1e-3)


def test_predict_png_with_top3(trained_run, digits_test, tmp_path, capsys):
    image_module = pytest.importorskip("PIL.Image")
    x_test, _ = digits_test
    pixels = np.round(x_test[2, 0] * 255).astype(np.uint8)  # (8, 8), white on black
    image_module.fromarray(pixels).convert("RGB").save(tmp_path / "digit.png")  # RGB: converted to grey
    assert main(["predict", str(trained_run / "model.npz"), str(tmp_path / "digit.png"), "--top", "3"]) == 0
    line = capsys.readouterr().out.strip()
    expected = convnp.load(trained_run / "model.npz").predict(pixels[None, None] / np.float32(255))[0]
    top3 = np.argsort(-expected)[:3]
    match = re.fullmatch(r".*digit\.png: (\d+) \(p=[\d.]+\)  top-3: (\d+) [\d.]+, (\d+) [\d.]+, (\d+) [\d.]+", line)
    assert match, line
    assert int(match.group(1)) == top3[0]
    assert [int(match.group(i)) for i in (2, 3, 4)] == list(top3)


def test_predict_bad_inputs(trained_run, tmp_path, capsys):
    model = str(trained_run / "model.npz")
    np.save(tmp_path / "wrong.npy", np.zeros((5, 5), dtype=np.float32))
    assert main(["predict", model, str(tmp_path / "wrong.npy")]) == 1
    assert "(5, 5)" in capsys.readouterr().err
    (tmp_path / "text.png").write_text("not an image")
    assert main(["predict", model, str(tmp_path / "text.png")]) == 1
    assert "text.png" in capsys.readouterr().err
    assert main(["predict", model, str(tmp_path / "absent.png")]) == 1


def test_predict_prints_the_class_names_the_model_keeps(digits_test, tmp_path, capsys):
    x_test, _ = digits_test
    model = MODELS["mnist_cnn"](input_shape=(1, 8, 8), num_classes=3, seed=0)
    model.class_names = ["circle", "square", "star"]
    model.save(tmp_path / "shapes.npz")
    np.save(tmp_path / "one.npy", x_test[0])
    assert main(["predict", str(tmp_path / "shapes.npz"), str(tmp_path / "one.npy"), "--top", "3"]) == 0
    line = capsys.readouterr().out.strip()
    expected = model.predict(x_test[:1])[0]
    best = int(expected.argmax())
    assert line.startswith(f"{tmp_path / 'one.npy'}: {best} ({model.class_names[best]}) (p=")
    assert all(f"({name})" in line for name in model.class_names)


def test_predict_reads_the_class_names_older_run_files_kept_in_extra(digits_test, tmp_path, capsys):
    from convnp.serialization import save

    model = MODELS["mnist_cnn"](input_shape=(1, 8, 8), num_classes=2, seed=0)
    save(model, tmp_path / "old.npz", extra={"dataset": "custom", "class_names": ["no", "yes"]})
    np.save(tmp_path / "one.npy", digits_test[0][0])
    assert main(["predict", str(tmp_path / "old.npz"), str(tmp_path / "one.npy")]) == 0
    assert re.search(r": \d \((no|yes)\) \(p=", capsys.readouterr().out)
