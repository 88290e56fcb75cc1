"""Fuzzing read_idx with random bytes and mutated valid files.

The contract (docs/guarantees.md): ``read_idx`` on an existing file returns an
array or raises ``ValueError`` (naming the file); nothing else. It may not hang
or allocate absurd amounts of memory whatever a header claims (every size is
checked against the file's size before anything is read), so each example is
quick. Examples are derandomised: the test is deterministic.
"""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convnp.data import read_idx, write_idx
from tests.fuzzing import FUZZ, mutate, mutations


def _idx_bytes(array: np.ndarray, compress: bool) -> bytes:
    buffer = io.BytesIO()
    header = bytes([0, 0, {np.uint8: 0x08, np.int16: 0x0B}[array.dtype.type], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    buffer.write(gzip.compress(payload, mtime=0) if compress else payload)
    return buffer.getvalue()


IDX_RAW = _idx_bytes(np.arange(60, dtype=np.int16).reshape(3, 4, 5), compress=False)
IDX_GZ = _idx_bytes((np.arange(48) * 5 % 256).astype(np.uint8).reshape(2, 4, 6), compress=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def check_read_idx(path, content: bytes) -> None:
    path.write_bytes(content)
    try:
        array = read_idx(path)
    except ValueError as error:
        assert str(path) in str(error)
        return
    assert isinstance(array, np.ndarray) and array.flags.writeable


@FUZZ
@given(content=st.binary(max_size=200))
def test_read_idx_random_bytes(workdir, content):
    check_read_idx(workdir / "random-idx", content)


@FUZZ
@given(content=st.binary(max_size=120), prefix=st.sampled_from([b"\x00\x00\x08", b"\x00\x00\x0e\x02", b"\x1f\x8b"]))
def test_read_idx_random_bytes_after_a_plausible_start(workdir, content, prefix):
    check_read_idx(workdir / "plausible-idx", prefix + content)


@FUZZ
@given(edits=mutations())
def test_read_idx_mutated_raw_file(workdir, edits):
    check_read_idx(workdir / "raw-idx", mutate(IDX_RAW, edits))


@FUZZ
@given(edits=mutations())
def test_read_idx_mutated_gzip_file(workdir, edits):
    check_read_idx(workdir / "gz-idx", mutate(IDX_GZ, edits))


@FUZZ
@given(payload=st.binary(max_size=80), edits=mutations())
def test_read_idx_gzip_of_random_or_mutated_content(workdir, payload, edits):
    """Valid gzip streams around damaged IDX content exercise the IDX checks behind gzip."""
    check_read_idx(workdir / "gz-content-idx", gzip.compress(mutate(IDX_RAW, edits), mtime=0))
    check_read_idx(workdir / "gz-random-idx", gzip.compress(b"\x00\x00" + payload, mtime=0))


def test_write_idx_output_is_what_the_fuzzers_start_from(workdir):
    assert write_idx(workdir / "w.idx", np.arange(60, dtype=np.int16).reshape(3, 4, 5)).read_bytes() == IDX_RAW
