"""Helpers of the command-line tests: a quiet ``convnp train`` and comparisons of its outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convnp.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def train(out: Path, *options: str) -> int:
    """``convnp train --out OUT --verbose 0 OPTIONS...``; returns the exit status."""
    return main(["train", "--out", str(out), "--verbose", "0", *options])


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; checks the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def same_arrays(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
