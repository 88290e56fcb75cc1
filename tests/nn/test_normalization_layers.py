"""BatchNorm1D/2D, GroupNorm, LayerNorm layers: build, gradients, PyTorch, modes, config."""

import json

import numpy as np
import pytest

from convnp.nn.normalization import BatchNorm1D, BatchNorm2D, GroupNorm, LayerNorm
from tests.helpers import check_grad, rel_error


def built(layer, sample_shape, dtype="float64"):
    layer.build(sample_shape, dtype=dtype)
    rng = np.random.default_rng(sum(sample_shape))
    # non-trivial affine parameters so their gradients are exercised
    layer.weight.data[...] = rng.uniform(0.5, 1.5, size=layer.weight.shape)
    layer.bias.data[...] = rng.standard_normal(layer.bias.shape)
    return layer


def batch(shape, seed, dtype=np.float64):
    """An input batch x and an upstream gradient dout."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 1.5 + 0.3
    dout = rng.standard_normal(shape)
    return x.astype(dtype), dout.astype(dtype)


@pytest.mark.parametrize(
    ("layer", "sample_shape"),
    [
        (BatchNorm1D(), (4,)),
        (BatchNorm2D(), (3, 5, 5)),
        (GroupNorm(2), (4, 3, 3)),
        (LayerNorm(), (2, 3, 3)),
    ],
    ids=["bn1d", "bn2d", "gn", "ln"],
)
def test_build_creates_pytorch_named_parameters(layer, sample_shape):
    assert layer.build(sample_shape) == sample_shape
    param_shape = sample_shape if isinstance(layer, LayerNorm) else sample_shape[:1]
    assert [p.name for p in layer.parameters()] == ["weight", "bias"]
    np.testing.assert_array_equal(layer.weight.data, np.ones(param_shape, dtype=np.float32))
    np.testing.assert_array_equal(layer.bias.data, np.zeros(param_shape, dtype=np.float32))
    assert layer.weight.dtype == np.float32
    if isinstance(layer, (BatchNorm1D, BatchNorm2D)):
        assert layer.buffer_names == ("running_mean", "running_var")
        buffers = dict(layer.named_buffers())
        np.testing.assert_array_equal(buffers["running_mean"], np.zeros(sample_shape[0]))
        np.testing.assert_array_equal(buffers["running_var"], np.ones(sample_shape[0]))
        assert buffers["running_var"].dtype == np.float32
        assert layer.num_features == sample_shape[0]
    else:
        assert list(layer.named_buffers()) == []


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(("cls", "sample_shape"), [(BatchNorm1D, (3,)), (BatchNorm2D, (2, 3, 2))])
def test_batch_norm_gradients_in_both_modes(cls, sample_shape, training):
    layer = built(cls(), sample_shape)
    rng = np.random.default_rng(0)
    layer.running_mean[...] = rng.standard_normal(sample_shape[0])
    layer.running_var[...] = rng.uniform(0.5, 2, size=sample_shape[0])
    x, dout = batch((4, *sample_shape), seed=1)
    layer.forward(x, training=training)
    dx = layer.backward(dout)

    def forward():
        return layer.forward(x, training=training)

    check_grad(forward, x, dout, dx)
    check_grad(forward, layer.weight.data, dout, layer.weight.grad)
    check_grad(forward, layer.bias.data, dout, layer.bias.grad)


@pytest.mark.parametrize(
    ("layer", "sample_shape"),
    [
        (GroupNorm(3), (6, 2, 2)),
        (GroupNorm(1), (2, 3)),
        (LayerNorm(), (3, 2, 2)),
        (LayerNorm(), (5,)),
    ],
)
def test_group_and_layer_norm_gradients(layer, sample_shape):
    layer = built(layer, sample_shape)
    x, dout = batch((3, *sample_shape), seed=2)
    layer.forward(x)
    dx = layer.backward(dout)

    def forward():
        return layer.forward(x)

    check_grad(forward, x, dout, dx)
    check_grad(forward, layer.weight.data, dout, layer.weight.grad)
    check_grad(forward, layer.bias.data, dout, layer.bias.grad)


@pytest.mark.parametrize(("cls", "shape"), [(BatchNorm1D, (6, 3)), (BatchNorm2D, (3, 4, 3, 5))])
def test_batch_norm_training_steps_and_eval_match_torch(cls, shape):
    torch = pytest.importorskip("torch")
    layer = built(cls(momentum=0.2, eps=1e-4), shape[1:])
    reference = (torch.nn.BatchNorm1d if cls is BatchNorm1D else torch.nn.BatchNorm2d)(
        shape[1], momentum=0.2, eps=1e-4
    ).double()
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(layer.weight.data))
        reference.bias.copy_(torch.from_numpy(layer.bias.data))
    reference.train()
    for step in range(4):
        x, dout = batch(shape, seed=10 + step)
        out = layer.forward(x, training=True)
        dx = layer.backward(dout)
        tx = torch.tensor(x, requires_grad=True)
        reference.zero_grad()
        tout = reference(tx)
        tout.backward(torch.from_numpy(dout))
        np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(layer.weight.grad, reference.weight.grad.numpy(), rtol=1e-8)
        np.testing.assert_allclose(layer.bias.grad, reference.bias.grad.numpy(), rtol=1e-8)
    np.testing.assert_allclose(layer.running_mean, reference.running_mean.numpy(), rtol=1e-8)
    np.testing.assert_allclose(layer.running_var, reference.running_var.numpy(), rtol=1e-8)
    reference.eval()
    x, _ = batch(shape, seed=99)
    np.testing.assert_allclose(layer.forward(x), reference(torch.from_numpy(x)).detach().numpy(), rtol=1e-8, atol=1e-12)


def test_group_and_layer_norm_match_torch():
    torch = pytest.importorskip("torch")
    x, dout = batch((2, 6, 3, 4), seed=20)
    for layer, reference in (
        (GroupNorm(3, eps=1e-3), torch.nn.GroupNorm(3, 6, eps=1e-3)),
        (LayerNorm(eps=1e-3), torch.nn.LayerNorm((6, 3, 4), eps=1e-3)),
    ):
        layer = built(layer, (6, 3, 4))
        reference = reference.double()
        with torch.no_grad():
            reference.weight.copy_(torch.from_numpy(layer.weight.data))
            reference.bias.copy_(torch.from_numpy(layer.bias.data))
        out = layer.forward(x)
        dx = layer.backward(dout)
        tx = torch.tensor(x, requires_grad=True)
        tout = reference(tx)
        tout.backward(torch.from_numpy(dout))
        assert set(reference.state_dict()) == {p.name for p in layer.parameters()}
        np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(layer.weight.grad, reference.weight.grad.numpy(), rtol=1e-8)
        np.testing.assert_allclose(layer.bias.grad, reference.bias.grad.numpy(), rtol=1e-8)


def test_batch_norm_train_and_eval_modes_differ_and_eval_keeps_buffers():
    layer = BatchNorm2D()
    x, _ = batch((4, 2, 3, 3), seed=3, dtype=np.float32)
    eval_out = layer.forward(x)  # fresh buffers: (x - 0) / sqrt(1 + eps)
    np.testing.assert_allclose(eval_out, x / np.sqrt(1 + 1e-5), rtol=1e-6)
    np.testing.assert_array_equal(layer.running_mean, 0.0)
    train_out = layer.forward(x, training=True)
    assert not np.allclose(train_out, eval_out)
    np.testing.assert_allclose(layer.running_mean, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    assert train_out.dtype == layer.running_mean.dtype == np.float32


def test_constant_channel_gives_no_nan():
    layer = BatchNorm2D()
    x, dout = batch((3, 2, 2, 2), seed=4, dtype=np.float32)
    x[:, 0] = 7.0
    out = layer.forward(x, training=True)
    dx = layer.backward(dout)
    for array in (out, dx, layer.weight.grad, layer.bias.grad, layer.running_var):
        assert np.all(np.isfinite(array))
    np.testing.assert_allclose(out[:, 0], 0.0)


def test_float32_agrees_with_float64_and_astype_casts_buffers():
    x, dout = batch((5, 3, 2, 2), seed=5)
    layer64 = built(BatchNorm2D(), (3, 2, 2))
    layer32 = built(BatchNorm2D(), (3, 2, 2), dtype="float32")
    out64, out32 = layer64.forward(x, training=True), layer32.forward(x.astype(np.float32), True)
    dx64, dx32 = layer64.backward(dout), layer32.backward(dout.astype(np.float32))
    assert out32.dtype == dx32.dtype == layer32.weight.grad.dtype == np.float32
    assert rel_error(out32, out64) < 1e-4 and rel_error(dx32, dx64) < 1e-4
    assert rel_error(layer32.weight.grad, layer64.weight.grad) < 1e-4
    assert rel_error(layer32.running_var, layer64.running_var) < 1e-4
    layer32.astype("float64")
    assert layer32.running_mean.dtype == layer32.running_var.dtype == np.float64
    assert layer32.weight.dtype == np.float64


def test_config_round_trips_through_json():
    for layer, shape in (
        (BatchNorm1D(momentum=0.05, eps=1e-3), (4,)),
        (BatchNorm2D(), (2, 3, 3)),
        (GroupNorm(2, eps=1e-4), (4, 2, 2)),
        (LayerNorm(eps=1e-6), (3, 2)),
    ):
        layer.build(shape)
        config = json.loads(json.dumps(layer.get_config()))
        clone = type(layer)(**config)
        assert clone.build(shape) == shape
        assert clone.get_config() == layer.get_config()
    assert BatchNorm1D(momentum=0.05).get_config()["momentum"] == 0.05


def test_bad_shapes_and_arguments_name_the_layer():
    with pytest.raises(ValueError, match=r"BatchNorm1D: expected .*\(features,\).*BatchNorm2D"):
        BatchNorm1D().build((3, 4, 4))
    with pytest.raises(ValueError, match=r"BatchNorm2D: expected .*\(C, H, W\).*BatchNorm1D"):
        BatchNorm2D().build((3,))
    with pytest.raises(ValueError, match="BatchNorm2D: num_features=4 was given but the input has 3"):
        BatchNorm2D(num_features=4).build((3, 2, 2))
    with pytest.raises(ValueError, match="GroupNorm: num_groups=4 does not divide the 6 channels"):
        GroupNorm(4).build((6, 2, 2))
    with pytest.raises(ValueError, match="GroupNorm: num_groups"):
        GroupNorm(0)
    with pytest.raises(ValueError, match="BatchNorm1D: momentum"):
        BatchNorm1D(momentum=2.0)
    with pytest.raises(ValueError, match="LayerNorm: eps"):
        LayerNorm(eps=-1.0)
    layer = BatchNorm1D()
    layer.build((3,))
    with pytest.raises(ValueError, match=r"BatchNorm1D: expected input of shape \(N, 3\)"):
        layer.forward(np.ones((2, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="BatchNorm1D: input dtype float64"):
        layer.forward(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="BatchNorm1D: backward called before forward"):
        layer.backward(np.ones((2, 3), dtype=np.float32))
