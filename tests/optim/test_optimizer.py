"""Tests of convnp.optim.optimizer: what every optimizer does through the Optimizer base class."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convnp.optim import SGD, Adam, AdamW, RMSprop
from convnp.parameter import Parameter
from tests.optim.oracle import SHAPES, STEPS, convnp_run


@pytest.mark.parametrize("make", [SGD, Adam, AdamW, RMSprop])
def test_float64_gradient_on_float32_parameter_keeps_float32(make):
    param = Parameter(np.ones((2, 3), dtype=np.float32))
    data_before = param.data
    optimizer = make([param], lr=0.1)
    param.grad = np.full((2, 3), 0.5, dtype=np.float64)
    optimizer.step()
    assert param.data.dtype == np.float32
    assert param.data is data_before  # updated in place: layers keep references to it
    assert np.all(param.data < 1.0)


def test_zero_grad_sets_none():
    params = [Parameter(np.ones(2)), Parameter(np.ones(3))]
    for param in params:
        param.grad = np.ones_like(param.data)
    SGD(params).zero_grad()
    assert all(param.grad is None for param in params)


def test_step_rejects_gradient_of_wrong_shape():
    param = Parameter(np.ones((2, 3)), name="weight")
    param.grad = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"SGD.*weight.*\(3, 2\)"):
        SGD([param]).step()


# ----------------------------------------------------------------- state_dict
def test_state_dict_is_flat_json_and_arrays():
    params, optimizer = convnp_run(lambda p: Adam(p, lr=0.05, amsgrad=True))
    state = optimizer.state_dict()
    assert state["type"] == "Adam"
    assert state["num_params"] == len(SHAPES)
    assert state["step_count"] == STEPS
    assert state["betas"] == [0.9, 0.999]
    assert state["state.0.step"] == STEPS
    assert state["state.2.step"] == 3  # gradient on steps 0, 2, 4 only
    assert "state.3.exp_avg" not in state  # never had a gradient
    assert state["state.1.exp_avg"].shape == SHAPES[1]
    arrays = {k for k, v in state.items() if isinstance(v, np.ndarray)}
    json.dumps({k: v for k, v in state.items() if k not in arrays})
    # Arrays are copies: changing the dict does not change the optimizer.
    state["state.0.exp_avg"][...] = 0.0
    assert np.any(optimizer.state[0]["exp_avg"] != 0.0)


def test_load_state_dict_rejects_mismatch_without_changing_anything():
    params, optimizer = convnp_run(lambda p: Adam(p, lr=0.05))
    state = optimizer.state_dict()

    with pytest.raises(ValueError, match="saved by 'Adam'"):
        SGD([Parameter(np.ones(2))]).load_state_dict(state)
    with pytest.raises(ValueError, match="4 parameters"):
        Adam([Parameter(np.ones(2))]).load_state_dict(state)

    other = Adam([Parameter(np.zeros(s)) for s in SHAPES], lr=0.5)
    wrong_shape = dict(state)
    wrong_shape["state.0.exp_avg"] = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"state.0.exp_avg has shape \(4, 3\)"):
        other.load_state_dict(wrong_shape)
    unexpected = dict(state, **{"state.0.momentum_buffer": np.zeros((3, 4))})
    with pytest.raises(ValueError, match="unexpected keys"):
        other.load_state_dict(unexpected)
    bad_beta = dict(state, betas=[1.5, 0.999])
    with pytest.raises(ValueError, match="Adam: invalid beta1"):
        other.load_state_dict(bad_beta)
    assert other.lr == 0.5 and other.betas == (0.9, 0.999) and other.step_count == 0
    assert all(not s for s in other.state)


# ----------------------------------------------------------------- validation
def test_lr_is_mutable_and_checked():
    optimizer = Adam([Parameter(np.ones(2))])
    optimizer.lr = np.float64(0.5)
    assert optimizer.lr == 0.5 and type(optimizer.lr) is float
    with pytest.raises(ValueError, match="Adam: invalid learning rate"):
        optimizer.lr = -0.5
    assert optimizer.lr == 0.5


@pytest.mark.parametrize("make", [SGD, Adam, AdamW, RMSprop])
def test_bad_parameter_lists_raise(make):
    name = make.__name__
    with pytest.raises(ValueError, match=f"{name}: got an empty parameter list"):
        make([])
    with pytest.raises(TypeError, match=rf"{name}: params\[1\] is a ndarray, not a"):
        make([Parameter(np.ones(2)), np.ones(2)])
    with pytest.raises(TypeError, match=f"{name}: params must be an iterable"):
        make(3)
    with pytest.raises(TypeError, match="only floating-point"):
        make([Parameter(np.ones(2, dtype=np.int64))])
    shared = Parameter(np.ones(2))
    with pytest.raises(ValueError, match="appears twice"):
        make([shared, shared])
    # A generator (as model.parameters() may return) and a lone Parameter work.
    assert len(make(Parameter(np.ones(2)) for _ in range(3)).params) == 3
    assert len(make(Parameter(np.ones(2))).params) == 1
