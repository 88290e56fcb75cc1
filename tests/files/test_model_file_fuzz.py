"""Fuzzing convnp.load with random bytes and mutated valid model files.

The contract (docs/guarantees.md): ``convnp.load`` on an existing file returns a
model or raises ``ModelFileError`` (a ``ValueError``); nothing else. And it never
returns a model that differs from the one saved: a mutation that is not caught
must be one that changes nothing the model is made of (zip timestamps,
padding...). It may not hang or allocate absurd amounts of memory whatever a
header claims (every size is checked against the file's size before anything is
read), so each example is quick. Examples are derandomised: the test is
deterministic.

The last fuzzer gets past every integrity check: it mutates an array's ``.npy``
header, repairs the zip's CRCs and recomputes the checksum, so the damage reaches
the comparison of the arrays with the description, and it measures the memory
each load allocates. (The description's own fields are fuzzed the same way in
tests/serialization/test_description_fuzz.py.)
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convnp
from convnp import nn
from convnp.files.model_file import META_KEY, ModelFileError, file_checksum
from convnp.files.safe_zip import ArchiveError, read_npz
from tests.fuzzing import FUZZ, fuzz, mutate, mutations
from tests.model_files import npy_bytes, peak_allocation


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


def _zipped(entries: dict[str, bytes]) -> bytes:
    """A stored zip of these entries (CRCs and sizes computed afresh)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _shapes(count: int):
    """Shapes for ``count`` elements (the same data read another way) and shapes for any other count."""
    divisors = [d for d in range(1, count + 1) if count % d == 0] or [1]
    exact = st.sampled_from(divisors).flatmap(
        lambda d: st.sampled_from([(count,), (d, count // d), (count // d, d, 1), (1, count), (count // d, 1, d)])
    )
    other = st.lists(st.sampled_from([0, 1, 2, 3, 6, 2**31, 2**40, 2**62]), max_size=4).map(tuple)
    return st.one_of(exact, other)


@fuzz(500)
@given(data=st.data())
def test_load_model_file_with_a_rewritten_array_header_and_a_recomputed_checksum(workdir, data):
    """Give one model array a new .npy header (dtype, byte order, memory order, shape), keep or cut
    its data, and recompute the checksum over the arrays as the header now reads them: the change
    gets past every integrity check. Such a file is refused with ModelFileError, or loads with the
    description's shapes and the file's values; either way the load allocates next to nothing."""
    source = zipfile.ZipFile(io.BytesIO(MODEL_FILES["stored"]))
    entries = {name: source.read(name) for name in source.namelist()}
    target = data.draw(st.sampled_from(sorted(name for name in entries if name.startswith("model/"))), label="entry")
    header_end = entries[target].index(b"\n") + 1  # magic, version, length, the header dict, padding, newline
    payload = entries[target][header_end:]
    descr = data.draw(st.sampled_from(["<f4", ">f4", "<f8", "<f2", "<i4", "<u4", "|u1", "|b1", "<c8"]), label="dtype")
    payload = payload[: data.draw(st.sampled_from([len(payload), 0, len(payload) // 2]), label="data length")]
    header = {
        "descr": descr,
        "fortran_order": data.draw(st.booleans(), label="fortran order"),
        "shape": data.draw(_shapes(len(payload) // np.dtype(descr).itemsize), label="shape"),
    }
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, header)
    entries[target] = stream.getvalue() + payload
    path = workdir / "rewritten-header.npz"
    path.write_bytes(_zipped(entries))
    try:
        arrays = read_npz(path, where="fuzz", what="a model file", required=(META_KEY,))
    except ArchiveError:  # a header that does not fit its data, or not numbers: refused before the checksum
        with pytest.raises(ModelFileError):
            convnp.load(path)
        return
    meta = json.loads(arrays.pop(META_KEY).tobytes())
    meta["checksum"] = file_checksum(meta, arrays)
    entries[f"{META_KEY}.npy"] = npy_bytes(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    path.write_bytes(_zipped(entries))
    outcome, peak = peak_allocation(lambda: convnp.load(path))
    assert peak < 4 * 2**20, f"loading allocated {peak / 2**20:.1f} MiB"
    if isinstance(outcome, ModelFileError):
        assert str(path) in str(outcome)
        return
    assert not isinstance(outcome, Exception), repr(outcome)
    state, expected = outcome.state_dict(), MODEL.state_dict()
    assert {key: value.shape for key, value in state.items()} == {key: value.shape for key, value in expected.items()}
    for key, value in arrays.items():
        assert np.array_equal(state[key[len("model/") :]], value.astype(MODEL.dtype)), key
