"""Model files: loading never unpickles, damaged or foreign files fail clearly and never
half-load, writes are atomic, and save -> load is exact.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile

import numpy as np
import pytest

import convnp
from convnp import nn, optim
from convnp.serialization import (
    FORMAT_VERSION,
    META_KEY,
    ModelFileError,
    file_checksum,
    load_file,
    optimizer_state,
)


def rich_model(dtype: str = "float32") -> convnp.Sequential:
    """Every kind of stored array: conv and dense weights, biases, batch-norm buffers."""
    return convnp.Sequential(
        [
            nn.Conv2D(3, 3, padding=1),
            nn.BatchNorm2D(),
            nn.ReLU(),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Dense(6, activation=nn.LeakyReLU(0.2)),
            nn.BatchNorm1D(),
            nn.Dense(3),
        ],
        input_shape=(1, 6, 6),
        dtype=dtype,
        seed=0,
    )


def data(dtype: str = "float32", n: int = 16):
    rng = np.random.default_rng(1)
    return rng.random((n, 1, 6, 6)).astype(dtype), rng.integers(0, 3, n)


@pytest.fixture
def saved(tmp_path):
    """A trained model (non-trivial running statistics) and the path it is saved at."""
    model = rich_model()
    x, y = data()
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, seed=0)
    return model, model.save(tmp_path / "model.npz")


def read_entries(path) -> dict[str, np.ndarray]:
    """The raw arrays of an .npz (numpy.load, no pickle), keyed as stored."""
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def rewrite(path, entries: dict[str, np.ndarray], meta: dict | None = None, fix_checksum: bool = False) -> None:
    """Write ``entries`` (and ``meta`` as the description) back as a well-formed .npz."""
    entries = dict(entries)
    if meta is not None:
        if fix_checksum:
            arrays = {k: v for k, v in entries.items() if k != META_KEY}
            meta = {**meta, "checksum": file_checksum(meta, arrays)}
        entries[META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as stream:
        np.savez(stream, **entries)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def description(entries: dict[str, np.ndarray]) -> dict:
    return json.loads(entries[META_KEY].tobytes().decode())


def assert_same_state(a: convnp.Sequential, b: convnp.Sequential) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for key in state_a:
        assert state_a[key].dtype == state_b[key].dtype, key
        assert np.array_equal(state_a[key], state_b[key]), key


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


def test_a_rewritten_file_with_a_changed_array_fails_the_checksum(tmp_path, saved):
    """Re-written (so the zip CRCs are right again), the sha256 checksum catches it."""
    _, valid = saved
    entries = read_entries(valid)
    weight = entries["model/0.weight"].copy()
    weight.reshape(-1).view(np.uint8)[3] ^= 0x01  # one byte of one array
    entries["model/0.weight"] = weight
    path = tmp_path / "changed.npz"
    rewrite(path, entries)
    with pytest.raises(ModelFileError, match="does not match the stored checksum"):
        convnp.load(path)


def test_a_rewritten_file_with_a_changed_description_fails_the_checksum(tmp_path, saved):
    _, valid = saved
    entries = read_entries(valid)
    meta = description(entries)
    meta["layers"][1]["config"]["eps"] = 0.1  # a batch-norm eps: shapes would not notice
    path = tmp_path / "changed.npz"
    rewrite(path, entries, meta)
    with pytest.raises(ModelFileError, match="does not match the stored checksum"):
        convnp.load(path)


def test_a_dropped_or_added_array_fails_the_checksum(tmp_path, saved):
    _, valid = saved
    entries = read_entries(valid)
    del entries["model/1.running_var"]
    path = tmp_path / "dropped.npz"
    rewrite(path, entries)
    with pytest.raises(ModelFileError, match="checksum"):
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


def test_another_format_fails_clearly(tmp_path, saved):
    _, valid = saved
    entries = read_entries(valid)
    meta = description(entries)
    meta["format"] = "keras-model"
    path = tmp_path / "other.npz"
    rewrite(path, entries, meta, fix_checksum=True)
    with pytest.raises(ModelFileError, match="not a convnp model file .format 'keras-model'"):
        convnp.load(path)


def test_a_damaged_description_fails_clearly(tmp_path, saved):
    _, valid = saved
    entries = read_entries(valid)
    entries[META_KEY] = np.frombuffer(b'{"format": "convnp-model", ', dtype=np.uint8)
    path = tmp_path / "damaged.npz"
    rewrite(path, entries)
    with pytest.raises(ModelFileError, match="damaged description"):
        convnp.load(path)


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 99])
def test_a_newer_format_version_asks_for_an_upgrade(tmp_path, saved, version):
    _, valid = saved
    entries = read_entries(valid)
    meta = description(entries)
    meta["format_version"] = version
    path = tmp_path / "newer.npz"
    rewrite(path, entries, meta, fix_checksum=True)
    with pytest.raises(ModelFileError, match=f"format version {version}.*up to version {FORMAT_VERSION}.*upgrade"):
        convnp.load(path)


@pytest.mark.parametrize("version", [0, -1, "2", True, None])
def test_an_invalid_format_version_is_refused(tmp_path, saved, version):
    _, valid = saved
    entries = read_entries(valid)
    meta = description(entries)
    meta["format_version"] = version
    path = tmp_path / "invalid.npz"
    rewrite(path, entries, meta, fix_checksum=True)
    with pytest.raises(ModelFileError, match="format version"):
        convnp.load(path)


def test_a_version_1_file_still_loads(tmp_path, saved):
    """Version 1 (the first format) checksummed the arrays only."""
    from convnp.serialization import arrays_checksum

    model, valid = saved
    entries = read_entries(valid)
    meta = description(entries)
    meta["format_version"] = 1
    meta["checksum"] = arrays_checksum({k: v for k, v in entries.items() if k != META_KEY})
    path = tmp_path / "v1.npz"
    rewrite(path, entries, meta)
    assert_same_state(convnp.load(path), model)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        convnp.load(tmp_path / "missing.npz")


def test_a_folder_is_an_os_error_not_a_model_file_error(tmp_path):
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    with pytest.raises(OSError) as info:
        convnp.load(folder)
    assert not isinstance(info.value, ModelFileError)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda meta: meta["layers"][8]["config"].update(out_features=4), "does not match its own architecture"),
        (lambda meta: meta["layers"].pop(), "does not match its own architecture"),
        (lambda meta: meta.update(input_shape=[1, 8, 8]), "architecture description is invalid"),
        (lambda meta: meta["layers"][0].update({"class": "Conv3D"}), "unknown layer type 'Conv3D'"),
        (lambda meta: meta["layers"][0].update({"class": "_Pool2D"}), "unknown layer type '_Pool2D'"),
        (lambda meta: meta["layers"][0]["config"].update(kernel_size=0), "architecture description is invalid"),
        (lambda meta: meta["layers"][0]["config"].update(size=3), "architecture description is invalid"),
        (lambda meta: meta.update(dtype="int8"), "architecture description is invalid"),
        (lambda meta: meta.update(layers=[]), "architecture description is invalid"),
        (lambda meta: meta.pop("layers"), "architecture description is invalid"),
    ],
    ids=["dense width", "layer dropped", "input shape", "unknown class", "private class", "bad config",
         "unknown argument", "int dtype", "no layers", "layers missing"],
)  # fmt: skip
def test_architecture_and_arrays_that_disagree_fail_clearly(tmp_path, saved, change, message):
    _, valid = saved
    entries = read_entries(valid)
    meta = description(entries)
    change(meta)
    path = tmp_path / "mismatch.npz"
    rewrite(path, entries, meta, fix_checksum=True)
    with pytest.raises(ModelFileError, match=message):
        convnp.load(path)


def test_a_missing_array_is_named(tmp_path, saved):
    _, valid = saved
    entries = read_entries(valid)
    del entries["model/7.running_mean"]
    meta = description(entries)
    path = tmp_path / "missing-array.npz"
    rewrite(path, entries, meta, fix_checksum=True)
    with pytest.raises(ModelFileError, match=r"missing keys \['7.running_mean'\]"):
        convnp.load(path)


def test_an_array_of_the_wrong_shape_is_named(tmp_path, saved):
    _, valid = saved
    entries = read_entries(valid)
    entries["model/8.bias"] = np.zeros(5, np.float32)
    meta = description(entries)
    path = tmp_path / "wrong-shape.npz"
    rewrite(path, entries, meta, fix_checksum=True)
    with pytest.raises(ModelFileError, match=r"8.bias.*expects shape \(3,\), got \(5,\)"):
        convnp.load(path)


# ------------------------------------------------------------ atomic writes
def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_save_that_fails_midway_leaves_the_previous_file_and_no_temp_file(tmp_path, saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()
    real_savez = np.savez

    def savez_then_fail(stream, **arrays):
        buffer = io.BytesIO()
        real_savez(buffer, **arrays)
        stream.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # half the file...
        raise OSError(28, "No space left on device")  # ...then the disk is full

    monkeypatch.setattr(np, "savez", savez_then_fail)
    model[0].weight.data += 1.0
    with pytest.raises(OSError, match="No space left"):
        model.save(path)
    assert path.read_bytes() == before
    assert files_in(path.parent) == ["model.npz"]


def test_ctrl_c_during_a_save_leaves_the_previous_file(tmp_path, saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def interrupted(stream, **arrays):
        stream.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before
    assert files_in(path.parent) == ["model.npz"]


def test_an_error_while_collecting_the_arrays_writes_nothing(tmp_path, saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def broken_state_dict():
        raise MemoryError("simulated")

    monkeypatch.setattr(model, "state_dict", broken_state_dict)
    with pytest.raises(MemoryError):
        model.save(path)
    assert path.read_bytes() == before
    assert files_in(path.parent) == ["model.npz"]


def test_extra_data_that_is_not_json_writes_nothing(tmp_path, saved):
    from convnp.serialization import save

    model, path = saved
    before = path.read_bytes()
    with pytest.raises(TypeError, match="JSON"):
        save(model, path, extra={"callback": object()})
    assert path.read_bytes() == before
    assert files_in(path.parent) == ["model.npz"]


def test_saved_files_get_normal_permissions(tmp_path):
    """Not the 0o600 of a mkstemp temporary file: 0o666 minus the umask."""
    previous = os.umask(0o022)
    try:
        path = rich_model().save(tmp_path / "perm.npz")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644


def test_the_npz_suffix_is_added_and_found(tmp_path):
    model = rich_model()
    written = model.save(tmp_path / "model")
    assert written == tmp_path / "model.npz"
    assert files_in(tmp_path) == ["model.npz"]
    assert_same_state(convnp.load(tmp_path / "model"), model)


def test_saved_files_are_plain_npz(tmp_path):
    """Readable by numpy.load without pickle; the description is JSON."""
    model = rich_model()
    path = model.save(tmp_path / "m.npz")
    entries = read_entries(path)
    meta = description(entries)
    assert meta["format"] == "convnp-model" and meta["format_version"] == FORMAT_VERSION
    np.testing.assert_array_equal(entries["model/0.weight"], model[0].weight.data)
    with zipfile.ZipFile(path) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}


def test_a_compressed_copy_loads_too(tmp_path, saved):
    model, path = saved
    copy = tmp_path / "compressed.npz"
    np.savez_compressed(copy, **read_entries(path))
    assert_same_state(convnp.load(copy), model)


# --------------------------------------------------------------- round trip
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_gives_identical_predictions_state_and_dtype(tmp_path, dtype):
    model = rich_model(dtype)
    x, y = data(dtype)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, seed=0)
    # Training moved the running statistics away from their initial zeros and ones.
    assert not np.array_equal(model[1].running_mean, np.zeros(3))
    assert not np.array_equal(model[7].running_var, np.ones(6))
    loaded = convnp.load(model.save(tmp_path / "model.npz"))
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.input_shape == model.input_shape
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert_same_state(loaded, model)
    assert loaded[1].running_mean.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.predict(x).dtype == np.dtype(dtype)
    assert loaded.evaluate(x, y) == model.evaluate(x, y)
    assert loaded[6].activation.alpha == 0.2 and loaded[5].p == 0.25


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda params: optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda params: optim.Adam(params, lr=0.01, betas=(0.8, 0.99), amsgrad=True),
        lambda params: optim.AdamW(params, lr=0.01),
        lambda params: optim.RMSprop(params, lr=0.01, momentum=0.5),
    ],
    ids=["sgd", "adam", "adamw", "rmsprop"],
)
def test_optimizer_state_round_trip_continues_identically(tmp_path, make_optimizer):
    x, y = data()
    model = rich_model()
    optimizer = make_optimizer(model.parameters())
    model.fit(x, y, epochs=2, batch_size=4, optimizer=optimizer, verbose=0, seed=0, shuffle=False)
    path = model.save(tmp_path / "with-optimizer.npz", optimizer=optimizer)

    meta, arrays = load_file(path)
    restored_model = convnp.load(path)
    restored = make_optimizer(restored_model.parameters())
    restored.load_state_dict(optimizer_state(meta, arrays))
    saved_state, restored_state = optimizer.state_dict(), restored.state_dict()
    assert saved_state.keys() == restored_state.keys()
    for key, value in saved_state.items():
        assert np.array_equal(value, restored_state[key]), key

    # One more epoch from each gives bit-identical weights.
    model.fit(x, y, epochs=1, batch_size=4, optimizer=optimizer, verbose=0, seed=5, shuffle=False)
    restored_model.fit(x, y, epochs=1, batch_size=4, optimizer=restored, verbose=0, seed=5, shuffle=False)
    assert_same_state(restored_model, model)


def test_a_model_file_without_optimizer_has_no_optimizer_state(saved):
    _, path = saved
    meta, arrays = load_file(path)
    assert optimizer_state(meta, arrays) is None
    assert all(key.startswith("model/") for key in arrays)
