"""Building a model back from its file: save -> load is exact, and an architecture that
disagrees with its arrays fails clearly and never half-loads (convnp.serialization).
"""

from __future__ import annotations

import numpy as np
import pytest

import convnp
from convnp.serialization import ModelFileError
from tests.model_files import assert_same_state, data, description, read_entries, rewrite, rich_model


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda meta: meta["layers"][8]["config"].update(out_features=4), "does not match its own architecture"),
        (lambda meta: meta["layers"].pop(), "does not match its own architecture"),
        (lambda meta: meta.update(input_shape=[1, 8, 8]), "architecture description is invalid"),
        (lambda meta: meta["layers"][0].update({"class": "Conv3D"}), "unknown layer type 'Conv3D'"),
        (lambda meta: meta["layers"][0].update({"class": "_Pool2D"}), "unknown layer type '_Pool2D'"),
        (lambda meta: meta["layers"][0]["config"].update(kernel_size=0), "architecture description is invalid"),
        (lambda meta: meta["layers"][0]["config"].update(size=3), "architecture description is invalid"),
        (lambda meta: meta.update(dtype="int8"), "architecture description is invalid"),
        (lambda meta: meta.update(layers=[]), "architecture description is invalid"),
        (lambda meta: meta.pop("layers"), "architecture description is invalid"),
    ],
    ids=["dense width", "layer dropped", "input shape", "unknown class", "private class", "bad config",
         "unknown argument", "int dtype", "no layers", "layers missing"],
)  # fmt: skip
def test_architecture_and_arrays_that_disagree_fail_clearly(tmp_path, saved, change, message):
    _, valid = saved
    entries = read_entries(valid)
    meta = description(entries)
    change(meta)
    path = tmp_path / "mismatch.npz"
    rewrite(path, entries, meta, fix_checksum=True)
    with pytest.raises(ModelFileError, match=message):
        convnp.load(path)


def test_a_missing_array_is_named(tmp_path, saved):
    _, valid = saved
    entries = read_entries(valid)
    del entries["model/7.running_mean"]
    meta = description(entries)
    path = tmp_path / "missing-array.npz"
    rewrite(path, entries, meta, fix_checksum=True)
    with pytest.raises(ModelFileError, match=r"missing keys \['7.running_mean'\]"):
        convnp.load(path)


def test_an_array_of_the_wrong_shape_is_named(tmp_path, saved):
    _, valid = saved
    entries = read_entries(valid)
    entries["model/8.bias"] = np.zeros(5, np.float32)
    meta = description(entries)
    path = tmp_path / "wrong-shape.npz"
    rewrite(path, entries, meta, fix_checksum=True)
    with pytest.raises(ModelFileError, match=r"8.bias.*expects shape \(3,\), got \(5,\)"):
        convnp.load(path)


# --------------------------------------------------------------- round trip
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_gives_identical_predictions_state_and_dtype(tmp_path, dtype):
    model = rich_model(dtype)
    x, y = data(dtype)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, seed=0)
    # Training moved the running statistics away from their initial zeros and ones.
    assert not np.array_equal(model[1].running_mean, np.zeros(3))
    assert not np.array_equal(model[7].running_var, np.ones(6))
    loaded = convnp.load(model.save(tmp_path / "model.npz"))
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.input_shape == model.input_shape
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert_same_state(loaded, model)
    assert loaded[1].running_mean.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.predict(x).dtype == np.dtype(dtype)
    assert loaded.evaluate(x, y) == model.evaluate(x, y)
    assert loaded[6].activation.alpha == 0.2 and loaded[5].p == 0.25
