"""``digits``: scikit-learn's embedded copy of the UCI 8x8 digits, split once with a fixed seed.

No file and no network: only scikit-learn (``pip install convnp[digits]``).
"""

from __future__ import annotations

import math

import numpy as np

from convnp._optional import require
from convnp.data.dataset_info import DIGIT_NAMES, DatasetInfo, Split

__all__ = ["DIGITS", "DIGITS_SEED", "DIGITS_TEST_FRACTION", "load_digits"]

DIGITS = DatasetInfo(
    name="digits",
    description="8x8 handwritten digits embedded in scikit-learn (UCI), no download",
    input_shape=(1, 8, 8),
    num_classes=10,
    class_names=DIGIT_NAMES,
    train_size=1437,
    test_size=360,
    files=(),
)

DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2


def _stratified_split(
    labels: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with each class split in proportion, both shuffled.

    n_test = ceil(test_fraction * N) (as scikit-learn's train_test_split); each
    class gets floor(n_c * n_test / N) test samples and the remaining ones go,
    one each, to the classes with the largest fractional parts (ties: lower
    class first), so the test set's class mix follows the whole set's.
    """
    classes, counts = np.unique(labels, return_counts=True)
    n_test = math.ceil(test_fraction * len(labels))
    exact = counts * n_test / len(labels)
    test_counts = np.floor(exact).astype(np.int64)
    leftover = n_test - int(test_counts.sum())
    by_remainder = np.argsort(-(exact - test_counts), kind="stable")
    test_counts[by_remainder[:leftover]] += 1

    train_parts, test_parts = [], []
    for cls, n_cls_test in zip(classes, test_counts, strict=True):
        members = rng.permutation(np.flatnonzero(labels == cls))
        test_parts.append(members[:n_cls_test])
        train_parts.append(members[n_cls_test:])
    # Shuffle so neither split is ordered by class.
    train_idx = rng.permutation(np.concatenate(train_parts))
    test_idx = rng.permutation(np.concatenate(test_parts))
    return train_idx, test_idx


def load_digits() -> tuple[Split, Split]:
    """scikit-learn's 1,797 8x8 digits, split 1,437 train / 360 test.

    Pixel values 0..16 are divided by 16. The split is fixed: a stratified
    shuffle (20% test per class, see ``_stratified_split``) drawn from
    ``numpy.random.default_rng(0)``, so every call and every machine get the
    same two sets.

    Shape:
        x_train: (1437, 1, 8, 8) float32 in [0, 1]; y_train: (1437,) int64
        x_test: (360, 1, 8, 8); y_test: (360,)
    """
    sklearn_datasets = require("sklearn.datasets", "the 'digits' dataset (embedded in scikit-learn)", "digits")
    bunch = sklearn_datasets.load_digits()
    images = bunch.images.astype(np.float32)[:, None] / np.float32(16.0)  # (1797, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = _stratified_split(labels, DIGITS_TEST_FRACTION, np.random.default_rng(DIGITS_SEED))
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])
