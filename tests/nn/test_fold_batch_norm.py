"""Inference plans fold each batch norm into the convolution before it: the same values, one pass fewer."""

import numpy as np
import pytest

from convnp.models import convnet_bn, resnet20
from convnp.nn import BatchNorm2D, Conv2D, Dense, Flatten, ReLU, Sequential
from convnp.nn.plan import ConvBatchNormStep


def with_statistics(model, seed=0):
    """Random running statistics and affine parameters, as after training."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, BatchNorm2D):
            layer.running_mean = rng.standard_normal(layer.running_mean.shape).astype(layer.dtype)
            layer.running_var = rng.uniform(0.3, 3.0, layer.running_var.shape).astype(layer.dtype)
            layer.weight.data = rng.uniform(0.5, 1.5, layer.weight.shape).astype(layer.dtype)
            layer.bias.data = rng.standard_normal(layer.bias.shape).astype(layer.dtype)
    return model


@pytest.mark.parametrize(
    "build",
    [
        lambda dtype: resnet20((3, 12, 12), seed=0, dtype=dtype),
        lambda dtype: convnet_bn((3, 16, 16), seed=0, dtype=dtype, blocks=2),
        lambda dtype: Sequential(
            [
                Conv2D(4, 3, stride=2, padding=1, groups=1),
                BatchNorm2D(),
                ReLU(),
                Conv2D(6, 3, groups=2),
                BatchNorm2D(),
                Flatten(),
                Dense(3),
            ],
            input_shape=(2, 9, 9),
            dtype=dtype,
            seed=1,
        ),  # fmt: skip
    ],
    ids=["resnet20", "convnet_bn", "biased-grouped"],
)
@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-12), ("float32", 2e-5)])
def test_folded_inference_equals_the_layers_run_one_by_one(build, dtype, tolerance):
    model = with_statistics(build(dtype))
    x = np.random.default_rng(1).standard_normal((7, *model.input_shape)).astype(dtype)
    folded = model.forward_layers(x, training=False, keep_caches=False)  # what predict and evaluate run
    unfolded = model.forward_layers(x, training=False)  # the training engine's plan, in inference mode
    scale = max(1.0, float(np.abs(unfolded).max()))
    np.testing.assert_allclose(folded, unfolded, rtol=tolerance, atol=tolerance * scale)
    assert folded.dtype == np.dtype(dtype)
    assert any(isinstance(step, ConvBatchNormStep) for step in model.execution_plan(inference=True))


def test_training_plans_never_fold_and_the_folded_step_has_no_backward():
    model = with_statistics(resnet20((3, 8, 8), seed=0))
    assert not any(isinstance(step, ConvBatchNormStep) for step in model.execution_plan())
    step = next(step for step in model.execution_plan(inference=True) if isinstance(step, ConvBatchNormStep))
    with pytest.raises(RuntimeError, match="inference only"):
        step.forward(np.zeros((1, *model.input_shape), dtype=np.float32), training=True)
    with pytest.raises(RuntimeError, match="no backward pass"):
        step.backward(np.zeros((1, 16, 8, 8), dtype=np.float32))


def test_a_batch_norm_read_twice_or_after_an_activation_is_not_folded():
    model = Sequential(
        [Conv2D(3, 3, activation="relu"), BatchNorm2D(), Flatten(), Dense(2)], input_shape=(1, 5, 5), seed=0
    )
    assert not any(isinstance(step, ConvBatchNormStep) for step in model.execution_plan(inference=True))


def test_the_relu_after_a_folded_batch_norm_joins_it_unless_a_max_pooling_takes_it():
    from convnp.nn.plan import PoolThenReLU

    model = with_statistics(convnet_bn((3, 16, 16), seed=0, blocks=2))  # [conv, bn, relu] x 2, max pool, per stage
    plan = model.execution_plan(inference=True)
    folded = [step for step in plan if isinstance(step, ConvBatchNormStep)]
    assert [type(step.layers[-1]).__name__ for step in folded] == ["ReLU", "BatchNorm2D"] * 2
    assert sum(isinstance(step, PoolThenReLU) for step in plan) == 2  # pooling first, ReLU on a quarter of the values
    x = np.random.default_rng(2).standard_normal((3, *model.input_shape)).astype(np.float32)
    step = folded[0]
    out = step.forward(x, training=False)
    conv, batch_norm, _ = step.layers
    expected = batch_norm.forward(conv.forward(x), training=False)
    np.testing.assert_allclose(out, np.maximum(expected, 0), rtol=2e-5, atol=2e-5 * float(np.abs(expected).max()))
    assert out.min() == 0.0 and out.transpose(0, 2, 3, 1).flags.c_contiguous  # clipped in place, layout kept
