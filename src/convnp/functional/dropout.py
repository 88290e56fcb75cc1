"""Inverted dropout.

In training each element is kept with probability 1 - p and scaled by
1 / (1 - p), so the expected output equals the input and inference needs no
rescaling: there the op is the identity.
"""

from __future__ import annotations

import numbers

import numpy as np

from convnp.checks import float_array

__all__ = ["dropout_forward", "dropout_backward", "draw_keep"]


def dropout_forward(
    x: np.ndarray,
    p: float,
    training: bool,
    rng: np.random.Generator | int | None = None,
    keep: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Zero each element with probability ``p`` and scale the survivors by 1 / (1 - p).

    mask[i] = keep[i] / (1 - p),  keep[i] ~ Bernoulli(1 - p)
    out     = x * mask            (so E[out] = x)

    Identity (no random numbers drawn) when ``training`` is False or p == 0.
    ``rng`` is a ``numpy.random.Generator`` (advanced by the draw), a seed, or
    None for fresh entropy; the same seed gives the same mask. ``keep``, a
    boolean array of x's shape drawn beforehand (``draw_keep``), replaces the
    draw: a shard of a batch uses its part of the whole batch's draw.

    Shape:
        x: any; out: same as x
    """
    x = float_array(x, "dropout_forward")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise ValueError(f"dropout_forward: p must be a number in [0, 1), got {p!r}")
    if not training or p == 0:
        return x, None
    if keep is None:
        keep = draw_keep(x.shape, p, rng)
    elif keep.shape != x.shape or keep.dtype != np.bool_:
        raise ValueError(f"dropout_forward: keep must be a bool array of x's shape {x.shape}, got "
                         f"{keep.dtype} {keep.shape}")  # fmt: skip
    mask = keep * x.dtype.type(1 / (1 - p))  # entries 0 or 1 / (1 - p), in x's dtype
    return x * mask, mask


def draw_keep(shape: tuple[int, ...], p: float, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Which elements dropout keeps: True with probability 1 - p. Shape: ``shape``."""
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    # Uniform draws in float64 whatever x's dtype, so one seed gives one mask
    # in float32 and float64 alike; P(u >= p) = 1 - p. Image batches are drawn in
    # channels-last order, the memory order of convnp's feature maps, so that
    # the mask and the output keep that layout.
    if len(shape) == 4:
        return (generator.random((shape[0], shape[2], shape[3], shape[1])) >= p).transpose(0, 3, 1, 2)
    return generator.random(shape) >= p


def dropout_backward(dout: np.ndarray, cache: np.ndarray | None) -> np.ndarray:
    """dx = dout * mask (the same elements dropped, the same scale); dout in identity mode."""
    mask = cache
    dout = np.asarray(dout)
    if mask is None:
        return dout
    if dout.shape != mask.shape:
        raise ValueError(f"dropout_backward: dout must have the forward output's shape {mask.shape}, got {dout.shape}")
    return dout * mask
