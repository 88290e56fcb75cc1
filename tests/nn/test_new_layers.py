"""ConvTranspose2D, Upsample2D, AdaptiveAvgPool2D: build, PyTorch, gradients, shards, saving, errors."""

import json

import numpy as np
import pytest

import convnp
from convnp.backend import threads
from convnp.functional.losses import softmax_cross_entropy
from convnp.gradcheck import gradcheck
from convnp.nn import (
    AdaptiveAvgPool2D,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    ReLU,
    Sequential,
    Upsample2D,
)
from convnp.nn.layer import LAYER_REGISTRY


def encoder_decoder(dtype="float64", seed=0):
    """Down by a strided convolution, up by a transposed one and an upsampling, then pooled to a fixed size."""
    layers = [
        Conv2D(4, 3, stride=2, padding=1),
        ReLU(),
        ConvTranspose2D(4, 3, stride=2, padding=1, output_padding=1, groups=2),
        ReLU(),
        Upsample2D((2, 1), "bilinear"),
        ConvTranspose2D(3, 2, dilation=2, use_bias=False),
        Upsample2D(2),
        AdaptiveAvgPool2D((3, None)),
        Flatten(),
        Dense(5),
    ]
    return Sequential(layers, input_shape=(2, 7, 6), dtype=dtype, seed=seed)


def torch_twin(torch, model):
    nn = torch.nn
    module = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
        nn.ReLU(),
        nn.Upsample(scale_factor=(2, 1), mode="bilinear", align_corners=False),
        nn.ConvTranspose2d(4, 3, 2, dilation=2, bias=False),
        nn.Upsample(scale_factor=2),
        nn.AdaptiveAvgPool2d((3, None)),
        nn.Flatten(),
        nn.Linear(3 * 3 * 16, 5),
    ).double()
    module.load_state_dict({key: torch.tensor(value) for key, value in model.state_dict().items()})
    return module


def test_encoder_decoder_shapes():
    model = encoder_decoder()
    shapes = [layer.output_shape for layer in model.layers]
    # 7x6 -> 4x3 -> (4-1)*2 - 2 + 2 + 1 + 1 = 8, (3-1)*2 - 2 + 2 + 1 + 1 = 6 -> 16x6 -> 18x8 -> 36x16 -> 3x16
    assert shapes[:8] == [(4, 4, 3), (4, 4, 3), (4, 8, 6), (4, 8, 6), (4, 16, 6), (3, 18, 8), (3, 36, 16), (3, 3, 16)]


def test_encoder_decoder_equals_torch():
    torch = pytest.importorskip("torch")
    model = encoder_decoder()
    module = torch_twin(torch, model)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 2, 7, 6)), rng.integers(0, 5, 4)
    logits = model.forward(x, training=True)
    loss, dlogits = softmax_cross_entropy(logits, y)
    dx = model.backward(dlogits)

    x_t = torch.tensor(x, requires_grad=True)
    logits_t = module(x_t)
    loss_t = torch.nn.functional.cross_entropy(logits_t, torch.tensor(y))
    loss_t.backward()
    np.testing.assert_allclose(logits, logits_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-9, atol=1e-14)
    torch_grads = {name: param.grad.numpy() for name, param in module.named_parameters()}
    for name, param in model.named_parameters():
        np.testing.assert_allclose(param.grad, torch_grads[name], rtol=1e-9, atol=1e-14, err_msg=name)


def test_conv_transpose_builds_pytorch_layout_and_infers_in_channels():
    layer = ConvTranspose2D(6, 3, stride=2, groups=2)
    assert layer.build((4, 5, 5), rng=0) == (6, 11, 11)
    assert layer.in_channels == 4
    assert layer.weight.shape == (4, 3, 3, 3) and layer.bias.shape == (6,)
    assert layer.weight.dtype == np.float32
    assert [p.name for p in layer.parameters()] == ["weight", "bias"]
    assert ConvTranspose2D(2, 1, use_bias=False).build((3, 4, 4)) == (2, 4, 4)


