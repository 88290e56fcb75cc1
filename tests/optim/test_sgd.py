"""Tests of convnp.optim.sgd: SGD against torch.optim.SGD, by hand, and its argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from convnp.optim import SGD
from convnp.parameter import Parameter
from tests.optim.oracle import (
    check_conv_model_matches_torch,
    check_float32_matches_torch,
    check_matches_torch,
    check_state_dict_round_trip,
    requires_torch,
)

# (id, convnp class, torch class name, keyword arguments shared by both)
CASES = [
    ("sgd", SGD, "SGD", {"lr": 0.1}),
    ("sgd-momentum", SGD, "SGD", {"lr": 0.1, "momentum": 0.9}),
    ("sgd-nesterov", SGD, "SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("sgd-weight-decay", SGD, "SGD", {"lr": 0.1, "weight_decay": 0.05}),
    ("sgd-dampening", SGD, "SGD", {"lr": 0.1, "momentum": 0.8, "dampening": 0.3}),
    ("sgd-all", SGD, "SGD", {"lr": 0.05, "momentum": 0.7, "nesterov": True, "weight_decay": 0.1}),
]
CONV_CASES = [
    ("sgd-momentum", SGD, "SGD", {"lr": 0.05, "momentum": 0.9}),
    ("sgd-nesterov-wd", SGD, "SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}),
]
ARGUMENTS = ("case_id", "ours", "theirs", "kwargs")


@requires_torch
@pytest.mark.parametrize(ARGUMENTS, CASES, ids=[case[0] for case in CASES])
def test_optimizer_matches_torch(case_id, ours, theirs, kwargs):
    check_matches_torch(ours, theirs, kwargs)


@requires_torch
@pytest.mark.parametrize(ARGUMENTS, CASES, ids=[case[0] for case in CASES])
def test_float32_parameters_stay_float32_and_match_torch(case_id, ours, theirs, kwargs):
    check_float32_matches_torch(ours, theirs, kwargs)


@pytest.mark.parametrize(ARGUMENTS, CASES, ids=[case[0] for case in CASES])
def test_state_dict_round_trip_continues_bit_identically(case_id, ours, theirs, kwargs):
    check_state_dict_round_trip(ours, kwargs)


@requires_torch
@pytest.mark.parametrize(ARGUMENTS, CONV_CASES, ids=[case[0] for case in CONV_CASES])
def test_optimizers_on_conv_model_match_torch(case_id, ours, theirs, kwargs):
    check_conv_model_matches_torch(ours, theirs, kwargs)


def test_step_does_not_modify_the_gradient():
    param = Parameter(np.ones(3))
    optimizer = SGD([param], lr=0.1, momentum=0.9, weight_decay=0.5)
    grad = np.array([1.0, 2.0, 3.0])
    param.grad = grad
    optimizer.step()
    optimizer.step()
    np.testing.assert_array_equal(grad, [1.0, 2.0, 3.0])


def test_plain_sgd_step_by_hand():
    param = Parameter(np.array([1.0, -2.0]))
    optimizer = SGD([param], lr=0.5, momentum=0.9)
    param.grad = np.array([0.2, 0.4])
    optimizer.step()  # buffer starts at the gradient: p - lr * g
    np.testing.assert_allclose(param.data, [0.9, -2.2])
    optimizer.step()  # buffer = 0.9 * g + g = 1.9 g
    np.testing.assert_allclose(param.data, [0.9 - 0.5 * 0.38, -2.2 - 0.5 * 0.76])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -0.1}, "SGD: invalid learning rate"),
        ({"lr": float("nan")}, "SGD: invalid learning rate"),
        ({"momentum": -0.5}, "SGD: invalid momentum"),
        ({"weight_decay": -1.0}, "SGD: invalid weight_decay"),
        ({"nesterov": True}, "SGD: nesterov=True needs momentum > 0"),
        ({"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "SGD: nesterov"),
    ],
)
def test_invalid_hyperparameters_raise_naming_the_optimizer(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD([Parameter(np.ones(2))], **kwargs)
