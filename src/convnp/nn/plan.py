"""Execution plans: the steps a model's layers run as, each a small object with its own forward and backward.

A model does not run its layers one by one. It first turns its graph (a list
of nodes, each a layer and the values it reads: ``Sequential``'s chain, or a
``Model``'s DAG in topological order) into a plan, a list of steps, and the
engine (``convnp/nn/engine.py``) runs ``for step in plan: x = step.forward(x)``
and the steps' backward passes in reverse. Values are numbered: 0 is the
model's input, k the output of node k - 1; a step reads ``step.inputs`` and
writes ``step.output``. Most steps are one layer (``LayerStep``). Two are reorderings or
fusions that give exactly the same values and gradients while moving less
memory:

- ``PoolThenReLU``: a ``ReLU`` directly followed by a ``MaxPool2D`` runs as
  pooling first, then ReLU on the pooled output (a quarter of the values for
  2x2 pooling). max(relu(z)) = relu(max(z)) since ReLU never decreases and is
  the identity on positive values, so where a window's maximum is positive
  both orders choose the same input (ties included), and where it is not,
  ReLU's zero gradient stops the gradient either way.
- ``ConvPoolStep``: a ``Conv2D`` (without a fused activation, computed by
  im2col) followed by 2x2 / stride 2 max pooling, with or without a ReLU in
  between, runs as one chunked pass in which the full-size convolution output
  never exists (``convnp/functional/conv_pool.py``); a ReLU runs after the
  pooling, as above. A convolution set to ``algorithm="winograd"`` keeps its
  own algorithm and is not fused.

A fusion needs each fused value to feed nothing else (one consumer, and not
the model's output), so a branch that reads a convolution's output keeps the
convolution a step of its own.

A step holds no state of its own: what its backward pass needs stays in its
layers' ``cache`` (a fused step keeps the fused op's cache in its first layer
and the ReLU's in the ReLU), so a plan can be built again at any time and
runs the same. ``shard_copy`` gives a twin over the layers' ``shard_copy``s, so that
shards of one batch run the same plan at the same time
(``convnp/nn/shards.py``). ``step.layers`` lists a step's layers in the order
they compute: (pool, relu) for ``PoolThenReLU``, (conv, pool) or
(conv, pool, relu) for ``ConvPoolStep``.
"""

from __future__ import annotations

import math

import numpy as np

from convnp.functional.activations import relu_backward, relu_forward
from convnp.functional.conv_pool import conv2d_max_pool2d_backward, conv2d_max_pool2d_forward
from convnp.functional.geometry import normalize_padding
from convnp.nn.activations import ReLU
from convnp.nn.conv import CONV_ALGORITHMS, Conv2D
from convnp.nn.layer import Layer
from convnp.nn.normalization import BatchNorm2D
from convnp.nn.pooling import MaxPool2D

__all__ = ["Step", "Plan", "LayerStep", "PoolThenReLU", "ConvPoolStep", "ConvBatchNormStep", "build_plan"]


class Step:
    """One step of a plan: ``forward(x, training)``, then ``backward(grad, input_grad)`` in reverse.

    ``inputs`` are the numbers of the values it reads (one, or several for a
    merge layer), ``output`` the number of the value it writes.
    """

    layers: tuple[Layer, ...] = ()
    inputs: tuple[int, ...] = (0,)
    output: int = 1

    def forward(self, x, training: bool):
        raise NotImplementedError

    def backward(self, grad: np.ndarray, input_grad: bool = True):
        """Back-propagate ``grad``, filling the parameter gradients; dx (a list for several inputs), or None."""
        raise NotImplementedError

    def wired(self, inputs: tuple[int, ...], output: int) -> Step:
        self.inputs, self.output = tuple(inputs), output
        return self

    def shard_copy(self) -> Step:
        """A twin that runs another shard of the batch: same weights, its own caches and gradients."""
        return type(self)(*(layer.shard_copy() for layer in self.layers)).wired(self.inputs, self.output)

    def drop_caches(self) -> None:
        """Forget what the last forward pass kept in the step's layers."""
        for layer in self.layers:
            for part in layer.self_and_sublayers():
                part.cache = None

    def output_size(self) -> int:
        """Values per sample that the step's layers compute (the work a pass does grows with it)."""
        return sum(math.prod(layer.output_shape) for layer in self.layers)

    def __repr__(self) -> str:
        return " -> ".join(layer.short_repr() for layer in self.layers)


