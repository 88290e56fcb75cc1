"""Conv2D(algorithm="winograd"): refused where F(2x2, 3x3) does not apply, saved with the model, and a
network computed that way trains, predicts and exports as the im2col one does (float64, to rounding)."""

from __future__ import annotations

import numpy as np
import pytest

import convnp
from convnp import nn
from convnp.backend import threads
from convnp.models import convnet_bn, mnist_cnn, resnet20
from convnp.nn.plan import ConvBatchNormStep, ConvPoolStep
from tests.model_files import description, read_entries, rewrite


def winograd_convolutions(model) -> list[nn.Conv2D]:
    """Every Conv2D of ``model`` that Winograd's F(2x2, 3x3) can compute."""
    found = []
    for layer in model.layers:
        for part in layer.self_and_sublayers():
            if type(part) is nn.Conv2D and part.kernel_size == (3, 3) and part.stride == (1, 1):
                found.append(part)
    return found


def switched(model):
    """``model`` with every eligible convolution set to Winograd (through the setter, as a user would)."""
    for conv in winograd_convolutions(model):
        conv.algorithm = "winograd"
    return model


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"kernel_size": 5}, r"kernel_size=\(5, 5\)"),
        ({"kernel_size": (3, 1)}, r"kernel_size=\(3, 1\)"),
        ({"kernel_size": 3, "stride": 2}, r"stride=\(2, 2\)"),
        ({"kernel_size": 3, "dilation": 2}, r"dilation=\(2, 2\)"),
        ({"kernel_size": 3, "groups": 2}, "groups=2"),
    ],
)
def test_winograd_is_refused_where_it_does_not_apply_naming_the_layer(options, reason):
    with pytest.raises(ValueError, match=rf"Conv2D 'stem': algorithm='winograd' is not available: .*{reason}"):
        nn.Conv2D(4, algorithm="winograd", name="stem", **options)
    layer = nn.Conv2D(4, **options)
    with pytest.raises(ValueError, match=reason):
        layer.algorithm = "winograd"
    assert layer.algorithm == "im2col"


def test_an_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match=r"algorithm must be one of 'im2col', 'winograd', got 'fft'"):
        nn.Conv2D(4, 3, algorithm="fft")


def test_the_algorithm_is_in_the_config_and_old_configs_load_as_im2col():
    layer = nn.Conv2D(4, 3, padding=1, algorithm="winograd")
    config = layer.get_config()
    assert config["algorithm"] == "winograd"
    assert nn.Conv2D.from_config(config).algorithm == "winograd"
    del config["algorithm"]  # a file written before the option existed
    assert nn.Conv2D.from_config(config).algorithm == "im2col"
    assert "algorithm='winograd'" in layer.short_repr() and "algorithm" not in nn.Conv2D(4, 3).short_repr()


def test_saving_and_loading_keep_the_algorithm_and_old_files_load_as_im2col(tmp_path):
    model = switched(mnist_cnn((1, 10, 10), seed=0, dtype="float64"))
    path = model.save(tmp_path / "winograd.npz")
    loaded = convnp.load(path)
    assert [conv.algorithm for conv in winograd_convolutions(loaded)] == ["winograd", "winograd"]
    x = np.random.default_rng(0).standard_normal((3, 1, 10, 10))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))

    entries = read_entries(path)
    meta = description(entries)
    for spec in meta["layers"]:
        spec["config"].pop("algorithm", None)
    old = tmp_path / "old.npz"
    rewrite(old, entries, meta, fix_checksum=True)
    assert [conv.algorithm for conv in winograd_convolutions(convnp.load(old))] == ["im2col", "im2col"]


