"""Scratch buffers that are reused from one call to the next, one set per thread.

A freshly allocated array of a few megabytes is new memory to the operating
system: the first write to each of its pages traps into the kernel, which
zeroes the page before handing it over. For the temporaries of a chunk loop
(padded inputs, im2col blocks) that cost can rival the copy itself, and it is
paid again every chunk, every step. These temporaries have the same size call
after call, so each thread keeps one buffer per purpose, grown when a larger
one is asked for, and hands out views of it.

The rule that makes this safe: a scratch view never outlives the function
that asked for it (it is never returned, cached or stored), and one purpose
is never asked for twice while the first view is still in use. Threads never
share buffers.
"""

from __future__ import annotations

import math
import threading

import numpy as np

__all__ = ["scratch"]

_local = threading.local()


def scratch(purpose: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape``, backed by this thread's buffer for ``purpose``."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    buffer = buffers.get(purpose)
    if buffer is None or buffer.size < nbytes:
        buffer = buffers[purpose] = np.empty(nbytes, dtype=np.uint8)
    return buffer[:nbytes].view(dtype).reshape(shape)