class Plan:
    """The steps of a pass in order, and the number of the value that is its result."""

    def __init__(self, steps: list[Step], output: int) -> None:
        self.steps = steps
        self.output = output

    def __iter__(self):
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index):
        return self.steps[index]

    def shard_copy(self) -> Plan:
        return Plan([step.shard_copy() for step in self.steps], self.output)

    def uses(self) -> dict[int, int]:
        """How many steps read each value (the result counts as one more reader)."""
        counts = {self.output: 1}
        for step in self.steps:
            for value in step.inputs:
                counts[value] = counts.get(value, 0) + 1
        return counts


class LayerStep(Step):
    """A layer run on its own."""

    def __init__(self, layer: Layer) -> None:
        self.layer = layer
        self.layers = (layer,)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        return self.layer.forward(x, training=training)

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if input_grad:
            return self.layer.backward(grad)
        self.layer.backward_params(grad)  # the first layer: nothing needs its dx
        return None


class _ReLUAfter(Step):
    """A step whose last part is a ReLU applied to its pooled output (any shape: ReLU is elementwise)."""

    relu: ReLU | None = None

    def relu_forward(self, out: np.ndarray) -> np.ndarray:
        if self.relu is None:
            return out
        out, self.relu.cache = relu_forward(out)
        return out

    def relu_backward(self, grad: np.ndarray) -> np.ndarray:
        if self.relu is None:
            return grad
        return relu_backward(self.relu.check_grad(grad), self.relu.cache)


class PoolThenReLU(_ReLUAfter):
    """``ReLU`` then ``MaxPool2D``, run as pool then ReLU (equal values and gradients; see the module text)."""

    def __init__(self, pool: MaxPool2D, relu: ReLU) -> None:
        self.pool, self.relu = pool, relu
        self.layers = (pool, relu)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        return self.relu_forward(self.pool.forward(x, training=training))

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        grad = self.relu_backward(grad)
        if input_grad:
            return self.pool.backward(grad)
        self.pool.backward_params(grad)
        return None


class ConvPoolStep(_ReLUAfter):
    """``Conv2D`` then 2x2 / stride 2 ``MaxPool2D`` (and a ReLU before or after it) in one chunked pass.

    Shape: (N, C, H, W) -> (N, F, H_conv // 2, W_conv // 2)
    """

    def __init__(self, conv: Conv2D, pool: MaxPool2D, relu: ReLU | None = None) -> None:
        self.conv, self.pool, self.relu = conv, pool, relu
        self.layers = (conv, pool) if relu is None else (conv, pool, relu)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        conv = self.conv
        x = conv.check_input(x)
        bias = None if conv.bias is None else conv.bias.data
        out, conv.cache = conv2d_max_pool2d_forward(  # the fused op's cache, kept by the convolution
            x, conv.weight.data, bias, conv.stride, conv.padding, conv.dilation, conv.groups
        )
        return self.relu_forward(out)

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        grad = self.conv.check_grad(self.relu_backward(grad))
        dx, dweight, dbias = conv2d_max_pool2d_backward(grad, self.conv.cache, input_grad)
        self.conv.weight.grad = dweight
        if self.conv.bias is not None:
            self.conv.bias.grad = dbias
        return dx


class ConvBatchNormStep(Step):
    """Inference only: a ``Conv2D`` and the ``BatchNorm2D`` after it, as one convolution with folded weights.

    In inference batch norm is an affine map per channel with constants, so it
    folds into the convolution before it:

        scale[f] = bn.weight[f] / sqrt(running_var[f] + eps)
        weight'[f] = conv.weight[f] * scale[f]
        bias'[f] = (conv.bias[f] - running_mean[f]) * scale[f] + bn.bias[f]

    Equal to the two layers in inference mode up to rounding; one pass over the
    feature map instead of two. Plans for training never contain it.
    """

    def __init__(self, conv: Conv2D, batch_norm: BatchNorm2D) -> None:
        self.conv, self.batch_norm = conv, batch_norm
        self.layers = (conv, batch_norm)

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """The folded (weight, bias) in the convolution's dtype."""
        conv, bn = self.conv, self.batch_norm
        dtype = conv.dtype
        scale = 1 / np.sqrt(bn.running_var.astype(dtype) + dtype.type(bn.eps))  # (F,)
        if bn.weight is not None:
            scale = scale * bn.weight.data
        shift = -bn.running_mean.astype(dtype) if conv.bias is None else conv.bias.data - bn.running_mean
        bias = shift * scale if bn.bias is None else shift * scale + bn.bias.data
        weight = conv.weight.data * scale[:, None, None, None]
        return weight.astype(dtype, copy=False), bias.astype(dtype, copy=False)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        if training:
            raise RuntimeError(f"{self!r}: the folded step is for inference only")
        conv = self.conv
        weight, bias = self.folded()
        convolution_forward, _ = CONV_ALGORITHMS[conv.algorithm]
        out, _ = convolution_forward(
            conv.check_input(x), weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups
        )
        return out

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        raise RuntimeError(f"{self!r}: the folded step is for inference only; it has no backward pass")


