"""``Sequential``: a stack of layers run in order, forward and backward."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

import numpy as np

from convnp._random import as_generator
from convnp.functional import threads
from convnp.functional.threads import parallel_over_batch, single_threaded_blas, slice_bounds
from convnp.nn.activations import ReLU, Softmax
from convnp.nn.conv import Conv2D
from convnp.nn.layer import Layer, shape_mismatch
from convnp.nn.pooling import MaxPool2D
from convnp.nn.shards import ShardContext, ShardGroup
from convnp.parameter import Parameter

# Keys PyTorch keeps in a state_dict that convnp does not need.
_IGNORED_KEY_SUFFIXES = ("num_batches_tracked",)

T = TypeVar("T")
Plan = list[tuple[Layer, ...]]
LossFunction = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]


def _run_forward(plan: Plan, x: np.ndarray, training: bool) -> np.ndarray:
    """The steps of an execution plan in order (see ``Sequential.execution_plan``)."""
    for step in plan:
        if _is_conv_pool(step):
            x = step[0].forward_pooled(x, training=training)
        else:
            x = step[0].forward(x, training=training)
        for elementwise in step[_first_after_pool(step):]:
            x = elementwise.forward_elementwise(x)
    return x


def _run_backward(plan: Plan, grad: np.ndarray, input_grad: bool) -> np.ndarray | None:
    """Steps backwards; the first layer skips its dx unless ``input_grad``."""
    for index in range(len(plan) - 1, -1, -1):
        grad = _step_backward(plan[index], grad, input_grad or index > 0)
    return grad


def _step_backward(step: tuple[Layer, ...], grad: np.ndarray, input_grad: bool) -> np.ndarray | None:
    """One step of a plan backwards: its layers in reverse order (a fused conv and pool as one)."""
    first_after_pool = _first_after_pool(step)
    for layer in reversed(step[first_after_pool:]):
        grad = layer.backward(grad)
    if _is_conv_pool(step):
        return step[0].backward_pooled(grad, input_grad=input_grad)
    if input_grad:
        return step[0].backward(grad)
    step[0].backward_params(grad)
    return None


def _is_conv_pool(step: tuple[Layer, ...]) -> bool:
    return len(step) > 1 and isinstance(step[0], Conv2D)


def _first_after_pool(step: tuple[Layer, ...]) -> int:
    """Where a step's elementwise tail (the ReLU run after a pool) starts."""
    return 2 if _is_conv_pool(step) else 1


def _poolable_conv(layer: Layer) -> bool:
    return type(layer) is Conv2D and layer.activation is None


