"""Fuzzing the two file readers with random bytes and mutated valid files.

The contract (docs/guarantees.md):

- ``read_idx`` on an existing file returns an array or raises ``ValueError``
  (naming the file); nothing else.
- ``convnp.load`` on an existing file returns a model or raises
  ``ModelFileError`` (a ``ValueError``); nothing else. And it never returns a
  model that differs from the one saved: a mutation that is not caught must be
  one that changes nothing the model is made of (zip timestamps, padding...).

Neither may hang or allocate absurd amounts of memory whatever a header claims
(every size is checked against the file's size before anything is read), so
each example is quick. Examples are derandomised: the test is deterministic.
"""

from __future__ import annotations

import gzip
import io
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convnp
from convnp import nn
from convnp.data import read_idx, write_idx
from convnp.serialization import ModelFileError

FUZZ = settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------- the files
def _idx_bytes(array: np.ndarray, compress: bool) -> bytes:
    buffer = io.BytesIO()
    header = bytes([0, 0, {np.uint8: 0x08, np.int16: 0x0B}[array.dtype.type], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    buffer.write(gzip.compress(payload, mtime=0) if compress else payload)
    return buffer.getvalue()


IDX_RAW = _idx_bytes(np.arange(60, dtype=np.int16).reshape(3, 4, 5), compress=False)
IDX_GZ = _idx_bytes((np.arange(48) * 5 % 256).astype(np.uint8).reshape(2, 4, 6), compress=True)


def _model() -> convnp.Sequential:
    return convnp.Sequential(
        [nn.Conv2D(2, 2), nn.BatchNorm2D(), nn.Flatten(), nn.Dense(2)], input_shape=(1, 3, 3), seed=0
    )


MODEL = _model()


def _model_files() -> dict[str, bytes]:
    """The model saved by convnp (stored entries) and re-packed with deflate."""
    with tempfile.TemporaryDirectory() as folder:
        path = MODEL.save(Path(folder) / "valid.npz")
        stored = path.read_bytes()
        buffer = io.BytesIO()
        with np.load(path, allow_pickle=False) as archive:
            np.savez_compressed(buffer, **{key: archive[key] for key in archive.files})
    return {"stored": stored, "deflated": buffer.getvalue()}


MODEL_FILES = _model_files()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# ------------------------------------------------------------- mutations
def mutations(max_insert: int = 8):
    """A list of 1-4 edits: (kind, position fraction, value)."""
    edit = st.tuples(
        st.sampled_from(["flip", "set", "truncate", "insert", "delete"]),
        st.floats(0, 1, allow_nan=False),
        st.integers(0, 255),
        st.binary(min_size=1, max_size=max_insert),
    )
    return st.lists(edit, min_size=1, max_size=4)


def mutate(data: bytes, edits) -> bytes:
    data = bytearray(data)
    for kind, where, value, chunk in edits:
        position = min(int(where * len(data)), max(len(data) - 1, 0))
        if kind == "flip" and data:
            data[position] ^= 1 << (value % 8)
        elif kind == "set" and data:
            data[position] = value
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert":
            data[position:position] = chunk
        elif kind == "delete":
            del data[position : position + 1 + value % 16]
    return bytes(data)


def check_read_idx(path, content: bytes) -> None:
    path.write_bytes(content)
    try:
        array = read_idx(path)
    except ValueError as error:
        assert str(path) in str(error)
        return
    assert isinstance(array, np.ndarray) and array.flags.writeable


def check_load(path, content: bytes) -> None:
    path.write_bytes(content)
    try:
        model = convnp.load(path)
    except ModelFileError as error:
        assert str(path) in str(error)
        return
    # Not caught means nothing that matters changed.
    state, expected = model.state_dict(), MODEL.state_dict()
    assert list(state) == list(expected)
    for key in expected:
        assert np.array_equal(state[key], expected[key]) and state[key].dtype == expected[key].dtype, key


# ---------------------------------------------------------------- read_idx
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


# --------------------------------------------------------------- model files
def test_the_fuzzed_model_files_are_valid(workdir):
    for name, content in MODEL_FILES.items():
        check_load(workdir / f"control-{name}.npz", content)
        assert isinstance(convnp.load(workdir / f"control-{name}.npz"), convnp.Sequential)


@FUZZ
@given(content=st.binary(max_size=300), prefix=st.sampled_from([b"", b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY"]))
def test_load_random_bytes(workdir, content, prefix):
    check_load(workdir / "random.npz", prefix + content)


@FUZZ
@given(edits=mutations())
def test_load_mutated_model_file(workdir, edits):
    check_load(workdir / "mutated.npz", mutate(MODEL_FILES["stored"], edits))


@FUZZ
@given(edits=mutations())
def test_load_mutated_compressed_model_file(workdir, edits):
    check_load(workdir / "mutated-deflated.npz", mutate(MODEL_FILES["deflated"], edits))


@FUZZ
@given(edits=mutations(max_insert=4), entry=st.integers(0, 100))
def test_load_model_file_with_a_mutated_entry_and_valid_crc(workdir, edits, entry):
    """Mutate the bytes of one .npy entry, then fix the zip's CRC-32 and sizes, so the damage
    reaches the .npy header parser and the checksum instead of stopping at the zip layer."""
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(MODEL_FILES["stored"]))
    names = source.namelist()
    target = names[entry % len(names)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            content = source.read(name)
            archive.writestr(name, mutate(content, edits) if name == target else content)
    check_load(workdir / "mutated-entry.npz", buffer.getvalue())


def test_crc_errors_and_zlib_errors_are_model_file_errors(workdir):
    """Two concrete members of the families the fuzzers explore."""
    content = bytearray(MODEL_FILES["stored"])
    offset = bytes(content).index(MODEL[3].weight.data.tobytes())
    content[offset] ^= 0xFF
    path = workdir / "crc.npz"
    path.write_bytes(bytes(content))
    with pytest.raises(ModelFileError, match="BadZipFile"):
        convnp.load(path)
    deflated = bytearray(MODEL_FILES["deflated"])
    middle = len(deflated) // 3
    deflated[middle : middle + 8] = b"\xff" * 8
    path.write_bytes(bytes(deflated))
    with pytest.raises(ModelFileError):
        convnp.load(path)
    assert issubclass(ModelFileError, ValueError) and not issubclass(zlib.error, ValueError)


def test_write_idx_output_is_what_the_fuzzers_start_from(workdir):
    assert write_idx(workdir / "w.idx", np.arange(60, dtype=np.int16).reshape(3, 4, 5)).read_bytes() == IDX_RAW
