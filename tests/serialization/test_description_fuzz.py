"""Fuzzing the description and the arrays of valid model files, checksum recomputed each time.

The checksum guards against damage, not against crafting, so these mutations reach the
builder: JSON fields (every size field, input shape, dtype, layer classes, a graph's
references) set to huge, negative, zero or ill-typed values, deleted or added; arrays
dropped, added, renamed, reshaped or recast. The contract (docs/guarantees.md, section 2):
``convnp.load`` raises ``ModelFileError`` or returns a model holding exactly the file's
arrays, and never allocates more than a few MiB, whatever the description declares.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convnp
from convnp import nn
from convnp.files.model_file import META_KEY, ModelFileError
from tests.fuzzing import fuzz
from tests.model_files import branching_model, description, peak_allocation, read_entries, rewrite

PEAK_LIMIT = 4 * 2**20
#: The parts of a description that say what to build.
ARCHITECTURE_KEYS = ("dtype", "input_shape", "layers", "kind", "inputs")
#: Config entries a layer fills in from its input at build.
INFERRED = ("in_channels", "in_features", "num_features")


def every_layer_model() -> convnp.Sequential:
    """A layer of every kind with a size field: channels, features, kernels, strides, paddings, factors."""
    return convnp.Sequential(
        [
            nn.Conv2D(3, 3, padding=1, activation="relu"),
            nn.BatchNorm2D(),
            nn.MaxPool2D(2),
            nn.Upsample2D(2),
            nn.ConvTranspose2D(2, 2, stride=2),
            nn.GroupNorm(1),
            nn.AdaptiveAvgPool2D(2),
            nn.LayerNorm(),
            nn.AvgPool2D(1),
            nn.Flatten(),
            nn.Dropout(0.1),
            nn.Dense(4, activation=nn.LeakyReLU(0.2)),
            nn.BatchNorm1D(),
            nn.Dense(3),
        ],
        input_shape=(1, 6, 6),
        seed=0,
    )


def _saved_entries() -> dict[str, dict[str, np.ndarray]]:
    with tempfile.TemporaryDirectory() as folder:
        return {
            "sequential": read_entries(every_layer_model().save(Path(folder) / "sequential.npz")),
            "graph": read_entries(branching_model().save(Path(folder) / "graph.npz")),
        }


SAVED = _saved_entries()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# Large sizes first: Hypothesis draws the first elements most often (and shrinks towards them).
SIZES = st.sampled_from([10**9, 2**31, 10**6, 2**32 + 1, 10**30, 2**62, 2**63, 2**64, 7, 3, 2, 1, 0, -1])
VALUES = st.one_of(
    SIZES,
    st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(["float64", "float16", "Dense", "Model", "same", "relu", "he", ""]),
    st.text(max_size=4),
    st.lists(st.one_of(SIZES, st.integers(-2, 40), st.none()), max_size=4),
    st.dictionaries(st.sampled_from(["class", "config", "out_features", "x"]), st.integers(-1, 10**9), max_size=2),
)


def _paths(value, prefix: tuple = ()):
    """Every place in a JSON value: dict keys and list positions, depth first."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _locate(meta: dict, path: tuple):
    parent = meta
    for step in path[:-1]:
        parent = parent[step]
    return parent, path[-1]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def mutate_description(meta: dict, data) -> dict:
    """1-3 edits of the architecture, most of them to a size field (any int in it: channels, features,
    kernel sizes, strides, paddings, factors, the input shape, a graph's references).

    A size is set to a drawn size or multiplied by one; other edits set any value, delete an entry,
    add a config key, or copy one part of the description over another. Half the time the sizes
    the layers inferred at build (in_channels, in_features, num_features) are then forgotten, as a
    crafted file would, so that the layers after an edited one build too instead of refusing it.
    """
    meta = copy.deepcopy(meta)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        paths = [p for p in _paths(meta) if p and p[0] in ARCHITECTURE_KEYS]
        sizes = [p for p in paths if _is_int(_locate(meta, p)[0][p[-1]])]
        kind = data.draw(st.sampled_from(["size", "size", "size", "set", "delete", "add", "copy"]), label="kind")
        path = data.draw(st.sampled_from(sizes if kind == "size" and sizes else paths), label="path")
        parent, key = _locate(meta, path)
        if kind == "size":
            size = data.draw(SIZES, label="size")
            scale = data.draw(st.booleans(), label="scale") and _is_int(parent[key])
            parent[key] = parent[key] * size if scale else size
        elif kind == "set":
            parent[key] = data.draw(VALUES, label="value")
        elif kind == "delete":
            del parent[key]
        elif kind == "add" and isinstance(parent[key], dict):
            parent[key][data.draw(st.sampled_from(["in_channels", "groups", "size", "name"]))] = data.draw(VALUES)
        elif kind == "copy":
            parent[key] = copy.deepcopy(_locate(meta, data.draw(st.sampled_from(paths), label="from"))[0])
    if data.draw(st.booleans(), label="forget inferred sizes"):
        _forget_inferred(meta)
    return meta


