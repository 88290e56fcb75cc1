"""Optimizers and learning-rate schedulers, PyTorch-style.

An optimizer holds a list of ``Parameter``s and, on ``step()``, updates each
``Parameter.data`` in place from the gradient that the last backward pass left
in ``Parameter.grad`` (parameters whose ``grad`` is None are skipped, as in
PyTorch). The update rules follow ``torch.optim``'s documented algorithms line
by line, so the same gradients give the same parameters to float rounding; the
arithmetic runs in the parameter's own dtype (float32 stays float32).

    opt = Adam(model.parameters(), lr=1e-3)
    sched = CosineAnnealingLR(opt, T_max=epochs)
    for epoch in range(epochs):
        for x, y in batches:
            opt.zero_grad()
            loss, dlogits = softmax_cross_entropy(model.forward(x, training=True), y)
            model.backward(dlogits)
            opt.step()
        sched.step()

``state_dict()`` returns a flat dict of JSON-able scalars and numpy arrays
(``"lr"``, ``"betas"``, ``"state.3.exp_avg"``, ...) so that it can be stored in
an ``.npz`` (arrays) plus JSON (the rest); ``load_state_dict`` restores it so
that training continues bit-identically. See docs/optim.md for the formulas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from convnp.parameter import Parameter

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "LRScheduler",
    "LinearWarmup",
    "Optimizer",
    "RMSprop",
    "SGD",
    "StepLR",
    "WarmupCosine",
    "clip_grad_norm",
    "get_optimizer",
]


# --------------------------------------------------------------------- helpers
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


# ------------------------------------------------------------------ optimizers
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


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and weight decay.

    For each parameter p with gradient g (as ``torch.optim.SGD``)::

        g = g + weight_decay * p                      if weight_decay != 0
        if momentum != 0:
            buf = g                                   on the first step
            buf = momentum * buf + (1 - dampening) * g   afterwards
            g = g + momentum * buf                    if nesterov
            g = buf                                   otherwise
        p = p - lr * g

    Parameters
    ----------
    params : iterable of Parameter
    lr : float, default 0.01
    momentum : float, default 0
    dampening : float, default 0
        Scales the new gradient's share of the momentum buffer (not on the first step).
    nesterov : bool, default False
        Needs ``momentum > 0`` and ``dampening == 0``.
    weight_decay : float, default 0
        L2 penalty added to the gradient.
    """

    hyperparameter_names = ("lr", "momentum", "dampening", "nesterov", "weight_decay")
    state_array_names = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.01,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        self.momentum = float(momentum)
        self.dampening = float(dampening)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        self._validate()

    def _validate(self) -> None:
        _check_nonnegative("SGD", "momentum", self.momentum)
        _check_nonnegative("SGD", "weight_decay", self.weight_decay)
        if self.nesterov and (self.momentum <= 0.0 or self.dampening != 0.0):
            raise ValueError(
                "SGD: nesterov=True needs momentum > 0 and dampening == 0, got "
                f"momentum={self.momentum}, dampening={self.dampening}"
            )

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        lr, momentum = self.lr, self.momentum
        if self.weight_decay != 0.0:
            grad = grad + self.weight_decay * param  # new array: never change p.grad
        if momentum != 0.0:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                # PyTorch starts the buffer at the first gradient, not at zero
                # (and without dampening), so step 1 is a plain SGD step.
                buffer = state["momentum_buffer"] = grad.copy()
            else:
                buffer = _buffer(state, "momentum_buffer", param)
                buffer *= momentum
                buffer += (1.0 - self.dampening) * grad
            grad = grad + momentum * buffer if self.nesterov else buffer
        param -= lr * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba), with optional L2 weight decay and AMSGrad, as ``torch.optim.Adam``.

    For each parameter p with gradient g, at its t-th update (t counts from 1)::

        g = g + weight_decay * p                      if weight_decay != 0
        m = beta1 * m + (1 - beta1) * g               (m, v start at 0)
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                         if amsgrad (use v_max below)
        denom = sqrt(v) / sqrt(1 - beta2**t) + eps
        p = p - (lr / (1 - beta1**t)) * m / denom

    Parameters
    ----------
    params : iterable of Parameter
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment averages, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator (after the bias correction, as PyTorch does).
    weight_decay : float, default 0
        L2 penalty added to the gradient (coupled; see ``AdamW`` for decoupled).
    amsgrad : bool, default False
        Divide by the running maximum of v instead of v.
    """

    hyperparameter_names = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    state_array_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    decoupled_weight_decay = False

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError) as error:
            raise ValueError(f"{type(self).__name__}: betas must be a pair (beta1, beta2), got {betas!r}") from error
        self.betas = (float(beta1), float(beta2))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.amsgrad = bool(amsgrad)
        self._validate()

    def _validate(self) -> None:
        owner = type(self).__name__
        for position, beta in enumerate(self.betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{owner}: invalid beta{position + 1} {beta!r} (must be in [0, 1))")
        _check_nonnegative(owner, "eps", self.eps)
        _check_nonnegative(owner, "weight_decay", self.weight_decay)

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        lr, (beta1, beta2), weight_decay = self.lr, self.betas, self.weight_decay
        step = state["step"] = state.get("step", 0) + 1
        if weight_decay != 0.0:
            if self.decoupled_weight_decay:
                # AdamW: shrink the weights directly; the decay never enters m or v.
                param *= 1.0 - lr * weight_decay
            else:
                grad = grad + weight_decay * param
        exp_avg = _buffer(state, "exp_avg", param)
        exp_avg_sq = _buffer(state, "exp_avg_sq", param)
        # m = beta1*m + (1-beta1)*g, written as PyTorch's lerp m + (1-beta1)*(g-m)
        # so that the rounding matches too.
        exp_avg += (1.0 - beta1) * (grad - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * grad * grad
        if self.amsgrad:
            second_moment = _buffer(state, "max_exp_avg_sq", param)
            np.maximum(second_moment, exp_avg_sq, out=second_moment)
        else:
            second_moment = exp_avg_sq
        bias_correction1 = 1.0 - beta1**step
        bias_correction2 = 1.0 - beta2**step
        step_size = lr / bias_correction1
        denom = np.sqrt(second_moment) / math.sqrt(bias_correction2)
        denom += self.eps
        param -= step_size * (exp_avg / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    Identical to ``Adam`` except that the decay shrinks the weights before the
    Adam step instead of entering the gradient::

        p = p * (1 - lr * weight_decay)
        (then the Adam update of p with the raw gradient g)

    Parameters are those of ``Adam``; ``weight_decay`` defaults to 1e-2.
    """

    decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


