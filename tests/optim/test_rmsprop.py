"""Tests of convnp.optim.rmsprop: RMSprop against torch.optim.RMSprop, and its argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from convnp.optim import RMSprop
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
    ("rmsprop", RMSprop, "RMSprop", {"lr": 0.01}),
    ("rmsprop-momentum", RMSprop, "RMSprop", {"lr": 0.01, "momentum": 0.9}),
    ("rmsprop-centered", RMSprop, "RMSprop", {"lr": 0.01, "centered": True}),
    (
        "rmsprop-all",
        RMSprop,
        "RMSprop",
        {"lr": 0.01, "alpha": 0.9, "momentum": 0.5, "centered": True, "weight_decay": 0.1},
    ),
]
CONV_CASES = [
    ("rmsprop-centered-momentum", RMSprop, "RMSprop", {"lr": 1e-3, "momentum": 0.9, "centered": True}),
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


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0}, "RMSprop: invalid learning rate"),
        ({"alpha": -0.1}, "RMSprop: invalid alpha"),
        ({"eps": -1.0}, "RMSprop: invalid eps"),
        ({"momentum": -0.9}, "RMSprop: invalid momentum"),
    ],
)
def test_invalid_hyperparameters_raise_naming_the_optimizer(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RMSprop([Parameter(np.ones(2))], **kwargs)
