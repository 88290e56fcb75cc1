"""fit records the range and mean of its inputs; fit, predict and evaluate warn on inputs far from what fits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import convnp
from convnp import InputWarning, nn
from convnp.training.input_range import INVERTED, OUT_OF_RANGE, SCALED_255, input_stats, mismatch

UNIT = {"min": 0.0, "max": 1.0, "mean": 0.13}  # MNIST-like: dark background, bright strokes


def dark_images(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images in [0, 1] with a dark background (mean about 0.2) and labels 0/1."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, 1, 8, 8)) ** 4).astype(np.float32)
    return x, rng.integers(0, 2, n)


def small_model() -> convnp.Sequential:
    return convnp.Sequential([nn.Conv2D(2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Dense(2)], (1, 8, 8), seed=0)


def fitted(x=None, y=None) -> convnp.Sequential:
    if x is None:
        x, y = dark_images()
    model = small_model()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, seed=0)
    return model


def input_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, InputWarning)]


@pytest.mark.parametrize(
    "seen, expected",
    [
        ({"min": 0.0, "max": 1.0, "mean": 0.12}, None),  # test data like the training data
        ({"min": 0.0, "max": 0.6, "mean": 0.3}, None),  # a faint image
        ({"min": 0.0, "max": 255.0, "mean": 33.0}, SCALED_255),
        ({"min": 3.0, "max": 200.0, "mean": 90.0}, SCALED_255),
        ({"min": 0.0, "max": 1.0, "mean": 0.85}, INVERTED),  # dark ink on white paper
        ({"min": -300.0, "max": 2.0, "mean": 0.0}, OUT_OF_RANGE),
        ({"min": 0.0, "max": 1000.0, "mean": 50.0}, OUT_OF_RANGE),
    ],
)
def test_mismatch_rules(seen, expected):
    assert mismatch(UNIT, seen) == expected


def test_photos_with_a_mean_near_the_middle_are_never_called_inverted():
    cifar_like = {"min": 0.0, "max": 1.0, "mean": 0.47}
    assert mismatch(cifar_like, {"min": 0.0, "max": 1.0, "mean": 0.9}) is None  # a bright photo
    assert mismatch(cifar_like, {"min": 0.0, "max": 1.0, "mean": 0.05}) is None  # a dark one
    assert mismatch({"min": 0.0, "max": 1.0, "mean": 0.31}, {"min": 0.0, "max": 1.0, "mean": 0.69}) == INVERTED


def test_standardised_training_data_warns_only_far_outside_its_range():
    standardised = {"min": -0.42, "max": 2.82, "mean": 0.0}  # (x - 0.13) / 0.31
    assert mismatch(standardised, {"min": -0.42, "max": 2.5, "mean": 0.05}) is None
    assert mismatch(standardised, {"min": 0.0, "max": 1.0, "mean": 0.13}) is None
    assert mismatch(standardised, {"min": 0.0, "max": 255.0, "mean": 33.0}) == OUT_OF_RANGE  # not a [0, 1] model


def test_fit_records_the_range_and_mean_and_the_file_keeps_them(tmp_path):
    x, y = dark_images()
    model = fitted(x, y)
    assert model.input_stats == {"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean(dtype=np.float64))}
    assert convnp.load(model.save(tmp_path / "m.npz")).input_stats == model.input_stats
    as_pixels = fitted(np.round(x * 255).astype(np.uint8), y)  # uint8 is scaled to [0, 1] first
    assert as_pixels.input_stats["max"] <= 1.0


def test_fit_warns_on_float_images_far_outside_the_unit_range():
    x, y = dark_images()
    with pytest.warns(InputWarning, match="look like 0-255 pixel values; divide them by 255") as caught:
        fitted(x * 255, y)
    assert len(input_warnings(caught)) == 1
    with pytest.warns(InputWarning, match=r"scale them to about \[0, 1\]"):
        fitted(x * 255 - 128, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        fitted(x, y)  # [0, 1]
        fitted((x - x.mean()) / x.std(), y)  # standardised: within a few units
        fitted(np.round(x * 255).astype(np.uint8), y)  # uint8 pixels are divided by 255


def test_predict_warns_once_per_call_naming_the_fix():
    model = fitted()
    x, _ = dark_images(200, seed=1)
    with pytest.warns(InputWarning) as caught:
        model.predict(x * 255, batch_size=16)  # 13 batches, one warning
    messages = input_warnings(caught)
    assert len(messages) == 1
    assert messages[0].startswith("predict: the inputs range from 0 to ")
    assert "divide them by 255" in messages[0]
    with pytest.warns(InputWarning, match=r"look inverted .*; use 1 - x"):
        model.predict(1 - x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        model.predict(x)
        small_model().predict(x * 255)  # a model never fitted has no statistics to compare with


def test_evaluate_warns_and_the_warning_is_filterable():
    model = fitted()
    x, y = dark_images(32, seed=2)
    with pytest.warns(InputWarning, match="^evaluate: the inputs .* look inverted"):
        model.evaluate(1 - x, y)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=InputWarning)
        with pytest.raises(InputWarning):
            model.evaluate(1 - x, y)
        warnings.filterwarnings("ignore", category=InputWarning)
        model.evaluate(1 - x, y)


def test_fit_checks_its_validation_data_once_not_every_epoch():
    x, y = dark_images()
    with pytest.warns(InputWarning) as caught:
        small_model().fit(x, y, epochs=3, batch_size=16, verbose=0, validation_data=(1 - x, y))
    messages = input_warnings(caught)
    assert len(messages) == 1 and messages[0].startswith("fit (validation_data): the inputs have mean")


def test_input_stats_of_an_array():
    x = np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)
    assert input_stats(x) == {"min": 0.0, "max": 1.0, "mean": 0.4375}


def test_non_finite_values_are_left_out_of_the_statistics():
    x = np.array([0.0, np.nan, 0.5, np.inf, 1.0], dtype=np.float32)
    assert input_stats(x) == {"min": 0.0, "max": 1.0, "mean": 0.5}
    assert input_stats(np.array([np.nan, -np.inf])) is None
