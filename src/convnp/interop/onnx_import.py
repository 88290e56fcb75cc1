"""Read an ONNX graph into a trainable convnp ``Model``: ``from_onnx(path_or_model)``.

The graph is read node by node, in its (topological) order. Each node becomes
the convnp layer that computes the same thing (the converters in
onnx_ops.py), called on the graph nodes of its inputs as in Keras's
functional API; the result is ``Model(Input(shape), output)``, built on
convnp's one engine, so it predicts, trains, saves and loads like any model.

    initializers and Constant nodes   constants: a layer's weights, a Reshape's shape, ...
    a node reading constants only     a constant, computed by ONNX's reference implementation
    the one graph input               Input(per-sample shape); the batch axis may be symbolic
    the one graph output              the model's output

Initializers become parameters (and BatchNormalization's mean and variance
its running statistics). A layer with weights is named after its weight: an
initializer "conv1.weight" names the layer "conv1", so the model's state_dict
keys are ONNX's names ("conv1.weight", "bn1.running_mean"); a weight named
otherwise ("W", "onnx::Conv_12") names the layer as it is ("W.weight").
Layers without weights are unnamed.

Anything convnp cannot express raises ``OnnxImportError`` naming the node
and its op: an op outside ``SUPPORTED_OPS``, an option the layer lacks (a 3-D
convolution, a softmax over the flattened axes of opset < 13, ...), or a
value computed from the batch size (``Shape``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from convnp._optional import require
from convnp.interop.onnx_ops import CONVERTERS, SUPPORTED_OPS
from convnp.nn import Input, Model, Node
from convnp.nn.init import shapes_only

__all__ = ["from_onnx", "OnnxImportError", "MIN_IMPORT_OPSET", "MAX_IMPORT_OPSET", "SUPPORTED_OPS"]

MIN_IMPORT_OPSET = 11
MAX_IMPORT_OPSET = 21
MAX_COMPUTED_CONSTANT = 1 << 24  # values a computed constant may hold however small the file
# Ops whose output holds no more values than their inputs: folded even where shape inference
# cannot tell their output's shape.
SIZE_BOUNDED_OPS = frozenset(
    {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Cast", "CastLike", "Concat", "Slice",
     "Shape", "Size", "Split", "Neg", "Abs", "Sqrt", "Reciprocal", "Exp", "Log", "Floor", "Ceil", "Round", "Sign",
     "Not", "Relu", "Sigmoid", "Tanh"}
)  # fmt: skip
# Ops whose reference implementation does more than a few operations per value it writes: folded
# only when their multiply-adds are bounded like a constant's values (``_fold_work``). Conv's
# reference implementation also builds an im2col matrix of exactly that many values.
CONV_OPS = frozenset({"Conv", "ConvInteger", "QLinearConv", "ConvTranspose"})
POOL_OPS = frozenset({"MaxPool", "AveragePool", "LpPool"})
MATMUL_OPS = frozenset({"MatMul", "MatMulInteger", "QLinearMatMul", "Gemm"})
PRODUCT_OPS = CONV_OPS | POOL_OPS | MATMUL_OPS
# Ops whose work cannot be told from their shapes alone (recurrences, contractions over any axes,
# box searches, transforms): never folded, even on constants.
UNBOUNDED_OPS = frozenset(
    {"Einsum", "LSTM", "GRU", "RNN", "NonMaxSuppression", "Det", "RoiAlign", "MaxRoiPool", "DeformConv", "Col2Im",
     "DFT", "STFT", "GridSample", "TfIdfVectorizer", "StringNormalizer", "RegexFullMatch", "StringSplit"}
)  # fmt: skip


class OnnxImportError(ValueError):
    """An ONNX graph that ``from_onnx`` cannot read into a convnp model; the message names the node and op."""


def _attributes(onnx, node) -> dict:
    """A node's attributes as Python values (strings decoded)."""
    values = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


def _describe(node) -> str:
    return f"node {node.name!r} ({node.op_type})" if node.name else f"a {node.op_type} node writing {node.output[0]!r}"


