"""The convnp model file at the level of bytes: one ``.npz`` of arrays and a JSON description.

Layout of a file written by ``save_model`` (an uncompressed zip of ``.npy``
entries, readable by ``numpy.load``):

    "__convnp__"          uint8 bytes of a JSON document:
                          {"format": "convnp-model", "format_version": 3,
                           "dtype": "float32", "input_shape": [1, 28, 28],
                           "layers": [{"class": "Conv2D", "config": {...}}, ...],
                           "optimizer": {...JSON part of the optimizer state} or absent,
                           "extra": {...caller's JSON data} or absent,
                           "class_names": [...], "input_stats": {...} or absent
                               (``convnp.files.model_metadata``),
                           "checksum": sha256 of the rest of this description and every array}
    "model/<key>"         every state_dict entry ("model/0.weight", "model/1.running_mean")
    "optimizer/<key>"     the optimizer state arrays, when saved
    "extra/<key>"         arrays that go with ``extra`` (a fit checkpoint's callback
                          states: the best weights of EarlyStopping), when saved

Version 3 added the "extra/" entries; versions 1 and 2 are still read.

Safety, in the order ``load_file`` checks it:

- Nothing in a file can run code, and no header can ask for an absurd
  allocation: the archive is read by ``convnp.files.safe_zip`` (no
  ``numpy.load``, no pickle, every size checked against the file's).
- Damage is detected. The zip's CRC-32 catches flipped bytes inside an entry;
  the sha256 ``checksum`` covers the description and every array (keys,
  dtypes, shapes, bytes), so a file whose arrays or description were changed
  and re-written is refused too. (Version 1 files, whose checksum covers the
  arrays only, are still read.)

Writing goes through ``convnp.files.atomic``: a save that fails (disk full,
Ctrl-C, an exception while converting the arrays) leaves the previous file
intact and no temporary file behind.

A model is known here only through its public attributes (``dtype``,
``input_shape``, ``layers`` and each layer's ``get_config()``, ``state_dict()``)
and an optimizer through its ``state_dict()``: nothing of ``convnp.nn`` is
imported, so the layers themselves can save. Building a model back from a file
is ``convnp.serialization.load``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from convnp.files.atomic import atomic_write_npz
from convnp.files.model_metadata import metadata_fields
from convnp.files.safe_zip import ArchiveError, read_npz

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "META_KEY",
    "CHECKSUM_KEY",
    "ModelFileError",
    "arrays_checksum",
    "file_checksum",
    "json_default",
    "architecture",
    "model_path",
    "save_model",
    "load_file",
    "model_state",
    "optimizer_state",
    "extra_arrays",
]

FORMAT_NAME = "convnp-model"
FORMAT_VERSION = 3
# Entry prefixes, and the first format version that may hold each.
_ENTRY_VERSIONS = {"model/": 1, "optimizer/": 1, "extra/": 3}
META_KEY = "__convnp__"
CHECKSUM_KEY = "checksum"


class ModelFileError(ValueError):
    """A file that is not a readable convnp model: damaged, truncated, foreign, unsafe or newer.

    A subclass of ``ValueError``; the message names the file and the problem.
    """


# ------------------------------------------------------------------ checksums
def arrays_checksum(arrays: dict[str, np.ndarray], digest=None) -> str:
    """sha256 over the keys, dtypes, shapes and bytes of ``arrays`` in sorted key order."""
    digest = hashlib.sha256() if digest is None else digest
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def json_default(value: Any) -> Any:
    """JSON form of the NumPy scalars (and short vectors) that configs and states may hold.

    For ``json.dumps(..., default=json_default)``; anything else raises ``TypeError``.
    """
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray) and value.ndim <= 1 and value.size <= 64:
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _canonical_json(meta: dict) -> bytes:
    """The description without its checksum, in one canonical spelling."""
    body = {key: value for key, value in meta.items() if key != CHECKSUM_KEY}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=json_default).encode("utf-8")


def file_checksum(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the canonical description (minus the checksum) and then every array."""
    digest = hashlib.sha256()
    digest.update(_canonical_json(meta))
    digest.update(b"\x00")
    return arrays_checksum(arrays, digest)


# ------------------------------------------------------------------- writing
def architecture(model) -> dict:
    """The JSON-compatible description from which ``convnp.serialization.load`` rebuilds ``model``."""
    return model.get_config()


