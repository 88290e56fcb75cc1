"""to_torch and from_torch carry every op option: pooling dilation and ceil mode, the average's count, per-side
padding (a pad module in front, folded back where exact), softmax along any axis, layer norm over trailing axes."""

from __future__ import annotations

import numpy as np
import pytest

from convnp import nn
from convnp.interop import from_torch, to_torch, torch_key_map

torch = pytest.importorskip("torch")
tnn, F = torch.nn, torch.nn.functional

RTOL = 1e-10


def options_sequential():
    """A float64 chain using every option PyTorch can hold, each where it changes the result."""
    layers = [
        nn.Conv2D(4, 3, padding=((0, 2), (1, 0)), activation=nn.Softmax(axis=-1)),  # (4, 9, 6)
        nn.MaxPool2D(3, stride=2, padding=((1, 0), (0, 1)), dilation=(2, 1), ceil_mode=True),  # (4, 4, 3)
        nn.Softmax(axis=2),  # along the height
        nn.AvgPool2D(3, stride=2, padding=(1, 1), ceil_mode=True, count_include_pad=False),  # (4, 3, 2)
        nn.LayerNorm(2),  # over the width
        nn.Conv2D(6, 2, padding=((1, 0), (0, 1))),  # (6, 3, 2)
        nn.AvgPool2D(2, stride=2, padding=((0, 1), (1, 0)), ceil_mode=True),  # (6, 2, 2), the padding counted
        nn.LayerNorm((2, 2)),
        nn.Softmax(axis=-3),
        nn.Flatten(),
        nn.Dense(3),
    ]
    return _fitted(nn.Sequential(layers, input_shape=(2, 9, 7), dtype="float64", seed=0))


def options_graph():
    inputs = nn.Input((3, 8, 7))
    x = nn.Conv2D(4, 2, padding=((0, 1), (1, 0)), name="stem")(inputs)  # (4, 8, 7)
    left = nn.MaxPool2D(2, stride=2, dilation=2, padding=((1, 0), (0, 1)), ceil_mode=True, name="left")(x)
    right = nn.AvgPool2D(3, stride=2, padding=(1, 1), ceil_mode=True, count_include_pad=False)(x)  # (4, 5, 4)
    right = nn.LayerNorm(4, name="norm")(right)
    joined = nn.Concatenate(axis=2)([left, right])  # (4, 9, 4)
    pooled = nn.MaxPool2D((2, 3), stride=(3, 2), padding=(1, 0), ceil_mode=True)(joined)  # (4, 3, 2)
    out = nn.Dense(3, name="head")(nn.Flatten()(nn.Softmax(axis=-2)(pooled)))
    return _fitted(nn.Model(inputs, out, dtype="float64", seed=0))


