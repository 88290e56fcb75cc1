"""The execution engine: a plan of steps run forward, backward, in training and in inference.

A model hands the engine its plan (``convnp/nn/plan.py``: a list of steps,
each with ``forward`` and ``backward``, reading and writing numbered values);
the engine knows nothing else of the model. A chain (``Sequential``) and a
graph (``Model``) run the same way. Four passes:

- ``forward``: ``for step in plan: x = step.forward(x, training)``, each step
  reading the values it names; a value is dropped once its last reader ran;
- ``backward``: the steps in reverse, each adding its parameter gradients.
  A value read by several steps (a skip connection's fan-out) receives the
  sum of their gradients: by the chain rule, dL/dv = sum over the readers r
  of dL/dr * dr/dv. A step that reads only the model input skips its input
  gradient unless asked for it (the first convolution's dx is a third of its
  backward work);
- ``train_pass``: forward, loss and backward for one batch, as one shard per
  core when the plan allows (``convnp/nn/shards.py``), the shards' gradients
  summed in shard order; or for one MPI rank's piece of a global batch;
- ``infer``: an inference pass as one shard per core, each step's input freed
  as soon as it is used.

Every pass keeps BLAS at one thread (``backend.threads.single_threaded_blas``):
the parallelism is the batch split, inside each op or across whole shards.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from convnp.backend import threads
from convnp.backend.reductions import ordered_sum
from convnp.backend.threads import single_threaded_blas
from convnp.nn.plan import Plan
from convnp.nn.shards import pass_work, run_in_shards, shardable

if TYPE_CHECKING:
    from convnp.distributed import BatchShard

__all__ = ["forward", "backward", "train_pass", "infer"]

LossFunction = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]


def forward(plan: Plan, x: np.ndarray, training: bool) -> np.ndarray:
    """Run the steps in order; returns the plan's result."""
    values = {0: x}
    uses = plan.uses()
    with single_threaded_blas():  # every product runs inside a batch-split op (backend/threads.py)
        for step in plan:
            inputs = [values[value] for value in step.inputs]
            values[step.output] = step.forward(inputs if len(inputs) > 1 else inputs[0], training)
            for value in step.inputs:
                uses[value] -= 1
                if uses[value] == 0:
                    del values[value]  # read by no later step: free it
    return values[plan.output]


