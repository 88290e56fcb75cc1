"""Split memory-bound work (copies, elementwise ops) over a few threads along the batch axis.

NumPy runs one ufunc or copy on one core, while BLAS already uses every core
for the matrix products. The gathers, scatters, poolings and activations
between the products are independent per sample, and NumPy releases the GIL
inside them, so running contiguous slices of the batch on two threads uses
the second core for them too. Results are identical to a single-threaded run:
each element is computed by the same operation whichever thread does it
(reductions across the batch are never split).

The number of threads defaults to the CPUs this process may use (at most 8);
``set_num_threads(1)`` or the environment variable ``CONVNP_NUM_THREADS=1``
turns the splitting off.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

__all__ = ["get_num_threads", "set_num_threads", "parallel_over_batch"]

# Below this many elements per op, starting threads costs more than it saves.
MIN_ELEMENTS = 1 << 17

_settings = {"threads": None}
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_inside = threading.local()


def _default_threads() -> int:
    value = os.environ.get("CONVNP_NUM_THREADS")
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            pass
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(available, 8))


def get_num_threads() -> int:
    """How many threads memory-bound ops may use."""
    if _settings["threads"] is None:
        _settings["threads"] = _default_threads()
    return _settings["threads"]


def set_num_threads(threads: int) -> None:
    """Set how many threads memory-bound ops may use (1 turns splitting off)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {threads!r}")
    _settings["threads"] = threads


def _get_executor(workers: int) -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None or _executor._max_workers < workers:
            _executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="convnp")
        return _executor


def _run_marked(fn: Callable[[int, int], None], start: int, stop: int) -> None:
    _inside.active = True
    try:
        fn(start, stop)
    finally:
        _inside.active = False


def parallel_over_batch(batch: int, elements: int, fn: Callable[[int, int], None]) -> None:
    """Call ``fn(start, stop)`` on contiguous slices covering ``range(batch)``, in parallel.

    ``elements`` is the op's total size; small ops (and calls made from inside
    a worker) run on the calling thread in one piece. ``fn`` must write only
    to its own slice.
    """
    threads = min(get_num_threads(), batch)
    if threads <= 1 or elements < MIN_ELEMENTS or getattr(_inside, "active", False):
        fn(0, batch)
        return
    bounds = [batch * i // threads for i in range(threads + 1)]
    executor = _get_executor(threads - 1)
    futures = [executor.submit(_run_marked, fn, bounds[i], bounds[i + 1]) for i in range(1, threads)]
    _run_marked(fn, bounds[0], bounds[1])
    for future in futures:
        future.result()
