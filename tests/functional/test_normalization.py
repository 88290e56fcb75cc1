"""Batch, group and layer norm: finite differences, PyTorch, running statistics, float32."""

import numpy as np
import pytest

from convnp.functional.normalization import (
    batch_norm_backward,
    batch_norm_forward,
    group_norm_backward,
    group_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)
from tests.helpers import check_grad, rel_error

# At least 3 values per normalised slice: with 2, x_hat is +-1 whatever x is, the
# true gradient is of order eps and central differences cannot resolve it.
BN_SHAPES = [(3, 1), (5, 3), (1, 2, 3, 3), (4, 3, 2, 5), (3, 5, 1, 1)]
GN_CASES = [((2, 4, 3, 3), 2), ((1, 6, 2, 3), 3), ((3, 4, 5), 1), ((2, 3, 2, 2), 3), ((2, 6), 2)]
LN_SHAPES = [(2, 5), (1, 3, 4), (3, 2, 3, 3)]


def close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-8, atol=1e-12)


def make(shape, seed, dtype=np.float64, param_shape=None):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    param_shape = param_shape or (shape[1],)
    weight = rng.uniform(0.5, 1.5, size=param_shape).astype(dtype)
    bias = rng.standard_normal(param_shape).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    return x, weight, bias, dout


def running_stats(channels, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal(channels).astype(dtype),
        rng.uniform(0.5, 2.0, size=channels).astype(dtype),
    )


# ------------------------------------------------------------------ batch norm
def test_batch_norm_training_standardises_each_channel():
    x, _, _, _ = make((6, 3, 4, 4), seed=0)
    out, _ = batch_norm_forward(x, None, None, None, None, training=True)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    # var / (var + eps): the biased variance of the output is just below 1
    var = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), var / (var + 1e-5), rtol=1e-12)


@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_training_gradients(shape):
    x, weight, bias, dout = make(shape, seed=sum(shape))
    running_mean, running_var = running_stats(shape[1], seed=1)

    def forward():
        # copies: the running statistics change on every training call
        return batch_norm_forward(x, weight, bias, running_mean.copy(), running_var.copy(), training=True)[0]

    _, cache = batch_norm_forward(x, weight, bias, running_mean, running_var, training=True)
    dx, dweight, dbias = batch_norm_backward(dout, cache)
    check_grad(forward, x, dout, dx)
    check_grad(forward, weight, dout, dweight)
    check_grad(forward, bias, dout, dbias)


@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_inference_gradients(shape):
    x, weight, bias, dout = make(shape, seed=sum(shape) + 1)
    running_mean, running_var = running_stats(shape[1], seed=2)

    def forward():
        return batch_norm_forward(x, weight, bias, running_mean, running_var, training=False)[0]

    _, cache = batch_norm_forward(x, weight, bias, running_mean, running_var, training=False)
    dx, dweight, dbias = batch_norm_backward(dout, cache)
    check_grad(forward, x, dout, dx)
    check_grad(forward, weight, dout, dweight)
    check_grad(forward, bias, dout, dbias)
    # running statistics are constants: dx = dout * weight / sqrt(running_var + eps)
    param_shape = (1, shape[1]) + (1,) * (len(shape) - 2)
    scale = (weight / np.sqrt(running_var + 1e-5)).reshape(param_shape)
    np.testing.assert_allclose(dx, dout * scale, rtol=1e-14)


