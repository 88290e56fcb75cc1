"""Reading a model file never unpickles, and a damaged, truncated or foreign archive fails
clearly (convnp.files.safe_zip, through convnp.load).
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile

import numpy as np
import pytest

import convnp
from convnp.files.model_file import META_KEY, ModelFileError
from convnp.files.safe_zip import ArchiveError, read_npz
from tests.model_files import assert_same_state, npy_bytes, read_entries, rewrite


# ------------------------------------------------------------- never unpickle
class RunsCommand:
    """Unpickling an instance runs ``touch <marker>``."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_object_array(marker) -> np.ndarray:
    return np.array([RunsCommand(marker), 1], dtype=object)


def test_the_crafted_payload_is_live(tmp_path):
    """Control: numpy.load with allow_pickle=True does run the payload used below."""
    marker = tmp_path / "control-marker"
    path = tmp_path / "evil.npz"
    np.savez(path, **{META_KEY: evil_object_array(marker)}, allow_pickle=True)
    with np.load(path, allow_pickle=True) as archive:
        archive[META_KEY]
    assert marker.exists()


@pytest.mark.parametrize("key", [META_KEY, "model/0.weight", "optimizer/state.0.exp_avg", "other"])
def test_loading_never_unpickles_an_object_array(tmp_path, saved, key):
    _, valid = saved
    marker = tmp_path / "pwned"
    entries = read_entries(valid)
    entries[key] = evil_object_array(marker)
    path = tmp_path / "evil.npz"
    np.savez(path, **entries, allow_pickle=True)
    with pytest.raises(ModelFileError, match="dtype object") as info:
        convnp.load(path)
    assert str(path) in str(info.value)
    assert "pickle" in str(info.value)
    assert not marker.exists()


def test_loading_never_unpickles_a_pickle_file(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps(RunsCommand(marker)))
    with pytest.raises(ModelFileError, match="not an .npz"):
        convnp.load(path)
    assert not marker.exists()


def test_loading_never_unpickles_an_object_npy(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npy"
    np.save(path, evil_object_array(marker), allow_pickle=True)
    with pytest.raises(ModelFileError, match="single .npy array"):
        convnp.load(path)
    assert not marker.exists()


def test_structured_and_complex_entries_are_refused(tmp_path, saved):
    _, valid = saved
    for value in (np.zeros(2, dtype=[("a", "f4")]), np.zeros(2, dtype=np.complex64)):
        entries = read_entries(valid)
        entries["model/0.bias"] = value
        path = tmp_path / "odd.npz"
        rewrite(path, entries)
        with pytest.raises(ModelFileError, match="holds only numbers"):
            convnp.load(path)


# ------------------------------------------------------- damaged and foreign
@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, -22, -1])
def test_truncated_files_fail_clearly(tmp_path, saved, fraction):
    _, valid = saved
    content = valid.read_bytes()
    cut = int(len(content) * fraction) if fraction >= 0 else len(content) + fraction
    path = tmp_path / "cut.npz"
    path.write_bytes(content[:cut])
    with pytest.raises(ModelFileError) as info:
        convnp.load(path)
    assert str(path) in str(info.value)


def test_a_flipped_byte_inside_an_array_is_caught(tmp_path, saved):
    """In place, the zip's CRC-32 catches it."""
    model, valid = saved
    content = bytearray(valid.read_bytes())
    weight_bytes = model[0].weight.data.tobytes()
    offset = bytes(content).index(weight_bytes)
    content[offset + 5] ^= 0x10
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(content))
    with pytest.raises(ModelFileError, match="damaged"):
        convnp.load(path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: np.savez(p, weights=np.ones(3)), "not a convnp model"),
        (lambda p: np.savez_compressed(p, a=np.ones((2, 2)), b=np.arange(3)), "not a convnp model"),
        (lambda p: p.write_bytes(npy_bytes(np.ones((3, 3)))), "single .npy array"),
        (lambda p: p.write_text("weights: [1, 2, 3]\n"), "not an .npz (zip) archive"),
        (lambda p: p.write_bytes(b""), "not an .npz (zip) archive"),
        (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(100)), "damaged, truncated or not a convnp model"),
    ],
    ids=["npz", "compressed npz", "npy", "text", "empty", "zip-like garbage"],
)
def test_foreign_files_fail_clearly(tmp_path, make, message):
    path = tmp_path / "foreign.npz"
    make(path)
    with pytest.raises(ModelFileError, match=re.escape(message)) as info:
        convnp.load(path)
    assert str(path) in str(info.value)


def test_a_zip_with_a_non_array_entry_is_refused(tmp_path, saved):
    _, valid = saved
    path = tmp_path / "extra.npz"
    path.write_bytes(valid.read_bytes())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("README.txt", "hello")
    with pytest.raises(ModelFileError, match="README.txt"):
        convnp.load(path)


def test_a_zip_with_duplicate_entries_is_refused(tmp_path, saved):
    """zipfile would read the last of two same-named entries; convnp refuses the ambiguity."""
    _, valid = saved
    path = tmp_path / "duplicate.npz"
    path.write_bytes(valid.read_bytes())
    with zipfile.ZipFile(path, "a") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("model/0.bias.npy", npy_bytes(np.ones(3, np.float32)))
    with pytest.raises(ModelFileError, match="duplicate entries"):
        convnp.load(path)


def test_a_compressed_copy_loads_too(tmp_path, saved):
    model, path = saved
    copy = tmp_path / "compressed.npz"
    np.savez_compressed(copy, **read_entries(path))
    assert_same_state(convnp.load(copy), model)


# ------------------------------------------------------------- read_npz itself
def test_read_npz_returns_every_entry_writable_and_native(tmp_path):
    path = tmp_path / "plain.npz"
    big_endian = np.arange(6, dtype=">i4").reshape(2, 3)
    fortran = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    np.savez(path, a=big_endian, b=fortran, c=np.array([True, False]))
    arrays = read_npz(path, where=str(path), what="a test archive")
    assert list(arrays) == ["a", "b", "c"]
    np.testing.assert_array_equal(arrays["a"], big_endian)
    np.testing.assert_array_equal(arrays["b"], fortran)
    assert arrays["a"].dtype == np.dtype("int32") and arrays["a"].dtype.isnative
    assert all(array.flags.writeable and array.flags.c_contiguous for array in arrays.values())


def test_read_npz_names_a_missing_required_entry_before_reading(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.ones(3))
    with pytest.raises(ArchiveError, match=r"other.npz is an .npz \(zip\) archive but not a test archive .no 'meta'"):
        read_npz(path, where=str(path), what="a test archive", required=("meta",))


def test_read_npz_refuses_an_object_array_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    np.savez(path, data=evil_object_array(marker), allow_pickle=True)
    with pytest.raises(ArchiveError, match="dtype object; a test archive holds only numbers"):
        read_npz(path, where=str(path), what="a test archive")
    assert not marker.exists()


def test_read_npz_refuses_an_entry_larger_than_the_file(tmp_path):
    """A stored entry whose central directory claims 2**31 bytes is refused unread."""
    path = tmp_path / "claims.npz"
    np.savez(path, a=np.zeros(4))
    content = bytearray(path.read_bytes())
    central = bytes(content).rindex(b"PK\x01\x02")  # the entry's central directory record
    content[central + 20 : central + 28] = (2**31).to_bytes(4, "little") * 2  # compressed and file size
    path.write_bytes(bytes(content))
    with pytest.raises(ArchiveError, match="declares 2147483648 bytes"):
        read_npz(path, where=str(path), what="a test archive")


def test_archive_errors_are_value_errors():
    assert issubclass(ArchiveError, ValueError)
