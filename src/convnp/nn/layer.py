"""The layer base class: ``build`` from a per-sample shape, then ``forward``/``backward``.

A layer is built once from the per-sample shape of its input (Keras's split of
``build`` and the computation): that is when in-channels and in-features are
inferred and parameters are drawn. ``forward`` keeps what ``backward`` needs in
``self.cache``; ``backward`` fills ``Parameter.grad`` and returns the input
gradient. Calling ``forward`` on an unbuilt layer builds it from the input.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np

from convnp._random import as_generator
from convnp.nn.node import connect, is_node_input
from convnp.parameter import Parameter

LAYER_REGISTRY: dict[str, type[Layer]] = {}


def shape_mismatch(sample_shape: tuple[int, ...], actual: tuple[int, ...]) -> str:
    """The message for a batch of shape ``actual`` given to a layer built for ``sample_shape``.

    Says the expected and actual shapes, then what differs: the number of axes,
    the channels, or the spatial size, e.g. "expected input of shape
    (N, 1, 28, 28), got (8, 3, 28, 28): 3 channels instead of 1".
    """
    message = f"expected input of shape (N, {', '.join(map(str, sample_shape))}), got {tuple(actual)}"
    if len(actual) != len(sample_shape) + 1:
        return f"{message}: a {len(actual)}-D array instead of a {len(sample_shape) + 1}-D batch"
    if len(sample_shape) == 3:
        details = []
        if actual[1] != sample_shape[0]:
            details.append(f"{actual[1]} channels instead of {sample_shape[0]}")
        if actual[2:] != sample_shape[1:]:
            details.append(f"spatial size {actual[2]}x{actual[3]} instead of {sample_shape[1]}x{sample_shape[2]}")
        return f"{message}: {' and '.join(details)}"
    if len(sample_shape) == 1:
        return f"{message}: {actual[1]} features instead of {sample_shape[0]}"
    return message


class Layer:
    """Base class of every layer.

    Subclasses set ``param_names`` (attributes holding a ``Parameter`` or None)
    and ``buffer_names`` (attributes holding non-trainable arrays such as
    running statistics), implement ``_build(input_shape, rng) -> output_shape``
    (creating those arrays with ``convnp.nn.init.initialize`` and ``constant``,
    so that a shapes-only build, ``convnp.nn.init.shapes_only``, allocates none),
    ``forward`` and ``backward``, and ``get_config`` (constructor arguments, for
    saving the architecture as JSON). Every layer takes ``name=``: a model's
    ``state_dict`` keys use it in place of the layer's position.

    A layer that holds other layers (a block) declares them in
    ``sublayer_names``: attributes holding a layer, a list of layers, or None.
    It creates them in ``__init__``, builds them in ``_build`` (passing on
    ``self.dtype`` and the ``rng``), and calls their ``forward`` and
    ``backward`` in its own; everything else follows from the declaration:
    their parameters and buffers appear in ``named_parameters``/``state_dict``
    under dotted keys (``"body.0.weight"``), ``astype`` casts them, sharded
    training passes give every shard its own copies, and saving works when
    ``get_config`` returns the held layers' descriptions (``layer_config``)
    and ``from_config`` rebuilds them (``layer_from_config``); see
    ``convnp.nn.blocks.Residual`` for a complete example::

        class TwoConvs(Layer):
            sublayer_names = ("first", "second")

            def __init__(self, channels, name=None):
                super().__init__(name=name)
                self.channels = channels
                self.first, self.second = Conv2D(channels, 3, padding=1), Conv2D(channels, 3, padding=1)

            def _build(self, input_shape, rng):
                shape = self.first.build(input_shape, self.dtype, rng)
                return self.second.build(shape, self.dtype, rng)

            def forward(self, x, training=False):
                return self.second.forward(self.first.forward(x, training), training)

            def backward(self, dout):
                return self.first.backward(self.second.backward(dout))

            def get_config(self):
                return {"channels": self.channels}
    """

    param_names: tuple[str, ...] = ()
    buffer_names: tuple[str, ...] = ()
    #: Attributes holding layers of their own: a layer (a fused activation), a list of layers, or None.
    sublayer_names: tuple[str, ...] = ()
    #: Whether ``forward`` takes a list of arrays (merge layers: Add, Concatenate); ``build`` then takes
    #: a list of per-sample shapes and ``backward`` returns a list of input gradients.
    multi_input: bool = False
    #: Whether a training-mode pass treats every sample on its own, so that a batch
    #: can be cut into shards that run at the same time (``convnp/nn/engine.py``).
    #: Batch norm (statistics over the batch) and dropout (one random stream for the
    #: whole batch) set it to False.
    batch_independent: bool = True
    #: Whether a layer that is not batch-independent can still run in shards, by
    #: exchanging what it needs through ``self.shard`` (``convnp/nn/shards.py``):
    #: batch norm and dropout can.
    shard_aware: bool = False
    #: Set on the twins of a sharded training pass: this shard's ``ShardContext``.
    shard = None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        LAYER_REGISTRY[cls.__name__] = cls

    def __init__(self, name: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"{type(self).__name__}: name must be a non-empty str or None, got {name!r}")
        #: The name given at construction (or None): a model's state_dict keys use it.
        self.name = name
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        self.dtype = np.dtype(np.float32)
        self.built = False
        self.cache = None

    # ----------------------------------------------------------------- build
    def build(
        self,
        input_shape: tuple[int, ...],
        dtype: np.dtype | str | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> tuple[int, ...]:
        """Create the parameters for inputs of per-sample shape ``input_shape``.

        Returns the per-sample output shape. Raises ``ValueError`` naming the
        layer when the shape does not fit it.
        """
        if self.multi_input:
            input_shape = [self._check_shape(shape) for shape in input_shape]
        else:
            input_shape = self._check_shape(input_shape)
        if dtype is not None:
            self.dtype = np.dtype(dtype)
        if not np.issubdtype(self.dtype, np.floating):
            raise TypeError(f"{self.label}: dtype must be a float type, got {self.dtype}")
        output_shape = tuple(int(d) for d in self._build(input_shape, as_generator(rng)))
        self.input_shape, self.output_shape, self.built = input_shape, output_shape, True
        return output_shape

    def _check_shape(self, input_shape) -> tuple[int, ...]:
        try:
            input_shape = tuple(int(d) for d in input_shape)
        except TypeError as error:
            raise TypeError(f"{self.label}: input_shape must be a tuple of ints, got {input_shape!r}") from error
        if any(d < 1 for d in input_shape):
            raise ValueError(f"{self.label}: input_shape must be positive, got {input_shape}")
        return input_shape

    def _build(self, input_shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        return input_shape

    # ------------------------------------------------------------- computing
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward_params(self, dout: np.ndarray) -> None:
        """Fill the parameter gradients only, for the first layer of a model (nothing needs its dx).

        Layers whose input gradient is costly (Conv2D) override this to skip it.
        """
        self.backward(dout)

    def __call__(self, x, training: bool = False):
        """``forward(x)`` on arrays; on a graph node (or a list of them), a new node (``convnp.nn.Input``)."""
        if is_node_input(x):
            return connect(self, x)
        return self.forward(x, training=training)

    def shard_copy(self) -> Layer:
        """A twin that runs one shard of a batch while this layer (or another twin) runs another.

        It shares the configuration and the parameter arrays (which a pass
        reads but never writes) and owns its ``cache`` and its ``Parameter.grad``
        slots, so shards never see each other's intermediate values. The
        layers it holds are copied the same way.
        """
        twin = copy.copy(self)
        twin.cache = None
        for attr in self.param_names:
            param = getattr(self, attr, None)
            if param is not None:
                setattr(twin, attr, Parameter(param.data, param.name))
        for attr in self.sublayer_names:
            held = getattr(self, attr, None)
            if isinstance(held, Layer):
                setattr(twin, attr, held.shard_copy())
            elif held is not None:
                setattr(twin, attr, [layer.shard_copy() for layer in held])
        return twin

    def sublayers(self) -> Iterator[tuple[str, Layer]]:
        """The layers this one holds, directly, with their keys ("activation", "body.0", ...)."""
        for attr in self.sublayer_names:
            held = getattr(self, attr, None)
            if isinstance(held, Layer):
                yield attr, held
            elif held is not None:
                for index, layer in enumerate(held):
                    yield f"{attr}.{index}", layer

    def self_and_sublayers(self) -> Iterator[Layer]:
        """This layer, then the layers it holds and theirs."""
        yield self
        for _, sublayer in self.sublayers():
            yield from sublayer.self_and_sublayers()

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """Validate a batch against the built input shape (building on first use).

        Raises ``TypeError`` for non-float input or a dtype other than the
        parameters', ``ValueError`` naming the layer and the expected vs actual
        shape otherwise.
        """
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(
                f"{self.label}: expected a floating-point input, got dtype {x.dtype} "
                "(convert integer images with x.astype('float32') / 255)"
            )
        if not self.built:
            if x.ndim < 1:
                raise ValueError(f"{self.label}: expected a batch of inputs, got a scalar")
            self.build(x.shape[1:], dtype=x.dtype if not self.param_names else None)
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"{self.label}: {shape_mismatch(self.input_shape, x.shape)}")
        if self.param_names and x.dtype != self.dtype:
            raise TypeError(
                f"{self.label}: input dtype {x.dtype} does not match the layer's dtype {self.dtype} "
                "(cast the input, or the layer with astype)"
            )
        return x

    def check_grad(self, dout: np.ndarray) -> np.ndarray:
        if self.cache is None:
            raise RuntimeError(f"{self.label}: backward called before forward")
        return dout

    # ------------------------------------------------------------ parameters
    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """(key, Parameter) pairs: this layer's own ("weight"), then its sublayers' ("body.0.weight")."""
        for key, owner, attr in self.parameter_slots():
            yield key, getattr(owner, attr)

    def parameters(self) -> list[Parameter]:
        return [param for _, param in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        """(key, array) pairs of non-trainable state (running statistics), with the same keys as above."""
        for key, owner, attr in self.buffer_slots():
            yield key, getattr(owner, attr)

    def parameter_slots(self) -> Iterator[tuple[str, Layer, str]]:
        """(key, layer that owns it, attribute) for every parameter, sublayers' included."""
        yield from self._slots("param_names")

    def buffer_slots(self) -> Iterator[tuple[str, Layer, str]]:
        """(key, layer that owns it, attribute) for every buffer, sublayers' included."""
        yield from self._slots("buffer_names")

    def _slots(self, kind: str) -> Iterator[tuple[str, Layer, str]]:
        for attr in getattr(self, kind):
            if getattr(self, attr, None) is not None:
                yield attr, self, attr
        for prefix, sublayer in self.sublayers():
            for key, owner, attr in sublayer._slots(kind):
                yield f"{prefix}.{key}", owner, attr

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def astype(self, dtype) -> Layer:
        """Cast parameters and buffers (sublayers' too) in place; returns the layer."""
        for part in self.self_and_sublayers():
            part.dtype = np.dtype(dtype)
            for attr in part.param_names:
                param = getattr(part, attr, None)
                if param is not None:
                    param.data = param.data.astype(part.dtype)
                    param.grad = None if param.grad is None else param.grad.astype(part.dtype)
            for attr in part.buffer_names:
                buffer = getattr(part, attr, None)
                if buffer is not None:
                    setattr(part, attr, buffer.astype(part.dtype))
            part.cache = None
        return self

    # --------------------------------------------------------------- naming
    @property
    def label(self) -> str:
        """How messages name this layer: the class, its position in a model once in one, and its name."""
        base = getattr(self, "_label", None) or type(self).__name__
        return f"{base} '{self.name}'" if self.name else base

    def get_config(self) -> dict:
        """Constructor arguments as JSON-compatible values (``name`` is added by ``config``)."""
        return {}

    def config(self) -> dict:
        """``get_config()`` plus the layer's name: everything ``from_config`` needs to build it again."""
        config = self.get_config()
        if self.name is not None:
            config["name"] = self.name
        return config

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        """A new, unbuilt layer from ``config()``'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def short_repr(self) -> str:
        """The class name with the constructor arguments that differ from their defaults."""
        import inspect

        defaults = {
            name: param.default
            for name, param in inspect.signature(type(self).__init__).parameters.items()
            if param.default is not inspect.Parameter.empty
        }
        inferred = ("in_channels", "in_features", "num_features")
        args = []
        for key, value in self.get_config().items():
            if key in inferred:
                continue
            default = defaults.get(key, inspect.Parameter.empty)
            comparable = _tupled(value)
            if isinstance(default, int) and isinstance(comparable, tuple) and comparable == (default, default):
                continue
            # Only a pool's stride defaults to its kernel (stride=None); a convolution's defaults to 1.
            if key == "stride" and default is None and getattr(self, "kernel_size", None) == comparable:
                continue
            if default is inspect.Parameter.empty:
                args.append(repr(comparable))
            elif comparable != default:
                args.append(f"{key}={comparable!r}")
        return f"{type(self).__name__}({', '.join(args)})"


def _tupled(value):
    """A config value with its (nested) lists as tuples, as the constructor arguments were given."""
    return tuple(_tupled(item) for item in value) if isinstance(value, list) else value


def layer_config(layer: Layer) -> dict:
    """A layer's JSON description: ``{"class": name, "config": layer.config()}``."""
    return {"class": type(layer).__name__, "config": layer.config()}


def layer_from_config(description: dict) -> Layer:
    """A new, unbuilt layer from ``layer_config``'s output; ``ValueError`` for an unknown class."""
    if not isinstance(description, dict) or set(description) != {"class", "config"}:
        raise ValueError(f"expected a layer description {{'class': ..., 'config': ...}}, got {description!r}")
    cls = LAYER_REGISTRY.get(description["class"])
    if cls is None:
        raise ValueError(f"unknown layer type {description['class']!r} (define or import its class before loading)")
    if not isinstance(description["config"], dict):
        raise ValueError(f"{description['class']}: config must be a JSON object, got {description['config']!r}")
    return cls.from_config(description["config"])
