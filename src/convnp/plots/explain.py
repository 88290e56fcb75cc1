"""One picture that explains a prediction: Grad-CAM of the top classes over the image, and every conv block's maps.

    plot_explanation(model, image, "explain.png", top=3)

The first row shows the image, then for each of the ``top`` most probable
classes its Grad-CAM heat map (``gradcam.py``) laid over the image (red: the
evidence for that class). Below, one row per convolution block (a convolution
and the element-wise layers after it, ``gradcam.conv_blocks``): the first
``max_maps`` of its output maps, each min-max scaled on its own, so that one
can follow what the image turns into on its way to the prediction.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from convnp.plots.figure import as_display_image, new_figure, save_png, unit_range
from convnp.plots.gradcam import conv_blocks, grad_cam, layer_values, upsample_bilinear

__all__ = ["plot_explanation", "class_label"]

_HEAT_ALPHA = 0.45  # opacity of the heat map over the image


def class_label(class_names: Sequence[str] | None, index: int) -> str:
    """``index``, followed by its class name when one is known and differs from the index."""
    if class_names and index < len(class_names) and class_names[index] != str(index):
        return f"{index} ({class_names[index]})"
    return str(index)


def plot_explanation(
    model,
    image,
    path: str | os.PathLike,
    top: int = 3,
    class_names: Sequence[str] | None = None,
    layer: int | str | None = None,
    max_maps: int = 8,
    image_title: str = "input",
) -> Path:
    """Write the Grad-CAM maps of the ``top`` classes over ``image``, and each conv block's feature maps, as a PNG.

    Parameters
    ----------
    model : Sequential or Model
        A built model with a convolution.
    image : array_like
        One image, (C, H, W), or (H, W) for a one-channel model, scaled as
        the model's training images were.
    path : str or path-like
        The PNG file to write.
    top : int
        How many of the most probable classes to explain.
    class_names : sequence of str, optional
        Names for the titles; default ``model.class_names``.
    layer : int or str, optional
        The layer Grad-CAM explains (see ``grad_cam``); default the last
        convolution block.
    max_maps : int
        Feature maps drawn per convolution block.
    image_title : str
        Title above the image.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    names = class_names if class_names is not None else getattr(model, "class_names", None)
    explained = grad_cam(model, image, top=top, layer=layer)
    with model.logits_view(True) as stop:
        blocks = conv_blocks(model, stop)
        values = layer_values(model, image, stop)
    picture, cmap = as_display_image(values[0][0])  # (H, W) or (H, W, 3)
    size = picture.shape[:2]

    columns = max(1 + len(explained), 1 + max_maps)
    figure = new_figure((1.5 * columns, 2.4 + 1.3 * len(blocks)))
    grid = figure.add_gridspec(1 + len(blocks), columns, height_ratios=[1.8] + [1.0] * len(blocks))
    image_ax = figure.add_subplot(grid[0, 0])
    image_ax.imshow(picture, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    image_ax.set_title(image_title, fontsize=9)
    image_ax.axis("off")
    for column, result in enumerate(explained, start=1):
        ax = figure.add_subplot(grid[0, column])
        ax.imshow(picture, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.imshow(upsample_bilinear(result.heatmap, size), cmap="jet", alpha=_HEAT_ALPHA, vmin=0, vmax=1)
        ax.set_title(f"{class_label(names, result.class_index)}\np={result.probability:.3f}", fontsize=9)
        ax.axis("off")

    for row, block in enumerate(blocks, start=1):
        maps = values[block[-1] + 1][0]  # (C, h, w)
        label_ax = figure.add_subplot(grid[row, 0])
        label_ax.axis("off")
        label = f"{_block_label(model, block)}\n{' x '.join(map(str, maps.shape))}"
        label_ax.text(0.5, 0.5, label, ha="center", va="center", fontsize=7, wrap=True)
        for channel, feature_map in enumerate(maps[:max_maps]):
            ax = figure.add_subplot(grid[row, 1 + channel])
            ax.imshow(unit_range(feature_map), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(str(channel), fontsize=6)
            ax.axis("off")

    target = explained[0].layer
    height, width = explained[0].heatmap.shape
    figure.suptitle(
        f"Grad-CAM at {model.layers[target].label} ({height}x{width} maps) for the top {len(explained)} "
        "classes; below, the maps of each convolution block",
        fontsize=9,
    )
    figure.tight_layout()
    return save_png(figure, path)


def _block_label(model, block: list[int]) -> str:
    """A conv block's layers: "Conv2D (layer 3)", then a line "+ BatchNorm2D + ReLU"."""
    followers = [type(model.layers[index]).__name__ for index in block[1:]]
    return model.layers[block[0]].label + ("\n+ " + " + ".join(followers) if followers else "")
