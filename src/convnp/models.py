"""Ready-made networks. Each builder returns a built ``Sequential``.

Every builder takes ``input_shape`` (C, H, W), ``num_classes`` and ``seed``
(for the initial weights) and outputs logits; ``predict`` turns them into
probabilities.
"""

from __future__ import annotations

from convnp.nn import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    ReLU,
    Sequential,
)

__all__ = ["lenet5", "mnist_cnn", "convnet_bn", "MODELS", "build_model"]


def _check_shape(input_shape, builder: str) -> tuple[int, int, int]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{builder}: input_shape must be (C, H, W), got {input_shape!r}")
    return shape


def mnist_cnn(input_shape=(1, 28, 28), num_classes: int = 10, seed=None, dtype="float32") -> Sequential:
    """The reference network::

        Conv(32, 3, padding 1) - ReLU - MaxPool 2 - Conv(64, 3, padding 1) - ReLU - MaxPool 2
        - Flatten - Dense(128) - ReLU - Dense(num_classes)

    About 421k parameters for 28x28 inputs.
    """
    shape = _check_shape(input_shape, "mnist_cnn")
    layers = [
        Conv2D(32, 3, padding=1), ReLU(), MaxPool2D(2),
        Conv2D(64, 3, padding=1), ReLU(), MaxPool2D(2),
        Flatten(), Dense(128), ReLU(), Dense(num_classes),
    ]  # fmt: skip
    return Sequential(layers, input_shape=shape, dtype=dtype, seed=seed)


def lenet5(input_shape=(1, 28, 28), num_classes: int = 10, seed=None, dtype="float32") -> Sequential:
    """LeNet-5 (LeCun et al., 1998) with ReLU and average pooling::

        Conv(6, 5, padding 2) - ReLU - AvgPool 2 - Conv(16, 5) - ReLU - AvgPool 2
        - Flatten - Dense(120) - ReLU - Dense(84) - ReLU - Dense(num_classes)

    On inputs smaller than 20x20 (e.g. the 8x8 digits) the second convolution
    is padded too, so the network still fits.
    """
    shape = _check_shape(input_shape, "lenet5")
    second_padding = 0 if min(shape[1:]) >= 20 else 2
    layers = [
        Conv2D(6, 5, padding=2), ReLU(), AvgPool2D(2),
        Conv2D(16, 5, padding=second_padding), ReLU(), AvgPool2D(2),
        Flatten(), Dense(120), ReLU(), Dense(84), ReLU(), Dense(num_classes),
    ]  # fmt: skip
    return Sequential(layers, input_shape=shape, dtype=dtype, seed=seed)


def convnet_bn(
    input_shape=(1, 28, 28),
    num_classes: int = 10,
    seed=None,
    dtype="float32",
    width: int = 32,
    blocks: int | None = None,
    dropout: float = 0.25,
    hidden: int = 256,
) -> Sequential:
    """A stronger network with batch norm and dropout, for Fashion-MNIST and CIFAR-10.

    ``blocks`` stages (default: 2 for inputs under 32 pixels, else 3), stage k
    with ``width * 2**k`` channels::

        [Conv(c, 3, padding 1) - BatchNorm - ReLU] x 2 - MaxPool 2 - Dropout(dropout)   per stage
        Flatten - Dense(hidden) - BatchNorm - ReLU - Dropout(2 * dropout) - Dense(num_classes)
    """
    shape = _check_shape(input_shape, "convnet_bn")
    if blocks is None:
        blocks = 2 if min(shape[1:]) < 32 else 3
    if min(shape[1:]) < 2**blocks:
        raise ValueError(f"convnet_bn: input {shape} is too small for {blocks} pooling stages")
    layers = []
    for stage in range(blocks):
        channels = width * 2**stage
        for _ in range(2):
            layers += [Conv2D(channels, 3, padding=1, use_bias=False), BatchNorm2D(), ReLU()]
        layers += [MaxPool2D(2), Dropout(dropout)]
    layers += [Flatten(), Dense(hidden, use_bias=False), BatchNorm1D(), ReLU(), Dropout(min(2 * dropout, 0.9)),
               Dense(num_classes)]  # fmt: skip
    return Sequential(layers, input_shape=shape, dtype=dtype, seed=seed)


MODELS = {"mnist_cnn": mnist_cnn, "lenet5": lenet5, "convnet_bn": convnet_bn}


def build_model(name: str, input_shape, num_classes: int = 10, seed=None, **kwargs) -> Sequential:
    """Build a model by name (one of ``MODELS``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {sorted(MODELS)}")
    return MODELS[name](input_shape=input_shape, num_classes=num_classes, seed=seed, **kwargs)
