"""Model files: one ``.npz`` holding the arrays and a JSON description.

Layout of a file written by ``save`` (an uncompressed zip of ``.npy`` entries,
readable by ``numpy.load``):

    "__convnp__"          uint8 bytes of a JSON document:
                          {"format": "convnp-model", "format_version": 2,
                           "dtype": "float32", "input_shape": [1, 28, 28],
                           "layers": [{"class": "Conv2D", "config": {...}}, ...],
                           "optimizer": {...JSON part of the optimizer state} or absent,
                           "extra": {...caller's JSON data} or absent,
                           "checksum": sha256 of the rest of this description and every array}
    "model/<key>"         every state_dict entry ("model/0.weight", "model/1.running_mean")
    "optimizer/<key>"     the optimizer state arrays, when saved

Safety, in the order ``load_file`` checks it:

- Nothing in a file can run code. The reader does not call ``numpy.load``: it
  opens the zip itself and parses each ``.npy`` header, refusing any entry
  whose dtype is not a plain number type (object arrays, which need pickle,
  never get as far as being read).
- No absurd allocation. Every entry's declared size is checked against the
  size of the file (and the ``.npy`` header's shape against the entry's size)
  before a byte of it is read, so a damaged header cannot ask for gigabytes.
- Damage is detected. The zip's CRC-32 catches flipped bytes inside an entry;
  the sha256 ``checksum`` covers the description and every array (keys,
  dtypes, shapes, bytes), so a file whose arrays or description were changed
  and re-written is refused too. (Version 1 files, whose checksum covers the
  arrays only, are still read.)
- Nothing half-loads. ``load`` builds a new model and fills it only once
  every array has been read, verified and shape-checked.

Writing goes to a temporary file in the same folder, flushed and fsynced,
then renamed over the target, so a save that fails (disk full, Ctrl-C, an
exception while converting the arrays) leaves the previous file intact and
no temporary file behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from convnp.files.atomic import atomic_write, atomic_write_json, atomic_write_npz  # noqa: F401  (re-exported)

FORMAT_NAME = "convnp-model"
FORMAT_VERSION = 2
META_KEY = "__convnp__"
CHECKSUM_KEY = "checksum"

# Deflate cannot expand data by more than about 1032:1; a compressed entry that
# claims more than this is damaged (or a zip bomb) and is refused unread.
_MAX_DEFLATE_RATIO = 1100
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"

# What the zip and .npy parsers can raise on malformed bytes; load turns each
# into a ModelFileError. MemoryError is not among them: the size checks make
# absurd allocations impossible.
_PARSE_ERRORS = (
    ValueError,  # includes UnicodeDecodeError, json.JSONDecodeError
    TypeError,
    KeyError,
    IndexError,
    OSError,  # a seek or read past the end of the file, a bad gzip/deflate stream
    EOFError,
    zipfile.BadZipFile,  # includes a CRC-32 mismatch
    zlib.error,
    struct.error,
    NotImplementedError,  # compression methods zipfile does not know
    RuntimeError,  # encrypted entries; RecursionError
    OverflowError,
    SyntaxError,  # a .npy header that is not a Python literal
    tokenize.TokenError,  # ... found by NumPy's fallback parser for Python 2 headers
)

__all__ = [
    "save",
    "load",
    "load_file",
    "model_path",
    "optimizer_state",
    "ModelFileError",
    "FORMAT_VERSION",
]


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


def _json_default(value: Any) -> Any:
    """JSON form of the NumPy scalars that configs and states may hold."""
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
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=_json_default).encode("utf-8")


def file_checksum(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the canonical description (minus the checksum) and then every array."""
    digest = hashlib.sha256()
    digest.update(_canonical_json(meta))
    digest.update(b"\x00")
    return arrays_checksum(arrays, digest)


