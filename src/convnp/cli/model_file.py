"""Reading a model file for the commands that take one (evaluate, predict, explain, summary, export)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from convnp.cli.errors import CLIError
from convnp.serialization import load, load_file

__all__ = ["load_model", "model_file_path"]

RUN_MODEL = "model.npz"  # the model a run folder of ``convnp train`` holds


def model_file_path(path: str | os.PathLike) -> Path:
    """``path``, or ``path/model.npz`` when ``path`` is a run folder of ``convnp train``.

    A folder without ``model.npz`` raises ``CLIError`` saying what to pass.
    """
    path = Path(path)
    if not path.is_dir():
        return path
    if (path / RUN_MODEL).is_file():
        return path / RUN_MODEL
    raise CLIError(f"{path} is a folder without {RUN_MODEL}; pass a model file (or a run folder of 'convnp train')")


def load_model(path: str | os.PathLike) -> tuple[Any, dict]:
    """``convnp.load(path)`` and the JSON ``extra`` stored by ``convnp train`` (or {}).

    ``path`` may be a run folder of ``convnp train`` (its ``model.npz`` is read).
    ``extra`` holds the ``dataset`` the model was trained on. The class names
    are ``model.class_names``; for a file that ``convnp train`` wrote before
    models kept them, they come from ``extra["class_names"]``.
    """
    path = model_file_path(path)
    model = load(path)
    meta, _ = load_file(path)
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    names = extra.get("class_names")
    if model.class_names is None and isinstance(names, list) and all(isinstance(name, str) for name in names):
        if len(names) == int(np.prod(model.output_shape)):
            model.class_names = names
    return model, extra
