"""What a ``fit`` run is besides the model and the optimizer, shared by the loop and its callbacks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only for the annotation: history.py imports base.py, which imports this module
    from convnp.callbacks.history import History


def random_layers(model) -> list:
    """The layers that draw random numbers (Dropout), inside blocks too: those whose ``rng`` is a Generator."""
    return [
        part
        for layer in model.layers
        for part in layer.self_and_sublayers()
        if isinstance(getattr(part, "rng", None), np.random.Generator)
    ]


@dataclass
class RunState:
    """The data layout, the random generators, the history and the position of one ``fit`` run.

    ``fit`` creates it and gives it to every callback as ``callback.run``;
    ``BackupAndRestore`` writes it to a checkpoint and, on resume, puts it back.

    The position (``epoch``, ``batch``, ``partial``, ``shuffle_state``) is where
    a run continuing from here starts: ``fit`` advances it at every epoch end,
    and sets it to the batch reached when Ctrl-C stops the run inside an epoch.
    """

    num_samples: int
    batch_size: int
    shuffle: bool
    shuffle_rng: np.random.Generator
    augment_rng: np.random.Generator
    history: History
    #: The callbacks given to ``fit``; a checkpoint keeps the ``state_dict()`` of those that have one.
    callbacks: list
    #: The epoch under way (0-based).
    epoch: int = 0
    #: Batches of ``epoch`` already done.
    batch: int = 0
    #: Running sums over those batches: ``{"seen", "loss_sum", "correct", "seconds"}``; None at an epoch start.
    partial: dict | None = None
    #: ``shuffle_rng``'s state at the start of ``epoch``, before that epoch's permutation is drawn.
    shuffle_state: dict = field(init=False)
    #: The file a ``BackupAndRestore`` keeps for this run (None without one); fit's messages name it.
    checkpoint: Path | None = None

    def __post_init__(self) -> None:
        self.shuffle_state = self.shuffle_rng.bit_generator.state

    @classmethod
    def seeded(
        cls,
        model,
        seed: np.random.Generator | int | None,
        num_samples: int,
        batch_size: int,
        shuffle: bool,
        history: History,
        callbacks: list,
    ) -> RunState:
        """A run at its start, with generators for shuffling and augmentation and fresh ones for every Dropout layer.

        With a seed, a run is reproducible bit for bit: every stream derives from
        ``numpy.random.SeedSequence(seed)``. A Generator given as ``seed`` is
        drawn from once for that seed.
        """
        if isinstance(seed, np.random.Generator):
            seed = int(seed.integers(2**63))
        layers = random_layers(model)
        children = np.random.SeedSequence(seed).spawn(2 + len(layers))
        for layer, child in zip(layers, children[2:]):
            layer.rng = np.random.default_rng(child)
        shuffle_rng, augment_rng = np.random.default_rng(children[0]), np.random.default_rng(children[1])
        return cls(num_samples, batch_size, bool(shuffle), shuffle_rng, augment_rng, history, callbacks)

    @property
    def data_spec(self) -> dict:
        """The data layout a checkpoint records: a resumed run must have the same to continue the same run."""
        return {"num_samples": self.num_samples, "batch_size": self.batch_size, "shuffle": self.shuffle}

    def next_epoch(self) -> None:
        """Move the position to the start of the next epoch (whose permutation is drawn next)."""
        self.epoch += 1
        self.batch, self.partial = 0, None
        self.shuffle_state = self.shuffle_rng.bit_generator.state
