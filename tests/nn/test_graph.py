"""Graph models: Input, layer calls on nodes, Model, merge layers, Residual blocks, names and keys."""

import numpy as np
import pytest

import convnp
from convnp.functional.losses import softmax_cross_entropy
from convnp.gradcheck import gradcheck
from convnp.nn import (
    Add,
    BatchNorm2D,
    Concatenate,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Identity,
    Input,
    Layer,
    MaxPool2D,
    Model,
    ReLU,
    Residual,
    Sequential,
)


def branching_model(dtype="float64", seed=0, dropout=False):
    """A stem, a residual add, a concatenation, a fusable conv + ReLU + pool, a Residual block, a head."""
    inputs = Input((3, 10, 10))
    x = ReLU()(BatchNorm2D()(Conv2D(6, 3, padding=1)(inputs)))
    y = ReLU()(Conv2D(6, 3, padding=1)(x))
    z = Concatenate(axis=1)([Add()([y, x]), x])  # x is read three times
    p = MaxPool2D(2)(ReLU()(Conv2D(8, 3, padding=1)(z)))
    r = Residual([Conv2D(8, 3, padding=1), BatchNorm2D(), ReLU(), Conv2D(8, 3, padding=1)])(p)
    h = Flatten()(GlobalAvgPool2D()(ReLU()(r)))
    if dropout:
        h = Dropout(0.3, rng=1)(h)
    return Model(inputs, Dense(4)(h), dtype=dtype, seed=seed)


def layer_by_layer(model, x, training=True):
    """The graph run node by node with each layer's own forward (no plan, no fusion), in float64."""
    values = {0: x}
    for index, (layer, inputs) in enumerate(model._nodes):
        given = [values[v] for v in inputs]
        values[index + 1] = layer.forward(given if layer.multi_input else given[0], training=training)
    return values[len(model._nodes)]


def test_fan_out_gradients_match_finite_differences():
    model = branching_model()
    x = np.random.default_rng(0).standard_normal((3, 3, 10, 10))
    errors = gradcheck(model, x)
    assert set(errors) >= {"input", "0.weight", "10.body.0.weight", "10.body.1.weight"}
    assert max(errors.values()) < 1e-6, errors


def test_plan_fuses_inside_a_graph_only_where_a_value_has_one_reader():
    model = branching_model()
    plan = model.execution_plan()
    fused = [[type(layer).__name__ for layer in step.layers] for step in plan if len(step.layers) > 1]
    assert fused == [["BatchNorm2D", "ReLU"], ["Conv2D", "MaxPool2D", "ReLU"]]
    # x (the ReLU after the stem's batch norm) is read three times: the ReLU ends a step and
    # none of its readers fuses (the Add feeds a Concatenate, not a ReLU).
    assert plan[1].output == 3 and all(len(step.layers) == 1 for step in plan[2:6])
    x = np.random.default_rng(1).standard_normal((2, 3, 10, 10))
    np.testing.assert_allclose(model.forward(x), layer_by_layer(model, x, training=False), rtol=1e-12, atol=1e-12)


def test_value_read_twice_gets_the_sum_of_its_gradients():
    # out = a + a with a = W x: d out / d W = 2 * x-derived term, exactly twice the single path.
    inputs = Input((4,))
    a = Dense(3, use_bias=False)(inputs)
    model = Model(inputs, Add()([a, a]), dtype="float64", seed=0)
    x = np.random.default_rng(2).standard_normal((5, 4))
    out = model.forward(x)
    dx = model.backward(np.ones_like(out))
    weight = model.layers[0].weight.data
    np.testing.assert_allclose(out, 2 * x @ weight.T)
    np.testing.assert_allclose(model.layers[0].weight.grad, 2 * np.ones((5, 3)).T @ x)
    np.testing.assert_allclose(dx, 2 * np.ones((5, 3)) @ weight)


