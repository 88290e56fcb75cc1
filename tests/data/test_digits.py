"""load("digits"): scikit-learn's 8x8 digits with a fixed stratified split."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from convnp.data import DATASETS, load
from convnp.data.digits import _stratified_split

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def test_shapes_dtypes_range_and_sizes(digits):
    (x_train, y_train), (x_test, y_test) = digits
    assert x_train.shape == (1437, 1, 8, 8) and x_test.shape == (360, 1, 8, 8)
    assert y_train.shape == (1437,) and y_test.shape == (360,)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0  # 0..16 divided by 16
    # Every value is a multiple of 1/16, exactly representable in float32.
    np.testing.assert_array_equal(x_train * 16, np.round(x_train * 16))
    info = DATASETS["digits"]
    assert (info.train_size, info.test_size, info.input_shape) == (1437, 360, (1, 8, 8))


def test_split_is_a_partition_of_the_whole_set(digits):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    (x_train, y_train), (x_test, y_test) = digits
    rows = np.concatenate([x_train, x_test]).reshape(-1, 64) * 16
    labels = np.concatenate([y_train, y_test])
    ours = np.column_stack([rows, labels])
    theirs = np.column_stack([bunch.data, bunch.target])

    # Same multiset of (image, label) rows: nothing lost, nothing duplicated.
    def sort_rows(table):
        return table[np.lexsort(table.T[::-1])]

    np.testing.assert_array_equal(sort_rows(ours), sort_rows(theirs))
    assert len(ours) == len(theirs) == 1797


def test_split_is_stratified(digits):
    (_, y_train), (_, y_test) = digits
    # Class sizes 178 182 177 183 181 182 181 179 174 180; 360 * n_c / 1797 rounded
    # by largest remainder gives these test counts.
    assert np.bincount(y_test).tolist() == [36, 37, 35, 37, 36, 36, 36, 36, 35, 36]
    assert (np.bincount(y_train) + np.bincount(y_test)).tolist() == [
        178, 182, 177, 183, 181, 182, 181, 179, 174, 180
    ]  # fmt: skip


def test_split_is_fixed_and_shuffled(digits):
    (x_train, y_train), (x_test, y_test) = digits
    (x_train2, y_train2), (x_test2, y_test2) = load("digits")
    np.testing.assert_array_equal(x_train, x_train2)
    np.testing.assert_array_equal(y_test, y_test2)
    # Pinned: the documented split must not change between releases.
    assert y_train[:10].tolist() == [4, 2, 1, 4, 5, 3, 0, 1, 5, 0]
    # Not sorted by class.
    assert np.any(np.diff(y_train) < 0) and np.any(np.diff(y_test) < 0)


def test_stratified_split_on_toy_labels():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    train, test = _stratified_split(labels, 0.3, np.random.default_rng(5))
    # n_test = ceil(3.0) = 3; exact shares 1.8, 0.9, 0.3 -> floors 1, 0, 0, two
    # leftovers to the largest remainders (class 1: .9, class 0: .8).
    assert np.bincount(labels[test], minlength=3).tolist() == [2, 1, 0]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(10))
    again = _stratified_split(labels, 0.3, np.random.default_rng(5))
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(test, again[1])


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"convnp\[digits\]"):
        load("digits")
