"""The model file format: checksums, format versions, atomic saves (two processes saving to
one path at once too), plain .npz content, and the optimizer state and extra arrays stored
beside a model (convnp.files.model_file).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import convnp
from convnp import optim
from convnp.files.model_file import (
    FORMAT_VERSION,
    META_KEY,
    ModelFileError,
    arrays_checksum,
    extra_arrays,
    file_checksum,
    load_file,
    optimizer_state,
    save_model,
)
from tests.model_files import (
    assert_same_state,
    data,
    description,
    files_in,
    read_entries,
    rewrite,
    rich_model,
    writer_model,
)


# ------------------------------------------------------------------ checksums
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


# ------------------------------------------------ description and versions
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
    model, valid = saved
    entries = read_entries(valid)
    meta = description(entries)
    meta["format_version"] = 1
    meta["checksum"] = arrays_checksum({k: v for k, v in entries.items() if k != META_KEY})
    path = tmp_path / "v1.npz"
    rewrite(path, entries, meta)
    assert_same_state(convnp.load(path), model)


def test_a_version_2_file_still_loads(tmp_path, saved):
    """Version 3 added the "extra/" entries; a version 2 file has none and loads as before."""
    model, valid = saved
    entries = read_entries(valid)
    meta = description(entries)
    meta["format_version"] = 2
    path = tmp_path / "v2.npz"
    rewrite(path, entries, meta, fix_checksum=True)
    assert_same_state(convnp.load(path), model)


@pytest.mark.parametrize("version", [1, 2])
def test_extra_entries_in_a_version_that_has_none_are_refused(tmp_path, saved, version):
    _, valid = saved
    entries = read_entries(valid)
    entries["extra/best"] = np.zeros(3)
    meta = {**description(entries), "format_version": version}
    arrays = {key: value for key, value in entries.items() if key != META_KEY}
    meta["checksum"] = arrays_checksum(arrays) if version == 1 else file_checksum(meta, arrays)
    path = tmp_path / "old-with-extra.npz"
    rewrite(path, entries, meta)
    with pytest.raises(ModelFileError, match="unexpected entry 'extra/best'"):
        convnp.load(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        convnp.load(tmp_path / "missing.npz")


def test_a_folder_is_an_os_error_not_a_model_file_error(tmp_path):
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    with pytest.raises(OSError) as info:
        convnp.load(folder)
    assert not isinstance(info.value, ModelFileError)


# ------------------------------------------------------------ atomic writes
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


# ------------------------------------------------------------ optimizer state
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


# ------------------------------------------------------------- extra arrays
def test_extra_arrays_are_stored_beside_extra_and_covered_by_the_checksum(tmp_path):
    model = rich_model()
    averages = {"0.weight": np.full((3, 1, 3, 3), 0.5, np.float32), "steps": np.arange(4)}
    path = save_model(model, tmp_path / "m.npz", extra={"note": 1}, extra_arrays=averages)
    meta, arrays = load_file(path)
    assert meta["extra"] == {"note": 1} and meta["format_version"] == FORMAT_VERSION == 3
    loaded = extra_arrays(arrays)
    assert list(loaded) == list(averages)
    for key, value in averages.items():
        assert loaded[key].dtype == value.dtype and np.array_equal(loaded[key], value), key
    assert_same_state(convnp.load(path), model)  # a model file like any other
    entries = read_entries(path)
    entries["extra/steps"] = np.arange(5)
    assert meta["checksum"] != file_checksum(meta, {k: v for k, v in entries.items() if k != META_KEY})
    rewrite(path, entries)
    with pytest.raises(ModelFileError, match="checksum"):
        load_file(path)


def test_a_model_file_without_extra_arrays_has_none(saved):
    assert extra_arrays(load_file(saved[1])[1]) == {}


# -------------------------------------------------------------- two writers
_SAVER = """
import sys
from tests.model_files import writer_model

path, seed = sys.argv[1], int(sys.argv[2])
model = writer_model(seed)
for _ in range(20):
    model.save(path)
"""


def test_two_processes_saving_a_model_to_one_path_leave_one_complete_loadable_file(tmp_path):
    """Loads in between and afterwards succeed and give one writer's whole model, never a mix."""
    path = tmp_path / "shared.npz"
    expected = {seed: writer_model(seed).state_dict() for seed in (1, 2)}
    source_root = str(Path(convnp.__file__).resolve().parents[1])
    repository = str(Path(__file__).resolve().parents[2])  # for tests.model_files
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source_root, repository, os.environ.get("PYTHONPATH", "")])}
    writers = [
        subprocess.Popen([sys.executable, "-c", _SAVER, str(path), str(seed)], env=env, stderr=subprocess.PIPE)
        for seed in expected
    ]

    def whose(state) -> int:
        matches = [
            seed
            for seed, reference in expected.items()
            if all(np.array_equal(state[k], v) for k, v in reference.items())
        ]
        assert len(matches) == 1, "a model file mixing the two writers' arrays"
        return matches[0]

    seen = []
    while any(writer.poll() is None for writer in writers):
        if path.exists():
            seen.append(whose(convnp.load(path).state_dict()))
        time.sleep(0.002)
    for writer in writers:
        assert writer.wait() == 0, writer.stderr.read().decode()
        writer.stderr.close()
    assert whose(convnp.load(path).state_dict()) in (1, 2)
    assert seen, "no load happened while the writers ran"
    assert files_in(tmp_path) == ["shared.npz"]  # no temporary file left behind
