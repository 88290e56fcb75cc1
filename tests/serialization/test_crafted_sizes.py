"""Crafted model files that declare huge layers: refused by name, with next to no memory allocated.

The checksum guards against damage, not against crafting: these files have their
description edited and the checksum recomputed (``rewrite(..., fix_checksum=True)``).
``convnp.load`` builds the described model shapes only (zero-stride placeholders, no
weights drawn), compares every parameter and buffer shape with the arrays in the file,
and only then gives the model the file's arrays, so a description that implies more
values than the file holds costs nothing (docs/guarantees.md, section 2).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import convnp
from convnp import nn
from convnp.nn import init
from convnp.serialization import ModelFileError
from tests.model_files import (
    assert_same_state,
    branching_model,
    description,
    peak_allocation,
    read_entries,
    rewrite,
)

#: Far below any of the crafted sizes (each implies tens of megabytes or more), far above what loading needs.
PEAK_LIMIT = 4 * 2**20
WIDE = 10**6


def sized_model() -> convnp.Sequential:
    """Every layer type whose parameters or buffers take their size from the description."""
    return convnp.Sequential(
        [
            nn.Conv2D(4, 3, padding=1),  # 0
            nn.BatchNorm2D(),  # 1
            nn.ConvTranspose2D(4, 2, stride=2),  # 2: (4, 12, 12)
            nn.GroupNorm(2),  # 3
            nn.LayerNorm(),  # 4
            nn.GlobalAvgPool2D(),  # 5: (4,)
            nn.Dense(6),  # 6
            nn.BatchNorm1D(),  # 7
            nn.Dense(3),  # 8
        ],
        input_shape=(2, 6, 6),
        seed=0,
    )


def norm_first(norm: nn.Layer, input_shape: tuple[int, ...]) -> convnp.Sequential:
    """A norm layer that reads the model's input, so the input shape alone sets its size."""
    return convnp.Sequential([norm, nn.Flatten(), nn.Dense(2)], input_shape=input_shape, seed=0)


def config(*edits: tuple[int, dict]):
    """An edit of the description: ``(layer index, config changes)`` pairs.

    The crafted files stay consistent (the in_channels, in_features and
    num_features that later layers store are changed along), so every layer
    builds and the refusal comes from comparing the shapes with the file.
    """

    def edit(meta: dict) -> None:
        for index, changes in edits:
            meta["layers"][index]["config"].update(changes)

    return edit


def huge_input(shape: list[int]):
    """An edit: the model's input shape, with the sizes the layers inferred from it forgotten."""

    def edit(meta: dict) -> None:
        meta["input_shape"] = shape
        for spec in meta["layers"]:
            spec["config"].update({key: None for key in ("in_channels", "in_features", "num_features")
                                   if key in spec["config"]})  # fmt: skip

    return edit


def residual_width(meta: dict) -> None:
    """The graph's Residual block (layer 6) with a body and a shortcut of 10**6 channels."""
    block = meta["layers"][6]["config"]
    for spec in (block["body"][0], block["shortcut"][0]):
        spec["config"]["out_channels"] = WIDE
    block["body"][1]["config"]["num_features"] = WIDE
    meta["layers"][9]["config"]["in_features"] = WIDE  # the Dense head, after pooling


def stem_width(meta: dict) -> None:
    """The graph's stem (layer 0), and so every layer after it, 10**6 channels wide."""
    wide = {"in_channels": WIDE, "out_channels": WIDE}
    config((0, {"out_channels": WIDE}), (1, {"num_features": WIDE}), (3, wide))(meta)
    block = meta["layers"][6]["config"]
    for spec in (block["body"][0], block["shortcut"][0]):
        spec["config"]["in_channels"] = 2 * WIDE  # the Concatenate of two 10**6-channel values