def test_conv_transpose_init_uses_pytorch_fans():
    layer = ConvTranspose2D(64, 3, groups=2)
    layer.build((256, 4, 4), rng=0)
    fan_in = 64 // 2 * 3 * 3  # axis 1 of (in, out/groups, kh, kw) times the kernel area
    # he: N(0, 2 / fan_in); 74k draws pin the std to about 0.3 %
    assert layer.weight.data.std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.02)
    torch = pytest.importorskip("torch")
    weight = torch.nn.ConvTranspose2d(256, 64, 3, groups=2).weight
    assert torch.nn.init._calculate_fan_in_and_fan_out(weight) == (fan_in, 256 * 9)


@pytest.mark.parametrize(
    ("layer", "sample_shape"),
    [
        (ConvTranspose2D(3, 3), (2, 4, 3)),
        (ConvTranspose2D(4, (2, 3), stride=(2, 1), padding=(1, 0), output_padding=(1, 0), groups=2), (2, 3, 4)),
        (ConvTranspose2D(2, 2, stride=3, padding=1, output_padding=2, dilation=2, use_bias=False), (3, 3, 3)),
        (Upsample2D(2), (2, 3, 4)),
        (Upsample2D((3, 2), "bilinear"), (2, 3, 4)),
        (AdaptiveAvgPool2D(2), (2, 5, 3)),
        (AdaptiveAvgPool2D((4, None)), (2, 3, 5)),
    ],
    ids=lambda value: value.short_repr() if hasattr(value, "short_repr") else str(value),
)
def test_gradients_match_finite_differences(layer, sample_shape):
    layer.build(sample_shape, rng=0)
    x = np.random.default_rng(1).standard_normal((2, *sample_shape))
    errors = gradcheck(layer, x)
    assert set(errors) == {"input", *(name for name, _ in layer.named_parameters())}
    for tensor, error in errors.items():
        assert error < 1e-7, (tensor, error)


def test_backward_params_fills_the_same_gradients_without_dx():
    layer = ConvTranspose2D(3, 3, stride=2)
    x = np.random.default_rng(2).standard_normal((2, 2, 4, 4)).astype(np.float32)
    dout = np.ones((2, 3, 9, 9), dtype=np.float32)
    layer.forward(x)
    layer.backward(dout)
    grads = [p.grad.copy() for p in layer.parameters()]
    layer.forward(x)
    layer.backward_params(dout)
    for expected, param in zip(grads, layer.parameters()):
        np.testing.assert_array_equal(param.grad, expected)


def test_float32_model_stays_float32():
    model = encoder_decoder(dtype="float32")
    out = model.forward(np.ones((2, 2, 7, 6), dtype=np.float32))
    assert out.dtype == np.float32
    assert model.backward(np.ones_like(out)).dtype == np.float32


@pytest.fixture
def shards(monkeypatch):
    """Set the shard count; every model is big enough to be split."""
    saved = threads.get_num_threads()
    monkeypatch.setattr(threads, "MIN_ELEMENTS", 0)
    yield threads.set_num_threads
    threads.set_num_threads(saved)


@pytest.mark.parametrize("count", [2, 3])
def test_shards_give_the_gradients_of_the_whole_batch(shards, count):
    model = encoder_decoder()
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((7, 2, 7, 6)), rng.integers(0, 5, 7)
    logits = model.forward_layers(x, training=True)
    loss, dlogits = softmax_cross_entropy(logits, y)
    model.backward(dlogits, input_grad=False)
    expected = {name: p.grad.copy() for name, p in model.named_parameters()}
    shards(count)
    model.zero_grad()
    sharded_loss, sharded_logits = model.train_pass(x, y, softmax_cross_entropy)
    assert sharded_loss == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(sharded_logits, logits, rtol=1e-12, atol=1e-12)
    for name, param in model.named_parameters():
        np.testing.assert_allclose(param.grad, expected[name], rtol=1e-11, atol=1e-13, err_msg=name)


