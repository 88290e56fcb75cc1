"""Sharded passes: one whole pass per core on a slice of the batch, and what the shards share.

``run_in_shards`` cuts a batch into one shard per core and runs the whole
pass (forward, loss, backward, or inference) on each shard at the same time,
each on its own twins of the plan's steps (``Step.shard_copy``): the cores meet
once per pass instead of once per op. Most layers treat every sample on
its own and need nothing from the other shards. Two need the whole batch:

- batch norm normalises with the batch's mean and variance, and its backward
  pass needs the batch's sums of dout and dout * x_hat;
- dropout draws the mask of the whole batch from one random stream, so that a
  seed gives the same masks however the batch is cut.

Each shard's layers get a ``ShardContext`` (``Layer.shard``). ``sum`` adds up
one array from every shard, in shard order, so the result is the same in every
shard and the same as the one-piece pass, which sums the same per-slice parts
in the same order. ``from_first`` hands every shard a value computed once, by
the first shard.

Every shard makes the same exchanges in the same order (they run the same
layers), so the k-th exchange of one shard meets the k-th exchange of the
others at a barrier. A shard that fails breaks the barrier (``abort``), so the
others stop with ``threading.BrokenBarrierError`` instead of waiting forever.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from convnp.backend.reductions import ordered_sum
from convnp.backend.threads import parallel_over_batch, single_threaded_blas, slice_bounds

if TYPE_CHECKING:
    from convnp.nn.layer import Layer
    from convnp.nn.plan import Plan

__all__ = ["ShardGroup", "ShardContext", "run_in_shards", "pass_work", "shardable"]

T = TypeVar("T")


def pass_work(plan: Plan, batch: int) -> int:
    """The size of a pass, which grows with the values it computes: every step's output."""
    return batch * sum(step.output_size() for step in plan)


def shardable(layer: Layer) -> bool:
    """Whether a training pass can run this layer in shards: it treats samples alone or exchanges the rest."""
    return all(part.batch_independent or part.shard_aware for part in layer.self_and_sublayers())


def run_in_shards(plan: Plan, batch: int, run_shard: Callable[[Plan, int, int], T], exchanges: bool = False) -> list[T]:
    """``run_shard(twins, start, end)`` on one contiguous shard of the batch per core, each with its own twins.

    The twins are ``shard_copy``s of the plan's steps: shared weights, their own
    caches. With ``exchanges``, each shard's layers get its ``ShardContext``
    (``Layer.shard``) for what batch norm and dropout share across shards.
    Returns the shards' results in order.
    """
    work = pass_work(plan, batch)
    bounds = slice_bounds(batch, work)
    group = ShardGroup(bounds) if exchanges and len(bounds) > 2 else None

    def shard(start: int, end: int) -> T:
        twins = plan.shard_copy()
        if group is None:
            return run_shard(twins, start, end)
        context = group.context(bounds.index(start))
        for step in twins:
            for layer in step.layers:
                for part in layer.self_and_sublayers():
                    part.shard = context
        try:
            return run_shard(twins, start, end)
        except threading.BrokenBarrierError:
            return None  # another shard failed: its own exception is the one raised
        except BaseException:
            group.abort()  # release the other shards from the barrier
            raise

    with single_threaded_blas():
        return parallel_over_batch(batch, work, shard)


class ShardGroup:
    """The meeting point of the shards of one pass: a barrier and the values exchanged at it."""

    def __init__(self, bounds: list[int]) -> None:
        #: Shard i covers samples bounds[i]..bounds[i + 1] - 1 of the batch.
        self.bounds = bounds
        self.count = len(bounds) - 1
        self.barrier = threading.Barrier(self.count)
        self._values: dict[tuple[int, int], Any] = {}

    def context(self, index: int) -> ShardContext:
        return ShardContext(self, index)

    def exchange(self, index: int, call: int, value: Any) -> list[Any]:
        """Every shard's ``value`` for exchange number ``call``, in shard order (waits for all of them)."""
        self._values[call, index] = value  # each key is written once, by one shard
        self.barrier.wait()
        return [self._values[call, shard] for shard in range(self.count)]

    def abort(self) -> None:
        """Release every shard waiting at the barrier, with ``BrokenBarrierError``."""
        self.barrier.abort()


class ShardContext:
    """One shard's view of its ``ShardGroup``: which samples it runs, and the exchanges."""

    def __init__(self, group: ShardGroup, index: int) -> None:
        self.group = group
        self.index = index
        self.start, self.stop = group.bounds[index], group.bounds[index + 1]
        self.batch = group.bounds[-1]  # the whole batch's size
        self._calls = 0

    def _exchange(self, value: Any) -> list[Any]:
        self._calls += 1
        return self.group.exchange(self.index, self._calls, value)

    def sum(self, part: np.ndarray) -> np.ndarray:
        """The sum of every shard's ``part``, added in shard order (the same array in every shard)."""
        return ordered_sum(self._exchange(part))

    def from_first(self, make: Callable[[], Any]) -> Any:
        """``make()``, called by the first shard only; every shard gets its result."""
        return self._exchange(make() if self.index == 0 else None)[0]

    def all_finite(self, value: float) -> bool:
        """Whether every shard's ``value`` is finite (the same answer in every shard)."""
        return bool(np.all(np.isfinite(self._exchange(value))))
