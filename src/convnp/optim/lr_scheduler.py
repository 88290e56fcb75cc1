"""Learning-rate schedulers: closed-form functions of the epoch that set ``optimizer.lr``.

``LRScheduler`` is the base class; ``StepLR``, ``CosineAnnealingLR``,
``LinearWarmup`` and ``WarmupCosine`` give the same rates as their
``torch.optim.lr_scheduler`` counterparts. ``SCHEDULERS`` maps the short names
that the command line accepts to the classes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from convnp.optim.optimizer import Optimizer, _as_float, _as_str, _check_nonnegative

__all__ = ["SCHEDULERS", "CosineAnnealingLR", "LRScheduler", "LinearWarmup", "StepLR", "WarmupCosine"]


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