class RMSprop(Optimizer):
    """RMSprop (Hinton) with optional momentum and centering, as ``torch.optim.RMSprop``.

    For each parameter p with gradient g::

        g = g + weight_decay * p                      if weight_decay != 0
        v = alpha * v + (1 - alpha) * g * g           (v, g_avg, buf start at 0)
        if centered:
            g_avg = alpha * g_avg + (1 - alpha) * g
            denom = sqrt(v - g_avg * g_avg) + eps
        else:
            denom = sqrt(v) + eps
        if momentum > 0:
            buf = momentum * buf + g / denom
            p = p - lr * buf
        else:
            p = p - lr * g / denom

    There is no bias correction: v starts at 0, so early steps are large
    (PyTorch's behaviour, kept on purpose).

    Parameters
    ----------
    params : iterable of Parameter
    lr : float, default 1e-2
    alpha : float, default 0.99
        Decay rate of the squared-gradient average.
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum : float, default 0
    centered : bool, default False
        Normalise by an estimate of the gradient's variance instead of its
        second moment.
    """

    hyperparameter_names = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")
    state_array_names = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        super().__init__(params, lr)
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.momentum = float(momentum)
        self.centered = bool(centered)
        self._validate()

    def _validate(self) -> None:
        _check_nonnegative("RMSprop", "alpha", self.alpha)
        _check_nonnegative("RMSprop", "eps", self.eps)
        _check_nonnegative("RMSprop", "weight_decay", self.weight_decay)
        _check_nonnegative("RMSprop", "momentum", self.momentum)

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        alpha = self.alpha
        state["step"] = state.get("step", 0) + 1
        if self.weight_decay != 0.0:
            grad = grad + self.weight_decay * param
        square_avg = _buffer(state, "square_avg", param)
        square_avg *= alpha
        square_avg += (1.0 - alpha) * grad * grad
        if self.centered:
            grad_avg = _buffer(state, "grad_avg", param)
            grad_avg += (1.0 - alpha) * (grad - grad_avg)  # PyTorch's lerp form
            # v >= g_avg**2 in exact arithmetic; the clamp only turns a rounding
            # -0.0...1 (where sqrt would give NaN) into 0.
            denom = np.sqrt(np.maximum(square_avg - grad_avg * grad_avg, 0.0))
        else:
            denom = np.sqrt(square_avg)
        denom += self.eps
        if self.momentum > 0.0:
            buffer = _buffer(state, "momentum_buffer", param)
            buffer *= self.momentum
            buffer += grad / denom
            param -= self.lr * buffer
        else:
            param -= self.lr * (grad / denom)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
}