class GraphReader:
    """The converters' view of the graph: computed values, constants, shapes, weights, names.

    ``values`` maps an ONNX tensor name to the graph node of the convnp layer
    that computes it; ``constants`` maps it to an array. ``state`` collects
    the weights as state_dict entries, loaded into the model once it is built.
    """

    def __init__(self, onnx, graph, opset: int, batch_size: int | None) -> None:
        self.onnx = onnx
        self.opset = opset
        self.batch_size = batch_size
        self.values: dict[str, Node] = {}
        self.constants: dict[str, np.ndarray] = {}
        for tensor in graph.initializer:
            try:
                self.constants[tensor.name] = onnx.numpy_helper.to_array(tensor)
            except (ValueError, TypeError) as error:  # its data does not fill its declared shape, ...
                raise OnnxImportError(f"from_onnx: initializer {tensor.name!r} cannot be read ({error})") from error
        # A constant computed from others may hold no more values than the file holds itself
        # (or 2**24): a crafted ConstantOfShape, Expand or Range cannot make the reader allocate more.
        self.max_constant_values = max(MAX_COMPUTED_CONSTANT, sum(array.size for array in self.constants.values()))
        self.state: dict[str, np.ndarray] = {}
        self.readers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)
        self.outputs = {output.name for output in graph.output}
        self.folded: dict[int, object] = {}  # id of a node folded into an earlier one -> that node
        self._names: set[str] = set()
        # Every constant is known before any node is read: a converter that reads a chain of
        # nodes (onnx_group_norm.py) may need a constant computed after the chain's first node.
        self.constant_outputs: set[str] = set()  # the outputs of nodes evaluated here
        for node in graph.node:
            if self._is_constant_node(node):
                try:
                    self._fold(node)
                except ValueError as error:
                    raise OnnxImportError(f"from_onnx: {_describe(node)}: {error}") from error
                self.constant_outputs.update(name for name in node.output if name)

    def is_constant(self, name: str) -> bool:
        return name in self.constants

    def constant(self, name: str, what: str) -> np.ndarray:
        """The array behind ``name``: an initializer or a Constant node's value."""
        if name not in self.constants:
            raise ValueError(f"{what} ({name!r}) must be a constant (an initializer), not a computed value")
        return self.constants[name]

    def tensor(self, name: str) -> Node:
        """The graph node computing ``name``."""
        if name in self.constants:
            raise ValueError(f"input {name!r} is a constant where a computed value is expected")
        if name not in self.values:
            raise ValueError(f"input {name!r} is not computed before it (the graph is not in topological order)")
        return self.values[name]

    def only_reader(self, name: str):
        """The one node reading ``name``, when exactly one does and ``name`` is not a graph output."""
        found = self.readers.get(name, [])
        return found[0] if len(found) == 1 and name not in self.outputs else None

    def constant_operand(self, name: str, op_type: str):
        """``(node, constant name)`` when the one node reading ``name`` is a binary ``op_type`` whose
        other input is a constant (a MatMul's bias Add, a group norm's Mul and Add); else ``(None, None)``."""
        node = self.only_reader(name)
        if node is None or node.op_type != op_type or len(node.input) != 2 or name not in node.input:
            return None, None
        other = node.input[1] if node.input[0] == name else node.input[0]
        return (node, other) if self.is_constant(other) else (None, None)

    def fold_into(self, later, node) -> None:
        """``later`` (reading ``node``'s output) is computed by ``node``'s layer too: its output is that layer's."""
        self.folded[id(later)] = node

    def layer_name(self, weight_name: str) -> str:
        """A unique layer name from a weight's name: "conv1.weight" -> "conv1", "W" -> "W"."""
        base = weight_name[: -len(".weight")] if weight_name.endswith(".weight") else weight_name
        name, suffix = base, 1
        while name in self._names:
            suffix += 1
            name = f"{base}_{suffix}"
        self._names.add(name)
        return name

    def add_state(self, layer_name: str, key: str, array: np.ndarray) -> None:
        self.state[f"{layer_name}.{key}"] = np.asarray(array)

    def read(self, node) -> None:
        """Turn one ONNX node into its convnp layer (or a constant), recording its output."""
        onnx = self.onnx
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"operators of domain {node.domain!r} are not supported")
        if id(node) in self.folded:
            self.values[node.output[0]] = self.values[self.folded[id(node)].output[0]]
            return
        if node.output and all(name in self.constant_outputs for name in node.output if name):
            return  # a node of constants, evaluated when the reader was made
        converter = CONVERTERS.get(node.op_type)
        if converter is None:
            raise ValueError(f"the op is not supported (supported: {', '.join(SUPPORTED_OPS)})")
        self.values[node.output[0]] = converter(self, node, _attributes(onnx, node))

    def _is_constant_node(self, node) -> bool:
        """A Constant node, or a node that reads constants only (a Reshape's shape put together by
        Concat, an Unsqueeze or Identity of a weight), in the default domain."""
        has_subgraph = any(attribute.g.node or attribute.graphs for attribute in node.attribute)
        if node.domain not in ("", "ai.onnx") or has_subgraph or node.op_type in UNBOUNDED_OPS:
            return False  # another domain, a Loop, If or Scan whose subgraph could run for ever, an LSTM, ...
        inputs = [name for name in node.input if name]
        return node.op_type == "Constant" or (bool(inputs) and all(name in self.constants for name in inputs))

    def _fold(self, node) -> None:
        """A node of constants only: its outputs are constants too, computed by ONNX's reference
        implementation (run as a one-node model of the graph's opset, so that each op is the
        version the graph means) once ONNX's shape inference has bounded their size."""
        from onnx.reference import ReferenceEvaluator

        onnx, helper = self.onnx, self.onnx.helper
        names = [name for name in node.input if name]
        initializers = [onnx.numpy_helper.from_array(np.asarray(self.constants[name]), name) for name in names]
        outputs = [helper.make_empty_tensor_value_info(name) for name in node.output if name]
        one_node = helper.make_model(
            helper.make_graph([node], "constant", [], outputs, initializer=initializers),
            opset_imports=[helper.make_opsetid("", self.opset)],
        )
        self._check_folded_size(node, one_node)
        try:
            results = ReferenceEvaluator(one_node).run(None, {})
        except Exception as error:  # whatever the reference implementation raises for a node it cannot run
            raise ValueError(f"its constant inputs could not be evaluated ({error})") from error
        for name, value in zip([name for name in node.output if name], results):
            self.constants[name] = np.asarray(value)

    def _check_folded_size(self, node, one_node) -> None:
        """Refuse a constant node whose outputs would hold more than ``max_constant_values`` values,
        from the shapes ONNX's shape inference gives them (with the inputs' values known)."""
        try:
            inferred = self.onnx.shape_inference.infer_shapes(one_node, data_prop=True).graph.output
        except Exception as error:  # the checker's own errors (InferenceError, ValidationError, ...)
            raise ValueError(f"its output shapes could not be inferred ({error})") from error
        for value in inferred:
            tensor = value.type.tensor_type
            known = tensor.HasField("shape") and all(dim.HasField("dim_value") for dim in tensor.shape.dim)
            if not known:
                if node.op_type in SIZE_BOUNDED_OPS:
                    continue  # no more values out than in
                raise ValueError(f"the size of its output {value.name!r} cannot be known before it is computed")
            count = math.prod(dim.dim_value for dim in tensor.shape.dim)
            if count > self.max_constant_values:
                raise ValueError(
                    f"its output {value.name!r} would hold {count:,} values, more than the "
                    f"{self.max_constant_values:,} a constant of this file may hold"
                )
            if node.op_type in PRODUCT_OPS:
                work = self._fold_work(node, count)
                if work > self.max_constant_values:
                    raise ValueError(
                        f"computing it would take {work:,} multiply-adds, more than the "
                        f"{self.max_constant_values:,} a constant of this file may take"
                    )

    def _fold_work(self, node, output_values: int) -> int:
        """Multiply-adds of a ``PRODUCT_OPS`` node of constants writing ``output_values`` values (a bound).

        A convolution's output value sums C/groups x kernel products (the weight's
        axis 1 times its kernel, dilated as the reference implementation dilates
        it); a transposed convolution's input value is spread over C_out/groups x
        kernel outputs; a matrix product's output value sums over A's last axis
        (Gemm: A's columns, or rows with transA); a pooling's output value reads
        its window.
        """
        inputs = [self.constants[name] for name in node.input if name]
        ints = {attribute.name: list(attribute.ints) for attribute in node.attribute if attribute.ints}
        if node.op_type in CONV_OPS | POOL_OPS:
            if node.op_type in POOL_OPS:
                channels, kernel = 1, ints.get("kernel_shape", [])
            else:
                weight = inputs[3 if node.op_type == "QLinearConv" else 1]
                channels, kernel = (weight.shape[1] if weight.ndim > 1 else 1), list(weight.shape[2:])
            # The reference implementation spreads a dilated kernel out: (k - 1) * d + 1 taps per axis.
            dilations = ints.get("dilations", [1] * len(kernel))
            taps = channels * math.prod((k - 1) * d + 1 for k, d in zip(kernel, dilations))
            if node.op_type == "ConvTranspose":  # an input value meets C_out/groups x kernel weights
                return inputs[0].size * taps
            return output_values * taps
        if node.op_type == "Gemm":
            transposed = any(attribute.name == "transA" and attribute.i for attribute in node.attribute)
            return output_values * inputs[0].shape[0 if transposed else -1]
        return output_values * (inputs[0].shape[-1] if inputs[0].ndim else 1)  # MatMul: A's last axis


