"""The collective operations convnp needs, for one process and over MPI.

``Communicator`` is the job of a single process, where every operation is
trivial; ``MPICommunicator`` runs the same operations across the ranks of an
MPI job through mpi4py's buffer interface (no pickling). Every operation is
collective: every rank calls it, in the same order.

Each MPI operation is started non-blocking and waited for in a loop of
``Test`` calls, so that Python stays responsive (Ctrl-C reaches the process)
and a wait has a deadline: past ``get_timeout()`` seconds the job is aborted,
naming the operation (``failures.stalled``). The loop spins for the first
millisecond, the usual wait of a step, then sleeps between tests, longer the
longer it waits, so that a rank waiting for rank 0 to write a file leaves the
cores to it.

Sums that every rank must get bit for bit (batch-norm statistics, counts)
gather every rank's part and add the parts in rank order on every rank
(``sum_in_rank_order``); the gradient buffer is summed with ``Allreduce``,
whose result is the same on every rank in MPI implementations.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from convnp.distributed.failures import get_timeout, stalled

__all__ = ["Communicator", "MPICommunicator"]

_SPIN_SECONDS = 1e-3  # wait without sleeping this long: a step's collectives usually finish within it
_LONGEST_NAP = 1e-2
# Launchers forward a rank's output asynchronously, and MPI_Abort can overtake it: the
# message saying why the job ends would be lost. A pause before aborting lets it through.
_PAUSE_BEFORE_ABORT = 1.0


class Communicator:
    """The single-process job: rank 0 of 1, every collective operation returns at once."""

    rank = 0
    size = 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the rank that prints and writes files."""
        return self.rank == 0

    def allreduce_sum(self, buffer: np.ndarray, what: str) -> None:
        """Replace ``buffer`` (contiguous) by its sum over the ranks, in place."""

    def sum_in_rank_order(self, array: np.ndarray, what: str) -> np.ndarray:
        """The sum of every rank's ``array`` (same shape and dtype everywhere), added in rank order."""
        return np.array(array)

    def any(self, flag: bool, what: str) -> bool:
        """Whether ``flag`` is true on any rank (the same answer on every rank)."""
        return bool(self.sum_in_rank_order(np.array(int(bool(flag)), dtype=np.int64), what) > 0)

    def broadcast(self, buffer: np.ndarray, what: str) -> None:
        """Overwrite ``buffer`` (contiguous) with rank 0's, in place."""

    def gather_rows(self, rows: np.ndarray, what: str) -> np.ndarray:
        """Every rank's ``rows`` (N_r, ...) stacked in rank order: (sum of N_r, ...), on every rank."""
        return rows

    def hosts(self) -> list[str]:
        """The host name of every rank, in rank order."""
        return ["localhost"]

    def barrier(self, what: str, timeout: float | None = -1.0) -> None:
        """Wait until every rank has called it (``timeout``: seconds, None for ever, -1 for ``get_timeout()``)."""

    def abort(self, status: int) -> None:
        """End the whole job with ``status`` (here: this process)."""
        sys.stderr.flush()
        raise SystemExit(status)


class MPICommunicator(Communicator):
    """The collective operations of ``Communicator`` over an mpi4py communicator."""

    def __init__(self, mpi, comm) -> None:
        self.mpi = mpi
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._hosts: list[str] | None = None

    def _wait(self, request, what: str, timeout: float | None = -1.0) -> None:
        """Wait for ``request`` to complete; past the timeout, abort the job naming ``what``."""
        limit = get_timeout() if timeout == -1.0 else timeout
        start = time.monotonic()
        while not request.Test():
            waited = time.monotonic() - start
            if limit is not None and waited > limit:
                stalled(self, what, waited)
            if waited > _SPIN_SECONDS:
                time.sleep(min(_LONGEST_NAP, waited / 100))

    def allreduce_sum(self, buffer: np.ndarray, what: str) -> None:
        self._wait(self.comm.Iallreduce(self.mpi.IN_PLACE, buffer, op=self.mpi.SUM), what)

    def sum_in_rank_order(self, array: np.ndarray, what: str) -> np.ndarray:
        part = np.array(array, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        parts = np.empty((self.size, *part.shape), dtype=part.dtype)
        self._wait(self.comm.Iallgather(part, parts), what)
        total = parts[0].copy()
        for other in parts[1:]:
            total += other
        return total

    def broadcast(self, buffer: np.ndarray, what: str) -> None:
        self._wait(self.comm.Ibcast(buffer, root=0), what)

    def gather_rows(self, rows: np.ndarray, what: str) -> np.ndarray:
        rows = np.ascontiguousarray(rows)
        counts = np.empty(self.size, dtype=np.int64)
        self._wait(self.comm.Iallgather(np.array([len(rows)], dtype=np.int64), counts), what)
        row_size = int(np.prod(rows.shape[1:], dtype=np.int64))
        out = np.empty((int(counts.sum()), *rows.shape[1:]), dtype=rows.dtype)
        sizes = [int(count) * row_size for count in counts]
        self._wait(self.comm.Iallgatherv(rows, [out, sizes]), what)
        return out

    def hosts(self) -> list[str]:
        if self._hosts is None:
            width = 256
            name = self.mpi.Get_processor_name().encode()[:width]
            mine = np.zeros(width, dtype=np.uint8)
            mine[: len(name)] = np.frombuffer(name, dtype=np.uint8)
            names = np.empty((self.size, width), dtype=np.uint8)
            self._wait(self.comm.Iallgather(mine, names), "finding the host of every rank")
            self._hosts = [bytes(row).rstrip(b"\0").decode(errors="replace") for row in names]
        return self._hosts

    def barrier(self, what: str, timeout: float | None = -1.0) -> None:
        self._wait(self.comm.Ibarrier(), what, timeout)

    def abort(self, status: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(_PAUSE_BEFORE_ABORT)
        self.comm.Abort(status)
