"""Read and write IDX files, the format MNIST and Fashion-MNIST ship in.

Layout of an IDX file (all integers big-endian):

    byte 0-1   0x00 0x00            magic
    byte 2     dtype code           0x08 uint8, 0x09 int8, 0x0B int16,
                                    0x0C int32, 0x0D float32, 0x0E float64
    byte 3     ndim                 number of dimensions
    4 * ndim   dims                 uint32 size of each dimension
    rest       data                 prod(dims) values of the dtype, C order, big-endian

The distributed files are usually gzipped (``*.gz``); ``read_idx`` looks at the
first two bytes (the gzip magic 1f 8b), not at the file name, so a renamed or
already-decompressed file reads the same.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from convnp.files.atomic import atomic_write_bytes

__all__ = ["read_idx", "write_idx", "IDX_DTYPES"]

# dtype code -> big-endian NumPy dtype, as defined by the IDX format.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot expand data by more than about 1032:1: a gzipped file whose
# header claims more than this is damaged, and is refused before any allocation.
_MAX_GZIP_RATIO = 1100
_CHUNK_BYTES = 1 << 20
_MAX_NDIM = 32  # the most dimensions every supported NumPy version can hold


def _code_for_dtype(dtype: np.dtype) -> int:
    for code, idx_dtype in IDX_DTYPES.items():
        # Compare kind and size only: byte order is fixed to big-endian on write.
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    valid = ", ".join(str(d.newbyteorder("=")) for d in IDX_DTYPES.values())
    raise ValueError(f"write_idx: dtype {dtype} has no IDX code; valid dtypes: {valid}")


def _read_up_to(stream, size: int) -> bytes:
    """Up to ``size`` bytes from ``stream``, in chunks: memory grows only with the data actually there."""
    chunks, remaining = [], size
    while remaining > 0:
        chunk = stream.read(min(remaining, _CHUNK_BYTES))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _parse_idx(stream, path: Path, file_size: int, compressed: bool) -> np.ndarray:
    """Read one IDX document from ``stream`` (raw bytes or a gzip decompressor).

    The payload size declared by the header is checked before the payload is
    read: against the file size for a raw file, against what deflate can
    expand a file of this size to for a gzipped one.
    """
    header = _read_up_to(stream, 4)
    if len(header) < 4:
        raise ValueError(f"{path}: not an IDX file: {len(header)} bytes, shorter than the header")
    if header[0] != 0 or header[1] != 0:
        raise ValueError(f"{path}: not an IDX file: magic bytes {header[:2].hex(' ')}, expected 00 00")
    code, ndim = header[2], header[3]
    if code not in IDX_DTYPES:
        valid = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX dtype code 0x{code:02X}; valid codes: {valid}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    if ndim > _MAX_NDIM:
        raise ValueError(f"{path}: IDX header declares {ndim} dimensions; NumPy holds at most {_MAX_NDIM}")
    header_size = 4 + 4 * ndim
    dims_bytes = _read_up_to(stream, 4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_size} bytes, file has {4 + len(dims_bytes)}"
        )
    dims = struct.unpack(f">{ndim}I", dims_bytes)
    dtype = IDX_DTYPES[code]
    payload_size = math.prod(dims) * dtype.itemsize  # Python ints: no overflow
    expected = header_size + payload_size
    need = f"dims {dims} of {dtype.newbyteorder('=')} need {expected} bytes (header {header_size})"
    if not compressed and file_size != expected:
        problem = "truncated" if file_size < expected else "oversized"
        raise ValueError(f"{path}: {problem} IDX file: {need}, file has {file_size}")
    if compressed and expected > _MAX_GZIP_RATIO * file_size:
        raise ValueError(
            f"{path}: truncated or damaged IDX file: {need}, more than a {file_size}-byte gzip file can hold"
        )
    payload = _read_up_to(stream, payload_size + 1)  # one byte more reveals trailing data
    if len(payload) != payload_size:
        if len(payload) < payload_size:
            raise ValueError(f"{path}: truncated IDX file: {need}, file has {header_size + len(payload)}")
        raise ValueError(f"{path}: oversized IDX file: {need}, file has more")
    values = np.frombuffer(payload, dtype=dtype).reshape(dims)
    # astype copies: the result is writable and in native byte order.
    return values.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into a NumPy array.

    Parameters
    ----------
    path : str or path-like
        The file. Gzip compression is detected from the content (magic bytes
        1f 8b), not from the name.

    Returns
    -------
    numpy.ndarray
        A writable array in native byte order with the file's dtype and shape,
        e.g. ``uint8 (60000, 28, 28)`` for ``train-images-idx3-ubyte``.

    Raises
    ------
    FileNotFoundError
        When the file does not exist (other ``OSError``s opening it, such as
        permission denied, propagate as raised).
    ValueError
        Naming the file and the problem: bad magic bytes, unknown dtype code,
        0 or too many dimensions, a data size that does not match the
        dimensions in the header (truncated or oversized file), or a damaged
        or truncated gzip stream. No other exception type comes out of a
        damaged file, and the header is checked against the file size before
        the data is read, so a header claiming huge dimensions cannot make
        ``read_idx`` allocate more than the file can actually hold.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        file_size = os.fstat(raw.fileno()).st_size
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not compressed:
            return _parse_idx(raw, path, file_size, compressed=False)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _parse_idx(stream, path, file_size, compressed=True)
        except (OSError, EOFError, zlib.error, struct.error) as error:
            # A cut-off download ends in EOFError; a damaged stream in BadGzipFile (an OSError) or
            # zlib.error; a damaged trailer in struct.error.
            raise ValueError(f"{path}: damaged or truncated gzip stream ({type(error).__name__}: {error})") from error


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file, atomically (``convnp.files.atomic``).

    Parameters
    ----------
    path : str or path-like
        Destination.
    array : array_like
        uint8, int8, int16, int32, float32 or float64; at least one dimension,
        each below 2**32.
    compress : bool, optional
        Gzip the file. Default: when ``path`` ends in ``.gz``. The gzip header
        carries no timestamp, so equal arrays give byte-identical files.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _code_for_dtype(array.dtype)
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"write_idx: IDX needs 1 to 255 dimensions, got shape {array.shape}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"write_idx: dimension too large for IDX in shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if compress is None:
        compress = path.name.endswith(".gz")
    if compress:
        payload = gzip.compress(payload, mtime=0)
    return atomic_write_bytes(path, payload)
