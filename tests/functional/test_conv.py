"""conv2d: finite differences, PyTorch, float32 and edge cases."""

import numpy as np
import pytest

from convnp.functional.conv import conv2d_backward, conv2d_forward
from convnp.gradcheck import numerical_gradient, relative_error


def random_conv_config(rng: np.random.Generator) -> dict:
    """A random, valid conv2d configuration covering the grid the issue asks for."""
    groups = int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 6, size=2))
    stride = tuple(int(s) for s in rng.integers(1, 4, size=2))
    padding = tuple(int(p) for p in rng.integers(0, 3, size=2))
    dilation = tuple(int(d) for d in rng.integers(1, 3, size=2))
    min_hw = [dilation[a] * (kernel[a] - 1) + 1 - 2 * padding[a] for a in range(2)]
    height = int(rng.integers(max(min_hw[0], 1), max(min_hw[0], 1) + 7)) | 1  # odd sizes
    width = int(rng.integers(max(min_hw[1], 1), max(min_hw[1], 1) + 7))
    return {
        "batch": int(rng.integers(1, 4)),
        "channels": groups * int(rng.integers(1, 3)),
        "filters": groups * int(rng.integers(1, 3)),
        "hw": (height, width),
        "kernel": kernel,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "bias": bool(rng.integers(0, 2)),
    }


def make_tensors(config: dict, rng: np.random.Generator, dtype=np.float64):
    x = rng.standard_normal((config["batch"], config["channels"], *config["hw"])).astype(dtype)
    weight = rng.standard_normal((config["filters"], config["channels"] // config["groups"], *config["kernel"])).astype(
        dtype
    )
    bias = rng.standard_normal(config["filters"]).astype(dtype) if config["bias"] else None
    return x, weight, bias


def conv_args(config: dict) -> tuple:
    return config["stride"], config["padding"], config["dilation"], config["groups"]


CONFIGS = [random_conv_config(np.random.default_rng(seed)) for seed in range(120)]


@pytest.mark.parametrize("config", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
def test_conv2d_matches_torch(config):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(hash(str(config)) % 2**32)
    x, weight, bias = make_tensors(config, rng)
    out, cache = conv2d_forward(x, weight, bias, *conv_args(config))
    dout = rng.standard_normal(out.shape)
    dx, dweight, dbias = conv2d_backward(dout, cache)

    x_t = torch.tensor(x, requires_grad=True)
    w_t = torch.tensor(weight, requires_grad=True)
    b_t = torch.tensor(bias, requires_grad=True) if bias is not None else None
    out_t = torch.nn.functional.conv2d(x_t, w_t, b_t, *conv_args(config))
    out_t.backward(torch.tensor(dout))

    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(dweight, w_t.grad.numpy(), rtol=1e-8, atol=1e-10)
    if bias is None:
        assert dbias is None
    else:
        np.testing.assert_allclose(dbias, b_t.grad.numpy(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("seed", range(12))
def test_conv2d_finite_differences(seed):
    config = CONFIGS[seed]
    rng = np.random.default_rng(1000 + seed)
    x, weight, bias = make_tensors(config, rng)
    out, cache = conv2d_forward(x, weight, bias, *conv_args(config))
    r = rng.standard_normal(out.shape)
    dx, dweight, dbias = conv2d_backward(r, cache)

    def loss():
        return float(np.sum(conv2d_forward(x, weight, bias, *conv_args(config))[0] * r))

    assert relative_error(dx, numerical_gradient(loss, x)) < 1e-7
    assert relative_error(dweight, numerical_gradient(loss, weight)) < 1e-7
    if bias is not None:
        assert relative_error(dbias, numerical_gradient(loss, bias)) < 1e-7


@pytest.mark.parametrize("padding", ["same", "valid", 1, (2, 0)])
def test_conv2d_string_and_pair_padding(padding):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 7, 6))
    weight = rng.standard_normal((4, 3, 3, 2))  # an even kernel width: "same" pads asymmetrically
    out, _ = conv2d_forward(x, weight, padding=padding, dilation=(1, 2))
    expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(weight), padding=padding, dilation=(1, 2))
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-10)
    if padding == "same":
        assert out.shape[2:] == x.shape[2:]


