"""The one atomic writer: whole files or none, usual permissions, and every writer of
convnp goes through it (convnp.files.atomic).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import convnp
from convnp import nn
from convnp.data import write_idx
from convnp.data.download import download_file
from convnp.files.atomic import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_npz


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(params=[0o022, 0o077], ids=["umask-022", "umask-077"])
def umask(request):
    """Run the test under this umask; the expected mode of a new file is 0o666 & ~umask."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# ------------------------------------------------------------- permissions
def test_a_new_file_gets_0o666_minus_the_umask(tmp_path, umask):
    path = atomic_write_bytes(tmp_path / "new.bin", b"data")
    assert mode(path) == 0o666 & ~umask


def test_a_replaced_file_gets_0o666_minus_the_umask_too(tmp_path, umask):
    path = tmp_path / "old.bin"
    path.write_bytes(b"old")
    path.chmod(0o600)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert mode(path) == 0o666 & ~umask


def test_an_exported_onnx_file_gets_the_usual_mode(tmp_path, umask):
    pytest.importorskip("onnx")
    from convnp.interop import to_onnx

    model = convnp.Sequential([nn.Flatten(), nn.Dense(3)], input_shape=(1, 4, 4), seed=0)
    assert mode(to_onnx(model, tmp_path / "model.onnx")) == 0o666 & ~umask
    assert files_in(tmp_path) == ["model.onnx"]


def test_an_idx_file_gets_the_usual_mode(tmp_path, umask):
    path = write_idx(tmp_path / "images.gz", np.zeros((2, 3, 3), np.uint8))
    assert mode(path) == 0o666 & ~umask
    assert files_in(tmp_path) == ["images.gz"]


def test_a_downloaded_file_gets_the_usual_mode(tmp_path, umask):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    payload = bytes(range(256)) * 40
    (mirror / "blob.bin").write_bytes(payload)
    checksum = "sha256:" + hashlib.sha256(payload).hexdigest()
    destination = tmp_path / "cache" / "blob.bin"
    download_file("blob.bin", [mirror.as_uri() + "/"], destination, checksum, verbose=False)
    assert destination.read_bytes() == payload
    assert mode(destination) == 0o666 & ~umask
    assert files_in(destination.parent) == ["blob.bin"]


def test_a_plot_gets_the_usual_mode(tmp_path, umask):
    pytest.importorskip("matplotlib")
    from convnp.plots import plot_confusion_matrix

    path = plot_confusion_matrix([0, 1, 1], [0, 1, 0], tmp_path / "plots" / "confusion.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert mode(path) == 0o666 & ~umask
    assert files_in(path.parent) == ["confusion.png"]


# -------------------------------------------------------- all or nothing
@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_an_exception_in_the_writer_keeps_the_previous_content_and_no_temp_file(tmp_path, error):
    path = tmp_path / "file.bin"
    path.write_bytes(b"previous content")

    def write_half_then_fail(stream):
        stream.write(b"half of the new")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, write_half_then_fail)
    assert path.read_bytes() == b"previous content"
    assert files_in(tmp_path) == ["file.bin"]


def test_an_exception_in_the_writer_creates_no_file(tmp_path):
    def fail(stream):
        raise ValueError("before any byte")

    with pytest.raises(ValueError, match="before any byte"):
        atomic_write(tmp_path / "never.bin", fail)
    assert files_in(tmp_path) == []


def test_a_failed_download_leaves_nothing(tmp_path):
    from convnp.data import ChecksumError

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "blob.bin").write_bytes(b"not what was published")
    destination = tmp_path / "cache" / "blob.bin"
    with pytest.raises(ChecksumError):
        download_file("blob.bin", [mirror.as_uri() + "/"], destination, "md5:" + "0" * 32, verbose=False)
    assert files_in(destination.parent) == []


def test_missing_folders_are_created(tmp_path):
    path = atomic_write_bytes(tmp_path / "a" / "b" / "c.bin", b"x")
    assert path == tmp_path / "a" / "b" / "c.bin" and path.read_bytes() == b"x"


# ---------------------------------------------------------------- helpers
def test_atomic_write_passes_a_binary_stream_and_returns_the_path(tmp_path):
    written = atomic_write(str(tmp_path / "s.bin"), lambda stream: stream.write(b"\x00\xffbytes"))
    assert written == tmp_path / "s.bin" and isinstance(written, Path)
    assert written.read_bytes() == b"\x00\xffbytes"


def test_atomic_write_bytes(tmp_path):
    path = atomic_write_bytes(tmp_path / "b.bin", b"abc")
    assert path.read_bytes() == b"abc"
    atomic_write_bytes(path, b"")
    assert path.read_bytes() == b""


def test_atomic_write_json_is_indented_with_a_final_newline(tmp_path):
    data = {"loss": [1.5, 0.25], "name": "run", "nested": {"ok": True}}
    path = atomic_write_json(tmp_path / "history.json", data)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == data
    assert text == json.dumps(data, indent=2) + "\n"


def test_atomic_write_json_that_is_not_serialisable_keeps_the_previous_file(tmp_path):
    path = atomic_write_json(tmp_path / "config.json", {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert files_in(tmp_path) == ["config.json"]


def test_atomic_write_npz_is_an_uncompressed_npz(tmp_path):
    arrays = {"weights": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.array(7)}
    path = atomic_write_npz(tmp_path / "arrays.npz", arrays)
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["step", "weights"]
        np.testing.assert_array_equal(archive["weights"], arrays["weights"])
        assert archive["weights"].dtype == np.float32 and archive["step"] == 7


# ------------------------------------------------------------ concurrency
_WRITER = """
import sys
import numpy as np
from convnp.files.atomic import atomic_write_npz

path, value = sys.argv[1], float(sys.argv[2])
values = np.full(100_000, value)
for _ in range(25):
    atomic_write_npz(path, {"values": values})
"""


def test_two_processes_writing_one_path_leave_one_complete_file(tmp_path):
    """Readers in between and afterwards only ever see one writer's whole file."""
    path = tmp_path / "shared.npz"
    source_root = str(Path(convnp.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source_root, os.environ.get("PYTHONPATH", "")])}
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), value], env=env, stderr=subprocess.PIPE)
        for value in ("1", "2")
    ]
    seen = set()
    while any(writer.poll() is None for writer in writers):
        if path.exists():
            with np.load(path, allow_pickle=False) as archive:
                values = archive["values"]
            assert values.shape == (100_000,) and len(np.unique(values)) == 1
            seen.add(float(values[0]))
        time.sleep(0.001)
    for writer in writers:
        assert writer.wait() == 0, writer.stderr.read().decode()
        writer.stderr.close()
    with np.load(path, allow_pickle=False) as archive:
        values = archive["values"]
    assert values.shape == (100_000,) and float(values[0]) in (1.0, 2.0) and len(np.unique(values)) == 1
    assert seen <= {1.0, 2.0}
    assert files_in(tmp_path) == ["shared.npz"]
