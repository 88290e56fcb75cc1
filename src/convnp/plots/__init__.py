"""PNG plots of a training run and of one prediction: learning curves, confusion matrix, filters, maps, Grad-CAM.

matplotlib is optional (``pip install convnp[plots]``); without it every
function raises ``ImportError`` with the install command. Figures are drawn
on an Agg canvas: no window opens and the calling program's pyplot backend is
left alone (``figure.py``).

Each function writes one PNG file and returns its path::

    plot_learning_curves(history, "run/learning_curves.png")
    plot_confusion_matrix(y_test, predictions, "run/confusion_matrix.png")
    plot_filters(model, "run/filters.png")
    plot_feature_maps(model, x_test[0], "run/feature_maps.png")
    plot_explanation(model, image, "explain.png", top=3)   # Grad-CAM of the top classes, every conv block's maps

One module per kind of plot: ``training`` (learning curves, confusion
matrix), ``filters``, ``feature_maps``, ``explain`` (drawing) with
``gradcam`` (the computation: ``grad_cam(model, image)`` gives the heat
maps as arrays); ``figure`` holds what they share.
"""

from convnp.plots.explain import plot_explanation
from convnp.plots.feature_maps import first_conv_block, plot_feature_maps
from convnp.plots.figure import INSTALL_HINT, require_matplotlib
from convnp.plots.filters import plot_filters
from convnp.plots.gradcam import GradCAM, grad_cam, upsample_bilinear
from convnp.plots.training import confusion_counts, plot_confusion_matrix, plot_learning_curves

__all__ = [
    "INSTALL_HINT",
    "require_matplotlib",
    "plot_learning_curves",
    "plot_confusion_matrix",
    "plot_filters",
    "plot_feature_maps",
    "plot_explanation",
    "grad_cam",
    "GradCAM",
    "upsample_bilinear",
    "first_conv_block",
    "confusion_counts",
]
