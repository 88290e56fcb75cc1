"""Graph models and blocks in model files: round trips, and crafted graph descriptions refused with ModelFileError."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convnp
from convnp import nn
from convnp.files.model_file import META_KEY, ModelFileError
from convnp.models import resnet20
from tests.fuzzing import fuzz
from tests.model_files import branching_model, read_entries, rewrite


@pytest.mark.parametrize("build", [branching_model, lambda: resnet20((1, 8, 8), seed=1)])
def test_graph_model_round_trips_with_its_keys_and_predictions(tmp_path, build):
    model = build()
    x = np.random.default_rng(0).random((4, *model.input_shape)).astype(np.float32)
    model.fit(x, np.arange(4) % 3, epochs=1, batch_size=2, verbose=0, seed=0)  # move the running statistics
    path = model.save(tmp_path / "graph.npz")
    loaded = convnp.load(path)
    assert type(loaded) is nn.Model
    assert list(loaded.state_dict()) == list(model.state_dict())
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.summary() == model.summary()


def test_sequential_with_a_residual_block_round_trips(tmp_path):
    block = nn.Residual([nn.Conv2D(3, 3, padding=1), nn.ReLU()], name="block")
    model = convnp.Sequential([nn.Conv2D(3, 1), block, nn.Flatten(), nn.Dense(2)], input_shape=(1, 4, 4), seed=0)
    loaded = convnp.load(model.save(tmp_path / "seq.npz"))
    assert type(loaded) is convnp.Sequential and "block.body.0.weight" in loaded.state_dict()
    x = np.random.default_rng(1).random((2, 1, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def _description(path) -> tuple[dict, dict]:
    entries = read_entries(path)
    return entries, json.loads(entries[META_KEY].tobytes())


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m["inputs"].__setitem__(2, [5]), "only 0..2 exist before it"),  # a forward reference: a cycle
        (lambda m: m["inputs"].__setitem__(3, [-1]), "dangling reference"),
        (lambda m: m["inputs"].__setitem__(2, [1]), "never read"),  # the ReLU skips the batch norm: its output unread
        (lambda m: m["inputs"].__setitem__(4, ["1"]), "invalid inputs"),
        (lambda m: m["inputs"].__setitem__(0, [0, 0]), "takes one input"),
        (lambda m: m["inputs"].pop(), "'inputs' must list"),
        (lambda m: m["layers"][4].__setitem__("class", "Subprocess"), "unknown layer type 'Subprocess'"),
        (lambda m: m["layers"][4]["config"].__setitem__("out_channels", 5), "invalid"),  # Add of 5 and 4 channels
        (lambda m: m.__setitem__("kind", "Pipeline"), "unknown model kind"),
    ],
)
def test_crafted_graph_descriptions_raise_model_file_error(tmp_path, edit, message):
    path = branching_model().save(tmp_path / "graph.npz")
    entries, meta = _description(path)
    edit(meta)
    rewrite(path, entries, meta, fix_checksum=True)  # the checksum guards against damage, not against crafting
    with pytest.raises(ModelFileError, match=message):
        convnp.load(path)


_GRAPH = branching_model()


@fuzz(300)
@given(st.data())
def test_fuzzed_graph_wiring_only_ever_raises_model_file_error(tmp_path_factory, data):
    path = _GRAPH.save(tmp_path_factory.mktemp("fuzz") / "graph.npz")
    entries, meta = _description(path)
    count = len(meta["inputs"])
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, count - 1))
        value = data.draw(
            st.one_of(
                st.lists(st.integers(-2, count + 2), min_size=0, max_size=3),
                st.just(None),
                st.text(max_size=3),
                st.lists(st.booleans(), min_size=1, max_size=2),
            )
        )
        meta["inputs"][index] = value
    rewrite(path, entries, meta, fix_checksum=True)
    try:
        loaded = convnp.load(path)
    except ModelFileError:
        return
    # A rewiring that still loads must describe a valid graph of the same layers.
    assert isinstance(loaded, nn.Model) and len(loaded.layers) == len(_GRAPH.layers)
