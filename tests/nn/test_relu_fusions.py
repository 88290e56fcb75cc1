"""BatchNormReLUStep, AddReLUStep, ConvReLUAvgPoolStep and ConvBatchNormStep's ReLU: the fused plans against
every layer run alone.

The reference is the same model's nodes as one ``LayerStep`` each, run by the
same engine (fan-out gradients added as always). Training and inference
plans, one piece and shards of the batch, float64 to 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest

from convnp.backend import threads
from convnp.functional.losses import softmax_cross_entropy
from convnp.gradcheck import gradcheck
from convnp.models import lenet5, resnet20
from convnp.nn import (
    Add,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Concatenate,
    Conv2D,
    Dense,
    Flatten,
    GlobalAvgPool2D,
    Input,
    MaxPool2D,
    Model,
    ReLU,
    Sequential,
    engine,
)
from convnp.nn.plan import AddReLUStep, BatchNormReLUStep, ConvBatchNormStep, ConvReLUAvgPoolStep, LayerStep, Plan

TOLERANCE = 1e-12


def two_readers(dtype="float64", seed=0):
    """A batch norm read by a ReLU and by an Add: the batch norm runs alone; the Add fuses with its ReLU."""
    inputs = Input((3, 6, 6))
    normalized = BatchNorm2D()(Conv2D(4, 3, padding=1)(inputs))
    branch = Conv2D(4, 3, padding=1, use_bias=False)(ReLU()(normalized))
    joined = ReLU()(Add()([branch, normalized]))
    return Model(inputs, Dense(3)(Flatten()(GlobalAvgPool2D()(joined))), dtype=dtype, seed=seed)


def chain(dtype="float64", seed=0):
    """BatchNorm2D + ReLU twice (the second before a max pooling), and BatchNorm1D + ReLU in the head."""
    layers = [Conv2D(4, 3, padding=1), BatchNorm2D(), ReLU(), Conv2D(6, 3, padding=1, use_bias=False),
              BatchNorm2D(), ReLU(), MaxPool2D(2), Flatten(), Dense(8), BatchNorm1D(), ReLU(), Dense(3)]  # fmt: skip
    return Sequential(layers, input_shape=(3, 6, 6), dtype=dtype, seed=seed)


def shared_adds(dtype="float64", seed=0):
    """Adds whose inputs are read elsewhere too: a + b, then s + a + a (three inputs, one value twice)."""
    inputs = Input((2, 5, 5))
    a = Conv2D(3, 3, padding=1)(inputs)
    b = Conv2D(3, 1)(inputs)
    s = ReLU()(Add()([a, b]))
    t = ReLU()(Add()([s, a, a]))
    both = Concatenate(axis=1)([t, a])  # a read four times in all
    return Model(inputs, Dense(3)(Flatten()(both)), dtype=dtype, seed=seed)


def small_resnet(dtype="float64", seed=0):
    return resnet20((3, 8, 8), num_classes=4, seed=seed, dtype=dtype)


def small_lenet(dtype="float64", seed=0):
    """LeNet-5's two convolution, ReLU, average pooling blocks (the second on 6x6: padded)."""
    return lenet5((1, 12, 12), num_classes=4, seed=seed, dtype=dtype)


def avg_pools(dtype="float64", seed=0):
    """Convolution, ReLU, 2x2 average pooling: on an odd 7x7 output, with a ReLU read twice, and with a 3x3 pool."""
    inputs = Input((2, 9, 9))
    odd = AvgPool2D(2)(ReLU()(Conv2D(3, 3)(inputs)))  # 7x7 -> 3x3: fused, the last row and column dropped
    shared = ReLU()(Conv2D(3, 3, padding=1)(odd))  # read by the pooling and by the Add: not fused
    pooled = AvgPool2D(2)(shared)
    wide = AvgPool2D(3, stride=1, padding=1)(ReLU()(Conv2D(3, 3, padding=1)(odd)))  # not a 2x2 pool: not fused
    both = Concatenate(axis=1)([Flatten()(pooled), Flatten()(Add()([shared, wide]))])
    return Model(inputs, Dense(3)(both), dtype=dtype, seed=seed)