def _forget_inferred(value) -> None:
    if isinstance(value, dict):
        for key in value:
            if key in INFERRED:
                value[key] = None
            else:
                _forget_inferred(value[key])
    elif isinstance(value, list):
        for item in value:
            _forget_inferred(item)


def check_load(path: Path, model_arrays: dict[str, np.ndarray]) -> None:
    """Only ModelFileError, with a small peak allocation; a model that loads holds exactly the file's arrays."""
    outcome, peak = peak_allocation(lambda: convnp.load(path))
    assert peak < PEAK_LIMIT, f"loading allocated {peak / 2**20:.1f} MiB"
    if isinstance(outcome, ModelFileError):
        assert str(path) in str(outcome)
        return
    assert not isinstance(outcome, Exception), repr(outcome)
    state = outcome.state_dict()
    assert sorted(state) == sorted(key[len("model/") :] for key in model_arrays)
    for key, value in model_arrays.items():
        assert np.array_equal(state[key[len("model/") :]], value), key


@fuzz(400)
@given(which=st.sampled_from(sorted(SAVED)), data=st.data())
def test_mutated_descriptions_only_ever_raise_model_file_error(workdir, which, data):
    entries = SAVED[which]
    meta = mutate_description(description(entries), data)
    path = workdir / "description.npz"
    rewrite(path, entries, meta, fix_checksum=True)
    check_load(path, {key: value for key, value in entries.items() if key.startswith("model/")})


DTYPES = st.sampled_from(["float16", "float32", "float64", "int32", "uint8", "bool", "complex64"])


def mutate_arrays(entries: dict[str, np.ndarray], data) -> dict[str, np.ndarray]:
    """1-3 edits of the arrays: drop, rename, reshape, recast, add, or replace one by a different size."""
    entries = dict(entries)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        keys = sorted(key for key in entries if key != META_KEY)
        key = data.draw(st.sampled_from(keys), label="key")
        kind = data.draw(st.sampled_from(["drop", "rename", "reshape", "recast", "add", "resize"]), label="kind")
        value = entries[key]
        if kind == "drop":
            del entries[key]
        elif kind == "rename":
            names = [f"{key}x", key.replace("model/", "optimizer/"), key.replace("model/", "extra/"), "model/9.weight"]
            entries[data.draw(st.sampled_from(names), label="name")] = entries.pop(key)
        elif kind == "reshape":
            entries[key] = value.reshape(data.draw(st.sampled_from([(-1,), (1, -1), (-1, 1), (*value.shape, 1)])))
        elif kind == "recast":
            entries[key] = np.real(value).astype(data.draw(DTYPES, label="dtype"))
        elif kind == "add":
            entries[data.draw(st.sampled_from(["model/extra", "model/0.weight2", "optimizer/x", "extra/x"]))] = value
        elif kind == "resize":
            shape = data.draw(st.lists(st.integers(0, 5), min_size=0, max_size=4), label="shape")
            entries[key] = np.zeros(shape, dtype=value.dtype)
    return entries


@fuzz(400)
@given(which=st.sampled_from(sorted(SAVED)), data=st.data())
def test_mutated_arrays_only_ever_raise_model_file_error(workdir, which, data):
    entries = mutate_arrays(SAVED[which], data)
    path = workdir / "arrays.npz"
    meta = description(entries)
    rewrite(path, {key: value for key, value in entries.items() if key != META_KEY}, meta, fix_checksum=True)
    check_load(path, {key: value for key, value in entries.items() if key.startswith("model/")})
