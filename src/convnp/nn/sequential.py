"""``Sequential``: a stack of layers run in order, forward and backward."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import numpy as np

from convnp._random import as_generator
from convnp.files.model_file import save_model
from convnp.nn import engine
from convnp.nn.activations import Softmax
from convnp.nn.layer import Layer, shape_mismatch
from convnp.nn.plan import Step, build_plan
from convnp.parameter import Parameter

# Keys PyTorch keeps in a state_dict that convnp does not need.
_IGNORED_KEY_SUFFIXES = ("num_batches_tracked",)

LossFunction = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]


class Sequential:
    """Layers applied one after another.

    Args:
        layers: the layers, in order.
        input_shape: per-sample input shape, e.g. (1, 28, 28). When given, the
            model is built at once (parameters drawn, shapes checked); otherwise
            it is built from the first batch it sees.
        dtype: "float32" (default) or "float64".
        seed: seeds the parameter initialisation (Generator, int or None).

    ``state_dict`` keys follow PyTorch's ``nn.Sequential``: "<index>.<name>",
    e.g. "0.weight", "3.running_mean".
    """

    def __init__(
        self,
        layers: list[Layer] | tuple[Layer, ...],
        input_shape: tuple[int, ...] | None = None,
        dtype: str | np.dtype = "float32",
        seed: np.random.Generator | int | None = None,
    ) -> None:
        layers = list(layers)
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {index} is {type(layer).__name__}, not a convnp layer")
        if not layers:
            raise ValueError("Sequential: needs at least one layer")
        self.layers: list[Layer] = layers
        try:
            self.dtype = np.dtype(dtype)
        except TypeError as error:
            raise TypeError(f"Sequential: dtype must be 'float32' or 'float64', got {dtype!r}") from error
        if not np.issubdtype(self.dtype, np.floating):
            raise TypeError(f"Sequential: dtype must be 'float32' or 'float64', got {self.dtype}")
        self.seed = seed
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        for index, layer in enumerate(self.layers):
            layer._label = f"{type(layer).__name__} (layer {index})"
        if input_shape is not None:
            self.build(input_shape)

    # ----------------------------------------------------------------- build
    @property
    def built(self) -> bool:
        return self.input_shape is not None

    def build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Build every layer in turn; returns the per-sample output shape."""
        rng = as_generator(self.seed)
        shape = tuple(int(d) for d in input_shape)
        self.input_shape = shape
        for layer in self.layers:
            shape = layer.build(shape, dtype=self.dtype, rng=rng)
        self.output_shape = shape
        return shape

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
            raise TypeError(f"Sequential: expected float images (or uint8 pixels 0-255), got dtype {x.dtype}")
        if not self.built:
            if x.ndim < 2:
                raise ValueError(f"Sequential: expected a batch of inputs, got shape {x.shape}")
            self.build(x.shape[1:])
        if x.ndim == len(self.input_shape) and self.input_shape[0] == 1 and x.shape[1:] == self.input_shape[1:]:
            x = x[:, None]
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"Sequential: {shape_mismatch(self.input_shape, x.shape)}")
        return x

    # ------------------------------------------------------------- computing
    def forward(self, x, training: bool = False) -> np.ndarray:
        """Run the batch through every layer. Returns the last layer's output."""
        return self.forward_layers(self.prepare_input(x), training)

    __call__ = forward

    def execution_plan(self, stop: int | None = None) -> list[Step]:
        """The steps that run ``layers[:stop]``: one layer each, or a few fused (``convnp/nn/plan.py``)."""
        return build_plan(self.layers[:stop])

    def forward_layers(
        self, x: np.ndarray, training: bool, stop: int | None = None, keep_caches: bool = True
    ) -> np.ndarray:
        """Run a prepared batch through ``layers[:stop]`` (see ``execution_plan``).

        With ``keep_caches=False`` in inference mode (``predict``, ``evaluate``:
        no backward pass follows), the layers keep nothing for a backward pass
        (and drop what an earlier pass left), which lets the batch run as one
        shard per core with each input freed once used (``engine.infer``).
        """
        plan = self.execution_plan(stop)
        if training or keep_caches:
            return engine.forward(plan, x, training)
        return engine.infer(plan, x)

    def backward(self, dlogits: np.ndarray, input_grad: bool = True, stop: int | None = None) -> np.ndarray | None:
        """Back-propagate the loss gradient; fills every ``Parameter.grad``. Returns dx.

        ``stop`` matches ``forward_layers``: back-propagate from the output of
        ``layers[stop - 1]``. With ``input_grad=False`` the input gradient is not
        computed (None is returned), which spares the first convolution's dx.
        """
        return engine.backward(self.execution_plan(stop), dlogits, input_grad)

    def train_pass(
        self, x: np.ndarray, targets: np.ndarray, loss_fn: LossFunction, stop: int | None = None
    ) -> tuple[float, np.ndarray]:
        """Forward in training mode, loss, backward: fills every ``Parameter.grad``; returns ``(loss, outputs)``.

        ``loss_fn(outputs, targets)`` returns the mean loss over the samples it
        is given and the gradient of that mean with respect to ``outputs``. The
        batch runs as one shard per core where it pays (``engine.train_pass``).
        """
        return engine.train_pass(self.execution_plan(stop), x, targets, loss_fn)

    # ----------------------------------------------------------- the logits
    def ends_in_softmax(self) -> bool:
        """Whether the output is already a softmax (a final ``Softmax`` layer, or a fused softmax activation)."""
        last = self.layers[-1]
        return isinstance(last, Softmax) or isinstance(getattr(last, "activation", None), Softmax)

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
    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for index, layer in enumerate(self.layers):
            for name, param in layer.named_parameters():
                yield f"{index}.{name}", param

    def parameters(self) -> list[Parameter]:
        return [param for _, param in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        for index, layer in enumerate(self.layers):
            for name, buffer in layer.named_buffers():
                yield f"{index}.{name}", buffer

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def zero_grad(self) -> None:
        for param in self.parameters():
            param.grad = None

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer, in layer order, PyTorch-style keys."""
        self._require_built("state_dict")
        state: OrderedDict[str, np.ndarray] = OrderedDict()
        for index, layer in enumerate(self.layers):
            for name, param in layer.named_parameters():
                state[f"{index}.{name}"] = param.data.copy()
            for name, buffer in layer.named_buffers():
                state[f"{index}.{name}"] = buffer.copy()
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers (cast to the model's dtype).

        Accepts a PyTorch ``nn.Sequential`` state_dict converted to arrays
        (``num_batches_tracked`` is ignored). With ``strict`` (default), missing
        and unexpected keys raise ``KeyError`` naming them; a shape mismatch
        raises ``ValueError``. Nothing is changed unless every array fits.
        """
        self._require_built("load_state_dict")
        targets: dict[str, tuple[Layer, str, bool]] = {}
        for index, layer in enumerate(self.layers):
            for name, _ in layer.named_parameters():
                targets[f"{index}.{name}"] = (layer, name, True)
            for name, _ in layer.named_buffers():
                targets[f"{index}.{name}"] = (layer, name, False)
        given = {k: v for k, v in state.items() if not k.endswith(_IGNORED_KEY_SUFFIXES)}
        missing = [k for k in targets if k not in given]
        unexpected = [k for k in given if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(f"Sequential.load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        staged = {}
        for key, (layer, name, _) in targets.items():
            if key not in given:
                continue
            value = np.asarray(given[key])
            current = getattr(layer, name)
            current_shape = current.data.shape if isinstance(current, Parameter) else current.shape
            if value.shape != current_shape:
                raise ValueError(
                    f"Sequential.load_state_dict: {key} ({layer.name}) expects shape {current_shape}, got {value.shape}"
                )
            staged[key] = value.astype(self.dtype, copy=True)
        for key, value in staged.items():
            layer, name, is_param = targets[key]
            if is_param:
                getattr(layer, name).data = value
            else:
                setattr(layer, name, value)

    def astype(self, dtype) -> Sequential:
        """Cast every parameter and buffer in place; returns the model."""
        self.dtype = np.dtype(dtype)
        for layer in self.layers:
            layer.astype(self.dtype)
        return self

    # --------------------------------------------------------------- access
    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise RuntimeError(
                f"Sequential.{what}: the model is not built yet; pass input_shape= or run a batch through it"
            )

    def summary(self) -> str:
        """A table of layers, output shapes and parameter counts."""
        self._require_built("summary")
        rows = [("#", "Layer", "Output shape", "Params")]
        for index, layer in enumerate(self.layers):
            rows.append((str(index), layer.short_repr(), str(layer.output_shape), f"{layer.num_parameters():,}"))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        line = "-" * (sum(widths) + 6)
        text = [f"Sequential: input {self.input_shape}, dtype {self.dtype}", line]
        for i, row in enumerate(rows):
            cells = [row[0].rjust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2]), row[3].rjust(widths[3])]
            text.append("  ".join(cells))
            if i == 0:
                text.append(line)
        text += [line, f"Total parameters: {self.num_parameters():,}"]
        return "\n".join(text)

    def __repr__(self) -> str:
        inner = ",\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"

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

    def evaluate(self, x, y, batch_size: int = 256, loss: str = "cross_entropy") -> dict[str, float]:
        """``{"loss": mean loss, "accuracy": fraction correct}`` in inference mode, in batches."""
        from convnp.training import evaluate

        return evaluate(self, x, y, batch_size=batch_size, loss=loss)

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (N, classes), computed in batches in inference mode."""
        from convnp.training import predict

        return predict(self, x, batch_size=batch_size)

    def save(self, path, optimizer=None):
        """Write the model (and optionally an optimizer's state) to one ``.npz`` file, atomically."""
        return save_model(self, path, optimizer=optimizer)
