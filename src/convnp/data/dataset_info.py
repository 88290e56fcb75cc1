"""What a built-in dataset is (``DatasetInfo``) and the form every loader returns it in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DatasetInfo", "Split", "DIGIT_NAMES", "to_unit_float32", "check_labels"]

# One split as load returns it: (images float32 (N, C, H, W) in [0, 1], labels int64 (N,)).
Split = tuple[np.ndarray, np.ndarray]

DIGIT_NAMES = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class DatasetInfo:
    """What a built-in dataset is: shapes, classes and the files it is read from."""

    name: str
    description: str
    input_shape: tuple[int, int, int]  # per-sample (C, H, W)
    num_classes: int
    class_names: tuple[str, ...]
    train_size: int
    test_size: int
    files: tuple[str, ...]  # what to put in a folder to use it offline; () when embedded


def to_unit_float32(images: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 0..1 (one allocation)."""
    out = images.astype(np.float32)
    out /= 255.0
    return out


def check_labels(labels: np.ndarray, num_classes: int, source: str) -> np.ndarray:
    """``labels`` as int64, or ``ValueError`` naming ``source`` when one is outside 0..num_classes-1."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{source}: labels in [{labels.min()}, {labels.max()}], expected 0..{num_classes - 1}")
    return labels.astype(np.int64)
