"""The one helper every batched op runs through: per-core slices, cache-sized chunks, ordered sums.

An op in ``convnp.functional`` is written for one chunk of images,
``images[first:last]``, the way the formula reads (the CS231n version with
the batch axis cut into pieces). ``run_batched`` calls that function over the
whole batch: the batch is cut into one contiguous slice per core
(``threads.parallel_over_batch``), each slice into chunks of at most
``chunk`` images, and the chunks of a slice run one after another on its
core. ``sum_batched`` does the same and adds up what the chunks return (weight
and bias gradients, batch statistics) in a fixed order: chunk by chunk within
a slice, then slice by slice, so a result is the same on every run.
``map_batched`` returns what the chunks return as a list in batch order, for
per-chunk results that combine by more than a sum (batch norm's variance).

Why chunks: an im2col block of a few images (about ``CHUNK_BYTES``) is still
in the CPU cache when the matrix product reads it, and memory stays bounded
for any batch size. ``images_per_chunk`` picks the chunk size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from convnp.backend.reductions import add_parts, ordered_sum
from convnp.backend.threads import parallel_over_batch

__all__ = ["CHUNK_BYTES", "images_per_chunk", "run_batched", "sum_batched", "map_batched"]

# The size, in bytes, of the per-chunk working set that should stay in the CPU cache.
CHUNK_BYTES = 1 << 21

ChunkFunction = Callable[[int, int], Any]


def images_per_chunk(values_per_image: int, dtype: np.dtype) -> int:
    """How many images' working set of ``values_per_image`` values fits in about ``CHUNK_BYTES`` (at least 1)."""
    return max(1, CHUNK_BYTES // (values_per_image * np.dtype(dtype).itemsize))


def _chunks(start: int, stop: int, chunk: int | None) -> list[tuple[int, int]]:
    step = stop - start if chunk is None else chunk
    return [(first, min(first + step, stop)) for first in range(start, stop, max(step, 1))]


def run_batched(fn: ChunkFunction, batch: int, work: int, chunk: int | None = None) -> None:
    """Call ``fn(first, last)`` for chunks covering ``range(batch)``, one slice of chunks per core.

    ``work`` is the op's size in elements (small ops run in one piece on the
    calling thread); ``chunk`` the most images per call (None: one call per
    slice). ``fn`` must write only to its own images' part of any output.
    """

    def run_slice(start: int, stop: int) -> None:
        for first, last in _chunks(start, stop, chunk):
            fn(first, last)

    parallel_over_batch(batch, work, run_slice)


def sum_batched(fn: ChunkFunction, batch: int, work: int, chunk: int | None = None) -> Any:
    """Like ``run_batched``, and return the sum of what the calls return, added in a fixed order.

    ``fn`` returns an array, or a tuple of arrays (some may be None), for its
    images; the sum runs over the chunks of a slice in order, then over the
    slices in order (``reductions.ordered_sum``).
    """

    def sum_slice(start: int, stop: int) -> Any:
        total = None
        for first, last in _chunks(start, stop, chunk):
            part = fn(first, last)
            total = part if total is None else add_parts(total, part)
        return total

    return ordered_sum(parallel_over_batch(batch, work, sum_slice))


def map_batched(fn: ChunkFunction, batch: int, work: int, chunk: int | None = None) -> list:
    """Like ``run_batched``, and return what the calls return, as a list in the order of their chunks.

    The chunks are those ``run_batched`` and ``sum_batched`` cut (the same
    ``chunk`` gives the same chunks), so a caller can combine the results in a
    fixed order by any rule, not only a sum.
    """

    def map_slice(start: int, stop: int) -> list:
        return [fn(first, last) for first, last in _chunks(start, stop, chunk)]

    return [result for results in parallel_over_batch(batch, work, map_slice) for result in results]