def test_batch_norm_inference_leaves_running_stats_alone():
    x, weight, bias, _ = make((4, 3), seed=3)
    running_mean, running_var = running_stats(3, seed=3)
    before = running_mean.copy(), running_var.copy()
    out, _ = batch_norm_forward(x, weight, bias, running_mean, running_var, training=False)
    np.testing.assert_array_equal(running_mean, before[0])
    np.testing.assert_array_equal(running_var, before[1])
    expected = (x - running_mean) / np.sqrt(running_var + 1e-5) * weight + bias
    np.testing.assert_allclose(out, expected, rtol=1e-13)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_torch(seed, training):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(200 + seed)
    channels = int(rng.integers(1, 6))
    if seed % 2:
        shape = (int(rng.integers(2, 7)), channels)
    else:  # batch 1 is fine for 4-D inputs: H*W values per channel
        shape = (
            int(rng.integers(1, 4)),
            channels,
            int(rng.integers(2, 5)),
            int(rng.integers(1, 6)),
        )
    x, weight, bias, dout = make(shape, seed)
    running_mean, running_var = running_stats(channels, seed)
    t_mean, t_var = torch.tensor(running_mean), torch.tensor(running_var)
    out, cache = batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum=0.3, eps=1e-4)
    dx, dweight, dbias = batch_norm_backward(dout, cache)

    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    tout = torch.nn.functional.batch_norm(tx, t_mean, t_var, tw, tb, training=training, momentum=0.3, eps=1e-4)
    tout.backward(torch.from_numpy(dout))
    close(out, tout.detach().numpy())
    close(dx, tx.grad.numpy())
    close(dweight, tw.grad.numpy())
    close(dbias, tb.grad.numpy())
    close(running_mean, t_mean.numpy())
    close(running_var, t_var.numpy())


@pytest.mark.parametrize("shape", [(8, 3), (4, 2, 3, 3)])
def test_batch_norm_running_stats_follow_torch_over_several_steps(shape):
    torch = pytest.importorskip("torch")
    channels = shape[1]
    running_mean, running_var = np.zeros(channels), np.ones(channels)
    t_mean, t_var = (
        torch.zeros(channels, dtype=torch.float64),
        torch.ones(channels, dtype=torch.float64),
    )
    weight, bias = np.ones(channels), np.zeros(channels)
    for step in range(5):
        x, _, _, _ = make(shape, seed=step)
        batch_norm_forward(x, weight, bias, running_mean, running_var, training=True)
        torch.nn.functional.batch_norm(
            torch.tensor(x), t_mean, t_var, torch.tensor(weight), torch.tensor(bias), training=True
        )
    close(running_mean, t_mean.numpy())
    close(running_var, t_var.numpy())
    # and by hand for the first step: unbiased variance in the running estimate
    x, _, _, _ = make(shape, seed=0)
    m, v = np.zeros(channels), np.ones(channels)
    batch_norm_forward(x, weight, bias, m, v, training=True, momentum=0.1)
    axes = (0, *range(2, len(shape)))
    np.testing.assert_allclose(m, 0.1 * x.mean(axis=axes), rtol=1e-14)
    np.testing.assert_allclose(v, 0.9 + 0.1 * x.var(axis=axes, ddof=1), rtol=1e-14)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_constant_channel_gives_no_nan(training):
    x, weight, bias, dout = make((4, 3, 2, 2), seed=5)
    x[:, 1] = 3.0
    running_mean, running_var = np.zeros(3), np.zeros(3)  # var 0 in inference too
    out, cache = batch_norm_forward(x, weight, bias, running_mean, running_var, training)
    grads = batch_norm_backward(dout, cache)
    for array in (out, *grads, running_mean, running_var):
        assert np.all(np.isfinite(array))
    if training:
        np.testing.assert_allclose(out[:, 1], bias[1])

        def forward():
            stats = running_mean.copy(), running_var.copy()
            return batch_norm_forward(x, weight, bias, *stats, training)[0]

        # var = 0 is smooth there (var is quadratic in x), so the gradient is well defined
        check_grad(forward, x, dout, grads[0])


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_float32(training):
    x, weight, bias, dout = make((5, 3, 4, 4), seed=6)
    stats64 = running_stats(3, seed=6)
    stats32 = tuple(s.astype(np.float32) for s in stats64)
    out64, cache64 = batch_norm_forward(x, weight, bias, *stats64, training)
    grads64 = batch_norm_backward(dout, cache64)
    f32 = [a.astype(np.float32) for a in (x, weight, bias, dout)]
    out32, cache32 = batch_norm_forward(*f32[:3], *stats32, training)
    grads32 = batch_norm_backward(f32[3], cache32)
    assert out32.dtype == np.float32 and rel_error(out32, out64) < 1e-4
    for g32, g64 in zip(grads32, grads64, strict=True):
        assert g32.dtype == np.float32 and rel_error(g32, g64) < 1e-4
    for s32, s64 in zip(stats32, stats64, strict=True):
        assert s32.dtype == np.float32 and rel_error(s32, s64) < 1e-4