def backward(plan: Plan, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
    """The steps backwards, from the gradient of the plan's result; fills every parameter's ``grad``.

    Returns the gradient of the plan's input, or None with ``input_grad=False``.
    """
    grads = {plan.output: grad}
    with single_threaded_blas():
        for step in reversed(plan.steps):
            needed = input_grad or any(value != 0 for value in step.inputs)
            input_grads = step.backward(grads.pop(step.output), needed)
            if not needed:
                continue
            if len(step.inputs) == 1:
                input_grads = [input_grads]
            for value, value_grad in zip(step.inputs, input_grads):
                # A value read by several steps gets the sum of their gradients (fan-out).
                grads[value] = value_grad if value not in grads else grads[value] + value_grad
    return grads.get(0)


def train_pass(
    plan: Plan, x: np.ndarray, targets: np.ndarray, loss_fn: LossFunction, ranks: BatchShard | None = None
) -> tuple[float, np.ndarray]:
    """Forward in training mode, loss, backward: fills every parameter's ``grad``; returns ``(loss, outputs)``.

    ``loss_fn(outputs, targets)`` returns the mean loss over the samples it is
    given and its gradient with respect to ``outputs``. The input gradient is
    not computed, and when the loss is not finite no gradient is stored.

    The batch is cut into one shard per core and each shard runs the whole
    pass on its own twins of the steps. Each shard's loss and gradient are
    weighted by its share of the batch, so the sum over shards (taken in shard
    order, hence reproducible) is the gradient of the batch's mean loss.
    Batch norm and dropout, which need the whole batch, exchange their sums
    and masks between the shards. A plan with a layer that needs the whole
    batch but cannot exchange, and a pass too small for its exchanges to pay
    (the shards would meet more often than there is work between meetings:
    tiny images and batches), run as one piece, each op splitting the batch
    by itself when it is big enough.

    With ``ranks`` (a ``convnp.distributed.BatchShard``), ``x`` is this MPI
    rank's piece ``ranks.start:ranks.stop`` of a global batch of ``ranks.batch``
    samples: shares are shares of the global batch and batch norm and dropout
    exchange across the ranks too, so the loss returned is this rank's part of
    the global batch's mean loss and the gradients are this rank's part of its
    gradient (the ranks' parts add up to them). Every rank must make the pass.
    """
    layers = [layer for step in plan for layer in step.layers]
    batch = len(x)
    whole = batch if ranks is None else ranks.batch
    exchanges = sum(not all(part.batch_independent for part in layer.self_and_sublayers()) for layer in layers)
    # The shards meet at every layer that exchanges: each stretch of work between two
    # meetings must be worth it, by the rule that decides whether one op is split.
    worth_meeting = pass_work(plan, batch) // (exchanges + 1) >= threads.MIN_ELEMENTS
    if ranks is not None:
        alone = [layer for layer in layers if not shardable(layer)]
        if alone:
            raise ValueError(
                f"train_pass: {alone[0].label} needs the whole batch and cannot exchange it with the other "
                f"shards (Layer.shard_aware), so it cannot train across {ranks.size} MPI ranks"
            )
    elif not all(shardable(layer) for layer in layers) or not worth_meeting:
        outputs = forward(plan, x, training=True)
        loss, dlogits = loss_fn(outputs, targets)
        if math.isfinite(loss):
            backward(plan, dlogits, input_grad=False)
        return loss, outputs

    def run_shard(twins: Plan, start: int, end: int) -> tuple[float, np.ndarray, list[np.ndarray | None]]:
        outputs = forward(twins, x[start:end], training=True)
        loss, dlogits = loss_fn(outputs, targets[start:end])
        share = (end - start) / whole
        context = twins[0].layers[0].shard
        # With exchanges in the backward pass, all shards must agree to run it.
        finite = math.isfinite(loss) if context is None else context.all_finite(loss)
        if finite:
            if share != 1:
                dlogits = dlogits * dlogits.dtype.type(share)
            backward(twins, dlogits, input_grad=False)
        grads = [param.grad for step in twins for layer in step.layers for param in layer.parameters()]
        return loss * share, outputs, grads

    shards = run_in_shards(plan, batch, run_shard, exchanges=exchanges > 0, ranks=ranks, split=worth_meeting)
    loss = math.fsum(shard[0] for shard in shards)
    outputs = np.concatenate([shard[1] for shard in shards]) if len(shards) > 1 else shards[0][1]
    if math.isfinite(loss):
        params = [param for layer in layers for param in layer.parameters()]
        for index, param in enumerate(params):
            param.grad = ordered_sum([shard[2][index] for shard in shards])
    return loss, outputs


def infer(plan: Plan, x: np.ndarray) -> np.ndarray:
    """An inference pass that keeps nothing for a backward pass: one shard of the batch per core.

    Each step's caches are dropped as soon as the next step has its output, so
    every intermediate array is freed once used (and what an earlier pass left
    is dropped first).
    """

    def run_shard(twins: Plan, start: int, end: int) -> np.ndarray:
        values = {0: x[start:end]}
        uses = twins.uses()
        for step in twins:
            inputs = [values[value] for value in step.inputs]
            values[step.output] = step.forward(inputs if len(inputs) > 1 else inputs[0], training=False)
            step.drop_caches()  # nothing runs backward: free each input as soon as it is used
            for value in step.inputs:
                uses[value] -= 1
                if uses[value] == 0:
                    del values[value]
        return values[twins.output]

    for step in plan:  # an earlier pass's caches are stale now: free them before this pass
        step.drop_caches()
    outputs = run_in_shards(plan, len(x), run_shard)
    return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]
