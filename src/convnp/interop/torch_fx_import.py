"""``from_torch`` for any module torch.fx can trace: its graph becomes a convnp ``Model`` with the module's keys.

``torch.fx`` runs ``forward`` on symbolic values and records every call: a
graph of nodes in the order forward makes them. Standard ``torch.nn`` layers
stay whole (call_module nodes); containers and modules of your own are traced
through, so their layers appear under qualified names ("layer1.0.conv1").
Each node becomes:

    placeholder                      the model's Input (one tensor input)
    call_module                      the layer of ``torch_layers.py`` for that module, named by
                                     the module's qualified name: the state_dict keys are the
                                     module's ("layer1.0.conv1.weight")
    a + b, a += b, torch.add, a.add  Add
    torch.cat(xs, dim)               Concatenate(axis=dim)
    torch.flatten(x, 1), x.flatten(1), x.view(x.size(0), -1), x.reshape(x.shape[0], -1)
                                     Flatten
    F.relu, torch.relu, x.relu() (in place or not), sigmoid, tanh, F.leaky_relu, F.elu,
    softmax(dim)                     the activation layer (Softmax along any axis but the batch's)
    F.interpolate                    Upsample2D (nearest or bilinear, whole-number scale)
    F.adaptive_avg_pool2d            AdaptiveAvgPool2D
    F.pad, ZeroPad2d, ConstantPad2d  folded into the padding of the conv or pool they feed, where that is
                                     exact (torch_padding.py)
    x.size(0), x.shape[0], x.size()  sizes, read by view and reshape
    output                           the model's output (one tensor)

Anything else raises ``TypeError`` naming the node, its op and target, and the
line of ``forward`` that made it; a supported call with settings convnp lacks
raises ``ValueError`` the same way. In-place calls are read as their
out-of-place versions (as torch.fx records them).

A module called twice (torchvision's BasicBlock calls ``self.relu`` twice)
becomes one layer per call when it holds no weights ("relu", "relu_1"); one
with weights would need two convnp layers sharing them and is refused.

Layer order: ``Model.layers`` lists the layers with weights in the order the
torch module registers them, so that ``named_parameters`` comes in the torch
module's order (``Model(order=...)``); a layer without weights comes just
before the first layer that reads it. Where no forward pass can follow the
registration order (a module registered before a module whose output it
reads), the layers with weights come in the nearest order the graph allows.
"""

from __future__ import annotations

import builtins
import heapq
import operator
import os
import re
from collections.abc import Callable

from convnp.interop.torch_layers import (
    IGNORED_SUFFIX,
    check,
    gaussian_class,
    layer_from_module,
    module_dtype,
    softmax_layer,
    to_numpy,
    upsample_layer,
)
from convnp.interop.torch_padding import check_pad_value, is_pad_module
from convnp.nn.activations import ELU, LeakyReLU, ReLU, Sigmoid, Tanh
from convnp.nn.dense import Flatten
from convnp.nn.graph import Model
from convnp.nn.layer import Layer
from convnp.nn.merge import Add, Concatenate
from convnp.nn.node import Input, Node
from convnp.nn.pooling import AdaptiveAvgPool2D

__all__ = ["graph_from_torch"]

_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in [^\n]*\n(?P<code>[^\n]*)')


class _Batch:
    """The batch size (``x.size(0)``, ``x.shape[0]``): known only when the model runs."""


class _Shape:
    """The shape of a tensor (``x.shape``, ``x.size()``): the batch size, then the per-sample shape."""

    def __init__(self, of: Node) -> None:
        self.of = of

    def item(self, index: int):
        if index == 0:
            return _Batch()
        return self.of.shape[index - 1 if index > 0 else index]


class _Padded:
    """A tensor padded by ``(top, bottom, left, right)`` with ``value``, waiting for the conv or pool it feeds."""

    def __init__(self, of: Node, sides: tuple[int, int, int, int], value: float, where: str) -> None:
        self.of, self.sides, self.value, self.where = of, sides, value, where


_PUBLIC_MODULES = {
    "_operator": "operator",
    "torch._C._nn": "torch.nn.functional",
    "torch._C._VariableFunctions": "torch",
}


def _function_name(target) -> str:
    module = getattr(target, "__module__", None) or ""
    module = _PUBLIC_MODULES.get(module, module)
    name = getattr(target, "__name__", repr(target))
    return f"{module}.{name}" if module else name


