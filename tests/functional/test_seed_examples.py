"""The worked examples of the seed tutorials, and the places where the seeds go wrong.

Seeds (in shared/seeds/):
    000  im2col tutorial: conv/pool/activation layers built on im2col_indices
    001  "CNN from scratch" walk-through: two conv layers trained with explicit loops
    002  lecture notes: forward loops, backprop theory, the 4x4 max-pool example
    003  CS231n exercise write-up: naive conv/pool loops, the 5x5 / pad 1 / stride 2 example
    004  EpyNN documentation of its Convolution layer

The first part turns each worked example into a test with values computed by
hand. The second part puts convnp in the exact situation where a seed is wrong
and asserts the right answer; each test says which seed and what the error is.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from convnp.functional import naive
from convnp.functional.conv import conv2d_backward, conv2d_forward, im2col
from convnp.functional.geometry import output_size, pad_channels_last
from convnp.functional.pooling import max_pool2d_backward, max_pool2d_forward
from convnp.gradcheck import numerical_gradient


def image(values) -> np.ndarray:
    """A (1, 1, H, W) float64 batch from a nested list."""
    return np.asarray(values, dtype=np.float64)[None, None]


def finite_difference_grads(forward, probe, *arrays):
    """Central differences of sum(forward() * probe) w.r.t. each array (perturbed in place)."""

    def loss() -> float:
        return float(np.sum(forward() * probe))

    return [numerical_gradient(loss, array) for array in arrays]


# =========================================================================== worked examples

# --- seed 000: a 4x4 image (0..15), 2x2 filters, padding 1, stride 1 -----------------------

SEED000_X = image(np.arange(16).reshape(4, 4))

# The tutorial's X_col (4 x 25): one column per output position (row-major over the 5x5
# output), one row per filter offset (0,0), (0,1), (1,0), (1,1) of the zero-padded 6x6 image.
SEED000_X_COL = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6, 7, 0, 8, 9, 10, 11, 0, 12, 13, 14, 15],
        [0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6, 7, 0, 8, 9, 10, 11, 0, 12, 13, 14, 15, 0],
        [0, 0, 1, 2, 3, 0, 4, 5, 6, 7, 0, 8, 9, 10, 11, 0, 12, 13, 14, 15, 0, 0, 0, 0, 0],
        [0, 1, 2, 3, 0, 4, 5, 6, 7, 0, 8, 9, 10, 11, 0, 12, 13, 14, 15, 0, 0, 0, 0, 0, 0],
    ],
    dtype=np.float64,
)

# Three 1x2x2 filters (the tutorial's "3 filters"), so W_row is 3 x 4.
SEED000_FILTERS = np.array(
    [
        [[[1, 2], [3, 4]]],
        [[[1, 1], [1, 1]]],
        [[[0, 0], [0, 1]]],
    ],
    dtype=np.float64,
)

# By hand: window (a, b; c, d) -> a + 2b + 3c + 4d, a + b + c + d, and d.
SEED000_OUTPUTS = np.array(
    [
        [
            [0, 4, 11, 18, 9],
            [16, 34, 44, 54, 24],
            [40, 74, 84, 94, 40],
            [64, 114, 124, 134, 56],
            [24, 38, 41, 44, 15],
        ],
        [
            [0, 1, 3, 5, 3],
            [4, 10, 14, 18, 10],
            [12, 26, 30, 34, 18],
            [20, 42, 46, 50, 26],
            [12, 25, 27, 29, 15],
        ],
        [
            [0, 1, 2, 3, 0],
            [4, 5, 6, 7, 0],
            [8, 9, 10, 11, 0],
            [12, 13, 14, 15, 0],
            [0, 0, 0, 0, 0],
        ],
    ],
    dtype=np.float64,
)


def test_seed000_example_has_25_locations():
    # (4 - 2 + 2*1) / 1 + 1 = 5 along each axis.
    assert output_size(4, 2, 1, 2, 1) == 5
    out, _ = conv2d_forward(SEED000_X, SEED000_FILTERS, padding=1)
    assert out.shape == (1, 3, 5, 5)


def test_seed000_example_column_matrix():
    # convnp's im2col keeps one receptive field per row (25 rows of KH*KW*C = 4 entries),
    # the transpose of the tutorial's 4 x 25 layout. With one channel the 4 entries of a
    # row are the kernel offsets in row-major order.
    x_padded = pad_channels_last(SEED000_X.transpose(0, 2, 3, 1), (1, 1, 1, 1))
    x_cols = im2col(x_padded, (2, 2), (1, 1), (1, 1), (5, 5))
    assert x_cols.shape == (25, 4)
    np.testing.assert_array_equal(x_cols.T, SEED000_X_COL)


@pytest.mark.parametrize("implementation", ["fast", "naive"])
def test_seed000_example_outputs(implementation):
    forward = conv2d_forward if implementation == "fast" else naive.conv2d_forward
    bias = np.array([0.5, -1.0, 2.0])
    out, _ = forward(SEED000_X, SEED000_FILTERS, bias, stride=1, padding=1)
    np.testing.assert_array_equal(out[0], SEED000_OUTPUTS + bias[:, None, None])
    # The tutorial's single matrix product: W_row (3 x 4) @ X_col (4 x 25) -> 3 x 25 -> 1x3x5x5.
    weight_rows = SEED000_FILTERS.reshape(3, 4)
    product = (weight_rows @ SEED000_X_COL + bias[:, None]).reshape(1, 3, 5, 5)
    np.testing.assert_array_equal(out, product)


# --- seed 002: the 4x4 max-pool example (2x2 windows, stride 2) ----------------------------

SEED002_X = image([[1, 2, 3, 4], [8, 7, 5, 6], [9, 11, 12, 10], [10, 7, 13, 9]])


@pytest.mark.parametrize("implementation", ["fast", "naive"])
def test_seed002_max_pool_example(implementation):
    forward, backward = (
        (max_pool2d_forward, max_pool2d_backward)
        if implementation == "fast"
        else (naive.max_pool2d_forward, naive.max_pool2d_backward)
    )
    out, cache = forward(SEED002_X, 2, 2)
    np.testing.assert_array_equal(out[0, 0], [[8, 6], [11, 13]])

    # With dout = 1 everywhere the gradient is the tutorial's 0/1 mask g.
    mask = backward(np.ones((1, 1, 2, 2)), cache)
    np.testing.assert_array_equal(mask[0, 0], [[0, 0, 0, 0], [1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]])
    # Any other dout lands on the same four places.
    dx = backward(image([[1.5, -2.0], [3.0, 4.0]]), cache)
    np.testing.assert_array_equal(dx[0, 0], [[0, 0, 0, 0], [1.5, 0, 0, -2.0], [0, 3.0, 0, 0], [0, 0, 4.0, 0]])


# --- seed 003: a 5x5 input, 3x3 filter, padding 1, stride 2 --------------------------------

# The tutorial's expansion of the 3x3 output V, term by term (every cell checked by hand:
# V[m, n] = sum over i, j of w[i, j] * x[2m + i - 1, 2n + j - 1], padding terms dropped).
SEED003_TERMS = {
    (0, 0): "x00*w11 + x01*w12 + x10*w21 + x11*w22",
    (0, 1): "x01*w10 + x02*w11 + x03*w12 + x11*w20 + x12*w21 + x13*w22",
    (0, 2): "x03*w10 + x04*w11 + x13*w20 + x14*w21",
    (1, 0): "x10*w01 + x11*w02 + x20*w11 + x21*w12 + x30*w21 + x31*w22",
    (1, 1): "x11*w00 + x12*w01 + x13*w02 + x21*w10 + x22*w11 + x23*w12 + x31*w20 + x32*w21 + x33*w22",
    (1, 2): "x13*w00 + x14*w01 + x23*w10 + x24*w11 + x33*w20 + x34*w21",
    (2, 0): "x30*w01 + x31*w02 + x40*w11 + x41*w12",
    (2, 1): "x31*w00 + x32*w01 + x33*w02 + x41*w10 + x42*w11 + x43*w12",
    (2, 2): "x33*w00 + x34*w01 + x43*w10 + x44*w11",
}


def evaluate_terms(terms: str, x: np.ndarray, w: np.ndarray) -> float:
    """Evaluate "x01*w10 + ..." for a 2-D x and w."""
    total = 0.0
    for xr, xc, wr, wc in re.findall(r"x(\d)(\d)\*w(\d)(\d)", terms):
        total += x[int(xr), int(xc)] * w[int(wr), int(wc)]
    return total


def test_seed003_example_output_size_is_3x3():
    # (5 - 3 + 2*1) / 2 + 1 = 3
    assert output_size(5, 3, 2, 2, 1) == 3
    out, _ = conv2d_forward(np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3)), stride=2, padding=1)
    assert out.shape == (1, 1, 3, 3)


def test_seed003_example_values_with_a_ones_filter():
    x = image(np.arange(25).reshape(5, 5))
    out, _ = conv2d_forward(x, np.ones((1, 1, 3, 3)), stride=2, padding=1)
    # Sums of the 3x3 windows centred on rows/columns 0, 2, 4 (padding adds nothing).
    np.testing.assert_array_equal(out[0, 0], [[12, 27, 24], [63, 108, 81], [72, 117, 84]])


@pytest.mark.parametrize("implementation", ["fast", "naive"])
def test_seed003_example_matches_the_expansion_term_by_term(implementation):
    forward = conv2d_forward if implementation == "fast" else naive.conv2d_forward
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((5, 5)), rng.standard_normal((3, 3)), 0.75
    out, _ = forward(x[None, None], w[None, None], np.array([b]), stride=2, padding=1)
    expected = np.zeros((3, 3))
    for (m, n), terms in SEED003_TERMS.items():
        expected[m, n] = evaluate_terms(terms, x, w) + b
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-12)


# =========================================================================== seed errors


# --- seed 000 -------------------------------------------------------------------------------


def test_sigmoid_has_the_minus_sign():
    # Seed 000: the sigmoid layer computes 1 / (1 + e^{+x}) -- the exponent's sign is flipped,
    # which gives sigmoid(-x), a decreasing function, while its backward pass still uses
    # s * (1 - s) as if it were sigmoid(x).
    activations = pytest.importorskip("convnp.functional.activations")
    x = np.array([-3.0, 0.0, 2.0])
    out, cache = activations.sigmoid_forward(x)
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-x)), rtol=1e-15)
    assert out[0] < 0.5 < out[2]  # increasing
    dx = activations.sigmoid_backward(np.ones(3), cache)
    numeric = (1 / (1 + np.exp(-(x + 1e-6))) - 1 / (1 + np.exp(-(x - 1e-6)))) / 2e-6
    np.testing.assert_allclose(dx, numeric, rtol=1e-7)


def test_he_initialisation_scales_by_fan_in_not_by_the_number_of_filters():
    # Seed 000: the conv weights are divided by sqrt(n_filter / 2); He scaling depends on the
    # fan-in of a filter, C * KH * KW, not on how many filters the layer has.
    from convnp.nn.init import fans, he

    shape = (16, 4, 5, 5)  # fan_in = 100, number of filters = 16
    assert fans(shape)[0] == 100
    weight = he(shape, np.random.default_rng(0))
    assert abs(weight.std() - math.sqrt(2 / 100)) < 0.1 * math.sqrt(2 / 100)
    assert abs(weight.std() - math.sqrt(2 / 16)) > 0.5 * math.sqrt(2 / 100)


def test_output_size_is_floored_not_rejected():
    # Seed 000 (and 003's asserts): a configuration where (H - F + 2P) / S is not an integer
    # is rejected as "invalid"; the usual rule (PyTorch's) floors it and the last row/column
    # that no window reaches simply gets no gradient.
    x = np.random.default_rng(0).standard_normal((1, 1, 5, 5))
    out, cache = conv2d_forward(x, np.ones((1, 1, 2, 2)), stride=2)
    assert out.shape == (1, 1, 2, 2)  # floor((5 - 2) / 2) + 1
    np.testing.assert_allclose(out[0, 0, 1, 1], x[0, 0, 2:4, 2:4].sum())
    dx, _, _ = conv2d_backward(np.ones_like(out), cache)
    assert np.all(dx[0, 0, 4, :] == 0) and np.all(dx[0, 0, :, 4] == 0)
    assert np.all(dx[0, 0, :4, :4] == 1)


# --- seed 001 -------------------------------------------------------------------------------


def two_conv_layers(x, kernel1, bias1, kernel2, bias2):
    """x -> conv (stride 1) -> conv (stride 2), the architecture of seed 001 in small."""
    hidden, cache1 = conv2d_forward(x, kernel1, bias1, stride=1)
    out, cache2 = conv2d_forward(hidden, kernel2, bias2, stride=2)
    return out, hidden, cache1, cache2


def test_two_stacked_convs_backpropagate_correctly_with_stride_2():
    # Seed 001, three errors met in one network:
    # - the gradient of the second (stride 2) kernel multiplies dL/dout with *contiguous*
    #   slices of the first layer's output; its comment argues the stride need not be
    #   backpropagated, but each output position read the input every 2nd pixel, so the
    #   kernel gradient must sample the input with the same stride;
    # - the output-layer and second-kernel weights are updated *before* they are used to
    #   send the gradient to the layer below, so that gradient belongs to other weights;
    # - bias gradients are computed for both conv layers but the biases are never updated.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 1, 9, 9))
    kernel1, bias1 = rng.standard_normal((3, 1, 4, 4)), rng.standard_normal(3)
    kernel2, bias2 = rng.standard_normal((2, 3, 2, 2)), rng.standard_normal(2)
    out, hidden, cache1, cache2 = two_conv_layers(x, kernel1, bias1, kernel2, bias2)
    assert hidden.shape == (1, 3, 6, 6) and out.shape == (1, 2, 3, 3)

    probe = rng.standard_normal(out.shape)  # loss = sum(out * probe)
    dhidden, dkernel2, dbias2 = conv2d_backward(probe, cache2)
    _, dkernel1, dbias1 = conv2d_backward(dhidden, cache1)

    numeric = finite_difference_grads(
        lambda: two_conv_layers(x, kernel1, bias1, kernel2, bias2)[0],
        probe,
        kernel1,
        bias1,
        kernel2,
        bias2,
    )
    for analytic, expected in zip((dkernel1, dbias1, dkernel2, dbias2), numeric, strict=True):
        np.testing.assert_allclose(analytic, expected, rtol=1e-6, atol=1e-8)

    # The stride-ignoring kernel gradient (contiguous 3x3 slices of the 6x6 hidden map)
    # is a different number: a test like this one catches it.
    contiguous = np.zeros_like(kernel2)
    for p in range(2):
        for q in range(2):
            window = hidden[0, :, p : p + 3, q : q + 3]  # (3, 3, 3)
            contiguous[:, :, p, q] = np.einsum("fij,cij->fc", probe[0], window)
    assert not np.allclose(contiguous, dkernel2)


def test_a_gradient_step_on_the_bias_changes_it_and_lowers_the_loss():
    # Seed 001: dL/d(bias) is computed for both conv layers and then dropped -- the biases
    # stay at their initial zeros for the whole training run.
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 1, 6, 6))
    weight, bias = rng.standard_normal((3, 1, 3, 3)), np.zeros(3)
    target = rng.standard_normal((2, 3, 4, 4)) + 1.0

    def loss_and_grads(bias):
        out, cache = conv2d_forward(x, weight, bias)
        residual = out - target
        return 0.5 * float(np.sum(residual**2)), conv2d_backward(residual, cache)

    loss_before, (_, _, dbias) = loss_and_grads(bias)
    assert np.all(dbias != 0)
    new_bias = bias - 0.01 * dbias
    assert not np.allclose(new_bias, bias)
    assert loss_and_grads(new_bias)[0] < loss_before


def test_conv2d_layer_bias_gets_a_gradient_and_sgd_updates_it():
    # Seed 001 again, at the layer level: Conv2D fills bias.grad and the optimizer moves it.
    pytest.importorskip("convnp.nn.conv")
    optim = pytest.importorskip("convnp.optim")
    from convnp.nn.conv import Conv2D

    layer = Conv2D(2, 3, padding=1)
    layer.build((1, 5, 5), dtype="float64", rng=0)
    x = np.random.default_rng(3).standard_normal((2, 1, 5, 5))
    out = layer.forward(x, training=True)
    dout = np.ones_like(out)
    layer.backward(dout)
    np.testing.assert_allclose(layer.bias.grad, dout.sum(axis=(0, 2, 3)))
    bias_before = layer.bias.data.copy()
    optim.SGD(layer.parameters(), lr=0.1).step()
    np.testing.assert_allclose(layer.bias.data, bias_before - 0.1 * layer.bias.grad)


def test_kernel_gradient_on_a_non_square_output():
    # Seed 001: the first kernel's gradient slices the image as [rows : rows + out_width,
    # cols : cols + out_height] -- height and width swapped, harmless only for square maps.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 1, 7, 10))
    weight, bias = rng.standard_normal((2, 1, 3, 4)), rng.standard_normal(2)
    out, cache = conv2d_forward(x, weight, bias)
    assert out.shape == (1, 2, 5, 7)
    probe = rng.standard_normal(out.shape)
    dx, dweight, _ = conv2d_backward(probe, cache)
    numeric_dx, numeric_dweight = finite_difference_grads(lambda: conv2d_forward(x, weight, bias)[0], probe, x, weight)
    np.testing.assert_allclose(dweight, numeric_dweight, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dx, numeric_dx, rtol=1e-6, atol=1e-8)


def test_cross_entropy_is_stable_and_its_gradient_points_downhill():
    # Seed 001: softmax is exp(x) / sum(exp(x)) with no shift (overflows for logits ~ 1000),
    # and the "loss" derivative is taken as +1/y (the derivative of log y, not of -log y),
    # then *added* to the weights -- two sign flips that cancel, under names that say the
    # opposite of what they hold.
    losses = pytest.importorskip("convnp.functional.losses")
    logits = np.array([[1000.0, 0.0, -1000.0]])
    loss, dlogits = losses.softmax_cross_entropy(logits, np.array([1]))
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    np.testing.assert_allclose(loss, 1000.0, rtol=1e-12)
    # d(loss)/d(logits) = softmax - one_hot: negative on the true class.
    np.testing.assert_allclose(dlogits, [[1.0, -1.0, 0.0]], atol=1e-12)
    loss_after, _ = losses.softmax_cross_entropy(logits - 1.0 * dlogits, np.array([1]))
    assert loss_after < loss


# --- seed 002 -------------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", ["fast", "naive"])
def test_tied_maxima_get_the_gradient_once(implementation):
    # Seed 002 (g = (upsampled output == input)) and seed 003 (x >= max of the window) route
    # the whole gradient to *every* entry equal to the maximum, so a window with k tied
    # maxima passes on k times its gradient. The gradient belongs to one input per window:
    # the first maximum in row-major order.
    forward, backward = (
        (max_pool2d_forward, max_pool2d_backward)
        if implementation == "fast"
        else (naive.max_pool2d_forward, naive.max_pool2d_backward)
    )
    x = image([[7, 7, 1, 2], [7, 7, 2, 2], [0, 3, 5, 4], [3, 1, 5, 5]])
    out, cache = forward(x, 2, 2)
    np.testing.assert_array_equal(out[0, 0], [[7, 2], [3, 5]])
    dx = backward(image([[1.0, 2.0], [3.0, 4.0]]), cache)
    np.testing.assert_array_equal(dx[0, 0], [[1, 0, 0, 2], [0, 0, 0, 0], [0, 3, 4, 0], [0, 0, 0, 0]])
    assert dx.sum() == 10.0  # no gradient created or lost


@pytest.mark.parametrize("implementation", ["fast", "naive"])
def test_max_pool_gradient_is_conserved_with_ties_and_overlapping_windows(implementation):
    # Seeds 002/003 again, where it hurts most: integer images (many ties) and 3x3 windows
    # with stride 1. Every window hands on exactly its own gradient, so the totals match.
    forward, backward = (
        (max_pool2d_forward, max_pool2d_backward)
        if implementation == "fast"
        else (naive.max_pool2d_forward, naive.max_pool2d_backward)
    )
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2, (2, 2, 6, 6)).astype(np.float64)
    out, cache = forward(x, 3, 1)
    dout = rng.standard_normal(out.shape)
    dx = backward(dout, cache)
    np.testing.assert_allclose(dx.sum(axis=(2, 3)), dout.sum(axis=(2, 3)), rtol=1e-12)
    # ... and a window whose maxima are all tied sends its gradient to its top-left entry.
    flat = np.zeros((1, 1, 3, 3))
    _, flat_cache = forward(flat, 3, 1)
    np.testing.assert_array_equal(backward(image([[2.5]]), flat_cache)[0, 0], [[2.5, 0, 0], [0, 0, 0], [0, 0, 0]])


def test_bias_gradient_does_not_depend_on_the_input():
    # Seed 002: its backprop summary writes dL/db = dL/da times an activation, the same
    # form as dL/dW. The bias enters every output with coefficient 1, so dL/db is the plain
    # sum of the upstream gradient, whatever the input is.
    rng = np.random.default_rng(6)
    weight, bias = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    x = rng.standard_normal((2, 2, 5, 5))
    dout = rng.standard_normal((2, 3, 3, 3))
    for scale in (0.0, 1.0, 10.0):
        _, cache = conv2d_forward(scale * x, weight, bias)
        _, _, dbias = conv2d_backward(dout, cache)
        np.testing.assert_allclose(dbias, dout.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_input_gradient_is_a_full_correlation_with_the_flipped_kernel():
    # Seed 002: "dL/da = convolution(W, dL/da_next)" -- yet it also says CNN "convolution"
    # is a correlation without flipping. Taken that way the formula is wrong: dx is the
    # *full* correlation of dout (zero-padded by K-1) with the kernel rotated by 180 degrees
    # and its in/out channels swapped (a transposed convolution).
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 6, 5))
    weight = rng.standard_normal((4, 3, 3, 2))
    out, cache = conv2d_forward(x, weight)
    dout = rng.standard_normal(out.shape)
    dx, _, _ = conv2d_backward(dout, cache)

    rotated = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, F, KH, KW)
    full, _ = conv2d_forward(dout, np.ascontiguousarray(rotated), padding=(2, 1))
    np.testing.assert_allclose(dx, full, rtol=1e-12, atol=1e-12)
    unflipped, _ = conv2d_forward(dout, np.ascontiguousarray(weight.transpose(1, 0, 2, 3)), padding=(2, 1))
    assert not np.allclose(dx, unflipped)


# --- seed 003 -------------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", ["fast", "naive"])
def test_conv_backward_with_padding_2(implementation):
    # Seed 003: conv_backward_naive re-pads the input with a hard-coded 1 (np.pad(..., 1),
    # H + 2) whatever the layer's padding is, so any padding other than 1 breaks dw and dx.
    forward, backward = (
        (conv2d_forward, conv2d_backward) if implementation == "fast" else (naive.conv2d_forward, naive.conv2d_backward)
    )
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 2, 5, 6))
    weight, bias = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    out, cache = forward(x, weight, bias, padding=2)
    assert out.shape == (2, 3, 7, 8)
    probe = rng.standard_normal(out.shape)
    dx, dweight, dbias = backward(probe, cache)
    assert dx.shape == x.shape
    numeric = finite_difference_grads(lambda: forward(x, weight, bias, padding=2)[0], probe, x, weight, bias)
    for analytic, expected in zip((dx, dweight, dbias), numeric, strict=True):
        np.testing.assert_allclose(analytic, expected, rtol=1e-6, atol=1e-8)


def test_seed003_example_backward_terms():
    # Seed 003's worked backward pass for the 5x5 / pad 1 / stride 2 example gets several
    # entries wrong. From the (correct) expansion of V:
    # - x[1,0] is read by V[0,0] (with w[2,1]) and V[1,0] (with w[0,1]); the write-up keeps
    #   one term only and attaches it to the wrong output cell;
    # - for x[1,1] its final line pairs (dL/dV)[0,1] with w[2,2] (its own matrix says w[2,0]);
    # - its matrix for dL/dw[1,0] puts x[1,0], x[2,1], x[1,1] where x[0,1], x[0,3] (none),
    #   x[2,1] belong: w[1,0] meets x[2m, 2n-1];
    # - its general dL/dw formula multiplies w by x (it should be dL/dV times x) and drops
    #   the padding offset.
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal((5, 5)), rng.standard_normal((3, 3))
    dv = rng.standard_normal((3, 3))
    _, cache = conv2d_forward(x[None, None], w[None, None], np.zeros(1), stride=2, padding=1)
    dx, dw, db = conv2d_backward(dv[None, None], cache)
    dx, dw = dx[0, 0], dw[0, 0]

    np.testing.assert_allclose(db, [dv.sum()], rtol=1e-12)
    np.testing.assert_allclose(dx[0, 0], dv[0, 0] * w[1, 1], rtol=1e-12)
    np.testing.assert_allclose(dx[1, 0], dv[0, 0] * w[2, 1] + dv[1, 0] * w[0, 1], rtol=1e-12)
    np.testing.assert_allclose(
        dx[1, 1],
        dv[0, 0] * w[2, 2] + dv[0, 1] * w[2, 0] + dv[1, 0] * w[0, 2] + dv[1, 1] * w[0, 0],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        dw[0, 0],
        dv[1, 1] * x[1, 1] + dv[1, 2] * x[1, 3] + dv[2, 1] * x[3, 1] + dv[2, 2] * x[3, 3],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        dw[1, 0],
        dv[0, 1] * x[0, 1]
        + dv[0, 2] * x[0, 3]
        + dv[1, 1] * x[2, 1]
        + dv[1, 2] * x[2, 3]
        + dv[2, 1] * x[4, 1]
        + dv[2, 2] * x[4, 3],
        rtol=1e-12,
    )
    # Every dx entry from the expansion: dL/dx[a, b] = sum of dV[m, n] * w[i, j] over the
    # terms x[a, b] * w[i, j] of V[m, n].
    expected_dx = np.zeros((5, 5))
    for (m, n), terms in SEED003_TERMS.items():
        for xr, xc, wr, wc in re.findall(r"x(\d)(\d)\*w(\d)(\d)", terms):
            expected_dx[int(xr), int(xc)] += dv[m, n] * w[int(wr), int(wc)]
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("implementation", ["fast", "naive"])
def test_non_square_input_and_kernel(implementation):
    # Seed 003: the naive loops size the output from W and the kernel's height, and bound
    # the row loop of dx by W -- square images and kernels only.
    forward, backward = (
        (conv2d_forward, conv2d_backward) if implementation == "fast" else (naive.conv2d_forward, naive.conv2d_backward)
    )
    rng = np.random.default_rng(10)
    x = rng.standard_normal((1, 2, 5, 8))
    weight, bias = rng.standard_normal((2, 2, 2, 3)), rng.standard_normal(2)
    out, cache = forward(x, weight, bias, stride=2, padding=1)
    assert out.shape == (1, 2, 3, 4)  # floor((5+2-2)/2)+1, floor((8+2-3)/2)+1
    probe = rng.standard_normal(out.shape)
    dx, dweight, _ = backward(probe, cache)
    numeric_dx, numeric_dweight = finite_difference_grads(
        lambda: forward(x, weight, bias, stride=2, padding=1)[0], probe, x, weight
    )
    np.testing.assert_allclose(dx, numeric_dx, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dweight, numeric_dweight, rtol=1e-6, atol=1e-8)


# --- seed 004 (EpyNN) -----------------------------------------------------------------------


def epynn_output_size(height: int, filter_height: int, stride: int) -> int:
    """The rule as the EpyNN page states it: floor((h - fh) / sh) + 1."""
    return math.floor((height - filter_height) / stride) + 1


def test_epynn_output_rule_agrees_without_padding():
    for height in range(1, 13):
        for kernel in range(1, height + 1):
            for stride in range(1, 5):
                expected = epynn_output_size(height, kernel, stride)
                assert output_size(height, kernel, stride, 0, 1) == expected
                # EpyNN's window starts: every h in range(H - fh + 1) with h % sh == 0.
                starts = [h for h in range(height - kernel + 1) if h % stride == 0]
                assert len(starts) == expected
    out, _ = conv2d_forward(np.zeros((1, 1, 11, 8)), np.zeros((1, 1, 4, 3)), stride=(3, 2))
    assert out.shape[2:] == (epynn_output_size(11, 4, 3), epynn_output_size(8, 3, 2))


@pytest.mark.parametrize("implementation", ["fast", "naive"])
def test_padding_enters_the_output_size_and_the_gradient_shape(implementation):
    # Seed 004: the output-size rule has no padding term and is computed from the unpadded
    # input, while the windows slide over the padded one -- with padding p the layer makes
    # floor((h - fh) / sh) + 1 rows and never visits the last 2p padded rows. Its backward
    # pass also returns a gradient shaped like the *padded* input, never cropped.
    forward, backward = (
        (conv2d_forward, conv2d_backward) if implementation == "fast" else (naive.conv2d_forward, naive.conv2d_backward)
    )
    x = np.ones((1, 1, 4, 4))
    out, cache = forward(x, np.ones((1, 1, 3, 3)), padding=1)
    assert epynn_output_size(4, 3, 1) == 2  # what the stated rule gives
    assert out.shape == (1, 1, 4, 4)  # = epynn_output_size(4 + 2*1, 3, 1)
    counts = [[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]]  # 3x3 windows' overlap
    np.testing.assert_array_equal(out[0, 0], counts)
    dx, _, _ = backward(np.ones_like(out), cache)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx[0, 0], counts)
