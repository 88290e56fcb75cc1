"""Fetch dataset files from mirrors into a cache, verified by checksum.

A file is tried on each mirror in order (dataset hosts come and go, and some
answer 403 to scripts: keep several and verify what they send). The bytes are
streamed through ``convnp.files.atomic.atomic_write`` (a temporary file in the
cache folder) while their digest is computed; only a file whose digest matches
the published one is renamed into place. A failed or interrupted transfer and
a checksum mismatch leave nothing behind, so whatever sits in the cache under a
dataset's file name is always a verified copy.

``MIRRORS`` and ``CHECKSUMS`` are plain module-level dicts so tests (and users
behind a proxy or with a local mirror) can point them elsewhere; the cache
folder is ``cache_dir=`` if given, else ``$CONVNP_CACHE``, else
``$XDG_CACHE_HOME/convnp``, else ``~/.cache/convnp``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from convnp._optional import optional
from convnp.data.errors import ChecksumError, DownloadError
from convnp.files.atomic import atomic_write

__all__ = ["MIRRORS", "CHECKSUMS", "cache_root", "download_file"]

# Base URLs per dataset, tried in order; a file's URL is base + file name.
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": [
        # The S3 website endpoint of Zalando Research speaks plain HTTP only;
        # the checksum, not the transport, is what vouches for the bytes.
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
    "cifar10": [
        "https://www.cs.toronto.edu/~kriz/",
    ],
}

# Published digests ("algorithm:hex") of the files as their authors distribute
# them (the MNIST and Fashion-MNIST values are the ones torchvision verifies;
# CIFAR-10's is on its home page). Files found locally are not checked against
# these: repackaged copies (Debian's, for one) are recompressed and differ
# byte-wise while holding the same images; read_idx validates their structure.
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {
        "cifar-10-binary.tar.gz": "md5:c32a1d4ab5d03f1284b67883e8d87530",
    },
}

DOWNLOAD_TIMEOUT = 60.0  # seconds without data before a mirror counts as failed
_CHUNK_BYTES = 1 << 16
_USER_AGENT = "convnp-data/0.1 (+https://pypi.org/project/convnp/)"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder downloads go to (one sub-folder per dataset).

    ``cache_dir`` if given, else ``$CONVNP_CACHE``, else
    ``$XDG_CACHE_HOME/convnp``, else ``~/.cache/convnp``.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("CONVNP_CACHE"):
        return Path(os.environ["CONVNP_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "convnp"
    return Path.home() / ".cache" / "convnp"


def _parse_checksum(checksum: str) -> tuple[str, str]:
    algorithm, _, hexdigest = checksum.partition(":")
    if not hexdigest or algorithm not in hashlib.algorithms_guaranteed:
        raise ValueError(f"checksum must read 'algorithm:hexdigest', e.g. 'md5:...', got {checksum!r}")
    return algorithm, hexdigest.lower()


def _new_hash(algorithm: str):
    # md5 is an identity check here, not a security measure; saying so keeps
    # FIPS-mode Pythons from refusing it.
    return hashlib.new(algorithm, usedforsecurity=False)


class _MirrorFailed(Exception):
    """A network-side failure of one mirror (the next one is worth trying)."""


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def _open_url(url: str, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except (OSError, http.client.HTTPException, ValueError) as error:
        # ValueError: a malformed URL in a user-edited MIRRORS list.
        raise _MirrorFailed(_describe(error)) from error


def _progress_bar(total: int | None, description: str, verbose: bool):
    """A tqdm bar when tqdm is installed and verbose, else None (quiet)."""
    tqdm = optional("tqdm") if verbose else None
    if tqdm is None:
        return None
    return tqdm.tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024)


def _receive(response, stream, algorithm: str, expected: str, total: int | None, progress) -> None:
    """Copy the response body into ``stream``; raise unless it is complete and has the expected digest."""
    digest = _new_hash(algorithm)
    received = 0
    while True:
        try:
            chunk = response.read(_CHUNK_BYTES)
        except (OSError, http.client.HTTPException) as error:
            raise _MirrorFailed(f"transfer failed: {_describe(error)}") from error
        if not chunk:
            break
        stream.write(chunk)
        digest.update(chunk)
        received += len(chunk)
        if progress is not None:
            progress.update(len(chunk))
    if total is not None and received != total:
        raise _MirrorFailed(f"incomplete transfer: {received} of {total} bytes")
    actual = digest.hexdigest()
    if actual != expected:
        raise ChecksumError(
            f"checksum mismatch: expected {algorithm} {expected}, got {actual} "
            f"({received} bytes); the file was discarded",
            attempts=[],
        )


def _fetch_one(url: str, destination: Path, checksum: str, verbose: bool, timeout: float) -> None:
    """Download ``url`` to ``destination`` if its digest matches, else leave no trace.

    The bytes stream through ``atomic_write``: any exception while receiving
    them (a failed transfer, a digest mismatch, Ctrl-C) removes the temporary
    file, and only a verified file is renamed into place.
    """
    algorithm, expected = _parse_checksum(checksum)
    response = _open_url(url, timeout)
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        progress = _progress_bar(total, destination.name, verbose)
        try:
            # The cache folder is created only here, once a mirror answers, so an
            # offline run leaves no folders.
            atomic_write(destination, lambda stream: _receive(response, stream, algorithm, expected, total, progress))
        finally:
            if progress is not None:
                progress.close()


def download_file(
    filename: str,
    mirrors: list[str],
    destination: str | os.PathLike,
    checksum: str,
    *,
    verbose: bool = True,
    timeout: float | None = None,
) -> Path:
    """Download ``filename`` from the first mirror that serves a verified copy.

    Parameters
    ----------
    filename : str
        Appended to each mirror's base URL.
    mirrors : list of str
        Base URLs, tried in order.
    destination : str or path-like
        Where the verified file is placed (atomically); its folder is created.
    checksum : str
        ``"md5:<hex>"`` or ``"sha256:<hex>"`` (any ``hashlib`` algorithm).
    verbose : bool
        Show a tqdm progress bar (when tqdm is installed).
    timeout : float, optional
        Seconds without data before a mirror counts as failed (default
        ``DOWNLOAD_TIMEOUT``).

    Returns
    -------
    pathlib.Path
        ``destination``.

    Raises
    ------
    ChecksumError
        When no mirror served a verified copy and at least one served bytes
        with the wrong digest (a corrupted or changed file).
    DownloadError
        When every mirror failed at the network level (offline, refused, HTTP
        errors, incomplete transfers).
    """
    destination = Path(destination)
    timeout = DOWNLOAD_TIMEOUT if timeout is None else timeout
    attempts: list[str] = []
    checksum_failed = False
    for base in mirrors:
        url = base.rstrip("/") + "/" + filename
        try:
            _fetch_one(url, destination, checksum, verbose, timeout)
            return destination
        except _MirrorFailed as error:
            attempts.append(f"{url}: {error}")
        except ChecksumError as error:
            checksum_failed = True
            attempts.append(f"{url}: {error}")
    tried = "\n".join(f"  - {line}" for line in attempts) or "  (no mirrors configured)"
    if checksum_failed:
        raise ChecksumError(
            f"{filename}: no mirror served a copy matching {checksum}; nothing was written "
            f"to {destination.parent}.\nMirrors tried:\n{tried}",
            attempts=attempts,
        )
    raise DownloadError(f"{filename}: every mirror failed.\nMirrors tried:\n{tried}", attempts)
