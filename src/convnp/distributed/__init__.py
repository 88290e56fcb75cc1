"""Data-parallel training over MPI: which process this is, and what the processes share.

Under ``mpiexec -n P`` (or ``srun``, or any MPI launcher) a script or
``convnp train`` runs as P processes, the ranks, each with a whole copy of the
model. ``fit`` cuts every global batch into P contiguous rank shards, sums the
gradients over the ranks before every optimizer step, and lets batch norm and
dropout see the whole global batch, so that P ranks train as one process with
the same seed and batch size does. ``evaluate`` and ``predict`` split the data
between the ranks. Rank 0 alone prints and writes files. See docs/distributed.md.

Outside a launcher, or with one rank, there is one process: ``rank()`` is 0,
``world_size()`` 1, nothing changes and mpi4py is never imported. With more
than one rank mpi4py is needed (``pip install convnp[mpi]``).

Under MPI, ``fit``, ``evaluate``, ``predict`` and ``in_turns`` are collective:
every rank must call them, in the same order (calling ``model(x)`` is not).

- ``launcher``: whether a launcher started this process; the world communicator;
- ``communicator``: the collective operations, each waited for with a deadline;
- ``split``: where a batch or a dataset is cut between ranks (``BatchShard``);
- ``gradients``: the gradient sum, one ``Allreduce`` of a flat buffer per dtype;
- ``failures``: ending the whole job when one rank fails or stops answering.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from convnp.distributed.communicator import Communicator, MPICommunicator
from convnp.distributed.failures import (
    get_timeout,
    on_every_rank,
    raised_on_every_rank,
    report_failure,
    set_timeout,
)
from convnp.distributed.gradients import sum_gradients
from convnp.distributed.launcher import launched_size, world
from convnp.distributed.split import BatchShard, rank_bounds

__all__ = [
    "rank", "world_size", "is_main", "in_turns", "world", "Communicator", "MPICommunicator", "BatchShard",
    "rank_bounds", "sum_gradients", "get_timeout", "set_timeout", "on_every_rank", "raised_on_every_rank",
    "report_failure", "launched_size",
]  # fmt: skip

T = TypeVar("T")


def rank() -> int:
    """This process's rank: 0 .. world_size() - 1 (0 outside an MPI launcher)."""
    return world().rank


def world_size() -> int:
    """How many ranks the job has (1 outside an MPI launcher)."""
    return world().size


def is_main() -> bool:
    """Whether this is rank 0, the one that prints progress and writes run folders, models and checkpoints."""
    return world().is_main


def in_turns(load: Callable[[], T]) -> T:
    """``load()`` on every rank, so that no two ranks fill one cache at the same time; returns its result.

    Rank 0 goes first (downloading a dataset into the cache if needed), then
    the first rank of every other host (which finds rank 0's files on a shared
    file system, or fills its own host's cache), then all the others, which
    find their host's copy. Collective: every rank must call it. The waits have
    no deadline (a download may take long): a ``load`` that fails ends the job
    through its error, a killed rank through the launcher.
    """
    communicator = world()
    if communicator.size == 1:
        return load()
    hosts = communicator.hosts()
    first_on_host = hosts.index(hosts[communicator.rank]) == communicator.rank
    turn = 0 if communicator.rank == 0 else 1 if first_on_host else 2
    result = None
    for current in range(3):
        if current == turn:
            result = load()
        communicator.barrier(f"in_turns (turn {current + 1} of 3)", timeout=None)
    return result
