"""The suite ``convnp gradcheck`` runs: a tiny float64 instance of every layer type, and a small Sequential."""

from __future__ import annotations

import numpy as np

from convnp import nn

__all__ = ["gradcheck_cases"]


def gradcheck_cases(seed: int = 0) -> list[tuple[str, object, np.ndarray, bool]]:
    """Tiny float64 instances of every layer type and a small Sequential, with inputs.

    Returns ``(description, layer_or_model, x, training)`` tuples. Inputs of
    activations stay away from their kinks (|x| >= 0.2) and max-pool inputs
    are distinct values 0.05 apart, so central differences never straddle a
    point where the gradient jumps.
    """
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return rng.standard_normal(shape)

    def away_from_zero(*shape):
        return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.2, 1.5, size=shape)

    def distinct(*shape):
        return (rng.permutation(int(np.prod(shape))).reshape(shape) - np.prod(shape) / 2) * 0.05

    def built(layer, x, randomize_affine=False, running_stats=False):
        layer.build(x.shape[1:], dtype="float64", rng=rng)
        if randomize_affine:
            layer.weight.data = rng.uniform(0.5, 1.5, layer.weight.data.shape)
            layer.bias.data = rng.standard_normal(layer.bias.data.shape)
        if running_stats:
            layer.running_mean = rng.standard_normal(layer.running_mean.shape)
            layer.running_var = rng.uniform(0.5, 2.0, layer.running_var.shape)
        return layer

    cases = []

    def add(description, layer, x, training=False, **build_options):
        cases.append((description, built(layer, x, **build_options), x, training))

    x_conv = normal(2, 2, 5, 5)
    add("Conv2D(3, 3)", nn.Conv2D(3, 3), x_conv)
    add("Conv2D(3, 3, stride=2, padding=1)", nn.Conv2D(3, 3, stride=2, padding=1), normal(2, 2, 6, 6))
    add("Conv2D(2, 3, dilation=2, padding=2)", nn.Conv2D(2, 3, dilation=2, padding=2), normal(2, 2, 6, 6))
    add("Conv2D(4, 3, groups=2, padding=1)", nn.Conv2D(4, 3, groups=2, padding=1), normal(2, 4, 4, 4))
    add(
        "Conv2D(3, (2, 3), stride=(2, 1), no bias)",
        nn.Conv2D(3, (2, 3), stride=(2, 1), use_bias=False),
        normal(2, 2, 5, 6),
    )
    add("Conv2D(2, 3, padding='same', tanh)", nn.Conv2D(2, 3, padding="same", activation="tanh"), x_conv)
    add(
        "Conv2D(3, 3, padding=((1, 0), (2, 1)), winograd)",
        nn.Conv2D(3, 3, padding=((1, 0), (2, 1)), algorithm="winograd"),
        normal(2, 2, 5, 4),  # odd output height: the last tile row is cropped
    )
    add("MaxPool2D(2)", nn.MaxPool2D(2), distinct(2, 2, 4, 4))
    add("MaxPool2D(3, stride=2, padding=1)", nn.MaxPool2D(3, stride=2, padding=1), distinct(2, 2, 5, 5))
    add("AvgPool2D(2)", nn.AvgPool2D(2), normal(2, 2, 4, 4))
    add("AvgPool2D(3, stride=2, padding=1)", nn.AvgPool2D(3, stride=2, padding=1), normal(2, 2, 5, 5))
    add("GlobalAvgPool2D", nn.GlobalAvgPool2D(), normal(2, 3, 3, 4))
    add("Dense(4)", nn.Dense(4), normal(3, 5))
    add("Dense(3, no bias, sigmoid)", nn.Dense(3, use_bias=False, activation="sigmoid"), normal(3, 5))
    add("Flatten", nn.Flatten(), normal(2, 2, 3, 3))
    for activation in (nn.ReLU(), nn.LeakyReLU(0.1), nn.ELU(), nn.Sigmoid(), nn.Tanh(), nn.Gaussian(), nn.Softmax()):
        add(activation.short_repr(), activation, away_from_zero(3, 5))
    add("Dropout(0.5) (fixed mask)", nn.Dropout(0.5, rng=seed), normal(3, 6), training=True)
    for training in (True, False):
        add("BatchNorm1D", nn.BatchNorm1D(), normal(4, 3), training, randomize_affine=True, running_stats=True)
        add("BatchNorm2D", nn.BatchNorm2D(), normal(3, 2, 3, 3), training, randomize_affine=True, running_stats=True)
    add("GroupNorm(2)", nn.GroupNorm(2), normal(2, 4, 3, 3), randomize_affine=True)
    add("LayerNorm", nn.LayerNorm(), normal(2, 2, 3, 3), randomize_affine=True)

    model = nn.Sequential(
        [
            nn.Conv2D(3, 3, padding=1, use_bias=False),  # a bias before batch norm has zero gradient
            nn.BatchNorm2D(),
            nn.ReLU(),
            nn.MaxPool2D(2),
            nn.Conv2D(4, 3, padding=1, activation="elu"),
            nn.GlobalAvgPool2D(),
            nn.Dense(3),
        ],
        input_shape=(1, 6, 6),
        dtype="float64",
        seed=seed,
    )
    cases.append(("Sequential(Conv-BN-ReLU-MaxPool-Conv-ELU-GAP-Dense)", model, normal(3, 1, 6, 6), True))
    add(
        "Residual(Conv-BN-ReLU-Conv, 1x1 shortcut)",
        nn.Residual(
            [nn.Conv2D(3, 3, padding=1), nn.BatchNorm2D(), nn.ReLU(), nn.Conv2D(3, 3, padding=1)],
            shortcut=nn.Conv2D(3, 1),
        ),
        normal(3, 2, 4, 4),
        training=True,
    )
    add("Identity", nn.Identity(), normal(2, 3))
    add(
        "ConvTranspose2D(3, 3, stride=2, padding=1, output_padding=1)",
        nn.ConvTranspose2D(3, 3, stride=2, padding=1, output_padding=1),
        normal(2, 2, 4, 4),
    )
    add(
        "ConvTranspose2D(4, 2, stride=2, groups=2, no bias)",
        nn.ConvTranspose2D(4, 2, stride=2, groups=2, use_bias=False),
        normal(2, 2, 3, 3),
    )
    add("Upsample2D(2)", nn.Upsample2D(2), normal(2, 2, 3, 3))
    add("Upsample2D(2, bilinear)", nn.Upsample2D(2, "bilinear"), normal(2, 2, 3, 3))
    add("AdaptiveAvgPool2D((3, 2))", nn.AdaptiveAvgPool2D((3, 2)), normal(2, 2, 5, 5))
    # Merge layers read several values: checked inside a graph where one value fans out to both.
    inputs = nn.Input((2, 4, 4))
    stem = nn.Conv2D(2, 3, padding=1)(inputs)
    merged = nn.Add()([nn.Conv2D(2, 3, padding=1)(stem), stem])
    joined = nn.Concatenate(axis=1)([merged, nn.Tanh()(stem)])
    graph = nn.Model(inputs, nn.Dense(3)(nn.Flatten()(nn.Conv2D(2, 1)(joined))), dtype="float64", seed=seed)
    cases.append(("Model(Add and Concatenate over a fan-out)", graph, normal(2, 2, 4, 4), False))
    # The PyTorch/ONNX options: asymmetric padding, ceil mode, dilated and pad-excluding pools, other axes.
    add("Conv2D(3, 3, stride=2, padding=((0, 1), (1, 0)))", nn.Conv2D(3, 3, 2, ((0, 1), (1, 0))), normal(2, 2, 6, 6))
    add(
        "MaxPool2D(3, stride=2, padding=((1, 0), (0, 1)), dilation=2, ceil_mode=True)",
        nn.MaxPool2D(3, stride=2, padding=((1, 0), (0, 1)), dilation=2, ceil_mode=True),
        distinct(2, 2, 8, 7),
    )
    add(
        "AvgPool2D(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)",
        nn.AvgPool2D(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        normal(2, 2, 6, 6),
    )
    add("Softmax(axis=-1)", nn.Softmax(axis=-1), away_from_zero(2, 2, 3, 4))
    add("LayerNorm((3, 3))", nn.LayerNorm((3, 3)), normal(2, 2, 3, 3), randomize_affine=True)
    return cases