@pytest.mark.parametrize("dropout", [False, True])
def test_sharded_training_pass_equals_one_piece(monkeypatch, dropout):
    from convnp.backend import threads

    monkeypatch.setattr(threads, "MIN_ELEMENTS", 0)  # shard even this small pass
    x = np.random.default_rng(3).standard_normal((12, 3, 10, 10))
    y = np.random.default_rng(4).integers(0, 4, 12)
    results = []
    for count in (1, 2):
        convnp.set_num_threads(count)
        try:
            model = branching_model(dropout=dropout)
            loss, outputs = model.train_pass(x, y, softmax_cross_entropy)
            results.append((loss, outputs, {k: p.grad.copy() for k, p in model.named_parameters()}, model))
        finally:
            convnp.set_num_threads(convnp.backend.threads._default_threads())
    (loss1, out1, grads1, model1), (loss2, out2, grads2, model2) = results
    assert abs(loss1 - loss2) < 1e-12
    np.testing.assert_allclose(out1, out2, rtol=1e-12, atol=1e-12)
    for key in grads1:
        np.testing.assert_allclose(grads1[key], grads2[key], rtol=1e-12, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(
        model1.state_dict()["10.body.1.running_var"], model2.state_dict()["10.body.1.running_var"]
    )
    assert all(layer.cache is None for layer in model2.layers)  # every shard ran on its own copies


def test_model_matches_pytorch_forward_and_gradients():
    torch = pytest.importorskip("torch")
    model = branching_model()
    x = np.random.default_rng(5).standard_normal((4, 3, 10, 10))
    y = np.array([0, 1, 2, 3])
    weights = {k: torch.tensor(v) for k, v in model.state_dict().items()}

    def conv(key, x):
        return torch.nn.functional.conv2d(x, weights[f"{key}.weight"], weights[f"{key}.bias"], padding=1)

    def bn(key, x):
        return torch.nn.functional.batch_norm(
            x, weights[f"{key}.running_mean"].clone(), weights[f"{key}.running_var"].clone(),
            weights[f"{key}.weight"], weights[f"{key}.bias"], training=True,
        )  # fmt: skip

    for key, value in weights.items():
        value.requires_grad_(not key.endswith(("running_mean", "running_var")))
    tx = torch.tensor(x, requires_grad=True)
    a = torch.relu(bn("1", conv("0", tx)))
    b = torch.relu(conv("3", a))
    z = torch.cat([b + a, a], dim=1)
    p = torch.relu(torch.nn.functional.max_pool2d(conv("7", z), 2))
    r = conv("10.body.3", torch.relu(bn("10.body.1", conv("10.body.0", p)))) + p
    h = torch.relu(r).mean(dim=(2, 3))
    logits = h @ weights["14.weight"].T + weights["14.bias"]
    torch.nn.functional.cross_entropy(logits, torch.tensor(y)).backward()

    loss, outputs = model.train_pass(x, y, softmax_cross_entropy)
    dx = model.backward(softmax_cross_entropy(model.forward(x, training=True), y)[1])
    np.testing.assert_allclose(outputs, logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    for key, param in model.named_parameters():
        np.testing.assert_allclose(param.grad, weights[key].grad.numpy(), rtol=1e-9, atol=1e-11, err_msg=key)


def test_names_give_the_keys_and_must_be_unique():
    inputs = Input((1, 6, 6))
    x = Conv2D(2, 3, name="stem")(inputs)
    out = Dense(3, name="head")(Flatten()(x))
    model = Model(inputs, out, seed=0)
    assert list(model.state_dict()) == ["stem.weight", "stem.bias", "head.weight", "head.bias"]
    seq = Sequential([Conv2D(2, 3, name="c"), Flatten(), Dense(3)], input_shape=(1, 6, 6))
    assert list(seq.state_dict()) == ["c.weight", "c.bias", "2.weight", "2.bias"]
    with pytest.raises(ValueError, match="unique.*'c'"):
        Sequential([Conv2D(2, 3, name="c"), Conv2D(2, 1, name="c")])
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        Conv2D(2, 3, name="")


def test_graph_errors_name_the_problem():
    inputs = Input((2, 5, 5))
    conv = Conv2D(2, 3)
    conv(inputs)
    with pytest.raises(ValueError, match="already computes a node"):
        conv(inputs)
    with pytest.raises(ValueError, match=r"inputs must have one shape"):
        Add()([inputs, Conv2D(2, 3)(inputs)])
    with pytest.raises(ValueError, match="agree on every axis but 1"):
        Concatenate()([inputs, MaxPool2D(2)(inputs)])
    other = Input((2, 5, 5))
    with pytest.raises(ValueError, match="not the model's input"):
        Model(inputs, Add()([Identity()(inputs), Identity()(other)]))
    with pytest.raises(ValueError, match="one input node"):
        Model([inputs, other], Identity()(inputs))
    with pytest.raises(TypeError, match="merges branches; use Model"):
        Sequential([Add()])
    with pytest.raises(ValueError, match="the body gives .* but the shortcut gives"):
        Residual([Conv2D(4, 3, padding=1)]).build((2, 5, 5))


def test_prebuilt_layers_keep_their_weights_and_graph_built_ones_follow_the_seed():
    stem = Conv2D(2, 3)
    stem.build((1, 5, 5), rng=7)
    before = stem.weight.data.copy()
    inputs = Input((1, 5, 5))
    model = Model(inputs, Dense(2)(Flatten()(stem(inputs))), seed=3)
    np.testing.assert_array_equal(model.layers[0].weight.data, before)
    again = Input((1, 5, 5))
    twin = Model(again, Dense(2)(Flatten()(Conv2D(2, 3)(again))), seed=3)
    other = Input((1, 5, 5))
    third = Model(other, Dense(2)(Flatten()(Conv2D(2, 3)(other))), seed=3)
    np.testing.assert_array_equal(twin.layers[0].weight.data, third.layers[0].weight.data)


class TwoConvs(Layer):
    """The docstring example of a layer that holds layers."""

    sublayer_names = ("first", "second")

    def __init__(self, channels, name=None):
        super().__init__(name=name)
        self.channels = channels
        self.first, self.second = Conv2D(channels, 3, padding=1), Conv2D(channels, 3, padding=1)

    def _build(self, input_shape, rng):
        shape = self.first.build(input_shape, self.dtype, rng)
        return self.second.build(shape, self.dtype, rng)

    def forward(self, x, training=False):
        return self.second.forward(self.first.forward(x, training), training)

    def backward(self, dout):
        return self.first.backward(self.second.backward(dout))

    def get_config(self):
        return {"channels": self.channels}


def test_user_layer_holding_layers_trains_at_any_thread_count_and_shows_its_parameters():
    model = Sequential([TwoConvs(4), BatchNorm2D(), ReLU(), Flatten(), Dense(3)], input_shape=(1, 6, 6), seed=0)
    assert [k for k, _ in model.named_parameters()][:4] == [
        "0.first.weight",
        "0.first.bias",
        "0.second.weight",
        "0.second.bias",
    ]
    assert "TwoConvs" in model.summary() and "188" in model.summary()  # (1*9*4 + 4) + (4*9*4 + 4)
    x = np.random.default_rng(0).random((64, 1, 6, 6)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, 64)
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0, seed=0)  # the default thread count
    assert history["loss"][-1] < history["loss"][0]
    assert model.astype("float64").layers[0].first.weight.data.dtype == np.float64


def test_residual_in_sequential_trains_on_digits():
    pytest.importorskip("sklearn")
    from convnp.data import load

    (x_train, y_train), (x_test, y_test) = load("digits")
    block = Residual([Conv2D(16, 3, padding=1), BatchNorm2D(), ReLU(), Conv2D(16, 3, padding=1), BatchNorm2D()])
    model = Sequential(
        [Conv2D(16, 3, padding=1), BatchNorm2D(), ReLU(), block, ReLU(), GlobalAvgPool2D(), Flatten(), Dense(10)],
        input_shape=(1, 8, 8), seed=0,
    )  # fmt: skip
    model.fit(x_train, y_train, epochs=4, batch_size=32, lr=3e-3, verbose=0, seed=0)
    assert model.evaluate(x_test, y_test)["accuracy"] > 0.85
    assert "3.body.0.weight" in model.state_dict()


def test_user_layer_holding_layers_shards_saves_and_loads(monkeypatch, tmp_path):
    from convnp.backend import threads

    monkeypatch.setattr(threads, "MIN_ELEMENTS", 0)  # shard even this small pass
    x = np.random.default_rng(2).standard_normal((8, 1, 6, 6))
    y = np.arange(8) % 3
    grads = []
    for count in (1, 2):
        convnp.set_num_threads(count)
        try:
            model = Sequential([TwoConvs(3), Flatten(), Dense(3)], input_shape=(1, 6, 6), dtype="float64", seed=0)
            model.train_pass(x, y, softmax_cross_entropy)
            grads.append({key: p.grad.copy() for key, p in model.named_parameters()})
        finally:
            convnp.set_num_threads(convnp.backend.threads._default_threads())
    for key in grads[0]:
        np.testing.assert_allclose(grads[0][key], grads[1][key], rtol=1e-12, atol=1e-12, err_msg=key)
    loaded = convnp.load(model.save(tmp_path / "two_convs.npz"))
    assert isinstance(loaded.layers[0], TwoConvs) and list(loaded.state_dict()) == list(model.state_dict())
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
