"""conv_transpose2d: PyTorch, the naive loops, finite differences, the adjoint identity, edge cases and errors."""

import numpy as np
import pytest

from convnp.backend import batched, threads
from convnp.functional import naive
from convnp.functional.conv import conv2d_backward, conv2d_forward
from convnp.functional.conv_transpose import conv_transpose2d_backward, conv_transpose2d_forward
from convnp.functional.geometry import transposed_output_size
from tests.helpers import check_grad


def random_config(rng: np.random.Generator, max_size: int = 6) -> dict:
    """A random valid configuration: stride, padding, output_padding, groups, dilation, bias or not."""
    while True:
        groups = int(rng.integers(1, 4))
        kernel = tuple(int(k) for k in rng.integers(1, 5, size=2))
        stride = tuple(int(s) for s in rng.integers(1, 4, size=2))
        dilation = tuple(int(d) for d in rng.integers(1, 3, size=2))
        padding = tuple(int(p) for p in rng.integers(0, 3, size=2))
        output_padding = tuple(int(rng.integers(0, max(stride[a], dilation[a]))) for a in range(2))
        hw = tuple(int(v) for v in rng.integers(1, max_size, size=2))
        out_hw = [
            transposed_output_size(hw[a], kernel[a], stride[a], padding[a], dilation[a], output_padding[a])
            for a in range(2)
        ]
        if min(out_hw) >= 1:
            return {
                "batch": int(rng.integers(1, 4)),
                "in_channels": groups * int(rng.integers(1, 3)),
                "out_channels": groups * int(rng.integers(1, 3)),
                "hw": hw,
                "kernel": kernel,
                "stride": stride,
                "padding": padding,
                "output_padding": output_padding,
                "groups": groups,
                "dilation": dilation,
                "bias": bool(rng.integers(0, 2)),
            }


def make_tensors(config: dict, rng: np.random.Generator, dtype=np.float64):
    x = rng.standard_normal((config["batch"], config["in_channels"], *config["hw"])).astype(dtype)
    weight_shape = (config["in_channels"], config["out_channels"] // config["groups"], *config["kernel"])
    weight = rng.standard_normal(weight_shape).astype(dtype)
    bias = rng.standard_normal(config["out_channels"]).astype(dtype) if config["bias"] else None
    return x, weight, bias


def op_args(config: dict) -> tuple:
    """The arguments after (x, weight, bias), in PyTorch's order."""
    return config["stride"], config["padding"], config["output_padding"], config["groups"], config["dilation"]


CONFIGS = [random_config(np.random.default_rng(seed)) for seed in range(100)]
IDS = [f"cfg{i}" for i in range(len(CONFIGS))]


def test_the_configurations_cover_the_grid():
    assert {c["groups"] for c in CONFIGS} == {1, 2, 3}
    assert any(max(c["output_padding"]) > 0 for c in CONFIGS)
    assert any(c["output_padding"][0] > c["padding"][0] for c in CONFIGS)  # rows that hold the bias alone
    assert any(c["stride"] == (1, 1) and max(c["output_padding"]) > 0 for c in CONFIGS)  # through dilation
    assert {c["bias"] for c in CONFIGS} == {True, False}
    assert {d for c in CONFIGS for d in c["dilation"]} == {1, 2}


@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=IDS)
def test_matches_torch(index):
    torch = pytest.importorskip("torch")
    config = CONFIGS[index]
    rng = np.random.default_rng(1000 + index)
    x, weight, bias = make_tensors(config, rng)
    out, cache = conv_transpose2d_forward(x, weight, bias, *op_args(config))
    dout = rng.standard_normal(out.shape)
    dx, dweight, dbias = conv_transpose2d_backward(dout, cache)

    x_t = torch.tensor(x, requires_grad=True)
    w_t = torch.tensor(weight, requires_grad=True)
    b_t = torch.tensor(bias, requires_grad=True) if bias is not None else None
    out_t = torch.nn.functional.conv_transpose2d(x_t, w_t, b_t, *op_args(config))
    out_t.backward(torch.tensor(dout))

    tolerance = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(out, out_t.detach().numpy(), **tolerance)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), **tolerance)
    np.testing.assert_allclose(dweight, w_t.grad.numpy(), **tolerance)
    if bias is None:
        assert dbias is None
    else:
        np.testing.assert_allclose(dbias, b_t.grad.numpy(), **tolerance)