def get_optimizer(
    name_or_optimizer: str | Optimizer,
    params: Iterable[Parameter] | None = None,
    lr: float | None = None,
    **kwargs: Any,
) -> Optimizer:
    """An optimizer from its name, or a given optimizer checked against ``params``.

    Parameters
    ----------
    name_or_optimizer : str or Optimizer
        One of "sgd", "adam", "adamw", "rmsprop" (exact name, any case), or an
        ``Optimizer`` instance, which is returned as is.
    params : iterable of Parameter
        Required with a name. With an instance, when given, every parameter the
        optimizer holds must be among them (catches an optimizer built over
        another model, which would silently train nothing).
    lr : float, optional
        Learning rate for a named optimizer; None uses that optimizer's default.
        Not accepted with an instance (set ``optimizer.lr`` instead).
    **kwargs
        Further constructor arguments for a named optimizer (``momentum=0.9``).
    """
    if isinstance(name_or_optimizer, Optimizer):
        optimizer = name_or_optimizer
        if lr is not None or kwargs:
            raise ValueError(
                "get_optimizer: lr and other settings apply only to an optimizer given "
                f"by name; {type(optimizer).__name__} is already built (set its .lr instead)"
            )
        if params is not None:
            wanted = {id(p) for p in params}
            foreign = [i for i, p in enumerate(optimizer.params) if id(p) not in wanted]
            if foreign:
                raise ValueError(
                    f"get_optimizer: {type(optimizer).__name__} holds parameters that are not "
                    f"among the given params (indices {foreign}); build it over "
                    "this model's parameters()"
                )
        return optimizer
    if not isinstance(name_or_optimizer, str):
        raise TypeError(
            f"get_optimizer: expected an optimizer name or an Optimizer, got {type(name_or_optimizer).__name__}"
        )
    optimizer_class = OPTIMIZERS.get(name_or_optimizer.lower())
    if optimizer_class is None:
        raise ValueError(
            f"get_optimizer: unknown optimizer {name_or_optimizer!r}; "
            f"valid names: {', '.join(repr(n) for n in OPTIMIZERS)}"
        )
    if params is None:
        raise ValueError(f"get_optimizer: params are needed to build {optimizer_class.__name__}")
    if lr is not None:
        kwargs["lr"] = lr
    return optimizer_class(params, **kwargs)


