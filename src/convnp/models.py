"""Ready-made networks: built ``Sequential`` stacks and residual ``Model`` graphs.

Every builder takes ``input_shape`` (C, H, W), ``num_classes`` and ``seed``
(for the initial weights) and outputs logits; ``predict`` turns them into
probabilities.
"""

from __future__ import annotations

from convnp.nn import (
    Add,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Input,
    MaxPool2D,
    Model,
    Node,
    ReLU,
    Sequential,
)

__all__ = ["lenet5", "mnist_cnn", "convnet_bn", "resnet20", "resnet32", "resnet56", "resnet18", "MODELS", "build_model"]


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


# ------------------------------------------------------------------ residual networks
def basic_block(x: Node, channels: int, stride: int, prefix: str) -> Node:
    """He et al.'s basic block with torchvision's names: two 3x3 convolutions, and the input added back.

        out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))

    The shortcut is the identity, or ``downsample`` (a strided 1x1 convolution
    and batch norm) when the block changes the size or the channels.
    Parameters are keyed ``{prefix}.conv1.weight``, ..., ``{prefix}.downsample.0.weight``.
    """
    out = Conv2D(channels, 3, stride=stride, padding=1, use_bias=False, name=f"{prefix}.conv1")(x)
    out = ReLU()(BatchNorm2D(name=f"{prefix}.bn1")(out))
    out = Conv2D(channels, 3, padding=1, use_bias=False, name=f"{prefix}.conv2")(out)
    out = BatchNorm2D(name=f"{prefix}.bn2")(out)
    shortcut = x
    if stride != 1 or x.shape[0] != channels:
        shortcut = Conv2D(channels, 1, stride=stride, use_bias=False, name=f"{prefix}.downsample.0")(x)
        shortcut = BatchNorm2D(name=f"{prefix}.downsample.1")(shortcut)
    return ReLU()(Add()([out, shortcut]))


def _resnet(input_shape, num_classes, seed, dtype, stem: int, stages: list[tuple[int, int]], builder: str) -> Model:
    """A 3x3 stride-1 stem, stages of basic blocks (channels, blocks; all but the first halve the size), a head."""
    inputs = Input(_check_shape(input_shape, builder))
    x = ReLU()(BatchNorm2D(name="bn1")(Conv2D(stem, 3, padding=1, use_bias=False, name="conv1")(inputs)))
    for stage, (channels, blocks) in enumerate(stages, start=1):
        for block in range(blocks):
            stride = 2 if stage > 1 and block == 0 else 1
            x = basic_block(x, channels, stride, f"layer{stage}.{block}")
    logits = Dense(num_classes, name="fc")(Flatten()(GlobalAvgPool2D()(x)))
    return Model(inputs, logits, dtype=dtype, seed=seed)


def _cifar_resnet(depth: int):
    blocks = (depth - 2) // 6

    def build(input_shape=(3, 32, 32), num_classes: int = 10, seed=None, dtype="float32", width: int = 16) -> Model:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"resnet{depth}: width must be a positive int, got {width!r}")
        stages = [(width, blocks), (2 * width, blocks), (4 * width, blocks)]
        return _resnet(input_shape, num_classes, seed, dtype, width, stages, f"resnet{depth}")

    build.__name__ = f"resnet{depth}"
    build.__doc__ = f"""ResNet-{depth} for small images (He et al. 2016, CIFAR-10): 6n+2 layers with n = {blocks}.

    A 3x3 stem of ``width`` channels (16 by default, the paper's), three stages of {blocks} basic
    blocks with width, 2 * width and 4 * width channels (the second and third start with stride 2
    and a 1x1 projection shortcut), global average pooling and a linear layer. Keys follow
    torchvision's ResNet ("layer2.0.downsample.0.weight").
    """
    return build


resnet20 = _cifar_resnet(20)
resnet32 = _cifar_resnet(32)
resnet56 = _cifar_resnet(56)


def resnet18(input_shape=(3, 32, 32), num_classes: int = 10, seed=None, dtype="float32") -> Model:
    """ResNet-18 with torchvision's layout and state_dict keys, and a stem for small images.

    torchvision's 7x7 stride-2 stem and its max pooling would leave a 28x28 or
    32x32 image 7x7 or 8x8 pixels wide before the first block; here the stem is
    one 3x3 stride-1 convolution (64 channels) and no pooling, the usual choice
    for CIFAR-sized inputs. Then four stages of two basic blocks (64, 128, 256,
    512 channels), global average pooling and ``fc``: about 11.2M parameters.
    """
    return _resnet(input_shape, num_classes, seed, dtype, 64, [(64, 2), (128, 2), (256, 2), (512, 2)], "resnet18")


MODELS = {
    "mnist_cnn": mnist_cnn,
    "lenet5": lenet5,
    "convnet_bn": convnet_bn,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet56": resnet56,
    "resnet18": resnet18,
}


def build_model(name: str, input_shape, num_classes: int = 10, seed=None, **kwargs) -> Sequential | Model:
    """Build a model by name (one of ``MODELS``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {sorted(MODELS)}")
    return MODELS[name](input_shape=input_shape, num_classes=num_classes, seed=seed, **kwargs)
