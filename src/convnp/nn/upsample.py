"""The Upsample2D layer around ``convnp.functional.upsample2d_*``."""

from __future__ import annotations

import numpy as np

from convnp.functional.geometry import IntPair
from convnp.functional.upsample import check_upsample_args, upsample2d_backward, upsample2d_forward
from convnp.nn.layer import Layer


class Upsample2D(Layer):
    """Upsampling by integer factors, "nearest" or "bilinear" (align_corners=False), as PyTorch's ``Upsample``.

    Shape: (N, C, H, W) -> (N, C, H*SH, W*SW), (SH, SW) = ``scale_factor`` (an int or a pair of ints).
    """

    def __init__(self, scale_factor: IntPair = 2, mode: str = "nearest", name: str | None = None) -> None:
        super().__init__(name=name)
        self.scale_factor, self.mode = check_upsample_args(scale_factor, mode, "Upsample2D")

    def _build(self, input_shape, rng):
        if len(input_shape) != 3:
            raise ValueError(f"{self.label}: expected a per-sample input shape (C, H, W), got {input_shape}")
        channels, height, width = input_shape
        return (channels, height * self.scale_factor[0], width * self.scale_factor[1])

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        out, self.cache = upsample2d_forward(self.check_input(x), self.scale_factor, self.mode)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return upsample2d_backward(self.check_grad(dout), self.cache)

    def get_config(self) -> dict:
        return {"scale_factor": list(self.scale_factor), "mode": self.mode}