def clip_grad_norm(
    params: Iterable[Parameter] | Parameter,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """Rescale the gradients so that their global norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: the norm is taken over all gradients
    together, as if concatenated into one vector::

        total_norm = (sum over params of sum(|g| ** norm_type)) ** (1 / norm_type)
        total_norm = max over params of max(|g|)      if norm_type is inf
        g = g * (max_norm / (total_norm + 1e-6))      if that factor is < 1

    Parameters whose ``grad`` is None are ignored. Gradients are replaced by
    rescaled copies of the same dtype (never changed in place, in case the
    array is shared). The norm is accumulated in float64.

    Returns
    -------
    float
        The total norm before clipping.
    """
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not max_norm >= 0.0:
        raise ValueError(f"clip_grad_norm: max_norm must be >= 0, got {max_norm}")
    if not norm_type > 0.0:
        raise ValueError(f"clip_grad_norm: norm_type must be > 0 or inf, got {norm_type}")
    if isinstance(params, Parameter):
        params = [params]
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return 0.0
    if math.isinf(norm_type):
        total_norm = max(float(np.max(np.abs(p.grad), initial=0.0)) for p in with_grad)
    else:
        # Per-tensor norms, then the norm of those: equal to the norm of the
        # concatenation, without building it.
        norms = [np.linalg.norm(np.asarray(p.grad, dtype=np.float64).ravel(), ord=norm_type) for p in with_grad]
        total_norm = float(np.linalg.norm(np.asarray(norms), ord=norm_type))
    if error_if_nonfinite and not math.isfinite(total_norm):
        raise ValueError(f"clip_grad_norm: the total gradient norm is {total_norm}")
    clip_coef = max_norm / (total_norm + 1e-6)
    if clip_coef < 1.0:
        for param in with_grad:
            param.grad = param.grad * clip_coef  # Python float keeps the grad's dtype
    return total_norm


# ------------------------------------------------------------------ schedulers
class LRScheduler:
    """Base class: sets ``optimizer.lr`` from a closed-form function of the epoch.

    On construction the scheduler records ``base_lr = optimizer.lr`` and sets
    the learning rate for epoch 0; each ``step()`` (once per epoch, after that
    epoch's optimizer steps) moves to the next epoch, like PyTorch's
    ``LRScheduler``. Subclasses implement ``lr_at(epoch)`` and list their
    arguments in ``hyperparameter_names``.

    Attributes:
        optimizer: the optimizer whose ``lr`` is set.
        base_lr: the optimizer's learning rate when the scheduler was made.
        last_epoch: the epoch whose learning rate is in effect (0 at first).
    """

    hyperparameter_names: tuple[str, ...] = ()

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected a convnp.optim.Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self._validate()
        self._apply()

    def _validate(self) -> None:
        """Raise ValueError naming the scheduler when an argument is out of range."""

    def lr_at(self, epoch: int) -> float:
        """The learning rate for ``epoch`` (0-based)."""
        raise NotImplementedError

    def _apply(self) -> None:
        self._last_lr = self.lr_at(self.last_epoch)
        self.optimizer.lr = self._last_lr

    def step(self) -> None:
        """Advance one epoch and set the optimizer's learning rate for it."""
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """The learning rate in effect, as a one-element list (PyTorch's form)."""
        return [self._last_lr]

    def state_dict(self) -> dict[str, Any]:
        """JSON-able dict: ``type``, ``base_lr``, ``last_epoch`` and the arguments."""
        result: dict[str, Any] = {
            "type": type(self).__name__,
            "base_lr": self.base_lr,
            "last_epoch": self.last_epoch,
        }
        for name in self.hyperparameter_names:
            result[name] = getattr(self, name)
        return result

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a ``state_dict`` and set the optimizer's lr for the restored epoch."""
        owner = type(self).__name__
        saved_type = _as_str(state_dict.get("type", ""))
        if saved_type != owner:
            raise ValueError(f"{owner}.load_state_dict: the dict was saved by {saved_type!r}")
        names = ("base_lr", "last_epoch", *self.hyperparameter_names)
        missing = [n for n in names if n not in state_dict]
        if missing:
            raise ValueError(f"{owner}.load_state_dict: missing keys {missing}")
        previous = {name: getattr(self, name) for name in names}
        try:
            for name in names:
                value = state_dict[name]
                is_int = isinstance(previous[name], int)
                setattr(self, name, int(np.asarray(value).item()) if is_int else _as_float(value))
            self._validate()
            self._apply()
        except ValueError:
            for name, value in previous.items():
                setattr(self, name, value)
            raise

    def __repr__(self) -> str:
        settings = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.hyperparameter_names)
        return f"{type(self).__name__}({settings}, last_epoch={self.last_epoch})"


