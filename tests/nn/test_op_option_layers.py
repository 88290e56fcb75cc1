"""The PyTorch/ONNX op options on the layers: a model against torch, configs, files, plans, errors.

MaxPool2D(dilation, ceil_mode), AvgPool2D(ceil_mode, count_include_pad),
asymmetric padding in Conv2D and the pools, Softmax(axis), LayerNorm(normalized_shape).
"""

import json

import numpy as np
import pytest

import convnp
from convnp.functional.losses import softmax_cross_entropy
from convnp.nn import (
    AvgPool2D,
    Conv2D,
    Dense,
    Flatten,
    LayerNorm,
    MaxPool2D,
    ReLU,
    Sequential,
    Softmax,
)
from convnp.nn.layer import layer_config, layer_from_config
from convnp.nn.plan import ConvPoolStep


def option_model(dtype: str = "float64") -> Sequential:
    return Sequential(
        [
            Conv2D(4, 3, stride=2, padding=((0, 1), (1, 0))),  # (4, 7, 7)
            ReLU(),
            MaxPool2D(3, stride=2, padding=1, dilation=2, ceil_mode=True),  # (4, 3, 3)
            LayerNorm((3, 3), eps=1e-3),
            Conv2D(6, 2, padding=((1, 0), (0, 1))),  # (6, 3, 3)
            AvgPool2D(2, padding=((0, 1), (1, 0)), ceil_mode=True, count_include_pad=False),  # (6, 2, 2)
            Softmax(axis=2),
            Flatten(),
            Dense(5),
        ],
        input_shape=(2, 14, 13),
        dtype=dtype,
        seed=0,
    )