def _halving_pool(layer: Layer) -> bool:
    """A built MaxPool2D with 2x2 windows, stride 2 and no padding."""
    if type(layer) is not MaxPool2D or not layer.built or layer.kernel_size != (2, 2) or layer.stride != (2, 2):
        return False
    height, width = layer.input_shape[1:]
    return tuple(layer.output_shape[1:]) == (height // 2, width // 2)


def _in_shards(plan: Plan, batch: int, run_shard: Callable[[Plan, int, int], T], exchanges: bool = False) -> list[T]:
    """``run_shard(twins, start, end)`` on one contiguous shard of the batch per core, each with its own twins.

    The twins are ``shard_copy``s of the plan's layers: shared weights, their own caches.
    With ``exchanges``, each shard's twins get its ``ShardContext`` (``Layer.shard``)
    for what batch norm and dropout share across shards (``convnp/nn/shards.py``).
    """
    work = _pass_work(plan, batch)
    bounds = slice_bounds(batch, work)
    group = ShardGroup(bounds) if exchanges and len(bounds) > 2 else None

    def shard(start: int, end: int) -> T:
        twins = [tuple(layer.shard_copy() for layer in step) for step in plan]
        if group is None:
            return run_shard(twins, start, end)
        context = group.context(bounds.index(start))
        for step in twins:
            for twin in step:
                _set_shard(twin, context)
        try:
            return run_shard(twins, start, end)
        except threading.BrokenBarrierError:
            return None  # another shard failed: its own exception is the one raised
        except BaseException:
            group.abort()  # release the other shards from the barrier
            raise

    with single_threaded_blas():
        return parallel_over_batch(batch, work, shard)


def _pass_work(plan: Plan, batch: int) -> int:
    """The size of a pass, which grows with the values it computes: every layer's output."""
    return batch * sum(math.prod(layer.output_shape) for step in plan for layer in step)


def _self_and_sublayers(layer: Layer) -> Iterator[Layer]:
    """The layer, then its sublayers (a fused activation) and theirs."""
    yield layer
    for attr in layer.sublayer_names:
        sublayer = getattr(layer, attr, None)
        if sublayer is not None:
            yield from _self_and_sublayers(sublayer)


def _set_shard(layer: Layer, context: ShardContext) -> None:
    for part in _self_and_sublayers(layer):
        part.shard = context


def _drop_caches(layer: Layer) -> None:
    for part in _self_and_sublayers(layer):
        part.cache = None


def _batch_independent(layer: Layer) -> bool:
    return all(part.batch_independent for part in _self_and_sublayers(layer))


def _shardable(layer: Layer) -> bool:
    """Whether a training pass can run this layer in shards: it treats samples alone or exchanges the rest."""
    return all(part.batch_independent or part.shard_aware for part in _self_and_sublayers(layer))


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
            raise TypeError(
                f"Sequential: expected float images (or uint8 pixels 0-255), got dtype {x.dtype}"
            )
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

    def execution_plan(self, stop: int | None = None) -> list[tuple[Layer, ...]]:
        """The layers of ``layers[:stop]`` in the order they run, one step each.

        Two reorderings and one fusion, all exact (values and gradients):

        - A ``ReLU`` directly followed by a ``MaxPool2D`` runs as one step,
          (pool, relu): pooling first, then ReLU on the pooled output, a quarter
          of the values for 2x2 pooling. max(relu(z)) = relu(max(z)) since ReLU
          never decreases and is the identity on positive values, so where a
          window's maximum is positive both orders choose the same input (ties
          included), and where it is not, ReLU's zero gradient stops the
          gradient either way.
        - A ``Conv2D`` (without a fused activation) followed by 2x2 / stride 2
          max pooling, with or without a ReLU in between, runs as one step
          (conv, pool) or (conv, pool, relu): ``Conv2D.forward_pooled``
          convolves and pools a few images at a time while the convolution's
          output is still in the CPU cache (``functional/conv_pool.py``).

        Every other layer is a step of its own.
        """
        layers = self.layers[:stop]
        plan: list[tuple[Layer, ...]] = []
        index = 0
        while index < len(layers):
            layer = layers[index]
            following = layers[index + 1 : index + 3]
            if type(layer) is ReLU and following and isinstance(following[0], MaxPool2D):
                step: tuple[Layer, ...] = (following[0], layer)
            elif _poolable_conv(layer) and following and _halving_pool(following[0]):
                step = (layer, following[0])
            elif (_poolable_conv(layer) and len(following) == 2 and type(following[0]) is ReLU
                  and _halving_pool(following[1])):  # fmt: skip
                step = (layer, following[1], following[0])
            else:
                step = (layer,)
            plan.append(step)
            index += len(step)
        return plan

    def forward_layers(
        self, x: np.ndarray, training: bool, stop: int | None = None, keep_caches: bool = True
    ) -> np.ndarray:
        """Run a prepared batch through ``layers[:stop]`` (see ``execution_plan``).

        With ``keep_caches=False`` in inference mode (``predict``, ``evaluate``:
        no backward pass follows), the layers keep nothing for a backward pass
        (and drop what an earlier pass left), which lets the batch run as one
        shard per core (see ``train_pass``) with each input freed once used.
        """
        plan = self.execution_plan(stop)
        if training or keep_caches:
            with single_threaded_blas():  # every product runs inside a batch-split op (functional/threads.py)
                return _run_forward(plan, x, training)

        def run_shard(twins: Plan, start: int, end: int) -> np.ndarray:
            out = x[start:end]
            for step in twins:
                out = _run_forward([step], out, training=False)
                for layer in step:
                    _drop_caches(layer)  # nothing runs backward: free each input as soon as it is used
            return out

        for step in plan:  # an earlier pass's caches are stale now: free them before this pass
            for layer in step:
                _drop_caches(layer)
        outputs = _in_shards(plan, len(x), run_shard)
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]

    def backward(self, dlogits: np.ndarray, input_grad: bool = True, stop: int | None = None) -> np.ndarray | None:
        """Back-propagate the loss gradient; fills every ``Parameter.grad``. Returns dx.

        ``stop`` matches ``forward_layers``: back-propagate from the output of
        ``layers[stop - 1]``. With ``input_grad=False`` the input gradient is not
        computed (None is returned), which spares the first convolution's dx.
        """
        with single_threaded_blas():
            return _run_backward(self.execution_plan(stop), dlogits, input_grad)

    def train_pass(
        self, x: np.ndarray, targets: np.ndarray, loss_fn: LossFunction, stop: int | None = None
    ) -> tuple[float, np.ndarray]:
        """Forward in training mode, loss, backward: fills every ``Parameter.grad``.

        ``loss_fn(outputs, targets)`` returns the mean loss over the samples it
        is given and the gradient of that mean with respect to ``outputs``.
        Returns ``(loss, outputs)`` for the whole batch. The input gradient is
        not computed, and when the loss is not finite no gradient is stored.

        The batch is cut into one shard per core and each shard runs the whole
        pass on its own ``shard_copy`` of the layers: the cores meet once per
        step instead of once per op. Each shard's loss and gradient are
        weighted by its share of the batch, so the sum over shards (taken in
        shard order, hence reproducible) is the gradient of the batch's mean
        loss. Batch norm and dropout, which need the whole batch, exchange
        their sums and masks between the shards (``convnp/nn/shards.py``).
        A model with a layer that needs the whole batch but cannot exchange,
        and a pass too small for its exchanges to pay (the shards would meet
        more often than there is work between meetings: tiny images and
        batches), run the ordinary pass, in which each op splits the batch by
        itself when it is big enough.
        """
        plan = self.execution_plan(stop)
        layers = [layer for step in plan for layer in step]
        batch = len(x)
        exchanges = sum(not _batch_independent(layer) for layer in layers)
        # The shards meet at every layer that exchanges: each stretch of work between two
        # meetings must be worth it, by the rule that decides whether one op is split.
        worth_meeting = _pass_work(plan, batch) // (exchanges + 1) >= threads.MIN_ELEMENTS
        if not all(_shardable(layer) for layer in layers) or not worth_meeting:
            with single_threaded_blas():
                outputs = _run_forward(plan, x, training=True)
                loss, dlogits = loss_fn(outputs, targets)
                if math.isfinite(loss):
                    _run_backward(plan, dlogits, input_grad=False)
            return loss, outputs

        def run_shard(twins: Plan, start: int, end: int) -> tuple[float, np.ndarray, list[np.ndarray | None]]:
            outputs = _run_forward(twins, x[start:end], training=True)
            loss, dlogits = loss_fn(outputs, targets[start:end])
            share = (end - start) / batch
            context = twins[0][0].shard
            # With exchanges in the backward pass, all shards must agree to run it.
            finite = math.isfinite(loss) if context is None else context.all_finite(loss)
            if finite:
                if share != 1:
                    dlogits = dlogits * dlogits.dtype.type(share)
                _run_backward(twins, dlogits, input_grad=False)
            grads = [param.grad for step in twins for layer in step for param in layer.parameters()]
            return loss * share, outputs, grads

        shards = _in_shards(plan, batch, run_shard, exchanges=exchanges > 0)
        loss = math.fsum(shard[0] for shard in shards)
        outputs = np.concatenate([shard[1] for shard in shards]) if len(shards) > 1 else shards[0][1]
        if math.isfinite(loss):
            params = [param for layer in layers for param in layer.parameters()]
            for index, param in enumerate(params):
                grad = shards[0][2][index]
                for shard in shards[1:]:
                    grad = grad + shard[2][index]
                param.grad = grad
        return loss, outputs

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
    def fit(self, x, y, epochs: int = 10, batch_size: int = 32, optimizer="adam", loss: str = "cross_entropy",
            validation_data=None, callbacks=(), shuffle: bool = True, seed=None, verbose: int = 1, **options):
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

        return fit(self, x, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer, loss=loss,
                   validation_data=validation_data, callbacks=callbacks, shuffle=shuffle, seed=seed,
                   verbose=verbose, **options)

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
        from convnp.serialization import save

        return save(self, path, optimizer=optimizer)
