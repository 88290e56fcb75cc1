"""Named recipes (``convnp train --recipe NAME``) and a smoke run of the Fashion-MNIST residual recipe on digits."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import convnp
from convnp.cli import main
from convnp.cli.data_sources import SPLIT_SEED
from convnp.cli.recipes import NAMED_RECIPES, OPTIMIZER_DEFAULTS, RECIPES, SCHEDULES
from convnp.data import DATASETS, Augment, stratified_split
from convnp.models import MODELS
from tests.cli.helpers import train


def test_named_recipes_are_complete():
    keys = set(RECIPES["digits"]) | {"dataset", "flip_average"}
    for name, recipe in NAMED_RECIPES.items():
        assert keys <= set(recipe) <= keys | {"weight_decay", "ema_decay"}, name
        assert recipe["dataset"] in DATASETS
        assert recipe["model"] in MODELS and recipe["optimizer"] in OPTIMIZER_DEFAULTS
        assert recipe["schedule"] in SCHEDULES
        Augment(**recipe["augmentation"])
        model = MODELS[recipe["model"]](input_shape=DATASETS[recipe["dataset"]].input_shape, **recipe["model_options"])
        assert model.output_shape == (DATASETS[recipe["dataset"]].num_classes,)


@pytest.fixture
def recipe_on_digits(monkeypatch):
    """The Fashion-MNIST residual recipe, every setting kept, on the embedded digits for 10 epochs."""
    recipe = {**NAMED_RECIPES["fashion-mnist-resnet"], "dataset": "digits", "epochs": 10}
    monkeypatch.setitem(NAMED_RECIPES, "fashion-mnist-resnet", recipe)
    return recipe


def test_residual_recipe_smoke_run_on_digits(recipe_on_digits, tmp_path, capsys, digits_test):
    """A short run of the recipe through ``convnp train``: its settings reach fit, and it learns."""
    run = tmp_path / "run"
    assert train(run, "--recipe", "fashion-mnist-resnet", "--no-plots") == 0
    out = capsys.readouterr().out
    assert "flip-averaged" in out
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"] == "fashion-mnist-resnet" and config["dataset"] == "digits"
    assert config["model"] == recipe_on_digits["model"]
    assert config["optimizer"] == "sgd" and config["lr"] == recipe_on_digits["lr"]
    assert config["optimizer_options"] == {
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": recipe_on_digits["weight_decay"],
    }
    assert config["augmentation"] == recipe_on_digits["augmentation"]
    assert config["label_smoothing"] == recipe_on_digits["label_smoothing"] and config["flip_average"] is True
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == 10
    assert history["lr"][0] == pytest.approx(recipe_on_digits["lr"] / 3)  # warm-up from lr / 3
    assert history["loss"][-1] < history["loss"][0]
    model = convnp.load(run / "model.npz")
    result = model.evaluate(*digits_test, flip_average=True)
    printed = float(re.search(r"accuracy ([\d.]+)%", out).group(1))
    assert printed == pytest.approx(result["accuracy"] * 100, abs=0.01)
    assert result["accuracy"] > 0.5  # 10 classes: chance is 0.1


def test_recipe_options_override_and_conflicts(tmp_path, capsys):
    assert main(["train", "--recipe", "no-such-recipe"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    code = train(tmp_path / "a", "--recipe", "fashion-mnist-resnet", "--dataset", "digits")
    assert code == 2
    assert "--recipe fashion-mnist-resnet trains on fashion-mnist" in capsys.readouterr().err


def test_help_lists_the_named_recipes(capsys):
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the epilog
    for name in NAMED_RECIPES:
        assert f"{name} (fashion-mnist)" in text


def test_convnet_recipe_with_held_out_training_images(monkeypatch, tmp_path, capsys):
    """--validation-split with a dataset: validation on held-out training images, the test split unused."""
    recipe = {**NAMED_RECIPES["fashion-mnist-convnet"], "dataset": "digits", "epochs": 3, "batch_size": 32}
    recipe["model_options"] = {"width": 8}
    monkeypatch.setitem(NAMED_RECIPES, "fashion-mnist-convnet", recipe)
    run = tmp_path / "run"
    assert train(run, "--recipe", "fashion-mnist-convnet", "--validation-split", "0.25", "--no-plots") == 0
    out = capsys.readouterr().out
    assert out.startswith("validation accuracy") and "flip-averaged" in out
    config = json.loads((run / "config.json").read_text())
    assert config["validation_split"] == 0.25 and config["augmentation"] == {"max_shift": 2, "flip": True}

    (x, y), _ = convnp.data.load("digits")
    train_part, held_out = stratified_split(y, 0.25, SPLIT_SEED, num_classes=10)
    assert len(held_out) == sum(int(np.floor(np.sum(y == c) * 0.25 + 0.5)) for c in range(10))
    model = convnp.load(run / "model.npz")
    history = json.loads((run / "history.json").read_text())
    last = model.evaluate(x[held_out], y[held_out])
    assert history["val_accuracy"][-1] == pytest.approx(last["accuracy"])  # the held-out images validated
    printed = float(re.search(r"accuracy ([\d.]+)%", out).group(1))
    flipped = model.evaluate(x[held_out], y[held_out], flip_average=True)["accuracy"]
    assert printed == pytest.approx(flipped * 100, abs=0.01)

    # the run continues with the same held-out images
    assert main(["train", "--resume", str(run), "--epochs", "4", "--verbose", "0", "--no-plots"]) == 0
    assert capsys.readouterr().out.startswith("validation accuracy")
    assert len(json.loads((run / "history.json").read_text())["val_accuracy"]) == 4


def test_validation_split_needs_no_images_but_image_options_do(tmp_path, capsys):
    assert train(tmp_path / "a", "--dataset", "digits", "--image-size", "8") == 2
    assert "--image-size only apply to --images" in capsys.readouterr().err
    assert train(tmp_path / "b", "--dataset", "digits", "--validation-split", "0", "--epochs", "1", "--no-plots") == 0
    assert capsys.readouterr().out.startswith("test accuracy")  # 0 holds nothing out: the test split validates
