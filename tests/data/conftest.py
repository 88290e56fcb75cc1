"""Fixtures for convnp.data: an isolated cache, small IDX datasets, a local HTTP mirror."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from convnp.data import download, locate, write_idx

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def isolated_data_env(monkeypatch, tmp_path):
    """Every test gets its own cache; no real mirror, system copy or user env leaks in."""
    monkeypatch.setenv("CONVNP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CONVNP_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    # A proxy from the environment must not intercept the local test server.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(locate, "SYSTEM_DIRS", {})
    # Any download a test did not set up hits a closed local port, never the internet.
    unreachable = closed_port_url()
    for name in list(download.MIRRORS):
        monkeypatch.setitem(download.MIRRORS, name, [unreachable])
    return tmp_path / "cache"


def _write_idx_dataset(
    folder: Path, seed: int = 0, n_train: int = 6, n_test: int = 4, gz: bool = True
) -> dict[str, np.ndarray]:
    """Write a tiny MNIST-shaped dataset as the four official IDX files; return its arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    for key, stem in IDX_NAMES.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[key])
    return arrays


@pytest.fixture
def make_idx_files():
    """``make_idx_files(folder, seed=0, n_train=6, n_test=4, gz=True) -> arrays``.

    A fixture rather than an import: several test folders have a conftest.py.
    """
    return _write_idx_dataset


@pytest.fixture
def unreachable_url():
    return closed_port_url()


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@dataclass
class LocalMirror:
    """A directory served over HTTP on 127.0.0.1; ``requests`` logs (path, status)."""

    url: str
    root: Path
    requests: list[tuple[str, int]] = field(default_factory=list)

    def paths_requested(self) -> list[str]:
        return [path for path, _status in self.requests]


class _RecordingHandler(http.server.SimpleHTTPRequestHandler):
    mirror: LocalMirror

    def log_request(self, code="-", size="-"):
        self.mirror.requests.append((self.path, int(code)))

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_GET(self):
        # /short/<file>: announce more bytes than are sent, like a dropped connection.
        if self.path.startswith("/short/"):
            body = (self.mirror.root / self.path.removeprefix("/short/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 100))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


@pytest.fixture
def local_mirror(tmp_path):
    """Serve tmp_path/'mirror' on an ephemeral port in a thread; shut down afterwards."""
    root = tmp_path / "mirror"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingHandler)
    mirror = LocalMirror(url=f"http://127.0.0.1:{server.server_address[1]}/", root=root)
    handler = type(
        "Handler", (_RecordingHandler,), {"mirror": mirror}
    )  # one handler class per server, bound to this mirror
    server.RequestHandlerClass = functools.partial(handler, directory=str(root))
    # A short poll interval: shutdown() waits for the loop's next poll.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield mirror
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
