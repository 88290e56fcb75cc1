"""from_torch on modules torch.fx traces: torchvision-style ResNet, Inception block, U-Net; keys, order, gradients."""

from __future__ import annotations

import numpy as np
import pytest

import convnp
from convnp import nn
from convnp.interop import from_torch, to_torch, torch_key_map

torch = pytest.importorskip("torch")
tnn = torch.nn
F = torch.nn.functional

from tests.interop import torch_networks  # noqa: E402  (needs torch)

RTOL = 1e-10


def torch_keys(module) -> list[str]:
    return [key for key in module.state_dict() if not key.endswith("num_batches_tracked")]


def compare_passes(model, module, x, training):
    """Outputs, the input gradient and every parameter gradient of both, for the loss sum(out * g)."""
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
    for key, param in model.named_parameters():
        np.testing.assert_allclose(param.grad, grads[key].grad.numpy(), rtol=RTOL, atol=1e-12, err_msg=key)
    module.zero_grad()


NETWORKS = {
    "resnet": (torch_networks.resnet, (3, 8, 8)),
    "resnet_view_head": (lambda: torch_networks.resnet(("add", "iadd", "add"), head="view"), (3, 8, 8)),
    "inception": (torch_networks.inception, (3, 8, 8)),
    "unet": (torch_networks.unet, (1, 16, 16)),
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_same_keys_order_weights_outputs_and_gradients(name):
    build, shape = NETWORKS[name]
    module = build()
    model = from_torch(module, shape)
    assert isinstance(model, nn.Model) and model.dtype == np.float64
    assert list(model.state_dict()) == torch_keys(module)
    assert [key for key, _ in model.named_parameters()] == [key for key, _ in module.named_parameters()]
    for key, value in module.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(model.state_dict()[key], value.numpy(), err_msg=key)
    assert torch_key_map(model) == {key: key for key in model.state_dict()}
    x = np.random.default_rng(1).standard_normal((4, *shape))
    compare_passes(model, module, x, training=False)  # running statistics
    compare_passes(model, module, x, training=True)  # batch statistics, which both then fold into the running ones
    for key, value in module.state_dict().items():
        if key.endswith(("running_mean", "running_var")):
            np.testing.assert_allclose(model.state_dict()[key], value.numpy(), rtol=RTOL, err_msg=key)


def test_resnet_layers_are_named_by_the_modules_and_the_blocks_add():
    model = from_torch(torch_networks.resnet(), (3, 8, 8))
    names = [layer.name for layer in model.layers]
    assert names[:6] == ["conv1", "bn1", "relu", "layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu"]
    assert "layer1.0.relu_1" in names  # torchvision's block calls self.relu twice: two layers, no weights
    assert [type(layer).__name__ for layer in model.layers].count("Add") == 3  # +=, +, torch.add
    assert names[-3:] == ["avgpool", "flatten", "fc"]
    block = names.index("layer2.1.conv1")
    # torch.add(identity, out): the graph order puts the shortcut first; the model keeps the torch order.
    assert names.index("layer2.0.downsample.0") > names.index("layer2.0.bn2")
    assert block > names.index("layer2.0.downsample.1")


def test_round_trip_to_torch_gives_the_module_back():
    for build, shape in NETWORKS.values():
        module = build()
        again = to_torch(from_torch(module, shape))
        assert list(again.state_dict()) == list(module.state_dict())
        assert [key for key, _ in again.named_parameters()] == [key for key, _ in module.named_parameters()]
        x = torch.tensor(np.random.default_rng(2).standard_normal((3, *shape)))
        with torch.no_grad():
            np.testing.assert_allclose(again(x).numpy(), module(x).numpy(), rtol=RTOL, atol=1e-12)


def test_imported_model_trains_saves_and_loads_in_its_order(tmp_path):
    module = torch_networks.resnet()
    model = from_torch(module, (3, 8, 8)).astype("float32")
    rng = np.random.default_rng(3)
    x, y = rng.random((32, 3, 8, 8), dtype=np.float32), rng.integers(0, 5, 32)
    history = model.fit(x, y, epochs=3, batch_size=16, lr=1e-2, verbose=0, seed=0)
    assert history["loss"][-1] < history["loss"][0]
    loaded = convnp.load(model.save(tmp_path / "resnet.npz"))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert list(loaded.state_dict()) == list(model.state_dict())
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


class Ops(tnn.Module):
    """The supported functions and methods, each once."""

    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(2, 4, 2)
        self.pool = tnn.MaxPool2d(2)
        self.pad = tnn.ZeroPad2d(1)
        self.conv2 = tnn.Conv2d(4, 4, 3)
        self.fc = tnn.Linear(4 * 2 * 4, 3)

    def forward(self, x):
        x = F.pad(x, (0, 1, 0, 1))  # with the 2x2 conv: "same" padding
        x = F.leaky_relu(self.conv(x), 0.2)
        x = F.elu(self.pool(F.pad(x, (1, 1, 1, 1), value=float("-inf"))), alpha=0.5)
        x = torch.sigmoid(self.conv2(self.pad(x))).tanh()
        x = F.interpolate(x, scale_factor=(1, 2), mode="nearest")
        x = F.adaptive_avg_pool2d(x, (2, 4))
        x = x.reshape(x.shape[0], -1)
        x = self.fc(x)
        return F.softmax(x, dim=1)


def test_functions_methods_and_folded_pads():
    torch.manual_seed(0)
    module = Ops().double().eval()
    model = from_torch(module, (2, 6, 6))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "LeakyReLU", "MaxPool2D", "ELU", "Conv2D", "Sigmoid", "Tanh", "Upsample2D",
                     "AdaptiveAvgPool2D", "Flatten", "Dense", "Softmax"]  # fmt: skip
    assert model.layers[0].padding == "same" and model.layers[2].padding == (1, 1)
    assert model.layers[4].padding == (1, 1) and model.layers[1].alpha == 0.2
    compare_passes(model, module, np.random.default_rng(4).standard_normal((3, 2, 6, 6)), training=False)


