"""Tests of convnp.optim.adam: Adam and AdamW against torch.optim, by hand, and their argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from convnp.optim import Adam, AdamW
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
    ("adam", Adam, "Adam", {"lr": 0.05}),
    ("adam-weight-decay", Adam, "Adam", {"lr": 0.05, "weight_decay": 0.1}),
    ("adam-amsgrad", Adam, "Adam", {"lr": 0.05, "amsgrad": True}),
    (
        "adam-all",
        Adam,
        "Adam",
        {"lr": 0.02, "betas": (0.8, 0.95), "eps": 1e-3, "weight_decay": 0.1, "amsgrad": True},
    ),
    ("adamw", AdamW, "AdamW", {"lr": 0.05}),
    ("adamw-strong-decay", AdamW, "AdamW", {"lr": 0.05, "weight_decay": 0.3}),
    ("adamw-amsgrad", AdamW, "AdamW", {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True}),
]
CONV_CASES = [
    ("adam", Adam, "Adam", {"lr": 1e-2}),
    ("adam-amsgrad-wd", Adam, "Adam", {"lr": 1e-2, "weight_decay": 1e-2, "amsgrad": True}),
    ("adamw", AdamW, "AdamW", {"lr": 1e-2, "weight_decay": 0.1}),
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


def test_adam_first_step_is_lr_times_sign():
    # After bias correction, m / sqrt(v) = g / |g| on the first step.
    param = Parameter(np.array([1.0, 1.0, 1.0]))
    optimizer = Adam([param], lr=0.01, eps=0.0)
    param.grad = np.array([3.0, -0.5, 1e-4])
    optimizer.step()
    np.testing.assert_allclose(param.data, [0.99, 1.01, 0.99], rtol=1e-12)


@pytest.mark.parametrize(
    ("make", "kwargs", "match"),
    [
        (Adam, {"lr": -1e-3}, "Adam: invalid learning rate"),
        (Adam, {"betas": (1.0, 0.999)}, r"Adam: invalid beta1 1.0 \(must be in \[0, 1\)\)"),
        (Adam, {"betas": (0.9, -0.1)}, "Adam: invalid beta2"),
        (Adam, {"betas": (0.9,)}, "Adam: betas must be a pair"),
        (Adam, {"eps": -1e-8}, "Adam: invalid eps"),
        (Adam, {"weight_decay": -0.1}, "Adam: invalid weight_decay"),
        (AdamW, {"betas": (0.9, 1.0)}, "AdamW: invalid beta2"),
        (AdamW, {"lr": -1.0}, "AdamW: invalid learning rate"),
    ],
)
def test_invalid_hyperparameters_raise_naming_the_optimizer(make, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make([Parameter(np.ones(2))], **kwargs)
