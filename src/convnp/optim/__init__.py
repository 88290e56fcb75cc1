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

Modules, as in ``torch/optim/``: ``optimizer`` (the base class), ``sgd``,
``adam`` (Adam, AdamW), ``rmsprop``, ``factory`` (``get_optimizer``), ``clip``
(``clip_grad_norm``) and ``lr_scheduler``. The package needs only
``convnp.parameter`` and NumPy: importing it loads no layer.
"""

from convnp.optim.adam import Adam, AdamW
from convnp.optim.clip import clip_grad_norm
from convnp.optim.factory import OPTIMIZERS, get_optimizer
from convnp.optim.lr_scheduler import (
    SCHEDULERS,
    CosineAnnealingLR,
    LinearWarmup,
    LRScheduler,
    StepLR,
    WarmupCosine,
)
from convnp.optim.optimizer import Optimizer
from convnp.optim.rmsprop import RMSprop
from convnp.optim.sgd import SGD

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
