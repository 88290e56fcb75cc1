"""The training recipes of ``convnp train`` and the learning-rate schedules they name."""

from __future__ import annotations

import pytest

import convnp
from convnp.cli.recipes import OPTIMIZER_DEFAULTS, RECIPES, SCHEDULES, make_scheduler
from convnp.data import DATASETS, Augment
from convnp.models import MODELS
from tests.cli.helpers import train


def test_default_recipe_reaches_97_percent(tmp_path, digits_test):
    """The full default ``convnp train`` (seed 0): about 10-20 s on 2 cores."""
    run = tmp_path / "default"
    assert train(run, "--no-plots") == 0
    x_test, y_test = digits_test
    assert convnp.load(run / "model.npz").evaluate(x_test, y_test)["accuracy"] >= 0.97


def test_recipes_are_complete():
    keys = {"model", "model_options", "epochs", "batch_size", "optimizer", "lr", "schedule", "warmup_epochs",
            "augment", "augmentation", "label_smoothing"}  # fmt: skip
    assert set(RECIPES) == set(DATASETS)
    for name, recipe in RECIPES.items():
        assert set(recipe) == keys, name
        assert recipe["model"] in MODELS
        assert recipe["optimizer"] in OPTIMIZER_DEFAULTS
        assert recipe["schedule"] in SCHEDULES
        Augment(**recipe["augmentation"])
        model = MODELS[recipe["model"]](input_shape=DATASETS[name].input_shape, **recipe["model_options"])
        assert model.output_shape == (DATASETS[name].num_classes,)
    assert RECIPES["cifar10"]["augmentation"].get("flip") is True


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("epochs", [1, 2, 10])
def test_make_scheduler_any_length(schedule, epochs):
    from convnp.optim import Adam

    model = MODELS["mnist_cnn"](input_shape=(1, 8, 8))
    optimizer = Adam(model.parameters(), lr=0.01)
    config = {"schedule": schedule, "epochs": epochs, "lr": 0.01, "warmup_epochs": 2}
    scheduler = make_scheduler(config, optimizer)
    assert (scheduler is None) == (schedule == "none")
    if schedule == "warmup_cosine":
        assert optimizer.lr == pytest.approx(0.01 if epochs == 1 else 0.01 / 3)  # warm-up from lr / 3
    elif schedule != "none":
        assert optimizer.lr == pytest.approx(0.01)
