"""argparse value types and the arguments several ``convnp`` commands share.

Each value type turns the text of one option into its value, or raises
``argparse.ArgumentTypeError`` with the message argparse prints (exit status 2).
"""

from __future__ import annotations

import argparse
import math

from convnp.cli.recipes import RECIPES
from convnp.models import MODELS

__all__ = ["positive_int", "positive_float", "dataset_name", "model_name", "add_model_file"]


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def dataset_name(text: str) -> str:
    """A dataset with a recipe, in any case and with ``_`` or ``-`` (``Fashion_MNIST`` is ``fashion-mnist``)."""
    name = text.strip().lower().replace("_", "-")
    if name not in RECIPES:
        raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; choose from {', '.join(RECIPES)}")
    return name


def model_name(text: str) -> str:
    """A builder of ``convnp.models.MODELS``."""
    if text not in MODELS:
        raise argparse.ArgumentTypeError(f"unknown model {text!r}; choose from {', '.join(MODELS)}")
    return text


def add_model_file(parser: argparse.ArgumentParser) -> None:
    """The positional MODEL: a saved model file, or a run folder of ``convnp train`` (its model.npz)."""
    parser.add_argument("model", metavar="MODEL", help="a model file (model.npz), or a run folder of 'convnp train'")
