"""Tests of convnp.optim.lr_scheduler: learning-rate sequences against torch and by hand, state, checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convnp.optim import SGD, CosineAnnealingLR, LinearWarmup, StepLR, WarmupCosine
from convnp.parameter import Parameter
from tests.optim.oracle import requires_torch, torch


def _convnp_lrs(make_scheduler, lr=0.1, steps=20):
    optimizer = SGD([Parameter(np.ones(1))], lr=lr)
    scheduler = make_scheduler(optimizer)
    lrs = [scheduler.get_last_lr()[0]]
    assert optimizer.lr == lrs[0]
    for _ in range(steps):
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
        assert optimizer.lr == lrs[-1]
    return lrs


def _torch_lrs(make_scheduler, lr=0.1, steps=20):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = make_scheduler(optimizer)
    lrs = [scheduler.get_last_lr()[0]]
    for _ in range(steps):
        optimizer.step()  # torch warns when the scheduler steps first
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    return lrs


def _torch_scheduler(name):
    # Looked up when called, so that this module imports without torch.
    return getattr(torch.optim.lr_scheduler, name)


def _torch_warmup_cosine(o, warmup, total, eta_min=0.0, start_factor=1.0 / 3.0):
    linear = _torch_scheduler("LinearLR")(o, start_factor=start_factor, total_iters=warmup)
    cosine = _torch_scheduler("CosineAnnealingLR")(o, T_max=total - warmup, eta_min=eta_min)
    return _torch_scheduler("SequentialLR")(o, [linear, cosine], milestones=[warmup])


SCHEDULER_CASES = [
    (
        "step",
        lambda o: StepLR(o, step_size=3, gamma=0.5),
        lambda o: _torch_scheduler("StepLR")(o, step_size=3, gamma=0.5),
    ),
    (
        "step-default-gamma",
        lambda o: StepLR(o, step_size=5),
        lambda o: _torch_scheduler("StepLR")(o, step_size=5),
    ),
    (
        "cosine",
        lambda o: CosineAnnealingLR(o, T_max=20),
        lambda o: _torch_scheduler("CosineAnnealingLR")(o, T_max=20),
    ),
    (
        "cosine-past-t-max",
        lambda o: CosineAnnealingLR(o, T_max=8, eta_min=1e-3),
        lambda o: _torch_scheduler("CosineAnnealingLR")(o, T_max=8, eta_min=1e-3),
    ),
    (
        "linear-warmup",
        lambda o: LinearWarmup(o, warmup_epochs=5),
        lambda o: _torch_scheduler("LinearLR")(o, total_iters=5),
    ),
    (
        "linear-warmup-factors",
        lambda o: LinearWarmup(o, 4, start_factor=0.1, end_factor=0.5),
        lambda o: _torch_scheduler("LinearLR")(o, start_factor=0.1, end_factor=0.5, total_iters=4),
    ),
    (
        "warmup-cosine",
        lambda o: WarmupCosine(o, warmup_epochs=4, total_epochs=20, eta_min=1e-3),
        lambda o: _torch_warmup_cosine(o, 4, 20, eta_min=1e-3),
    ),
    (
        "warmup-cosine-factor",
        lambda o: WarmupCosine(o, 3, 20, start_factor=0.1),
        lambda o: _torch_warmup_cosine(o, 3, 20, start_factor=0.1),
    ),
]


@requires_torch
@pytest.mark.parametrize(("case_id", "ours", "theirs"), SCHEDULER_CASES, ids=[c[0] for c in SCHEDULER_CASES])
def test_scheduler_lr_sequence_matches_torch(case_id, ours, theirs):
    np.testing.assert_allclose(_convnp_lrs(ours), _torch_lrs(theirs), rtol=1e-12, atol=1e-15)


def test_scheduler_values_by_hand():
    assert _convnp_lrs(lambda o: StepLR(o, 2, gamma=0.1), lr=1.0, steps=5) == pytest.approx(
        [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    )
    cosine = _convnp_lrs(lambda o: CosineAnnealingLR(o, T_max=4), lr=1.0, steps=4)
    np.testing.assert_allclose(cosine, [1.0, (1 + np.sqrt(0.5)) / 2, 0.5, (1 - np.sqrt(0.5)) / 2, 0.0], atol=1e-15)
    warmup = _convnp_lrs(lambda o: WarmupCosine(o, 2, 4, start_factor=0.5), lr=1.0, steps=7)
    np.testing.assert_allclose(warmup, [0.5, 0.75, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0], atol=1e-15)


@pytest.mark.parametrize(
    "make",
    [
        lambda o: StepLR(o, 3, gamma=0.5),
        lambda o: CosineAnnealingLR(o, 10, eta_min=0.01),
        lambda o: LinearWarmup(o, 5, start_factor=0.2),
        lambda o: WarmupCosine(o, 3, 12, eta_min=0.01),
    ],
)
def test_scheduler_state_dict_round_trip(make):
    optimizer = SGD([Parameter(np.ones(1))], lr=0.1)
    scheduler = make(optimizer)
    for _ in range(4):
        scheduler.step()
    saved = json.loads(json.dumps(scheduler.state_dict()))

    fresh_optimizer = SGD([Parameter(np.ones(1))], lr=0.1)
    resumed = make(fresh_optimizer)
    resumed.load_state_dict(saved)
    assert fresh_optimizer.lr == optimizer.lr
    for _ in range(6):
        scheduler.step()
        resumed.step()
        assert resumed.get_last_lr() == scheduler.get_last_lr()
        assert fresh_optimizer.lr == optimizer.lr


def test_scheduler_arguments_are_checked():
    optimizer = SGD([Parameter(np.ones(1))])
    with pytest.raises(ValueError, match="StepLR: step_size must be an integer >= 1"):
        StepLR(optimizer, 0)
    with pytest.raises(ValueError, match="CosineAnnealingLR: T_max must be an integer >= 1"):
        CosineAnnealingLR(optimizer, 2.5)
    with pytest.raises(ValueError, match=r"LinearWarmup: start_factor must be in \(0, 1\]"):
        LinearWarmup(optimizer, 3, start_factor=0.0)
    with pytest.raises(ValueError, match="WarmupCosine: total_epochs .* must exceed"):
        WarmupCosine(optimizer, 5, 5)
    with pytest.raises(TypeError, match="StepLR: expected a convnp.optim.Optimizer"):
        StepLR("adam", 3)
    with pytest.raises(ValueError, match="saved by 'StepLR'"):
        CosineAnnealingLR(optimizer, 5).load_state_dict(StepLR(optimizer, 3).state_dict())
