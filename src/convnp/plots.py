"""PNG plots of a training run: learning curves, confusion matrix, filters, feature maps.

matplotlib is optional (``pip install convnp[plots]``). It is imported inside
each function, and figures are drawn with the object-oriented API on an Agg
canvas (``matplotlib.figure.Figure`` + ``FigureCanvasAgg``): no window is ever
opened, and the global pyplot backend of the calling program is left alone.
Without matplotlib every function raises ``ImportError`` with the install
command.

Each function writes one PNG file and returns its path::

    plot_learning_curves(history, "run/learning_curves.png")
    plot_confusion_matrix(y_test, predictions, "run/confusion_matrix.png")
    plot_filters(model, "run/filters.png")
    plot_feature_maps(model, x_test[0], "run/feature_maps.png")
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from convnp._optional import require
from convnp.files.atomic import atomic_write

__all__ = [
    "INSTALL_HINT",
    "require_matplotlib",
    "plot_learning_curves",
    "plot_confusion_matrix",
    "plot_filters",
    "plot_feature_maps",
    "first_conv_block",
    "confusion_counts",
]

INSTALL_HINT = "pip install convnp[plots]"

# Layers that act element-wise or per channel and keep the map layout; the
# feature maps shown are those after the first Conv2D and any of these that follow it.
_ELEMENTWISE_LAYERS = ("BatchNorm2D", "GroupNorm", "ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "Gaussian")


def require_matplotlib():
    """Import and return the ``matplotlib`` module, or raise ``ImportError`` naming the install command."""
    return require("matplotlib", "convnp.plots", "plots")


def _new_figure(figsize: tuple[float, float]):
    """A Figure attached to an Agg canvas (no pyplot, no window)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | os.PathLike) -> Path:
    """Render ``figure`` as a PNG at ``path``, atomically (folders are created)."""
    return atomic_write(path, lambda stream: figure.savefig(stream, format="png"))


