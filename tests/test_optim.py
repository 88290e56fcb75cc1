"""Tests of convnp.optim: update rules, schedulers and clipping against torch.optim.

Every optimizer setting runs 5 steps from the same float64 parameters with
gradients that depend on the parameters (a quadratic + tanh loss written once
in NumPy and once in torch autograd), so a wrong rule shows up as diverging
trajectories, not only as a wrong first step.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from convnp.optim import (
    SGD,
    Adam,
    AdamW,
    CosineAnnealingLR,
    LinearWarmup,
    Optimizer,
    RMSprop,
    StepLR,
    WarmupCosine,
    clip_grad_norm,
    get_optimizer,
)
from convnp.parameter import Parameter

try:
    import torch
except ImportError:  # the torch oracle is optional
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

# ---------------------------------------------------------------- the problem
SHAPES = [(3, 4), (5,), (2, 3, 2), (4,)]
NEVER_GRAD = 3  # this parameter never gets a gradient: it must stay untouched
SOMETIMES_GRAD = 2  # gradient on even steps only: its step count lags the others
STEPS = 5


def _problem(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    initial = [rng.normal(size=shape) for shape in SHAPES]
    targets = [rng.normal(size=shape) for shape in SHAPES]
    return initial, targets


def _has_grad(step: int, index: int) -> bool:
    if index == NEVER_GRAD:
        return False
    if index == SOMETIMES_GRAD:
        return step % 2 == 0
    return True


def _numpy_grad(p: np.ndarray, target: np.ndarray) -> np.ndarray:
    # d/dp of sum(0.75 * (p - target)**2 + tanh(2p))
    return 1.5 * (p - target) + 2.0 * (1.0 - np.tanh(2.0 * p) ** 2)


def _convnp_run(make_optimizer, dtype=np.float64, steps=STEPS, seed=0):
    initial, targets = _problem(seed)
    params = [Parameter(x.astype(dtype), name=f"p{i}") for i, x in enumerate(initial)]
    optimizer = make_optimizer(params)
    _convnp_steps(optimizer, params, targets, range(steps))
    return params, optimizer


def _convnp_steps(optimizer, params, targets, step_numbers) -> None:
    for step in step_numbers:
        optimizer.zero_grad()
        for index, param in enumerate(params):
            if _has_grad(step, index):
                target = targets[index].astype(param.data.dtype)
                param.grad = _numpy_grad(param.data, target)
        optimizer.step()


def _torch_run(make_optimizer, dtype=None, steps=STEPS, seed=0):
    dtype = torch.float64 if dtype is None else dtype
    initial, targets = _problem(seed)
    params = [torch.tensor(x, dtype=dtype, requires_grad=True) for x in initial]
    target_tensors = [torch.tensor(t, dtype=dtype) for t in targets]
    optimizer = make_optimizer(params)
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = sum(
            (0.75 * (p - t) ** 2 + torch.tanh(2.0 * p)).sum()
            for index, (p, t) in enumerate(zip(params, target_tensors, strict=True))
            if _has_grad(step, index)
        )
        loss.backward()
        optimizer.step()
    return params, optimizer


# (id, convnp class, torch class name, keyword arguments shared by both)
CASES = [
    ("sgd", SGD, "SGD", {"lr": 0.1}),
    ("sgd-momentum", SGD, "SGD", {"lr": 0.1, "momentum": 0.9}),
    ("sgd-nesterov", SGD, "SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("sgd-weight-decay", SGD, "SGD", {"lr": 0.1, "weight_decay": 0.05}),
    ("sgd-dampening", SGD, "SGD", {"lr": 0.1, "momentum": 0.8, "dampening": 0.3}),
    (
        "sgd-all",
        SGD,
        "SGD",
        {"lr": 0.05, "momentum": 0.7, "nesterov": True, "weight_decay": 0.1},
    ),
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
CASE_IDS = [case[0] for case in CASES]


@requires_torch
@pytest.mark.parametrize(("case_id", "ours", "theirs", "kwargs"), CASES, ids=CASE_IDS)
def test_optimizer_matches_torch(case_id, ours, theirs, kwargs):
    params, optimizer = _convnp_run(lambda p: ours(p, **kwargs))
    torch_params, torch_optimizer = _torch_run(lambda p: getattr(torch.optim, theirs)(p, **kwargs))

    initial, _ = _problem()
    for index, (param, torch_param) in enumerate(zip(params, torch_params, strict=True)):
        expected = torch_param.detach().numpy()
        np.testing.assert_allclose(param.data, expected, rtol=1e-10, atol=1e-13)
        if index == NEVER_GRAD:
            np.testing.assert_array_equal(param.data, initial[index])
        else:
            # The comparison means something only if the parameters moved.
            assert np.max(np.abs(param.data - initial[index])) > 1e-3

    # The per-parameter state carries torch's names and values.
    for index, torch_param in enumerate(torch_params):
        torch_state = torch_optimizer.state.get(torch_param, {})
        assert set(optimizer.state[index]) == set(torch_state), index
        for key, value in torch_state.items():
            if key == "step":
                assert optimizer.state[index]["step"] == int(value.item())
            else:
                np.testing.assert_allclose(optimizer.state[index][key], value.numpy(), rtol=1e-10, atol=1e-13)
    assert optimizer.step_count == STEPS


@requires_torch
@pytest.mark.parametrize(("case_id", "ours", "theirs", "kwargs"), CASES, ids=CASE_IDS)
def test_float32_parameters_stay_float32_and_match_torch(case_id, ours, theirs, kwargs):
    params, optimizer = _convnp_run(lambda p: ours(p, **kwargs), dtype=np.float32)
    torch_params, _ = _torch_run(lambda p: getattr(torch.optim, theirs)(p, **kwargs), dtype=torch.float32)
    for param, torch_param in zip(params, torch_params, strict=True):
        assert param.data.dtype == np.float32
        np.testing.assert_allclose(param.data, torch_param.detach().numpy(), rtol=2e-5, atol=2e-6)
    for state in optimizer.state:
        for value in state.values():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32


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


def test_adam_first_step_is_lr_times_sign():
    # After bias correction, m / sqrt(v) = g / |g| on the first step.
    param = Parameter(np.array([1.0, 1.0, 1.0]))
    optimizer = Adam([param], lr=0.01, eps=0.0)
    param.grad = np.array([3.0, -0.5, 1e-4])
    optimizer.step()
    np.testing.assert_allclose(param.data, [0.99, 1.01, 0.99], rtol=1e-12)


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
def _npz_json_round_trip(state: dict) -> dict:
    """Save a state_dict as a model file would: arrays in .npz, the rest in JSON."""
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    scalars = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as archive:
        restored = {k: archive[k] for k in archive.files}
    restored.update(json.loads(json.dumps(scalars)))
    return restored


@pytest.mark.parametrize(("case_id", "ours", "theirs", "kwargs"), CASES, ids=CASE_IDS)
def test_state_dict_round_trip_continues_bit_identically(case_id, ours, theirs, kwargs):
    _, targets = _problem()
    reference, _ = _convnp_run(lambda p: ours(p, **kwargs), steps=STEPS)

    params, optimizer = _convnp_run(lambda p: ours(p, **kwargs), steps=3)
    saved = _npz_json_round_trip(optimizer.state_dict())
    resumed_params = [Parameter(p.data.copy(), name=p.name) for p in params]
    resumed = ours(resumed_params)  # default hyper-parameters: the load must restore them
    resumed.load_state_dict(saved)
    assert resumed.hyperparameters() == optimizer.hyperparameters()
    assert resumed.step_count == 3
    _convnp_steps(resumed, resumed_params, targets, range(3, STEPS))

    for param, expected in zip(resumed_params, reference, strict=True):
        np.testing.assert_array_equal(param.data, expected.data)


def test_state_dict_is_flat_json_and_arrays():
    params, optimizer = _convnp_run(lambda p: Adam(p, lr=0.05, amsgrad=True))
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
    params, optimizer = _convnp_run(lambda p: Adam(p, lr=0.05))
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
@pytest.mark.parametrize(
    ("make", "kwargs", "match"),
    [
        (SGD, {"lr": -0.1}, "SGD: invalid learning rate"),
        (SGD, {"lr": float("nan")}, "SGD: invalid learning rate"),
        (SGD, {"momentum": -0.5}, "SGD: invalid momentum"),
        (SGD, {"weight_decay": -1.0}, "SGD: invalid weight_decay"),
        (SGD, {"nesterov": True}, "SGD: nesterov=True needs momentum > 0"),
        (SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "SGD: nesterov"),
        (Adam, {"lr": -1e-3}, "Adam: invalid learning rate"),
        (Adam, {"betas": (1.0, 0.999)}, r"Adam: invalid beta1 1.0 \(must be in \[0, 1\)\)"),
        (Adam, {"betas": (0.9, -0.1)}, "Adam: invalid beta2"),
        (Adam, {"betas": (0.9,)}, "Adam: betas must be a pair"),
        (Adam, {"eps": -1e-8}, "Adam: invalid eps"),
        (Adam, {"weight_decay": -0.1}, "Adam: invalid weight_decay"),
        (AdamW, {"betas": (0.9, 1.0)}, "AdamW: invalid beta2"),
        (AdamW, {"lr": -1.0}, "AdamW: invalid learning rate"),
        (RMSprop, {"lr": -1.0}, "RMSprop: invalid learning rate"),
        (RMSprop, {"alpha": -0.1}, "RMSprop: invalid alpha"),
        (RMSprop, {"eps": -1.0}, "RMSprop: invalid eps"),
        (RMSprop, {"momentum": -0.9}, "RMSprop: invalid momentum"),
    ],
)
def test_invalid_hyperparameters_raise_naming_the_optimizer(make, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make([Parameter(np.ones(2))], **kwargs)


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


# ---------------------------------------------------------------- get_optimizer
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


# ----------------------------------------------------------------- clipping
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


# ----------------------------------------------------------------- schedulers
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


# ------------------------------------------------------- a real conv network
CONV_CASES = [
    ("sgd-momentum", SGD, "SGD", {"lr": 0.05, "momentum": 0.9}),
    (
        "sgd-nesterov-wd",
        SGD,
        "SGD",
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
    ),
    ("adam", Adam, "Adam", {"lr": 1e-2}),
    ("adam-amsgrad-wd", Adam, "Adam", {"lr": 1e-2, "weight_decay": 1e-2, "amsgrad": True}),
    ("adamw", AdamW, "AdamW", {"lr": 1e-2, "weight_decay": 0.1}),
    (
        "rmsprop-centered-momentum",
        RMSprop,
        "RMSprop",
        {"lr": 1e-3, "momentum": 0.9, "centered": True},
    ),
]


@requires_torch
@pytest.mark.parametrize(("case_id", "ours", "theirs", "kwargs"), CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_optimizers_on_conv_model_match_torch(case_id, ours, theirs, kwargs):
    try:
        from convnp.functional import softmax_cross_entropy
        from convnp.nn import Conv2D, Dense, Flatten, ReLU, Sequential
    except ImportError as error:
        pytest.skip(f"convnp.nn layers not available yet: {error}")

    torch.manual_seed(0)
    torch_model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, kernel_size=3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * 6 * 6, 4),
    ).double()
    model = Sequential(
        [Conv2D(3, 3, padding=1), ReLU(), Flatten(), Dense(4)],
        input_shape=(1, 6, 6),
        dtype="float64",
    )
    model.load_state_dict({k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()})

    rng = np.random.default_rng(7)
    x = rng.normal(size=(8, 1, 6, 6))
    labels = rng.integers(0, 4, size=8)
    optimizer = ours(model.parameters(), **kwargs)
    torch_optimizer = getattr(torch.optim, theirs)(torch_model.parameters(), **kwargs)

    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss, dlogits = softmax_cross_entropy(model.forward(x, training=True), labels)
        model.backward(dlogits)
        optimizer.step()

        torch_optimizer.zero_grad(set_to_none=True)
        torch_loss = torch.nn.functional.cross_entropy(torch_model(torch.tensor(x)), torch.tensor(labels))
        torch_loss.backward()
        torch_optimizer.step()
        np.testing.assert_allclose(float(loss), torch_loss.item(), rtol=1e-9)
        losses.append(float(loss))

    assert losses[-1] < losses[0]  # it trains
    ours_state = model.state_dict()
    for key, value in torch_model.state_dict().items():
        np.testing.assert_allclose(ours_state[key], value.numpy(), rtol=1e-6, atol=1e-9)
        assert ours_state[key].dtype == np.float64