def _check_epochs(owner: str, name: str, value: Any, minimum: int) -> int:
    """``value`` as an int, or ValueError naming ``owner`` unless it is an integer >= minimum."""
    try:
        as_int = int(value)
        valid = not isinstance(value, bool) and as_int == value and as_int >= minimum
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return as_int


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    lr(epoch) = base_lr * gamma ** floor(epoch / step_size)

    The closed form of ``torch.optim.lr_scheduler.StepLR``.
    """

    hyperparameter_names = ("step_size", "gamma")

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _check_epochs("StepLR", "step_size", step_size, 1)
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def _validate(self) -> None:
        _check_epochs("StepLR", "step_size", self.step_size, 1)
        _check_nonnegative("StepLR", "gamma", self.gamma)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """Cosine decay from ``base_lr`` to ``eta_min`` over ``T_max`` epochs.

    lr(epoch) = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2

    The closed form of ``torch.optim.lr_scheduler.CosineAnnealingLR`` (PyTorch
    computes the same values recursively); past ``T_max`` the cosine goes on
    and the rate rises again, as in PyTorch.
    """

    hyperparameter_names = ("T_max", "eta_min")

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803
        self.T_max = _check_epochs("CosineAnnealingLR", "T_max", T_max, 1)
        self.eta_min = float(eta_min)
        super().__init__(optimizer)

    def _validate(self) -> None:
        _check_epochs("CosineAnnealingLR", "T_max", self.T_max, 1)
        _check_nonnegative("CosineAnnealingLR", "eta_min", self.eta_min)

    def lr_at(self, epoch: int) -> float:
        cosine = (1.0 + math.cos(math.pi * epoch / self.T_max)) / 2.0
        return self.eta_min + (self.base_lr - self.eta_min) * cosine


class LinearWarmup(LRScheduler):
    """Ramp the learning rate linearly from ``start_factor * base_lr`` over ``warmup_epochs``.

    lr(epoch) = base_lr * (start_factor + (end_factor - start_factor)
                           * min(epoch, warmup_epochs) / warmup_epochs)

    The closed form of ``torch.optim.lr_scheduler.LinearLR(start_factor,
    end_factor, total_iters=warmup_epochs)``; constant ``end_factor * base_lr``
    afterwards.
    """

    hyperparameter_names = ("warmup_epochs", "start_factor", "end_factor")

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_epochs: int,
        start_factor: float = 1.0 / 3.0,
        end_factor: float = 1.0,
    ) -> None:
        self.warmup_epochs = _check_epochs("LinearWarmup", "warmup_epochs", warmup_epochs, 0)
        self.start_factor = float(start_factor)
        self.end_factor = float(end_factor)
        super().__init__(optimizer)

    def _validate(self) -> None:
        _check_epochs("LinearWarmup", "warmup_epochs", self.warmup_epochs, 0)
        if not 0.0 < self.start_factor <= 1.0:
            raise ValueError(f"LinearWarmup: start_factor must be in (0, 1], got {self.start_factor}")
        if not 0.0 <= self.end_factor <= 1.0:
            raise ValueError(f"LinearWarmup: end_factor must be in [0, 1], got {self.end_factor}")

    def lr_at(self, epoch: int) -> float:
        if epoch >= self.warmup_epochs:
            return self.base_lr * self.end_factor
        fraction = epoch / self.warmup_epochs
        return self.base_lr * (self.start_factor + (self.end_factor - self.start_factor) * fraction)


class WarmupCosine(LRScheduler):
    """Linear warm-up for ``warmup_epochs``, then cosine decay to ``eta_min`` at ``total_epochs``.

    With W = warmup_epochs and T = total_epochs:

    lr(epoch) = base_lr * (start_factor + (1 - start_factor) * epoch / W)      epoch < W
              = eta_min + (base_lr - eta_min) * (1 + cos(pi * (epoch - W) / (T - W))) / 2
                                                                              W <= epoch <= T
              = eta_min                                                       epoch > T

    Equal to PyTorch's ``SequentialLR([LinearLR(start_factor, total_iters=W),
    CosineAnnealingLR(T_max=total_epochs - W, eta_min)], milestones=[W])`` up to
    ``total_epochs``; it then stays at ``eta_min`` instead of rising again.
    """

    hyperparameter_names = ("warmup_epochs", "total_epochs", "eta_min", "start_factor")

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_epochs: int,
        total_epochs: int,
        eta_min: float = 0.0,
        start_factor: float = 1.0 / 3.0,
    ) -> None:
        self.warmup_epochs = _check_epochs("WarmupCosine", "warmup_epochs", warmup_epochs, 0)
        self.total_epochs = _check_epochs("WarmupCosine", "total_epochs", total_epochs, 1)
        self.eta_min = float(eta_min)
        self.start_factor = float(start_factor)
        super().__init__(optimizer)

    def _validate(self) -> None:
        if self.total_epochs <= self.warmup_epochs:
            raise ValueError(
                f"WarmupCosine: total_epochs ({self.total_epochs}) must exceed warmup_epochs ({self.warmup_epochs})"
            )
        if not 0.0 < self.start_factor <= 1.0:
            raise ValueError(f"WarmupCosine: start_factor must be in (0, 1], got {self.start_factor}")
        _check_nonnegative("WarmupCosine", "eta_min", self.eta_min)

    def lr_at(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            fraction = epoch / self.warmup_epochs
            return self.base_lr * (self.start_factor + (1.0 - self.start_factor) * fraction)
        if epoch >= self.total_epochs:
            return self.eta_min
        progress = (epoch - self.warmup_epochs) / (self.total_epochs - self.warmup_epochs)
        cosine = (1.0 + math.cos(math.pi * progress)) / 2.0
        return self.eta_min + (self.base_lr - self.eta_min) * cosine


SCHEDULERS: dict[str, type[LRScheduler]] = {
    "step": StepLR,
    "cosine": CosineAnnealingLR,
    "warmup": LinearWarmup,
    "warmup_cosine": WarmupCosine,
}
