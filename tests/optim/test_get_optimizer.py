"""Tests of convnp.optim.factory: get_optimizer by name and with a built optimizer."""

from __future__ import annotations

import numpy as np
import pytest

from convnp.optim import SGD, Adam, AdamW, Optimizer, RMSprop, get_optimizer
from convnp.parameter import Parameter


@pytest.mark.parametrize(
    ("name", "expected"),
    [("sgd", SGD), ("SGD", SGD), ("Adam", Adam), ("adamw", AdamW), ("RMSprop", RMSprop)],
)
def test_get_optimizer_by_name(name, expected):
    params = [Parameter(np.ones(2))]
    optimizer = get_optimizer(name, params, lr=0.25)
    assert type(optimizer) is expected
    assert optimizer.lr == 0.25 and optimizer.params == params
    assert get_optimizer(name, params).lr == expected([Parameter(np.ones(1))]).lr  # default


def test_get_optimizer_passes_extra_settings():
    optimizer = get_optimizer("sgd", [Parameter(np.ones(2))], lr=0.1, momentum=0.9)
    assert optimizer.momentum == 0.9


@pytest.mark.parametrize("name", ["adamax", "ada", "adam ", "sgd_momentum", ""])
def test_get_optimizer_unknown_name_lists_valid_names(name):
    with pytest.raises(ValueError, match="valid names: 'sgd', 'adam', 'adamw', 'rmsprop'"):
        get_optimizer(name, [Parameter(np.ones(2))])


def test_get_optimizer_with_an_instance():
    params = [Parameter(np.ones(2)), Parameter(np.ones(3))]
    optimizer = SGD(params[:1], lr=0.3)
    assert get_optimizer(optimizer, params) is optimizer  # a subset is fine (frozen layers)
    assert get_optimizer(optimizer) is optimizer
    with pytest.raises(ValueError, match="set its .lr"):
        get_optimizer(optimizer, params, lr=0.1)
    with pytest.raises(ValueError, match="not among the given params"):
        get_optimizer(optimizer, [Parameter(np.ones(2))])
    with pytest.raises(TypeError, match="expected an optimizer name or an Optimizer"):
        get_optimizer(SGD, params)
    assert isinstance(optimizer, Optimizer)
