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
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

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


def _code_for_dtype(dtype: np.dtype) -> int:
    for code, idx_dtype in IDX_DTYPES.items():
        # Compare kind and size only: byte order is fixed to big-endian on write.
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    valid = ", ".join(str(d.newbyteorder("=")) for d in IDX_DTYPES.values())
    raise ValueError(f"write_idx: dtype {dtype} has no IDX code; valid dtypes: {valid}")


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        # A cut-off download ends in EOFError; a damaged stream in BadGzipFile/zlib.error.
        raise ValueError(f"{path}: damaged or truncated gzip stream ({error})") from error


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
        When the file does not exist.
    ValueError
        Naming the file and the problem: bad magic bytes, unknown dtype code,
        or a data size that does not match the dimensions in the header
        (truncated or oversized file), or a damaged gzip stream.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file: {len(data)} bytes, shorter than the header")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file: magic bytes {data[:2].hex(' ')}, expected 00 00")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        valid = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX dtype code 0x{code:02X}; valid codes: {valid}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_size} bytes, file has {len(data)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = header_size + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "oversized"
        raise ValueError(
            f"{path}: {problem} IDX file: dims {dims} of {dtype.newbyteorder('=')} need "
            f"{expected} bytes (header {header_size}), file has {len(data)}"
        )
    count = (expected - header_size) // dtype.itemsize
    values = np.frombuffer(data, dtype=dtype, count=count, offset=header_size).reshape(dims)
    # astype copies: the result is writable and in native byte order.
    return values.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file, atomically (temp file + rename).

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

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as temp_file:
            temp_file.write(payload)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path
