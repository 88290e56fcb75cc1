"""What the commands say about inputs unlike the model's training data, in the command line's words.

``predict`` and ``evaluate`` warn in Python (``convnp/training/input_range.py``);
the commands check their inputs themselves instead, so that a warning names
the files and the option that fixes it (``--invert``), and comes once per
command and kind of problem, however many files. Warnings are
``convnp.InputWarning``s, shown by ``convnp.cli.main`` as one line each.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from convnp.checks import InputWarning
from convnp.training.input_range import INVERTED, input_stats, mismatch, mismatch_message

__all__ = ["quiet_python_warnings", "warn_unfamiliar", "warn_flat_images"]

_LISTED = 3  # file names a warning lists before "and N more"


@contextmanager
def quiet_python_warnings() -> Iterator[None]:
    """Hide the Python API's own ``InputWarning`` (the command has said it in its words)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        yield


def _names(names: Sequence[str]) -> str:
    listed = ", ".join(names[:_LISTED])
    return listed + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def warn_unfamiliar(model, inputs: Sequence[tuple[str, np.ndarray]], inverted: bool | None = None) -> None:
    """One warning per kind of mismatch (``input_range.mismatch``) among ``inputs``, naming the files.

    ``inputs`` pairs a name (a file) with its images (N, C, H, W). ``inverted``
    says whether --invert was given (None where the command has no --invert).
    """
    trained = model.input_stats
    if trained is None:
        return
    groups: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name, images in inputs:
        seen = input_stats(images)
        kind = None if seen is None else mismatch(trained, seen)
        if kind is not None:
            groups.setdefault(kind, []).append((name, images))
    for kind, members in groups.items():
        names = [name for name, _ in members]
        seen = input_stats(np.concatenate([images.ravel() for _, images in members]))
        fix = None
        if kind == INVERTED and inverted is not None:
            fix = "leave out --invert" if inverted else "add --invert"
        message = mismatch_message(kind, trained, seen, f"the pixels of {_names(names)}", invert_fix=fix)
        warnings.warn(InputWarning(message), stacklevel=2)


def warn_flat_images(inputs: Sequence[tuple[str, np.ndarray]]) -> None:
    """One warning naming the images that hold a single value everywhere (nothing to classify)."""
    flat = [
        name if len(images) == 1 else f"{name}[{index}]"
        for name, images in inputs
        for index, image in enumerate(images)
        if np.ptp(image) == 0
    ]
    if flat:
        warnings.warn(
            InputWarning(
                f"{_names(flat)}: one flat colour, every pixel the same; there is nothing in "
                f"{'it' if len(flat) == 1 else 'them'} to classify"
            ),
            stacklevel=2,
        )
