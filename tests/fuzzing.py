"""Shared pieces of the file-reader fuzz tests: Hypothesis settings and byte mutations.

Import as ``from tests.fuzzing import FUZZ, mutate, mutations``. Examples are
derandomised, so every fuzz test is deterministic.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ = settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def mutations(max_insert: int = 8):
    """A list of 1-4 edits: (kind, position fraction, value)."""
    edit = st.tuples(
        st.sampled_from(["flip", "set", "truncate", "insert", "delete"]),
        st.floats(0, 1, allow_nan=False),
        st.integers(0, 255),
        st.binary(min_size=1, max_size=max_insert),
    )
    return st.lists(edit, min_size=1, max_size=4)


def mutate(data: bytes, edits) -> bytes:
    data = bytearray(data)
    for kind, where, value, chunk in edits:
        position = min(int(where * len(data)), max(len(data) - 1, 0))
        if kind == "flip" and data:
            data[position] ^= 1 << (value % 8)
        elif kind == "set" and data:
            data[position] = value
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert":
            data[position:position] = chunk
        elif kind == "delete":
            del data[position : position + 1 + value % 16]
    return bytes(data)
