"""convnp <-> PyTorch: equal predictions, equal state_dicts, clear errors."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

from convnp import nn
from convnp.interop import from_torch, to_torch, torch_key_map

torch = pytest.importorskip("torch")
tnn = torch.nn

TOLERANCE = 1e-5


def _trained(layers, input_shape, classes, dtype="float32", seed=0):
    """A model built with ``seed`` and trained one epoch on random data (batch-norm stats move)."""
    model = nn.Sequential(layers, input_shape=input_shape, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((24, *input_shape)).astype(dtype)
    y = rng.integers(0, classes, 24)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, seed=0)
    return model


def convnp_model(dtype="float32", seed=0):
    """Every convnp layer type; fused activations, asymmetric "same" pads, global pooling."""
    layers = [
        nn.Conv2D(4, 3, padding="same", activation="relu"),
        nn.BatchNorm2D(),
        nn.MaxPool2D(3, stride=2, padding=1),  # (4, 5, 5)
        nn.Conv2D(6, (2, 3), stride=2, padding="same", groups=2, activation=nn.LeakyReLU(0.2)),
        nn.GroupNorm(3),  # (6, 3, 3)
        nn.AvgPool2D(2, stride=2, padding="same"),  # pads (0, 1, 0, 1): (6, 2, 2)
        nn.ELU(),
        nn.LayerNorm(),
        nn.Conv2D(8, 2, padding="same", use_bias=False, activation="gaussian"),  # pads (0, 1, 0, 1)
        nn.Dropout(0.2, rng=0),
        nn.MaxPool2D(3, stride=2, padding="same"),  # pads (0, 1, 0, 1): (8, 1, 1)
        nn.Sigmoid(),
        nn.GlobalAvgPool2D(),
        nn.Dense(6, activation="tanh"),
        nn.BatchNorm1D(),
        nn.Gaussian(),
        nn.Dense(6),
        nn.ReLU(),
        nn.Tanh(),
        nn.Flatten(),
        nn.Dense(4),
    ]
    return _trained(layers, (2, 9, 9), 4, dtype, seed)


def _inputs(shape, n=7, seed=1, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(dtype)


def _torch_probabilities(module, x, ends_in_softmax=False):
    with torch.no_grad():
        out = module(torch.from_numpy(x))
        return (out if ends_in_softmax else torch.softmax(out, dim=1)).numpy()


@pytest.fixture(scope="module")
def model():
    return convnp_model()


def test_to_torch_predicts_the_same(model):
    module = to_torch(model)
    assert isinstance(module, tnn.Sequential) and not module.training
    x = _inputs(model.input_shape)
    np.testing.assert_allclose(_torch_probabilities(module, x), model.predict(x), rtol=0, atol=TOLERANCE)
    kinds = [type(m).__name__ for m in module]
    assert kinds[:3] == ["Conv2d", "ReLU", "BatchNorm2d"]
    assert kinds.count("ZeroPad2d") == 3 and kinds.count("ConstantPad2d") == 1
    assert kinds[kinds.index("AdaptiveAvgPool2d") + 1] == "Flatten"
    assert "TorchGaussian" in kinds


def test_to_torch_state_dict_equals_model_state_dict(model):
    module = to_torch(model)
    key_map = torch_key_map(model)
    torch_state = module.state_dict()
    model_state = model.state_dict()
    assert set(key_map) == set(model_state)
    assert set(key_map.values()) == {k for k in torch_state if not k.endswith("num_batches_tracked")}
    for key, value in model_state.items():
        np.testing.assert_array_equal(torch_state[key_map[key]].numpy(), value)
    assert key_map["1.running_mean"] == "2.running_mean"  # after Conv2d and its ReLU
    assert not np.allclose(model_state["1.running_mean"], 0)  # trained, not the defaults


def test_round_trip_through_torch(model):
    back = from_torch(to_torch(model), input_shape=model.input_shape)
    x = _inputs(model.input_shape)
    np.testing.assert_allclose(back.predict(x), model.predict(x), rtol=0, atol=TOLERANCE)
    # Activations come back as layers of their own; the arrays are the same ones.
    assert type(back[0]).__name__ == "Conv2D" and type(back[1]).__name__ == "ReLU"
    assert back[4].padding == "same"  # the ZeroPad2d folded back into the conv
    # Both models map onto the same PyTorch layout; through it, their arrays are equal.
    back_keys = {torch_key: key for key, torch_key in torch_key_map(back).items()}
    assert set(back_keys) == set(torch_key_map(model).values())
    back_state = back.state_dict()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(back_state[back_keys[torch_key_map(model)[key]]], value)


def test_state_dict_into_model(model):
    """A PyTorch state_dict (shifted indices) loads into a fresh convnp model of the same architecture."""
    fresh = convnp_model(seed=5)
    x = _inputs(model.input_shape)
    assert not np.allclose(fresh.predict(x), model.predict(x), atol=TOLERANCE)
    returned = from_torch(to_torch(model).state_dict(), model=fresh)
    assert returned is fresh
    np.testing.assert_allclose(fresh.predict(x), model.predict(x), rtol=0, atol=TOLERANCE)
    # the model's own keys and a module are accepted too
    other = convnp_model(seed=6)
    from_torch(model.state_dict(), model=other)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    other = convnp_model(seed=7)
    from_torch(to_torch(model), model=other)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


def test_state_dict_that_does_not_fit_raises(model):
    state = to_torch(model).state_dict()
    del state["0.bias"]
    with pytest.raises(KeyError, match=r"missing \['0.bias'\]"):
        from_torch(state, model=convnp_model(seed=3))


def torch_module():
    """Every supported torch module, with non-default weights and running statistics."""
    torch.manual_seed(0)
    module = tnn.Sequential(
        tnn.Conv2d(2, 4, 3, padding=1),  # (4, 9, 9)
        tnn.BatchNorm2d(4),
        tnn.ReLU(),
        tnn.MaxPool2d(3, stride=2, padding=1),  # (4, 5, 5)
        tnn.ZeroPad2d((1, 1, 0, 1)),  # with the conv below: convnp's "same"
        tnn.Conv2d(4, 6, (2, 3), stride=2, groups=2),  # (6, 3, 3)
        tnn.LeakyReLU(0.3),
        tnn.GroupNorm(3, 6),
        tnn.AvgPool2d(3, stride=1, padding=1),  # (6, 3, 3)
        tnn.ELU(0.7),
        tnn.Conv2d(6, 6, 3, padding="same", dilation=2, bias=False),
        tnn.Tanh(),
        tnn.ConstantPad2d((0, 1, 0, 1), float("-inf")),
        tnn.MaxPool2d(2, 2),  # (6, 2, 2)
        tnn.LayerNorm([6, 2, 2]),
        tnn.Sigmoid(),
        tnn.Dropout(0.1),
        tnn.AdaptiveAvgPool2d(1),
        tnn.Flatten(),
        tnn.Linear(6, 8),
        tnn.BatchNorm1d(8, momentum=0.2, eps=1e-3),
        tnn.Linear(8, 3),
    )
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.3 * torch.randn_like(param))
        module.train()
        for _ in range(3):  # moves the running statistics
            module(torch.randn(16, 2, 9, 9))
    return module.eval()


def test_from_torch_predicts_the_same():
    module = torch_module()
    model = from_torch(module, input_shape=(2, 9, 9))
    assert model.dtype == np.float32 and len(model) == len(module) - 3  # 2 pads, pool + flatten
    x = _inputs((2, 9, 9))
    np.testing.assert_allclose(model.predict(x), _torch_probabilities(module, x), rtol=0, atol=TOLERANCE)
    assert model[4].padding == "same" and model[7].padding == (1, 1)
    assert model[17].momentum == 0.2 and model[17].eps == 1e-3


def test_symmetric_pad_module_folds_into_the_layer():
    torch.manual_seed(2)
    module = tnn.Sequential(
        tnn.ZeroPad2d(1), tnn.AvgPool2d(3, stride=1), tnn.ZeroPad2d((1, 1, 0, 0)), tnn.Conv2d(2, 3, 3),
        tnn.ConstantPad2d(1, float("-inf")), tnn.MaxPool2d(3, stride=2), tnn.Flatten(), tnn.Linear(18, 2),
    ).eval()  # fmt: skip
    model = from_torch(module, input_shape=(2, 6, 6))
    assert [layer.padding for layer in model.layers[:3]] == [(1, 1), (0, 1), (1, 1)]
    x = _inputs((2, 6, 6))
    np.testing.assert_allclose(model.predict(x), _torch_probabilities(module, x), rtol=0, atol=TOLERANCE)


def test_from_torch_state_dict_equals_module_state_dict():
    module = torch_module()
    model = from_torch(module, input_shape=(2, 9, 9))
    torch_state = module.state_dict()
    model_state = model.state_dict()
    key_map = torch_key_map(model)
    for key, value in model_state.items():
        np.testing.assert_array_equal(value, torch_state[key_map[key]].numpy())
    # back to torch: same layout, same arrays (key for key)
    again = to_torch(model).state_dict()
    assert set(again) == set(torch_state)
    for key, value in torch_state.items():
        if not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(again[key].numpy(), value.numpy())


def test_from_torch_ending_in_softmax_and_float64():
    torch.manual_seed(1)
    module = tnn.Sequential(
        tnn.Flatten(), tnn.Linear(12, 5), tnn.LayerNorm(5, bias=False), tnn.GroupNorm(1, 5, affine=False),
        tnn.Linear(5, 3), tnn.Softmax(dim=-1),
    ).double().eval()  # fmt: skip
    model = from_torch(module, input_shape=(3, 2, 2))
    assert model.dtype == np.float64
    x = _inputs((3, 2, 2), dtype=np.float64)
    np.testing.assert_allclose(model.predict(x), _torch_probabilities(module, x, True), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(model[2].bias.data, 0)


def test_to_torch_float64():
    model = convnp_model(dtype="float64")
    module = to_torch(model)
    assert all(p.dtype == torch.float64 for p in module.parameters())
    x = _inputs(model.input_shape, dtype=np.float64)
    np.testing.assert_allclose(_torch_probabilities(module, x), model.predict(x), rtol=0, atol=1e-10)


def test_gaussian_module_pickles(model):
    module = to_torch(model)
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.from_numpy(_inputs(model.input_shape))
    with torch.no_grad():
        assert torch.equal(loaded(x), module(x))


def test_digits_accuracy_is_the_same_in_torch():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = (digits.images / 16).astype("float32")[:, None]  # (1797, 1, 8, 8)
    y = digits.target.astype(np.int64)
    model = nn.Sequential(
        [nn.Conv2D(8, 3, padding=1, activation="relu"), nn.BatchNorm2D(), nn.MaxPool2D(2),
         nn.Flatten(), nn.Dense(10)],
        input_shape=(1, 8, 8), seed=0,
    )  # fmt: skip
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, seed=0, lr=0.01)
    accuracy = model.evaluate(x, y)["accuracy"]
    assert accuracy > 0.8
    with torch.no_grad():
        torch_predictions = to_torch(model)(torch.from_numpy(x)).argmax(dim=1).numpy()
    np.testing.assert_array_equal(torch_predictions, model.predict(x).argmax(axis=1))
    assert float(np.mean(torch_predictions == y)) == pytest.approx(accuracy, abs=1e-12)


@pytest.mark.parametrize(
    ("modules", "error", "pattern"),
    [
        ([tnn.Flatten(), tnn.Conv1d(1, 1, 1)], TypeError, r"module 1 \(Conv1d\) is not supported"),
        ([tnn.ReLU(), tnn.Sequential(tnn.ReLU())], TypeError, r"module 1 \(Sequential\)"),
        ([tnn.MaxPool2d(2, return_indices=True)], ValueError, r"module 0 .*return_indices"),
        ([tnn.ZeroPad2d(1), tnn.AvgPool2d(3, padding=1, count_include_pad=False)], ValueError, "count_include_pad"),
        ([tnn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")], ValueError, "padding_mode"),
        ([tnn.AdaptiveAvgPool2d(1), tnn.ReLU()], ValueError, r"module 0 .*Flatten"),
        ([tnn.AdaptiveAvgPool2d(2), tnn.Flatten()], ValueError, "output_size"),
        ([tnn.LayerNorm([2, 4])], ValueError, "normalized_shape"),
        ([tnn.Softmax(dim=0)], ValueError, "batch axis"),
        ([tnn.ZeroPad2d(1), tnn.ReLU()], ValueError, "pad module at index 0"),
        ([tnn.ConstantPad2d((0, 1, 0, 1), float("-inf")), tnn.MaxPool2d(2, ceil_mode=True)], ValueError, "ceil_mode"),
        ([tnn.ZeroPad2d(1), tnn.MaxPool2d(2)], ValueError, "must pad with -inf"),
        ([tnn.BatchNorm2d(2, track_running_stats=False)], ValueError, "track_running_stats"),
        ([tnn.Flatten(), tnn.Linear(31, 2)], ValueError, r"module 1 \(Linear\)"),
    ],
)
def test_unsupported_torch_modules_raise(modules, error, pattern):
    with pytest.raises(error, match=pattern):
        from_torch(tnn.Sequential(*modules), input_shape=(2, 4, 4))


def test_from_torch_argument_errors(model):
    with pytest.raises(TypeError, match="model="):
        from_torch(to_torch(model).state_dict())
    with pytest.raises(ValueError, match="input_shape"):
        from_torch(tnn.Sequential(tnn.ReLU()))
    with pytest.raises(TypeError, match="torch.nn.Sequential"):
        from_torch(tnn.ReLU(), input_shape=(3,))
    with pytest.raises(TypeError, match="convnp Sequential"):
        from_torch(to_torch(model).state_dict(), model=to_torch(model))
    with pytest.raises(TypeError, match="convnp Sequential"):
        to_torch(to_torch(model))


def test_unsupported_convnp_layer_raises():
    class InteropTorchUnsupported(nn.Layer):
        def forward(self, x, training=False):
            return x

    model = nn.Sequential([nn.Flatten(), InteropTorchUnsupported(), nn.Dense(2)], input_shape=(4,))
    with pytest.raises(TypeError, match=r"layer 1 \(InteropTorchUnsupported\)"):
        to_torch(model)


def test_missing_torch_says_how_to_install(model, monkeypatch):
    state = model.state_dict()
    module = to_torch(model)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="pip install torch"):
        to_torch(model)
    with pytest.raises(ImportError, match="pip install torch"):
        from_torch(module, input_shape=model.input_shape)
    # NumPy arrays need no torch
    other = convnp_model(seed=4)
    from_torch(state, model=other)
    np.testing.assert_array_equal(other.state_dict()["0.weight"], state["0.weight"])


def test_importing_convnp_imports_no_optional_package():
    code = (
        "import sys, convnp, convnp.interop; "
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