def test_batch_norm_float64_buffers_do_not_promote_float32_output():
    x, weight, bias, _ = make((3, 2), seed=7, dtype=np.float32)
    out, _ = batch_norm_forward(x, weight, bias, np.zeros(2), np.ones(2), training=False)
    assert out.dtype == np.float32


def test_batch_norm_without_affine_matches_unit_affine():
    x, _, _, dout = make((4, 3, 2, 2), seed=8)
    out, cache = batch_norm_forward(x, None, None, None, None, training=True)
    ref, ref_cache = batch_norm_forward(x, np.ones(3), np.zeros(3), None, None, training=True)
    np.testing.assert_allclose(out, ref, rtol=1e-15)
    dx, dweight, dbias = batch_norm_backward(dout, cache)
    assert dweight is None and dbias is None
    np.testing.assert_allclose(dx, batch_norm_backward(dout, ref_cache)[0], rtol=1e-13)


def test_batch_norm_bad_inputs():
    x, weight, bias, _ = make((4, 3), seed=9)
    stats = running_stats(3, seed=9)
    with pytest.raises(ValueError, match="batch_norm_forward.*weight"):
        batch_norm_forward(x, weight[:2], bias, *stats, training=True)
    with pytest.raises(ValueError, match="batch_norm_forward.*running_mean"):
        batch_norm_forward(x, weight, bias, stats[0][:2], stats[1], training=True)
    with pytest.raises(ValueError, match="batch_norm_forward.*both"):
        batch_norm_forward(x, weight, bias, stats[0], None, training=True)
    with pytest.raises(ValueError, match="batch_norm_forward.*more than one value"):
        batch_norm_forward(x[:1], weight, bias, *stats, training=True)
    with pytest.raises(ValueError, match="batch_norm_forward.*momentum"):
        batch_norm_forward(x, weight, bias, *stats, training=True, momentum=1.5)
    with pytest.raises(ValueError, match="batch_norm_forward.*eps"):
        batch_norm_forward(x, weight, bias, *stats, training=True, eps=0.0)
    with pytest.raises(ValueError, match="batch_norm_forward.*shape"):
        batch_norm_forward(x[:, 0], None, None, None, None, training=True)
    with pytest.raises(TypeError, match="batch_norm_forward.*dtype"):
        batch_norm_forward(x.astype(np.float32), weight, bias, *stats, training=True)
    # a single sample is fine in inference
    out, _ = batch_norm_forward(x[:1], weight, bias, *stats, training=False)
    assert out.shape == (1, 3)


# ------------------------------------------------------------------ group norm
def group_norm_reference(x, weight, bias, groups, eps=1e-5):
    """Loop over samples and groups: the definition, one slice at a time."""
    out = np.empty_like(x)
    size = x.shape[1] // groups
    for n in range(x.shape[0]):
        for g in range(groups):
            part = x[n, g * size : (g + 1) * size]
            out[n, g * size : (g + 1) * size] = (part - part.mean()) / np.sqrt(part.var() + eps)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return out * weight.reshape(shape) + bias.reshape(shape)


@pytest.mark.parametrize(("shape", "groups"), GN_CASES)
def test_group_norm_forward_matches_loops(shape, groups):
    x, weight, bias, _ = make(shape, seed=10)
    out, _ = group_norm_forward(x, weight, bias, groups)
    np.testing.assert_allclose(out, group_norm_reference(x, weight, bias, groups), rtol=1e-12)


