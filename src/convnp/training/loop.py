"""The fit / evaluate / predict loop of ``Sequential``.

``fit`` reads top to bottom: check the data, choose the optimizer, then for
every epoch shuffle, run minibatches (forward in training mode, loss, backward,
optimizer step), evaluate on the validation data, record a History entry, run
the callbacks, and (with ``checkpoint=``) save everything needed to resume.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from convnp.optim import Optimizer, clip_grad_norm, get_optimizer
from convnp.training.checks import check_fit_options, prepare_data, prepare_validation_data
from convnp.training.evaluation import evaluate
from convnp.training.losses import count_correct, loss_and_grad
from convnp.training.progress import EpochProgress

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


class TrainingDivergedError(FloatingPointError):
    """The loss (or a parameter) became NaN or infinite during ``fit``.

    ``epoch`` and ``batch`` (1-based; ``batch`` is None when the parameters were
    found non-finite at the end of an epoch) say where. ``fit`` never writes a
    checkpoint from a diverged state: the last checkpoint on disk is the last
    good one.
    """

    def __init__(self, message: str, epoch: int | None = None, batch: int | None = None) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch


class History:
    """Per-epoch records of a ``fit`` run.

    ``history.history`` maps each of loss, accuracy, val_loss, val_accuracy, lr
    and seconds to a list with one entry per epoch (val_* are None without
    validation data). ``history["loss"]`` is a shortcut.
    """

    def __init__(self, records: dict[str, list] | None = None) -> None:
        self.history: dict[str, list] = {key: [] for key in HISTORY_KEYS}
        if records:
            for key in HISTORY_KEYS:
                self.history[key] = list(records.get(key, []))

    def append(self, logs: dict) -> None:
        for key in HISTORY_KEYS:
            self.history[key].append(logs.get(key))

    @property
    def epochs(self) -> int:
        return len(self.history["loss"])

    def __getitem__(self, key: str) -> list:
        return self.history[key]

    def __len__(self) -> int:
        return self.epochs

    def to_dict(self) -> dict[str, list]:
        return {key: list(values) for key, values in self.history.items()}

    def save(self, path: str | os.PathLike) -> None:
        """Write the records as JSON, atomically."""
        from convnp.files.atomic import atomic_write_json

        atomic_write_json(path, self.to_dict())

    def __repr__(self) -> str:
        return f"History(epochs={self.epochs}, keys={list(self.history)})"


def train_step(model, optimizer: Optimizer, x_batch, y_batch, loss: str, label_smoothing: float, clip_norm):
    """One minibatch: forward (training mode), loss, backward, optimizer step.

    With cross-entropy, a final Softmax layer is skipped and the fused, stable
    softmax cross-entropy is applied to its input (the logits) instead.
    Returns ``(loss, number of correct predictions)``.
    """

    def loss_fn(outputs: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        return loss_and_grad(outputs, targets, loss, label_smoothing)

    with model.logits_view(loss == "cross_entropy") as stop:
        loss_value, outputs = model.train_pass(x_batch, y_batch, loss_fn, stop=stop)
    if not math.isfinite(loss_value):
        return loss_value, 0
    if clip_norm is not None:
        clip_grad_norm(model.parameters(), clip_norm)
    optimizer.step()
    return loss_value, count_correct(outputs, y_batch)


# ---------------------------------------------------------------- interrupt
class DeferredInterrupt:
    """Turns Ctrl-C into a flag checked between batches, so a checkpoint is never half-updated.

    A second Ctrl-C interrupts at once. Outside the main thread, signals cannot
    be caught and Ctrl-C behaves as usual.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# ---------------------------------------------------------------- random state
def random_layers(model) -> list:
    return [layer for layer in model.layers if isinstance(getattr(layer, "rng", None), np.random.Generator)]


def seed_everything(model, seed) -> tuple[np.random.Generator, np.random.Generator]:
    """Generators for shuffling and augmentation, and fresh ones for every dropout layer.

    With a seed, a run is reproducible bit for bit: every stream derives from
    ``numpy.random.SeedSequence(seed)``.
    """
    layers = random_layers(model)
    sequence = np.random.SeedSequence(seed)
    children = sequence.spawn(2 + len(layers))
    for layer, child in zip(layers, children[2:]):
        layer.rng = np.random.default_rng(child)
    return np.random.default_rng(children[0]), np.random.default_rng(children[1])


