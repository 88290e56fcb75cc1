"""Checkpoint a whole ``fit`` run and continue it bit for bit after an interruption.

The checkpoint is an ordinary model file (``convnp.serialization.save``, so it
is written atomically and ``convnp.load`` reads it) whose JSON ``extra`` holds
the rest of the run: the position, every random state, the history, whether a
callback stopped the run, and the callbacks' states, whose arrays (the best
weights of ``EarlyStopping``) are entries of their own beside it
("extra/callbacks.<index>.<key>"). Ctrl-C is deferred to the next batch boundary
(``DeferredInterrupt``) so that a checkpoint always describes a whole number of
batches.

Under MPI rank 0 alone writes the checkpoint, and every rank waits until it is
written (so a stop that follows never cuts the writing short); every rank
reads it to resume, and all of them must see the file.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from convnp.callbacks.base import Callback
from convnp.callbacks.errors import TrainingDivergedError
from convnp.callbacks.run_state import RunState, random_layers
from convnp.distributed import on_every_rank, world
from convnp.serialization import (
    ModelFileError,
    architecture,
    extra_arrays,
    json_default,
    load_file,
    model_path,
    model_state,
    optimizer_state,
    save,
)

CHECKPOINT_KIND = "fit-checkpoint"


class BackupAndRestore(Callback):
    """Write the run to ``path`` at every epoch end and on Ctrl-C; continue from it on start.

    The checkpoint holds the model, the optimizer state, every random state
    (shuffling, augmentation, each Dropout layer's generator), the position
    (epoch, batch, and the epoch's running loss and accuracy), the history so
    far, whether a callback stopped the run (``model.stop_training``), the
    ``state_dict()`` of every callback that has one and the ``state_arrays()``
    of every callback that has those (the best weights of ``EarlyStopping``),
    and the data layout. It is only ever written from finite parameters: otherwise
    ``TrainingDivergedError`` stops the run and the file on disk stays the last
    good one.

    With ``resume=True`` and ``path`` present, the run first continues from the
    checkpoint: it then ends with the same weights, bit for bit, as one that
    was never interrupted. A checkpoint of another model, optimizer class or
    data layout is refused (``ValueError``) before anything changes; a damaged
    one raises ``ModelFileError``.

    ``fit(checkpoint=PATH, resume=...)`` adds one after the other callbacks;
    one passed in ``callbacks`` should also come last, so that it saves the
    state the others reach at an epoch end.
    """

    def __init__(self, path: str | os.PathLike, resume: bool = True) -> None:
        self.path = model_path(path)
        self.resume = resume

    def set_context(self, model, optimizer, run: RunState) -> None:
        super().set_context(model, optimizer, run)
        run.checkpoint = self.path

    def on_train_begin(self) -> None:
        # Last in the list, so the other callbacks' on_train_begin (which may reset them) comes first.
        if self.resume and self._exists_on_every_rank():
            self._restore()

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self._write(epoch)

    def on_interrupt(self) -> None:
        self._write(self.run.epoch)

    def _write(self, epoch: int) -> None:
        """Save the run at its position; ``epoch`` (0-based) is the one the parameters come from."""
        if not parameters_finite(self.model):  # the same answer on every rank: the ranks hold the same weights
            raise on_every_rank(
                TrainingDivergedError(
                    f"fit: the parameters became NaN or infinite during epoch {epoch + 1}; {self.path} was not "
                    "overwritten. Try a lower learning rate or clip_norm=1.0.",
                    epoch=epoch + 1,
                )
            )
        run = self.run
        states, arrays = callback_states(run.callbacks)
        extra = {
            "kind": CHECKPOINT_KIND,
            "epoch": run.epoch,
            "batch": run.batch,
            "data": run.data_spec,
            "partial": run.partial,
            "rng": rng_states(self.model, run),
            "history": run.history.to_dict(),
            "stop_training": bool(getattr(self.model, "stop_training", False)),
            "callbacks": states,
        }
        communicator = world()
        if communicator.is_main:
            save(self.model, self.path, optimizer=self.optimizer, extra=extra, extra_arrays=arrays)
        communicator.barrier(f"fit: waiting for rank 0 to write {self.path}")

    def _exists_on_every_rank(self) -> bool:
        """Whether the checkpoint is there; under MPI every rank must see it, or none."""
        exists = self.path.exists()
        communicator = world()
        if communicator.size == 1:
            return exists
        seen = int(communicator.sum_in_rank_order(np.array(int(exists)), "fit: looking for the checkpoint"))
        if 0 < seen < communicator.size:
            raise on_every_rank(
                FileNotFoundError(
                    f"fit: {seen} of {communicator.size} MPI ranks see the checkpoint {self.path}; every rank reads "
                    "it to resume: keep the run folder on a file system every host shares, or copy it to each host"
                )
            )
        return seen == communicator.size

    def _restore(self) -> None:
        run = self.run
        # Everything is read and checked before the model or the optimizer changes.
        saved, state, optimizer_state_dict, arrays = read_checkpoint(
            self.path, self.model, self.optimizer, run.data_spec
        )
        # The callbacks come after the optimizer: a scheduler's state sets the optimizer's learning rate.
        restore_training_state(
            self.model,
            self.optimizer,
            state,
            optimizer_state_dict,
            lambda: restore_callback_states(run.callbacks, saved.get("callbacks"), arrays),
        )
        run.history.load_records(saved["history"])
        run.epoch, run.batch, run.partial = int(saved["epoch"]), int(saved["batch"]), saved.get("partial")
        self.model.stop_training = bool(saved.get("stop_training", False))
        restore_rng_states(self.model, run, saved["rng"])


# ---------------------------------------------------------------- Ctrl-C
class DeferredInterrupt:
    """Turns Ctrl-C into a flag checked between batches, so a checkpoint is never half-updated.

    A second Ctrl-C interrupts at once. Outside the main thread, signals cannot
    be caught and Ctrl-C behaves as usual. The previous handler comes back on exit.
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


# ---------------------------------------------------------------- callback states
def callback_states(callbacks: list) -> tuple[list, dict[str, np.ndarray]]:
    """The callbacks' states as a checkpoint keeps them.

    Returns each callback's ``state_dict()`` (None for one without it) and the
    arrays of those with ``state_arrays()``, keyed "callbacks.<index>.<key>".
    """
    states = [callback.state_dict() if hasattr(callback, "state_dict") else None for callback in callbacks]
    arrays = {}
    for index, callback in enumerate(callbacks):
        if hasattr(callback, "state_arrays"):
            arrays.update({f"callbacks.{index}.{key}": value for key, value in callback.state_arrays().items()})
    return states, arrays


def restore_callback_states(callbacks: list, states, arrays: dict[str, np.ndarray]) -> None:
    """Give each callback its saved ``state_dict`` and arrays (see ``callback_states``)."""
    for callback, state in zip(callbacks, states or []):
        if state is not None and hasattr(callback, "load_state_dict"):
            callback.load_state_dict(state)
    for index, callback in enumerate(callbacks):
        if hasattr(callback, "load_state_arrays"):
            prefix = f"callbacks.{index}."
            callback.load_state_arrays({key[len(prefix) :]: v for key, v in arrays.items() if key.startswith(prefix)})


# ---------------------------------------------------------------- random states
def rng_states(model, run: RunState) -> dict:
    """Every random state at the run's position: shuffling (at the epoch start), augmentation, each Dropout layer."""
    return {
        "shuffle": run.shuffle_state,
        "augment": run.augment_rng.bit_generator.state,
        "layers": [layer.rng.bit_generator.state for layer in random_layers(model)],
    }


def restore_rng_states(model, run: RunState, states: dict) -> None:
    """Put back what ``rng_states`` returned."""
    run.shuffle_rng.bit_generator.state = states["shuffle"]
    run.shuffle_state = run.shuffle_rng.bit_generator.state
    run.augment_rng.bit_generator.state = states["augment"]
    for layer, state in zip(random_layers(model), states["layers"]):
        layer.rng.bit_generator.state = state


# ---------------------------------------------------------------- the file
def parameters_finite(model) -> bool:
    """Whether every parameter and buffer of ``model`` is finite."""
    return all(bool(np.isfinite(array).all()) for array in model.state_dict().values())


def _same_architecture(model, meta: dict) -> str | None:
    """None when ``meta`` describes ``model``'s architecture, else what differs."""
    mine = json.loads(json.dumps(architecture(model), default=json_default))
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


def read_checkpoint(path: Path, model, optimizer, data_spec: dict) -> tuple[dict, dict, dict | None, dict]:
    """Read and check a fit checkpoint against this run; changes nothing.

    Returns ``(saved run, model state, optimizer state, the arrays saved with
    the run)``. Raises
    ``ModelFileError`` for a damaged file and ``ValueError`` for a checkpoint
    of another model, a plain model file, or another data layout.
    """
    meta, arrays = load_file(path)
    saved = meta.get("extra")
    if not isinstance(saved, dict) or saved.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"fit: {path} is a model file, not a fit checkpoint (written by fit(checkpoint=...))")
    missing = [key for key in ("epoch", "batch", "rng", "history") if key not in saved]
    if missing:
        raise ModelFileError(f"fit: the checkpoint {path} lacks {missing}")
    difference = _same_architecture(model, meta)
    if difference is not None:
        raise ValueError(f"fit: the checkpoint {path} was written for a different model: {difference}")
    saved_spec = saved.get("data")
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
    return saved, model_state(arrays), optimizer_state(meta, arrays), extra_arrays(arrays)


def restore_training_state(
    model, optimizer, state: dict, optimizer_state_dict: dict | None, restore_callbacks: Callable[[], None]
) -> None:
    """Load the model's and the optimizer's state, then ``restore_callbacks()``, together.

    On any error the model and the optimizer stay as they were (callbacks
    start afresh at the next ``on_train_begin`` anyway).
    """
    model_before, optimizer_before = model.state_dict(), optimizer.state_dict()
    optimizer_changed = False
    try:
        model.load_state_dict(state)
        if optimizer_state_dict is not None:
            optimizer.load_state_dict(optimizer_state_dict)  # checks everything before it changes anything
            optimizer_changed = True
        restore_callbacks()
    except BaseException:
        model.load_state_dict(model_before)
        if optimizer_changed:
            optimizer.load_state_dict(optimizer_before)
        raise