@pytest.mark.parametrize(("shape", "groups"), GN_CASES)
def test_group_norm_gradients(shape, groups):
    x, weight, bias, dout = make(shape, seed=sum(shape) + groups)
    _, cache = group_norm_forward(x, weight, bias, groups)
    dx, dweight, dbias = group_norm_backward(dout, cache)

    def forward():
        return group_norm_forward(x, weight, bias, groups)[0]

    check_grad(forward, x, dout, dx)
    check_grad(forward, weight, dout, dweight)
    check_grad(forward, bias, dout, dbias)


@pytest.mark.parametrize(("shape", "groups"), GN_CASES)
def test_group_norm_matches_torch(shape, groups):
    torch = pytest.importorskip("torch")
    x, weight, bias, dout = make(shape, seed=11)
    out, cache = group_norm_forward(x, weight, bias, groups, eps=1e-4)
    dx, dweight, dbias = group_norm_backward(dout, cache)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    tout = torch.nn.functional.group_norm(tx, groups, tw, tb, eps=1e-4)
    tout.backward(torch.from_numpy(dout))
    close(out, tout.detach().numpy())
    close(dx, tx.grad.numpy())
    close(dweight, tw.grad.numpy())
    close(dbias, tb.grad.numpy())


def test_group_norm_float32_and_constant_group():
    x, weight, bias, dout = make((3, 4, 3, 3), seed=12)
    x[1, :2] = -2.0  # a whole group of sample 1 is constant
    out64, cache64 = group_norm_forward(x, weight, bias, 2)
    grads64 = group_norm_backward(dout, cache64)
    assert all(np.all(np.isfinite(a)) for a in (out64, *grads64))
    f32 = [a.astype(np.float32) for a in (x, weight, bias, dout)]
    out32, cache32 = group_norm_forward(*f32[:3], 2)
    grads32 = group_norm_backward(f32[3], cache32)
    assert out32.dtype == np.float32 and rel_error(out32, out64) < 1e-4
    for g32, g64 in zip(grads32, grads64, strict=True):
        assert g32.dtype == np.float32 and rel_error(g32, g64) < 1e-4


def test_group_norm_bad_inputs():
    x, weight, bias, _ = make((2, 6, 2, 2), seed=13)
    with pytest.raises(ValueError, match="group_norm_forward.*num_groups=4.*6 channels"):
        group_norm_forward(x, weight, bias, 4)
    with pytest.raises(ValueError, match="group_norm_forward"):
        group_norm_forward(x, weight, bias, 0)
    with pytest.raises(TypeError, match="group_norm_forward.*num_groups"):
        group_norm_forward(x, weight, bias, 2.0)
    with pytest.raises(ValueError, match="group_norm_forward.*bias"):
        group_norm_forward(x, weight, bias[:3], 2)


# ------------------------------------------------------------------ layer norm
@pytest.mark.parametrize("shape", LN_SHAPES)
def test_layer_norm_forward_standardises_each_sample(shape):
    x, _, _, _ = make(shape, seed=14)
    out, _ = layer_norm_forward(x, None, None)
    rows = out.reshape(shape[0], -1)
    np.testing.assert_allclose(rows.mean(axis=1), 0.0, atol=1e-12)
    var = x.reshape(shape[0], -1).var(axis=1)
    np.testing.assert_allclose(rows.var(axis=1), var / (var + 1e-5), rtol=1e-12)


@pytest.mark.parametrize("shape", LN_SHAPES)
def test_layer_norm_gradients(shape):
    x, weight, bias, dout = make(shape, seed=sum(shape), param_shape=shape[1:])
    _, cache = layer_norm_forward(x, weight, bias)
    dx, dweight, dbias = layer_norm_backward(dout, cache)

    def forward():
        return layer_norm_forward(x, weight, bias)[0]

    check_grad(forward, x, dout, dx)
    check_grad(forward, weight, dout, dweight)
    check_grad(forward, bias, dout, dbias)


