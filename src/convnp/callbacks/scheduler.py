"""Step a learning-rate scheduler at the end of every epoch."""

from __future__ import annotations

from convnp.callbacks.base import Callback


class LearningRateScheduler(Callback):
    """Call ``scheduler.step()`` after each epoch (schedulers from ``convnp.optim``).

    The scheduler must have been created on the optimizer that ``fit`` uses.
    """

    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler

    def on_train_begin(self) -> None:
        if self.optimizer is not None and getattr(self.scheduler, "optimizer", self.optimizer) is not self.optimizer:
            raise ValueError("LearningRateScheduler: the scheduler was built on a different optimizer than fit uses")

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.scheduler.step()

    def state_dict(self) -> dict:
        """The scheduler's state, saved in fit checkpoints so a resumed run continues the schedule."""
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)
