"""Execution plans: which steps a model's nodes run as, and why each fusion gives the same numbers.

A model does not run its layers one by one. It first turns its graph (a list
of nodes, each a layer and the values it reads: ``Sequential``'s chain, or a
``Model``'s DAG in topological order) into a plan, a list of steps
(``convnp/nn/steps.py``: small objects with their own forward and backward),
and the engine (``convnp/nn/engine.py``) runs ``for step in plan: x =
step.forward(x)`` and the steps' backward passes in reverse. Values are
numbered: 0 is the model's input, k the output of node k - 1; a step reads
``step.inputs`` and writes ``step.output``. Most steps are one layer
(``LayerStep``). The others are reorderings or fusions that give the values
and gradients of the layers run one by one (to rounding, or exactly) while
moving less memory:

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
- ``ConvReLUAvgPoolStep``: a ``Conv2D`` (as above), a ``ReLU`` and a 2x2 /
  stride 2 ``AvgPool2D`` (LeNet's block) run as one chunked pass: each
  chunk's convolution output is clipped in place, its mask kept, and pooled
  while in cache, the window sums in ``avg_pool2d``'s order, so the output
  and gradients are the three layers' exactly (``conv2d_relu_avg_pool2d`` in
  ``convnp/functional/conv_pool.py``). Average pooling does not commute with
  ReLU, so here the ReLU runs before the pooling, on the full-size output.
- ``BatchNormReLUStep``: a ``BatchNorm2D`` (or ``BatchNorm1D``) followed by a
  ``ReLU``, in training and inference, runs as one op
  (``convnp/functional/batch_norm.py``) that clips each chunk of the
  normalised output at 0 in place while it is in cache. The batch norm's
  arithmetic, statistics and exchanges across shards and ranks are those of the
  layer alone, and max(z, 0) is the same number wherever it is taken, so the
  output is the layers' exactly. Backward: ReLU's gradient is dout where its
  input z is positive, z > 0 exactly where out = max(z, 0) > 0, so the fused
  pass masks dout with out > 0 and runs batch norm's backward on the result.
- ``AddReLUStep``: an ``Add`` followed by a ``ReLU`` (the end of a residual
  block) computes out = max(a + b, 0) a chunk at a time, the additions in the
  same order as ``Add``, so the output is exact and the sum is never stored.
  d out / d a = d out / d b = 1 where a + b > 0, that is where out > 0, so
  both inputs get dout * (out > 0); an input also read elsewhere (the
  shortcut also feeds a convolution) gets the sum of its readers' gradients
  from the engine as always.
- ``ConvBatchNormStep``, in inference plans only (predict, evaluate): a
  ``Conv2D`` followed by a ``BatchNorm2D`` with running statistics is one
  convolution with folded weights (batch norm is then a per-channel affine map
  with constants: weight' = weight * scale, bias' = (bias - mean) * scale +
  beta, equal to rounding), and a ``ReLU`` after the batch norm clips the
  convolution's new output in place (exact).

Where two patterns overlap, the earlier node takes the ReLU: batch norm,
ReLU, max pooling is ``BatchNormReLUStep`` then the pooling (the ReLU costs
no pass of its own there). In inference plans a folded batch norm leaves a
ReLU that a max pooling reads to ``PoolThenReLU``, since clipping the
convolution's output would be a pass over four times as many values.

A fusion needs each fused value to feed nothing else (one reader, and not the
model's output): a batch norm whose output is also read by another branch
runs alone, and so does a convolution whose output a branch reads. What each
step keeps for its backward pass, and its layers in order, are in
``convnp/nn/steps.py``.
"""

from __future__ import annotations

from convnp.functional.geometry import normalize_padding
from convnp.nn.activations import ReLU
from convnp.nn.conv import Conv2D
from convnp.nn.layer import Layer
from convnp.nn.merge import Add
from convnp.nn.normalization import BatchNorm1D, BatchNorm2D
from convnp.nn.pooling import AvgPool2D, MaxPool2D
from convnp.nn.steps import (
    AddReLUStep,
    BatchNormReLUStep,
    ConvBatchNormStep,
    ConvPoolStep,
    ConvReLUAvgPoolStep,
    LayerStep,
    PoolThenReLU,
    Step,
)

__all__ = [
    "Plan",
    "build_plan",
    "Step",
    "LayerStep",
    "PoolThenReLU",
    "ConvPoolStep",
    "ConvReLUAvgPoolStep",
    "ConvBatchNormStep",
    "BatchNormReLUStep",
    "AddReLUStep",
]


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


# ---------------------------------------------------------------------- planning
def _plain_conv(layer: Layer) -> bool:
    """A Conv2D without a fused activation (its output is the convolution itself)."""
    return type(layer) is Conv2D and layer.activation is None


def _poolable_conv(layer: Layer) -> bool:
    """A plain Conv2D computed by im2col, the algorithm the fused convolution + pooling uses."""
    return _plain_conv(layer) and layer.algorithm == "im2col"


def _halving_pool(layer: Layer, kind: type = MaxPool2D) -> bool:
    """A built ``kind`` pooling whose 2x2 windows at stride 2 tile the input from its top-left corner.

    Padding after the input that no window reaches, or a ceil mode with
    nothing to round, changes nothing; padding before it, or a dilation, does.
    """
    if type(layer) is not kind or not layer.built or layer.kernel_size != (2, 2) or layer.stride != (2, 2):
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
    also folds each batch norm into the convolution before it, with the ReLU
    after it unless a max pooling takes that ReLU (``ConvBatchNormStep``).
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

    def _relu_alone(index: int | None) -> bool:
        """A ReLU node that no max pooling reads alone (that pooling would take it: ``PoolThenReLU``)."""
        if index is None or type(nodes[index][0]) is not ReLU:
            return False
        reader = only_reader(index)
        return reader is None or not isinstance(nodes[reader][0], MaxPool2D)

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
        elif (_poolable_conv(layer) and reader is not None and type(nodes[reader][0]) is ReLU
              and after is not None and _halving_pool(nodes[after][0], AvgPool2D)):  # fmt: skip
            step = ConvReLUAvgPoolStep(layer, nodes[reader][0], nodes[after][0])
            chain += [reader, after]
        elif inference and _plain_conv(layer) and reader is not None and _foldable_batch_norm(nodes[reader][0]):
            relu = after if _relu_alone(after) else None
            step = ConvBatchNormStep(layer, nodes[reader][0], None if relu is None else nodes[relu][0])
            chain += [reader] if relu is None else [reader, relu]
        elif type(layer) in (BatchNorm1D, BatchNorm2D) and reader is not None and type(nodes[reader][0]) is ReLU:
            step = BatchNormReLUStep(layer, nodes[reader][0])
            chain.append(reader)
        elif type(layer) is Add and reader is not None and type(nodes[reader][0]) is ReLU:
            step = AddReLUStep(layer, nodes[reader][0])
            chain.append(reader)
        else:
            step = LayerStep(layer)
        fused.update(chain)
        steps.append(step.wired(inputs, chain[-1] + 1))
    return Plan(steps, output)
