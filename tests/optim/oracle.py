"""The problem every optimizer test runs, and the checks against torch.optim.

Every optimizer setting runs 5 steps from the same float64 parameters with
gradients that depend on the parameters (a quadratic + tanh loss written once
in NumPy and once in torch autograd), so a wrong rule shows up as diverging
trajectories, not only as a wrong first step. The ``check_*`` functions hold
the assertions that tests/optim/test_sgd.py, test_adam.py and test_rmsprop.py
make for each of their settings.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

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


def problem(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
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


def convnp_run(make_optimizer, dtype=np.float64, steps=STEPS, seed=0):
    initial, targets = problem(seed)
    params = [Parameter(x.astype(dtype), name=f"p{i}") for i, x in enumerate(initial)]
    optimizer = make_optimizer(params)
    convnp_steps(optimizer, params, targets, range(steps))
    return params, optimizer


def convnp_steps(optimizer, params, targets, step_numbers) -> None:
    for step in step_numbers:
        optimizer.zero_grad()
        for index, param in enumerate(params):
            if _has_grad(step, index):
                target = targets[index].astype(param.data.dtype)
                param.grad = _numpy_grad(param.data, target)
        optimizer.step()


def torch_run(make_optimizer, dtype=None, steps=STEPS, seed=0):
    dtype = torch.float64 if dtype is None else dtype
    initial, targets = problem(seed)
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


def npz_json_round_trip(state: dict) -> dict:
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


# ------------------------------------------------- checks run for every setting
def check_matches_torch(ours, theirs: str, kwargs: dict) -> None:
    """Parameters and per-parameter state after STEPS steps equal torch's (float64)."""
    params, optimizer = convnp_run(lambda p: ours(p, **kwargs))
    torch_params, torch_optimizer = torch_run(lambda p: getattr(torch.optim, theirs)(p, **kwargs))

    initial, _ = problem()
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


def check_float32_matches_torch(ours, theirs: str, kwargs: dict) -> None:
    """float32 parameters and buffers stay float32 and follow torch's float32 run."""
    params, optimizer = convnp_run(lambda p: ours(p, **kwargs), dtype=np.float32)
    torch_params, _ = torch_run(lambda p: getattr(torch.optim, theirs)(p, **kwargs), dtype=torch.float32)
    for param, torch_param in zip(params, torch_params, strict=True):
        assert param.data.dtype == np.float32
        np.testing.assert_allclose(param.data, torch_param.detach().numpy(), rtol=2e-5, atol=2e-6)
    for state in optimizer.state:
        for value in state.values():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32


def check_state_dict_round_trip(ours, kwargs: dict) -> None:
    """3 steps, save through .npz + JSON, load into a default optimizer, 2 more steps: bit-identical."""
    _, targets = problem()
    reference, _ = convnp_run(lambda p: ours(p, **kwargs), steps=STEPS)

    params, optimizer = convnp_run(lambda p: ours(p, **kwargs), steps=3)
    saved = npz_json_round_trip(optimizer.state_dict())
    resumed_params = [Parameter(p.data.copy(), name=p.name) for p in params]
    resumed = ours(resumed_params)  # default hyper-parameters: the load must restore them
    resumed.load_state_dict(saved)
    assert resumed.hyperparameters() == optimizer.hyperparameters()
    assert resumed.step_count == 3
    convnp_steps(resumed, resumed_params, targets, range(3, STEPS))

    for param, expected in zip(resumed_params, reference, strict=True):
        np.testing.assert_array_equal(param.data, expected.data)


def check_conv_model_matches_torch(ours, theirs: str, kwargs: dict) -> None:
    """A small conv network trained STEPS steps by both: same losses, same weights."""
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
