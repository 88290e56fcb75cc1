"""What every model has, whatever its shape: ``Network``, the base of ``Sequential`` and ``Model``.

A network is a list of nodes in topological order, each a layer and the
numbers of the values it reads (0 is the model's input, k the output of node
k - 1): ``Sequential`` is the chain ``[(layer_0, (0,)), (layer_1, (1,)), ...]``,
``Model`` any directed acyclic graph. Everything below works on that list:
building, the execution plan and the engine's passes (one engine for both),
parameters and state_dict keys, saving, and ``fit``/``evaluate``/``predict``.

state_dict keys are the layer's ``name`` or, for an unnamed layer, its
position, then the parameter's key inside it: "0.weight", "3.running_mean",
"layer1.0.conv1.weight".
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from convnp._random import as_generator
from convnp.files.model_file import save_model
from convnp.nn import engine
from convnp.nn.activations import Softmax
from convnp.nn.layer import Layer, layer_config, shape_mismatch
from convnp.nn.plan import Plan, build_plan
from convnp.parameter import Parameter

if TYPE_CHECKING:
    from convnp.distributed import BatchShard

# Keys PyTorch keeps in a state_dict that convnp does not need.
_IGNORED_KEY_SUFFIXES = ("num_batches_tracked",)

LossFunction = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]


class Network:
    """The base of ``Sequential`` and ``Model``: nodes, building, passes, parameters, files and training.

    Subclasses set ``layers`` (in topological order), ``_nodes`` (each layer with
    the values it reads), then call ``_init_common(dtype, seed)``.

    Two attributes describe the data the model learned from; model files keep
    them (``convnp/files/model_metadata.py``):

    - ``class_names``: a list of str, one per output, or None (set it yourself,
      from ``convnp.data.image_folder`` for instance; ``convnp train`` does);
    - ``input_stats``: ``{"min", "max", "mean"}`` of the inputs of the last
      ``fit``, or None; ``predict`` and ``evaluate`` warn when inputs lie far
      outside (``convnp.InputWarning``).
    """

    layers: list[Layer]
    _nodes: list[tuple[Layer, tuple[int, ...]]]
    #: ids of layers whose weights ``build`` keeps (a Model's layers built before the graph was described).
    _prebuilt: frozenset[int] | set[int] = frozenset()

    def _init_common(self, dtype, seed) -> None:
        kind = type(self).__name__
        try:
            self.dtype = np.dtype(dtype)
        except TypeError as error:
            raise TypeError(f"{kind}: dtype must be 'float32' or 'float64', got {dtype!r}") from error
        if not np.issubdtype(self.dtype, np.floating):
            raise TypeError(f"{kind}: dtype must be 'float32' or 'float64', got {self.dtype}")
        self.seed = seed
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        self.class_names: list[str] | None = None
        self.input_stats: dict[str, float] | None = None
        names = [layer.name for layer in self.layers if layer.name is not None]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"{kind}: layer names must be unique, found {duplicates} more than once")
        for index, layer in enumerate(self.layers):
            layer._label = f"{type(layer).__name__} (layer {index})"

    # ----------------------------------------------------------------- build
    @property
    def built(self) -> bool:
        return self.input_shape is not None

    def build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Build every layer in turn, in topological order; returns the per-sample output shape."""
        rng = as_generator(self.seed)
        shapes = {0: tuple(int(d) for d in input_shape)}
        self.input_shape = shapes[0]
        for index, (layer, inputs) in enumerate(self._nodes):
            given = [shapes[value] for value in inputs] if layer.multi_input else shapes[inputs[0]]
            if id(layer) in self._prebuilt:
                shapes[index + 1] = layer.astype(self.dtype).output_shape
            else:
                shapes[index + 1] = layer.build(given, dtype=self.dtype, rng=rng)
        self.output_shape = shapes[len(self._nodes)]
        return self.output_shape

    def prepare_input(self, x) -> np.ndarray:
        """Bring a batch to the model's dtype and shape.

        Floats are cast to the model's dtype. uint8 images are scaled to [0, 1]
        (divided by 255), the usual encoding of 8-bit pixels; other integer or
        non-numeric inputs raise ``TypeError``. A 3-D batch (N, H, W) for a
        model built for one channel gets the channel axis.
        """
        x = np.asarray(x)
        if x.dtype == np.uint8:
            x = x.astype(self.dtype) / self.dtype.type(255)
        elif np.issubdtype(x.dtype, np.floating):
            x = x.astype(self.dtype, copy=False)
        else:
            raise TypeError(
                f"{type(self).__name__}: expected float images (or uint8 pixels 0-255), got dtype {x.dtype}"
            )
        if not self.built:
            if x.ndim < 2:
                raise ValueError(f"{type(self).__name__}: expected a batch of inputs, got shape {x.shape}")
            self.build(x.shape[1:])
        if x.ndim == len(self.input_shape) and self.input_shape[0] == 1 and x.shape[1:] == self.input_shape[1:]:
            x = x[:, None]
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"{type(self).__name__}: {shape_mismatch(self.input_shape, x.shape)}")
        return x

    # ------------------------------------------------------------- computing
    def forward(self, x, training: bool = False) -> np.ndarray:
        """Run the batch through every layer. Returns the last layer's output."""
        return self.forward_layers(self.prepare_input(x), training)

    __call__ = forward

    def execution_plan(self, stop: int | None = None, inference: bool = False) -> Plan:
        """The steps that compute ``layers[:stop]`` (``convnp/nn/plan.py``): one layer each, or a few fused.

        With ``stop``, the plan's result is the value the first left-out layer
        would read: ``stop=-1`` gives the input of the final layer (the logits,
        when the final layer is a Softmax). An ``inference`` plan has no
        backward pass and folds batch norms into the convolutions before them.
        """
        nodes = self._nodes[:stop]
        output = len(nodes) if len(nodes) == len(self._nodes) else self._nodes[len(nodes)][1][0]
        return build_plan(nodes, output, inference=inference)

    def forward_layers(
        self, x: np.ndarray, training: bool, stop: int | None = None, keep_caches: bool = True
    ) -> np.ndarray:
        """Run a prepared batch through ``layers[:stop]`` (see ``execution_plan``).

        With ``keep_caches=False`` in inference mode (``predict``, ``evaluate``:
        no backward pass follows), the layers keep nothing for a backward pass
        (and drop what an earlier pass left), which lets the batch run as one
        shard per core with each input freed once used (``engine.infer``).
        """
        if training or keep_caches:
            return engine.forward(self.execution_plan(stop), x, training)
        return engine.infer(self.execution_plan(stop, inference=True), x)

    def backward(self, dlogits: np.ndarray, input_grad: bool = True, stop: int | None = None) -> np.ndarray | None:
        """Back-propagate the loss gradient; fills every ``Parameter.grad``. Returns dx.

        ``stop`` matches ``forward_layers``: back-propagate from the output of
        ``layers[stop - 1]``. With ``input_grad=False`` the input gradient is not
        computed (None is returned), which spares the first convolution's dx.
        """
        return engine.backward(self.execution_plan(stop), dlogits, input_grad)

    def train_pass(
        self,
        x: np.ndarray,
        targets: np.ndarray,
        loss_fn: LossFunction,
        stop: int | None = None,
        ranks: BatchShard | None = None,
    ) -> tuple[float, np.ndarray]:
        """Forward in training mode, loss, backward: fills every ``Parameter.grad``; returns ``(loss, outputs)``.

        ``loss_fn(outputs, targets)`` returns the mean loss over the samples it
        is given and the gradient of that mean with respect to ``outputs``. The
        batch runs as one shard per core where it pays (``engine.train_pass``).
        With ``ranks`` (a ``convnp.distributed.BatchShard``), ``x`` is this MPI
        rank's piece of a global batch, and the loss and gradients are this
        rank's parts of the global batch's.
        """
        return engine.train_pass(self.execution_plan(stop), x, targets, loss_fn, ranks=ranks)

    # ----------------------------------------------------------- the logits
    def ends_in_softmax(self) -> bool:
        """Whether the output is already a softmax over classes (a final ``Softmax`` layer, or a fused
        softmax activation, along axis 1)."""
        last = self.layers[-1]
        softmax = last if isinstance(last, Softmax) else getattr(last, "activation", None)
        return isinstance(softmax, Softmax) and softmax.normalizes_axis_one()

    @contextmanager
    def logits_view(self, wanted: bool) -> Iterator[int | None]:
        """Run the model up to its logits: yields the ``stop`` index for ``forward_layers``/``backward``.

        When the model ends in a softmax and ``wanted`` is True, the softmax is
        left out (a final Softmax layer is skipped; a fused softmax activation is
        switched off for the duration), so that a loss can use the fused, stable
        softmax cross-entropy on the logits.
        """
        last = self.layers[-1]
        if not wanted or not self.ends_in_softmax():
            yield None
        elif isinstance(last, Softmax):
            yield -1
        else:
            activation, last.activation = last.activation, None
            try:
                yield None
            finally:
                last.activation = activation

    # ------------------------------------------------------------ parameters
    def layer_keys(self) -> list[str]:
        """Each layer's key prefix: its name, or its position when unnamed."""
        return [layer.name if layer.name is not None else str(index) for index, layer in enumerate(self.layers)]

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for prefix, layer in zip(self.layer_keys(), self.layers):
            for name, param in layer.named_parameters():
                yield f"{prefix}.{name}", param

    def parameters(self) -> list[Parameter]:
        return [param for _, param in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        for prefix, layer in zip(self.layer_keys(), self.layers):
            for name, buffer in layer.named_buffers():
                yield f"{prefix}.{name}", buffer

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def zero_grad(self) -> None:
        for param in self.parameters():
            param.grad = None

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer, layer by layer, PyTorch-style keys."""
        self._require_built("state_dict")
        state: OrderedDict[str, np.ndarray] = OrderedDict()
        for prefix, layer in zip(self.layer_keys(), self.layers):
            for name, param in layer.named_parameters():
                state[f"{prefix}.{name}"] = param.data.copy()
            for name, buffer in layer.named_buffers():
                state[f"{prefix}.{name}"] = buffer.copy()
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers (cast to the model's dtype).

        Accepts a PyTorch state_dict converted to arrays (``num_batches_tracked``
        is ignored). With ``strict`` (default), missing and unexpected keys raise
        ``KeyError`` naming them; a shape mismatch raises ``ValueError``. Nothing
        is changed unless every array fits.
        """
        self._require_built("load_state_dict")
        kind = type(self).__name__
        targets: dict[str, tuple[Layer, str, bool]] = {}
        for prefix, layer in zip(self.layer_keys(), self.layers):
            for key, owner, attr in layer.parameter_slots():
                targets[f"{prefix}.{key}"] = (owner, attr, True)
            for key, owner, attr in layer.buffer_slots():
                targets[f"{prefix}.{key}"] = (owner, attr, False)
        given = {k: v for k, v in state.items() if not k.endswith(_IGNORED_KEY_SUFFIXES)}
        missing = [k for k in targets if k not in given]
        unexpected = [k for k in given if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(f"{kind}.load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        staged = {}
        for key, (layer, name, _) in targets.items():
            if key not in given:
                continue
            value = np.asarray(given[key])
            current = getattr(layer, name)
            current_shape = current.data.shape if isinstance(current, Parameter) else current.shape
            if value.shape != current_shape:
                raise ValueError(
                    f"{kind}.load_state_dict: {key} ({layer.label}) expects shape {current_shape}, got {value.shape}"
                )
            staged[key] = value.astype(self.dtype, copy=True)
        for key, value in staged.items():
            layer, name, is_param = targets[key]
            if is_param:
                getattr(layer, name).data = value
            else:
                setattr(layer, name, value)

    def astype(self, dtype) -> Network:
        """Cast every parameter and buffer in place; returns the model."""
        self.dtype = np.dtype(dtype)
        for layer in self.layers:
            layer.astype(self.dtype)
        return self

    def layer_inputs(self) -> list[tuple[int, ...]]:
        """The values each of ``layers`` reads: 0 is the model's input, k the output of layer k - 1.

        A ``Sequential`` is the chain ``[(0,), (1,), ...]``; a ``Model`` reads its graph's wiring. What
        exporters and Grad-CAM walk to follow a model's graph layer by layer.
        """
        return [inputs for _, inputs in self._nodes]

    def get_config(self) -> dict:
        """The JSON-compatible description a model file stores: dtype, input shape, layers (and a graph's wiring).

        ``layers`` lists ``{"class", "config"}`` per layer in order; a ``Model``
        adds ``"kind": "Model"`` and ``inputs``, the values each layer reads
        (0 the input, k the output of layer k - 1).
        """
        self._require_built("get_config")
        description = {
            "dtype": str(self.dtype),
            "input_shape": list(self.input_shape),
            "layers": [layer_config(layer) for layer in self.layers],
        }
        if type(self).__name__ == "Model":
            description["kind"] = "Model"
            description["inputs"] = [list(inputs) for _, inputs in self._nodes]
        return description

    # --------------------------------------------------------------- access
    def _require_built(self, what: str) -> None:
        if not self.built:
            raise RuntimeError(
                f"{type(self).__name__}.{what}: the model is not built yet; pass input_shape= or run a batch through it"
            )

    def summary(self) -> str:
        """A table of layers (with the layers each reads, for a graph), output shapes and parameter counts."""
        self._require_built("summary")
        keys = self.layer_keys()
        numbered = all(key.isdigit() for key in keys)
        graph = any(inputs != (index,) for index, (_, inputs) in enumerate(self._nodes))
        header = (
            ("#", "Layer", "Inputs", "Output shape", "Params") if graph else ("#", "Layer", "Output shape", "Params")
        )
        rows = [header]
        for index, (layer, inputs) in enumerate(self._nodes):
            row = [keys[index], layer.short_repr(), str(layer.output_shape), f"{layer.num_parameters():,}"]
            if graph:
                row.insert(2, ", ".join("input" if value == 0 else keys[value - 1] for value in inputs))
            rows.append(tuple(row))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        line = "-" * (sum(widths) + 2 * (len(header) - 1))
        text = [f"{type(self).__name__}: input {self.input_shape}, dtype {self.dtype}", line]
        for i, row in enumerate(rows):
            cells = [cell.ljust(width) for cell, width in zip(row, widths)]
            cells[-1] = row[-1].rjust(widths[-1])
            if numbered:  # positions right-aligned like numbers, names left-aligned like text
                cells[0] = row[0].rjust(widths[0])
            text.append("  ".join(cells))
            if i == 0:
                text.append(line)
        text += [line, f"Total parameters: {self.num_parameters():,}"]
        return "\n".join(text)

    # ------------------------------------------------------------- training
    def fit(
        self,
        x,
        y,
        epochs: int = 10,
        batch_size: int = 32,
        optimizer="adam",
        loss: str = "cross_entropy",
        validation_data=None,
        callbacks=(),
        shuffle: bool = True,
        seed=None,
        verbose: int = 1,
        **options,
    ):
        """Train with minibatches; returns a ``History``.

        Args:
            x: images (N, C, H, W) (float, or uint8 pixels scaled by 1/255); y: int labels (N,)
                (or float targets shaped like the output, for "mse").
            epochs, batch_size: as usual; the last batch may be smaller.
            optimizer: "adam", "adamw", "sgd", "rmsprop" or a ``convnp.optim`` optimizer
                built over ``model.parameters()``; ``lr=`` sets a named one's learning rate.
            loss: "cross_entropy" (softmax cross-entropy on the outputs, which are logits;
                a final Softmax layer is fused into it) or "mse".
            validation_data: (x_val, y_val), evaluated after every epoch.
            callbacks: ``convnp.callbacks`` objects (EarlyStopping, ModelCheckpoint,
                LearningRateScheduler, or your own ``Callback``).
            shuffle: reshuffle every epoch with a generator seeded by ``seed``.
            seed: the same seed (and initial weights) gives bit-identical training.
            verbose: 0 silent, 1 a progress bar per epoch, 2 one line per epoch.
            **options: ``lr``, ``label_smoothing``, ``augment`` (f(x_batch, rng) -> x_batch),
                ``clip_norm`` (global gradient-norm clipping), ``checkpoint`` (path of a
                checkpoint written at every epoch end and on Ctrl-C) and ``resume``
                (continue from that checkpoint when it exists).

        Dropout and batch norm run in training mode only inside ``fit``.
        """
        from convnp.training import fit

        return fit(
            self,
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            loss=loss,
            validation_data=validation_data,
            callbacks=callbacks,
            shuffle=shuffle,
            seed=seed,
            verbose=verbose,
            **options,
        )

    def evaluate(
        self, x, y, batch_size: int = 256, loss: str = "cross_entropy", flip_average: bool = False
    ) -> dict[str, float]:
        """``{"loss": mean loss, "accuracy": fraction correct}`` in inference mode, in batches.

        ``flip_average=True``: score the mean class probabilities of each image and its mirror image.
        """
        from convnp.training import evaluate

        return evaluate(self, x, y, batch_size=batch_size, loss=loss, flip_average=flip_average)

    def predict(self, x, batch_size: int = 256, flip_average: bool = False) -> np.ndarray:
        """Class probabilities (N, classes), computed in batches in inference mode.

        ``flip_average=True``: the mean of the probabilities of each image and its mirror image.
        """
        from convnp.training import predict

        return predict(self, x, batch_size=batch_size, flip_average=flip_average)

    def save(self, path, optimizer=None):
        """Write the model (and optionally an optimizer's state) to one ``.npz`` file, atomically."""
        return save_model(self, path, optimizer=optimizer)