@pytest.mark.parametrize("shape", [*LN_SHAPES, (1, 7), (4, 1, 1, 2)])
def test_layer_norm_matches_torch(shape):
    torch = pytest.importorskip("torch")
    x, weight, bias, dout = make(shape, seed=15, param_shape=shape[1:])
    out, cache = layer_norm_forward(x, weight, bias, eps=1e-3)
    dx, dweight, dbias = layer_norm_backward(dout, cache)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    tout = torch.nn.functional.layer_norm(tx, shape[1:], tw, tb, eps=1e-3)
    tout.backward(torch.from_numpy(dout))
    close(out, tout.detach().numpy())
    close(dx, tx.grad.numpy())
    close(dweight, tw.grad.numpy())
    close(dbias, tb.grad.numpy())


def test_layer_norm_float32_and_constant_sample():
    x, weight, bias, dout = make((3, 2, 4), seed=16, param_shape=(2, 4))
    x[0] = 1.5
    out64, cache64 = layer_norm_forward(x, weight, bias)
    grads64 = layer_norm_backward(dout, cache64)
    assert all(np.all(np.isfinite(a)) for a in (out64, *grads64))
    np.testing.assert_allclose(out64[0], bias)
    f32 = [a.astype(np.float32) for a in (x, weight, bias, dout)]
    out32, cache32 = layer_norm_forward(*f32[:3])
    grads32 = layer_norm_backward(f32[3], cache32)
    assert out32.dtype == np.float32 and rel_error(out32, out64) < 1e-4
    for g32, g64 in zip(grads32, grads64, strict=True):
        assert g32.dtype == np.float32 and rel_error(g32, g64) < 1e-4


def test_layer_norm_bad_inputs():
    x, weight, bias, dout = make((2, 3, 4), seed=17, param_shape=(3, 4))
    with pytest.raises(ValueError, match=r"layer_norm_forward.*weight must have shape \(3, 4\)"):
        layer_norm_forward(x, weight[0], bias)
    _, cache = layer_norm_forward(x, weight, bias)
    with pytest.raises(ValueError, match="layer_norm_backward.*dout"):
        layer_norm_backward(dout[:, :1], cache)


@pytest.mark.parametrize("shape", [(8, 3, 4, 5), (7, 6)])
@pytest.mark.parametrize("cut", ["halves", "uneven"])
def test_batch_norm_shards_with_reduce_equal_the_whole_batch(shape, cut):
    """Each shard normalises its rows with the whole batch's statistics (``reduce``); dx matches the
    whole batch's, the shards' dweight/dbias add up to the whole batch's, the running statistics move once."""
    import threading

    from convnp.nn.shards import ShardGroup

    n = shape[0]
    bounds = [0, n // 2, n] if cut == "halves" else [0, 1, n - 2, n]
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape) * 2 + 1
    dout = rng.standard_normal(shape)
    weight, bias = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    mean_ref, var_ref = np.zeros(shape[1]), np.ones(shape[1])
    out_ref, cache_ref = batch_norm_forward(x, weight, bias, mean_ref, var_ref, training=True)
    dx_ref, dweight_ref, dbias_ref = batch_norm_backward(dout, cache_ref)

    group = ShardGroup(bounds)
    running = (np.zeros(shape[1]), np.ones(shape[1]))
    results = [None] * group.count

    def shard(index):
        context = group.context(index)
        rows = slice(context.start, context.stop)
        stats = running if index == 0 else (None, None)
        out, cache = batch_norm_forward(x[rows], weight, bias, *stats, training=True, reduce=context.sum)
        results[index] = (out, *batch_norm_backward(dout[rows], cache))

    workers = [threading.Thread(target=shard, args=(i,)) for i in range(group.count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    np.testing.assert_allclose(np.concatenate([r[0] for r in results]), out_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([r[1] for r in results]), dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sum(r[2] for r in results), dweight_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sum(r[3] for r in results), dbias_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(running[0], mean_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(running[1], var_ref, rtol=1e-12)
