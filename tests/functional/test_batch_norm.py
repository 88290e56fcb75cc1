"""The chunked batch norm and batch norm + ReLU against the channel-by-channel twins, PyTorch and finite differences.

Random configurations (2-D and 4-D inputs, channels-last memory or not, 1 to 70
channels, images whose positions have few or many divisors, training and
inference, with and without running statistics or an affine map), run in one
piece, in many chunks and in several slices, float64 to 1e-12.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from convnp.backend import batched, threads
from convnp.functional import naive
from convnp.functional.activations import relu_backward, relu_forward
from convnp.functional.batch_norm import (
    batch_norm_backward,
    batch_norm_forward,
    batch_norm_relu_backward,
    batch_norm_relu_forward,
)
from convnp.nn.shards import ShardGroup
from tests.helpers import numeric_vjp

TOLERANCE = 1e-12


def assert_close(actual, expected, tolerance=TOLERANCE, name=""):
    """Equal to ``tolerance`` relative to the array's largest value (entries near 0 come from cancellation)."""
    if expected is None:
        assert actual is None, name
        return
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale, err_msg=name)


def random_case(seed: int) -> dict:
    """A batch norm configuration drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    channels = int(rng.choice([1, 3, 16, 17, 64, 70]))
    if seed % 4 == 0:
        shape = (int(rng.integers(2, 40)), channels)
    else:
        height, width = (int(rng.integers(1, 10)), int(rng.integers(1, 10)))
        shape = (int(rng.integers(1, 9)), channels, height, width)
    if np.prod(shape) // channels < 2:
        shape = (shape[0] + 2, *shape[1:])
    x = rng.standard_normal(shape) * rng.uniform(0.1, 4.0) + rng.uniform(-10, 10)
    if len(shape) == 4 and seed % 3:  # what convolutions produce: channels-last memory
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    affine = seed % 5 != 0
    return {
        "x": x,
        "weight": rng.uniform(-1.5, 1.5, channels) if affine else None,
        "bias": rng.standard_normal(channels) if affine else None,
        "stats": (rng.standard_normal(channels), rng.uniform(0.3, 2.0, channels)) if seed % 7 else (None, None),
        "training": bool(seed % 3 != 1),
        "dout": rng.standard_normal(shape),
    }


def run(pair, case, momentum=0.2):
    forward, backward = pair
    stats = tuple(None if s is None else s.copy() for s in case["stats"])
    out, cache = forward(case["x"], case["weight"], case["bias"], *stats, case["training"], momentum=momentum)
    return (out, *backward(case["dout"], cache), *stats)


@pytest.fixture(params=["one piece", "one image per chunk", "three slices"])
def cutting(request, monkeypatch):
    """How the batch is cut: one call, chunks of one image, or three slices of one core each."""
    saved = threads.get_num_threads()
    if request.param == "one image per chunk":
        monkeypatch.setattr(batched, "CHUNK_BYTES", 1)
    elif request.param == "three slices":
        monkeypatch.setattr(threads, "MIN_ELEMENTS", 0)
        threads.set_num_threads(3)
    yield request.param
    threads.set_num_threads(saved)


@pytest.mark.parametrize("seed", range(40))
def test_batch_norm_equals_the_channel_by_channel_twin(cutting, seed):
    case = random_case(seed)
    names = ["out", "dx", "dweight", "dbias", "running_mean", "running_var"]
    fast = run((batch_norm_forward, batch_norm_backward), case)
    slow = run((naive.batch_norm_forward, naive.batch_norm_backward), case)
    for name, actual, expected in zip(names, fast, slow, strict=True):
        assert_close(actual, expected, name=name)
    if case["x"].ndim == 4:  # channels-last memory, as the next convolution reads it best
        assert fast[0].transpose(0, 2, 3, 1).flags.c_contiguous and fast[1].transpose(0, 2, 3, 1).flags.c_contiguous


@pytest.mark.parametrize("seed", range(40))
def test_batch_norm_relu_equals_batch_norm_then_relu(cutting, seed):
    case = random_case(seed)
    fused = run((batch_norm_relu_forward, batch_norm_relu_backward), case)
    twin = run((naive.batch_norm_relu_forward, naive.batch_norm_relu_backward), case)
    for name, actual, expected in zip(["out", "dx", "dweight", "dbias", "mean", "var"], fused, twin, strict=True):
        assert_close(actual, expected, name=name)
    # The fast unfused pair composed: the ReLU changes no value of batch norm's output.
    normalized, cache = batch_norm_forward(case["x"], case["weight"], case["bias"], None, None, True)
    clipped, relu_cache = relu_forward(normalized)
    out, fused_cache = batch_norm_relu_forward(case["x"], case["weight"], case["bias"], None, None, True)
    np.testing.assert_array_equal(out, clipped)
    composed = batch_norm_backward(relu_backward(case["dout"], relu_cache), cache)
    for actual, expected in zip(batch_norm_relu_backward(case["dout"], fused_cache), composed, strict=True):
        assert_close(actual, expected)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(5, 3), (3, 4, 3, 5), (2, 2, 7, 7)])
def test_batch_norm_relu_gradients_match_finite_differences(training, shape):
    rng = np.random.default_rng(len(shape) + training)
    x = rng.standard_normal(shape)
    weight, bias = rng.uniform(0.5, 1.5, shape[1]), rng.standard_normal(shape[1]) * 0.3
    running = rng.standard_normal(shape[1]), rng.uniform(0.5, 2.0, shape[1])
    dout = rng.standard_normal(shape)

    def forward():
        stats = running[0].copy(), running[1].copy()
        return batch_norm_relu_forward(x, weight, bias, *stats, training)[0]

    out, cache = batch_norm_relu_forward(x, weight, bias, *running, training)
    assert 0 < np.count_nonzero(out) < out.size  # both sides of the kink
    dx, dweight, dbias = batch_norm_relu_backward(dout, cache)
    for array, grad in ((x, dx), (weight, dweight), (bias, dbias)):
        np.testing.assert_allclose(grad, numeric_vjp(forward, array, dout), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu_matches_torch(seed, training):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(300 + seed)
    channels = int(rng.integers(1, 20))
    shape = (int(rng.integers(1, 5)), channels, int(rng.integers(2, 9)), int(rng.integers(1, 9)))
    x = np.ascontiguousarray(rng.standard_normal(shape).transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    weight, bias = rng.uniform(0.5, 1.5, channels), rng.standard_normal(channels)
    running_mean, running_var = rng.standard_normal(channels), rng.uniform(0.5, 2.0, channels)
    dout = rng.standard_normal(shape)
    t_mean, t_var = torch.tensor(running_mean), torch.tensor(running_var)
    out, cache = batch_norm_relu_forward(x, weight, bias, running_mean, running_var, training, 0.3, 1e-4)
    dx, dweight, dbias = batch_norm_relu_backward(dout, cache)

    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (np.ascontiguousarray(x), weight, bias))
    expected = torch.relu(torch.nn.functional.batch_norm(tx, t_mean, t_var, tw, tb, training, 0.3, 1e-4))
    expected.backward(torch.tensor(dout))
    for actual, wanted in ((out, expected), (dx, tx.grad), (dweight, tw.grad), (dbias, tb.grad)):
        assert_close(actual, wanted.detach().numpy(), tolerance=1e-10)
    assert_close(running_mean, t_mean.numpy())
    assert_close(running_var, t_var.numpy())


def test_the_variance_keeps_its_digits_far_from_zero(monkeypatch):
    """The chunks' squared deviations combine about the batch's mean: no E[x**2] - mean**2 cancellation."""
    monkeypatch.setattr(batched, "CHUNK_BYTES", 1)  # every image its own chunk, each with its own mean
    rng = np.random.default_rng(5)
    x = 1e6 + rng.standard_normal((6, 2, 5, 5)) * np.array([1e-3, 1.0]).reshape(1, 2, 1, 1)
    x[:3] += 1e-2  # chunk means apart from the batch's
    mean, var = np.zeros(2), np.ones(2)
    batch_norm_forward(x, None, None, mean, var, True, momentum=1.0)
    expected = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(var, expected, rtol=1e-12)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-15)


def test_a_constant_channel_is_exactly_its_bias_and_relu_clips_it():
    x = np.random.default_rng(6).standard_normal((4, 3, 2, 2))
    x[:, 1] = 3.0
    bias = np.array([0.1, -0.25, 0.3])
    out, cache = batch_norm_relu_forward(x, np.ones(3), bias, None, None, True)
    assert np.all(out[:, 1] == 0.0)  # x_hat = 0 exactly, max(-0.25, 0) = 0
    dx, dweight, dbias = batch_norm_relu_backward(np.ones_like(x), cache)
    assert np.all(dx[:, 1] == 0.0) and dweight[1] == 0.0 and dbias[1] == 0.0  # the ReLU stopped it all


def shards_of(forward, backward, x, dout, bounds, weight, bias):
    """The pair run as one thread per shard of ``x`` (``ShardGroup``), the first keeping running statistics."""
    group = ShardGroup(bounds)
    running = (np.zeros(x.shape[1]), np.ones(x.shape[1]))
    results = [None] * group.count

    def shard(index):
        context = group.context(index)
        rows = slice(context.start - group.offset, context.stop - group.offset)
        stats = running if index == 0 else (None, None)
        out, cache = forward(x[rows], weight, bias, *stats, True, reduce=context.sum)
        results[index] = (out, *backward(dout[rows], cache))

    workers = [threading.Thread(target=shard, args=(i,)) for i in range(group.count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    outs, dxs, dweights, dbiases = zip(*results, strict=True)
    return np.concatenate(outs), np.concatenate(dxs), sum(dweights), sum(dbiases), *running


@pytest.mark.parametrize("bounds", [[0, 4, 9], [0, 1, 7, 9], [0, 0, 9]], ids=["halves", "uneven", "an empty shard"])
@pytest.mark.parametrize("relu", [False, True])
def test_shards_exchange_the_sums_of_the_whole_batch(bounds, relu):
    """Counts, sums and squared deviations, then the gradient's sums, added over the shards in order."""
    rng = np.random.default_rng(7)
    shape = (9, 5, 3, 4)
    x = np.ascontiguousarray((rng.standard_normal(shape) * 2 + 1).transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    dout = rng.standard_normal(shape)
    weight, bias = rng.standard_normal(5), rng.standard_normal(5)
    pair = (batch_norm_relu_forward, batch_norm_relu_backward) if relu else (batch_norm_forward, batch_norm_backward)
    twin = (naive.batch_norm_relu_forward, naive.batch_norm_relu_backward) if relu else (
        naive.batch_norm_forward, naive.batch_norm_backward)  # fmt: skip
    whole = run(pair, {"x": x, "weight": weight, "bias": bias, "stats": (np.zeros(5), np.ones(5)),
                       "training": True, "dout": dout}, momentum=0.1)  # fmt: skip
    for forward, backward in (pair, twin):
        sharded = shards_of(forward, backward, x, dout, bounds, weight, bias)
        for name, actual, expected in zip(["out", "dx", "dweight", "dbias", "mean", "var"], sharded, whole):
            assert_close(actual, expected, name=name)


def test_the_cache_keeps_x_not_a_copy_and_names_inv_std():
    x = np.random.default_rng(8).standard_normal((3, 4, 4, 2)).transpose(0, 3, 1, 2)  # channels-last, as convs give
    _, cache = batch_norm_forward(x, None, None, None, None, True)
    assert np.shares_memory(cache["x_rows"], x) and "x_hat" not in cache
    np.testing.assert_allclose(cache["inv_std"], 1 / np.sqrt(x.var(axis=(0, 2, 3)) + 1e-5), rtol=1e-13)


@pytest.mark.parametrize("owner, call", [
    ("batch_norm_relu_forward", lambda x: batch_norm_relu_forward(x[:, 0, 0, 0], None, None, None, None, True)),
    ("batch_norm_relu_forward", lambda x: batch_norm_relu_forward(x[:1, :, :1, :1], None, None, None, None, True)),
    ("batch_norm_relu_forward", lambda x: batch_norm_relu_forward(x, np.ones(2), None, None, None, True)),
    ("batch_norm_relu_backward", lambda x: batch_norm_relu_backward(
        x[:1], batch_norm_relu_forward(x, None, None, None, None, True)[1])),
])  # fmt: skip
def test_batch_norm_relu_names_itself_in_errors(owner, call):
    x = np.random.default_rng(9).standard_normal((2, 3, 2, 2))
    with pytest.raises(ValueError, match=owner):
        call(x)
