"""Checkpoints and resume: ``fit(checkpoint=PATH)`` saves everything at every epoch end and
on Ctrl-C; ``fit(checkpoint=PATH, resume=True)`` then ends with weights bit-identical to a
run that was never interrupted.

The model has Dropout and batch norm (random masks and running statistics), training
uses augmentation (its own random stream), a learning-rate schedule and an optimizer
with state (Adam moments, SGD momentum buffers); the last batch of every epoch is
smaller than the others.
"""

from __future__ import annotations

import os
import signal
from functools import cache

import numpy as np
import pytest

import convnp
from convnp import callbacks, nn, optim
from convnp.serialization import ModelFileError, load_file
from convnp.training import TrainingDivergedError

EPOCHS = 5
BATCH = 8
NUM_SAMPLES = 37  # 5 batches per epoch, the last one of 5 samples
BATCHES = -(-NUM_SAMPLES // BATCH)


def make_model(dtype: str = "float32", width: int = 4) -> convnp.Sequential:
    return convnp.Sequential(
        [
            nn.Conv2D(3, 3, padding=1),
            nn.BatchNorm2D(),
            nn.ReLU(),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Dense(width),
        ],
        input_shape=(1, 6, 6),
        dtype=dtype,
        seed=1,
    )


def dataset(dtype: str = "float32"):
    rng = np.random.default_rng(0)
    return rng.random((NUM_SAMPLES, 1, 6, 6)).astype(dtype), rng.integers(0, 4, NUM_SAMPLES)


def augment(x_batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flips and a little noise: draws from the augmentation stream."""
    flip = rng.random(len(x_batch)) < 0.5
    out = np.where(flip[:, None, None, None], x_batch[..., ::-1], x_batch)
    return out + rng.normal(0.0, 0.01, out.shape).astype(out.dtype)


def make_optimizer(kind: str, params):
    if kind == "adam":
        return optim.Adam(params, lr=0.01)
    return optim.SGD(params, lr=0.05, momentum=0.9)


def make_scheduler(kind: str, optimizer):
    if kind == "step":
        return optim.StepLR(optimizer, step_size=2, gamma=0.5)
    return optim.CosineAnnealingLR(optimizer, T_max=EPOCHS)


class Interrupt(callbacks.Callback):
    """Stops the run: ``raise`` raises KeyboardInterrupt at the end of ``epoch``;
    ``sigint`` sends SIGINT to this process after ``batch`` of ``epoch`` (``times`` times)."""

    def __init__(self, mode: str, epoch: int, batch: int = 0, times: int = 1) -> None:
        self.mode, self.epoch, self.batch, self.times = mode, epoch, batch, times
        self.current = None

    def on_epoch_begin(self, epoch: int) -> None:
        self.current = epoch

    def on_batch_end(self, batch: int, loss: float) -> None:
        if self.mode == "sigint" and (self.current, batch) == (self.epoch, self.batch):
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        if self.mode == "raise" and epoch == self.epoch:
            raise KeyboardInterrupt


def run(
    optimizer_kind: str = "adam",
    scheduler_kind: str = "step",
    checkpoint=None,
    resume: bool = False,
    interrupt: Interrupt | None = None,
    epochs: int = EPOCHS,
    dtype: str = "float32",
    model: convnp.Sequential | None = None,
):
    x, y = dataset(dtype)
    model = make_model(dtype) if model is None else model
    optimizer = make_optimizer(optimizer_kind, model.parameters())
    scheduler = make_scheduler(scheduler_kind, optimizer)
    hooks = [callbacks.LearningRateScheduler(scheduler)] + ([interrupt] if interrupt else [])
    history = model.fit(
        x, y, epochs=epochs, batch_size=BATCH, optimizer=optimizer, callbacks=hooks, seed=7, verbose=0,
        augment=augment, checkpoint=checkpoint, resume=resume,
    )  # fmt: skip
    return model, optimizer, scheduler, history


@cache
def reference(optimizer_kind: str, scheduler_kind: str, dtype: str = "float32"):
    """The uninterrupted run (computed once per configuration)."""
    return run(optimizer_kind, scheduler_kind, dtype=dtype)


def assert_identical(result, expected) -> None:
    model, optimizer, scheduler, history = result
    ref_model, ref_optimizer, ref_scheduler, ref_history = expected
    state, ref_state = model.state_dict(), ref_model.state_dict()
    assert list(state) == list(ref_state)
    for key in ref_state:
        assert state[key].dtype == ref_state[key].dtype, key
        assert np.array_equal(state[key], ref_state[key]), f"{key} differs after resume"
    opt_state, ref_opt_state = optimizer.state_dict(), ref_optimizer.state_dict()
    assert opt_state.keys() == ref_opt_state.keys()
    for key, value in ref_opt_state.items():
        assert np.array_equal(opt_state[key], value), key
    assert scheduler.state_dict() == ref_scheduler.state_dict()
    for key in ("loss", "accuracy", "lr", "val_loss"):
        assert history[key] == ref_history[key], key


def run_with_backup(path, interrupt: Interrupt | None = None):
    """``run("adam", "step")`` with a ``BackupAndRestore`` passed as the last callback instead of ``checkpoint=``."""
    x, y = dataset()
    model = make_model()
    optimizer = make_optimizer("adam", model.parameters())
    scheduler = make_scheduler("step", optimizer)
    hooks = [callbacks.LearningRateScheduler(scheduler), *([interrupt] if interrupt else []),
             callbacks.BackupAndRestore(path)]  # fmt: skip
    history = model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, optimizer=optimizer, callbacks=hooks, seed=7,
                        verbose=0, augment=augment)  # fmt: skip
    return model, optimizer, scheduler, history


def test_a_backup_and_restore_callback_resumes_like_checkpoint(tmp_path):
    path = tmp_path / "backup.npz"
    with pytest.raises(KeyboardInterrupt, match=r"epoch 2, batch 2; saved .*backup.npz"):
        run_with_backup(path, Interrupt("sigint", epoch=1, batch=1))
    assert load_file(path)[0]["extra"]["batch"] == 2
    assert_identical(run_with_backup(path), reference("adam", "step"))


def test_training_is_deterministic_and_the_interruptions_are_real():
    """Control: the same seed reproduces a run; without resume an interrupted run ends elsewhere."""
    assert_identical(run("adam", "step"), reference("adam", "step"))
    first = dict(reference("adam", "step")[0].state_dict())
    with pytest.raises(KeyboardInterrupt):
        run("adam", "step", interrupt=Interrupt("raise", epoch=1))
    restarted, *_ = run("adam", "step", epochs=EPOCHS - 2)
    assert not np.array_equal(restarted.state_dict()["0.weight"], first["0.weight"])


INTERRUPTIONS = {
    # Raised by a callback at on_epoch_end, before that epoch's checkpoint: resume redoes the epoch.
    "KeyboardInterrupt at the end of epoch 2": [Interrupt("raise", epoch=1)],
    "KeyboardInterrupt at the end of epoch 4": [Interrupt("raise", epoch=3)],
    "SIGINT in the middle of epoch 2": [Interrupt("sigint", epoch=1, batch=1)],
    "SIGINT after the first batch": [Interrupt("sigint", epoch=0, batch=0)],
    "SIGINT at the last batch of epoch 2": [Interrupt("sigint", epoch=1, batch=BATCHES - 1)],
    "SIGINT twice in one run": [Interrupt("sigint", epoch=1, batch=2), Interrupt("sigint", epoch=3, batch=0)],
}


@pytest.mark.parametrize("scheduler_kind", ["step", "cosine"])
@pytest.mark.parametrize("optimizer_kind", ["adam", "sgd"])
@pytest.mark.parametrize("case", list(INTERRUPTIONS), ids=list(INTERRUPTIONS))
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, case, optimizer_kind, scheduler_kind):
    checkpoint = tmp_path / "run.npz"
    for interrupt in INTERRUPTIONS[case]:
        with pytest.raises(KeyboardInterrupt):
            run(optimizer_kind, scheduler_kind, checkpoint, resume=True, interrupt=interrupt)
        assert checkpoint.exists()
    result = run(optimizer_kind, scheduler_kind, checkpoint, resume=True)
    assert_identical(result, reference(optimizer_kind, scheduler_kind))
    meta, _ = load_file(checkpoint)
    assert (meta["extra"]["epoch"], meta["extra"]["batch"]) == (EPOCHS, 0)


def test_float64_resume_is_bit_identical(tmp_path):
    checkpoint = tmp_path / "run64.npz"
    with pytest.raises(KeyboardInterrupt):
        run("adam", "cosine", checkpoint, interrupt=Interrupt("sigint", epoch=2, batch=3), dtype="float64")
    result = run("adam", "cosine", checkpoint, resume=True, dtype="float64")
    assert_identical(result, reference("adam", "cosine", "float64"))


def test_a_sigint_checkpoint_records_the_batch_position(tmp_path):
    checkpoint = tmp_path / "run.npz"
    with pytest.raises(KeyboardInterrupt, match=r"epoch 2, batch 2; saved .*run.npz .*resume=True"):
        run(checkpoint=checkpoint, interrupt=Interrupt("sigint", epoch=1, batch=1))
    meta, arrays = load_file(checkpoint)
    extra = meta["extra"]
    assert extra["kind"] == "fit-checkpoint"
    assert (extra["epoch"], extra["batch"]) == (1, 2)
    assert extra["partial"]["seen"] == 2 * BATCH
    assert len(extra["history"]["loss"]) == 1
    assert extra["data"] == {"num_samples": NUM_SAMPLES, "batch_size": BATCH, "shuffle": True}
    assert set(extra["rng"]) == {"shuffle", "augment", "layers"} and len(extra["rng"]["layers"]) == 1
    assert extra["callbacks"][0]["type"] == "StepLR"
    assert meta["optimizer"]["class"] == "Adam"
    assert any(key.startswith("optimizer/state.0.exp_avg") for key in arrays)


class RecordCheckpoints(callbacks.Callback):
    """At each epoch start, reads the checkpoint the previous epoch end wrote."""

    def __init__(self, path) -> None:
        self.path = path
        self.snapshots: dict[int, dict] = {}
        self.seen: list[tuple[int, int, int]] = []

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.snapshots[epoch] = self.model.state_dict()

    def on_epoch_begin(self, epoch: int) -> None:
        if epoch == 0:
            return
        meta, arrays = load_file(self.path)
        extra = meta["extra"]
        self.seen.append((extra["epoch"], extra["batch"], len(extra["history"]["loss"])))
        for key, value in self.snapshots[epoch - 1].items():
            assert np.array_equal(arrays[f"model/{key}"], value), key
        assert "optimizer" in meta and extra["rng"]["augment"]["bit_generator"] == "PCG64"


def test_a_checkpoint_is_written_at_every_epoch_end(tmp_path):
    checkpoint = tmp_path / "every.npz"
    recorder = RecordCheckpoints(checkpoint)
    x, y = dataset()
    make_model().fit(x, y, epochs=4, batch_size=BATCH, callbacks=[recorder], checkpoint=checkpoint, seed=0, verbose=0)
    assert recorder.seen == [(1, 0, 1), (2, 0, 2), (3, 0, 3)]
    assert load_file(checkpoint)[0]["extra"]["epoch"] == 4
    # A checkpoint is also an ordinary model file.
    assert isinstance(convnp.load(checkpoint), convnp.Sequential)


def test_resume_without_a_checkpoint_file_starts_fresh(tmp_path):
    result = run("sgd", "step", tmp_path / "new.npz", resume=True)
    assert_identical(result, reference("sgd", "step"))


def test_resuming_a_finished_run_trains_no_further(tmp_path):
    checkpoint = tmp_path / "done.npz"
    run("adam", "step", checkpoint)
    before = checkpoint.read_bytes()
    result = run("adam", "step", checkpoint, resume=True)
    assert_identical(result, reference("adam", "step"))
    assert checkpoint.read_bytes() == before


def test_resuming_with_more_epochs_continues_the_run(tmp_path):
    checkpoint = tmp_path / "extend.npz"
    run("sgd", "step", checkpoint, epochs=3)
    result = run("sgd", "step", checkpoint, resume=True, epochs=EPOCHS)
    assert_identical(result, reference("sgd", "step"))


def test_a_checkpoint_path_without_suffix_resumes(tmp_path):
    checkpoint = tmp_path / "nosuffix"
    with pytest.raises(KeyboardInterrupt):
        run("adam", "cosine", checkpoint, interrupt=Interrupt("raise", epoch=1))
    assert (tmp_path / "nosuffix.npz").exists()
    assert_identical(run("adam", "cosine", checkpoint, resume=True), reference("adam", "cosine"))


def test_interrupt_without_checkpoint_raises_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt, match="epoch 1, batch 3"):
        run(interrupt=Interrupt("sigint", epoch=0, batch=2))
    assert list(tmp_path.iterdir()) == []


def test_the_sigint_handler_is_restored(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    run(epochs=1)
    assert signal.getsignal(signal.SIGINT) is before
    with pytest.raises(KeyboardInterrupt):
        run(checkpoint=tmp_path / "c.npz", interrupt=Interrupt("sigint", epoch=0, batch=0))
    assert signal.getsignal(signal.SIGINT) is before


def test_a_second_sigint_stops_at_once_and_keeps_the_last_checkpoint(tmp_path):
    checkpoint = tmp_path / "twice.npz"
    recorder = RecordCheckpoints(checkpoint)
    x, y = dataset()
    model = make_model()
    with pytest.raises(KeyboardInterrupt) as info:
        model.fit(
            x, y, epochs=EPOCHS, batch_size=BATCH, callbacks=[recorder, Interrupt("sigint", 2, 1, times=2)],
            checkpoint=checkpoint, seed=0, verbose=0,
        )  # fmt: skip
    assert "saved" not in str(info.value)  # raised by the handler, before any save
    meta, arrays = load_file(checkpoint)
    assert (meta["extra"]["epoch"], meta["extra"]["batch"]) == (2, 0)
    for key, value in recorder.snapshots[1].items():
        assert np.array_equal(arrays[f"model/{key}"], value)


# ------------------------------------------------------- resume never half-loads
def written_checkpoint(tmp_path) -> object:
    checkpoint = tmp_path / "ckpt.npz"
    with pytest.raises(KeyboardInterrupt):
        run("adam", "step", checkpoint, interrupt=Interrupt("sigint", epoch=1, batch=1))
    return checkpoint


def fit_resuming(model, checkpoint, optimizer="adam", batch_size=BATCH):
    x, y = dataset()
    return model.fit(x, y, epochs=EPOCHS, batch_size=batch_size, optimizer=optimizer, checkpoint=checkpoint,
                     resume=True, seed=0, verbose=0)  # fmt: skip


@pytest.mark.parametrize(
    ("make", "fit_kwargs", "error", "message"),
    [
        (lambda: make_model(width=5), {}, ValueError, "different model: layer 6"),
        (lambda: make_model(dtype="float64"), {}, ValueError, "different model: dtype float32 in the file"),
        (lambda: make_model(), {"optimizer": "sgd"}, ValueError, "holds Adam state, this run uses SGD"),
        (lambda: make_model(), {"batch_size": 4}, ValueError, "'batch_size': 8"),
    ],
    ids=["other architecture", "other dtype", "other optimizer", "other batch size"],
)
def test_a_mismatched_resume_fails_and_leaves_the_model_alone(tmp_path, make, fit_kwargs, error, message):
    checkpoint = written_checkpoint(tmp_path)
    model = make()
    before = model.state_dict()
    with pytest.raises(error, match=message):
        fit_resuming(model, checkpoint, **fit_kwargs)
    for key, value in model.state_dict().items():
        assert np.array_equal(value, before[key]), key


def test_an_optimizer_state_that_fails_to_load_rolls_the_model_back(tmp_path, monkeypatch):
    checkpoint = written_checkpoint(tmp_path)
    model = make_model()
    before = model.state_dict()

    def refuse(self, state):
        raise ValueError("simulated optimizer failure")

    monkeypatch.setattr(optim.Adam, "load_state_dict", refuse)
    with pytest.raises(ValueError, match="simulated"):
        fit_resuming(model, checkpoint)
    for key, value in model.state_dict().items():
        assert np.array_equal(value, before[key]), key


def test_resuming_from_a_plain_model_file_is_refused(tmp_path):
    path = make_model().save(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="model file, not a fit checkpoint"):
        fit_resuming(make_model(), path)


def test_resuming_from_a_damaged_checkpoint_is_refused(tmp_path):
    checkpoint = written_checkpoint(tmp_path)
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])
    model = make_model()
    before = model.state_dict()
    with pytest.raises(ModelFileError):
        fit_resuming(model, checkpoint)
    for key, value in model.state_dict().items():
        assert np.array_equal(value, before[key]), key


def test_divergence_after_an_interrupt_keeps_the_checkpoint(tmp_path):
    """A run that diverges never overwrites the checkpoint it resumed from."""
    checkpoint = written_checkpoint(tmp_path)
    before = checkpoint.read_bytes()
    x, y = dataset()
    x[:] = np.nan
    with pytest.raises(TrainingDivergedError):
        make_model().fit(x, y, epochs=EPOCHS, batch_size=BATCH, checkpoint=checkpoint, resume=True, verbose=0)
    assert checkpoint.read_bytes() == before