CASES = {
    # name: (model, edit of the description, the layer the refusal names)
    "Dense out_features 10**9": (sized_model, config((8, {"out_features": 10**9})), r"Dense \(layer 8\)"),
    "Dense out_features 3 * 10**6 (a request overcommit grants)": (
        sized_model,
        config((6, {"out_features": 3 * WIDE}), (7, {"num_features": 3 * WIDE}), (8, {"in_features": 3 * WIDE})),
        r"Dense \(layer 6\)"),
    "Conv2D out_channels": (
        sized_model, config((0, {"out_channels": WIDE}), (1, {"num_features": WIDE}), (2, {"in_channels": WIDE})),
        r"Conv2D \(layer 0\)"),
    "Conv2D kernel_size": (
        sized_model, config((0, {"kernel_size": [999, 999], "padding": [499, 499]})), r"Conv2D \(layer 0\)"),
    "ConvTranspose2D out_channels": (
        sized_model, config((2, {"out_channels": WIDE}), (6, {"in_features": WIDE})), r"ConvTranspose2D \(layer 2\)"),
    "ConvTranspose2D kernel_size": (
        sized_model, config((2, {"kernel_size": [3000, 3000]})), r"ConvTranspose2D \(layer 2\)"),
    "LayerNorm over a huge input": (sized_model, huge_input([2, 30000, 30000]), r"LayerNorm \(layer 4\)"),
    "BatchNorm2D channels": (
        lambda: norm_first(nn.BatchNorm2D(), (2, 3, 3)), huge_input([10**8, 1, 1]), r"BatchNorm2D \(layer 0\)"),
    "BatchNorm1D features": (
        lambda: norm_first(nn.BatchNorm1D(), (4,)), huge_input([10**9]), r"BatchNorm1D \(layer 0\)"),
    "GroupNorm channels": (
        lambda: norm_first(nn.GroupNorm(1), (2, 3, 3)), huge_input([10**8, 1, 1]), r"GroupNorm \(layer 0\)"),
    "graph: Dense head": (branching_model, config((9, {"out_features": 10**9})), r"Dense \(layer 9\) 'head'"),
    "graph: the stem Conv2D": (branching_model, stem_width, r"Conv2D \(layer 0\) 'stem'"),
    "graph: a Residual block's body and shortcut": (branching_model, residual_width, r"Residual \(layer 6\)"),
    # Inconsistent on purpose: the build itself refuses, naming the layer, before anything is allocated.
    "BatchNorm2D num_features (refused at build)": (
        sized_model, config((1, {"num_features": 10**9})), r"BatchNorm2D \(layer 1\)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_description_that_implies_huge_layers_is_refused_by_name_without_allocating(tmp_path, case):
    make, edit, layer = CASES[case]
    path = make().save(tmp_path / "crafted.npz")
    entries = read_entries(path)
    meta = description(entries)
    edit(meta)
    rewrite(path, entries, meta, fix_checksum=True)
    outcome, peak = peak_allocation(lambda: convnp.load(path))
    assert isinstance(outcome, ModelFileError), outcome
    assert str(path) in str(outcome)
    assert re.search(layer, str(outcome)), outcome  # the layer, by position (and name)
    assert peak < PEAK_LIMIT, f"loading allocated {peak / 2**20:.1f} MiB"


def test_the_refusal_says_which_array_and_how_large_the_description_makes_it(tmp_path):
    path = sized_model().save(tmp_path / "crafted.npz")
    entries = read_entries(path)
    meta = description(entries)
    meta["layers"][8]["config"]["out_features"] = 10**9
    rewrite(path, entries, meta, fix_checksum=True)
    with pytest.raises(ModelFileError, match=r"8\.weight \(Dense \(layer 8\)\) expects shape \(1000000000, 6\), got "
                       r"\(3, 6\) \(the description implies 6,000,000,000 values there\)"):  # fmt: skip
        convnp.load(path)


@pytest.mark.parametrize("make", [sized_model, branching_model])
def test_loading_draws_no_initial_weights(tmp_path, monkeypatch, make):
    """Every initialiser refuses to run while the model loads: nothing is drawn, and the file's values arrive."""
    model = make()
    path = model.save(tmp_path / "model.npz")

    def refuse(shape, rng):
        raise AssertionError(f"an initialiser ran for shape {shape} while loading")

    for name in init.INITIALIZERS:
        monkeypatch.setitem(init.INITIALIZERS, name, refuse)
    loaded = convnp.load(path)
    assert_same_state(loaded, model)


@pytest.mark.parametrize("make", [sized_model, branching_model])
def test_a_loaded_model_owns_writable_arrays(tmp_path, make):
    """No placeholder survives a load: every parameter and buffer is the model's own, and training writes into it."""
    path = make().save(tmp_path / "model.npz")
    loaded = convnp.load(path)
    arrays = [param.data for param in loaded.parameters()] + [buffer for _, buffer in loaded.named_buffers()]
    for array in arrays:
        assert array.flags.writeable and array.flags.owndata and all(array.strides)
    x = np.random.default_rng(0).random((4, *loaded.input_shape)).astype(np.float32)
    before = loaded.state_dict()
    loaded.fit(x, np.arange(4) % 3, epochs=1, batch_size=2, verbose=0, seed=0)
    assert any(not np.array_equal(value, before[key]) for key, value in loaded.state_dict().items())
