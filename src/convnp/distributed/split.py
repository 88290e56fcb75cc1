"""Where a batch or a dataset is cut between ranks: one contiguous piece each, in rank order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convnp.distributed.communicator import Communicator

__all__ = ["rank_bounds", "BatchShard"]


def rank_bounds(count: int, size: int) -> list[int]:
    """Rank r gets items ``bounds[r]:bounds[r + 1]`` of ``count``: contiguous pieces whose sizes differ by at most one.

    bounds[r] = floor(count * r / size).
    """
    return [count * r // size for r in range(size + 1)]


@dataclass(frozen=True)
class BatchShard:
    """This rank's piece of a global batch of ``batch`` samples: samples ``start:stop``, and the sums across ranks.

    ``Network.train_pass(..., ranks=shard)`` runs the piece as part of the
    global batch: its loss and gradients are weighted by its share of the
    global batch, and batch norm and dropout exchange with the other ranks
    through ``sum``.
    """

    communicator: Communicator
    batch: int
    start: int
    stop: int

    @classmethod
    def of(cls, communicator: Communicator, batch: int) -> BatchShard:
        """This rank's piece of a global batch of ``batch`` samples (``rank_bounds``)."""
        bounds = rank_bounds(batch, communicator.size)
        return cls(communicator, batch, bounds[communicator.rank], bounds[communicator.rank + 1])

    @property
    def size(self) -> int:
        """The number of ranks sharing the batch."""
        return self.communicator.size

    def sum(self, array: np.ndarray) -> np.ndarray:
        """The sum of every rank's ``array``, added in rank order (the same array on every rank)."""
        return self.communicator.sum_in_rank_order(array, "an exchange of the training pass (batch norm, loss)")