@pytest.mark.parametrize("config", CONFIGS[:30], ids=IDS[:30])
def test_matches_the_naive_loops(config):
    rng = np.random.default_rng(100)
    x, weight, bias = make_tensors(config, rng)
    out, cache = conv_transpose2d_forward(x, weight, bias, *op_args(config))
    naive_out, naive_cache = naive.conv_transpose2d_forward(x, weight, bias, *op_args(config))
    np.testing.assert_allclose(out, naive_out, rtol=1e-10, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    for fast, slow in zip(conv_transpose2d_backward(dout, cache), naive.conv_transpose2d_backward(dout, naive_cache)):
        if slow is None:
            assert fast is None
        else:
            np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("config", CONFIGS[:10], ids=IDS[:10])
def test_finite_differences(config):
    rng = np.random.default_rng(200)
    x, weight, bias = make_tensors(config, rng)
    out, cache = conv_transpose2d_forward(x, weight, bias, *op_args(config))
    dout = rng.standard_normal(out.shape)
    dx, dweight, dbias = conv_transpose2d_backward(dout, cache)

    def forward():
        return conv_transpose2d_forward(x, weight, bias, *op_args(config))[0]

    check_grad(forward, x, dout, dx)
    check_grad(forward, weight, dout, dweight)
    if bias is not None:
        check_grad(forward, bias, dout, dbias)


@pytest.mark.parametrize("config", CONFIGS[:20], ids=IDS[:20])
def test_is_the_adjoint_of_conv2d(config):
    """<conv2d(z, w), x> = <z, conv_transpose2d(x, w)>, and conv2d's dx for dout = x is the op's output.

    An output padding at least the stride (allowed through dilation) gives
    conv2d extra output rows; x is extended by zeros to match.
    """
    rng = np.random.default_rng(300)
    x, weight, _ = make_tensors(config, rng)
    out, _ = conv_transpose2d_forward(x, weight, None, *op_args(config))
    stride, padding, _, groups, dilation = op_args(config)
    z = rng.standard_normal(out.shape)
    y, conv_cache = conv2d_forward(z, weight, None, stride, padding, dilation, groups)
    height, width = x.shape[2:]
    assert y.shape[2] >= height and y.shape[3] >= width
    x_extended = np.zeros(y.shape)
    x_extended[:, :, :height, :width] = x
    np.testing.assert_allclose(np.sum(y * x_extended), np.sum(z * out), rtol=1e-10)
    dz, _, _ = conv2d_backward(x_extended, conv_cache)
    np.testing.assert_allclose(dz, out, rtol=1e-10, atol=1e-12)


def test_float32_stays_float32_and_agrees_with_float64():
    rng = np.random.default_rng(3)
    for config in CONFIGS[:15]:
        x, weight, bias = make_tensors(config, rng)
        out64, cache64 = conv_transpose2d_forward(x, weight, bias, *op_args(config))
        dout = rng.standard_normal(out64.shape)
        grads64 = conv_transpose2d_backward(dout, cache64)
        as32 = [a.astype(np.float32) if a is not None else None for a in (x, weight, bias)]
        out32, cache32 = conv_transpose2d_forward(*as32, *op_args(config))
        grads32 = conv_transpose2d_backward(dout.astype(np.float32), cache32)
        assert out32.dtype == np.float32
        np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-4)
        for g32, g64 in zip(grads32, grads64):
            if g64 is not None:
                assert g32.dtype == np.float32
                np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4)


