"""The ``Optimizer`` base class and the helpers every optimizer shares.

An optimizer holds a list of ``Parameter``s and, on ``step()``, updates each
``Parameter.data`` in place from the gradient that the last backward pass left
in ``Parameter.grad``; subclasses (``sgd.py``, ``adam.py``, ``rmsprop.py``)
supply only their update rule. This module also checks parameter lists, makes
the per-parameter state buffers, and saves and restores that state as a flat
dict of JSON-able scalars and numpy arrays.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from convnp.parameter import Parameter

__all__ = ["Optimizer"]


def _as_parameter_list(params: Iterable[Parameter] | Parameter, owner: str) -> list[Parameter]:
    """Check ``params`` and return it as a list; ``owner`` names the caller in errors."""
    if isinstance(params, Parameter):
        params = [params]
    try:
        params = list(params)
    except TypeError as error:
        raise TypeError(
            f"{owner}: params must be an iterable of convnp.nn.Parameter "
            f"(e.g. model.parameters()), got {type(params).__name__}"
        ) from error
    if not params:
        raise ValueError(
            f"{owner}: got an empty parameter list; build the model first "
            "(pass input_shape or call build) and pass model.parameters()"
        )
    seen: set[int] = set()
    for index, param in enumerate(params):
        if not isinstance(param, Parameter):
            raise TypeError(f"{owner}: params[{index}] is a {type(param).__name__}, not a convnp.nn.Parameter")
        if not np.issubdtype(param.data.dtype, np.floating):
            raise TypeError(
                f"{owner}: params[{index}] ({param.name or 'unnamed'}) has dtype "
                f"{param.data.dtype}; only floating-point parameters can be trained"
            )
        # The same Parameter twice would be updated twice per step.
        if id(param) in seen:
            raise ValueError(f"{owner}: params[{index}] ({param.name or 'unnamed'}) appears twice")
        seen.add(id(param))
    return params


def _as_float(value: Any) -> float:
    """A Python float from a float, numpy scalar or 0-d array (as read back from .npz)."""
    return float(np.asarray(value).item())


def _as_bool(value: Any) -> bool:
    return bool(np.asarray(value).item())


def _as_str(value: Any) -> str:
    return str(np.asarray(value).item())


def _check_nonnegative(owner: str, name: str, value: float) -> None:
    # ``not value >= 0`` is also true for NaN, which must be rejected too.
    if not value >= 0.0:
        raise ValueError(f"{owner}: invalid {name} {value!r} (must be >= 0)")


def _buffer(state: dict[str, Any], key: str, like: np.ndarray) -> np.ndarray:
    """The state array ``key``, created as zeros shaped and typed like the parameter.

    An existing buffer is cast when the parameter's dtype changed since it was
    made (``model.astype``), so the update never mixes dtypes.
    """
    buffer = state.get(key)
    if buffer is None:
        buffer = state[key] = np.zeros_like(like)
    elif buffer.dtype != like.dtype:
        buffer = state[key] = buffer.astype(like.dtype)
    return buffer


class Optimizer:
    """Base class: a list of parameters, their per-parameter state, and ``lr``.

    Subclasses list their constructor hyper-parameters in ``hyperparameter_names``
    (saved by ``state_dict``), the per-parameter arrays they keep in
    ``state_array_names``, check their hyper-parameters in ``_validate`` and
    implement ``_update(param, grad, state)``, which changes ``param`` in place.

    Attributes:
        params: the ``Parameter``s being optimised, in the order given.
        state: one dict per parameter (same index) holding its buffers, e.g.
            ``{"step": 3, "exp_avg": ndarray, "exp_avg_sq": ndarray}``.
        step_count: how many times ``step()`` has been called.
        lr: the learning rate; a plain attribute that schedulers change.
    """

    hyperparameter_names: tuple[str, ...] = ("lr",)
    state_array_names: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params = _as_parameter_list(params, type(self).__name__)
        self.state: list[dict[str, Any]] = [{} for _ in self.params]
        self.step_count = 0
        self.lr = lr

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        # Stored as a Python float: a numpy float64 scalar would promote
        # float32 parameters to float64 in ``lr * update`` (NEP 50).
        value = _as_float(value)
        _check_nonnegative(type(self).__name__, "learning rate", value)
        self._lr = value

    def _validate(self) -> None:
        """Raise ValueError naming the optimizer when a hyper-parameter is out of range."""

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # -------------------------------------------------------------- training
    def step(self) -> None:
        """Update every parameter that has a gradient, in place."""
        for index, param in enumerate(self.params):
            if param.grad is None:
                continue
            grad = np.asarray(param.grad)
            if grad.shape != param.data.shape:
                raise ValueError(
                    f"{type(self).__name__}: gradient of params[{index}] "
                    f"({param.name or 'unnamed'}) has shape {grad.shape}, "
                    f"parameter has {param.data.shape}"
                )
            if grad.dtype != param.data.dtype:
                # Keep the update in the parameter's dtype (float32 stays float32).
                grad = grad.astype(param.data.dtype)
            self._update(param.data, grad, self.state[index])
        self.step_count += 1

    def zero_grad(self) -> None:
        """Set every parameter's gradient to None (PyTorch's ``set_to_none=True``)."""
        for param in self.params:
            param.grad = None

    # ----------------------------------------------------------- persistence
    def hyperparameters(self) -> dict[str, Any]:
        """The constructor hyper-parameters as JSON-able values (tuples as lists)."""
        values: dict[str, Any] = {}
        for name in self.hyperparameter_names:
            value = getattr(self, name)
            values[name] = list(value) if isinstance(value, tuple) else value
        return values

    def state_dict(self) -> dict[str, Any]:
        """A flat dict: JSON-able scalars plus numpy arrays for the per-parameter buffers.

        Keys: ``"type"`` (class name), ``"num_params"``, ``"step_count"``, one key
        per hyper-parameter (``"lr"``, ``"betas"``, ...), and
        ``"state.{index}.{name}"`` for each parameter's buffers (arrays) and
        step count (int). Arrays are copies.
        """
        result: dict[str, Any] = {
            "type": type(self).__name__,
            "num_params": len(self.params),
            "step_count": self.step_count,
        }
        result.update(self.hyperparameters())
        for index, state in enumerate(self.state):
            for key, value in state.items():
                if isinstance(value, np.ndarray):
                    value = value.copy()
                result[f"state.{index}.{key}"] = value
        return result

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyper-parameters, step counts and buffers saved by ``state_dict``.

        Accepts the values as saved or as read back from ``.npz``/JSON (0-d
        arrays, lists). Everything is checked before anything is changed: a
        mismatching dict raises ValueError and leaves the optimizer as it was.
        """
        owner = type(self).__name__
        saved_type = _as_str(state_dict.get("type", ""))
        if saved_type != owner:
            raise ValueError(f"{owner}.load_state_dict: the dict was saved by {saved_type!r}")
        num_params = int(np.asarray(state_dict.get("num_params", -1)).item())
        if num_params != len(self.params):
            raise ValueError(
                f"{owner}.load_state_dict: the dict holds state for {num_params} "
                f"parameters, this optimizer has {len(self.params)}"
            )
        missing = [n for n in ("step_count", *self.hyperparameter_names) if n not in state_dict]
        if missing:
            raise ValueError(f"{owner}.load_state_dict: missing keys {missing}")

        # Parse everything into locals first, so that a bad dict never half-loads.
        hyperparameters: dict[str, Any] = {}
        for name in self.hyperparameter_names:
            current, value = getattr(self, name), state_dict[name]
            if isinstance(current, bool):
                hyperparameters[name] = _as_bool(value)
            elif isinstance(current, tuple):
                hyperparameters[name] = tuple(float(v) for v in np.asarray(value).ravel())
            else:
                hyperparameters[name] = _as_float(value)

        states: list[dict[str, Any]] = [{} for _ in self.params]
        known = {"type", "num_params", "step_count", *self.hyperparameter_names}
        unexpected = []
        for key, value in state_dict.items():
            if key in known:
                continue
            parts = key.split(".")
            if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit():
                unexpected.append(key)
                continue
            index, name = int(parts[1]), parts[2]
            if index >= len(self.params):
                unexpected.append(key)
            elif name == "step":
                states[index]["step"] = int(np.asarray(value).item())
            elif name in self.state_array_names:
                param = self.params[index].data
                array = np.array(value, dtype=param.dtype, copy=True)
                if array.shape != param.shape:
                    raise ValueError(
                        f"{owner}.load_state_dict: {key} has shape {array.shape}, "
                        f"params[{index}] has shape {param.shape}"
                    )
                states[index][name] = array
            else:
                unexpected.append(key)
        if unexpected:
            raise ValueError(f"{owner}.load_state_dict: unexpected keys {sorted(unexpected)}")

        previous = {name: getattr(self, name) for name in self.hyperparameter_names}
        try:
            for name, value in hyperparameters.items():
                setattr(self, name, value)
            self._validate()
        except ValueError:
            for name, value in previous.items():
                setattr(self, name, value)
            raise
        self.state = states
        self.step_count = int(np.asarray(state_dict["step_count"]).item())

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({len(self.params)} params, {settings})"
