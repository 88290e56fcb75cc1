"""``convnp train --images DIR``: your own pictures, one sub-folder per class; then predict and evaluate on them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import convnp
from convnp.cli import main
from tests.cli.helpers import train

Image = pytest.importorskip("PIL.Image")


def write_bars(root: Path, count: int, seed: int) -> Path:
    """horizontal/ and vertical/: 12x12 grey PNGs of a bright bar on a noisy dark background."""
    rng = np.random.default_rng(seed)
    for name in ("vertical", "horizontal"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            pixels = rng.integers(0, 40, size=(12, 12))
            where = rng.integers(2, 10)
            if name == "vertical":
                pixels[:, where : where + 2] = 230
            else:
                pixels[where : where + 2, :] = 230
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def bars(tmp_path_factory) -> Path:
    return write_bars(tmp_path_factory.mktemp("bars") / "bars", count=10, seed=0)


@pytest.fixture(scope="module")
def images_run(bars, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "bars"
    assert train(run, "--images", str(bars), "--epochs", "3") == 0
    return run


def test_train_on_an_image_folder_writes_a_run_with_the_class_names(images_run, bars):
    config = json.loads((images_run / "config.json").read_text())
    assert config["dataset"] == "images" and config["images"] == str(bars.resolve())
    assert config["image_size"] == [12, 12] and config["color_mode"] == "grayscale"
    assert config["validation_split"] == 0.2
    model = convnp.load(images_run / "model.npz")
    assert model.class_names == ["horizontal", "vertical"]  # sorted
    assert model.input_shape == (1, 12, 12) and model.output_shape == (2,)
    assert model.input_stats is not None and model.input_stats["max"] <= 1.0
    for name in ("confusion_matrix.png", "learning_curves.png", "feature_maps.png", "filters.png"):
        assert (images_run / name).stat().st_size > 0
    history = json.loads((images_run / "history.json").read_text())
    assert len(history["val_accuracy"]) == 3 and history["val_accuracy"][0] is not None


def test_the_summary_line_is_about_the_validation_images(bars, tmp_path, capsys):
    assert train(tmp_path / "run", "--images", str(bars), "--epochs", "1", "--no-plots", "--image-size", "8") == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.match(r"validation accuracy [\d.]+% \(\d+/4\), loss", line), line  # 2 of each class' 10
    assert convnp.load(tmp_path / "run" / "model.npz").input_shape == (1, 8, 8)
    assert train(tmp_path / "all", "--images", str(bars), "--epochs", "1", "--no-plots", "--validation-split", "0") == 0
    assert re.match(r"training accuracy [\d.]+% \(\d+/20\)", capsys.readouterr().out.strip().splitlines()[-1])


def test_predict_and_evaluate_speak_the_class_names(images_run, bars, tmp_path, capsys):
    image = bars / "vertical" / "3.png"
    assert main(["predict", str(images_run), str(image), "--top", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"{re.escape(str(image))}: [01] \((horizontal|vertical)\) \(p=[\d.]+\)  top-2: .*", line)
    assert "(horizontal)" in line and "(vertical)" in line
    model = convnp.load(images_run / "model.npz")
    unseen = write_bars(tmp_path / "unseen", count=3, seed=7)
    assert main(["evaluate", str(images_run), "--images", str(unseen)]) == 0
    out = capsys.readouterr().out
    match = re.search(r"the images in .*unseen \(6 images\): loss ([\d.]+)  accuracy ([\d.]+)", out)
    assert match, out
    x, y = convnp.data.image_folder(unseen, validation_split=0).train
    assert float(match.group(2)) == pytest.approx(model.evaluate(x, y)["accuracy"], abs=1e-4)
    assert main(["evaluate", str(images_run)]) == 2
    assert "pass --images DIR" in capsys.readouterr().err


def test_resume_reads_the_folder_as_the_run_did(images_run, tmp_path, capsys):
    assert main(["train", "--resume", str(images_run), "--images", str(tmp_path)]) == 2
    assert "--images cannot be given with it" in capsys.readouterr().err
    assert main(["train", "--resume", str(images_run), "--epochs", "4", "--verbose", "0", "--no-plots"]) == 0
    assert len(json.loads((images_run / "history.json").read_text())["loss"]) == 4


@pytest.mark.parametrize(
    "options, status, message",
    [
        (["--image-size", "8"], 2, "--image-size only apply to --images"),
        (["--images", "DIR", "--dataset", "digits"], 2, "not allowed with argument"),
        (["--images", "DIR", "--image-size", "8", "8", "8"], 2, "--image-size takes N or H W"),
        (["--images", "DIR", "--validation-split", "1"], 2, r"expected a number in \[0, 1\)"),
    ],
)
def test_image_options_that_do_not_fit(bars, tmp_path, capsys, options, status, message):
    options = [str(bars) if option == "DIR" else option for option in options]
    assert train(tmp_path / "run", "--no-plots", *options) == status
    assert re.search(message, capsys.readouterr().err)


def test_a_folder_with_problems_says_which(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert train(tmp_path / "run", "--images", str(tmp_path / "empty")) == 1
    err = capsys.readouterr().err
    assert "no class sub-folders" in err and len(err.strip().splitlines()) == 1
    folder = write_bars(tmp_path / "bars", count=3, seed=1)
    (folder / "vertical" / "notes.txt").write_text("a note")
    assert train(tmp_path / "run2", "--images", str(folder), "--epochs", "1", "--no-plots") == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        "convnp train: warning: image_folder: skipped 1 files that are not readable images: "
        "vertical/notes.txt (not a .png/.jpg/.jpeg/.bmp file)"
    ]
