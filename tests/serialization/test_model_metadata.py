"""Model files keep a model's class names and input statistics; files without them load with None."""

from __future__ import annotations

import numpy as np
import pytest

import convnp
from convnp import nn
from convnp.serialization import ModelFileError
from tests.model_files import description, read_entries, rewrite, rich_model

STATS = {"min": 0.0, "max": 1.0, "mean": 0.25}


def graph_model():
    inputs = nn.Input((1, 6, 6))
    x = nn.ReLU()(nn.Conv2D(2, 3, padding=1)(inputs))
    logits = nn.Dense(3)(nn.Flatten()(nn.Add()([x, nn.Conv2D(2, 1)(inputs)])))
    return nn.Model(inputs, logits, seed=0)


@pytest.mark.parametrize("build", [rich_model, graph_model], ids=["Sequential", "Model"])
def test_class_names_and_input_stats_round_trip(tmp_path, build):
    model = build()
    model.class_names = ["cat", "dog", "émeu"]
    model.input_stats = dict(STATS)
    path = model.save(tmp_path / "m.npz")
    meta = description(read_entries(path))
    assert meta["class_names"] == ["cat", "dog", "émeu"] and meta["input_stats"] == STATS
    loaded = convnp.load(path)
    assert type(loaded) is type(model)
    assert loaded.class_names == ["cat", "dog", "émeu"] and loaded.input_stats == STATS


def test_a_file_without_them_loads_with_none(tmp_path):
    model = rich_model()
    assert model.class_names is None and model.input_stats is None
    meta = description(read_entries(model.save(tmp_path / "m.npz")))
    assert "class_names" not in meta and "input_stats" not in meta  # the layout older files have
    loaded = convnp.load(tmp_path / "m.npz")
    assert loaded.class_names is None and loaded.input_stats is None


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"class_names": ["a", "b"]}, "2 class_names for a model with 3 outputs"),
        ({"class_names": ["a", "b", 3]}, "list of str"),
        ({"class_names": "abc"}, "list of str"),
        ({"input_stats": {"min": 0.0, "max": 1.0}}, "keys"),
        ({"input_stats": {"min": 2.0, "max": 1.0, "mean": 1.5}}, "min <= mean <= max"),
        ({"input_stats": {"min": 0.0, "max": 1.0, "mean": "x"}}, "must be a number"),
        ({"input_stats": [0, 1, 0.5]}, "dict"),
    ],
)
def test_malformed_fields_are_refused_on_loading(tmp_path, fields, message):
    path = rich_model().save(tmp_path / "m.npz")
    entries = read_entries(path)
    rewrite(path, entries, {**description(entries), **fields}, fix_checksum=True)
    with pytest.raises(ModelFileError, match=message):
        convnp.load(path)


def test_a_nan_statistic_is_refused(tmp_path):
    path = rich_model().save(tmp_path / "m.npz")
    entries = read_entries(path)
    meta = {**description(entries), "input_stats": {"min": 0.0, "max": float("nan"), "mean": 0.5}}
    rewrite(path, entries, meta, fix_checksum=True)
    with pytest.raises(ModelFileError, match="finite"):
        convnp.load(path)


def test_the_checksum_covers_them(tmp_path):
    model = rich_model()
    model.class_names = ["a", "b", "c"]
    path = model.save(tmp_path / "m.npz")
    entries = read_entries(path)
    rewrite(path, entries, {**description(entries), "class_names": ["a", "b", "x"]})
    with pytest.raises(ModelFileError, match="checksum"):
        convnp.load(path)


def test_saving_checks_them_and_writes_nothing_when_wrong(tmp_path):
    model = rich_model()
    model.class_names = ["only", "two"]
    with pytest.raises(ValueError, match="2 class_names for a model with 3 outputs"):
        model.save(tmp_path / "m.npz")
    model.class_names, model.input_stats = None, {"min": np.float32(0), "max": np.float32(1), "mean": np.nan}
    with pytest.raises(ValueError, match="finite"):
        model.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