def test_a_chain_and_a_float32_module():
    class Chain(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(tnn.Conv2d(1, 3, 3), tnn.ReLU(), tnn.Flatten())
            self.classifier = tnn.Linear(3 * 4 * 4, 2)

        def forward(self, x):
            return self.classifier(self.features(x))

    torch.manual_seed(1)
    module = Chain().eval()
    model = from_torch(module, (1, 6, 6))
    assert model.dtype == np.float32
    assert [layer.name for layer in model.layers] == ["features.0", "features.1", "features.2", "classifier"]
    x = np.random.default_rng(5).random((5, 1, 6, 6), dtype=np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(model.forward(x), module(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_registration_order_that_no_pass_can_follow_gives_the_nearest():
    class HeadFirst(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc = tnn.Linear(8, 2)  # registered first, computed last
            self.conv = tnn.Conv2d(1, 2, 3)

        def forward(self, x):
            return self.fc(torch.flatten(self.conv(x), 1))

    model = from_torch(HeadFirst(), (1, 4, 4))
    assert [key for key, _ in model.named_parameters()] == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    assert set(model.state_dict()) == set(HeadFirst().state_dict())


class Doubled(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(self.conv(x))


class Unused(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(1, 1, 3, padding=1)
        self.aux = tnn.Linear(3, 3)

    def forward(self, x):
        return self.conv(x)


class Branchy(tnn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


class Scaled(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(1, 1, 1)

    def forward(self, x):
        y = self.conv(x)
        return y * 2


class Recurrent(tnn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = tnn.Conv1d(1, 1, 1)

    def forward(self, x):
        return self.rnn(x)


class IndexPool(tnn.Module):
    def __init__(self):
        super().__init__()
        self.pool = tnn.MaxPool2d(2, return_indices=True)

    def forward(self, x):
        return self.pool(x)


class Weighted(tnn.Module):
    def __init__(self):
        super().__init__()
        self.scale = tnn.Parameter(torch.ones(1))
        self.conv = tnn.Conv2d(1, 1, 1)

    def forward(self, x):
        return self.conv(x) + self.scale


class TwoInputs(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(1, 1, 1)

    def forward(self, x, y):
        return self.conv(x) + y


class TwoOutputs(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(1, 1, 1)

    def forward(self, x):
        y = self.conv(x)
        return y, y


@pytest.mark.parametrize(
    ("module", "error", "pattern"),
    [
        (Scaled(), TypeError, r"node 'mul' \(call_function operator\.mul, .*test_torch_fx_import\.py line \d+: "
                              r"return y \* 2\) is not supported"),
        (Recurrent(), TypeError, r"node 'rnn' \(call_module rnn, .*line \d+: return self\.rnn\(x\)\) \(Conv1d\) "
                                 "is not supported"),
        (IndexPool(), ValueError,
         r"node 'pool' \(call_module pool, .*\) \(MaxPool2d.*\) is not supported: return_indices"),
        (Weighted(), TypeError, r"node 'scale' \(get_attr scale, .*\) is not supported: it reads 'scale'"),
        (TwoInputs(), TypeError, r"node 'y' .* one input tensor"),
        (TwoOutputs(), TypeError, "forward must return one tensor"),
        (Doubled(), ValueError, r"'conv' holds weights and is called more than once"),
        (Unused(), ValueError, r"never uses the modules holding \['aux.weight', 'aux.bias'\]"),
        (Branchy(), TypeError, "torch.fx cannot trace Branchy"),
        (tnn.Conv2d(1, 1, 1), TypeError, "a single Conv2d; wrap it: torch.nn.Sequential"),
    ],
)  # fmt: skip
def test_unsupported_nodes_name_the_node_its_target_and_its_line(module, error, pattern):
    with pytest.raises(error, match=pattern):
        from_torch(module, (1, 4, 4))


def test_settings_convnp_lacks_and_shapes_that_do_not_fit():
    class Cat0(tnn.Module):
        def forward(self, x):
            return torch.cat([x, x], dim=0)

    class Mismatch(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv = tnn.Conv2d(1, 2, 3)

        def forward(self, x):
            return self.conv(x) + x

    class Crop(tnn.Module):
        def forward(self, x):
            return F.relu(F.pad(x, (-1, 0, 0, 0)))

    class Reshape(tnn.Module):
        def forward(self, x):
            return x.view(x.size(0), 2, -1)

    with pytest.raises(ValueError, match=r"node 'cat' .*batch axis"):
        from_torch(Cat0(), (1, 4, 4))
    with pytest.raises(ValueError, match=r"node 'add' .*inputs must have one shape"):
        from_torch(Mismatch(), (1, 4, 4))
    with pytest.raises(ValueError, match=r"node 'pad' .*non-negative"):
        from_torch(Crop(), (1, 4, 4))
    with pytest.raises(ValueError, match=r"node 'view' .*only flattening reshapes"):
        from_torch(Reshape(), (1, 4, 4))
