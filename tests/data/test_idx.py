"""read_idx / write_idx: round trips, the exact byte layout, and damaged files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from convnp.data import read_idx, write_idx

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def _values(dtype, shape) -> np.ndarray:
    """Values that use the whole range of the dtype, extremes included."""
    rng = np.random.default_rng(1)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
        values.flat[0], values.flat[-1] = info.min, info.max
    else:
        values = (rng.standard_normal(shape) * 1e3).astype(dtype)
        values.flat[0], values.flat[-1] = np.finfo(dtype).min, np.finfo(dtype).tiny
    return values


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("shape", [(7,), (3, 5, 4), (2, 1, 3, 3)])
def test_round_trip_every_dtype(tmp_path, dtype, gz, shape):
    array = _values(dtype, shape)
    path = write_idx(tmp_path / ("a.idx" + (".gz" if gz else "")), array)
    assert path.read_bytes().startswith(b"\x1f\x8b") == gz
    loaded = read_idx(path)
    assert loaded.dtype == np.dtype(dtype)  # native byte order
    assert loaded.dtype.isnative
    assert loaded.shape == shape
    np.testing.assert_array_equal(loaded, array)
    loaded[...] = 0  # the result is writable, not a view of the file's bytes


def test_exact_byte_layout(tmp_path):
    # Header: 00 00, dtype code, ndim, then big-endian uint32 dims; data big-endian.
    path = write_idx(tmp_path / "m.idx", np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])
    path = write_idx(tmp_path / "s.idx", np.array([0x0102, -2], dtype=np.int16))
    assert path.read_bytes() == bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE])


def test_reads_a_hand_made_big_endian_file(tmp_path):
    path = tmp_path / "f.idx"
    path.write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 2]) + np.array([1.5, -2.0], ">f4").tobytes())
    np.testing.assert_array_equal(read_idx(path), np.array([1.5, -2.0], dtype=np.float32))


def test_gzip_detected_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_without_suffix = write_idx(tmp_path / "train-images-idx3-ubyte", array, compress=True)
    raw_with_gz_suffix = write_idx(tmp_path / "images.gz", array, compress=False)
    assert gz_without_suffix.read_bytes()[:2] == b"\x1f\x8b"
    assert raw_with_gz_suffix.read_bytes()[:2] == b"\x00\x00"
    np.testing.assert_array_equal(read_idx(gz_without_suffix), array)
    np.testing.assert_array_equal(read_idx(raw_with_gz_suffix), array)


def test_gzip_output_is_deterministic_and_leaves_no_temp_files(tmp_path):
    array = np.arange(100, dtype=np.int32)
    first = write_idx(tmp_path / "a.gz", array).read_bytes()
    second = write_idx(tmp_path / "a.gz", array).read_bytes()
    assert first == second  # no timestamp in the gzip header
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gz"]


def test_empty_dimension_round_trips(tmp_path):
    array = np.zeros((0, 28, 28), dtype=np.uint8)
    assert read_idx(write_idx(tmp_path / "e.idx", array)).shape == (0, 28, 28)


def _valid_bytes() -> bytes:
    return bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x01\x00" + _valid_bytes()[2:], "magic bytes 01 00"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX dtype code 0x07"),
        (_valid_bytes()[:-1], "truncated IDX file"),
        (_valid_bytes() + b"\x00", "oversized IDX file"),
        # Header says 3 x 3 = 9 values, 6 are present: wrong dims.
        (bytes([0, 0, 0x08, 2, 0, 0, 0, 3, 0, 0, 0, 3]) + bytes(6), "need 21 bytes"),
        (_valid_bytes()[:9], "truncated IDX header"),
        (b"\x00\x00", "shorter than the header"),
        (b"", "shorter than the header"),
        (bytes([0, 0, 0x08, 0]), "0 dimensions"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_damaged_files_raise_value_error_naming_file_and_problem(tmp_path, content, message, gz):
    path = tmp_path / "damaged-idx3-ubyte"
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(ValueError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_stream(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.arange(1000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-20])  # a download cut off mid-file
    with pytest.raises(ValueError, match="truncated gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


@pytest.mark.parametrize("dtype", [np.int64, np.uint16, np.bool_, np.complex64])
def test_write_rejects_dtypes_idx_cannot_hold(tmp_path, dtype):
    with pytest.raises(ValueError, match="no IDX code"):
        write_idx(tmp_path / "x.idx", np.zeros(3, dtype=dtype))
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_scalars(tmp_path):
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "x.idx", np.uint8(3))
