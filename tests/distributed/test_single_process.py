"""convnp.distributed without MPI: one process, nothing changes, mpi4py never loaded; the pieces MPI runs use."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from convnp import distributed
from convnp.backend import threads
from convnp.distributed import BatchShard, Communicator, rank_bounds
from convnp.distributed.failures import report_failure
from convnp.parameter import Parameter
from convnp.training.ranks import agreed, agreed_seed, check_rank_batches, copy_weights_from_first_rank
from tests.distributed.worker import network

LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
                      "MPI_LOCALNRANKS", "CONVNP_MPI")  # fmt: skip


@pytest.fixture
def no_launcher(monkeypatch):
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if key not in LAUNCHER_VARIABLES}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env}, timeout=120
    )


def test_one_process_is_rank_0_of_1(no_launcher):
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)


def test_no_mpi4py_is_loaded_outside_a_launcher():
    code = "import sys, convnp.distributed as d; d.world_size(); print('mpi4py' in sys.modules)"
    assert _python(code).stdout.strip() == "False"
    assert _python("import sys, convnp; print('mpi4py' in sys.modules)").stdout.strip() == "False"


def test_several_ranks_without_mpi4py_name_the_extra():
    code = "import sys; sys.modules['mpi4py'] = None; import convnp.distributed as d; d.world_size()"
    result = _python(code, PMI_SIZE="2", PMI_RANK="0")
    assert result.returncode != 0
    assert "needs the optional package 'mpi4py'" in result.stderr
    assert "pip install convnp[mpi]" in result.stderr


def test_one_launched_rank_needs_no_mpi4py():
    code = "import sys; sys.modules['mpi4py'] = None; import convnp.distributed as d; print(d.world_size())"
    assert _python(code, PMI_SIZE="1", PMI_RANK="0").stdout.strip() == "1"


@pytest.mark.parametrize(
    "env, size",
    [({}, 1), ({"PMI_SIZE": "4"}, 4), ({"OMPI_COMM_WORLD_SIZE": "3"}, 3), ({"PMIX_RANK": "0"}, None),
     ({"CONVNP_MPI": "1"}, None), ({"PMI_SIZE": "4", "CONVNP_MPI": "0"}, 1)],
)  # fmt: skip
def test_launched_size_reads_the_launchers_environment(monkeypatch, no_launcher, env, size):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert distributed.launched_size() == size


@pytest.mark.parametrize("count, size", [(16, 2), (5, 3), (53, 3), (7, 7), (2, 5), (0, 2)])
def test_rank_bounds_cut_contiguous_pieces_of_nearly_equal_size(count, size):
    bounds = rank_bounds(count, size)
    assert bounds[0] == 0 and bounds[-1] == count and len(bounds) == size + 1
    sizes = np.diff(bounds)
    assert sizes.min() >= 0 and sizes.max() - sizes.min() <= 1


def test_batch_shard_of_one_process_is_the_whole_batch():
    shard = BatchShard.of(Communicator(), 10)
    assert (shard.start, shard.stop, shard.batch, shard.size) == (0, 10, 10, 1)
    part = np.arange(3.0)
    total = shard.sum(part)
    assert np.array_equal(total, part) and total is not part


def test_single_process_collectives_change_nothing():
    communicator = Communicator()
    buffer = np.arange(4.0)
    communicator.allreduce_sum(buffer, "test")
    communicator.broadcast(buffer, "test")
    assert np.array_equal(buffer, np.arange(4.0))
    assert communicator.any(True, "test") and not communicator.any(False, "test")
    assert communicator.gather_rows(buffer[:, None], "test").shape == (4, 1)
    assert distributed.in_turns(lambda: 42) == 42
    param = Parameter(np.ones(2))
    param.grad = np.full(2, 3.0)
    distributed.sum_gradients([param], communicator)
    assert np.array_equal(param.grad, [3.0, 3.0])


def test_fit_needs_a_sample_per_rank_in_every_batch():
    check_rank_batches(53, 16, 3)  # batches of 16, 16, 16, 5
    check_rank_batches(10, 4, 1)
    with pytest.raises(ValueError, match="the last batch has 2 \\(50 samples in batches of 16\\)"):
        check_rank_batches(50, 16, 3)
    with pytest.raises(ValueError, match="every batch has 2"):
        check_rank_batches(40, 2, 3)


def test_one_process_keeps_its_seed_and_weights():
    communicator = Communicator()
    generator = np.random.default_rng(0)
    assert agreed_seed(None, communicator) is None
    assert agreed_seed(generator, communicator) is generator
    model = network()
    before = model.state_dict()
    copy_weights_from_first_rank(model, communicator)
    assert all(np.array_equal(before[key], value) for key, value in model.state_dict().items())
    assert agreed(True, communicator, "test") and not agreed(False, communicator, "test")


def test_timeout_from_the_environment_and_set_timeout(monkeypatch):
    monkeypatch.setattr(distributed.failures, "_timeout", {})
    monkeypatch.setenv("CONVNP_MPI_TIMEOUT", "12.5")
    assert distributed.get_timeout() == 12.5
    monkeypatch.setattr(distributed.failures, "_timeout", {})
    monkeypatch.setenv("CONVNP_MPI_TIMEOUT", "0")
    assert distributed.get_timeout() is None
    monkeypatch.setattr(distributed.failures, "_timeout", {})
    monkeypatch.delenv("CONVNP_MPI_TIMEOUT")
    assert distributed.get_timeout() == distributed.failures.DEFAULT_TIMEOUT
    distributed.set_timeout(5)
    assert distributed.get_timeout() == 5.0
    with pytest.raises(ValueError, match="set_timeout"):
        distributed.set_timeout(0)


def test_a_failure_of_one_process_is_printed_and_returned(capsys):
    assert report_failure(Communicator(), "convnp train: error: boom", ValueError("boom"), 1) == 1
    assert capsys.readouterr().err == "convnp train: error: boom\n"
    error = distributed.on_every_rank(KeyboardInterrupt())
    assert distributed.raised_on_every_rank(error) and not distributed.raised_on_every_rank(ValueError())


def test_threads_are_shared_by_the_ranks_of_a_host(monkeypatch):
    monkeypatch.delenv("CONVNP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.delenv("OMPI_COMM_WORLD_LOCAL_SIZE", raising=False)
    monkeypatch.delenv("MPI_LOCALNRANKS", raising=False)
    assert threads._default_threads() == 8
    monkeypatch.setenv("MPI_LOCALNRANKS", "2")
    assert threads._default_threads() == 4
    monkeypatch.setenv("MPI_LOCALNRANKS", "16")
    assert threads._default_threads() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)  # pinned by the launcher
    assert threads._default_threads() == 2
