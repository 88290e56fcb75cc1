"""Reading a model file for the commands that take one (evaluate, predict, summary, export)."""

from __future__ import annotations

import os
from typing import Any

from convnp.serialization import load, load_file

__all__ = ["load_model"]


def load_model(path: str | os.PathLike) -> tuple[Any, dict]:
    """``convnp.load(path)`` and the JSON ``extra`` stored by ``convnp train`` (or {}).

    ``extra`` holds the ``dataset`` the model was trained on and its ``class_names``.
    """
    model = load(path)
    meta, _ = load_file(path)
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    return model, extra