# -------------------------------------------------------------- learning curves
def plot_learning_curves(history, path: str | os.PathLike) -> Path:
    """Train vs validation loss (left panel) and accuracy (right panel) per epoch.

    Parameters
    ----------
    history : History or mapping
        A ``convnp.History`` or its ``to_dict()`` (as stored in history.json):
        lists "loss", "accuracy", "val_loss", "val_accuracy" with one entry per
        epoch; None entries (no validation data) are left out.
    path : str or path-like
        The PNG file to write.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    records: Mapping[str, Sequence] = history.history if hasattr(history, "history") else history
    figure = _new_figure((10, 4))
    axes = figure.subplots(1, 2)
    for ax, key, title in ((axes[0], "loss", "Loss"), (axes[1], "accuracy", "Accuracy")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = list(records.get(prefix + key) or [])
            points = [(epoch, v) for epoch, v in enumerate(values, start=1) if v is not None]
            if points:
                epochs, ys = zip(*points)
                ax.plot(epochs, ys, marker="o", markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    figure.tight_layout()
    return _save(figure, path)


# ------------------------------------------------------------- confusion matrix
def confusion_counts(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """``counts[i, j]``: number of samples of true class i predicted as class j.

    Shape:
        y_true, y_pred: (N,) int; counts: (K, K), K = num_classes (default: max label + 1)
    """
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_counts: y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    if num_classes is None:
        num_classes = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def plot_confusion_matrix(
    y_true,
    y_pred,
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    title: str = "Confusion matrix (test set)",
) -> Path:
    """A confusion matrix with the count written in every cell.

    Rows are the true classes, columns the predicted ones; the diagonal holds
    the correct predictions. The title gives the overall accuracy.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (N,)
        True and predicted class indices.
    path : str or path-like
        The PNG file to write.
    class_names : sequence of str, optional
        Tick labels; default the class indices. Its length sets the number of classes.
    title : str
        Figure title (the accuracy is appended).
    """
    num_classes = len(class_names) if class_names is not None else None
    counts = confusion_counts(y_true, y_pred, num_classes)
    num_classes = counts.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    total = counts.sum()
    accuracy = np.trace(counts) / total if total else 0.0

    size = max(5.0, 0.55 * num_classes + 2.5)
    figure = _new_figure((size, size))
    ax = figure.subplots()
    image = ax.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    threshold = counts.max() / 2 if counts.size else 0
    for i in range(num_classes):
        for j in range(num_classes):
            color = "white" if counts[i, j] > threshold else "black"
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=color, fontsize=8)
    ax.set_xticks(range(num_classes))
    ax.set_yticks(range(num_classes))
    rotate = max((len(n) for n in names), default=0) > 2
    ax.set_xticklabels(names, rotation=45 if rotate else 0, ha="right" if rotate else "center")
    ax.set_yticklabels(names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title}: accuracy {accuracy:.2%} ({np.trace(counts)}/{total})")
    figure.tight_layout()
    return _save(figure, path)


# --------------------------------------------------------------------- filters
def _first_conv_index(model) -> int:
    for index, layer in enumerate(model.layers):
        if type(layer).__name__ == "Conv2D":
            return index
    raise ValueError("the model has no Conv2D layer")


def _grid(count: int) -> tuple[int, int]:
    """(rows, columns) of a near-square grid holding ``count`` cells."""
    columns = max(1, math.ceil(math.sqrt(count)))
    return math.ceil(count / columns), columns


def _unit_range(array: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] (a constant array becomes 0.5)."""
    array = np.asarray(array, dtype=np.float64)
    low, high = array.min(), array.max()
    if high - low < 1e-12:
        return np.full_like(array, 0.5)
    return (array - low) / (high - low)


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
        index = _first_conv_index(model_or_weight)
        weight, label = model_or_weight.layers[index].weight.data, f"Conv2D (layer {index})"
    if weight.ndim != 4:
        raise ValueError(f"plot_filters: expected a weight of shape (F, C, KH, KW), got {weight.shape}")
    num_filters, in_channels, kh, kw = weight.shape
    rows, columns = _grid(num_filters)
    figure = _new_figure((max(3.0, 1.1 * columns), max(2.5, 1.1 * rows + 0.6)))
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for f, ax in enumerate(axes):
        ax.axis("off")
        if f >= num_filters:
            continue
        if in_channels == 3:
            ax.imshow(_unit_range(weight[f]).transpose(1, 2, 0), interpolation="nearest")  # (KH, KW, 3)
        else:
            ax.imshow(_unit_range(weight[f, 0]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(str(f), fontsize=7)
    figure.suptitle(f"First-layer filters: {label}, {num_filters} x {in_channels} x {kh} x {kw}")
    figure.tight_layout()
    return _save(figure, path)


# ---------------------------------------------------------------- feature maps
def first_conv_block(model) -> list[int]:
    """Indices of the first Conv2D and the element-wise layers (norm, activation) right after it."""
    start = _first_conv_index(model)
    indices = [start]
    for index in range(start + 1, len(model.layers)):
        if type(model.layers[index]).__name__ not in _ELEMENTWISE_LAYERS:
            break
        indices.append(index)
    return indices


def _as_display_image(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(H, W) grey or (H, W, 3) RGB array in [0, 1], and the colormap to use."""
    if image.shape[0] == 3:
        return np.clip(image.transpose(1, 2, 0), 0, 1), None  # (3, H, W) -> (H, W, 3)
    return image[0], "gray"


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

    rows, columns = _grid(len(maps))
    figure = _new_figure((2.5 + 1.1 * columns, max(3.0, 1.1 * rows + 0.6)))
    grid = figure.add_gridspec(rows, columns + 2)  # column 0-1: the input, then the maps
    image_ax = figure.add_subplot(grid[:, :2])
    display, cmap = _as_display_image(batch[0])
    image_ax.imshow(display, cmap=cmap, interpolation="nearest")
    image_ax.set_title(image_title)
    image_ax.axis("off")
    for channel, feature_map in enumerate(maps):
        ax = figure.add_subplot(grid[channel // columns, 2 + channel % columns])
        ax.imshow(_unit_range(feature_map), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(str(channel), fontsize=7)
        ax.axis("off")
    figure.suptitle(f"Feature maps after {names} ({span}): {out.shape[1]} x {out.shape[2]} x {out.shape[3]}")
    figure.tight_layout()
    return _save(figure, path)