def test_same_padding_with_stride_gives_ceil_size():
    x = np.ones((1, 1, 7, 8))
    out, _ = conv2d_forward(x, np.ones((1, 1, 3, 3)), stride=2, padding="same")
    assert out.shape == (1, 1, 4, 4)  # ceil(7/2), ceil(8/2)


def test_float32_stays_float32_and_agrees_with_float64():
    rng = np.random.default_rng(3)
    for config in CONFIGS[:20]:
        x, weight, bias = make_tensors(config, rng)
        out64, cache64 = conv2d_forward(x, weight, bias, *conv_args(config))
        dout = rng.standard_normal(out64.shape)
        grads64 = conv2d_backward(dout, cache64)
        as32 = [a.astype(np.float32) if a is not None else None for a in (x, weight, bias)]
        out32, cache32 = conv2d_forward(*as32, *conv_args(config))
        grads32 = conv2d_backward(dout.astype(np.float32), cache32)
        assert out32.dtype == np.float32
        assert relative_error(out32, out64) < 1e-4
        for g32, g64 in zip(grads32, grads64):
            if g64 is None:
                continue
            assert g32.dtype == np.float32
            assert relative_error(g32, g64) < 1e-4


def test_one_by_one_kernel_is_a_channel_matmul():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 5, 5))
    weight = rng.standard_normal((2, 3, 1, 1))
    out, _ = conv2d_forward(x, weight)
    np.testing.assert_allclose(out, np.einsum("fc,nchw->nfhw", weight[:, :, 0, 0], x))


def test_stride_larger_than_kernel_skips_pixels_and_their_gradient_is_zero():
    x = np.arange(36, dtype=np.float64).reshape(1, 1, 6, 6)
    out, cache = conv2d_forward(x, np.ones((1, 1, 1, 1)), stride=3)
    np.testing.assert_array_equal(out[0, 0], [[0, 3], [18, 21]])
    dx, _, _ = conv2d_backward(np.ones_like(out), cache)
    assert dx.sum() == 4 and dx[0, 0, 0, 0] == 1 and dx[0, 0, 1, 1] == 0


def test_output_size_rule_matches_formula():
    x = np.zeros((1, 1, 11, 9))
    out, _ = conv2d_forward(x, np.zeros((1, 1, 3, 2)), stride=(2, 3), padding=(1, 2), dilation=(2, 1))
    # floor((H + 2P - D*(K-1) - 1) / S) + 1
    assert out.shape[2:] == ((11 + 2 - 4 - 1) // 2 + 1, (9 + 4 - 1 - 1) // 3 + 1)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs", "match"),
    [
        ((1, 3, 4, 4), (2, 2, 3, 3), {}, "input channels"),
        ((1, 3, 2, 2), (2, 3, 3, 3), {}, "too small"),
        ((3, 4, 4), (2, 3, 3, 3), {}, "N, C, H, W"),
        ((1, 4, 4, 4), (3, 2, 1, 1), {"groups": 2}, "divisible"),
        ((1, 3, 4, 4), (2, 3, 3, 3), {"stride": 0}, "stride"),
        ((1, 3, 4, 4), (2, 3, 3, 3), {"padding": "full"}, "padding"),
    ],
)
def test_bad_arguments_raise_value_errors_that_name_conv2d(x_shape, w_shape, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        conv2d_forward(np.zeros(x_shape), np.zeros(w_shape), **kwargs)
    assert "conv2d" in str(info.value)


def test_mixed_dtypes_raise_type_error():
    with pytest.raises(TypeError, match="conv2d"):
        conv2d_forward(np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 1, 1)))
