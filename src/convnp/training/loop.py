"""The training loop: ``fit`` and ``train_step``.

``fit`` checks the data and picks the optimizer, then for every epoch draws a
permutation and runs ``train_step`` on each minibatch (forward in training
mode, loss, backward, optimizer step), evaluates the validation data and hands
the epoch's logs to the callbacks. The side jobs are callbacks: ``History``
records the logs, ``BackupAndRestore`` (``checkpoint=``) saves and resumes the
run. What stays in the loop is what must happen between two batches: stopping
on a NaN loss and on Ctrl-C.

Under MPI (``convnp.distributed``) every rank runs this loop on the same
permutation and the same augmented global batches; ``train_step`` gives each
rank its contiguous piece of the batch and sums the gradients over the ranks.
The ranks agree on the seed and the starting weights first, and on every
decision to stop (``training/ranks.py``); rank 0 alone shows progress.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from convnp.callbacks.backup_and_restore import BackupAndRestore, DeferredInterrupt
from convnp.callbacks.base import CallbackList
from convnp.callbacks.errors import TrainingDivergedError
from convnp.callbacks.history import History
from convnp.callbacks.run_state import RunState
from convnp.distributed import BatchShard, Communicator, on_every_rank, sum_gradients, world
from convnp.optim import Optimizer, clip_grad_norm, get_optimizer
from convnp.training.checks import check_fit_options, prepare_data, prepare_validation_data
from convnp.training.evaluation import evaluate
from convnp.training.input_range import input_stats, warn_if_unfamiliar, warn_if_unscaled
from convnp.training.losses import count_correct, loss_and_grad
from convnp.training.progress import EpochProgress
from convnp.training.ranks import agreed, agreed_seed, check_rank_batches, copy_weights_from_first_rank

NO_VALIDATION = {"loss": None, "accuracy": None}


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

    Records the range and mean of ``x`` as ``model.input_stats``, and warns
    (``convnp.InputWarning``) when float images lie far outside [0, 1] or the
    validation inputs far from ``x`` (``convnp/training/input_range.py``).

    ``checkpoint=PATH`` adds a ``BackupAndRestore(PATH, resume=resume)`` after
    the other callbacks: the whole run is saved atomically at every epoch end
    and when Ctrl-C (SIGINT) stops it at a batch boundary, and ``resume=True``
    continues from ``PATH`` when it exists, ending with the same weights, bit
    for bit, as a run that was never interrupted.

    Raises
    ------
    ValueError, TypeError
        Invalid arguments or data, naming ``fit`` and the values.
    TrainingDivergedError
        The loss or the parameters became NaN or infinite; the checkpoint on
        disk (if any) is the last good one.
    KeyboardInterrupt
        After Ctrl-C, once the checkpoint (if any) has been written.

    Under MPI every rank must call ``fit`` with the same data; the batches
    must hold at least one sample per rank.
    """
    communicator = world()
    batch_size = check_fit_options(epochs, batch_size, loss, clip_norm, augment, checkpoint, resume)
    x, y = prepare_data(model, x, y, "fit", loss)
    check_rank_batches(len(x), batch_size, communicator.size)
    warn_if_unscaled(x, "fit")
    model.input_stats = input_stats(x)  # saved with the model: predict warns on inputs far from these
    validation = prepare_validation_data(model, validation_data, loss)
    if validation is not None:
        warn_if_unfamiliar(model, validation[0], "fit (validation_data)")
    optimizer = get_optimizer(optimizer, model.parameters(), lr=lr)
    seed = agreed_seed(seed, communicator)
    copy_weights_from_first_rank(model, communicator)
    verbose = verbose if communicator.is_main else 0
    history = History()
    run = RunState.seeded(model, seed, len(x), batch_size, shuffle, history, list(callbacks))
    backup = [] if checkpoint is None else [BackupAndRestore(checkpoint, resume=resume)]
    # History first, so it records the logs as computed here; the backup last, so it saves
    # the state every other callback has reached.
    hooks = CallbackList([history, *run.callbacks, *backup], model, optimizer, run)

    model.stop_training = False
    hooks.on_train_begin()  # a BackupAndRestore moves the run to its checkpoint here
    with DeferredInterrupt() as interrupt:
        for epoch in range(run.epoch, epochs):
            # A callback stopped the run at the previous epoch end (before a resume too); the ranks agree.
            if agreed(model.stop_training, communicator, "fit: agreeing on stopping early"):
                break
            order = run.shuffle_rng.permutation(len(x)) if run.shuffle else np.arange(len(x))
            hooks.on_epoch_begin(epoch)
            progress = EpochProgress(epoch, epochs, len(x), verbose)
            totals = EpochTotals(run.partial)
            for batch in range(run.batch, math.ceil(len(x) / batch_size)):
                index = order[batch * batch_size : (batch + 1) * batch_size]
                x_batch = x[index] if augment is None else augment(x[index], run.augment_rng)
                batch_loss, correct = train_step(
                    model, optimizer, x_batch, y[index], loss, label_smoothing, clip_norm, communicator
                )
                if not math.isfinite(batch_loss):
                    progress.close({"loss": batch_loss, "seconds": totals.seconds()})
                    raise loss_diverged(batch_loss, epoch, batch, x_batch, run.checkpoint)
                totals.add(len(index), batch_loss, correct)
                progress.update(len(index), totals.loss, totals.accuracy)
                hooks.on_batch_end(batch, batch_loss)
                if agreed(interrupt.requested, communicator, "fit: agreeing on Ctrl-C after a batch"):
                    stop_after_batch(epoch, batch, totals, progress, run, hooks)  # raises KeyboardInterrupt

            val = NO_VALIDATION
            if validation is not None:
                hooks.on_validation_begin()  # e.g. an ExponentialMovingAverage swaps its average in
                try:
                    val = evaluate(model, *validation, batch_size=max(batch_size, 256), loss=loss, check_inputs=False)
                finally:
                    hooks.on_validation_end()
            logs = {
                "loss": totals.loss,
                "accuracy": totals.accuracy if y.ndim == 1 else None,
                "val_loss": val["loss"],
                "val_accuracy": val["accuracy"],
                "lr": float(optimizer.lr),
                "seconds": totals.seconds(),
            }
            progress.close(logs)
            run.next_epoch()
            hooks.on_epoch_end(epoch, logs)  # History records the logs, a BackupAndRestore writes
            if agreed(interrupt.requested, communicator, "fit: agreeing on Ctrl-C after an epoch"):
                raise on_every_rank(KeyboardInterrupt(f"fit: interrupted after epoch {epoch + 1}{saved_note(run)}"))
        if agreed(interrupt.requested, communicator, "fit: agreeing on Ctrl-C"):  # not lost after the last check
            raise on_every_rank(KeyboardInterrupt("fit: interrupted"))
    hooks.on_train_end()
    return history


