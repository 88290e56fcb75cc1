"""The one way convnp turns an ``rng`` argument into a Generator."""

from __future__ import annotations

import numpy as np

RngLike = np.random.Generator | int | None


def as_generator(rng: RngLike) -> np.random.Generator:
    """Accept a Generator (used as is), a seed, or None (fresh OS entropy).

    Passing a Generator shares its stream, so a caller that hands the same
    Generator to shuffling and augmentation gets one reproducible sequence.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is not None and (isinstance(rng, bool) or not isinstance(rng, (int, np.integer))):
        raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {rng!r}")
    return np.random.default_rng(rng)