def _load(onnx, path_or_model):
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    if isinstance(path_or_model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(path_or_model))
    if isinstance(path_or_model, (str, os.PathLike)):
        path = Path(path_or_model)
        if not path.is_file():
            raise FileNotFoundError(f"from_onnx: no such file: {path}")
        try:
            return onnx.load(str(path))
        except Exception as error:  # protobuf's DecodeError and friends
            raise OnnxImportError(f"from_onnx: {path} is not a readable ONNX model ({error})") from error
    raise TypeError(f"from_onnx: expected a path, bytes or an onnx.ModelProto, got {type(path_or_model).__name__}")


def _opset(model_proto) -> int:
    versions = [entry.version for entry in model_proto.opset_import if entry.domain in ("", "ai.onnx")]
    if not versions:
        raise OnnxImportError("from_onnx: the model imports no version of the default ONNX domain")
    opset = int(versions[0])
    if not MIN_IMPORT_OPSET <= opset <= MAX_IMPORT_OPSET:
        raise OnnxImportError(
            f"from_onnx: the model uses opset {opset}; opsets {MIN_IMPORT_OPSET} to {MAX_IMPORT_OPSET} are supported "
            "(onnx.version_converter.convert_version can move a model between opsets)"
        )
    return opset


def _graph_input(graph, constants, input_shape):
    """The one input that is not an initializer: its name, per-sample shape and fixed batch size (or None)."""
    inputs = [value for value in graph.input if value.name not in constants]
    if len(inputs) != 1:
        raise OnnxImportError(f"from_onnx: expected one graph input, got {[value.name for value in inputs]}")
    value = inputs[0]
    dims = [dim.dim_value if dim.HasField("dim_value") else None for dim in value.type.tensor_type.shape.dim]
    if input_shape is not None:
        shape = tuple(int(d) for d in input_shape)
        if dims and (len(dims) != len(shape) + 1 or any(d not in (None, s) for d, s in zip(dims[1:], shape))):
            raise OnnxImportError(f"from_onnx: input_shape {shape} does not fit the graph input's shape {dims}")
    elif len(dims) < 2 or any(d is None for d in dims[1:]):
        raise OnnxImportError(
            f"from_onnx: the graph input {value.name!r} has shape {dims} with unknown per-sample sizes; "
            "pass input_shape=(C, H, W)"
        )
    else:
        shape = tuple(dims[1:])
    return value.name, shape, (dims[0] if dims else None)


