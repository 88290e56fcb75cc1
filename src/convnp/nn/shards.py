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

Across MPI ranks (``ranks``, a ``convnp.distributed.BatchShard``) the batch
one process runs is itself one rank's piece of a global batch: the shards'
positions are then positions in the global batch, ``sum`` adds the threads'
parts and then the ranks' (in rank order, the same on every rank), and
``all_finite`` asks every rank. ``from_first`` stays inside the process:
every rank draws the same whole-batch values from the same random state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from convnp.backend.reductions import ordered_sum
from convnp.backend.threads import parallel_over_batch, single_threaded_blas, slice_bounds

if TYPE_CHECKING:
    from convnp.distributed import BatchShard
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


def run_in_shards(
    plan: Plan,
    batch: int,
    run_shard: Callable[[Plan, int, int], T],
    exchanges: bool = False,
    ranks: BatchShard | None = None,
    split: bool = True,
) -> list[T]:
    """``run_shard(twins, start, end)`` on one contiguous shard of the batch per core, each with its own twins.

    The twins are ``shard_copy``s of the plan's steps: shared weights, their own
    caches. With ``exchanges``, each shard's layers get its ``ShardContext``
    (``Layer.shard``) for what batch norm and dropout share across shards, and,
    with ``ranks``, across MPI ranks. ``split=False`` runs the batch as one
    shard. Returns the shards' results in order.
    """
    work = pass_work(plan, batch)
    bounds = slice_bounds(batch, work) if split else [0, batch]
    group = ShardGroup(bounds, ranks) if exchanges and (len(bounds) > 2 or ranks is not None) else None

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

    if len(bounds) == 2:
        with single_threaded_blas():
            return [shard(0, batch)]
    with single_threaded_blas():
        return parallel_over_batch(batch, work, shard)


class ShardGroup:
    """The meeting point of the shards of one pass: a barrier and the values exchanged at it."""

    def __init__(self, bounds: list[int], ranks: BatchShard | None = None) -> None:
        #: Shard i covers samples bounds[i]..bounds[i + 1] - 1 of this process's batch.
        self.bounds = bounds
        self.count = len(bounds) - 1
        self.ranks = ranks
        #: Where this process's batch starts in the global batch, and the global batch's size.
        self.offset = 0 if ranks is None else ranks.start
        self.batch = bounds[-1] if ranks is None else ranks.batch
        # The last shard to arrive combines the values (the action), before any shard leaves.
        self.barrier = threading.Barrier(self.count, action=self._combine)
        self._values: list[Any] = [None] * self.count
        self._combine_values: Callable[[list[Any]], Any] | None = None
        self._result: Any = None

    def context(self, index: int) -> ShardContext:
        return ShardContext(self, index)

    def _combine(self) -> None:
        self._result = self._combine_values(self._values)

    def exchange(self, index: int, value: Any, combine: Callable[[list[Any]], Any]) -> Any:
        """``combine(every shard's value, in shard order)``, computed once (waits for all shards); the same in each.

        Every shard passes the same ``combine`` for the same exchange. A shard
        reads the result before it can arrive at the next exchange, and the
        next result is computed only once every shard has arrived there.
        """
        self._values[index] = value
        self._combine_values = combine
        self.barrier.wait()
        return self._result

    def across_ranks(self, total: np.ndarray) -> np.ndarray:
        """The sum of this process's ``total`` over the ranks (itself without ranks)."""
        return total if self.ranks is None else self.ranks.sum(total)

    def abort(self) -> None:
        """Release every shard waiting at the barrier, with ``BrokenBarrierError``."""
        self.barrier.abort()


class ShardContext:
    """One shard's view of its ``ShardGroup``: which samples it runs, and the exchanges.

    ``start``, ``stop`` and ``batch`` are positions in, and the size of, the
    whole batch (the global batch across MPI ranks); ``index`` is the shard's
    number in this process (0: the shard that keeps batch norm's running
    statistics).
    """

    def __init__(self, group: ShardGroup, index: int) -> None:
        self.group = group
        self.index = index
        self.start = group.offset + group.bounds[index]
        self.stop = group.offset + group.bounds[index + 1]
        self.batch = group.batch

    def sum(self, part: np.ndarray) -> np.ndarray:
        """The sum of every shard's ``part``, added in shard order (the same array in every shard)."""
        return self.group.exchange(self.index, part, lambda parts: self.group.across_ranks(ordered_sum(parts)))

    def from_first(self, make: Callable[[], Any]) -> Any:
        """``make()``, called by the first shard only; every shard gets its result."""
        return self.group.exchange(self.index, make() if self.index == 0 else None, lambda values: values[0])

    def all_finite(self, value: float) -> bool:
        """Whether every shard's ``value`` is finite (the same answer in every shard)."""

        def combine(values: list[float]) -> bool:
            infinite = np.array(int(not np.all(np.isfinite(values))), dtype=np.int64)
            return bool(self.group.across_ranks(infinite) == 0)

        return self.group.exchange(self.index, value, combine)
