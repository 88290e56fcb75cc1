"""run_batched, sum_batched and map_batched cut a batch the same way; map_batched lists the chunks in order."""

import threading

import numpy as np
import pytest

from convnp.backend import map_batched, run_batched, sum_batched, threads


@pytest.fixture
def slices(monkeypatch):
    saved = threads.get_num_threads()
    monkeypatch.setattr(threads, "MIN_ELEMENTS", 0)
    yield threads.set_num_threads
    threads.set_num_threads(saved)


@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.parametrize("chunk", [None, 1, 2])
def test_map_batched_returns_every_chunk_in_batch_order(slices, count, chunk):
    slices(count)
    calls = []
    lock = threading.Lock()

    def record(first, last):
        with lock:
            calls.append((first, last))
        return (first, last)

    results = map_batched(record, 10, 10, chunk)
    assert results == sorted(calls)  # each chunk once, listed by position whatever order the slices finished
    assert [first for first, _ in results] == [0] + [last for _, last in results[:-1]] and results[-1][1] == 10
    if chunk is not None:
        assert all(last - first <= chunk for first, last in results)
    if count == 3 and chunk is None:
        assert len(results) == 3  # one call per slice
    cuts = []
    run_batched(lambda first, last: cuts.append((first, last)), 10, 10, chunk)
    assert sorted(cuts) == results  # the chunks run_batched and sum_batched cut
    total = sum_batched(lambda first, last: np.array([float(last - first)]), 10, 10, chunk)
    assert total[0] == 10.0


def test_map_batched_of_an_empty_batch_is_empty():
    assert map_batched(lambda first, last: first, 0, 0) == []