def rng_states(model, shuffle_state: dict, augment_rng: np.random.Generator) -> dict:
    return {
        "shuffle": shuffle_state,
        "augment": augment_rng.bit_generator.state,
        "layers": [layer.rng.bit_generator.state for layer in random_layers(model)],
    }


def restore_rng_states(model, states: dict, shuffle_rng, augment_rng) -> None:
    shuffle_rng.bit_generator.state = states["shuffle"]
    augment_rng.bit_generator.state = states["augment"]
    for layer, state in zip(random_layers(model), states["layers"]):
        layer.rng.bit_generator.state = state


# ------------------------------------------------------------- checkpoints
CHECKPOINT_KIND = "fit-checkpoint"


def _same_architecture(model, meta: dict) -> str | None:
    """None when ``meta`` describes ``model``'s architecture, else what differs."""
    from convnp.serialization import _json_default, architecture

    mine = json.loads(json.dumps(architecture(model), default=_json_default))
    if meta.get("input_shape") != mine["input_shape"]:
        return f"input shape {tuple(meta.get('input_shape') or ())} in the file, {model.input_shape} here"
    if meta.get("dtype") != mine["dtype"]:
        return f"dtype {meta.get('dtype')} in the file, {mine['dtype']} here"
    theirs = meta.get("layers") or []
    if len(theirs) != len(mine["layers"]):
        return f"{len(theirs)} layers in the file, {len(mine['layers'])} here"
    for index, (saved, current) in enumerate(zip(theirs, mine["layers"])):
        if saved != current:
            return f"layer {index} is {saved} in the file, {current} here"
    return None


def read_checkpoint(path: Path, model, optimizer, data_spec: dict) -> tuple[dict, dict, dict | None]:
    """Read and check a fit checkpoint against this run; changes nothing.

    Returns ``(resume_state, model_state, optimizer_state)``. Raises
    ``ModelFileError`` for a damaged file and ``ValueError`` for a checkpoint
    of another model, a plain model file, or another data layout.
    """
    from convnp.serialization import ModelFileError, load_file, model_state, optimizer_state

    meta, arrays = load_file(path)
    resume_state = meta.get("extra")
    if not isinstance(resume_state, dict) or resume_state.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"fit: {path} is a model file, not a fit checkpoint (written by fit(checkpoint=...))")
    missing = [key for key in ("epoch", "batch", "rng", "history") if key not in resume_state]
    if missing:
        raise ModelFileError(f"fit: the checkpoint {path} lacks {missing}")
    difference = _same_architecture(model, meta)
    if difference is not None:
        raise ValueError(f"fit: the checkpoint {path} was written for a different model: {difference}")
    saved_spec = resume_state.get("data")
    if saved_spec is not None and saved_spec != data_spec:
        raise ValueError(
            f"fit: the checkpoint {path} was written for {saved_spec}, this run has {data_spec}; "
            "resuming would not continue the same run (pass resume=False to start over)"
        )
    saved_optimizer = meta.get("optimizer", {}).get("class")
    if saved_optimizer != type(optimizer).__name__:
        raise ValueError(
            f"fit: the checkpoint {path} holds {saved_optimizer} state, this run uses {type(optimizer).__name__}"
        )
    return resume_state, model_state(arrays), optimizer_state(meta, arrays)


def restore_training_state(model, optimizer, state: dict, optimizer_state_dict: dict | None) -> None:
    """Load model and optimizer state together: on any error, both stay as they were."""
    model_before = model.state_dict()
    try:
        model.load_state_dict(state)
        if optimizer_state_dict is not None:
            optimizer.load_state_dict(optimizer_state_dict)
    except BaseException:
        model.load_state_dict(model_before)
        raise


def parameters_finite(model) -> bool:
    """Whether every parameter and buffer of ``model`` is finite."""
    arrays = [param.data for param in model.parameters()] + [buffer for _, buffer in model.named_buffers()]
    return all(bool(np.isfinite(array).all()) for array in arrays)


