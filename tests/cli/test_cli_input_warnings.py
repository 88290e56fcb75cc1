"""The commands warn, once per kind and in their own words, about inputs unlike the model's training data."""

from __future__ import annotations

import re

import numpy as np
import pytest

import convnp
from convnp.cli import main
from convnp.models import MODELS


def warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": warning: " in line]


@pytest.fixture
def pillow():
    return pytest.importorskip("PIL.Image")


def dark_on_white(digits_test, index: int) -> np.ndarray:
    """A test digit as dark ink on white paper, uint8 (8, 8)."""
    return np.round((1 - digits_test[0][index, 0]) * 255).astype(np.uint8)


def test_inverted_images_name_the_files_and_invert_once(trained_run, digits_test, tmp_path, capsys, pillow):
    model = str(trained_run / "model.npz")
    files = []
    for index in (2, 3):
        files.append(str(tmp_path / f"paper{index}.png"))
        pillow.fromarray(dark_on_white(digits_test, index)).save(files[-1])
    assert main(["predict", model, *files]) == 0
    captured = capsys.readouterr()
    lines = warning_lines(captured.err)
    assert len(lines) == 1 and len(captured.out.strip().splitlines()) == 2
    assert lines[0].startswith("convnp predict: warning: the pixels of ")
    assert all(file in lines[0] for file in files)
    assert re.search(r"look inverted .*; add --invert$", lines[0])
    assert main(["predict", model, *files, "--invert"]) == 0
    assert warning_lines(capsys.readouterr().err) == []


def test_the_warning_comes_again_on_every_run(trained_run, digits_test, tmp_path, capsys, pillow):
    pillow.fromarray(dark_on_white(digits_test, 2)).save(tmp_path / "paper.png")
    for _ in range(2):  # one process, two commands: the second is not swallowed as a repeat
        assert main(["predict", str(trained_run / "model.npz"), str(tmp_path / "paper.png")]) == 0
        assert len(warning_lines(capsys.readouterr().err)) == 1


def test_an_already_inverted_image_with_invert_says_to_leave_it_out(trained_run, digits_test, tmp_path, capsys):
    np.save(tmp_path / "white.npy", digits_test[0][2])  # white on black, as trained
    assert main(["predict", str(trained_run / "model.npz"), str(tmp_path / "white.npy"), "--invert"]) == 0
    assert warning_lines(capsys.readouterr().err)[0].endswith("leave out --invert")


def test_floats_in_0_255_say_divide_by_255(trained_run, digits_test, tmp_path, capsys):
    np.save(tmp_path / "pixels.npy", digits_test[0][:4] * 255)  # float32 0-255
    np.save(tmp_path / "uint8.npy", np.round(digits_test[0][:4] * 255).astype(np.uint8))  # divided on the way in
    assert (
        main(["predict", str(trained_run / "model.npz"), str(tmp_path / "pixels.npy"), str(tmp_path / "uint8.npy")])
        == 0
    )
    (line,) = warning_lines(capsys.readouterr().err)
    assert "pixels.npy" in line and "uint8.npy" not in line
    assert "look like 0-255 pixel values; divide them by 255" in line


def test_a_flat_colour_image_is_named(trained_run, tmp_path, capsys, pillow):
    pillow.new("RGB", (100, 37), (255, 0, 0)).save(tmp_path / "red.png")
    assert main(["predict", str(trained_run / "model.npz"), str(tmp_path / "red.png")]) == 0
    captured = capsys.readouterr()
    assert re.search(r"red\.png: \d", captured.out)  # still answered
    assert any("red.png: one flat colour" in line for line in warning_lines(captured.err))


def test_an_ambiguous_array_says_how_it_was_read(trained_run, digits_test, tmp_path, capsys):
    np.save(tmp_path / "three.npy", digits_test[0][:3, 0])  # (3, 8, 8) for a (1, 8, 8) model
    assert main(["predict", str(trained_run / "model.npz"), str(tmp_path / "three.npy")]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 3
    (line,) = warning_lines(captured.err)
    assert "shape (3, 8, 8): read as 3 one-channel images of 8x8" in line


def test_a_channels_last_array_names_the_transpose(tmp_path, capsys):
    MODELS["mnist_cnn"](input_shape=(3, 8, 8), seed=0).save(tmp_path / "rgb.npz")
    np.save(tmp_path / "hwc.npy", np.zeros((8, 8, 3), dtype=np.float32))
    assert main(["predict", str(tmp_path / "rgb.npz"), str(tmp_path / "hwc.npy")]) == 1
    err = capsys.readouterr().err
    assert "(8, 8, 3), channels last" in err and "numpy.transpose(array, (2, 0, 1))" in err


def test_evaluate_warns_about_a_test_split_unlike_the_training_data(trained_run, tmp_path, capsys):
    model = convnp.load(trained_run / "model.npz")
    model.input_stats = {"min": 0.0, "max": 1.0, "mean": 0.9}  # as if trained on inverted digits
    model.save(tmp_path / "inverted.npz")
    assert main(["evaluate", str(tmp_path / "inverted.npz"), "--dataset", "digits"]) == 0
    (line,) = warning_lines(capsys.readouterr().err)
    assert line.startswith("convnp evaluate: warning: the pixels of the digits test split have mean")
