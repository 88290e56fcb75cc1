"""Tests of convnp.optim.clip: clip_grad_norm against torch.nn.utils.clip_grad_norm_ and by hand."""

from __future__ import annotations

import numpy as np
import pytest

from convnp.optim import clip_grad_norm
from convnp.parameter import Parameter
from tests.optim.oracle import requires_torch, torch


def _grads_for_clipping(dtype):
    rng = np.random.default_rng(3)
    params = [Parameter(np.zeros(s, dtype=dtype)) for s in [(3, 4), (5,), (2, 2), (6,)]]
    for index, param in enumerate(params):
        if index != 2:  # one parameter without a gradient, ignored by the norm
            param.grad = rng.normal(size=param.data.shape).astype(dtype)
    return params


@requires_torch
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    params = _grads_for_clipping(np.float64)
    torch_params = []
    for param in params:
        tensor = torch.zeros(param.data.shape, dtype=torch.float64, requires_grad=True)
        if param.grad is not None:
            tensor.grad = torch.tensor(param.grad)
        torch_params.append(tensor)

    total = clip_grad_norm(params, max_norm, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(torch_params, max_norm, norm_type=norm_type)
    assert isinstance(total, float)
    np.testing.assert_allclose(total, expected.item(), rtol=1e-12)
    for param, tensor in zip(params, torch_params, strict=True):
        if param.grad is None:
            assert tensor.grad is None
        else:
            np.testing.assert_allclose(param.grad, tensor.grad.numpy(), rtol=1e-12)
    if max_norm < total:
        clipped = np.sqrt(sum(np.sum(p.grad**2) for p in params if p.grad is not None))
        if norm_type == 2.0:
            np.testing.assert_allclose(clipped, max_norm, rtol=1e-5)


def test_clip_grad_norm_by_hand_and_dtype():
    param = Parameter(np.zeros(2, dtype=np.float32))
    param.grad = np.array([3.0, 4.0], dtype=np.float32)
    total = clip_grad_norm([param], max_norm=1.0)
    assert total == pytest.approx(5.0)
    assert param.grad.dtype == np.float32
    np.testing.assert_allclose(param.grad, [0.6, 0.8], rtol=1e-5)
    # Below the threshold nothing changes.
    param.grad = np.array([0.3, 0.4], dtype=np.float32)
    assert clip_grad_norm(param, max_norm=1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(param.grad, np.array([0.3, 0.4], dtype=np.float32))
    assert clip_grad_norm([Parameter(np.ones(2))], 1.0) == 0.0  # no gradients at all
    with pytest.raises(ValueError, match="max_norm must be >= 0"):
        clip_grad_norm([param], -1.0)
    param.grad = np.array([np.inf, 0.0], dtype=np.float32)
    with pytest.raises(ValueError, match="total gradient norm is inf"):
        clip_grad_norm([param], 1.0, error_if_nonfinite=True)
