"""The Dropout layer: inverted dropout, active only in training."""

from __future__ import annotations

import numbers

import numpy as np

from convnp._random import as_generator
from convnp.functional.dropout import draw_keep, dropout_backward, dropout_forward
from convnp.nn.layer import Layer

__all__ = ["Dropout"]


class Dropout(Layer):
    """Zero each input with probability ``p`` in training and scale the rest by 1 / (1 - p).

    out = x * mask, mask = Bernoulli(1 - p) / (1 - p) in training; out = x in inference.

    The layer owns its random generator: ``rng`` is a seed (the same seed gives
    the same sequence of masks), a ``numpy.random.Generator``, or None for
    fresh entropy.

    Shape:
        x: any (N, ...); out: same as x
    """

    batch_independent = False  # one random stream draws the masks of the whole batch, in order
    shard_aware = True  # in a sharded pass the first shard draws the whole batch's mask (nn/shards.py)

    def __init__(self, p: float = 0.5, rng: np.random.Generator | int | None = None, name: str | None = None) -> None:
        super().__init__(name=name)
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
            raise ValueError(f"{self.label}: p must be a number in [0, 1), got {p!r}")
        self.p = float(p)
        # A seed is remembered for get_config; a Generator's state is not JSON.
        self.seed = int(rng) if isinstance(rng, (int, np.integer)) else None
        self.rng = as_generator(rng)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self.check_input(x)
        keep = None
        if training and self.p > 0 and self.shard is not None:
            # The whole batch's draw, so that a seed gives the masks of an unsharded pass.
            shard, whole = self.shard, (self.shard.batch, *x.shape[1:])
            keep = shard.from_first(lambda: draw_keep(whole, self.p, self.rng))[shard.start : shard.stop]
        out, mask = dropout_forward(x, self.p, training, self.rng, keep=keep)
        # Wrapped so the cache is set even in identity mode, where the mask is None
        # (check_grad reads a None cache as "no forward pass yet").
        self.cache = {"mask": mask}
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dout = self.check_grad(dout)
        return dropout_backward(dout, self.cache["mask"])

    def get_config(self) -> dict:
        config = {"p": self.p}
        if self.seed is not None:
            config["rng"] = self.seed
        return config
