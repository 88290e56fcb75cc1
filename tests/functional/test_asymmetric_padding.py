"""Asymmetric padding ((top, bottom), (left, right)) in conv2d: PyTorch (explicit F.pad), naive loops, differences.

PyTorch's convolutions pad both sides equally; an asymmetric one is F.pad by
the four amounts followed by a convolution without padding, which is what
TensorFlow/Keras "same" padding with stride 2 amounts to.
"""

import numpy as np
import pytest

from convnp.functional import naive
from convnp.functional.conv import conv2d_backward, conv2d_forward
from convnp.functional.conv_pool import conv2d_max_pool2d_backward, conv2d_max_pool2d_forward
from convnp.functional.geometry import normalize_padding, padding_argument, padding_config
from convnp.functional.pooling import max_pool2d_backward, max_pool2d_forward
from convnp.gradcheck import numerical_gradient, relative_error


def random_config(rng: np.random.Generator) -> dict:
    groups = int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 5, size=2))
    stride = tuple(int(s) for s in rng.integers(1, 3, size=2))
    dilation = tuple(int(d) for d in rng.integers(1, 3, size=2))
    pads = tuple(int(p) for p in rng.integers(0, 4, size=4))  # (top, bottom, left, right), often beyond the kernel
    spans = [dilation[a] * (kernel[a] - 1) + 1 for a in range(2)]
    hw = tuple(int(rng.integers(max(spans[a] - pads[2 * a] - pads[2 * a + 1], 1), spans[a] + 6)) for a in range(2))
    return {
        "x_shape": (int(rng.integers(1, 3)), groups * int(rng.integers(1, 3)), *hw),
        "filters": groups * int(rng.integers(1, 4)),
        "kernel": kernel,
        "options": {
            "stride": stride,
            "padding": ((pads[0], pads[1]), (pads[2], pads[3])),
            "dilation": dilation,
            "groups": groups,
        },
    }


CONFIGS = [random_config(np.random.default_rng(seed)) for seed in range(60)]


def tensors(config: dict, rng: np.random.Generator):
    x = rng.standard_normal(config["x_shape"])
    groups = config["options"]["groups"]
    weight = rng.standard_normal((config["filters"], config["x_shape"][1] // groups, *config["kernel"]))
    return x, weight, rng.standard_normal(config["filters"])


@pytest.mark.parametrize("index", range(60))
def test_conv2d_matches_torch_on_an_explicitly_padded_input(index):
    torch = pytest.importorskip("torch")
    config = CONFIGS[index]
    rng = np.random.default_rng(index)
    x, weight, bias = tensors(config, rng)
    out, cache = conv2d_forward(x, weight, bias, **config["options"])
    dout = rng.standard_normal(out.shape)
    dx, dweight, dbias = conv2d_backward(dout, cache)
    (top, bottom), (left, right) = config["options"]["padding"]
    x_t, w_t, b_t = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    options = {**config["options"], "padding": 0}
    out_t = torch.nn.functional.conv2d(torch.nn.functional.pad(x_t, (left, right, top, bottom)), w_t, b_t, **options)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dweight, w_t.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dbias, b_t.grad.numpy(), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("index", range(0, 60, 4))
def test_conv2d_matches_the_naive_loops(index):
    config = CONFIGS[index]
    rng = np.random.default_rng(index)
    x, weight, bias = tensors(config, rng)
    out, cache = conv2d_forward(x, weight, bias, **config["options"])
    out_ref, cache_ref = naive.conv2d_forward(x, weight, bias, **config["options"])
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(out, out_ref, rtol=1e-10, atol=1e-12)
    for grad, grad_ref in zip(conv2d_backward(dout, cache), naive.conv2d_backward(dout, cache_ref)):
        np.testing.assert_allclose(grad, grad_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("index", range(4))
def test_conv2d_finite_differences(index):
    config = CONFIGS[index]
    rng = np.random.default_rng(index)
    x, weight, bias = tensors(config, rng)
    out, cache = conv2d_forward(x, weight, bias, **config["options"])
    r = rng.standard_normal(out.shape)
    dx, dweight, _ = conv2d_backward(r, cache)

    def loss() -> float:
        return float(np.sum(conv2d_forward(x, weight, bias, **config["options"])[0] * r))

    assert relative_error(dx, numerical_gradient(loss, x)) < 1e-7
    assert relative_error(dweight, numerical_gradient(loss, weight)) < 1e-7


def test_keras_same_padding_with_stride_two_pads_one_more_at_the_end():
    """TensorFlow's "SAME": a 3x3 kernel at stride 2 over 8 columns pads 0 before and 1 after."""
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8))
    weight = np.random.default_rng(1).standard_normal((3, 2, 3, 3))
    explicit, _ = conv2d_forward(x, weight, stride=2, padding=((0, 1), (0, 1)))
    same, _ = conv2d_forward(x, weight, stride=2, padding="same")
    assert normalize_padding("same", (3, 3), (2, 2), (1, 1), (8, 8)) == (0, 1, 0, 1)
    np.testing.assert_array_equal(explicit, same)


def test_fused_conv_pool_with_asymmetric_padding_equals_the_two_ops():
    rng = np.random.default_rng(3)
    x, weight = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3))
    options = {"stride": 1, "padding": ((1, 0), (2, 1))}
    fused, cache = conv2d_max_pool2d_forward(x, weight, None, **options)
    conv_out, conv_cache = conv2d_forward(x, weight, None, **options)
    pooled, pool_cache = max_pool2d_forward(conv_out, 2)
    np.testing.assert_array_equal(fused, pooled)
    dout = rng.standard_normal(fused.shape)
    separate = conv2d_backward(max_pool2d_backward(dout, pool_cache), conv_cache)
    for grad, expected in zip(conv2d_max_pool2d_backward(dout, cache)[:2], separate[:2]):  # dx, dweight
        np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("padding", "resolved", "argument", "config"),
    [
        (((1, 2), (0, 3)), (1, 2, 0, 3), ((1, 2), (0, 3)), [[1, 2], [0, 3]]),
        ([[1, 2], [0, 3]], (1, 2, 0, 3), ((1, 2), (0, 3)), [[1, 2], [0, 3]]),  # as a JSON config holds it
        ((2, 1), (2, 2, 1, 1), (2, 1), [2, 1]),
        (3, (3, 3, 3, 3), 3, 3),
        ("valid", (0, 0, 0, 0), "valid", "valid"),
    ],
)
def test_padding_forms(padding, resolved, argument, config):
    assert normalize_padding(padding, (3, 3), (1, 1), (1, 1)) == resolved
    assert padding_argument(padding) == argument
    assert padding_config(padding_argument(padding)) == config


@pytest.mark.parametrize(
    ("padding", "error"),
    [
        (((1, -1), (0, 0)), ValueError),
        (((1, 2, 3), (0, 0)), TypeError),
        (((1, 2), (0, 0.5)), TypeError),
        (((1, 2),), TypeError),
        ("full", ValueError),
    ],
)
def test_padding_errors_name_the_owner(padding, error):
    with pytest.raises(error, match="conv2d: padding"):
        conv2d_forward(np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3)), padding=padding)
    with pytest.raises(error, match="Conv2D: padding"):
        padding_argument(padding, "Conv2D")
