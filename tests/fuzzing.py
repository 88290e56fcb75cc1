"""Shared pieces of the file-reader fuzz tests: Hypothesis settings and byte mutations.

Import as ``from tests.fuzzing import FUZZ, fuzz, mutate, mutations``. Examples are
derandomised, so every fuzz test is deterministic. ``FUZZ`` runs 1000 examples per
test, ``fuzz(n)`` n; the environment variable ``CONVNP_FUZZ_EXAMPLES`` overrides both,
for a longer campaign outside the test suite (docs/guarantees.md records one):

    CONVNP_FUZZ_EXAMPLES=20000 python -m pytest tests/serialization/test_description_fuzz.py
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Examples per fuzz test when set (a campaign); otherwise each test's own count.
CAMPAIGN_EXAMPLES = int(os.environ.get("CONVNP_FUZZ_EXAMPLES", "0")) or None


def fuzz(max_examples: int = 1000) -> settings:
    """Derandomised settings for ``max_examples`` examples (or the campaign's count)."""
    return settings(
        max_examples=CAMPAIGN_EXAMPLES or max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


FUZZ = fuzz()


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