def _fitted(model, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((16, *model.input_shape))
    model.fit(x, rng.integers(0, classes, 16), epochs=1, batch_size=8, verbose=0, seed=0)
    return model


MODELS = {"sequential": options_sequential, "graph": options_graph}


@pytest.fixture(scope="module")
def models():
    return {name: build() for name, build in MODELS.items()}


def _torch_forward(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", list(MODELS))
def test_to_torch_computes_the_same_values_and_gradients(models, name):
    model = models[name]
    module = to_torch(model)
    x = np.random.default_rng(2).standard_normal((5, *model.input_shape))
    tx = torch.tensor(x, requires_grad=True)
    expected = module(tx)
    g = np.random.default_rng(7).standard_normal(expected.shape)
    (expected * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(model.forward(x), expected.detach().numpy(), rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(model.backward(g), tx.grad.numpy(), rtol=RTOL, atol=1e-12)
    grads = dict(module.named_parameters())
    key_map = torch_key_map(model)
    for key, param in model.named_parameters():
        np.testing.assert_allclose(param.grad, grads[key_map[key]].grad.numpy(), rtol=RTOL, atol=1e-12, err_msg=key)


def test_the_modules_carry_every_option(models):
    module = to_torch(models["sequential"])
    kinds = [type(child).__name__ for child in module]
    assert kinds[:4] == ["ZeroPad2d", "Conv2d", "Softmax", "ConstantPad2d"]
    assert module[0].padding == (1, 0, 0, 2)  # PyTorch's (left, right, top, bottom)
    assert module[3].padding == (0, 1, 1, 0) and module[3].value == float("-inf")
    max_pool = module[4]
    assert max_pool.dilation == (2, 1) and max_pool.ceil_mode and max_pool.padding == (0, 0)
    average = next(child for child in module if isinstance(child, tnn.AvgPool2d))
    assert average.ceil_mode and not average.count_include_pad and average.padding == (1, 1)
    assert [child.dim for child in module if isinstance(child, tnn.Softmax)] == [-1, 2, -3]
    assert [tuple(child.normalized_shape) for child in module if isinstance(child, tnn.LayerNorm)] == [(2,), (2, 2)]


@pytest.mark.parametrize("name", list(MODELS))
def test_round_trips_keep_the_options_and_the_values(models, name):
    model = models[name]
    back = from_torch(to_torch(model), model.input_shape)
    x = np.random.default_rng(4).standard_normal((3, *model.input_shape))
    np.testing.assert_allclose(back.forward(x), model.forward(x), rtol=RTOL, atol=1e-12)
    optioned = (nn.MaxPool2D, nn.AvgPool2D, nn.LayerNorm, nn.Softmax)
    configs = [layer.get_config() for layer in model.layers if isinstance(layer, optioned)]
    if name == "sequential":  # the fused softmax comes back as a layer of its own, after its conv
        configs.insert(0, model.layers[0].activation.get_config())
    back_configs = [layer.get_config() for layer in back.layers if isinstance(layer, optioned)]
    assert sorted(back_configs, key=repr) == sorted(configs, key=repr)  # a graph's layers may come in another order
    again = to_torch(back)
    np.testing.assert_allclose(_torch_forward(again, x), model.forward(x), rtol=RTOL, atol=1e-12)


def test_from_torch_folds_pads_where_exact():
    torch.manual_seed(0)
    module = tnn.Sequential(
        tnn.Conv2d(2, 4, 3, padding=1),  # (4, 11, 10)
        tnn.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True),  # (4, 5, 5)
        tnn.Softmax(dim=2),
        tnn.ZeroPad2d((0, 1, 1, 0)), tnn.Conv2d(4, 4, 2),  # (4, 5, 5): padding ((1, 0), (0, 1))
        tnn.ZeroPad2d((1, 0, 0, 1)), tnn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False),  # (4, 3, 3)
        tnn.LayerNorm([3]),
        tnn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),  # (4, 2, 2)
        tnn.ConstantPad2d((1, 0, 1, 0), float("-inf")), tnn.MaxPool2d(2, ceil_mode=True),  # (4, 2, 2)
        tnn.Softmax(dim=-1),
        tnn.Flatten(), tnn.Linear(16, 3),
    ).double().eval()  # fmt: skip
    model = from_torch(module, input_shape=(2, 11, 10))
    x = np.random.default_rng(1).standard_normal((7, 2, 11, 10))
    np.testing.assert_allclose(model.forward(x), _torch_forward(module, x), rtol=RTOL, atol=1e-12)
    first, softmax, conv, zero_padded, norm, average, max_padded, last = model.layers[1:9]
    assert first.dilation == (2, 2) and first.ceil_mode and first.padding == (1, 1)
    assert softmax.axis == 2 and last.axis == -1 and norm.normalized_shape == (3,)
    assert conv.padding == ((1, 0), (0, 1))
    # The pad's zeros count in PyTorch's average: convnp counts them as padding.
    assert zero_padded.padding == ((0, 1), (1, 0)) and zero_padded.count_include_pad and zero_padded.ceil_mode
    assert not average.count_include_pad and average.padding == (1, 1)
    assert max_padded.padding == ((1, 0), (1, 0)) and max_padded.ceil_mode


class _Traced(tnn.Module):
    """F.pad in front of a conv and a max pool, softmax along the last axis, a layer norm over two axes."""

    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(2, 3, 3, stride=2)
        self.pool = tnn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.norm = tnn.LayerNorm([2, 3])
        self.fc = tnn.Linear(18, 2)

    def forward(self, x):
        x = self.conv(F.pad(x, (0, 1, 0, 1)))  # (3, 4, 4): TensorFlow's SAME with stride 2
        x = self.pool(F.pad(x, (1, 1, 1, 0), value=float("-inf")))  # (3, 2, 3)
        x = self.norm(F.softmax(x, dim=-1))
        return self.fc(torch.flatten(x, 1))


def test_from_torch_of_a_traced_module_with_options():
    torch.manual_seed(1)
    module = _Traced().double().eval()
    model = from_torch(module, (2, 8, 8))
    layers = {layer.name: layer for layer in model.layers}
    assert layers["conv"].padding == "same"  # the pads TensorFlow's SAME gives here
    assert layers["pool"].padding == ((1, 0), (1, 1)) and layers["pool"].ceil_mode
    assert layers["softmax"].axis == -1 and layers["norm"].normalized_shape == (2, 3)
    x = np.random.default_rng(2).standard_normal((4, 2, 8, 8))
    np.testing.assert_allclose(model.forward(x), _torch_forward(module, x), rtol=RTOL, atol=1e-12)


def test_to_torch_takes_floor_mode_where_ceil_mode_adds_no_window():
    """Ceil mode here only drops a window starting in the padding; behind a pad module floor mode does the same."""
    model = nn.Sequential(
        [nn.MaxPool2D(2, stride=3, padding=((0, 1), (0, 0)), ceil_mode=True), nn.Flatten()],
        input_shape=(1, 6, 8), dtype="float64",
    )  # fmt: skip
    assert model[0].output_shape == (1, 2, 3)
    module = to_torch(model)
    assert type(module[0]).__name__ == "ConstantPad2d" and not module[1].ceil_mode
    x = np.random.default_rng(3).standard_normal((2, 1, 6, 8))
    np.testing.assert_array_equal(_torch_forward(module, x), model.forward(x))


@pytest.mark.parametrize(
    ("layer", "input_shape", "pattern"),
    [
        (nn.AvgPool2D(2, padding=((0, 1), (0, 1)), count_include_pad=False), (1, 4, 4),
         r"layer 0 \(AvgPool2D\) with count_include_pad=False pads unequal sides"),
        (nn.MaxPool2D((2, 3), stride=(3, 2), padding=((0, 1), (0, 1)), ceil_mode=True), (1, 6, 7),
         r"layer 0 \(MaxPool2D\) with ceil_mode=True and unequal padding .*\(3, 4\) instead of \(2, 4\)"),
    ],
)  # fmt: skip
def test_to_torch_refuses_what_no_pad_module_can_express(layer, input_shape, pattern):
    model = nn.Sequential([layer, nn.Flatten()], input_shape=input_shape)
    with pytest.raises(ValueError, match=pattern):
        to_torch(model)


@pytest.mark.parametrize(
    ("modules", "pattern"),
    [
        ([tnn.ZeroPad2d((0, 1, 0, 1)), tnn.MaxPool2d(2)], r"must pad with -inf .*convnp has no padding layer"),
        ([tnn.ZeroPad2d(1), tnn.AvgPool2d(3, padding=1, count_include_pad=False)],
         r"count_include_pad=False and padding 1: the pad's zeros count"),
        ([tnn.ConstantPad2d((0, 1, 0, 1), float("-inf")), tnn.MaxPool2d(2, ceil_mode=True)],
         r"ceil_mode=True: PyTorch keeps a last window .*\(3, 3\) against \(2, 2\)"),
        ([tnn.Flatten(), tnn.Softmax(dim=0)], "batch axis"),
    ],
)  # fmt: skip
def test_from_torch_refuses_pads_it_cannot_fold(modules, pattern):
    with pytest.raises(ValueError, match=pattern):
        from_torch(tnn.Sequential(*modules), input_shape=(2, 4, 4))


def test_softmax_with_dim_none_on_3d_inputs_is_refused():
    class Legacy(tnn.Module):
        def forward(self, x):
            return F.softmax(x)  # dim=None on (N, H, W): PyTorch picks dim 0

    with pytest.raises(ValueError, match=r"dim=None picks the batch axis"):
        from_torch(Legacy(), (4, 4))
