"""The cases ``convnp gradcheck`` runs cover every layer type and its variants."""

from __future__ import annotations

import numpy as np

from convnp.cli.gradcheck_suite import gradcheck_cases


def test_gradcheck_covers_every_layer_type():
    from convnp import nn

    layer_types = {
        name for name in nn.__all__ if isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name), nn.Layer)
    } - {"Layer"}
    checked, modes, conv_variants, algorithms = set(), set(), set(), set()
    for _, target, x, training in gradcheck_cases():
        checked.add(type(target).__name__)
        checked.update(type(layer).__name__ for layer in getattr(target, "layers", ()))  # inside a graph model
        modes.add((type(target).__name__, training))
        if isinstance(target, nn.Conv2D):
            conv_variants.add((target.stride, target.dilation, target.groups, target.padding))
            algorithms.add(target.algorithm)
        assert x.dtype == np.float64
    assert layer_types <= checked
    assert {("BatchNorm1D", True), ("BatchNorm1D", False), ("BatchNorm2D", True), ("BatchNorm2D", False)} <= modes
    assert ("Dropout", True) in modes and "Sequential" in checked
    assert any(stride != (1, 1) for stride, _, _, _ in conv_variants)
    assert any(dilation != (1, 1) for _, dilation, _, _ in conv_variants)
    assert any(groups > 1 for _, _, groups, _ in conv_variants)
    assert algorithms == {"im2col", "winograd"}
