"""The one atomic writer: every file convnp writes is created or replaced whole, or not at all.

A reader never sees half a file, and a failure part-way (a full disk, an
exception in the writing code, Ctrl-C, a crash) leaves the previous file as it
was. The data goes to a temporary file in the same folder, is flushed to disk
(fsync), then renamed over the target: on POSIX and Windows a rename within one
folder replaces the target in one step. Two processes writing the same path at
once each rename a complete file of their own; the last rename wins.

The new file gets the permissions any new file gets (0o666 minus the umask),
not the owner-only 0o600 of ``tempfile.mkstemp``.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_npz"]


def _fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Create or replace ``path`` atomically with what ``write(stream)`` writes.

    The data goes to ``.<name>.<random>.tmp`` in the same folder, is fsynced,
    then renamed over ``path``. On any exception (including KeyboardInterrupt)
    the temporary file is removed and ``path`` keeps its previous content. The
    file gets the usual permissions (0o666 minus the umask), not the 0o600 of
    ``tempfile.mkstemp``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temp_path = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            handle = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:  # pragma: no cover - 48 random bits colliding
            continue
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_path, path)
    except BaseException:
        # Whatever went wrong (including Ctrl-C), the previous file stays as it was.
        temp_path.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def atomic_write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an uncompressed .npz at ``path`` atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda stream: np.savez(stream, **arrays))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON at ``path`` atomically (see ``atomic_write``)."""
    text = json.dumps(data, indent=2) + "\n"
    return atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda stream: stream.write(data))