def from_onnx(path_or_model, input_shape: tuple[int, ...] | None = None) -> Model:
    """Read an ONNX graph of 2-D CNN ops into a trainable convnp ``Model``.

    Parameters
    ----------
    path_or_model : str, os.PathLike, bytes or onnx.ModelProto
        The ``.onnx`` file, its bytes, or a loaded model (opsets 11 to 21).
    input_shape : tuple of int, optional
        The per-sample input shape, e.g. (3, 32, 32); needed only when the
        graph's input leaves those sizes symbolic (its batch size may be).

    Returns
    -------
    convnp.nn.Model
        float32, in inference mode until trained: ``predict`` equals what ONNX
        Runtime computes (up to float32 rounding; a graph ending in Softmax
        gives the probabilities, any other the softmax of its output, as
        ``predict`` always does), ``fit`` trains every weight, ``save`` writes a
        convnp model file. state_dict keys keep ONNX's initializer names.

    Raises
    ------
    OnnxImportError
        (a ``ValueError``) for a node convnp cannot express, naming the node and
        its op, or a file that is not an ONNX model.
    ImportError
        When ``onnx`` is not installed (``pip install convnp[onnx]``).
    """
    onnx = require("onnx", "convnp.interop.from_onnx", "onnx")
    model_proto = _load(onnx, path_or_model)
    opset = _opset(model_proto)
    graph = model_proto.graph
    reader = GraphReader(onnx, graph, opset, None)
    input_name, shape, reader.batch_size = _graph_input(graph, reader.constants, input_shape)
    # The layers are built shapes only (placeholders, nothing allocated): the sizes an input
    # shape implies are checked before the file's weights are copied in.
    with shapes_only():
        inputs = Input(shape, name=input_name)
        reader.values[input_name] = inputs
        for node in graph.node:
            try:
                reader.read(node)
            except (ValueError, TypeError, KeyError) as error:
                raise OnnxImportError(f"from_onnx: {_describe(node)}: {error}") from error
        if len(graph.output) != 1:
            raise OnnxImportError(f"from_onnx: expected one graph output, got {[value.name for value in graph.output]}")
        output = reader.values.get(graph.output[0].name)
        if output is None or output is inputs:
            raise OnnxImportError(f"from_onnx: the graph output {graph.output[0].name!r} is not computed by any layer")
        model = Model(inputs, output)
    values = sum(p.data.size for _, p in model.named_parameters()) + sum(b.size for _, b in model.named_buffers())
    if values > reader.max_constant_values:
        raise OnnxImportError(
            f"from_onnx: the model's parameters and buffers would hold {values:,} values, more than the "
            f"{reader.max_constant_values:,} this file's weights can fill (its input shape is {shape})"
        )
    try:
        model.load_state_dict(reader.state)
    except (KeyError, ValueError) as error:
        raise OnnxImportError(f"from_onnx: the weights do not fit the layers ({error})") from error
    return model
