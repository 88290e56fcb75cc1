"""Normalisation layers: BatchNorm1D, BatchNorm2D, GroupNorm, LayerNorm.

Thin wrappers over ``convnp.functional.normalization``. Each holds the affine
``weight`` (ones) and ``bias`` (zeros), named as PyTorch names them so a
state_dict moves across unchanged. Batch norm also keeps the buffers
``running_mean`` (zeros) and ``running_var`` (ones), updated in place by every
training-mode forward pass and used in inference.
"""

from __future__ import annotations

import numbers

import numpy as np

from convnp.checks import check_eps, positive_int
from convnp.functional.batch_norm import batch_norm_backward, batch_norm_forward
from convnp.functional.normalization import (
    group_norm_backward,
    group_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)
from convnp.nn.init import constant
from convnp.nn.layer import Layer
from convnp.parameter import Parameter

__all__ = ["BatchNorm1D", "BatchNorm2D", "GroupNorm", "LayerNorm"]


class _Normalization(Layer):
    """Shared parts: the affine parameters and writing their gradients."""

    param_names = ("weight", "bias")

    def __init__(self, eps: float, name: str | None = None) -> None:
        super().__init__(name=name)
        self.eps = check_eps(eps, self.label)
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None

    def _check_rank(self, input_shape: tuple[int, ...]) -> None:
        if len(input_shape) < 1:
            raise ValueError(f"{self.label}: expected a per-sample input of shape (C, ...), got {input_shape}")

    def _build_affine(self, shape: tuple[int, ...]) -> None:
        self.weight = Parameter(constant(1.0, shape, self.dtype, self.label), "weight")
        self.bias = Parameter(constant(0.0, shape, self.dtype, self.label), "bias")

    def _set_grads(self, dweight: np.ndarray, dbias: np.ndarray) -> None:
        self.weight.grad = dweight
        self.bias.grad = dbias