def torch_twin(torch, model: Sequential):
    """The same network in torch: explicit ZeroPad2d for the asymmetric paddings, the weights copied over."""
    nn = torch.nn

    class AsymmetricAvgPool(nn.Module):
        """PyTorch has no asymmetric pool padding; with count_include_pad=False a zero pad must not count."""

        def forward(self, x):
            ones = torch.ones_like(x[:1, :1])
            padded = nn.functional.pad(x, (1, 0, 0, 1))
            counts = nn.functional.avg_pool2d(nn.functional.pad(ones, (1, 0, 0, 1)), 2, ceil_mode=True)
            sums = nn.functional.avg_pool2d(padded, 2, ceil_mode=True, divisor_override=1)
            return sums / (counts * 4)

    module = nn.Sequential(
        nn.ZeroPad2d((1, 0, 0, 1)), nn.Conv2d(2, 4, 3, stride=2), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True),
        nn.LayerNorm((3, 3), eps=1e-3),
        nn.ZeroPad2d((0, 1, 1, 0)), nn.Conv2d(4, 6, 2),
        AsymmetricAvgPool(), nn.Softmax(dim=2), nn.Flatten(), nn.Linear(24, 5),
    ).double()  # fmt: skip
    state = {k: torch.tensor(v) for k, v in model.state_dict().items()}
    keys = {"0": "1", "3": "4", "4": "6", "8": "10"}
    module.load_state_dict({f"{keys[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in state.items()})
    return module


def test_model_with_every_option_equals_torch():
    torch = pytest.importorskip("torch")
    model = option_model()
    assert model.output_shape == (5,)
    for param in model.parameters():  # non-default affine maps too
        param.data = np.random.default_rng(param.size).uniform(0.5, 1.5, param.data.shape)
    module = torch_twin(torch, model)
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((3, 2, 14, 13)), rng.integers(0, 5, 3)
    logits = model.forward(x, training=True)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    dx = model.backward(dlogits)
    x_t = torch.tensor(x, requires_grad=True)
    logits_t = module(x_t)
    loss_t = torch.nn.functional.cross_entropy(logits_t, torch.tensor(labels))
    loss_t.backward()
    np.testing.assert_allclose(logits, logits_t.detach().numpy(), rtol=1e-9, atol=1e-12)
    assert loss == pytest.approx(loss_t.item(), rel=1e-10)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-8, atol=1e-12)
    torch_grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    keys = {"0": "1", "3": "4", "4": "6", "8": "10"}
    for name, param in model.named_parameters():
        layer, kind = name.split(".")
        np.testing.assert_allclose(param.grad, torch_grads[f"{keys[layer]}.{kind}"], rtol=1e-8, atol=1e-12)


def test_options_survive_configs_and_model_files(tmp_path):
    model = option_model("float32")
    for layer in model.layers:
        config = json.loads(json.dumps(layer_config(layer)))
        assert layer_from_config(config).get_config() == layer.get_config()
    assert model.layers[0].get_config()["padding"] == [[0, 1], [1, 0]]
    assert model.layers[2].get_config()["dilation"] == [2, 2] and model.layers[2].ceil_mode is True
    assert model.layers[5].get_config()["count_include_pad"] is False
    assert model.layers[3].get_config()["normalized_shape"] == [3, 3]
    x = np.random.default_rng(1).random((4, 2, 14, 13)).astype(np.float32)
    model.save(tmp_path / "options.npz")
    loaded = convnp.load(tmp_path / "options.npz")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.state_dict()["3.weight"].shape == (3, 3)


@pytest.mark.parametrize(
    ("cls", "config", "expected"),
    [
        (MaxPool2D, {"kernel_size": [2, 2], "stride": [2, 2], "padding": 0}, {"dilation": (1, 1), "ceil_mode": False}),
        (
            AvgPool2D,
            {"kernel_size": [3, 3], "stride": [1, 1], "padding": 1},
            {"ceil_mode": False, "count_include_pad": True},
        ),  # fmt: skip
        (Softmax, {}, {"axis": 1}),
        (LayerNorm, {"eps": 1e-5}, {"normalized_shape": None}),
    ],
)
def test_configs_written_before_the_options_load_with_todays_behaviour(cls, config, expected):
    layer = layer_from_config({"class": cls.__name__, "config": config})
    for attr, value in expected.items():
        assert getattr(layer, attr) == value


def test_short_repr_shows_the_options_that_differ_from_the_defaults():
    assert MaxPool2D(2).short_repr() == "MaxPool2D((2, 2))"
    assert "dilation=(2, 2)" in MaxPool2D(2, dilation=2).short_repr()
    assert "ceil_mode=True" in AvgPool2D(2, ceil_mode=True).short_repr()
    assert "count_include_pad=False" in AvgPool2D(2, count_include_pad=False).short_repr()
    assert "padding=((0, 1), (1, 0))" in Conv2D(2, 3, padding=((0, 1), (1, 0))).short_repr()
    assert Softmax().short_repr() == "Softmax()" and Softmax(axis=-1).short_repr() == "Softmax(axis=-1)"


@pytest.mark.parametrize(
    "pool",
    [MaxPool2D(2, padding=((1, 0), (1, 0))), MaxPool2D(2, dilation=2), MaxPool2D(2, ceil_mode=True)],
    ids=["padding-before", "dilation", "ceil-odd"],
)
def test_pools_that_do_not_tile_the_input_stay_out_of_the_conv_pool_fusion(pool):
    model = Sequential([Conv2D(3, 3), pool, Flatten(), Dense(2)], input_shape=(1, 7, 7), dtype="float64", seed=0)
    assert not any(isinstance(step, ConvPoolStep) for step in model.execution_plan())
    x = np.random.default_rng(0).standard_normal((2, 1, 7, 7))
    expected = model.layers[1].forward(model.layers[0].forward(x))
    np.testing.assert_array_equal(model.forward_layers(x, training=False, stop=2), expected)


def test_pools_with_padding_only_after_or_nothing_to_round_are_still_fused():
    for pool in (MaxPool2D(2, padding=((0, 1), (0, 1))), MaxPool2D(2, ceil_mode=True)):
        model = Sequential([Conv2D(3, 3), pool, Flatten(), Dense(2)], input_shape=(1, 6, 6), seed=0)
        assert isinstance(model.execution_plan()[0], ConvPoolStep)


def test_a_final_softmax_over_another_axis_is_not_taken_for_class_probabilities():
    images = Sequential([Conv2D(3, 1), Softmax(axis=2)], input_shape=(1, 4, 4))
    assert not images.ends_in_softmax()
    vectors = Sequential([Flatten(), Dense(3), Softmax(axis=-1)], input_shape=(1, 2, 2))
    assert vectors.ends_in_softmax()
    assert Sequential([Dense(3, activation=Softmax(axis=-1))], input_shape=(4,)).ends_in_softmax()


def test_layer_norm_over_trailing_axes_has_parameters_of_that_shape():
    layer = LayerNorm(4)
    layer.build((3, 4), dtype="float64")
    assert layer.weight.data.shape == (4,) and layer.begin_axis == 2
    x = np.random.default_rng(2).standard_normal((2, 3, 4))
    out = layer.forward(x)
    np.testing.assert_allclose(out.mean(axis=2), 0.0, atol=1e-12)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: MaxPool2D(2, dilation=0), ValueError, "dilation must be >= 1"),
        (lambda: MaxPool2D(2, ceil_mode="yes"), TypeError, "ceil_mode must be True or False"),
        (lambda: AvgPool2D(2, count_include_pad=1), TypeError, "count_include_pad must be True or False"),
        (lambda: AvgPool2D(2, padding=((0, 2), (0, 0))), ValueError, "at most half the kernel"),
        (lambda: Conv2D(2, 3, padding=((0, -1), (0, 0))), ValueError, "Conv2D: padding"),
        (lambda: Softmax(axis=0), ValueError, "axis 0 is the batch"),
        (lambda: LayerNorm((2, 0)), ValueError, "normalized_shape"),
        (lambda: LayerNorm("3"), TypeError, "normalized_shape"),
    ],
)
def test_option_errors_name_the_layer(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_shape_errors_name_the_layer():
    with pytest.raises(ValueError, match="LayerNorm.*trailing axes"):
        Sequential([LayerNorm((3, 3))], input_shape=(2, 4, 3))
    with pytest.raises(ValueError, match="Softmax.*out of range"):
        Sequential([Softmax(axis=3)], input_shape=(2, 4))
