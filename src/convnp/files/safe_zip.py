"""Read an ``.npz`` (a zip of ``.npy`` entries) without ``numpy.load`` and without pickle.

What ``read_npz`` guarantees, whatever bytes the file holds:

- Nothing in the file can run code. The zip is opened here and each ``.npy``
  header parsed here; an entry whose dtype is not a plain number type (bool,
  integer, float) is refused before its data is read, so object arrays, which
  need pickle, are never unpickled.
- No absurd allocation. Every entry's declared size is checked against the
  size of the file (a deflated entry against what deflate can expand to), and
  each ``.npy`` header's shape against its entry's size, before a byte of the
  entry is read: a damaged header cannot ask for gigabytes.
- One kind of error. Whatever the zip and ``.npy`` parsers raise on malformed
  bytes (a CRC-32 mismatch, a bad deflate stream, a header that is not a
  Python literal...) comes out as ``ArchiveError`` naming the file; only a
  failure to open the file at all (``OSError``: permission, a folder) is
  raised as is.
"""

from __future__ import annotations

import math
import os
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Collection

import numpy as np

__all__ = ["ArchiveError", "read_npz"]

# Deflate cannot expand data by more than about 1032:1; a compressed entry that
# claims more than this is damaged (or a zip bomb) and is refused unread.
_MAX_DEFLATE_RATIO = 1100
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"

# What the zip and .npy parsers can raise on malformed bytes; read_npz turns each
# into an ArchiveError. MemoryError is not among them: the size checks make
# absurd allocations impossible.
_PARSE_ERRORS = (
    ValueError,  # includes UnicodeDecodeError
    TypeError,
    KeyError,
    IndexError,
    OSError,  # a seek or read past the end of the file, a bad gzip/deflate stream
    EOFError,
    zipfile.BadZipFile,  # includes a CRC-32 mismatch
    zlib.error,
    struct.error,
    NotImplementedError,  # compression methods zipfile does not know
    RuntimeError,  # encrypted entries; RecursionError
    OverflowError,
    SyntaxError,  # a .npy header that is not a Python literal
    tokenize.TokenError,  # ... found by NumPy's fallback parser for Python 2 headers
)


class ArchiveError(ValueError):
    """An archive ``read_npz`` refuses: not a zip, damaged, truncated, or holding more than plain numbers."""


def _read_npy_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, what: str) -> np.ndarray:
    """One ``.npy`` entry as a writable array, refusing anything but plain numbers.

    The header is parsed (a Python literal of at most 10,000 characters) and
    the dtype checked before the data is read; the data must be exactly as
    long as the header's shape and dtype say.
    """
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ArchiveError(f"{where}: entry {info.filename!r} has unsupported .npy version {version}")
        if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
            raise ArchiveError(
                f"{where}: entry {info.filename!r} has dtype {dtype}; {what} holds only "
                "numbers (object arrays would need pickle, which convnp never runs)"
            )
        if any(d < 0 for d in shape):
            raise ArchiveError(f"{where}: entry {info.filename!r} has an invalid shape {shape}")
        header_size = member.tell()  # magic, header length and header read so far
        data_size = math.prod(shape) * dtype.itemsize
        if data_size != info.file_size - header_size:
            raise ArchiveError(
                f"{where}: entry {info.filename!r} is damaged: its header declares shape {shape} of "
                f"{dtype} ({data_size} bytes), the entry holds {info.file_size - header_size}"
            )
        data = member.read(data_size)
        if len(data) != data_size or member.read(1):  # the last read also checks the CRC-32
            raise ArchiveError(f"{where}: entry {info.filename!r} is truncated")
    values = np.frombuffer(data, dtype=dtype)
    if fortran_order:
        values = values.reshape(shape[::-1]).transpose()
    else:
        values = values.reshape(shape)
    return np.array(values, dtype=dtype.newbyteorder("="), order="C")  # writable, native order


def _check_entry_size(info: zipfile.ZipInfo, file_size: int, where: str) -> None:
    """Refuse an entry whose declared size this file cannot hold."""
    if info.compress_type == zipfile.ZIP_STORED:
        plausible = info.file_size == info.compress_size <= file_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        plausible = info.compress_size <= file_size and (
            info.file_size <= _MAX_DEFLATE_RATIO * info.compress_size + 1024
        )
    else:
        raise ArchiveError(f"{where}: entry {info.filename!r} uses unsupported compression {info.compress_type}")
    if not plausible:
        raise ArchiveError(
            f"{where} is damaged or truncated: entry {info.filename!r} declares "
            f"{info.file_size} bytes ({info.compress_size} stored) in a {file_size}-byte file"
        )


def read_npz(
    path: str | os.PathLike, *, where: str, what: str, required: Collection[str] = ()
) -> dict[str, np.ndarray]:
    """Every entry of the ``.npz`` at ``path``, keyed by its name without ``.npy``.

    Parameters
    ----------
    path : str or path-like
        The archive (stored or deflated entries).
    where : str
        How messages name the file, e.g. ``"convnp.load: model.npz"``.
    what : str
        What the archive should be, for messages, e.g. ``"a convnp model file"``.
    required : collection of str
        Entries (without ``.npy``) the archive must hold; checked before any is read.

    Returns
    -------
    dict of str to numpy.ndarray
        Writable arrays in native byte order, in the archive's order.

    Raises
    ------
    ArchiveError
        Not a zip (or a single ``.npy``), a required entry missing, duplicate or
        non-``.npy`` entries, an entry that is not plain numbers, a size the file
        cannot hold, a truncated or damaged archive.
    OSError
        The file cannot be opened (permission denied, a folder), as raised.
    """
    with open(path, "rb") as stream:  # OSError (permission, a folder) propagates as is
        file_size = os.fstat(stream.fileno()).st_size
        head = stream.read(len(_NPY_MAGIC))
        if head.startswith(_NPY_MAGIC):
            raise ArchiveError(f"{where} holds a single .npy array, not {what} (.npz)")
        if not head.startswith(_ZIP_MAGIC):
            raise ArchiveError(f"{where} is not {what}: not an .npz (zip) archive")
        stream.seek(0)
        try:
            arrays: dict[str, np.ndarray] = {}
            with zipfile.ZipFile(stream) as archive:
                infos = archive.infolist()
                names = [info.filename for info in infos]
                for name in required:
                    if name + ".npy" not in names:
                        raise ArchiveError(f"{where} is an .npz (zip) archive but not {what} (no {name!r} entry)")
                if len(set(names)) != len(names):
                    raise ArchiveError(f"{where} is damaged: duplicate entries in the archive")
                for info in infos:
                    if not info.filename.endswith(".npy"):
                        raise ArchiveError(f"{where}: unexpected entry {info.filename!r} (not a .npy array)")
                    _check_entry_size(info, file_size, where)
                    arrays[info.filename[: -len(".npy")]] = _read_npy_entry(archive, info, where, what)
        except ArchiveError:
            raise
        except _PARSE_ERRORS as error:
            raise ArchiveError(
                f"{where} is damaged, truncated or not {what} ({type(error).__name__}: {error})"
            ) from error
    return arrays
