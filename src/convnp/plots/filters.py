"""The first convolution's filters as a grid of small images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from convnp.plots.figure import grid_shape, new_figure, save_png, unit_range

__all__ = ["plot_filters", "first_conv_index"]


def first_conv_index(model) -> int:
    """The index of the first ``Conv2D`` in ``model.layers`` (``ValueError`` without one)."""
    for index, layer in enumerate(model.layers):
        if type(layer).__name__ == "Conv2D":
            return index
    raise ValueError("the model has no Conv2D layer")


def plot_filters(model_or_weight, path: str | os.PathLike) -> Path:
    """The first convolution's filters, one small image per output channel, in a grid.

    Each filter is min-max scaled on its own. With 3 input channels a filter is
    drawn as an RGB image; otherwise its first input channel is drawn in grey
    (light = positive weight).

    Parameters
    ----------
    model_or_weight : Sequential or ndarray
        A model (its first ``Conv2D`` is used) or a weight array.
    path : str or path-like
        The PNG file to write.

    Shape:
        weight: (F, C, KH, KW)
    """
    if isinstance(model_or_weight, np.ndarray):
        weight, label = model_or_weight, "Conv2D"
    else:
        index = first_conv_index(model_or_weight)
        weight, label = model_or_weight.layers[index].weight.data, f"Conv2D (layer {index})"
    if weight.ndim != 4:
        raise ValueError(f"plot_filters: expected a weight of shape (F, C, KH, KW), got {weight.shape}")
    num_filters, in_channels, kh, kw = weight.shape
    rows, columns = grid_shape(num_filters)
    figure = new_figure((max(3.0, 1.1 * columns), max(2.5, 1.1 * rows + 0.6)))
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for f, ax in enumerate(axes):
        ax.axis("off")
        if f >= num_filters:
            continue
        if in_channels == 3:
            ax.imshow(unit_range(weight[f]).transpose(1, 2, 0), interpolation="nearest")  # (KH, KW, 3)
        else:
            ax.imshow(unit_range(weight[f, 0]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(str(f), fontsize=7)
    figure.suptitle(f"First-layer filters: {label}, {num_filters} x {in_channels} x {kh} x {kw}")
    figure.tight_layout()
    return save_png(figure, path)
