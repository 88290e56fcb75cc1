"""Model files: one ``.npz`` holding the arrays and a JSON description.

Layout of a file written by ``save``:

    "__convnp__"          uint8 bytes of a JSON document:
                          {"format": "convnp-model", "format_version": 1,
                           "dtype": "float32", "input_shape": [1, 28, 28],
                           "layers": [{"class": "Conv2D", "config": {...}}, ...],
                           "checksum": sha256 of every array below,
                           "optimizer": {...JSON part of the optimizer state} or absent,
                           "extra": {...caller's JSON data} or absent}
    "model/<key>"         every state_dict entry ("model/0.weight", "model/1.running_mean")
    "optimizer/<key>"     the optimizer state arrays, when saved

Reading uses ``numpy.load(..., allow_pickle=False)``: nothing in a file can
run code. Writing goes to a temporary file in the same folder, flushed to disk,
then renamed over the target, so a failed save leaves an older file intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT_NAME = "convnp-model"
FORMAT_VERSION = 1
META_KEY = "__convnp__"

__all__ = ["save", "load", "load_file", "ModelFileError", "FORMAT_VERSION"]


class ModelFileError(ValueError):
    """A file that is not a readable convnp model (damaged, truncated, foreign, newer)."""


def arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the keys, dtypes, shapes and bytes of ``arrays`` in sorted key order."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def architecture(model) -> dict:
    """The JSON-compatible description from which ``load`` rebuilds ``model``."""
    return {
        "dtype": str(model.dtype),
        "input_shape": list(model.input_shape),
        "layers": [{"class": type(layer).__name__, "config": layer.get_config()} for layer in model.layers],
    }


def atomic_write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an uncompressed .npz at ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        # Whatever went wrong (including Ctrl-C), the previous file stays as it was.
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise
    return path


def save(model, path: str | os.PathLike, optimizer=None, extra: dict | None = None) -> Path:
    """Save ``model`` (and optionally an optimizer's state and JSON ``extra``) to ``path``.

    The ``.npz`` suffix is added when missing. Returns the path written.
    """
    model._require_built("save")
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays = {f"model/{key}": value for key, value in model.state_dict().items()}
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **architecture(model)}
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
    meta["checksum"] = arrays_checksum(arrays)
    arrays[META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    return atomic_write_npz(path, arrays)


def load_file(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and verify a model file; returns ``(meta, arrays)`` without building anything.

    Raises ``FileNotFoundError`` for a missing file and ``ModelFileError`` for
    anything else that is not an intact convnp model file of a known version.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"convnp.load: no such model file: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files"):
                raise ModelFileError(f"convnp.load: {path} holds a single array, not a convnp model (.npz)")
            if META_KEY not in archive.files:
                raise ModelFileError(
                    f"convnp.load: {path} is an .npz file but not a convnp model (no {META_KEY!r} entry)"
                )
            arrays = {key: archive[key] for key in archive.files}
    except ModelFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise ModelFileError(f"convnp.load: {path} is not a readable convnp model file ({error})") from error
    meta_bytes = arrays.pop(META_KEY)
    try:
        if meta_bytes.dtype != np.uint8 or meta_bytes.ndim != 1:
            raise ValueError("description is not a byte string")
        meta = json.loads(meta_bytes.tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("description is not a JSON object")
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelFileError(f"convnp.load: {path} has a damaged description ({error})") from error
    if meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"convnp.load: {path} is not a convnp model file (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"convnp.load: {path} has format version {version!r}; this convnp reads up to "
            f"{FORMAT_VERSION} (upgrade convnp to read it)"
        )
    if arrays_checksum(arrays) != meta.get("checksum"):
        raise ModelFileError(f"convnp.load: {path} is damaged: its arrays do not match the stored checksum")
    return meta, arrays


def build_from_architecture(meta: dict):
    """A fresh, built ``Sequential`` from the JSON description (parameters not yet loaded)."""
    from convnp.nn.layer import LAYER_REGISTRY
    from convnp.nn.sequential import Sequential

    try:
        layers = []
        for spec in meta["layers"]:
            cls = LAYER_REGISTRY.get(spec["class"])
            if cls is None or spec["class"].startswith("_"):
                raise ModelFileError(f"convnp.load: unknown layer type {spec['class']!r} in the file")
            layers.append(cls(**spec["config"]))
        return Sequential(layers, input_shape=tuple(meta["input_shape"]), dtype=meta["dtype"])
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"convnp.load: the file's architecture description is invalid ({error})") from error


def load(path: str | os.PathLike):
    """Load a model saved with ``Sequential.save``; returns a built ``Sequential``."""
    meta, arrays = load_file(path)
    model = build_from_architecture(meta)
    state = {key[len("model/"):]: value for key, value in arrays.items() if key.startswith("model/")}
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError) as error:
        raise ModelFileError(f"convnp.load: {path} does not match its own architecture ({error})") from error
    return model


def optimizer_state(meta: dict, arrays: dict[str, np.ndarray]) -> dict | None:
    """The optimizer state_dict stored beside a model, or None."""
    if "optimizer" not in meta:
        return None
    state = dict(meta["optimizer"]["state"])
    state.update({key[len("optimizer/"):]: v for key, v in arrays.items() if key.startswith("optimizer/")})
    return state