# ------------------------------------------------------------------- writing
def architecture(model) -> dict:
    """The JSON-compatible description from which ``load`` rebuilds ``model``."""
    return {
        "dtype": str(model.dtype),
        "input_shape": list(model.input_shape),
        "layers": [{"class": type(layer).__name__, "config": layer.get_config()} for layer in model.layers],
    }


def model_path(path: str | os.PathLike) -> Path:
    """``path`` with the ``.npz`` suffix that ``save`` adds when it is missing."""
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def save(model, path: str | os.PathLike, optimizer=None, extra: dict | None = None) -> Path:
    """Save ``model`` (and optionally an optimizer's state and JSON ``extra``) to ``path``.

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
    model._require_built("save")
    path = model_path(path)
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
    try:
        meta[CHECKSUM_KEY] = file_checksum(meta, arrays)
        meta_bytes = json.dumps(meta, default=_json_default).encode("utf-8")
    except TypeError as error:
        raise TypeError(f"save: the model description or extra= is not JSON-serialisable ({error})") from error
    arrays[META_KEY] = np.frombuffer(meta_bytes, dtype=np.uint8)
    return atomic_write_npz(path, arrays)


# ------------------------------------------------------------------- reading
def _read_npy_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    """One ``.npy`` entry as a writable array, refusing anything but plain numbers.

    The header is parsed (a Python literal of at most 10,000 characters) and
    the dtype checked before the data is read; the data must be exactly as
    long as the header's shape and dtype say.
    """
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ModelFileError(f"{where}: entry {info.filename!r} has unsupported .npy version {version}")
        if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
            raise ModelFileError(
                f"{where}: entry {info.filename!r} has dtype {dtype}; a convnp model holds only "
                "numbers (object arrays would need pickle, which convnp never runs)"
            )
        if any(d < 0 for d in shape):
            raise ModelFileError(f"{where}: entry {info.filename!r} has an invalid shape {shape}")
        header_size = member.tell()  # magic, header length and header read so far
        data_size = math.prod(shape) * dtype.itemsize
        if data_size != info.file_size - header_size:
            raise ModelFileError(
                f"{where}: entry {info.filename!r} is damaged: its header declares shape {shape} of "
                f"{dtype} ({data_size} bytes), the entry holds {info.file_size - header_size}"
            )
        data = member.read(data_size)
        if len(data) != data_size or member.read(1):  # the last read also checks the CRC-32
            raise ModelFileError(f"{where}: entry {info.filename!r} is truncated")
    values = np.frombuffer(data, dtype=dtype)
    if fortran_order:
        values = values.reshape(shape[::-1]).transpose()
    else:
        values = values.reshape(shape)
    return np.array(values, dtype=dtype.newbyteorder("="), order="C")  # writable, native order


def _read_archive(path: Path) -> dict[str, np.ndarray]:
    """Every entry of the ``.npz`` at ``path``, read without numpy.load and without pickle."""
    where = f"convnp.load: {path}"
    with open(path, "rb") as stream:  # OSError (permission, a folder) propagates as is
        file_size = os.fstat(stream.fileno()).st_size
        head = stream.read(len(_NPY_MAGIC))
        if head.startswith(_NPY_MAGIC):
            raise ModelFileError(f"{where} holds a single .npy array, not a convnp model (.npz)")
        if not head.startswith(_ZIP_MAGIC):
            raise ModelFileError(f"{where} is not a convnp model file: not an .npz (zip) archive")
        stream.seek(0)
        try:
            arrays: dict[str, np.ndarray] = {}
            with zipfile.ZipFile(stream) as archive:
                infos = archive.infolist()
                names = [info.filename for info in infos]
                if META_KEY + ".npy" not in names:
                    raise ModelFileError(
                        f"{where} is an .npz (zip) archive but not a convnp model (no {META_KEY!r} entry)"
                    )
                if len(set(names)) != len(names):
                    raise ModelFileError(f"{where} is damaged: duplicate entries in the archive")
                for info in infos:
                    if not info.filename.endswith(".npy"):
                        raise ModelFileError(f"{where}: unexpected entry {info.filename!r} (not a .npy array)")
                    if info.compress_type == zipfile.ZIP_STORED:
                        plausible = info.file_size == info.compress_size <= file_size
                    elif info.compress_type == zipfile.ZIP_DEFLATED:
                        plausible = info.compress_size <= file_size and (
                            info.file_size <= _MAX_DEFLATE_RATIO * info.compress_size + 1024
                        )
                    else:
                        raise ModelFileError(
                            f"{where}: entry {info.filename!r} uses unsupported compression {info.compress_type}"
                        )
                    if not plausible:
                        raise ModelFileError(
                            f"{where} is damaged or truncated: entry {info.filename!r} declares "
                            f"{info.file_size} bytes ({info.compress_size} stored) in a {file_size}-byte file"
                        )
                    arrays[info.filename[: -len(".npy")]] = _read_npy_entry(archive, info, where)
        except ModelFileError:
            raise
        except _PARSE_ERRORS as error:
            raise ModelFileError(
                f"{where} is damaged, truncated or not a convnp model file ({type(error).__name__}: {error})"
            ) from error
    return arrays


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

    ``meta`` is the JSON description; ``arrays`` maps "model/<key>" and
    "optimizer/<key>" to arrays.

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
        path = model_path(path)  # save(model, "m") wrote "m.npz"
    if not path.exists():
        raise FileNotFoundError(f"convnp.load: no such model file: {path}")
    where = f"convnp.load: {path}"
    arrays = _read_archive(path)
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
        if not key.startswith(("model/", "optimizer/")):
            raise ModelFileError(f"{where}: unexpected entry {key!r}")
        if key.startswith("model/") and value.dtype.kind != "f":
            raise ModelFileError(f"{where}: {key} has dtype {value.dtype}; model arrays are floats")
    return meta, arrays


def build_from_architecture(meta: dict, where: str = "convnp.load"):
    """A fresh, built ``Sequential`` from the JSON description (parameters not yet loaded)."""
    from convnp.nn.layer import LAYER_REGISTRY
    from convnp.nn.sequential import Sequential

    try:
        layers = []
        specs = meta["layers"]
        if not isinstance(specs, list) or not specs:
            raise ValueError(f"'layers' must be a non-empty list, got {specs!r}")
        for spec in specs:
            name = spec["class"]
            cls = LAYER_REGISTRY.get(name) if isinstance(name, str) else None
            if cls is None or name.startswith("_"):
                raise ModelFileError(f"{where}: unknown layer type {name!r} in the file")
            if not isinstance(spec["config"], dict):
                raise ValueError(f"the config of {name} is not a JSON object")
            layers.append(cls(**spec["config"]))
        if meta["dtype"] not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {meta['dtype']!r}")
        return Sequential(layers, input_shape=tuple(meta["input_shape"]), dtype=meta["dtype"])
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as error:
        raise ModelFileError(f"{where}: the file's architecture description is invalid ({error})") from error


def model_state(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's state_dict from the arrays of ``load_file``."""
    return {key[len("model/") :]: value for key, value in arrays.items() if key.startswith("model/")}


def load(path: str | os.PathLike):
    """Load a model saved with ``Sequential.save`` (or ``save`` here); returns a built ``Sequential``.

    The model gets the saved dtype, parameters and batch-norm running
    statistics; ``model.predict`` gives the same outputs as before saving.
    Raises ``FileNotFoundError`` or ``ModelFileError`` (see ``load_file``).
    """
    meta, arrays = load_file(path)
    where = f"convnp.load: {path}"
    model = build_from_architecture(meta, where)
    try:
        model.load_state_dict(model_state(arrays))
    except (KeyError, ValueError) as error:
        raise ModelFileError(f"{where} does not match its own architecture ({error})") from error
    return model


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