def train_step(
    model,
    optimizer: Optimizer,
    x_batch: np.ndarray,
    y_batch: np.ndarray,
    loss: str,
    label_smoothing: float,
    clip_norm: float | None,
    communicator: Communicator | None = None,
) -> tuple[float, int]:
    """One minibatch: forward (training mode), loss, backward, optimizer step.

    With cross-entropy, a final Softmax layer is skipped and the fused, stable
    softmax cross-entropy is applied to its input (the logits) instead. A
    non-finite loss skips the optimizer step. Returns ``(loss, number of
    correct predictions)``.

    With a ``communicator`` of several MPI ranks, ``(x_batch, y_batch)`` is the
    global batch: this rank runs its contiguous piece (``BatchShard``), the
    loss and the count are summed over the ranks, and so are the gradients
    (one ``Allreduce``) before the step, which every rank then takes alike.
    """

    def loss_fn(outputs: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        return loss_and_grad(outputs, targets, loss, label_smoothing)

    ranks = None if communicator is None or communicator.size == 1 else BatchShard.of(communicator, len(x_batch))
    with model.logits_view(loss == "cross_entropy") as stop:
        if ranks is None:
            loss_value, outputs = model.train_pass(x_batch, y_batch, loss_fn, stop=stop)
        else:
            piece = slice(ranks.start, ranks.stop)
            y_batch = y_batch[piece]
            part, outputs = model.train_pass(x_batch[piece], y_batch, loss_fn, stop=stop, ranks=ranks)
            totals = ranks.sum(np.array([part, count_correct(outputs, y_batch)], dtype=np.float64))
            loss_value, correct = float(totals[0]), int(totals[1])
    if not math.isfinite(loss_value):
        return loss_value, 0
    if ranks is not None:
        sum_gradients(model.parameters(), communicator)
    if clip_norm is not None:
        clip_grad_norm(model.parameters(), clip_norm)
    optimizer.step()
    return (loss_value, correct) if ranks is not None else (loss_value, count_correct(outputs, y_batch))


class EpochTotals:
    """Running sums over the batches of one epoch, from ``partial`` when resuming in its middle.

    loss = loss_sum / seen (each batch's mean loss weighted by its size),
    accuracy = correct / seen; seconds count from creation, plus the seconds
    the interrupted part of the epoch already took.
    """

    def __init__(self, partial: dict | None = None) -> None:
        partial = partial or {}
        self.seen = int(partial.get("seen", 0))
        self.loss_sum = float(partial.get("loss_sum", 0.0))
        self.correct = int(partial.get("correct", 0))
        self.seconds_before = float(partial.get("seconds", 0.0))
        self.started = time.perf_counter()

    def add(self, samples: int, batch_loss: float, correct: int) -> None:
        self.seen += samples
        self.loss_sum += batch_loss * samples
        self.correct += correct

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.seen, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.seen, 1)

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def to_dict(self, seconds: float) -> dict:
        """The sums as a checkpoint keeps them (``partial``)."""
        return {"seen": self.seen, "loss_sum": self.loss_sum, "correct": self.correct, "seconds": seconds}


