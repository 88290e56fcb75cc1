"""Fuzzing convnp.load with random bytes and mutated valid model files.

The contract (docs/guarantees.md): ``convnp.load`` on an existing file returns a
model or raises ``ModelFileError`` (a ``ValueError``); nothing else. And it never
returns a model that differs from the one saved: a mutation that is not caught
must be one that changes nothing the model is made of (zip timestamps,
padding...). It may not hang or allocate absurd amounts of memory whatever a
header claims (every size is checked against the file's size before anything is
read), so each example is quick. Examples are derandomised: the test is
deterministic.
"""

from __future__ import annotations

import io
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convnp
from convnp import nn
from convnp.files.model_file import ModelFileError
from tests.fuzzing import FUZZ, mutate, mutations


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
