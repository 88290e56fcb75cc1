"""``get_optimizer``: an optimizer from its name, or a given one checked against a model."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from convnp.optim.adam import Adam, AdamW
from convnp.optim.optimizer import Optimizer
from convnp.optim.rmsprop import RMSprop
from convnp.optim.sgd import SGD
from convnp.parameter import Parameter

__all__ = ["OPTIMIZERS", "get_optimizer"]

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
