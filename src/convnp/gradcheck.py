"""Finite-difference gradient checking.

The analytic gradient of every tensor (the input and each parameter) is compared
with central differences

    df/dx[i] ~= (f(x + eps*e_i) - f(x - eps*e_i)) / (2*eps)

of the scalar ``f = sum(forward(x) * r)`` for a fixed random ``r`` (so every
output element takes part). Work happens in float64 on a copy of the layer or
model. The reported error of a tensor is

    max_i |analytic[i] - numeric[i]| / max(max_i |analytic[i]|, max_i |numeric[i]|, 0.1)

relative to the tensor's scale, so entries that are zero in both do not
divide by zero. The floor of 0.1 keeps a gradient that is exactly zero (a
convolution bias followed by batch norm, say) from being judged by the
finite-difference noise (~1e-9); a wrong gradient still shows errors of its
own size. Below ~1e-7 in float64 means the backward pass is right.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

__all__ = ["numerical_gradient", "relative_error", "gradcheck"]


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar ``f()`` with respect to array ``x``.

    ``x`` is perturbed in place, one entry at a time, and restored; ``f`` must
    read it. Returns an array shaped like ``x``.
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    flat_x = x.reshape(-1)  # a view: writes reach x
    if not np.shares_memory(flat_x, x):
        raise ValueError("numerical_gradient: x must be contiguous so it can be perturbed in place")
    flat_grad = grad.reshape(-1)
    for i in range(flat_x.size):
        original = flat_x[i]
        flat_x[i] = original + eps
        f_plus = f()
        flat_x[i] = original - eps
        f_minus = f()
        flat_x[i] = original
        flat_grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray, floor: float = 0.1) -> float:
    """max |a - n| / max(max |a|, max |n|, floor); see the module docstring."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    if analytic.size == 0:
        return 0.0
    scale = max(np.abs(analytic).max(), np.abs(numeric).max(), floor)
    return float(np.abs(analytic - numeric).max() / scale)


def _random_states(target) -> list:
    """Generators inside the target (dropout), so each forward draws the same mask."""
    parts = [part for layer in getattr(target, "layers", [target]) for part in layer.self_and_sublayers()]
    return [part for part in parts if isinstance(getattr(part, "rng", None), np.random.Generator)]


def gradcheck(
    layer_or_model,
    x: np.ndarray,
    eps: float = 1e-6,
    training: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Check every analytic gradient of a layer or a model (``Sequential``, ``Model``) against central differences.

    Args:
        layer_or_model: a built or unbuilt layer or model; it is not modified
            (a float64 copy is checked).
        x: an input batch.
        eps: the finite-difference step.
        training: run forward in training mode (batch norm uses batch statistics;
            dropout draws the same mask at every evaluation).
        seed: seeds the random output weighting ``r``.

    Returns:
        {"input": error, "<param name>": error, ...}: the max relative error per tensor.
    """
    target = copy.deepcopy(layer_or_model)
    x = np.array(x, dtype=np.float64)  # a private contiguous copy, perturbed in place
    if hasattr(target, "prepare_input"):
        if not target.built:
            target.build(x.shape[1:])
        x = np.ascontiguousarray(target.prepare_input(x), dtype=np.float64)
    elif not target.built:
        target.build(x.shape[1:])
    target.astype(np.float64)

    random_layers = _random_states(target)
    saved_states = [layer.rng.bit_generator.state for layer in random_layers]

    def run(inputs: np.ndarray) -> np.ndarray:
        for layer, state in zip(random_layers, saved_states):
            layer.rng.bit_generator.state = state
        return target.forward(inputs, training=training)

    weights = np.random.default_rng(seed).standard_normal(run(x).shape)

    def loss() -> float:
        return float(np.sum(run(x) * weights))

    run(x)
    dx = target.backward(weights.copy())
    named = list(target.named_parameters())
    analytic = {"input": dx, **{name: param.grad.copy() for name, param in named}}

    errors = {"input": relative_error(analytic["input"], numerical_gradient(loss, x, eps))}
    for name, param in named:
        numeric = numerical_gradient(loss, param.data, eps)
        errors[name] = relative_error(analytic[name], numeric)
    return errors
