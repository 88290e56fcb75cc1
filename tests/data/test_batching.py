"""BatchIterator / iterate_minibatches: coverage, sizes, seeded order."""

from __future__ import annotations

import numpy as np
import pytest

from convnp.data import BatchIterator, iterate_minibatches, stratified_split


def _data(n=23):
    x = np.arange(n * 2 * 3, dtype=np.float32).reshape(n, 1, 2, 3)  # sample i holds 6i..6i+5
    y = np.arange(n, dtype=np.int64)
    return x, y


def _order(batches) -> list[int]:
    return [int(v) for _, y_batch in batches for v in y_batch]


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_sample_exactly_once_per_epoch_and_pairs_stay_aligned(shuffle):
    x, y = _data()
    batches = BatchIterator(x, y, batch_size=5, shuffle=shuffle, rng=0)
    for _epoch in range(3):
        seen = []
        for x_batch, y_batch in batches:
            # x row i belongs to label i: shuffling moves both together.
            np.testing.assert_array_equal(x_batch[:, 0, 0, 0], y_batch * 6)
            seen.extend(y_batch.tolist())
        assert sorted(seen) == list(range(23))
        if not shuffle:
            assert seen == list(range(23))


def test_batch_sizes_and_len():
    x, y = _data(23)
    keep = BatchIterator(x, y, batch_size=5, rng=0)
    assert len(keep) == 5
    assert [len(y_batch) for _, y_batch in keep] == [5, 5, 5, 5, 3]
    drop = BatchIterator(x, y, batch_size=5, drop_last=True, rng=0)
    assert len(drop) == 4
    sizes = []
    seen = []
    for _, y_batch in drop:
        sizes.append(len(y_batch))
        seen.extend(y_batch.tolist())
    assert sizes == [5, 5, 5, 5] and len(set(seen)) == 20
    assert len(BatchIterator(x, y, batch_size=50, drop_last=True)) == 0
    assert [len(b[1]) for b in BatchIterator(x, y, batch_size=50)] == [23]
    assert list(BatchIterator(x[:0], y[:0], batch_size=4)) == []


def test_same_seed_same_order_new_order_each_epoch():
    x, y = _data()
    first = BatchIterator(x, y, batch_size=4, rng=7)
    second = BatchIterator(x, y, batch_size=4, rng=7)
    epochs_first = [_order(first) for _ in range(3)]
    epochs_second = [_order(second) for _ in range(3)]
    assert epochs_first == epochs_second
    assert epochs_first[0] != epochs_first[1]  # a fresh permutation every epoch
    assert _order(BatchIterator(x, y, batch_size=4, rng=8)) != epochs_first[0]
    # A Generator passed in is used as is: same stream as the seed it came from.
    generator = np.random.default_rng(7)
    assert _order(BatchIterator(x, y, batch_size=4, rng=generator)) == epochs_first[0]


def test_function_form_matches_the_class_with_a_shared_generator():
    x, y = _data()
    rng = np.random.default_rng(3)
    by_function = [_order(iterate_minibatches(x, y, 6, rng=rng)) for _ in range(2)]
    iterator = BatchIterator(x, y, 6, rng=3)
    assert by_function == [_order(iterator) for _ in range(2)]
    # The permutation is Generator.permutation(n): pinned so that a change is noticed.
    assert by_function[0] == np.random.default_rng(3).permutation(23).tolist()


def test_unshuffled_batches_are_in_order():
    x, y = _data(10)
    batches = list(iterate_minibatches(x, y, 4, shuffle=False))
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    np.testing.assert_array_equal(batches[2][0], x[8:10])


def test_transform_gets_the_batch_and_the_iterator_generator():
    x, y = _data()
    calls = []

    def transform(x_batch, rng):
        calls.append(rng)
        return x_batch + 1000

    batches = BatchIterator(x, y, batch_size=10, rng=1, transform=transform)
    for x_batch, y_batch in batches:
        np.testing.assert_array_equal(x_batch, x[y_batch] + 1000)
    assert len(calls) == 3 and all(rng is batches.rng for rng in calls)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"batch_size": 0}, ValueError),
        ({"batch_size": 2.5}, TypeError),
        ({"batch_size": True}, TypeError),
        ({"rng": "seed"}, TypeError),
    ],
)
def test_bad_arguments(kwargs, error):
    x, y = _data()
    with pytest.raises(error):
        BatchIterator(x, y, **kwargs)


def test_length_mismatch():
    x, y = _data()
    with pytest.raises(ValueError, match="same number of samples"):
        BatchIterator(x, y[:-1])


@pytest.mark.parametrize("share", [0.0, 0.1, 0.25, 0.5])
def test_stratified_split_holds_out_a_share_of_every_class(share):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=203)
    train, held_out = stratified_split(labels, share, seed=7)
    assert train.dtype == held_out.dtype == np.int64
    np.testing.assert_array_equal(np.sort(np.concatenate([train, held_out])), np.arange(len(labels)))
    for label in range(4):
        members = int(np.sum(labels == label))
        expected = min(int(np.floor(members * share + 0.5)), members - 1)
        assert np.sum(labels[held_out] == label) == expected
    again = stratified_split(labels, share, seed=7)
    np.testing.assert_array_equal(again[0], train)
    np.testing.assert_array_equal(again[1], held_out)
    if share:
        assert not np.array_equal(stratified_split(labels, share, seed=8)[1], held_out)


def test_stratified_split_keeps_one_of_each_class_for_training_and_counts_empty_classes():
    labels = np.array([0, 0, 2, 1, 1, 1])
    train, held_out = stratified_split(labels, 0.9, seed=0, num_classes=4)
    assert sorted(labels[train]) == [0, 1, 2]  # each class keeps one; class 3 has no members
    assert sorted(labels[held_out]) == [0, 1, 1]


@pytest.mark.parametrize(
    ("labels", "share", "error", "message"),
    [
        (np.zeros(4, np.int64), 1.0, ValueError, r"\[0, 1\)"),
        (np.zeros(4, np.int64), -0.1, ValueError, r"\[0, 1\)"),
        (np.zeros(4, np.int64), True, ValueError, r"\[0, 1\)"),
        (np.zeros(4), 0.2, TypeError, "1-D integer"),
        (np.zeros((2, 2), np.int64), 0.2, TypeError, "1-D integer"),
    ],
)
def test_stratified_split_rejects_bad_input(labels, share, error, message):
    with pytest.raises(error, match=message):
        stratified_split(labels, share)