class _BatchNorm(_Normalization):
    """Batch norm over per-sample shapes of ``sample_ndim`` axes, channels first."""

    buffer_names = ("running_mean", "running_var")
    batch_independent = False  # training mode normalises with statistics of the whole batch
    shard_aware = True  # in a sharded pass the shards add up their sums (nn/shards.py)
    sample_ndim = 1
    layout = "(C,)"
    other = ""

    def __init__(
        self, momentum: float = 0.1, eps: float = 1e-5, num_features: int | None = None, name: str | None = None
    ) -> None:
        super().__init__(eps, name=name)
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
            raise TypeError(f"{self.label}: momentum must be a number in [0, 1], got {momentum!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"{self.label}: momentum must be in [0, 1], got {momentum!r}")
        self.momentum = float(momentum)
        self.num_features = positive_int(num_features, "num_features", self.label, allow_none=True)
        self.running_mean: np.ndarray | None = None
        self.running_var: np.ndarray | None = None

    def _build(self, input_shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        if len(input_shape) != self.sample_ndim:
            raise ValueError(
                f"{self.label}: expected a per-sample input of shape {self.layout}, got {input_shape}{self.other}"
            )
        channels = input_shape[0]
        if self.num_features is not None and self.num_features != channels:
            raise ValueError(
                f"{self.label}: num_features={self.num_features} was given but the input has {channels} channels"
            )
        self.num_features = channels
        self._build_affine((channels,))
        self.running_mean = constant(0.0, (channels,), self.dtype, self.label)
        # Ones, not zeros: an inference pass before any training must not divide by sqrt(eps).
        self.running_var = constant(1.0, (channels,), self.dtype, self.label)
        return input_shape

    def op_arguments(self, training: bool) -> dict:
        """The arguments after x of ``batch_norm_forward`` (and of the fused ``batch_norm_relu_forward``)."""
        shard = self.shard if training else None
        # In a sharded pass every shard normalises with the whole batch's statistics;
        # the first shard alone moves the running statistics (once per batch).
        keeps_running_stats = shard is None or shard.index == 0
        return {
            "weight": self.weight.data,
            "bias": self.bias.data,
            "running_mean": self.running_mean if keeps_running_stats else None,
            "running_var": self.running_var if keeps_running_stats else None,
            "training": training,
            "momentum": self.momentum,
            "eps": self.eps,
            "reduce": None if shard is None else shard.sum,
        }

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self.check_input(x)
        out, self.cache = batch_norm_forward(x, **self.op_arguments(training))
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = batch_norm_backward(self.check_grad(dout), self.cache)
        self._set_grads(dweight, dbias)
        return dx

    def get_config(self) -> dict:
        return {"momentum": self.momentum, "eps": self.eps, "num_features": self.num_features}


class BatchNorm1D(_BatchNorm):
    """Batch normalisation of feature vectors, per feature over the batch.

    Training: out = weight * (x - mean_batch) / sqrt(var_batch + eps) + bias,
    and running_mean/running_var move towards the batch's statistics by
    ``momentum`` (running_var towards the unbiased variance), as in PyTorch.
    Inference: the running statistics replace the batch's.

    Shape:
        x: (N, C); weight, bias, running_mean, running_var: (C,); out: (N, C)
    """

    sample_ndim = 1
    layout = "(features,)"
    other = "; use BatchNorm2D for (C, H, W) inputs"


class BatchNorm2D(_BatchNorm):
    """Spatial batch normalisation, per channel over the batch and all positions.

    The formulas of BatchNorm1D with the statistics of channel c taken over its
    N * H * W values.

    Shape:
        x: (N, C, H, W); weight, bias, running_mean, running_var: (C,); out: (N, C, H, W)
    """

    sample_ndim = 3
    layout = "(C, H, W)"
    other = "; use BatchNorm1D for (features,) inputs"


class GroupNorm(_Normalization):
    """Group normalisation: per sample, each group of C / num_groups channels is
    standardised over its channels and positions, then scaled per channel.

    out = weight[c] * (x - mean[n, g]) / sqrt(var[n, g] + eps) + bias[c]

    The same computation in training and inference (no running statistics).

    Shape:
        x: (N, C, ...), C divisible by num_groups; weight, bias: (C,); out: same as x
    """

    def __init__(self, num_groups: int, eps: float = 1e-5, name: str | None = None) -> None:
        super().__init__(eps, name=name)
        self.num_groups = positive_int(num_groups, "num_groups", self.label)

    def _build(self, input_shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        self._check_rank(input_shape)
        channels = input_shape[0]
        if channels % self.num_groups != 0:
            raise ValueError(
                f"{self.label}: num_groups={self.num_groups} does not divide the {channels} "
                f"channels of input shape {input_shape}"
            )
        self._build_affine((channels,))
        return input_shape

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self.check_input(x)
        out, self.cache = group_norm_forward(x, self.weight.data, self.bias.data, self.num_groups, eps=self.eps)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = group_norm_backward(self.check_grad(dout), self.cache)
        self._set_grads(dweight, dbias)
        return dx

    def get_config(self) -> dict:
        return {"num_groups": self.num_groups, "eps": self.eps}


class LayerNorm(_Normalization):
    """Layer normalisation: each sample standardised over its trailing axes ``normalized_shape``
    (by default all of them), then an elementwise affine map (``torch.nn.LayerNorm(normalized_shape)``).

    out[n, ...] = weight * (x[n, ...] - mean) / sqrt(var + eps) + bias,
    mean and var taken over each slice of shape ``normalized_shape``

    Shape:
        x: (N, ...); weight, bias: normalized_shape (the per-sample shape when None); out: same as x
    """

    def __init__(
        self, normalized_shape: int | tuple[int, ...] | None = None, eps: float = 1e-5, name: str | None = None
    ) -> None:
        super().__init__(eps, name=name)
        if isinstance(normalized_shape, (int, np.integer)) and not isinstance(normalized_shape, bool):
            normalized_shape = (normalized_shape,)
        if normalized_shape is not None:
            if not isinstance(normalized_shape, (tuple, list)) or not normalized_shape:
                raise TypeError(
                    f"{self.label}: normalized_shape must be None, an int or a non-empty tuple of ints, "
                    f"got {normalized_shape!r}"
                )
            normalized_shape = tuple(positive_int(d, "normalized_shape", self.label) for d in normalized_shape)
        self.normalized_shape: tuple[int, ...] | None = normalized_shape

    def _build(self, input_shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        self._check_rank(input_shape)
        shape = self.normalized_shape
        if shape is not None and (
            len(shape) > len(input_shape) or input_shape[len(input_shape) - len(shape) :] != shape
        ):
            raise ValueError(
                f"{self.label}: normalized_shape={shape} must be the trailing axes of the per-sample input "
                f"shape, got {input_shape}"
            )
        self._build_affine(input_shape if shape is None else shape)
        return input_shape

    @property
    def begin_axis(self) -> int:
        """The first normalised axis of a batch (1 + the per-sample axes left out)."""
        if self.normalized_shape is None:
            return 1
        return 1 + len(self.input_shape) - len(self.normalized_shape)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self.check_input(x)
        out, self.cache = layer_norm_forward(
            x, self.weight.data, self.bias.data, eps=self.eps, begin_axis=self.begin_axis
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = layer_norm_backward(self.check_grad(dout), self.cache)
        self._set_grads(dweight, dbias)
        return dx

    def get_config(self) -> dict:
        shape = None if self.normalized_shape is None else list(self.normalized_shape)
        return {"normalized_shape": shape, "eps": self.eps}