# ---------------------------------------------------------------------- fit
def fit(
    model,
    x,
    y,
    epochs: int = 10,
    batch_size: int = 32,
    optimizer: str | Optimizer = "adam",
    loss: str = "cross_entropy",
    validation_data: tuple | None = None,
    callbacks: Iterable = (),
    shuffle: bool = True,
    seed: np.random.Generator | int | None = None,
    verbose: int = 1,
    lr: float | None = None,
    label_smoothing: float = 0.0,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    clip_norm: float | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
) -> History:
    """Train ``model`` on ``(x, y)``; see ``Sequential.fit`` for the arguments.

    With ``checkpoint=PATH`` the model, optimizer state, every RNG state, the
    history, callback states (``state_dict``) and the position (epoch, batch)
    are saved atomically at every epoch end and when Ctrl-C (SIGINT) stops the
    run at a batch boundary. ``resume=True`` continues from ``PATH`` when it
    exists: the run then ends with the same weights, bit for bit, as one that
    was never interrupted.

    Raises
    ------
    ValueError, TypeError
        Invalid arguments or data, naming ``fit`` and the values.
    TrainingDivergedError
        The loss or the parameters became NaN or infinite; the checkpoint on
        disk (if any) is the last good one.
    KeyboardInterrupt
        After Ctrl-C, once the checkpoint (if any) has been written.
    """
    from convnp.serialization import model_path, save

    batch_size = check_fit_options(epochs, batch_size, loss, clip_norm, augment, checkpoint, resume)
    checkpoint = None if checkpoint is None else model_path(checkpoint)
    x, y = prepare_data(model, x, y, "fit", loss)
    validation = prepare_validation_data(model, validation_data, loss)
    optimizer = get_optimizer(optimizer, model.parameters(), lr=lr)
    callbacks = list(callbacks)
    for callback in callbacks:
        callback.set_context(model, optimizer)
    if isinstance(seed, np.random.Generator):
        seed = int(seed.integers(2**63))
    shuffle_rng, augment_rng = seed_everything(model, seed)
    num_samples = len(x)
    data_spec = {"num_samples": num_samples, "batch_size": batch_size, "shuffle": bool(shuffle)}

    history = History()
    start_epoch, start_batch, partial = 0, 0, None
    resume_state = None
    if resume and checkpoint.exists():
        # Everything is read and checked before the model or optimizer changes.
        resume_state, state, optimizer_state_dict = read_checkpoint(checkpoint, model, optimizer, data_spec)
        restore_training_state(model, optimizer, state, optimizer_state_dict)
        history = History(resume_state["history"])
        start_epoch, start_batch = int(resume_state["epoch"]), int(resume_state["batch"])
        partial = resume_state.get("partial")

    def save_checkpoint(epoch: int, batch: int, epoch_start_shuffle_state: dict, partial_sums: dict | None) -> None:
        extra = {
            "kind": CHECKPOINT_KIND,
            "epoch": epoch,
            "batch": batch,
            "data": data_spec,
            "partial": partial_sums,
            "rng": rng_states(model, epoch_start_shuffle_state, augment_rng),
            "history": history.to_dict(),
            "callbacks": [c.state_dict() if hasattr(c, "state_dict") else None for c in callbacks],
        }
        save(model, checkpoint, optimizer=optimizer, extra=extra)

    def check_finite(epoch: int) -> None:
        # A checkpoint is only ever written from finite parameters.
        if not parameters_finite(model):
            kept = f"; {checkpoint} was not overwritten" if checkpoint is not None else ""
            raise TrainingDivergedError(
                f"fit: the parameters became NaN or infinite during epoch {epoch + 1}{kept}. "
                "Try a lower learning rate or clip_norm=1.0.",
                epoch=epoch + 1,
            )

    model.stop_training = False
    for callback in callbacks:
        callback.on_train_begin()
    if resume_state is not None:
        # After on_train_begin, which may reset a callback's state.
        for callback, state in zip(callbacks, resume_state.get("callbacks") or []):
            if state is not None and hasattr(callback, "load_state_dict"):
                callback.load_state_dict(state)
    with DeferredInterrupt() as interrupt:
        for epoch in range(start_epoch, epochs):
            if resume_state is not None and epoch == start_epoch:
                restore_rng_states(model, resume_state["rng"], shuffle_rng, augment_rng)
            epoch_start_shuffle_state = shuffle_rng.bit_generator.state
            order = shuffle_rng.permutation(num_samples) if shuffle else np.arange(num_samples)
            resuming_mid_epoch = epoch == start_epoch and start_batch > 0
            first_batch = start_batch if resuming_mid_epoch else 0
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            progress = EpochProgress(epoch, epochs, num_samples, verbose)
            started = time.perf_counter()
            seen, loss_sum, correct, seconds_before = 0, 0.0, 0, 0.0
            if resuming_mid_epoch and partial:
                seen, loss_sum, correct = int(partial["seen"]), float(partial["loss_sum"]), int(partial["correct"])
                seconds_before = float(partial.get("seconds", 0.0))
            for batch, start in enumerate(range(0, num_samples, batch_size)):
                if batch < first_batch:
                    continue
                index = order[start : start + batch_size]
                x_batch, y_batch = x[index], y[index]
                if augment is not None:
                    x_batch = augment(x_batch, augment_rng)
                batch_loss, batch_correct = train_step(
                    model, optimizer, x_batch, y_batch, loss, label_smoothing, clip_norm
                )
                if not math.isfinite(batch_loss):
                    progress.close({"loss": batch_loss, "seconds": time.perf_counter() - started})
                    bad_input = not np.isfinite(x_batch).all()
                    cause = " (this batch's input holds NaN or inf values)" if bad_input else ""
                    kept = ""
                    if checkpoint is not None and checkpoint.exists():
                        kept = f"; the last checkpoint, {checkpoint}, is intact"
                    raise TrainingDivergedError(
                        f"fit: the loss became {batch_loss} at epoch {epoch + 1}, batch {batch + 1}{cause}{kept}. "
                        + ("Check the data." if bad_input else "Try a lower learning rate or clip_norm=1.0."),
                        epoch=epoch + 1,
                        batch=batch + 1,
                    )
                seen += len(index)
                loss_sum += batch_loss * len(index)
                correct += batch_correct
                progress.update(len(index), loss_sum / seen, correct / seen)
                for callback in callbacks:
                    callback.on_batch_end(batch, batch_loss)
                if interrupt.requested:
                    elapsed = seconds_before + time.perf_counter() - started
                    progress.close({"loss": loss_sum / seen, "seconds": elapsed})
                    if checkpoint is not None:
                        check_finite(epoch)
                        sums = {"seen": seen, "loss_sum": loss_sum, "correct": correct, "seconds": elapsed}
                        save_checkpoint(epoch, batch + 1, epoch_start_shuffle_state, sums)
                        raise KeyboardInterrupt(
                            f"fit: interrupted at epoch {epoch + 1}, batch {batch + 1}; saved {checkpoint} "
                            "(continue with resume=True)"
                        )
                    raise KeyboardInterrupt(f"fit: interrupted at epoch {epoch + 1}, batch {batch + 1}")

            logs = {
                "loss": loss_sum / max(seen, 1),
                "accuracy": correct / max(seen, 1) if y.ndim == 1 else None,
                "val_loss": None,
                "val_accuracy": None,
                "lr": float(optimizer.lr),
            }
            if validation is not None:
                val = evaluate(model, *validation, batch_size=max(batch_size, 256), loss=loss)
                logs["val_loss"], logs["val_accuracy"] = val["loss"], val["accuracy"]
            logs["seconds"] = seconds_before + time.perf_counter() - started
            history.append(logs)
            progress.close(logs)
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            if checkpoint is not None:
                check_finite(epoch)
                save_checkpoint(epoch + 1, 0, shuffle_rng.bit_generator.state, None)
            if interrupt.requested:
                saved = f"; saved {checkpoint} (continue with resume=True)" if checkpoint is not None else ""
                raise KeyboardInterrupt(f"fit: interrupted after epoch {epoch + 1}{saved}")
            if model.stop_training:
                break
        if interrupt.requested:
            raise KeyboardInterrupt("fit: interrupted")
    for callback in callbacks:
        callback.on_train_end()
    return history