def loss_diverged(
    batch_loss: float, epoch: int, batch: int, x_batch: np.ndarray, checkpoint: Path | None
) -> TrainingDivergedError:
    """The error for a NaN or infinite loss at ``batch`` of ``epoch`` (0-based), naming a likely cause."""
    bad_input = not np.isfinite(x_batch).all()
    cause = " (this batch's input holds NaN or inf values)" if bad_input else ""
    kept = f"; the last checkpoint, {checkpoint}, is intact" if checkpoint is not None and checkpoint.exists() else ""
    advice = "Check the data." if bad_input else "Try a lower learning rate or clip_norm=1.0."
    error = TrainingDivergedError(
        f"fit: the loss became {batch_loss} at epoch {epoch + 1}, batch {batch + 1}{cause}{kept}. {advice}",
        epoch=epoch + 1,
        batch=batch + 1,
    )
    return on_every_rank(error)  # the loss is the global batch's: every MPI rank stops here


def stop_after_batch(
    epoch: int, batch: int, totals: EpochTotals, progress: EpochProgress, run: RunState, hooks: CallbackList
) -> None:
    """Ctrl-C came during ``batch`` of ``epoch`` (0-based): record the position, let the callbacks save, stop.

    Raises ``KeyboardInterrupt`` naming where the run stopped (and the checkpoint, when one was written).
    """
    seconds = totals.seconds()
    progress.close({"loss": totals.loss, "seconds": seconds})
    run.batch, run.partial = batch + 1, totals.to_dict(seconds)
    hooks.on_interrupt()  # a BackupAndRestore writes its checkpoint
    raise on_every_rank(KeyboardInterrupt(f"fit: interrupted at epoch {epoch + 1}, batch {batch + 1}{saved_note(run)}"))


def saved_note(run: RunState) -> str:
    """What a Ctrl-C message adds when a ``BackupAndRestore`` keeps the run."""
    return f"; saved {run.checkpoint} (continue with resume=True)" if run.checkpoint is not None else ""
