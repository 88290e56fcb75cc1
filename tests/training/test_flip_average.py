"""Test-time flip averaging in evaluate and predict: the mean of an image's and its mirror image's probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from convnp.functional.activations import softmax_forward
from convnp.models import convnet_bn, resnet20
from convnp.training.evaluation import flip_averaged_logits


def _softmax(z):
    return softmax_forward(z)[0]


def test_flip_averaged_logits_are_the_log_of_the_mean_probabilities():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 7, 5)) * 30  # large logits: the shift by the row maximum matters
    out = flip_averaged_logits(a, b)
    np.testing.assert_allclose(_softmax(out), (_softmax(a) + _softmax(b)) / 2, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(np.exp(out).sum(axis=1), 1.0, rtol=1e-12)  # already log-probabilities
    same = flip_averaged_logits(a, a)
    np.testing.assert_allclose(_softmax(same), _softmax(a), rtol=1e-12)
    assert flip_averaged_logits(a.astype(np.float32), b.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("builder", [convnet_bn, resnet20])
def test_predict_and_evaluate_average_over_the_mirror_image(builder):
    rng = np.random.default_rng(1)
    model = builder(input_shape=(1, 12, 12), seed=3, dtype="float64")
    x = rng.random((9, 1, 12, 12))
    y = rng.integers(0, 10, 9)
    plain = model.predict(x)
    mirrored = model.predict(x[..., ::-1].copy())
    averaged = model.predict(x, batch_size=4, flip_average=True)
    np.testing.assert_allclose(averaged, (plain + mirrored) / 2, rtol=1e-10, atol=1e-15)
    assert not np.allclose(np.log(plain), np.log(mirrored))  # the model tells an image from its mirror image

    result = model.evaluate(x, y, batch_size=4, flip_average=True)
    expected_loss = -np.mean(np.log(averaged[np.arange(9), y]))
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-10)
    assert result["accuracy"] == pytest.approx(np.mean(averaged.argmax(axis=1) == y))


def test_symmetric_images_are_unchanged_by_flip_averaging():
    model = convnet_bn(input_shape=(1, 8, 8), seed=0, dtype="float64")
    half = np.random.default_rng(2).random((5, 1, 8, 4))
    x = np.concatenate([half, half[..., ::-1]], axis=3)  # each row reads the same both ways
    np.testing.assert_allclose(model.predict(x, flip_average=True), model.predict(x), rtol=1e-12)


def test_flip_average_needs_cross_entropy():
    model = convnet_bn(input_shape=(1, 8, 8), seed=0)
    x = np.zeros((2, 1, 8, 8), np.float32)
    with pytest.raises(ValueError, match="flip_average.*cross_entropy"):
        model.evaluate(x, np.zeros((2, 10), np.float32), loss="mse", flip_average=True)