BUILDERS = {
    "resnet20": small_resnet,
    "two_readers": two_readers,
    "chain": chain,
    "shared_adds": shared_adds,
    "lenet5": small_lenet,
    "avg_pools": avg_pools,
}
EXPECTED_STEPS = {  # fused steps of the training plan
    "resnet20": {BatchNormReLUStep: 10, AddReLUStep: 9, ConvReLUAvgPoolStep: 0},
    "two_readers": {BatchNormReLUStep: 0, AddReLUStep: 1},
    "chain": {BatchNormReLUStep: 3, AddReLUStep: 0},
    "shared_adds": {BatchNormReLUStep: 0, AddReLUStep: 2},
    "lenet5": {ConvReLUAvgPoolStep: 2},
    "avg_pools": {ConvReLUAvgPoolStep: 1, AddReLUStep: 0},
}


def build(name, seed=0):
    """The model with random running statistics and batch norm affine maps, the same for every seed's build."""
    model = BUILDERS[name](seed=seed)
    rng = np.random.default_rng(100)
    for layer in model.layers:
        if isinstance(layer, (BatchNorm1D, BatchNorm2D)):
            layer.running_mean[...] = rng.standard_normal(layer.running_mean.shape)
            layer.running_var[...] = rng.uniform(0.3, 3.0, layer.running_var.shape)
            layer.weight.data[...] = rng.uniform(-1.5, 1.5, layer.weight.shape)
            layer.bias.data[...] = rng.standard_normal(layer.bias.shape)
    return model


def unfused_plan(model) -> Plan:
    """Every layer its own step, wired as the model is."""
    nodes = list(zip(model.layers, model.layer_inputs(), strict=True))
    return Plan([LayerStep(layer).wired(inputs, index + 1) for index, (layer, inputs) in enumerate(nodes)], len(nodes))


