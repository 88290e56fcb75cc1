"""Dropout layer: modes, seeding, gradient with the mask of the last forward pass."""

import json

import numpy as np
import pytest

from convnp.nn.dropout import Dropout
from tests.helpers import check_grad


def test_identity_in_inference_and_for_p_zero():
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32)
    layer = Dropout(0.5, rng=0)
    out = layer.forward(x)
    np.testing.assert_array_equal(out, x)
    dout = np.ones_like(x)
    np.testing.assert_array_equal(layer.backward(dout), dout)
    np.testing.assert_array_equal(Dropout(0.0).forward(x, training=True), x)


def test_training_drops_and_rescales_and_backward_uses_the_same_mask():
    x = np.ones((200, 300), dtype=np.float32)
    layer = Dropout(0.25, rng=1)
    out = layer.forward(x, training=True)
    assert out.dtype == np.float32
    kept = out != 0
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-7)
    assert abs(kept.mean() - 0.75) < 0.01 and abs(out.mean() - 1.0) < 0.02
    dout = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    dx = layer.backward(dout)
    np.testing.assert_array_equal(dx, dout * out)  # x is ones: out is the mask


def test_same_seed_same_sequence_of_masks():
    x = np.ones((6, 10))
    a, b, c = Dropout(0.5, rng=3), Dropout(0.5, rng=3), Dropout(0.5, rng=4)
    first_a, second_a = a.forward(x, True), a.forward(x, True)
    np.testing.assert_array_equal(first_a, b.forward(x, True))
    np.testing.assert_array_equal(second_a, b.forward(x, True))
    assert not np.array_equal(first_a, second_a)  # the generator advances
    assert not np.array_equal(first_a, c.forward(x, True))


@pytest.mark.parametrize("shape", [(2, 5), (2, 2, 3, 3)])
def test_gradient_with_a_fixed_mask(shape):
    rng = np.random.default_rng(5)
    x, dout = rng.standard_normal(shape), rng.standard_normal(shape)
    layer = Dropout(0.4, rng=9)
    layer.forward(x, training=True)
    dx = layer.backward(dout)
    # a layer with the same seed draws the same first mask
    check_grad(lambda: Dropout(0.4, rng=9).forward(x, training=True), x, dout, dx)


def test_config_and_errors():
    assert Dropout(0.3, rng=7).get_config() == {"p": 0.3, "rng": 7}
    assert Dropout(0.3).get_config() == {"p": 0.3}
    clone = Dropout(**json.loads(json.dumps(Dropout(0.3, rng=7).get_config())))
    x = np.ones((4, 4))
    np.testing.assert_array_equal(clone.forward(x, True), Dropout(0.3, rng=7).forward(x, True))
    for p in (1.0, -0.5, "a"):
        with pytest.raises(ValueError, match=r"Dropout: p must be .*\[0, 1\)"):
            Dropout(p)
    with pytest.raises(RuntimeError, match="Dropout: backward called before forward"):
        Dropout().backward(np.ones((1, 2)))