def _describe(node, torch_dir: str) -> str:
    """'node 'add' (call_function operator.add, model.py line 42: out = out + identity)'."""
    if node.op == "call_function":
        target = _function_name(node.target)
    elif node.op == "call_method":
        target = f"Tensor.{node.target}"
    else:
        target = str(node.target)
    frames = [frame for frame in _FRAME.finditer(node.stack_trace or "") if not frame["file"].startswith(torch_dir)]
    source = f", {frames[-1]['file']} line {frames[-1]['line']}: {frames[-1]['code'].strip()}" if frames else ""
    return f"node {node.name!r} ({node.op} {target}{source})"


def _bind(node, names: tuple[str, ...], defaults: dict, where: str) -> dict:
    """The node's arguments by parameter name (``names`` in positional order), ``defaults`` filled in."""
    if len(node.args) > len(names):
        raise TypeError(f"from_torch: {where} is not supported: more arguments than {names}")
    bound = dict(defaults)
    bound.update(zip(names, node.args))
    unknown = sorted(set(node.kwargs) - set(names))
    if unknown:
        raise TypeError(f"from_torch: {where} is not supported: unexpected arguments {unknown}")
    bound.update(node.kwargs)
    missing = [name for name in names if name not in bound]
    if missing:
        raise TypeError(f"from_torch: {where} is not supported: missing arguments {missing}")
    return bound