def data(model, size=6, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((size, *model.input_shape)), rng.integers(0, model.output_shape[0], size)


def assert_close(actual, expected, name=""):
    """Equal to 1e-12 of the array's largest value, or of 1 for an array of rounding noise.

    (The gradient of a convolution's bias that a batch norm follows is 0 up to rounding.)
    """
    scale = max(float(np.abs(expected).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=TOLERANCE, atol=TOLERANCE * scale, err_msg=name)


def assert_same_state(fused, unfused):
    """Every parameter gradient and every buffer (running statistics) of two builds of one model."""
    grads = {key: param.grad for key, param in unfused.named_parameters()}
    for key, param in fused.named_parameters():
        assert_close(param.grad, grads[key], name=key)
    buffers = unfused.state_dict()
    for key, value in fused.state_dict().items():
        assert_close(value, buffers[key], name=key)


@pytest.fixture
def shards(monkeypatch):
    """Set the number of slices and shards; every pass here is big enough to be cut."""
    saved = threads.get_num_threads()
    monkeypatch.setattr(threads, "MIN_ELEMENTS", 0)
    yield threads.set_num_threads
    threads.set_num_threads(saved)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_the_training_plan_has_the_fused_steps_where_they_belong(name):
    plan = build(name).execution_plan()
    kinds = [type(step) for step in plan]
    assert {kind: kinds.count(kind) for kind in EXPECTED_STEPS[name]} == EXPECTED_STEPS[name]
    for step in plan:
        if isinstance(step, BatchNormReLUStep):
            assert isinstance(step.layers[0], (BatchNorm1D, BatchNorm2D)) and type(step.layers[1]) is ReLU
        if isinstance(step, AddReLUStep):
            assert type(step.layers[0]) is Add and type(step.layers[1]) is ReLU and len(step.inputs) >= 2
        if isinstance(step, ConvReLUAvgPoolStep):
            assert [type(layer) for layer in step.layers] == [Conv2D, ReLU, AvgPool2D]


def test_resnet20_plans_fuse_every_relu():
    model = build("resnet20")
    names = lambda step: [layer.name or type(layer).__name__ for layer in step.layers]  # noqa: E731
    training = model.execution_plan()
    assert names(training[1]) == ["bn1", "ReLU"] and isinstance(training[1], BatchNormReLUStep)
    assert not any(type(layer) is ReLU for step in training if isinstance(step, LayerStep) for layer in step.layers)
    inference = model.execution_plan(inference=True)
    folded = [step for step in inference if isinstance(step, ConvBatchNormStep)]
    assert len(folded) == 21  # every batch norm follows a convolution
    assert sum(step.relu is not None for step in folded) == 10  # the stem's and each block's bn1
    assert names(folded[0]) == ["conv1", "bn1", "ReLU"] and names(folded[2]) == ["layer1.0.conv2", "layer1.0.bn2"]
    assert sum(isinstance(step, AddReLUStep) for step in inference) == 9
    assert not any(isinstance(step, BatchNormReLUStep) for step in inference)  # folded instead


def test_a_batch_norm_read_twice_or_as_the_result_runs_alone():
    plan = build("two_readers").execution_plan()
    assert not any(isinstance(step, BatchNormReLUStep) for step in plan)
    sequential = build("chain")
    assert isinstance(sequential.execution_plan()[1], BatchNormReLUStep)
    assert type(sequential.execution_plan(stop=2)[1]) is LayerStep  # the batch norm's output is the result
    assert type(sequential.execution_plan(stop=-1)[-1]) is BatchNormReLUStep  # the ReLU's output is


@pytest.mark.parametrize("name", list(BUILDERS))
def test_fused_training_pass_equals_the_layers_one_by_one(name):
    fused, unfused = build(name), build(name)
    x, _ = data(fused)
    dout = np.random.default_rng(2).standard_normal((len(x), *fused.output_shape))
    out = fused.forward_layers(x, training=True)
    dx = fused.backward(dout)
    plan = unfused_plan(unfused)
    expected = engine.forward(plan, x, training=True)
    expected_dx = engine.backward(plan, dout)
    assert_close(out, expected, "out")
    assert_close(dx, expected_dx, "dx")
    assert_same_state(fused, unfused)


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("count", [2, 3])
def test_sharded_fused_training_pass_equals_the_whole_batch_one_by_one(shards, name, count):
    fused, unfused, sharded_unfused = build(name), build(name), build(name)
    x, y = data(fused, size=7)  # 3 shards of 7 samples are uneven
    expected = engine.train_pass(unfused_plan(unfused), x, y, softmax_cross_entropy)  # threads as the caller set
    shards(count)
    loss, outputs = fused.train_pass(x, y, softmax_cross_entropy)
    assert loss == pytest.approx(expected[0], rel=TOLERANCE)
    assert_close(outputs, expected[1], "outputs")
    assert_same_state(fused, unfused)
    assert all(layer.cache is None for layer in fused.layers)  # the shards ran on copies
    engine.train_pass(unfused_plan(sharded_unfused), x, y, softmax_cross_entropy)
    assert_same_state(fused, sharded_unfused)


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("count", [1, 3])
def test_fused_inference_equals_the_layers_one_by_one(shards, name, count):
    model = build(name)
    x, _ = data(model, size=5)
    expected = engine.forward(unfused_plan(model), x, training=False)
    shards(count)
    assert_close(model.forward_layers(x, training=False), expected, "training plan in inference")
    assert_close(model.forward_layers(x, training=False, keep_caches=False), expected, "inference plan")


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", ["chain", "two_readers", "shared_adds", "lenet5", "avg_pools"])
def test_fused_steps_pass_finite_differences(name, training):
    model = build(name)
    x, _ = data(model, size=3)
    errors = gradcheck(model, x, training=training)
    assert max(errors.values()) < 1e-6, errors


def test_a_fused_step_refuses_a_backward_pass_before_its_forward_pass():
    for name in ("chain", "shared_adds", "lenet5"):
        fused = (BatchNormReLUStep, AddReLUStep, ConvReLUAvgPoolStep)
        step = next(s for s in build(name).execution_plan() if isinstance(s, fused))
        with pytest.raises(RuntimeError, match="backward called before forward"):
            step.backward(np.zeros((2, *step.layers[-1].output_shape)))