def model_path(path: str | os.PathLike) -> Path:
    """``path`` with the ``.npz`` suffix that ``save_model`` adds when it is missing."""
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def save_model(
    model,
    path: str | os.PathLike,
    optimizer=None,
    extra: dict | None = None,
    extra_arrays: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Save ``model`` (and optionally an optimizer's state, JSON ``extra`` and arrays with it) to ``path``.

    Parameters
    ----------
    model : Sequential
        A built model.
    path : str or path-like
        The file; ``.npz`` is appended when the name does not end in it.
    optimizer : Optimizer, optional
        Its ``state_dict`` is stored beside the model (arrays as entries, the
        rest in the JSON description); read it back with ``optimizer_state``.
    extra : dict, optional
        JSON-serialisable data stored in the description (fit checkpoints keep
        the epoch, RNG states and history there).
    extra_arrays : mapping of str to ndarray, optional
        Numeric arrays stored as entries beside ``extra`` (fit checkpoints keep
        the callbacks' arrays there); read them back with ``extra_arrays``.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    RuntimeError
        When the model is not built.
    TypeError
        When ``extra`` (or a layer config) is not JSON-serialisable. Nothing is written.
    """
    if model.input_shape is None:
        raise RuntimeError(
            f"{type(model).__name__}.save: the model is not built yet; pass input_shape= or run a batch through it"
        )
    path = model_path(path)
    arrays = {f"model/{key}": value for key, value in model.state_dict().items()}
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **architecture(model), **metadata_fields(model)}
    if optimizer is not None:
        optimizer_json = {}
        for key, value in optimizer.state_dict().items():
            if isinstance(value, np.ndarray):
                arrays[f"optimizer/{key}"] = value
            else:
                optimizer_json[key] = value
        meta["optimizer"] = {"class": type(optimizer).__name__, "state": optimizer_json}
    if extra is not None:
        meta["extra"] = extra
    for key, value in (extra_arrays or {}).items():
        arrays[f"extra/{key}"] = np.asarray(value)
    try:
        meta[CHECKSUM_KEY] = file_checksum(meta, arrays)
        meta_bytes = json.dumps(meta, default=json_default).encode("utf-8")
    except TypeError as error:
        raise TypeError(f"save: the model description or extra= is not JSON-serialisable ({error})") from error
    arrays[META_KEY] = np.frombuffer(meta_bytes, dtype=np.uint8)
    return atomic_write_npz(path, arrays)


# ------------------------------------------------------------------- reading
def _parse_description(meta_bytes: np.ndarray, where: str) -> dict:
    try:
        if meta_bytes.dtype != np.uint8 or meta_bytes.ndim != 1:
            raise ValueError(f"description is {meta_bytes.dtype} {meta_bytes.shape}, not a byte string")
        meta = json.loads(meta_bytes.tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("description is not a JSON object")
    except (ValueError, RecursionError) as error:
        raise ModelFileError(f"{where} has a damaged description ({error})") from error
    return meta


def load_file(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and verify a model file; returns ``(meta, arrays)`` without building anything.

    ``meta`` is the JSON description; ``arrays`` maps "model/<key>",
    "optimizer/<key>" and "extra/<key>" to arrays.

    Raises
    ------
    FileNotFoundError
        The file does not exist (nor does it with ``.npz`` appended).
    ModelFileError
        Anything else that is not an intact convnp model file of a known
        version: not a zip, a plain ``.npy``, a truncated or damaged archive,
        non-numeric (pickled) entries, a damaged description, another format,
        a newer format version, a checksum mismatch.
    OSError
        Other errors opening the file (permission denied, a folder) as raised.
    """
    path = Path(path)
    if not path.exists() and path.suffix != ".npz" and model_path(path).exists():
        path = model_path(path)  # save_model(model, "m") wrote "m.npz"
    if not path.exists():
        raise FileNotFoundError(f"convnp.load: no such model file: {path}")
    where = f"convnp.load: {path}"
    try:
        arrays = read_npz(path, where=where, what="a convnp model file", required=(META_KEY,))
    except ArchiveError as error:
        raise ModelFileError(str(error)) from error
    meta = _parse_description(arrays.pop(META_KEY), where)
    if meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{where} is not a convnp model file (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if type(version) is not int or version < 1:
        raise ModelFileError(f"{where} has an invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{where} has format version {version}; this convnp reads up to version "
            f"{FORMAT_VERSION} (upgrade convnp to read it)"
        )
    expected = arrays_checksum(arrays) if version == 1 else file_checksum(meta, arrays)
    if meta.get(CHECKSUM_KEY) != expected:
        raise ModelFileError(
            f"{where} is damaged: its content does not match the stored checksum "
            f"(stored {str(meta.get(CHECKSUM_KEY))[:16]}..., computed {expected[:16]}...)"
        )
    for key, value in arrays.items():
        prefix = key[: key.find("/") + 1]  # "" when there is no "/"
        if _ENTRY_VERSIONS.get(prefix, version + 1) > version:
            raise ModelFileError(f"{where}: unexpected entry {key!r}")
        if key.startswith("model/") and value.dtype.kind != "f":
            raise ModelFileError(f"{where}: {key} has dtype {value.dtype}; model arrays are floats")
    return meta, arrays


def model_state(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's state_dict from the arrays of ``load_file``."""
    return {key[len("model/") :]: value for key, value in arrays.items() if key.startswith("model/")}


def optimizer_state(meta: dict, arrays: dict[str, np.ndarray]) -> dict | None:
    """The optimizer state_dict stored beside a model (for ``Optimizer.load_state_dict``), or None."""
    if "optimizer" not in meta:
        return None
    try:
        state = dict(meta["optimizer"]["state"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"convnp.load: the file's optimizer state is invalid ({error})") from error
    state.update({key[len("optimizer/") :]: v for key, v in arrays.items() if key.startswith("optimizer/")})
    return state


def extra_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays saved with ``extra_arrays=`` beside the JSON ``extra``, from the arrays of ``load_file``."""
    return {key[len("extra/") :]: value for key, value in arrays.items() if key.startswith("extra/")}