def test_output_size_formula():
    out, _ = conv_transpose2d_forward(
        np.zeros((1, 2, 5, 7)), np.zeros((2, 3, 3, 2)), stride=(2, 3), padding=(1, 0), output_padding=(1, 2)
    )
    # (H - 1)*S - 2*P + D*(K - 1) + output_padding + 1
    assert out.shape == (1, 3, 4 * 2 - 2 + 2 + 1 + 1, 6 * 3 - 0 + 1 + 2 + 1)


def test_stride_two_kernel_two_tiles_the_output():
    """Kernel = stride: every input pixel writes its own 2x2 block (the U-Net up-convolution)."""
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    weight = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    out, _ = conv_transpose2d_forward(x, weight, np.array([0.5]), stride=2)
    expected = np.kron(x[0, 0], weight[0, 0]) + 0.5
    np.testing.assert_array_equal(out[0, 0], expected)


def test_rows_added_beyond_every_kernel_hold_the_bias_alone():
    # 3x3 input, kernel 2, stride 3, padding 0, output_padding 2: H_out = 2*3 + 1 + 2 + 1 = 10, and the
    # kernels reach rows 0-1, 3-4, 6-7; the last 2 rows (and columns) are beyond every kernel.
    rng = np.random.default_rng(5)
    x, weight, bias = rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((2, 3, 2, 2)), rng.standard_normal(3)
    out, cache = conv_transpose2d_forward(x, weight, bias, stride=3, output_padding=2)
    assert out.shape == (2, 3, 10, 10)
    np.testing.assert_array_equal(out[:, :, 8:, :], np.broadcast_to(bias[None, :, None, None], (2, 3, 2, 10)))
    np.testing.assert_array_equal(out[:, :, :, 8:], np.broadcast_to(bias[None, :, None, None], (2, 3, 10, 2)))
    assert np.all(out[:, :, 7, [0, 1, 3, 4, 6, 7]] != bias[None, :, None])  # the last row reached
    dout = rng.standard_normal(out.shape)
    dout_reached = dout.copy()
    dout_reached[:, :, 8:, :] = dout_reached[:, :, :, 8:] = 0
    dx, dweight, dbias = conv_transpose2d_backward(dout, cache)
    dx_reached, dweight_reached, _ = conv_transpose2d_backward(dout_reached, cache)
    np.testing.assert_allclose(dx, dx_reached, rtol=1e-12)  # the unreached rows send nothing back
    np.testing.assert_allclose(dweight, dweight_reached, rtol=1e-12)
    np.testing.assert_allclose(dbias, dout.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_an_output_reached_by_no_input_is_the_bias():
    # One input pixel at row 0 - padding 1 = -1: it lands in the cropped padding.
    x = np.ones((2, 1, 1, 1))
    out, cache = conv_transpose2d_forward(x, np.ones((1, 2, 1, 1)), np.array([1.0, 2.0]), stride=3, padding=1,
                                          output_padding=2)  # fmt: skip
    assert out.shape == (2, 2, 1, 1)
    np.testing.assert_array_equal(out[:, :, 0, 0], [[1.0, 2.0], [1.0, 2.0]])
    dx, dweight, dbias = conv_transpose2d_backward(np.ones(out.shape), cache)
    np.testing.assert_array_equal(dx, np.zeros_like(x))
    np.testing.assert_array_equal(dweight, np.zeros((1, 2, 1, 1)))
    np.testing.assert_array_equal(dbias, [2.0, 2.0])


def test_input_layouts_and_input_grad_false():
    rng = np.random.default_rng(6)
    config = CONFIGS[0]
    x, weight, bias = make_tensors(config, rng)
    out, cache = conv_transpose2d_forward(x, weight, bias, *op_args(config))
    channels_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    strided = np.repeat(x, 2, axis=3)[:, :, :, ::2]
    for other in (channels_last, strided):
        np.testing.assert_array_equal(conv_transpose2d_forward(other, weight, bias, *op_args(config))[0], out)
    dout = rng.standard_normal(out.shape)
    dx, dweight, dbias = conv_transpose2d_backward(dout, cache)
    no_dx, dweight_only, dbias_only = conv_transpose2d_backward(dout, cache, input_grad=False)
    assert no_dx is None
    np.testing.assert_array_equal(dweight_only, dweight)
    if dbias is not None:
        np.testing.assert_array_equal(dbias_only, dbias)


@pytest.mark.parametrize("config", CONFIGS[:12], ids=IDS[:12])
def test_slices_and_chunks_give_the_one_piece_result(config, monkeypatch):
    """Split over 3 cores and into one-image chunks: the same values, summed in a fixed order."""
    rng = np.random.default_rng(7)
    config = {**config, "batch": 7}
    x, weight, bias = make_tensors(config, rng)
    dout = None
    saved = threads.get_num_threads()
    try:
        threads.set_num_threads(1)
        out, cache = conv_transpose2d_forward(x, weight, bias, *op_args(config))
        dout = rng.standard_normal(out.shape)
        whole = (out, *conv_transpose2d_backward(dout, cache))
        threads.set_num_threads(3)
        monkeypatch.setattr(threads, "MIN_ELEMENTS", 0)
        monkeypatch.setattr(batched, "CHUNK_BYTES", 1)
        out, cache = conv_transpose2d_forward(x, weight, bias, *op_args(config))
        split = (out, *conv_transpose2d_backward(dout, cache))
    finally:
        threads.set_num_threads(saved)
    for a, b in zip(whole, split):
        if a is None:
            assert b is None
        else:
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs", "match"),
    [
        ((3, 4, 4), (3, 2, 3, 3), {}, "N, C_in, H, W"),
        ((1, 3, 4, 4), (3, 2, 3), {}, "C_in, C_out/groups, KH, KW"),
        ((1, 3, 4, 4), (2, 2, 3, 3), {}, "input channels"),
        ((1, 3, 4, 4), (3, 2, 3, 3), {"groups": 2}, "divisible by groups"),
        ((1, 3, 4, 4), (3, 2, 3, 3), {"groups": 0}, "groups"),
        ((1, 3, 4, 4), (3, 2, 3, 3), {"stride": 0}, "stride"),
        ((1, 3, 4, 4), (3, 2, 3, 3), {"padding": -1}, "padding"),
        ((1, 3, 4, 4), (3, 2, 3, 3), {"output_padding": 1}, "output_padding .* smaller than either stride"),
        ((1, 3, 4, 4), (3, 2, 3, 3), {"stride": 2, "output_padding": (0, 2)}, "output_padding"),
        ((1, 3, 4, 4), (3, 2, 3, 3), {"dilation": 2, "output_padding": 2}, "output_padding"),
        ((1, 3, 1, 1), (3, 2, 1, 1), {"padding": 1}, "output size would be"),
    ],
)
def test_bad_arguments_raise_value_errors_that_name_the_op(x_shape, w_shape, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        conv_transpose2d_forward(np.zeros(x_shape), np.zeros(w_shape), **kwargs)
    assert "conv_transpose2d" in str(info.value)


def test_type_errors():
    with pytest.raises(TypeError, match="conv_transpose2d"):
        conv_transpose2d_forward(np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 1, 1)))
    with pytest.raises(TypeError, match="conv_transpose2d: padding"):
        conv_transpose2d_forward(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 1, 1)), padding="same")
    with pytest.raises(ValueError, match="bias"):
        conv_transpose2d_forward(np.zeros((1, 2, 3, 3)), np.zeros((2, 3, 1, 1)), bias=np.zeros(2))


def test_backward_rejects_a_dout_of_the_wrong_shape():
    out, cache = conv_transpose2d_forward(np.zeros((1, 1, 3, 3)), np.zeros((1, 2, 2, 2)), stride=2)
    with pytest.raises(ValueError, match=r"conv_transpose2d_backward: expected dout of shape \(1, 2, 6, 6\)"):
        conv_transpose2d_backward(np.zeros((1, 2, 6, 5)), cache)
