"""Inverted dropout: identity modes, expectation, seeding, gradients with a fixed mask."""

import numpy as np
import pytest

from convnp.functional.dropout import dropout_backward, dropout_forward
from tests.helpers import check_grad


def test_p_zero_and_inference_are_the_identity():
    x = np.random.default_rng(0).standard_normal((3, 4))
    dout = np.ones_like(x) * 2
    for p, training in ((0.0, True), (0.5, False), (0.9, False)):
        out, cache = dropout_forward(x, p, training, rng=1)
        np.testing.assert_array_equal(out, x)
        np.testing.assert_array_equal(dropout_backward(dout, cache), dout)


def test_inference_draws_no_random_numbers():
    rng = np.random.default_rng(5)
    dropout_forward(np.ones((4, 4)), 0.5, training=False, rng=rng)
    assert rng.random() == np.random.default_rng(5).random()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_expectation_is_preserved(p):
    x = np.ones((400, 500))
    out, mask = dropout_forward(x, p, training=True, rng=42)
    kept = out != 0
    # survivors are scaled by exactly 1 / (1 - p); the rest are 0
    np.testing.assert_allclose(out[kept], 1 / (1 - p), rtol=1e-15)
    assert abs(1 - kept.mean() - p) < 0.005  # 200k Bernoulli draws: std ~0.001
    assert abs(out.mean() - 1.0) < 0.02
    np.testing.assert_array_equal(out, x * mask)


def test_same_seed_same_mask_and_a_generator_advances():
    x = np.ones((8, 16))
    a, _ = dropout_forward(x, 0.5, True, rng=7)
    b, _ = dropout_forward(x, 0.5, True, rng=7)
    c, _ = dropout_forward(x, 0.5, True, rng=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    generator = np.random.default_rng(7)
    first, _ = dropout_forward(x, 0.5, True, rng=generator)
    second, _ = dropout_forward(x, 0.5, True, rng=generator)
    np.testing.assert_array_equal(first, a)  # a Generator and its seed agree
    assert not np.array_equal(first, second)


def test_one_seed_one_mask_across_dtypes():
    x = np.ones((5, 6))
    out64, _ = dropout_forward(x, 0.3, True, rng=3)
    out32, _ = dropout_forward(x.astype(np.float32), 0.3, True, rng=3)
    assert out32.dtype == np.float32
    np.testing.assert_array_equal(out32 != 0, out64 != 0)
    np.testing.assert_allclose(out32, out64, rtol=1e-7)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 3, 4, 4)])
@pytest.mark.parametrize("p", [0.2, 0.6])
def test_gradient_with_a_fixed_mask(shape, p):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape)
    dout = rng.standard_normal(shape)
    _, cache = dropout_forward(x, p, True, rng=11)
    dx = dropout_backward(dout, cache)
    # the same seed on every call fixes the mask, so the op is linear in x
    check_grad(lambda: dropout_forward(x, p, True, rng=11)[0], x, dout, dx)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, True, "0.5", None])
def test_invalid_p_raises(p):
    with pytest.raises(ValueError, match=r"dropout_forward: p must be .*\[0, 1\)"):
        dropout_forward(np.ones(3), p, True, rng=0)


def test_other_bad_inputs():
    with pytest.raises(TypeError, match="dropout_forward.*floating"):
        dropout_forward(np.arange(4), 0.5, True, rng=0)
    _, cache = dropout_forward(np.ones((2, 3)), 0.5, True, rng=0)
    with pytest.raises(ValueError, match="dropout_backward.*dout"):
        dropout_backward(np.ones((2, 1)), cache)


def test_a_mask_drawn_beforehand_replaces_the_draw():
    from convnp.functional.dropout import draw_keep

    x = np.random.default_rng(0).standard_normal((6, 3, 4, 5))
    keep = draw_keep(x.shape, 0.4, rng=7)
    out, mask = dropout_forward(x, 0.4, True, rng=None, keep=keep)
    expected, expected_mask = dropout_forward(x, 0.4, True, rng=7)  # the same draw
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(mask, expected_mask)
    # A shard takes its rows of the whole batch's draw.
    part, _ = dropout_forward(x[2:5], 0.4, True, keep=keep[2:5])
    np.testing.assert_array_equal(part, expected[2:5])
    with pytest.raises(ValueError, match="dropout_forward: keep must be a bool array"):
        dropout_forward(x, 0.4, True, keep=keep[:2])
    with pytest.raises(ValueError, match="dropout_forward: keep must be a bool array"):
        dropout_forward(x, 0.4, True, keep=keep.astype(np.float64))
