"""Grad-CAM (Selvaraju et al. 2017): which part of an image drove the score of a class.

For a class c with score y_c (its logit: the input of the final softmax) and
the feature maps A of a convolution near the output,

    A: (K, h, w)                  the K maps, for one image
    alpha_k = 1/(h*w) * sum_ij dy_c/dA_kij      how much map k counts for class c
    L_c = ReLU(sum_k alpha_k * A_k)             (h, w): where the evidence for c lies

and L_c is divided by its maximum (a map of zeros stays zeros) and upsampled
to the image's size (bilinear) to be laid over it. With a global average
pooling and a linear layer after A, alpha_k is the class's weight on map k
divided by h*w, and Grad-CAM is the class activation map of Zhou et al. 2016.

Which maps: the output of the last convolution in ``model.layers`` (a
``Conv2D``, or a block that holds one, such as ``Residual``), followed through
the layers that alone read it and keep its size: batch norm and activations
(the paper takes the rectified last convolutional layer), and the ``Add`` of a
residual connection (a ResNet's maps are its last block's output, the sum that
the head reads, not the residual branch alone); or the layer given as ``layer``.

How: the image goes through the layers one at a time in inference mode,
every value kept (one image: a few arrays), then the gradient of y_c comes
back through the layers after the maps, each layer's ``backward``, adding the
gradients of a value read twice (``convnp/nn/engine.py``'s rule). The layers
run unfused, so each layer's cache is its own; the parameters' ``grad`` are
put back as they were. A graph ``Model``'s wiring comes from ``model.layer_inputs()``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from convnp.functional.activations import softmax_forward
from convnp.plots.figure import ELEMENTWISE_LAYERS

# Layers that pass maps on at their size besides the element-wise ones: the Add of a residual
# connection (a block's maps are the sum that leaves it), Identity, and Dropout (inference: identity).
_PASS_ON = ("Add", "Identity", "Dropout")

__all__ = ["GradCAM", "grad_cam", "target_layer", "conv_blocks", "layer_values", "result_value", "upsample_bilinear"]


class GradCAM(NamedTuple):
    """One class's Grad-CAM: its index and probability, the heat map, the maps' weights and the layer.

    ``heatmap`` (h, w) is L_c divided by its maximum; ``weights`` (K,) are the
    alpha_k; ``layer`` indexes ``model.layers``.
    """

    class_index: int
    probability: float
    heatmap: np.ndarray
    weights: np.ndarray
    layer: int


def _holds_conv(layer) -> bool:
    return any(type(part).__name__ == "Conv2D" for part in layer.self_and_sublayers())


def _chain(model, start: int, wiring: list[tuple[int, ...]], count: int, through: tuple[str, ...]) -> list[int]:
    """``start`` and the layers after it of the types ``through`` that keep its output's shape, each the only reader.

    Only the first ``count`` layers count (those before the logits).
    """
    readers: dict[int, list[int]] = {}
    for index, values in enumerate(wiring[:count]):
        for value in values:
            readers.setdefault(value, []).append(index)
    chain = [start]
    while len(readers.get(chain[-1] + 1, [])) == 1:
        (follower,) = readers[chain[-1] + 1]
        layer = model.layers[follower]
        if type(layer).__name__ not in through or layer.output_shape != model.layers[chain[-1]].output_shape:
            break
        chain.append(follower)
    return chain


def conv_blocks(model, stop: int | None = None) -> list[list[int]]:
    """The convolution blocks of ``model.layers[:stop]``, each as the indices of its layers.

    A block is a layer that is or holds a convolution and the element-wise
    layers (batch norm, activation) that follow it, each the only reader of
    the one before: its maps are the output of its last layer.
    """
    count = len(model.layers[:stop])
    wiring = model.layer_inputs()
    return [
        _chain(model, index, wiring, count, ELEMENTWISE_LAYERS)
        for index, layer in enumerate(model.layers[:count])
        if _holds_conv(layer) and len(layer.output_shape) == 3
    ]


def target_layer(model, layer: int | str | None = None, stop: int | None = None) -> int:
    """The index in ``model.layers`` whose output Grad-CAM explains (see the module docstring).

    ``layer``: None for the maps the last convolution leads to, or a layer's
    index or name (its output must be maps, (C, h, w)).
    """
    if layer is None:
        count = len(model.layers[:stop])
        convolutions = [i for i, each in enumerate(model.layers[:count]) if _holds_conv(each)]
        convolutions = [i for i in convolutions if len(model.layers[i].output_shape) == 3]
        if not convolutions:
            raise ValueError("grad_cam: the model has no convolution before its output; pass layer= (maps (C, h, w))")
        return _chain(model, convolutions[-1], model.layer_inputs(), count, ELEMENTWISE_LAYERS + _PASS_ON)[-1]
    if isinstance(layer, str):
        names = [each.name for each in model.layers]
        if layer not in names:
            raise ValueError(f"grad_cam: no layer named {layer!r}; named layers: {[n for n in names if n]}")
        index = names.index(layer)
    else:
        index, count = int(layer), len(model.layers)
        if not -count <= index < count:
            raise ValueError(f"grad_cam: layer {layer} is out of range for {count} layers")
        index %= count
    shape = model.layers[index].output_shape
    if len(shape) != 3:
        raise ValueError(f"grad_cam: {model.layers[index].label} outputs {shape}, not maps (C, h, w)")
    return index


def layer_values(model, image, stop: int | None = None) -> list[np.ndarray]:
    """Every value of one image's inference pass through ``model.layers[:stop]``: [input, out_0, out_1, ...].

    Each layer runs on its own (no fusions), so its cache serves its backward.
    The result of the pass (the value the first left-out layer reads, or the
    last output) is ``values[result_value(model, stop)]``.

    Shape:
        image: (C, H, W) (or (H, W) for a one-channel model); values: (1, ...) each
    """
    values = [model.prepare_input(np.asarray(image)[None])]  # (1, C, H, W)
    layers = model.layers if stop is None else model.layers[:stop]
    for layer, reads in zip(layers, model.layer_inputs()):
        inputs = [values[value] for value in reads]
        values.append(layer.forward(inputs if layer.multi_input else inputs[0], training=False))
    return values


def result_value(model, stop: int | None) -> int:
    """The number of the value a pass through ``model.layers[:stop]`` ends with (as ``forward_layers``)."""
    if stop is None or stop % len(model.layers) == 0:
        return len(model.layers)
    return model.layer_inputs()[stop % len(model.layers)][0]


def _score_gradient(model, values: list[np.ndarray], logits: int, class_index: int, target: int) -> np.ndarray:
    """d y_c / d (output of layer ``target``), y_c = ``values[logits]``[0, c], for the pass that gave ``values``."""
    wiring = model.layer_inputs()
    grads = {logits: np.zeros_like(values[logits])}
    grads[logits][0, class_index] = 1
    for index in range(len(values) - 2, target, -1):  # the layers after the target, last first
        layer = model.layers[index]
        if index + 1 not in grads:
            continue  # its output does not reach the score
        input_grads = layer.backward(grads.pop(index + 1))
        for value, grad in zip(wiring[index], input_grads if layer.multi_input else [input_grads]):
            grads[value] = grad if value not in grads else grads[value] + grad  # a value read twice: add
    return grads.get(target + 1, np.zeros_like(values[target + 1]))  # zeros: the maps do not reach the score


def grad_cam(model, image, classes=None, top: int = 3, layer: int | str | None = None) -> list[GradCAM]:
    """Grad-CAM heat maps of one image for ``classes`` (default: the ``top`` most probable), best first.

    Parameters
    ----------
    model : Sequential or Model
        A built model; its logits are the input of a final softmax, if any.
    image : array_like
        One image, (C, H, W), or (H, W) for a one-channel model.
    classes : sequence of int, optional
        The classes to explain; default the ``top`` most probable.
    layer : int or str, optional
        The layer whose output maps are explained (index or name); default
        the last convolution block (module docstring).

    Returns
    -------
    list of GradCAM
        (class_index, probability, heatmap (h, w) in [0, 1], weights alpha (K,), layer index).
    """
    saved_grads = [(param, param.grad) for param in model.parameters()]
    try:
        with model.logits_view(True) as stop:
            target = target_layer(model, layer, stop)
            logits = result_value(model, stop)
            if target >= logits:
                raise ValueError(f"grad_cam: {model.layers[target].label} does not come before the logits")
            probabilities = softmax_forward(layer_values(model, image, stop)[logits])[0][0]
            if classes is None:
                classes = np.argsort(-probabilities, kind="stable")[: max(1, int(top))]
            results = []
            for class_index in (int(c) for c in classes):
                if not 0 <= class_index < len(probabilities):
                    raise ValueError(f"grad_cam: class {class_index} is not one of the {len(probabilities)} outputs")
                values = layer_values(model, image, stop)  # fresh caches for this backward pass
                maps = values[target + 1][0]  # (K, h, w)
                gradient = _score_gradient(model, values, logits, class_index, target)[0]  # (K, h, w)
                weights = gradient.mean(axis=(1, 2))  # alpha: (K,)
                heatmap = np.maximum(np.tensordot(weights, maps, axes=1), 0)  # (h, w)
                peak = heatmap.max()
                heatmap = heatmap / peak if peak > 0 else heatmap
                results.append(GradCAM(class_index, float(probabilities[class_index]), heatmap, weights, target))
    finally:
        for param, grad in saved_grads:
            param.grad = grad
    return results


def upsample_bilinear(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (h, w) map to ``size`` = (H, W) by bilinear interpolation (pixel centres aligned, edges held).

    Output pixel i samples the map at (i + 0.5) * h / H - 0.5, as PyTorch's
    ``interpolate(mode="bilinear", align_corners=False)``.
    """
    heatmap = np.asarray(heatmap, dtype=np.float64)
    (h, w), (height, width) = heatmap.shape, size
    rows = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    cols = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    top, left = np.floor(rows).astype(int), np.floor(cols).astype(int)
    bottom, right = np.minimum(top + 1, h - 1), np.minimum(left + 1, w - 1)
    dy, dx = (rows - top)[:, None], (cols - left)[None, :]
    upper = heatmap[top][:, left] * (1 - dx) + heatmap[top][:, right] * dx  # (H, W)
    lower = heatmap[bottom][:, left] * (1 - dx) + heatmap[bottom][:, right] * dx
    return upper * (1 - dy) + lower * dy
