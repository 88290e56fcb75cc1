"""What every plot shares: matplotlib on demand, a figure on an Agg canvas, the PNG writer, small helpers.

matplotlib is optional (``pip install convnp[plots]``). It is imported when a
figure is made, and figures are drawn with the object-oriented API on an Agg
canvas (``matplotlib.figure.Figure`` + ``FigureCanvasAgg``): no window is ever
opened, and the global pyplot backend of the calling program is left alone.
Without matplotlib, making a figure raises ``ImportError`` with the install
command.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from convnp._optional import require
from convnp.files.atomic import atomic_write

__all__ = [
    "INSTALL_HINT",
    "ELEMENTWISE_LAYERS",
    "require_matplotlib",
    "new_figure",
    "save_png",
    "grid_shape",
    "unit_range",
    "as_display_image",
]

INSTALL_HINT = "pip install convnp[plots]"

# Layers that act element-wise or per channel and keep the map layout: a convolution's
# feature maps are shown after these when they follow it.
ELEMENTWISE_LAYERS = ("BatchNorm2D", "GroupNorm", "ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "Gaussian")


def require_matplotlib():
    """Import and return the ``matplotlib`` module, or raise ``ImportError`` naming the install command."""
    return require("matplotlib", "convnp.plots", "plots")


def new_figure(figsize: tuple[float, float]):
    """A Figure attached to an Agg canvas (no pyplot, no window)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure, path: str | os.PathLike) -> Path:
    """Render ``figure`` as a PNG at ``path``, atomically (folders are created)."""
    return atomic_write(path, lambda stream: figure.savefig(stream, format="png"))


def grid_shape(count: int) -> tuple[int, int]:
    """(rows, columns) of a near-square grid holding ``count`` cells."""
    columns = max(1, math.ceil(math.sqrt(count)))
    return math.ceil(count / columns), columns


def unit_range(array: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] (a constant array becomes 0.5)."""
    array = np.asarray(array, dtype=np.float64)
    low, high = array.min(), array.max()
    if high - low < 1e-12:
        return np.full_like(array, 0.5)
    return (array - low) / (high - low)


def as_display_image(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(H, W) grey or (H, W, 3) RGB array in [0, 1], and the colormap to use."""
    if image.shape[0] == 3:
        return np.clip(image.transpose(1, 2, 0), 0, 1), None  # (3, H, W) -> (H, W, 3)
    return image[0], "gray"
