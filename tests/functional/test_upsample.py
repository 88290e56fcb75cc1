"""upsample2d (nearest, bilinear): PyTorch, the naive loops, finite differences, worked values and errors."""

import numpy as np
import pytest

from convnp.functional import naive
from convnp.functional.upsample import upsample2d_backward, upsample2d_forward
from tests.helpers import check_grad


def random_case(seed: int) -> tuple[tuple[int, ...], tuple[int, int], str]:
    """(x shape, scale factors, mode): sizes from 1 (all edge) up, scales 1-4 per axis."""
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4)), *(int(v) for v in rng.integers(1, 9, size=2)))
    scale = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    return shape, scale, ("nearest", "bilinear")[seed % 2]


CASES = [random_case(seed) for seed in range(80)]
IDS = [f"{mode}-{shape[2]}x{shape[3]}-by{scale[0]}x{scale[1]}" for shape, scale, mode in CASES]


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_matches_torch(index):
    torch = pytest.importorskip("torch")
    shape, scale, mode = CASES[index]
    rng = np.random.default_rng(index)
    x = rng.standard_normal(shape)
    out, cache = upsample2d_forward(x, scale, mode)
    dout = rng.standard_normal(out.shape)
    dx = upsample2d_backward(dout, cache)

    x_t = torch.tensor(x, requires_grad=True)
    options = {"align_corners": False} if mode == "bilinear" else {}
    out_t = torch.nn.functional.interpolate(x_t, scale_factor=scale, mode=mode, **options)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("index", range(24), ids=IDS[:24])
def test_matches_the_naive_loops(index):
    shape, scale, mode = CASES[index]
    rng = np.random.default_rng(100 + index)
    x = rng.standard_normal(shape)
    out, cache = upsample2d_forward(x, scale, mode)
    naive_out, naive_cache = naive.upsample2d_forward(x, scale, mode)
    np.testing.assert_allclose(out, naive_out, rtol=1e-10, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(
        upsample2d_backward(dout, cache), naive.upsample2d_backward(dout, naive_cache), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("scale", [2, 3, (1, 4), (3, 2)])
def test_finite_differences(mode, scale):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 2, 4, 3))
    out, cache = upsample2d_forward(x, scale, mode)
    dout = rng.standard_normal(out.shape)
    check_grad(lambda: upsample2d_forward(x, scale, mode)[0], x, dout, upsample2d_backward(dout, cache))


def test_nearest_copies_each_pixel_into_its_block_and_sums_the_block_back():
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    out, cache = upsample2d_forward(x, (2, 3))
    expected = np.array([[1, 1, 1, 2, 2, 2], [1, 1, 1, 2, 2, 2], [3, 3, 3, 4, 4, 4], [3, 3, 3, 4, 4, 4]])
    np.testing.assert_array_equal(out[0, 0], expected)
    dout = np.arange(24.0).reshape(1, 1, 4, 6)
    # block (0, 0) holds 0 1 2 / 6 7 8, block (0, 1) holds 3 4 5 / 9 10 11, ...
    np.testing.assert_array_equal(upsample2d_backward(dout, cache)[0, 0], [[24, 42], [96, 114]])


def test_bilinear_weights_by_hand():
    """Scale 2 along a row [a, b]: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (its right tap clamped)."""
    a, b = 2.0, 6.0
    out, cache = upsample2d_forward(np.array([[[[a, b]]]]), (1, 2), "bilinear")
    np.testing.assert_allclose(out[0, 0, 0], [a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b], rtol=1e-15)
    dx = upsample2d_backward(np.array([[[[1.0, 10.0, 100.0, 1000.0]]]]), cache)
    np.testing.assert_allclose(dx[0, 0, 0], [1 + 7.5 + 25, 2.5 + 75 + 1000], rtol=1e-15)


def test_bilinear_keeps_a_constant_image_and_the_total_gradient():
    x = np.full((1, 2, 3, 5), 1.5)
    out, cache = upsample2d_forward(x, 3, "bilinear")
    np.testing.assert_allclose(out, 1.5, rtol=1e-15)
    dout = np.random.default_rng(0).standard_normal(out.shape)
    # every output's four weights add up to 1, so the gradient's total is conserved
    np.testing.assert_allclose(upsample2d_backward(dout, cache).sum(), dout.sum(), rtol=1e-12)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_scale_one_is_the_identity_and_dtype_is_kept(mode):
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
    out, cache = upsample2d_forward(x, 1, mode)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out, x)
    assert not np.shares_memory(out, x)
    dout = np.ones_like(out)
    dx = upsample2d_backward(dout, cache)
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, dout)


def test_float32_agrees_with_float64():
    rng = np.random.default_rng(2)
    for shape, scale, mode in CASES[:10]:
        x = rng.standard_normal(shape)
        out64, cache64 = upsample2d_forward(x, scale, mode)
        out32, cache32 = upsample2d_forward(x.astype(np.float32), scale, mode)
        dout = rng.standard_normal(out64.shape)
        assert out32.dtype == upsample2d_backward(dout.astype(np.float32), cache32).dtype == np.float32
        np.testing.assert_allclose(out32, out64, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            upsample2d_backward(dout.astype(np.float32), cache32),
            upsample2d_backward(dout, cache64),
            rtol=1e-5,
            atol=1e-5,
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "bicubic"}, ValueError, "mode must be one of"),
        ({"scale_factor": 0}, ValueError, "scale_factor must be >= 1"),
        ({"scale_factor": 1.5}, TypeError, "scale_factor must be an int or a pair of ints"),
        ({"scale_factor": (2, 2, 2)}, TypeError, "scale_factor"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        upsample2d_forward(np.zeros((1, 1, 2, 2)), **kwargs)
    assert "upsample2d" in str(info.value)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"upsample2d: expected x of shape \(N, C, H, W\)"):
        upsample2d_forward(np.zeros((2, 2, 2)))
    with pytest.raises(TypeError, match="upsample2d: expected a floating-point x"):
        upsample2d_forward(np.zeros((1, 1, 2, 2), dtype=int))
    _, cache = upsample2d_forward(np.zeros((1, 1, 2, 2)), 2, "bilinear")
    with pytest.raises(ValueError, match=r"upsample2d_backward: expected dout of shape \(1, 1, 4, 4\)"):
        upsample2d_backward(np.zeros((1, 1, 4, 3)), cache)
