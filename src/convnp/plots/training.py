"""The plots of a training run: learning curves and the confusion matrix."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from convnp.plots.figure import new_figure, save_png

__all__ = ["plot_learning_curves", "plot_confusion_matrix", "confusion_counts"]


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
    figure = new_figure((10, 4))
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
    return save_png(figure, path)


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
    figure = new_figure((size, size))
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
    return save_png(figure, path)
