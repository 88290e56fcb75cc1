"""The sum of the parameters' gradients over the ranks: one ``Allreduce`` of one flat buffer per dtype."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from convnp.distributed.communicator import Communicator
from convnp.parameter import Parameter

__all__ = ["sum_gradients"]


def sum_gradients(params: Iterable[Parameter], communicator: Communicator) -> None:
    """Replace every ``param.grad`` by its sum over the ranks.

    The gradients are copied, in the order given (the same on every rank),
    into one contiguous buffer per dtype, which is summed in place by one
    ``Allreduce``; each ``grad`` then becomes its piece of the buffer. Parameters
    without a gradient are left out (they have none on any rank).
    """
    if communicator.size == 1:
        return
    by_dtype: dict[np.dtype, list[Parameter]] = {}
    for param in params:
        if param.grad is not None:
            by_dtype.setdefault(param.grad.dtype, []).append(param)
    for dtype, group in by_dtype.items():
        sizes = [param.grad.size for param in group]
        buffer = np.empty(sum(sizes), dtype=dtype)  # a new one each step: the grads below are views of it
        offsets = np.cumsum([0, *sizes])
        for param, first, last in zip(group, offsets[:-1], offsets[1:]):
            buffer[first:last] = param.grad.ravel()
        communicator.allreduce_sum(buffer, f"the sum of the gradients ({buffer.nbytes:,} bytes)")
        for param, first, last in zip(group, offsets[:-1], offsets[1:]):
            param.grad = buffer[first:last].reshape(param.grad.shape)
