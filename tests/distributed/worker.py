"""What the MPI tests run on every rank: ``python worker.py MODE OUT [OPTIONS]`` under ``mpiexec``.

Modes:
    fit OUT [--graph] [--split]   train the test network (batch norm, dropout, augmentation, an
                                  uneven last batch) and write OUT/rank<r>.npz: history, weights,
                                  evaluate and predict on every rank; ``--split`` makes every
                                  pass split into thread shards inside each rank
    fail OUT RANK HOW             train, and at epoch 2 make rank RANK raise (HOW=raise), hang
                                  (HOW=hang), or write its process id and wait to be killed (HOW=kill)

The test process imports ``train`` from here to compute the one-process run. The jobs are
launched by ``tests/distributed/mpi.py``, always with a hard timeout, so a rank that hangs
fails its test instead of stalling CI.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from convnp import distributed, nn
from convnp.callbacks import Callback
from convnp.data import Augment

SAMPLES, VALIDATION, BATCH, EPOCHS = 53, 17, 16, 2  # 53 = 3 * 16 + 5: an uneven last batch for 2 and 3 ranks


def data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES + VALIDATION, 1, 8, 8))
    y = rng.integers(0, 3, SAMPLES + VALIDATION)
    return (x[:SAMPLES], y[:SAMPLES]), (x[SAMPLES:], y[SAMPLES:])


def network(graph: bool = False) -> nn.Network:
    """A float64 net with every layer that needs the whole batch: batch norm (2-D and 1-D) and dropout."""
    head = [nn.Flatten(), nn.Dense(16), nn.BatchNorm1D(), nn.ReLU(), nn.Dropout(0.2), nn.Dense(3)]
    if not graph:
        layers = [nn.Conv2D(4, 3, padding=1), nn.BatchNorm2D(), nn.ReLU(), nn.MaxPool2D(2), nn.Dropout(0.3), *head]
        return nn.Sequential(layers, input_shape=(1, 8, 8), dtype="float64", seed=1)
    inputs = nn.Input((1, 8, 8))
    stem = nn.ReLU()(nn.BatchNorm2D()(nn.Conv2D(4, 3, padding=1)(inputs)))
    block = nn.Residual([nn.Conv2D(4, 3, padding=1), nn.BatchNorm2D(), nn.ReLU(), nn.Dropout(0.3)])(stem)
    joined = nn.Concatenate()([block, stem])
    x = nn.MaxPool2D(2)(joined)
    for layer in head:
        x = layer(x)
    return nn.Model(inputs, x, dtype="float64", seed=1)


def train(graph: bool = False, callbacks=()) -> tuple[nn.Network, dict]:
    """Train ``network(graph)`` on ``data()``; returns the model and everything the tests compare."""
    (x, y), (x_val, y_val) = data()
    model = network(graph)
    history = model.fit(
        x, y, epochs=EPOCHS, batch_size=BATCH, optimizer="sgd", lr=0.1, validation_data=(x_val, y_val),
        augment=Augment(max_shift=1, flip=True), callbacks=list(callbacks), seed=5, verbose=0,
    )  # fmt: skip
    results = {f"history.{key}": np.array(history[key], dtype=float) for key in ("loss", "accuracy", "val_loss")}
    results["history.val_accuracy"] = np.array(history["val_accuracy"], dtype=float)
    results.update({f"weights.{key}": value for key, value in model.state_dict().items()})
    evaluated = model.evaluate(x_val, y_val, batch_size=5)
    results["evaluate"] = np.array([evaluated["loss"], evaluated["accuracy"]])
    results["predict"] = model.predict(x_val, batch_size=4)
    return model, results


class Failure(Callback):
    """At batch 2 of epoch 2, make one rank raise, hang, or wait to be killed."""

    def __init__(self, rank: int, how: str, out: Path) -> None:
        self.rank, self.how, self.out = rank, how, out
        self.epoch = 0

    def on_epoch_begin(self, epoch: int) -> None:
        self.epoch = epoch

    def on_batch_end(self, batch: int, loss: float) -> None:
        if self.epoch != 1 or batch != 1 or distributed.rank() != self.rank:
            return
        if self.how == "raise":
            raise RuntimeError(f"planted failure on rank {self.rank}")
        if self.how == "kill":
            (self.out / f"pid{self.rank}").write_text(str(os.getpid()))
        while True:  # hang, or wait for the test to kill this process
            time.sleep(1)


def main(argv: list[str]) -> None:
    mode, out = argv[0], Path(argv[1])
    if mode == "fit":
        if "--split" in argv:  # every pass worth splitting: thread shards inside each rank
            from convnp.backend import threads

            threads.MIN_ELEMENTS = 1
        _, results = train(graph="--graph" in argv)
        results["world_size"] = np.array(distributed.world_size())
        np.savez(out / f"rank{distributed.rank()}.npz", **results)
    elif mode == "fail":
        rank, how = int(argv[2]), argv[3]
        (x, y), _ = data()
        model = network()
        checkpoint = out / "checkpoint.npz"
        model.fit(x, y, epochs=4, batch_size=BATCH, callbacks=[Failure(rank, how, out)], checkpoint=checkpoint,
                  seed=5, verbose=0)  # fmt: skip
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