# ---------------------------------------------------------------------- planning
def _plain_conv(layer: Layer) -> bool:
    """A Conv2D without a fused activation (its output is the convolution itself)."""
    return type(layer) is Conv2D and layer.activation is None


def _poolable_conv(layer: Layer) -> bool:
    """A plain Conv2D computed by im2col, the algorithm the fused convolution + pooling uses."""
    return _plain_conv(layer) and layer.algorithm == "im2col"


def _halving_pool(layer: Layer) -> bool:
    """A built MaxPool2D whose 2x2 windows at stride 2 tile the input from its top-left corner.

    Padding after the input that no window reaches, or a ceil mode with
    nothing to round, changes nothing; padding before it, or a dilation, does.
    """
    if type(layer) is not MaxPool2D or not layer.built or layer.kernel_size != (2, 2) or layer.stride != (2, 2):
        return False
    height, width = layer.input_shape[1:]
    top, _, left, _ = normalize_padding(layer.padding, (2, 2), (2, 2), (1, 1), (height, width))
    return layer.dilation == (1, 1) and top == left == 0 and tuple(layer.output_shape[1:]) == (height // 2, width // 2)


def _foldable_batch_norm(layer: Layer) -> bool:
    """A built BatchNorm2D with running statistics (what inference normalises with)."""
    return type(layer) is BatchNorm2D and layer.running_mean is not None and layer.running_var is not None


def build_plan(nodes: list[tuple[Layer, tuple[int, ...]]], output: int | None = None, inference: bool = False) -> Plan:
    """The steps that compute ``nodes`` (layer, input values) in order, with the module text's fusions.

    Node k writes value k + 1. ``output`` is the value the plan returns (by
    default the last node's). An ``inference`` plan (no backward pass follows)
    also folds each batch norm into the convolution before it (``ConvBatchNormStep``).
    """
    output = len(nodes) if output is None else output
    readers: dict[int, list[int]] = {}
    for index, (_, inputs) in enumerate(nodes):
        for value in inputs:
            readers.setdefault(value, []).append(index)

    def only_reader(index: int) -> int | None:
        """The one node that reads node ``index``'s output, if it has exactly one and it is not the result."""
        value = index + 1
        found = readers.get(value, [])
        if value == output or len(found) != 1 or nodes[found[0]][1] != (value,):
            return None
        return found[0]

    steps: list[Step] = []
    fused: set[int] = set()
    for index, (layer, inputs) in enumerate(nodes):
        if index in fused:
            continue
        chain = [index]
        reader = only_reader(index)
        after = only_reader(reader) if reader is not None else None
        if type(layer) is ReLU and reader is not None and isinstance(nodes[reader][0], MaxPool2D):
            step: Step = PoolThenReLU(nodes[reader][0], layer)
            chain.append(reader)
        elif _poolable_conv(layer) and reader is not None and _halving_pool(nodes[reader][0]):
            step = ConvPoolStep(layer, nodes[reader][0])
            chain.append(reader)
        elif (_poolable_conv(layer) and reader is not None and type(nodes[reader][0]) is ReLU
              and after is not None and _halving_pool(nodes[after][0])):  # fmt: skip
            step = ConvPoolStep(layer, nodes[after][0], nodes[reader][0])
            chain += [reader, after]
        elif inference and _plain_conv(layer) and reader is not None and _foldable_batch_norm(nodes[reader][0]):
            step = ConvBatchNormStep(layer, nodes[reader][0])
            chain.append(reader)
        else:
            step = LayerStep(layer)
        fused.update(chain)
        steps.append(step.wired(inputs, chain[-1] + 1))
    return Plan(steps, output)
