"""benchmarks/validate_recipe.py: recipe variants, and a run of one on held-out digits."""

from __future__ import annotations

import json

import pytest

import convnp
from convnp.cli.data_sources import SPLIT_SEED
from convnp.cli.recipes import NAMED_RECIPES
from tests.helpers import load_benchmark_script


@pytest.fixture(scope="module")
def script():
    return load_benchmark_script("validate_recipe")


def test_variant_changes_nested_settings_and_leaves_the_recipe_alone(script):
    recipe = NAMED_RECIPES["fashion-mnist-convnet"]
    before = json.dumps(recipe, sort_keys=True)
    changed = script.variant(recipe, ["augmentation.erase_p=0.25", "epochs=3", "model=resnet20", "lr=1e-3"])
    assert changed["augmentation"] == {**recipe["augmentation"], "erase_p": 0.25}
    assert (changed["epochs"], changed["model"], changed["lr"]) == (3, "resnet20", 1e-3)
    assert json.dumps(recipe, sort_keys=True) == before
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        script.variant(recipe, ["epochs"])


def run_variant(script, out, *settings: str) -> dict:
    """The script on the recipe with ``settings`` (and 20% held out); returns the run's history."""
    options = [option for setting in settings for option in ("--set", setting)]
    registered = set(NAMED_RECIPES)
    try:
        assert script.main(["fashion-mnist-convnet", *options, "--validation-split", "0.2", "--out", str(out)]) == 0
    finally:  # the script registers its variant for the rest of the process
        for name in set(NAMED_RECIPES) - registered:
            del NAMED_RECIPES[name]
    return json.loads((out / "history.json").read_text())


def test_a_variant_trains_on_held_out_training_images(script, monkeypatch, tmp_path, capsys):
    small = {**NAMED_RECIPES["fashion-mnist-convnet"], "dataset": "digits", "model_options": {"width": 4}}
    monkeypatch.setitem(NAMED_RECIPES, "fashion-mnist-convnet", small)
    run = tmp_path / "run"
    history = run_variant(script, run, "epochs=2", "augmentation.erase_p=0.5", "ema_decay=0.9")
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"] == "fashion-mnist-convnet+epochs=2,augmentation.erase_p=0.5,ema_decay=0.9"
    assert config["epochs"] == 2 and config["augmentation"]["erase_p"] == 0.5 and config["ema_decay"] == 0.9
    assert config["validation_split"] == 0.2
    assert "validation accuracy" in capsys.readouterr().out
    # the model saved is the weight average, the one the last epoch validated
    (x, y), _ = convnp.data.load("digits")
    _, held_out = convnp.data.stratified_split(y, 0.2, SPLIT_SEED, num_classes=10)
    result = convnp.load(run / "model.npz").evaluate(x[held_out], y[held_out])
    assert history["val_loss"][-1] == pytest.approx(result["loss"], rel=1e-6)
    # without the average: the same training, another model
    plain_history = run_variant(script, tmp_path / "plain", "epochs=2", "augmentation.erase_p=0.5")
    assert plain_history["loss"] == history["loss"]
    assert plain_history["val_loss"][-1] != pytest.approx(history["val_loss"][-1], rel=1e-4)
