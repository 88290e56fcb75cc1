"""Run a batched op as a few independent slices of the batch, one per CPU core.

BLAS parallelises one matrix product across cores, but the products in a CNN
are skinny and the copies around them (im2col, col2im, pooling, activations)
run on one core. Splitting the *batch* instead gives every core a complete,
independent piece of the op: its own im2col, its own single-threaded matrix
product and its own scatter, with no synchronisation in between. NumPy and
BLAS release the GIL, so plain Python threads run these slices in parallel.
While a split op runs, BLAS is limited to one thread (restored afterwards), so
the two levels of parallelism never compete for the same cores.

BLAS's thread count is set through threadpoolctl, which controls OpenBLAS,
MKL and BLIS on Linux, macOS and Windows. When NumPy's BLAS is none it can
control, ops run in one piece and BLAS keeps its own threading.

Matrix products inside slices are written ``np.dot``, not ``@``/``np.matmul``:
``np.matmul`` keeps the GIL for the whole BLAS call when the result is small
(a weight gradient (F, KH*KW) summed over 25,000 rows, a column sum), which
stalls every other slice that needs the interpreter; ``np.dot`` releases it.

The number of slices defaults to the CPUs this process may use (at most 8),
shared with the other MPI ranks an MPI launcher started on this host when it
did not pin each rank to its own cores (ranks x threads = cores).
``set_num_threads(n)`` or ``CONVNP_NUM_THREADS=n`` makes a model pass use n
cores: n slices, each with one BLAS thread. With n = 1 every op runs in one
piece, and BLAS is held to one thread too (as ``torch.set_num_threads(1)``
holds PyTorch to one core), so that processes started side by side with
``CONVNP_NUM_THREADS=1`` each keep to their own core.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["get_num_threads", "set_num_threads", "parallel_over_batch", "slice_bounds", "single_threaded_blas"]

T = TypeVar("T")

# Below this many elements an op is too small to be worth splitting.
MIN_ELEMENTS = 1 << 16

_settings: dict = {"threads": None}
_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()
_inside = threading.local()
_blas = None  # threadpoolctl's controller of NumPy's BLAS libraries, found on first use


def _blas_controller():
    """threadpoolctl's view of the BLAS libraries loaded in this process (NumPy's among them)."""
    global _blas
    if _blas is None:
        import numpy  # noqa: F401  (BLAS is loaded with NumPy)
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController().select(user_api="blas")
    return _blas


def _blas_controllable() -> bool:
    return len(_blas_controller().lib_controllers) > 0


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
    if available >= (os.cpu_count() or available):  # not pinned: the host's ranks share every core
        available //= _ranks_on_this_host()
    return max(1, min(available, 8))


def _ranks_on_this_host() -> int:
    """How many processes an MPI launcher started on this host, as its environment says (1 without one)."""
    for name in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"):  # MPICH's Hydra (Intel MPI), Open MPI
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def get_num_threads() -> int:
    """How many slices a batched op is split into (1 when BLAS cannot be controlled)."""
    if _settings["threads"] is None:
        _settings["threads"] = _default_threads() if _blas_controllable() else 1
    return _settings["threads"]


def set_num_threads(threads: int) -> None:
    """Split batched ops into ``threads`` slices (1 turns splitting off)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {threads!r}")
    _settings["threads"] = threads if _blas_controllable() else 1


def _forget_threads_after_fork() -> None:
    # A forked child has none of the parent's worker threads; a pool that still
    # counted them would never run a task. Start afresh.
    global _executor, _lock
    _executor = None
    _lock = threading.Lock()
    single_threaded_blas._depth = 0
    single_threaded_blas._limiter = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_after_fork)


def _get_executor(workers: int) -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None or _executor._max_workers < workers:
            _executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="convnp")
        return _executor


def _run_inside(fn: Callable[[int, int], T], start: int, stop: int) -> T:
    _inside.active = True
    try:
        return fn(start, stop)
    finally:
        _inside.active = False


class single_threaded_blas:
    """Keep BLAS at one thread for a whole model pass (re-entrant); restores the count on exit.

    Between split ops, a multi-threaded BLAS call would leave BLAS's worker
    threads spinning on the cores the next split op needs. A model's forward
    and backward passes run inside this context, so every matrix product in
    them runs inside a split op on one core each. With one slice
    (``set_num_threads(1)``) the pass is meant to use one core, so BLAS is
    held to one thread as well.
    """

    _depth = 0
    _limiter = None  # threadpoolctl's limiter, which remembers the counts to restore

    def __enter__(self) -> single_threaded_blas:
        cls = type(self)
        # n slices use n cores, one BLAS thread each; one slice uses one core, and MPI ranks
        # sharing a host each keep to theirs: BLAS's own threads would take the other cores.
        self._active = _blas_controllable()
        if self._active:
            with _lock:
                if cls._depth == 0:
                    cls._limiter = _blas_controller().limit(limits=1)
                cls._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        if self._active:
            cls = type(self)
            with _lock:
                cls._depth -= 1
                if cls._depth == 0 and cls._limiter is not None:
                    cls._limiter.restore_original_limits()
                    cls._limiter = None


def slice_bounds(batch: int, elements: int) -> list[int]:
    """Where ``parallel_over_batch`` cuts a batch: slice i is ``bounds[i]:bounds[i + 1]``.

    One slice (``[0, batch]``) for small ops, for calls made from inside a
    slice, and when splitting is off.
    """
    threads = min(get_num_threads(), batch)
    if threads <= 1 or elements < MIN_ELEMENTS or getattr(_inside, "active", False):
        return [0, batch]
    return [batch * i // threads for i in range(threads + 1)]


def parallel_over_batch(batch: int, elements: int, fn: Callable[[int, int], T]) -> list[T]:
    """Call ``fn(start, stop)`` on contiguous slices covering ``range(batch)``; return the results in order.

    ``elements`` is the op's size: small ops, and calls made from inside a
    slice, run in one piece on the calling thread. ``fn`` must write only to
    its own slice of any shared output.
    """
    bounds = slice_bounds(batch, elements)
    threads = len(bounds) - 1
    if threads == 1:
        return [fn(0, batch)]
    with single_threaded_blas():
        executor = _get_executor(threads - 1)
        futures = [executor.submit(_run_inside, fn, bounds[i], bounds[i + 1]) for i in range(1, threads)]
        results = [_run_inside(fn, bounds[0], bounds[1])]
        return results + [future.result() for future in futures]
