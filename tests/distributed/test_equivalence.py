"""P MPI ranks train as one process does: the same history, weights, evaluation and predictions.

Each test runs tests/distributed/worker.py under ``mpiexec -n P`` (with a hard
timeout) and compares what every rank wrote with a one-process run of the same
training here. The network has batch norm (2-D and 1-D) and dropout, the
batches are augmented, and the last batch (5 samples) does not divide among 2 or
3 ranks. Plain SGD: a float64 rounding difference stays one (Adam divides a
gradient that is only rounding noise, a bias before batch norm, by its own size).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.distributed.mpi import mpi_env, needs_mpi, run_worker
from tests.distributed.worker import train

pytestmark = needs_mpi
TIMEOUT = 120  # seconds for one mpiexec job; a few seconds is usual


@pytest.fixture(scope="module")
def one_process():
    return {graph: train(graph=graph)[1] for graph in (False, True)}


@pytest.mark.parametrize(
    "ranks, threads, graph",
    [(2, 1, False), (3, 1, False), (2, 1, True), (3, 1, True), (2, 2, False), (3, 2, True)],
    ids=["2 ranks", "3 ranks", "2 ranks graph", "3 ranks graph", "2 ranks x 2 threads", "3 ranks x 2 threads graph"],
)
def test_ranks_train_as_one_process(tmp_path, one_process, ranks, threads, graph):
    options = ["--graph"] * graph + ["--split"] * (threads > 1)
    env = mpi_env(CONVNP_NUM_THREADS=str(threads))
    status, output, _ = run_worker(ranks, "fit", str(tmp_path), *options, timeout=TIMEOUT, env=env)
    assert status == 0, output
    expected = one_process[graph]
    written = [dict(np.load(tmp_path / f"rank{rank}.npz")) for rank in range(ranks)]
    for rank, results in enumerate(written):
        assert int(results.pop("world_size")) == ranks
        assert results.keys() == expected.keys()
        for key, value in expected.items():
            np.testing.assert_allclose(results[key], value, rtol=1e-10, atol=1e-12, err_msg=f"rank {rank}: {key}")
    for results in written[1:]:  # the replicas stay identical, bit for bit
        for key in expected:
            if key.startswith("weights."):
                assert np.array_equal(results[key], written[0][key]), key
