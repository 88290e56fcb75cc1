"""to_torch for graph models and Residual blocks: same keys, same outputs, same gradients (float64)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from convnp import nn
from convnp.functional.losses import softmax_cross_entropy
from convnp.interop import from_torch, to_torch, torch_key_map
from convnp.models import resnet20

torch = pytest.importorskip("torch")

RTOL = 1e-10


def branching_model(dtype="float64"):
    """Named and unnamed layers, a fan-out, Add of three, Concatenate, a Residual with a projection, the new layers."""
    inputs = nn.Input((3, 8, 8))
    x = nn.Conv2D(6, 3, padding="same", activation="relu", name="stem")(inputs)
    y = nn.BatchNorm2D(name="stem_bn")(nn.Conv2D(6, 2, padding="same", activation="gaussian")(x))  # pads (0,1,0,1)
    s = nn.Add(name="join")([x, y, nn.Identity()(x)])
    c = nn.Concatenate(axis=1)([s, nn.MaxPool2D(3, stride=1, padding=1)(x)])  # (12, 8, 8)
    r = nn.Residual(
        [nn.Conv2D(8, 3, stride=2, padding=1), nn.BatchNorm2D(), nn.ReLU(), nn.Conv2D(8, 3, padding=1)],
        shortcut=[nn.Conv2D(8, 1, stride=2, use_bias=False), nn.BatchNorm2D()],
        name="block",
    )(c)  # (8, 4, 4)
    u = nn.ConvTranspose2D(4, 2, stride=2, name="up")(nn.ELU()(r))  # (4, 8, 8)
    u = nn.Upsample2D(2, mode="bilinear")(nn.AvgPool2D(2)(u))  # (4, 8, 8)
    v = nn.Concatenate(axis=-3)([u, nn.Upsample2D((2, 1))(nn.AvgPool2D((2, 1))(u))])  # (8, 8, 8)
    h = nn.Flatten()(nn.AdaptiveAvgPool2D((3, 2))(nn.LayerNorm()(v)))
    h = nn.Dropout(0.3, rng=0)(nn.Dense(10, activation=nn.LeakyReLU(0.1))(h))
    model = nn.Model(inputs, nn.Dense(4, name="head")(nn.GroupNorm(2)(h)), dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((16, 3, 8, 8)), rng.integers(0, 4, 16), epochs=1, batch_size=8, verbose=0, seed=0)
    return model


def trained_resnet20(dtype="float64"):
    model = resnet20((3, 8, 8), num_classes=4, seed=0, dtype=dtype)
    rng = np.random.default_rng(1)
    model.fit(rng.standard_normal((16, 3, 8, 8)), rng.integers(0, 4, 16), epochs=1, batch_size=8, verbose=0, seed=0)
    return model


def residual_sequential(dtype="float64"):
    block = nn.Residual([nn.Conv2D(4, 3, padding=1, activation="relu"), nn.BatchNorm2D(), nn.Conv2D(4, 3, padding=1)])
    layers = [nn.Conv2D(4, 3, padding="same", activation="relu"), block, nn.ReLU(), nn.GlobalAvgPool2D(), nn.Dense(3)]
    return nn.Sequential(layers, input_shape=(2, 6, 6), dtype=dtype, seed=0)


MODELS = {"branching": branching_model, "resnet20": trained_resnet20, "residual_sequential": residual_sequential}


@pytest.fixture(scope="module")
def models():
    return {name: build() for name, build in MODELS.items()}


def compare_passes(model, module, x, training):
    """Outputs, dx and every parameter gradient of convnp and torch for the loss sum(out * g)."""
    module.train(training)
    tx = torch.tensor(x, requires_grad=True)
    expected = module(tx)
    g = np.random.default_rng(7).standard_normal(expected.shape)
    (expected * torch.tensor(g)).sum().backward()
    out = model.forward(x, training=training)
    dx = model.backward(g)
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=RTOL, atol=1e-12)
    grads = dict(module.named_parameters())
    key_map = torch_key_map(model)
    for key, param in model.named_parameters():
        np.testing.assert_allclose(param.grad, grads[key_map[key]].grad.numpy(), rtol=RTOL, atol=1e-12, err_msg=key)
    module.zero_grad()


@pytest.mark.parametrize("name", list(MODELS))
def test_to_torch_computes_the_same_values_and_gradients(models, name):
    model = models[name]
    module = to_torch(model)
    assert not module.training and all(p.dtype == torch.float64 for p in module.parameters())
    x = np.random.default_rng(2).standard_normal((5, *model.input_shape))
    compare_passes(model, module, x, training=False)
    without_dropout = name != "branching"  # the two libraries draw different dropout masks
    if without_dropout:
        compare_passes(model, module, x, training=True)


@pytest.mark.parametrize("name", ["branching", "resnet20"])
def test_graph_model_keeps_its_keys_and_their_order(models, name):
    model = models[name]
    module = to_torch(model)
    assert isinstance(module, torch.fx.GraphModule)
    keys = [key for key in module.state_dict() if not key.endswith("num_batches_tracked")]
    assert [key for key, _ in module.named_parameters()] == [key for key, _ in model.named_parameters()]
    if name == "resnet20":
        assert keys == list(model.state_dict())
    else:  # a Residual lists its parameters, then its buffers; torch goes module by module
        assert sorted(keys) == sorted(model.state_dict())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(module.state_dict()[key].numpy(), value, err_msg=key)
    assert torch_key_map(model) == {key: key for key in model.state_dict()}


def test_resnet20_has_torchvision_names_and_runs_in_float32():
    model = trained_resnet20("float32")
    module = to_torch(model)
    assert "layer2.0.downsample.0.weight" in module.state_dict() and "fc.bias" in module.state_dict()
    assert type(module.get_submodule("layer2.0.downsample.0")).__name__ == "Conv2d"
    x = np.random.default_rng(3).standard_normal((7, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        probabilities = torch.softmax(module(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(probabilities, model.predict(x), rtol=0, atol=1e-5)


def test_branching_model_layout(models):
    module = to_torch(models["branching"])
    children = dict(module.named_children())
    # Extra modules beside the layer that needs them; merges are torch functions, not modules.
    kinds = {name: type(child).__name__ for name, child in children.items()}
    assert kinds["stem"] == "Conv2d" and kinds["stem_activation"] == "ReLU"
    assert kinds["1_pad"] == "ZeroPad2d" and kinds["1_activation"] == "TorchGaussian"
    assert "join" not in children and "block" in children
    assert isinstance(children["block"], torch.fx.GraphModule)
    assert [key for key in children["block"].state_dict() if key.endswith("weight")] == [
        "body.0.weight", "body.1.weight", "body.3.weight", "shortcut.0.weight", "shortcut.1.weight",
    ]  # fmt: skip
    code = module.code
    assert "torch.cat" in code and code.count(" + ") >= 2


def test_residual_in_sequential_is_one_module(models):
    model = models["residual_sequential"]
    module = to_torch(model)
    assert isinstance(module, torch.nn.Sequential) and isinstance(module[2], torch.fx.GraphModule)
    key_map = torch_key_map(model)
    assert key_map["1.body.0.weight"] == "2.body.0.weight"  # after Conv2d and its ReLU
    assert key_map["1.body.1.running_var"] == "2.body.1.running_var"
    state = module.state_dict()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(state[key_map[key]].numpy(), value)


def test_round_trip_through_torch(models):
    for name in ("branching", "resnet20"):
        model = models[name]
        back = from_torch(to_torch(model), model.input_shape)  # a Residual comes back as its layers and an Add
        assert sorted(back.state_dict()) == sorted(model.state_dict())
        assert [key for key, _ in back.named_parameters()] == [key for key, _ in model.named_parameters()]
        x = np.random.default_rng(4).standard_normal((3, *model.input_shape))
        np.testing.assert_allclose(back.forward(x), model.forward(x), rtol=RTOL, atol=1e-12)


def test_state_dict_into_a_graph_model(models):
    model = models["resnet20"]
    fresh = resnet20((3, 8, 8), num_classes=4, seed=5, dtype="float64")
    assert from_torch(to_torch(model).state_dict(), model=fresh) is fresh
    x = np.random.default_rng(5).standard_normal((3, 3, 8, 8))
    np.testing.assert_array_equal(fresh.forward(x), model.forward(x))
    state = to_torch(model).state_dict()
    del state["fc.bias"]
    with pytest.raises(KeyError, match=r"missing \['fc.bias'\]"):
        from_torch(state, model=fresh)


def test_exported_graph_pickles(models):
    model = models["branching"]
    module = to_torch(model)
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.tensor(np.random.default_rng(6).standard_normal((2, 3, 8, 8)))
    with torch.no_grad():
        assert torch.equal(loaded(x), module(x))


def test_names_torch_cannot_hold_and_layers_without_equivalent():
    inputs = nn.Input((4,))
    model = nn.Model(inputs, nn.Dense(2, name="a")(nn.Dense(3, name="a.b")(inputs)))
    with pytest.raises(ValueError, match=r"layer 1 is keyed 'a', the path of other layers"):
        to_torch(model)
    inputs = nn.Input((4,))
    model = nn.Model(inputs, nn.Dense(2, name="a..b")(inputs))
    with pytest.raises(ValueError, match="not a torch module path"):
        to_torch(model)

    class InteropGraphUnsupported(nn.Layer):
        def forward(self, x, training=False):
            return x

    inputs = nn.Input((4,))
    model = nn.Model(inputs, nn.Dense(2)(nn.Residual([InteropGraphUnsupported()])(inputs)))
    with pytest.raises(TypeError, match=r"layer 0, body.0 \(InteropGraphUnsupported\) has no PyTorch equivalent"):
        to_torch(model)
    with pytest.raises(TypeError, match="convnp Sequential or Model"):
        to_torch(nn.Dense(3))


def test_a_training_step_agrees(models):
    """A softmax cross-entropy training step on both sides moves the weights alike."""
    model = trained_resnet20()
    module = to_torch(model).train()
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((6, 3, 8, 8)), rng.integers(0, 4, 6)
    torch.nn.functional.cross_entropy(module(torch.tensor(x)), torch.tensor(y)).backward()
    loss, _ = model.train_pass(x, y, softmax_cross_entropy)
    grads = dict(module.named_parameters())
    for key, param in model.named_parameters():
        np.testing.assert_allclose(param.grad, grads[key].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=key)
