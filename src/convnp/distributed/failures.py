"""Ending the whole job when one rank fails, so that no rank waits forever for another.

MPI leaves a job hanging when one process stops taking part: the others wait in
their next collective operation. Three guards end the job instead:

- an error raised on one rank only is printed with that rank's number, then
  ``MPI_Abort`` ends every process (``report_failure``, the command line;
  ``install_excepthook``, scripts);
- an error that every rank raises at the same point (a diverged loss, a
  Ctrl-C that the ranks agreed on: ``on_every_rank``) is printed once, by
  rank 0, and every rank exits normally;
- a collective operation that gets no answer for ``get_timeout()`` seconds
  (a rank hangs, or left without an error) aborts the job naming the
  operation (``stalled``). A killed rank is noticed by the launcher, which
  ends the others.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from convnp.distributed.communicator import Communicator

__all__ = [
    "on_every_rank", "raised_on_every_rank", "report_failure", "install_excepthook", "stalled",
    "get_timeout", "set_timeout", "DEFAULT_TIMEOUT",
]  # fmt: skip

#: Seconds a rank waits in one collective operation before it ends the job.
DEFAULT_TIMEOUT = 600.0
_EVERY_RANK = "_convnp_on_every_rank"
_timeout: dict[str, float | None] = {}


def get_timeout() -> float | None:
    """How long a collective operation may wait for the other ranks, in seconds (None: for ever).

    ``set_timeout`` sets it; else ``$CONVNP_MPI_TIMEOUT`` (0 means no limit); else 600 s.
    """
    if "seconds" not in _timeout:
        value = os.environ.get("CONVNP_MPI_TIMEOUT", "").strip()
        try:
            seconds = float(value) if value else DEFAULT_TIMEOUT
        except ValueError:
            seconds = DEFAULT_TIMEOUT
        _timeout["seconds"] = seconds if seconds > 0 else None
    return _timeout["seconds"]


def set_timeout(seconds: float | None) -> None:
    """Let a collective operation wait ``seconds`` for the other ranks before it aborts the job (None: no limit)."""
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0):
        raise ValueError(f"set_timeout: expected seconds > 0 or None, got {seconds!r}")
    _timeout["seconds"] = None if seconds is None else float(seconds)


def on_every_rank(error: BaseException) -> BaseException:
    """Mark ``error`` as raised by every rank at the same point (they agreed on it); returns it."""
    setattr(error, _EVERY_RANK, True)
    return error


def raised_on_every_rank(error: BaseException | None) -> bool:
    """Whether ``error`` was marked by ``on_every_rank``."""
    return bool(getattr(error, _EVERY_RANK, False))


def report_failure(communicator: Communicator, message: str, error: BaseException | None, status: int) -> int:
    """Print ``message`` for ``error`` and end the job as the error requires; returns ``status``.

    One process, or an error every rank raised: rank 0 prints and ``status``
    is returned (every rank exits normally). An error of this rank alone: the
    message names the rank and the job is aborted with ``status``.
    """
    if communicator.size == 1 or raised_on_every_rank(error):
        if communicator.is_main:
            print(message, file=sys.stderr, flush=True)
        return status
    print(f"[rank {communicator.rank} of {communicator.size}] {message}", file=sys.stderr, flush=True)
    communicator.abort(status)
    return status  # not reached: abort ends the process


def install_excepthook(communicator: Communicator) -> None:
    """Make an uncaught exception in a script end the whole job (after its traceback), not just this rank."""
    previous = sys.excepthook

    def excepthook(kind, error, trace) -> None:
        if raised_on_every_rank(error):
            if communicator.is_main:
                previous(kind, error, trace)
            return  # every rank stops here: each exits normally
        sys.stderr.write(f"[rank {communicator.rank} of {communicator.size}] ")
        sys.stderr.write("".join(traceback.format_exception(kind, error, trace)))
        sys.stderr.write(f"convnp: rank {communicator.rank} failed; aborting the MPI job\n")
        sys.stderr.flush()
        communicator.abort(130 if issubclass(kind, KeyboardInterrupt) else 1)

    sys.excepthook = excepthook


def stalled(communicator: Communicator, what: str, waited: float) -> None:
    """A collective operation got no answer in time: say which, and abort the job."""
    print(
        f"convnp: rank {communicator.rank} of {communicator.size}: no answer from the other ranks for "
        f"{waited:.0f} s in {what}; a rank failed or hangs. Aborting the MPI job "
        "(CONVNP_MPI_TIMEOUT sets the limit in seconds).",
        file=sys.stderr,
        flush=True,
    )
    communicator.abort(1)