def test_changing_the_algorithm_of_a_built_layer_keeps_the_values_and_drops_the_cache():
    rng = np.random.default_rng(1)
    layer = nn.Conv2D(5, 3, padding=((1, 0), (0, 2)), activation="tanh")
    layer.build((3, 7, 6), dtype="float64", rng=rng)
    x, dout = rng.standard_normal((4, 3, 7, 6)), rng.standard_normal((4, 5, 6, 6))
    out = layer.forward(x)
    dx = layer.backward(dout)
    dweight, dbias = layer.weight.grad, layer.bias.grad
    layer.algorithm = "winograd"
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(dout)
    np.testing.assert_allclose(layer.forward(x), out, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(layer.backward(dout), dx, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, dweight, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, dbias, rtol=1e-11, atol=1e-12)


def assert_same_parameters(model, reference, tolerance):
    for (name, param), (_, expected) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        scale = max(1.0, float(np.abs(expected.data).max()))
        np.testing.assert_allclose(param.data, expected.data, rtol=0, atol=tolerance * scale, err_msg=name)


@pytest.mark.parametrize(
    "build",
    [
        lambda: resnet20((3, 8, 8), seed=0, dtype="float64"),
        lambda: convnet_bn((3, 8, 8), seed=0, dtype="float64", width=4, blocks=2, hidden=16),
        lambda: mnist_cnn((1, 8, 8), seed=0, dtype="float64"),
    ],
    ids=["resnet20", "convnet_bn", "mnist_cnn"],
)
def test_a_winograd_network_trains_as_the_im2col_one(build):
    reference, model = build(), switched(build())
    assert winograd_convolutions(model) and all(conv.algorithm == "winograd" for conv in winograd_convolutions(model))
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((24, *model.input_shape)), rng.integers(0, 10, 24)
    histories = [
        net.fit(x, y, epochs=2, batch_size=8, optimizer="sgd", lr=0.05, verbose=0, seed=3) for net in (reference, model)
    ]
    np.testing.assert_allclose(histories[1].history["loss"], histories[0].history["loss"], rtol=1e-11)
    assert_same_parameters(model, reference, 1e-10)
    np.testing.assert_allclose(model.predict(x), reference.predict(x), rtol=1e-10, atol=1e-11)


def test_sharded_training_passes_give_the_one_piece_gradients(monkeypatch):
    model = switched(resnet20((3, 8, 8), seed=0, dtype="float64"))
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((7, 3, 8, 8)), rng.integers(0, 10, 7)
    saved = threads.get_num_threads()
    monkeypatch.setattr(threads, "MIN_ELEMENTS", 0)
    grads = []
    try:
        for count in (1, 2):
            threads.set_num_threads(count)
            model.zero_grad()
            model.train_pass(x, y, convnp.functional.softmax_cross_entropy)
            grads.append([param.grad.copy() for param in model.parameters()])
    finally:
        threads.set_num_threads(saved)
    for sharded, whole in zip(grads[1], grads[0], strict=True):
        np.testing.assert_allclose(sharded, whole, rtol=1e-11, atol=1e-13)


def test_a_winograd_convolution_is_not_fused_with_its_pooling_but_folds_its_batch_norm():
    model = switched(mnist_cnn((1, 8, 8), seed=0, dtype="float64"))
    assert not any(isinstance(step, ConvPoolStep) for step in model.execution_plan())
    assert any(isinstance(step, ConvPoolStep) for step in mnist_cnn((1, 8, 8), seed=0).execution_plan())

    reference, folded = (
        resnet20((3, 8, 8), seed=0, dtype="float64"),
        switched(resnet20((3, 8, 8), seed=0, dtype="float64")),
    )
    rng = np.random.default_rng(5)
    x_train, y_train = rng.standard_normal((16, 3, 8, 8)), rng.integers(0, 10, 16)
    for net in (reference, folded):  # running statistics as after training
        net.fit(x_train, y_train, epochs=1, batch_size=8, verbose=0, seed=0)
    steps = [step for step in folded.execution_plan(inference=True) if isinstance(step, ConvBatchNormStep)]
    assert any(step.conv.algorithm == "winograd" for step in steps)
    x = np.random.default_rng(6).standard_normal((5, 3, 8, 8))
    np.testing.assert_allclose(folded.predict(x), reference.predict(x), rtol=1e-10, atol=1e-12)
    logits = folded.forward_layers(x, training=False, keep_caches=False)  # what predict runs: folded
    unfused = folded.forward_layers(x, training=False)  # the training engine's plan, in inference mode
    np.testing.assert_allclose(logits, unfused, rtol=1e-11, atol=1e-11)


def test_torch_export_ignores_the_algorithm():
    pytest.importorskip("torch")
    from convnp.interop import from_torch, to_torch

    model = switched(resnet20((3, 8, 8), seed=0, dtype="float64"))
    x = np.random.default_rng(7).standard_normal((3, 3, 8, 8))
    module = to_torch(model).eval()
    import torch

    with torch.no_grad():
        np.testing.assert_allclose(module(torch.tensor(x)).numpy(), model.forward(x), rtol=1e-10, atol=1e-11)
    back = from_torch(module, model.input_shape)  # PyTorch has no such option: it comes back as im2col
    assert {conv.algorithm for conv in winograd_convolutions(back)} == {"im2col"}
    np.testing.assert_allclose(back.predict(x), model.predict(x), rtol=1e-10, atol=1e-12)


def test_onnx_export_ignores_the_algorithm(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from convnp.interop import to_onnx

    model = switched(mnist_cnn((1, 8, 8), seed=0))
    path = to_onnx(model, tmp_path / "winograd.onnx")
    x = np.random.default_rng(8).standard_normal((2, 1, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(onnx_out, model.predict(x), rtol=1e-4, atol=1e-5)
