"""The activation maps of a model's first convolution block, beside the input image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from convnp.plots.figure import ELEMENTWISE_LAYERS, as_display_image, grid_shape, new_figure, save_png, unit_range
from convnp.plots.filters import first_conv_index

__all__ = ["plot_feature_maps", "first_conv_block"]


def first_conv_block(model) -> list[int]:
    """Indices of the first Conv2D and the element-wise layers (norm, activation) right after it."""
    start = first_conv_index(model)
    indices = [start]
    for index in range(start + 1, len(model.layers)):
        if type(model.layers[index]).__name__ not in ELEMENTWISE_LAYERS:
            break
        indices.append(index)
    return indices


def plot_feature_maps(model, image, path: str | os.PathLike, max_maps: int = 64, image_title: str = "input") -> Path:
    """The input image beside the activation maps of the model's first convolution block.

    The image goes through the layers up to the first ``Conv2D`` and any
    norm/activation layers that directly follow it (inference mode); each
    output channel is drawn as a grey image (min-max scaled on its own).

    Parameters
    ----------
    model : Sequential
        A built model with at least one ``Conv2D``.
    image : array_like
        One image, (C, H, W) or (H, W).
    path : str or path-like
        The PNG file to write.
    max_maps : int
        Draw at most this many channels.
    image_title : str
        Title above the input image (e.g. its true class).

    Shape:
        image: (C, H, W); maps: (F, H_out, W_out)
    """
    batch = model.prepare_input(np.asarray(image)[None])  # (1, C, H, W)
    block = first_conv_block(model)
    out = batch
    for layer in model.layers[: block[-1] + 1]:
        out = layer.forward(out, training=False)
    maps = out[0, :max_maps]  # (F, H_out, W_out)
    names = ", ".join(type(model.layers[i]).__name__ for i in block)
    span = f"layer {block[0]}" if len(block) == 1 else f"layers {block[0]}-{block[-1]}"

    rows, columns = grid_shape(len(maps))
    figure = new_figure((2.5 + 1.1 * columns, max(3.0, 1.1 * rows + 0.6)))
    grid = figure.add_gridspec(rows, columns + 2)  # column 0-1: the input, then the maps
    image_ax = figure.add_subplot(grid[:, :2])
    display, cmap = as_display_image(batch[0])
    image_ax.imshow(display, cmap=cmap, interpolation="nearest")
    image_ax.set_title(image_title)
    image_ax.axis("off")
    for channel, feature_map in enumerate(maps):
        ax = figure.add_subplot(grid[channel // columns, 2 + channel % columns])
        ax.imshow(unit_range(feature_map), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(str(channel), fontsize=7)
        ax.axis("off")
    figure.suptitle(f"Feature maps after {names} ({span}): {out.shape[1]} x {out.shape[2]} x {out.shape[3]}")
    figure.tight_layout()
    return save_png(figure, path)
