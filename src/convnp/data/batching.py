"""Minibatches over ``(x, y)`` arrays, shuffled by a seeded Generator.

``BatchIterator`` is re-iterable like a PyTorch ``DataLoader``: every
``iter()`` is one epoch with a fresh permutation drawn from the iterator's own
Generator, so epochs differ from each other while the whole sequence of epochs
is reproducible from the seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from convnp._random import RngLike, as_generator

__all__ = ["BatchIterator", "iterate_minibatches", "stratified_split"]

Transform = Callable[..., np.ndarray]  # called as transform(x_batch, rng=generator)


class BatchIterator:
    """Iterate over ``(x_batch, y_batch)`` minibatches; each ``iter()`` is one epoch.

    Parameters
    ----------
    x : array_like
        Inputs, first axis = samples.
    y : array_like
        Targets with the same first-axis length.
    batch_size : int
        Samples per batch; the last batch is smaller unless ``drop_last``.
    shuffle : bool
        Draw a new permutation of the samples at the start of every epoch.
    drop_last : bool
        Skip the final batch when it has fewer than ``batch_size`` samples.
    rng : numpy.random.Generator, int or None
        Source of the permutations (and of ``transform``'s randomness). The
        same seed gives the same batches, epoch after epoch.
    transform : callable, optional
        Applied to each input batch as ``transform(x_batch, rng=generator)``,
        e.g. ``Augment(max_shift=2)``; targets are passed through.

    Shape:
        x: (N, ...), y: (N, ...)
        x_batch: (B, ...), y_batch: (B, ...), B = batch_size (smaller last batch)

    Notes
    -----
    Shuffled batches are copies; unshuffled batches without a transform are
    views of ``x`` and ``y`` (no copy while evaluating): do not write into them.

    Examples
    --------
    >>> batches = BatchIterator(x_train, y_train, batch_size=64, rng=0)
    >>> for epoch in range(3):
    ...     for x_batch, y_batch in batches:
    ...         ...
    """

    def __init__(
        self,
        x,
        y,
        batch_size: int = 32,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        rng: RngLike = None,
        transform: Transform | None = None,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"BatchIterator: batch_size must be an int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"BatchIterator: batch_size must be >= 1, got {batch_size}")
        self.x = np.asarray(x)
        self.y = np.asarray(y)
        if self.x.ndim == 0 or self.y.ndim == 0 or len(self.x) != len(self.y):
            raise ValueError(
                f"BatchIterator: x and y must have the same number of samples, got shapes "
                f"{self.x.shape} and {self.y.shape}"
            )
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rng = as_generator(rng)
        self.transform = transform

    @property
    def num_samples(self) -> int:
        return len(self.x)

    def __len__(self) -> int:
        """Number of batches per epoch."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)  # ceil division

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = self.rng.permutation(self.num_samples) if self.shuffle else None
        for batch_index in range(len(self)):
            start = batch_index * self.batch_size
            stop = min(start + self.batch_size, self.num_samples)
            if order is None:
                x_batch, y_batch = self.x[start:stop], self.y[start:stop]
            else:
                batch_samples = order[start:stop]
                x_batch, y_batch = self.x[batch_samples], self.y[batch_samples]
            if self.transform is not None:
                x_batch = self.transform(x_batch, rng=self.rng)
            yield x_batch, y_batch

    def __repr__(self) -> str:
        return (
            f"BatchIterator(num_samples={self.num_samples}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, transform={self.transform!r})"
        )


def iterate_minibatches(
    x,
    y,
    batch_size: int = 32,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
    rng: RngLike = None,
    transform: Transform | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of ``(x_batch, y_batch)`` minibatches.

    The function form of ``BatchIterator`` (same arguments); each call is one
    pass over the data. For several epochs from one seed, build a
    ``BatchIterator`` once or pass the same Generator to every call.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> for epoch in range(3):
    ...     for x_batch, y_batch in iterate_minibatches(x, y, 64, rng=rng):
    ...         ...
    """
    return iter(BatchIterator(x, y, batch_size, shuffle=shuffle, drop_last=drop_last, rng=rng, transform=transform))


def stratified_split(
    labels: np.ndarray, validation_split: float, seed: RngLike = 0, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a training part and a held-out validation part, drawn class by class.

    Each class c with n_c members gives round(n_c * validation_split) of them to
    validation (half rounds up), but always keeps at least one for training.
    Both index arrays come back shuffled.

    Parameters
    ----------
    labels : array_like, shape (N,)
        Integer class labels in [0, num_classes).
    validation_split : float
        The share held out, in [0, 1).
    seed : int or numpy.random.Generator
        Draws the members held out and the order; the same seed gives the same split.
    num_classes : int, optional
        Number of classes (default: labels.max() + 1).

    Returns
    -------
    (train_indices, validation_indices) : int64 arrays; together a permutation of range(N).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"stratified_split: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if isinstance(validation_split, bool) or not 0 <= validation_split < 1:
        raise ValueError(f"stratified_split: validation_split must lie in [0, 1), got {validation_split!r}")
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    rng = as_generator(seed)
    train, validation = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        count = min(int(np.floor(len(members) * validation_split + 0.5)), max(len(members) - 1, 0))
        order = rng.permutation(members)
        validation.append(order[:count])
        train.append(order[count:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(validation))
