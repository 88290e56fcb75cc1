"""What a model file records about the data its model learned from: the class names and the input statistics.

Two optional fields of a model file's JSON description (``convnp.files.model_file``),
taken from the model's attributes of the same names:

    "class_names"   ["cat", "dog"]: one name per output, in output order
                    (``image_folder`` and ``convnp train`` set them)
    "input_stats"   {"min": 0.0, "max": 1.0, "mean": 0.13}: the range and mean
                    of the inputs the model was trained on (``fit`` records them;
                    ``predict`` and ``evaluate`` warn when inputs lie far outside)

A file without them (older files, a model never fitted) loads with None. The
checksum covers them like the rest of the description; ``convnp.load`` refuses
a file whose fields are malformed with ``ModelFileError``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["STAT_KEYS", "metadata_fields", "check_class_names", "check_input_stats", "apply_metadata"]

STAT_KEYS = ("min", "max", "mean")


def _num_outputs(model) -> int | None:
    return None if model.output_shape is None else int(np.prod(model.output_shape))


def check_class_names(names, num_outputs: int | None, owner: str) -> list[str]:
    """``names`` as a list of str, one per output; ``TypeError``/``ValueError`` naming ``owner`` otherwise."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{owner}: class_names must be a list of str, got {names!r}")
    if num_outputs is not None and len(names) != num_outputs:
        raise ValueError(f"{owner}: {len(names)} class_names for a model with {num_outputs} outputs")
    return list(names)


def check_input_stats(stats, owner: str) -> dict[str, float]:
    """``stats`` as ``{"min", "max", "mean"}`` finite floats with min <= mean <= max."""
    if not isinstance(stats, dict) or set(stats) != set(STAT_KEYS):
        raise TypeError(f"{owner}: input_stats must be a dict with the keys {STAT_KEYS}, got {stats!r}")
    values = {}
    for key in STAT_KEYS:
        value = stats[key]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{owner}: input_stats[{key!r}] must be a number, got {value!r}")
        values[key] = float(value)
    if not all(math.isfinite(v) for v in values.values()) or not values["min"] <= values["mean"] <= values["max"]:
        raise ValueError(f"{owner}: input_stats must be finite with min <= mean <= max, got {stats!r}")
    return values


def metadata_fields(model) -> dict:
    """The description fields for a model being saved: its ``class_names`` and ``input_stats`` when set."""
    fields = {}
    names = getattr(model, "class_names", None)
    if names is not None:
        fields["class_names"] = check_class_names(names, _num_outputs(model), "save")
    stats = getattr(model, "input_stats", None)
    if stats is not None:
        fields["input_stats"] = check_input_stats(stats, "save")
    return fields


def apply_metadata(model, meta: dict) -> None:
    """Set ``model.class_names`` and ``model.input_stats`` from a file's description (None when absent).

    Raises ``TypeError``/``ValueError`` when a field is malformed or the class
    names do not match the model's outputs (``convnp.serialization.load``
    reports it as a ``ModelFileError``).
    """
    names, stats = meta.get("class_names"), meta.get("input_stats")
    owner = "the file's description"
    model.class_names = None if names is None else check_class_names(names, _num_outputs(model), owner)
    model.input_stats = None if stats is None else check_input_stats(stats, owner)