class _Importer:
    """Walks a traced graph once, turning each node into convnp nodes and layers."""

    def __init__(self, root, torch, input_shape: tuple[int, ...]) -> None:
        self.root, self.torch, self.nn = root, torch, torch.nn
        self.input_shape = input_shape
        self.torch_dir = os.path.dirname(torch.__file__)
        self.values: dict = {}  # fx node -> convnp Node, _Batch, _Shape, _Padded, or a plain value
        self.input: Node | None = None
        self.created: list[Node] = []  # convnp nodes, in the order forward makes them
        self.module_calls: dict[str, int] = {}
        self.names = {name for name, _ in root.named_modules()}
        self.ops = self._op_table()

    # ------------------------------------------------------------ the values
    def tensor(self, arg, where: str) -> Node:
        value = self.values.get(arg) if isinstance(arg, self.torch.fx.Node) else None
        if isinstance(value, _Padded):
            raise TypeError(f"from_torch: {where} is not supported: it reads a padded tensor ({value.where}); "
                            "convnp folds padding into the convolution or pooling it feeds only")  # fmt: skip
        if not isinstance(value, Node):
            raise TypeError(f"from_torch: {where} is not supported: it reads {arg!r}, where a tensor is expected")
        return value

    def _unique_name(self, name: str) -> str:
        candidate, suffix = name, 0
        while candidate in self.names:
            suffix += 1
            candidate = f"{name}_{suffix}"
        self.names.add(candidate)
        return candidate

    def connect(self, layer: Layer, inputs, where: str) -> Node:
        try:
            node = layer(inputs)
        except (TypeError, ValueError) as error:
            raise type(error)(f"from_torch: {where}: {error}") from error
        self.created.append(node)
        return node

    # ------------------------------------------------------------ the nodes
    def run(self, graph) -> Node:
        output = None
        for node in graph.nodes:
            where = _describe(node, self.torch_dir)
            if node.op == "placeholder":
                if self.input is None:
                    self.input = self.values[node] = Input(self.input_shape)
                elif node.users:
                    raise TypeError(f"from_torch: {where} is not supported: convnp models take one input tensor")
            elif node.op == "call_module":
                self.values[node] = self.call_module(node, where)
            elif node.op in ("call_function", "call_method"):
                key = node.target if node.op == "call_method" else id(node.target)
                op = self.ops.get((node.op, key))
                if op is None:
                    raise TypeError(f"from_torch: {where} is not supported; supported calls: {_SUPPORTED_CALLS}")
                self.values[node] = op(node, where)
            elif node.op == "output":
                result = node.args[0]
                if not isinstance(result, self.torch.fx.Node):
                    raise TypeError(f"from_torch: {where} is not supported: forward must return one tensor")
                output = self.tensor(result, where)
            else:  # get_attr: a parameter or buffer read outside its layer
                raise TypeError(f"from_torch: {where} is not supported: it reads {node.target!r} outside a layer")
        if output is None or output is self.input:
            raise ValueError("from_torch: forward computes nothing convnp can hold (no layer between input and output)")
        return output

    def call_module(self, node, where: str):
        module = self.root.get_submodule(node.target)
        if len(node.args) != 1 or node.kwargs:
            raise TypeError(f"from_torch: {where} is not supported: a module called with more than one argument")
        if is_pad_module(module, self.nn):
            return self._padded(node, node.args[0], module.padding, module.value, where)
        calls = self.module_calls[node.target] = self.module_calls.get(node.target, 0) + 1
        if calls == 1:
            name = node.target
        elif any(True for _ in [*module.parameters(), *module.buffers()]):
            raise ValueError(
                f"from_torch: {where}: module {node.target!r} holds weights and is called more than once; "
                "a convnp layer computes one node, so two layers would need to share them"
            )
        else:
            name = self._unique_name(f"{node.target}_{calls - 1}")
        source = self.values.get(node.args[0]) if isinstance(node.args[0], self.torch.fx.Node) else None
        pad = None
        if isinstance(source, _Padded):
            check_pad_value(source.value, source.where, module, where, self.nn)
            pad, source = (source.where, source.sides), source.of
        else:
            source = self.tensor(node.args[0], where)
        layer = layer_from_module(module, self.nn, source.shape, where, pad, name=name)
        return self.connect(layer, source, where)

    def _padded(self, node, arg, sides, value, where: str) -> _Padded:
        """``arg`` padded by ``sides`` (left, right, top, bottom: PyTorch's order), to fold into what it feeds."""
        check(len(sides) == 4 and min(sides) >= 0, where, None, "pads must be 4 non-negative sides of the last 2 axes")
        check(len(node.users) == 1, where, None, "a padded tensor must feed one convolution or pooling only")
        left, right, top, bottom = sides
        return _Padded(self.tensor(arg, where), (top, bottom, left, right), float(value), where)

    # ------------------------------------------------------------ functions and methods
    def layer_op(self, make: Callable[[dict, Node, str, str], Layer], names=("input",), defaults=None):
        """An op on one tensor (its first argument) that becomes one layer: ``make(arguments, input, where, name)``."""

        def op(node, where):
            arguments = _bind(node, names, defaults or {}, where)
            source = self.tensor(arguments[names[0]], where)
            return self.connect(make(arguments, source, where, self._unique_name(node.name)), source, where)

        return op

    def add(self, node, where):
        arguments = _bind(node, ("input", "other", "alpha"), {"alpha": 1}, where)
        check(arguments["alpha"] == 1, where, None, "alpha must be 1")
        sources = [self.tensor(arguments[name], where) for name in ("input", "other")]
        return self.connect(Add(name=self._unique_name(node.name)), sources, where)

    def cat(self, node, where):
        arguments = _bind(node, ("tensors", "dim"), {"dim": 0}, where)
        check(arguments["dim"] != 0, where, None, "concatenating along the batch axis (dim 0)")
        sources = [self.tensor(arg, where) for arg in arguments["tensors"]]
        return self.connect(Concatenate(axis=arguments["dim"], name=self._unique_name(node.name)), sources, where)

    def flatten(self, arguments, source, where, name):
        end = arguments["end_dim"]
        check(arguments["start_dim"] == 1 and end in (-1, len(source.shape)), where, None, "only flatten(x, 1)")
        return Flatten(name=name)

    def reshape(self, node, where):
        """``x.view(x.size(0), -1)`` and the like: flattening each sample is the one reshape convnp has."""
        source = self.tensor(node.args[0] if node.args else node.kwargs.get("input"), where)
        shape = list(node.args[1:]) or [node.kwargs.get("shape", node.kwargs.get("size"))]
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = list(shape[0])
        shape = [self.values.get(item, item) if isinstance(item, self.torch.fx.Node) else item for item in shape]
        features = 1
        for size in source.shape:
            features *= size
        # Every tensor of a convnp model has the input's batch size, so any tensor's size(0) will do.
        batch_first = len(shape) == 2 and isinstance(shape[0], _Batch)
        flattening = (batch_first and shape[1] in (-1, features)) or shape == [-1, features]
        check(flattening, where, None, "only flattening reshapes such as x.view(x.size(0), -1)")
        return self.connect(Flatten(name=self._unique_name(node.name)), source, where)

    def size(self, node, where):
        arguments = _bind(node, ("input", "dim"), {"dim": None}, where)
        shape = _Shape(self.tensor(arguments["input"], where))
        return shape if arguments["dim"] is None else shape.item(arguments["dim"])

    def get_attribute(self, node, where):
        check(len(node.args) == 2 and node.args[1] == "shape", where, None, "only the attribute .shape")
        return _Shape(self.tensor(node.args[0], where))

    def get_item(self, node, where):
        shape = self.values.get(node.args[0])
        check(isinstance(shape, _Shape) and isinstance(node.args[1], int), where, None, "only indexing a shape")
        return shape.item(node.args[1])

    def pad(self, node, where):
        arguments = _bind(node, ("input", "pad", "mode", "value"), {"mode": "constant", "value": None}, where)
        check(arguments["mode"] == "constant", where, None, "only mode='constant'")
        value = 0.0 if arguments["value"] is None else arguments["value"]
        return self._padded(node, arguments["input"], tuple(arguments["pad"]), value, where)

    def _op_table(self) -> dict:
        torch, functional = self.torch, self.torch.nn.functional
        activation = {
            "relu": lambda a, s, w, n: ReLU(name=n),
            "sigmoid": lambda a, s, w, n: Sigmoid(name=n),
            "tanh": lambda a, s, w, n: Tanh(name=n),
        }
        elementwise = {name: self.layer_op(make, ("input", "inplace"), {"inplace": False})
                       for name, make in activation.items()}  # fmt: skip

        def make_softmax(arguments, source, where, name):
            check(arguments["dtype"] is None, where, None, "dtype must be None (the model's dtype)")
            return softmax_layer(arguments["dim"], source.shape, where, name=name)

        softmax = self.layer_op(
            make_softmax, ("input", "dim", "_stacklevel", "dtype"), {"dim": None, "_stacklevel": 3, "dtype": None}
        )
        flatten = self.layer_op(self.flatten, ("input", "start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1})
        functions = [
            (operator, "add", self.add), (operator, "iadd", self.add), (torch, "add", self.add),
            (torch, "cat", self.cat), (torch, "concat", self.cat), (torch, "concatenate", self.cat),
            (torch, "flatten", flatten), (torch, "reshape", self.reshape),
            *((owner, name, elementwise["relu"]) for owner in (torch, functional) for name in ("relu", "relu_")),
            *((owner, kind, elementwise[kind]) for owner in (torch, functional) for kind in ("sigmoid", "tanh")),
            (functional, "leaky_relu", self.layer_op(
                lambda a, s, w, n: LeakyReLU(alpha=a["negative_slope"], name=n),
                ("input", "negative_slope", "inplace"), {"negative_slope": 0.01, "inplace": False},
            )),
            (functional, "elu", self.layer_op(
                lambda a, s, w, n: ELU(alpha=a["alpha"], name=n), ("input", "alpha", "inplace"),
                {"alpha": 1.0, "inplace": False},
            )),
            (torch, "softmax", softmax), (functional, "softmax", softmax),
            (functional, "interpolate", self.layer_op(
                lambda a, s, w, n: upsample_layer(a["size"], a["scale_factor"], a["mode"], a["align_corners"],
                                                  s.shape, w, name=n),
                ("input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias"),
                {"size": None, "scale_factor": None, "mode": "nearest", "align_corners": None,
                 "recompute_scale_factor": None, "antialias": False},
            )),
            (functional, "adaptive_avg_pool2d", self.layer_op(
                lambda a, s, w, n: AdaptiveAvgPool2D(a["output_size"], name=n), ("input", "output_size")
            )),
            (functional, "pad", self.pad), (builtins, "getattr", self.get_attribute),
            (operator, "getitem", self.get_item),
        ]  # fmt: skip
        methods = {
            "add": self.add, "add_": self.add, "flatten": flatten, "view": self.reshape, "reshape": self.reshape,
            "relu": elementwise["relu"], "relu_": elementwise["relu"], "sigmoid": elementwise["sigmoid"],
            "sigmoid_": elementwise["sigmoid"], "tanh": elementwise["tanh"], "tanh_": elementwise["tanh"],
            "softmax": softmax, "size": self.size,
        }  # fmt: skip
        # A name this torch version lacks (torch.concatenate is recent, F.sigmoid may go) is left out.
        table = {
            ("call_function", id(getattr(owner, name))): op for owner, name, op in functions if hasattr(owner, name)
        }
        table.update({("call_method", name): op for name, op in methods.items()})
        return table


_SUPPORTED_CALLS = (
    "modules of the table in torch_layers, +, torch.add, torch.cat, torch.flatten, x.flatten(1), "
    "x.view(x.size(0), -1), x.reshape(...), relu, sigmoid, tanh, F.leaky_relu, F.elu, softmax(dim), "
    "F.interpolate, F.adaptive_avg_pool2d, F.pad before a conv or pool (see docs/interop.md)"
)


def _layer_order(output: Node, created: list[Node], rank: dict[str, int]) -> list[Layer]:
    """The layers the output depends on, in a topological order that follows ``rank`` where it can.

    ``created`` lists the nodes in the order forward made them (a topological
    order); ``rank`` gives the torch registration position of the layers with
    weights, by name. Those come in rank order wherever the graph allows: each
    time, the lowest-ranked one whose weighted ancestors are all placed. A
    layer without weights is placed just before the first layer that needs
    it, so that it never opens a module path (a container of the exported
    torch module) ahead of the weighted layers registered before it.
    """
    needed, stack = set(), [output]
    while stack:
        node = stack.pop()
        if node.layer is not None and id(node) not in needed:
            needed.add(id(node))
            stack.extend(node.parents)
    nodes = [node for node in created if id(node) in needed]
    position = {id(node): index for index, node in enumerate(nodes)}
    weighted_above: dict[int, set[int]] = {}  # node -> the weighted layers it depends on
    for node in nodes:
        above: set[int] = set()
        for parent in node.parents:
            if parent.layer is not None:
                above |= weighted_above[id(parent)] | ({id(parent)} if parent.layer.name in rank else set())
        weighted_above[id(node)] = above

    placed: set[int] = set()
    order: list[Layer] = []

    def place(node: Node) -> None:
        """``node`` after those of its ancestors not placed yet, in the order forward made them."""
        pending, stack = {}, [node]
        while stack:
            current = stack.pop()
            if current.layer is not None and id(current) not in placed and id(current) not in pending:
                pending[id(current)] = current
                stack.extend(current.parents)
        for current in sorted(pending.values(), key=lambda n: position[id(n)]):
            placed.add(id(current))
            order.append(current.layer)

    weighted = {id(node): node for node in nodes if node.layer.name in rank}
    waiting = {key: len(weighted_above[key]) for key in weighted}  # weighted ancestors not placed yet
    below: dict[int, list[int]] = {key: [] for key in weighted}
    for key in weighted:
        for above in weighted_above[key]:
            below[above].append(key)
    ready = [(rank[node.layer.name], position[key], key) for key, node in weighted.items() if not waiting[key]]
    heapq.heapify(ready)
    while ready:
        *_, key = heapq.heappop(ready)
        place(weighted[key])
        for other in below[key]:
            waiting[other] -= 1
            if not waiting[other]:
                heapq.heappush(ready, (rank[weighted[other].layer.name], position[other], other))
    place(output)
    return order


def graph_from_torch(module, input_shape: tuple[int, ...], torch) -> Model:
    """The convnp ``Model`` of a module torch.fx traces, with the module's state_dict keys and weights."""
    gaussian = gaussian_class()

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, module, qualified_name: str) -> bool:
            return type(module) is gaussian or super().is_leaf_module(module, qualified_name)

    tracer = Tracer()
    tracer.record_stack_traces = True  # for the source line in error messages
    try:
        graph = tracer.trace(module)
    except Exception as error:  # whatever stops tracing: data-dependent control flow, non-torch calls, ...
        raise TypeError(f"from_torch: torch.fx cannot trace {type(module).__name__}: {error}") from error

    importer = _Importer(module, torch, tuple(int(d) for d in input_shape))
    output = importer.run(graph)
    torch_state = {key: value for key, value in module.state_dict().items() if not key.endswith(IGNORED_SUFFIX)}
    holders = {key.rpartition(".")[0] for key in torch_state}  # modules with weights, in registration order
    rank = {name: index for index, name in enumerate(name for name, _ in module.named_modules() if name in holders)}
    model = Model(
        importer.input, output, dtype=module_dtype(module), order=_layer_order(output, importer.created, rank)
    )
    state = model.state_dict()  # defaults stand in for weights PyTorch lacks (affine=False)
    unused = [key for key in torch_state if key not in state]
    if unused:
        raise ValueError(
            f"from_torch: forward never uses the modules holding {unused}; a convnp model holds only the layers "
            "that compute its output (delete the unused modules, or wrap the part you need)"
        )
    state.update({key: to_numpy(value) for key, value in torch_state.items()})
    model.load_state_dict(state)
    return model
