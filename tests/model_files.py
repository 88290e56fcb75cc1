"""Shared helpers for the model-file tests: a model with every kind of stored array, a graph
model, ways to read, change and re-write the entries of a saved file, and the peak memory
a call allocates.

Import as ``from tests.model_files import rich_model, ...``; the ``saved`` fixture
(tests/conftest.py) trains and saves ``rich_model()``.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from collections.abc import Callable

import numpy as np

import convnp
from convnp import nn
from convnp.files.model_file import META_KEY, file_checksum


def rich_model(dtype: str = "float32") -> convnp.Sequential:
    """Every kind of stored array: conv and dense weights, biases, batch-norm buffers."""
    return convnp.Sequential(
        [
            nn.Conv2D(3, 3, padding=1),
            nn.BatchNorm2D(),
            nn.ReLU(),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Dense(6, activation=nn.LeakyReLU(0.2)),
            nn.BatchNorm1D(),
            nn.Dense(3),
        ],
        input_shape=(1, 6, 6),
        dtype=dtype,
        seed=0,
    )


def branching_model() -> nn.Model:
    """A graph: a named stem, an Add and a Concatenate that read the stem twice, a Residual block with a projection."""
    inputs = nn.Input((2, 6, 6))
    stem = nn.ReLU()(nn.BatchNorm2D(name="stem_bn")(nn.Conv2D(4, 3, padding=1, name="stem")(inputs)))
    left = nn.Conv2D(4, 3, padding=1)(stem)
    joined = nn.Concatenate(axis=1)([nn.Add()([left, stem]), stem])
    block = nn.Residual([nn.Conv2D(8, 3, padding=1), nn.BatchNorm2D()], shortcut=[nn.Conv2D(8, 1)])(joined)
    out = nn.Dense(3, name="head")(nn.Flatten()(nn.GlobalAvgPool2D()(block)))
    return nn.Model(inputs, out, seed=0)


def writer_model(seed: int) -> convnp.Sequential:
    """About 2 MB of weights, so that two processes saving it to one path overlap."""
    return convnp.Sequential(
        [nn.Conv2D(8, 3, padding=1), nn.BatchNorm2D(), nn.Flatten(), nn.Dense(64)], input_shape=(3, 32, 32), seed=seed
    )


def data(dtype: str = "float32", n: int = 16):
    rng = np.random.default_rng(1)
    return rng.random((n, 1, 6, 6)).astype(dtype), rng.integers(0, 3, n)


def read_entries(path) -> dict[str, np.ndarray]:
    """The raw arrays of an .npz (numpy.load, no pickle), keyed as stored."""
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def rewrite(path, entries: dict[str, np.ndarray], meta: dict | None = None, fix_checksum: bool = False) -> None:
    """Write ``entries`` (and ``meta`` as the description) back as a well-formed .npz."""
    entries = dict(entries)
    if meta is not None:
        if fix_checksum:
            arrays = {k: v for k, v in entries.items() if k != META_KEY}
            meta = {**meta, "checksum": file_checksum(meta, arrays)}
        entries[META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as stream:
        np.savez(stream, **entries)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def description(entries: dict[str, np.ndarray]) -> dict:
    return json.loads(entries[META_KEY].tobytes().decode())


def assert_same_state(a: convnp.Sequential, b: convnp.Sequential) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for key in state_a:
        assert state_a[key].dtype == state_b[key].dtype, key
        assert np.array_equal(state_a[key], state_b[key]), key


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def peak_allocation(call: Callable[[], object]) -> tuple[object, int]:
    """``(call(), peak bytes allocated while it ran)``, measured with tracemalloc (which sees NumPy's arrays).

    An exception from ``call`` is returned in place of its result.
    """
    already = tracemalloc.is_tracing()
    if not already:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        result = call()
    except Exception as error:  # the caller asserts on what came out
        result = error
    peak = tracemalloc.get_traced_memory()[1] - base
    if not already:
        tracemalloc.stop()
    return result, peak
