"""The shapes-only build (convnp.nn.init.shapes_only): every shape, no memory, no draws, no writes.

Inside ``with shapes_only():`` layers get zero-stride, read-only placeholders for
their parameters and buffers, so a model of any size can be built to learn its
shapes; ``convnp.load`` relies on it (tests/serialization/test_crafted_sizes.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import convnp
from convnp import nn
from convnp.nn.init import shapes_only
from tests.model_files import peak_allocation


def every_parameterised_layer(width: int, seed=0, dtype: str = "float32") -> nn.Model:
    """Conv2D, BatchNorm2D, ConvTranspose2D, GroupNorm, LayerNorm, a Residual block, Dense, BatchNorm1D in a graph."""
    inputs = nn.Input((2, 4, 4))
    x = nn.BatchNorm2D()(nn.Conv2D(width, 3, padding=1, activation="relu")(inputs))
    x = nn.LayerNorm()(nn.GroupNorm(2)(nn.ConvTranspose2D(width, 2, stride=2)(x)))
    x = nn.Residual([nn.Conv2D(width, 3, padding=1), nn.BatchNorm2D()], shortcut=nn.Conv2D(width, 1))(x)
    x = nn.BatchNorm1D()(nn.Dense(width)(nn.GlobalAvgPool2D()(x)))
    return nn.Model(inputs, nn.Dense(3)(x), seed=seed, dtype=dtype)


def arrays_of(model) -> dict[str, np.ndarray]:
    """Every parameter and buffer, without copying (``state_dict`` would copy)."""
    arrays = {key: param.data for key, param in model.named_parameters()}
    arrays.update(model.named_buffers())
    return arrays


def test_a_huge_model_costs_nothing_and_has_every_shape():
    width = 100_000  # real arrays: ConvTranspose2D alone would hold 4e10 values
    model, peak = peak_allocation(lambda: _shapes_only(lambda: every_parameterised_layer(width)))
    assert isinstance(model, nn.Model), model
    assert peak < 2**20, f"{peak / 2**20:.1f} MiB"
    arrays = arrays_of(model)
    assert arrays["2.weight"].shape == (width, width, 2, 2)  # ConvTranspose2D: (in, out, kh, kw)
    assert arrays["3.weight"].shape == (width,) and arrays["4.weight"].shape == (width, 8, 8)  # GroupNorm, LayerNorm
    assert arrays["5.body.1.running_var"].shape == (width,) and arrays["7.weight"].shape == (width, width)
    for key, array in arrays.items():
        assert not array.flags.writeable and not any(array.strides), key


def _shapes_only(build):
    with shapes_only():
        return build()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shapes_dtypes_and_constants_are_those_of_a_real_build(dtype):
    real = every_parameterised_layer(4, dtype=dtype)
    with shapes_only():
        placeheld = every_parameterised_layer(4, dtype=dtype)
    expected, got = arrays_of(real), arrays_of(placeheld)
    assert list(got) == list(expected)
    for key in expected:
        assert got[key].shape == expected[key].shape and got[key].dtype == expected[key].dtype, key
        if np.all(expected[key] == expected[key].flat[0]):  # biases, norm scales, running statistics
            np.testing.assert_array_equal(got[key], expected[key])  # zeros and ones are what they would be
    # Drawn weights are left undrawn: their placeholders hold zeros.
    assert not got["0.weight"].any() and real.layers[0].weight.data.any()


def test_a_shapes_only_build_draws_nothing_from_the_generator():
    generator = np.random.default_rng(5)
    before = generator.bit_generator.state
    with shapes_only():
        every_parameterised_layer(4, seed=generator)
    assert generator.bit_generator.state == before
    every_parameterised_layer(4, seed=generator)
    assert generator.bit_generator.state != before  # control: a real build draws


def test_placeholders_refuse_writes_training_fails_instead_of_writing():
    """Batch norm's running statistics and the optimizer step write in place: into a placeholder, they cannot."""
    with shapes_only():
        model = every_parameterised_layer(4)
    x = np.random.default_rng(0).random((2, 2, 4, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="read-only"):
        model.fit(x, np.array([0, 1]), epochs=1, batch_size=2, verbose=0)
    with shapes_only():
        dense_only = convnp.Sequential([nn.Dense(3)], input_shape=(4,))
    with pytest.raises(ValueError, match="read-only"):
        dense_only.fit(x.reshape(2, -1)[:, :4], np.array([0, 1]), epochs=1, batch_size=2, verbose=0)
    assert all(not array.any() for array in arrays_of(dense_only).values())


def test_load_state_dict_replaces_every_placeholder_with_an_array_of_the_models_own():
    real = every_parameterised_layer(4, seed=3)
    with shapes_only():
        model = every_parameterised_layer(4)
    model.load_state_dict(real.state_dict())
    for key, array in arrays_of(model).items():
        assert array.flags.writeable and array.flags.owndata and all(array.strides), key
    x = np.random.default_rng(0).random((2, 2, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), real.predict(x))


def test_the_shapes_only_build_ends_with_its_block_even_on_an_error():
    with pytest.raises(ValueError), shapes_only():
        convnp.Sequential([nn.Dense(3)], input_shape=(2, 2))  # Dense needs a Flatten first
    model = convnp.Sequential([nn.Dense(3)], input_shape=(4,), seed=0)
    assert model.layers[0].weight.data.flags.writeable and model.layers[0].weight.data.any()
