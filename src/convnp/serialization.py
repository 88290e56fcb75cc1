"""Save a model to one ``.npz`` file and build it back: ``save(model, path)``, ``load(path)``.

The file format, its checks and the writer live in ``convnp.files``
(``model_file``: layout, checksums, ``save_model``, ``load_file``; ``safe_zip``:
the reader that never unpickles; ``atomic``: the writer). What is here needs
the layers: ``build_from_architecture`` turns a file's description back into a
``Sequential``, and ``load`` fills it.

``load`` never half-loads: it builds a new model and fills it only once every
array has been read, verified and shape-checked.

The names of ``convnp.files`` that code outside it uses are re-exported here,
so ``from convnp.serialization import load_file, ModelFileError`` keeps working.
"""

from __future__ import annotations

import os

from convnp.files.atomic import atomic_write, atomic_write_json, atomic_write_npz
from convnp.files.model_file import (
    FORMAT_VERSION,
    ModelFileError,
    architecture,
    arrays_checksum,
    file_checksum,
    json_default,
    load_file,
    model_path,
    model_state,
    optimizer_state,
)
from convnp.files.model_file import save_model as save
from convnp.nn.layer import LAYER_REGISTRY
from convnp.nn.sequential import Sequential

__all__ = [
    "save",
    "load",
    "load_file",
    "build_from_architecture",
    "model_path",
    "model_state",
    "optimizer_state",
    "architecture",
    "arrays_checksum",
    "file_checksum",
    "json_default",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_npz",
    "ModelFileError",
    "FORMAT_VERSION",
]

# Also under its former private name, which convnp.training imports.


def build_from_architecture(meta: dict, where: str = "convnp.load") -> Sequential:
    """A fresh, built ``Sequential`` from the JSON description (parameters not yet loaded).

    Raises ``ModelFileError`` for an unknown or private layer class, a config a
    layer refuses, an invalid dtype or input shape.
    """
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


def load(path: str | os.PathLike) -> Sequential:
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
