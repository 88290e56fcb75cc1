"""Save a model to one ``.npz`` file and build it back: ``save(model, path)``, ``load(path)``.

The file format, its checks and the writer live in ``convnp.files``
(``model_file``: layout, checksums, ``save_model``, ``load_file``; ``safe_zip``:
the reader that never unpickles; ``atomic``: the writer). What is here needs
the layers: ``build_from_architecture`` turns a file's description back into a
``Sequential`` or a graph ``Model``, and ``load`` fills it.

``load`` allocates nothing the file does not justify and never half-loads. It
builds the described model shapes only (``convnp.nn.init.shapes_only``: every
parameter a zero-stride placeholder, no weights drawn), checks that the file
holds exactly the arrays that model has, each of the shape it implies
(``check_state``), and only then gives the model the file's arrays. A crafted
description that declares a huge layer is refused with ``ModelFileError``
naming the layer, before anything of that size exists.

The names of ``convnp.files`` that code outside it uses are re-exported here,
so ``from convnp.serialization import load_file, ModelFileError`` keeps working.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np

from convnp.files.atomic import atomic_write, atomic_write_json, atomic_write_npz
from convnp.files.model_file import (
    FORMAT_VERSION,
    ModelFileError,
    architecture,
    arrays_checksum,
    extra_arrays,
    file_checksum,
    json_default,
    load_file,
    model_path,
    model_state,
    optimizer_state,
)
from convnp.files.model_file import save_model as save
from convnp.files.model_metadata import apply_metadata
from convnp.nn.graph import Model
from convnp.nn.init import shapes_only
from convnp.nn.layer import LAYER_REGISTRY, Layer
from convnp.nn.network import Network
from convnp.nn.node import Input
from convnp.nn.sequential import Sequential

__all__ = [
    "save",
    "load",
    "load_file",
    "build_from_architecture",
    "check_state",
    "model_path",
    "model_state",
    "optimizer_state",
    "extra_arrays",
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


def _layer_from_spec(spec, where: str) -> Layer:
    """One layer from its ``{"class", "config"}`` description; only registered, public layer classes."""
    name = spec["class"]
    cls = LAYER_REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None or name.startswith("_"):
        raise ModelFileError(f"{where}: unknown layer type {name!r} in the file")
    if not isinstance(spec["config"], dict):
        raise ValueError(f"the config of {name} is not a JSON object")
    return cls.from_config(spec["config"])


def _graph_model(layers: list[Layer], wiring, input_shape: tuple[int, ...], dtype: str, where: str) -> Model:
    """A ``Model`` from its layers and the values each reads; refuses dangling, forward or unused references."""
    if not isinstance(wiring, list) or len(wiring) != len(layers):
        raise ValueError(f"'inputs' must list the inputs of each of the {len(layers)} layers")
    values = [Input(input_shape)]
    read = set()
    for index, (layer, inputs) in enumerate(zip(layers, wiring)):
        if (
            not isinstance(inputs, list)
            or not inputs
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in inputs)
        ):
            raise ModelFileError(f"{where}: layer {index} has invalid inputs {inputs!r} (a list of value numbers)")
        if any(not 0 <= value <= index for value in inputs):
            raise ModelFileError(
                f"{where}: layer {index} reads values {inputs}, but only 0..{index} exist before it "
                "(a dangling reference or a cycle)"
            )
        if len(inputs) > 1 and not layer.multi_input:
            raise ModelFileError(f"{where}: layer {index} ({type(layer).__name__}) takes one input, got {inputs}")
        read.update(inputs)
        nodes = [values[value] for value in inputs]
        values.append(layer(nodes if layer.multi_input else nodes[0]))
    unused = sorted(set(range(len(layers))) - read)
    if unused:
        raise ModelFileError(f"{where}: values {unused} are computed but never read (a dangling layer)")
    # Every layer reads only values listed before it (checked above): the file's order is topological,
    # and the model keeps it (a model made by from_torch lists its layers in the torch module's order).
    return Model(values[0], values[-1], dtype=dtype, order=layers)


def build_from_architecture(meta: dict, where: str = "convnp.load") -> Network:
    """A fresh, built ``Sequential`` or ``Model`` from the JSON description (parameters not yet loaded).

    Raises ``ModelFileError`` for an unknown or private layer class, a config a
    layer refuses, an invalid dtype or input shape, and, for a graph, inputs
    that refer to values not computed before (cycles, dangling references),
    layers whose output nothing reads, or shapes that do not fit.
    """
    try:
        specs = meta["layers"]
        if not isinstance(specs, list) or not specs:
            raise ValueError(f"'layers' must be a non-empty list, got {specs!r}")
        layers = [_layer_from_spec(spec, where) for spec in specs]
        if meta["dtype"] not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {meta['dtype']!r}")
        input_shape = tuple(meta["input_shape"])
        kind = meta.get("kind", "Sequential")
        if kind == "Model":
            return _graph_model(layers, meta["inputs"], input_shape, meta["dtype"], where)
        if kind != "Sequential":
            raise ValueError(f"unknown model kind {kind!r}")
        return Sequential(layers, input_shape=input_shape, dtype=meta["dtype"])
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as error:
        raise ModelFileError(f"{where}: the file's architecture description is invalid ({error})") from error


def check_state(model: Network, state: Mapping[str, np.ndarray], where: str = "convnp.load") -> None:
    """Refuse a state that is not exactly the arrays ``model`` has, each of the shape the model gives it.

    ``model`` may be built shapes only: only the shapes of its parameters and
    buffers are read. Raises ``ModelFileError`` naming the keys that are
    missing (and the layers that need them) or unexpected, or the first array
    of another shape with its layer (position and name) and both shapes.
    """
    needed = {}
    for prefix, layer in zip(model.layer_keys(), model.layers):
        arrays = [(key, param.data) for key, param in layer.named_parameters()] + list(layer.named_buffers())
        for key, array in arrays:
            needed[f"{prefix}.{key}"] = (array.shape, layer)
    mismatch = f"{where} does not match its own architecture"
    missing = [key for key in needed if key not in state]
    unexpected = [key for key in state if key not in needed]
    if missing or unexpected:
        needed_by = list(dict.fromkeys(needed[key][1].label for key in missing))
        raise ModelFileError(
            f"{mismatch}: missing keys {missing}{f' (needed by {needed_by})' if needed_by else ''}, "
            f"unexpected keys {unexpected}"
        )
    for key, (shape, layer) in needed.items():
        if state[key].shape != shape:
            raise ModelFileError(
                f"{mismatch}: {key} ({layer.label}) expects shape {shape}, got {state[key].shape} "
                f"(the description implies {math.prod(shape):,} values there)"
            )


def load(path: str | os.PathLike) -> Network:
    """Load a model saved with ``model.save`` (or ``save`` here); returns a built ``Sequential`` or ``Model``.

    The model gets the saved dtype, parameters and batch-norm running
    statistics, and the ``class_names`` and ``input_stats`` saved with it
    (None when the file has none); ``model.predict`` gives the same outputs
    as before saving. Nothing is allocated for a layer before its shapes have
    been checked against the arrays in the file (see the module docstring).
    Raises ``FileNotFoundError`` or ``ModelFileError`` (see ``load_file``).
    """
    meta, arrays = load_file(path)
    where = f"convnp.load: {path}"
    with shapes_only():
        model = build_from_architecture(meta, where)
    state = model_state(arrays)
    check_state(model, state, where)
    model.load_state_dict(state)  # copies: the model owns its arrays
    try:
        apply_metadata(model, meta)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{where}: {error}") from error
    return model
