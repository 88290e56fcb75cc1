"""Batch-split execution: same results with one slice or several, and the settings API."""

import numpy as np
import pytest

from convnp.backend import threads
from convnp.functional.conv import conv2d_backward, conv2d_forward
from convnp.functional.linear import linear_backward, linear_forward
from convnp.functional.normalization import batch_norm_backward, batch_norm_forward
from convnp.functional.pooling import max_pool2d_backward, max_pool2d_forward
from convnp.models import mnist_cnn


@pytest.fixture
def restore_threads():
    saved = threads.get_num_threads()
    yield
    threads.set_num_threads(saved)


def run_ops(dtype):
    """Forward and backward of the split ops on a batch big enough to be split."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 8, 18, 18)).astype(dtype)
    weight = rng.standard_normal((8, 8, 3, 3)).astype(dtype)
    bias = rng.standard_normal(8).astype(dtype)
    out, conv_cache = conv2d_forward(x, weight, bias, padding=1)
    normed, bn_cache = batch_norm_forward(out, np.ones(8, dtype), np.zeros(8, dtype), None, None, True)
    pooled, pool_cache = max_pool2d_forward(normed, 2)
    flat = pooled.reshape(16, -1)
    dense_weight = rng.standard_normal((5, flat.shape[1])).astype(dtype)
    logits, dense_cache = linear_forward(flat, dense_weight, np.zeros(5, dtype))
    dflat, ddense, _ = linear_backward(np.ones_like(logits), dense_cache)
    dnormed = max_pool2d_backward(dflat.reshape(pooled.shape), pool_cache)
    dout, _, _ = batch_norm_backward(dnormed, bn_cache)
    dx, dweight, dbias = conv2d_backward(dout, conv_cache)
    return [logits, ddense, dx, dweight, dbias]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_slice_and_several_slices_agree(restore_threads, dtype):
    threads.set_num_threads(1)
    single = run_ops(dtype)
    threads.set_num_threads(3)  # uneven slices of 16 images
    split = run_ops(dtype)
    tolerance = 1e-12 if dtype == np.float64 else 1e-4
    for a, b in zip(single, split):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)


def test_split_results_are_reproducible(restore_threads):
    threads.set_num_threads(2)
    first, second = run_ops(np.float32), run_ops(np.float32)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_parallel_over_batch_covers_the_batch_in_order(restore_threads):
    threads.set_num_threads(4)
    slices = threads.parallel_over_batch(10, 10**7, lambda start, stop: (start, stop))
    assert slices[0][0] == 0 and slices[-1][1] == 10
    assert all(a[1] == b[0] for a, b in zip(slices, slices[1:]))  # contiguous, in order
    assert threads.parallel_over_batch(10, 10, lambda start, stop: (start, stop)) == [(0, 10)]  # small: one piece


def test_a_model_trains_identically_whatever_the_thread_count(restore_threads):
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 1, 12, 12), dtype=np.float32), rng.integers(0, 10, 40)
    results = []
    for count in (1, 2):
        threads.set_num_threads(count)
        model = mnist_cnn((1, 12, 12), seed=0)
        model.fit(x, y, epochs=1, batch_size=20, verbose=0, seed=0)
        results.append(model.predict(x))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="set_num_threads"):
        threads.set_num_threads(bad)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_split_ops_work_in_a_forked_child(restore_threads):
    import multiprocessing

    threads.set_num_threads(2)
    run_ops(np.float32)  # the parent's worker threads exist now
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        result = pool.apply_async(_child_work)
        assert result.get(timeout=60) == 5


def _child_work():
    return run_ops(np.float32)[0].shape[1]


@pytest.mark.parametrize("count", [1, 2])
def test_a_model_pass_holds_blas_to_one_thread_per_slice(restore_threads, count):
    """n slices, one BLAS thread each; with one slice BLAS keeps to one thread too (one core in all)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    if not threads._blas_controllable():
        pytest.skip("NumPy's BLAS cannot be controlled here")

    def blas_counts():
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    threads.set_num_threads(count)
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_counts() == {2}
        with threads.single_threaded_blas():
            assert blas_counts() == {1}
            with threads.single_threaded_blas():  # re-entrant
                assert blas_counts() == {1}
            assert blas_counts() == {1}
        assert blas_counts() == {2}  # restored on exit