def test_save_and_load_round_trip(tmp_path):
    model = encoder_decoder(dtype="float32", seed=4)
    x = np.random.default_rng(4).standard_normal((3, 2, 7, 6)).astype(np.float32)
    model.save(tmp_path / "model.npz")
    loaded = convnp.load(tmp_path / "model.npz")
    assert [layer.short_repr() for layer in loaded.layers] == [layer.short_repr() for layer in model.layers]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize(
    ("layer", "sample_shape"),
    [
        (ConvTranspose2D(4, (3, 2), stride=2, padding=(1, 0), output_padding=1, groups=2, dilation=(1, 2)), (2, 3, 3)),
        (ConvTranspose2D(2, 1, use_bias=False, init="xavier", in_channels=3), (3, 2, 2)),
        (Upsample2D((1, 3), "bilinear"), (2, 3, 3)),
        (AdaptiveAvgPool2D((None, 2)), (2, 3, 3)),
    ],
)
def test_config_round_trips_through_json(layer, sample_shape):
    assert LAYER_REGISTRY[type(layer).__name__] is type(layer)
    output_shape = layer.build(sample_shape)
    config = json.loads(json.dumps(layer.get_config()))
    clone = type(layer)(**config)
    assert clone.build(sample_shape) == output_shape
    assert clone.get_config() == layer.get_config()


def test_short_reprs():
    assert ConvTranspose2D(8, 2, stride=2).short_repr() == "ConvTranspose2D(8, (2, 2), stride=(2, 2))"
    assert (
        ConvTranspose2D(8, 3, stride=2, padding=1, output_padding=1).short_repr()
        == "ConvTranspose2D(8, (3, 3), stride=(2, 2), padding=(1, 1), output_padding=(1, 1))"
    )
    assert Upsample2D().short_repr() == "Upsample2D()"
    assert Upsample2D((2, 3), "bilinear").short_repr() == "Upsample2D(scale_factor=(2, 3), mode='bilinear')"
    assert AdaptiveAvgPool2D(1).short_repr() == "AdaptiveAvgPool2D((1, 1))"
    assert AdaptiveAvgPool2D((7, None)).short_repr() == "AdaptiveAvgPool2D((7, None))"


def test_construction_errors_name_the_layer():
    with pytest.raises(ValueError, match="ConvTranspose2D: output_padding .* smaller than either stride"):
        ConvTranspose2D(2, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="ConvTranspose2D: out_channels=3 must be divisible by groups=2"):
        ConvTranspose2D(3, 3, groups=2)
    with pytest.raises(ValueError, match="ConvTranspose2D: in_channels=3 must be divisible by groups=2"):
        ConvTranspose2D(4, 3, groups=2, in_channels=3)
    with pytest.raises(TypeError, match="ConvTranspose2D: padding"):
        ConvTranspose2D(2, 3, padding="same")
    with pytest.raises(ValueError, match="ConvTranspose2D: unknown initializer"):
        ConvTranspose2D(2, 3, init="orthogonal")
    with pytest.raises(ValueError, match="Upsample2D: mode must be one of"):
        Upsample2D(2, "linear")
    with pytest.raises(TypeError, match="Upsample2D: scale_factor must be an int or a pair of ints"):
        Upsample2D(2.0)
    with pytest.raises(ValueError, match="AdaptiveAvgPool2D: output_size must be >= 1"):
        AdaptiveAvgPool2D((0, 2))


def test_build_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"ConvTranspose2D: expected a per-sample input shape \(C, H, W\)"):
        ConvTranspose2D(2, 3).build((4, 4))
    with pytest.raises(ValueError, match="ConvTranspose2D: expected 3 input channels"):
        ConvTranspose2D(2, 3, in_channels=3).build((2, 4, 4))
    with pytest.raises(ValueError, match="ConvTranspose2D: 3 input channels are not divisible by groups=2"):
        ConvTranspose2D(2, 3, groups=2).build((3, 4, 4))
    with pytest.raises(ValueError, match="ConvTranspose2D: input of shape .* output size would be"):
        ConvTranspose2D(2, 1, padding=1).build((3, 1, 1))
    with pytest.raises(ValueError, match=r"Upsample2D: expected a per-sample input shape \(C, H, W\)"):
        Upsample2D().build((4,))
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2D: expected a per-sample input shape \(C, H, W\)"):
        AdaptiveAvgPool2D(2).build((4, 4))
    layer = ConvTranspose2D(2, 3)
    layer.build((3, 4, 4))
    with pytest.raises(ValueError, match=r"ConvTranspose2D: expected input of shape \(N, 3, 4, 4\)"):
        layer.forward(np.ones((1, 2, 4, 4), dtype=np.float32))
    with pytest.raises(RuntimeError, match="Upsample2D: backward called before forward"):
        Upsample2D().backward(np.ones((1, 1, 2, 2)))
