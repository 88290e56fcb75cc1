"""A rank that fails ends the whole MPI job promptly, and the last checkpoint survives.

Each test trains tests/distributed/worker.py under ``mpiexec`` (with a hard
timeout) with a checkpoint written at every epoch end, and makes one rank
fail in epoch 2: an exception, a hang (the others stop after
``CONVNP_MPI_TIMEOUT``), or a kill. The job must end well within its timeout,
with the failing rank's error printed, and the epoch-1 checkpoint must still
be a whole, loadable checkpoint.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest

import convnp
from convnp.serialization import load_file
from tests.distributed.mpi import WORKER, finish, mpi_env, needs_mpi, run_worker, start

pytestmark = needs_mpi
TIMEOUT = 120  # seconds for one mpiexec job, a hard limit; each ends in a few seconds


def assert_checkpoint_of_epoch_1(path):
    meta, _ = load_file(path)
    assert meta["extra"]["kind"] == "fit-checkpoint"
    assert meta["extra"]["epoch"] == 1 and meta["extra"]["batch"] == 0
    model = convnp.load(path)
    assert all(np.isfinite(array).all() for array in model.state_dict().values())


@pytest.mark.parametrize("ranks, failing", [(2, 1), (3, 0)], ids=["rank 1 of 2", "rank 0 of 3"])
def test_an_exception_on_one_rank_ends_the_job_with_its_error(tmp_path, ranks, failing):
    status, output, seconds = run_worker(ranks, "fail", str(tmp_path), str(failing), "raise", timeout=TIMEOUT)
    assert status != 0
    assert f"RuntimeError: planted failure on rank {failing}" in output
    assert f"[rank {failing} of {ranks}]" in output
    assert f"convnp: rank {failing} failed; aborting the MPI job" in output
    assert seconds < 30, "the job waited for the collective timeout (60 s) instead of ending at once"
    assert_checkpoint_of_epoch_1(tmp_path / "checkpoint.npz")


def test_a_hanging_rank_makes_the_others_end_the_job_after_the_timeout(tmp_path):
    env = mpi_env(CONVNP_MPI_TIMEOUT="3")
    status, output, seconds = run_worker(2, "fail", str(tmp_path), "1", "hang", timeout=TIMEOUT, env=env)
    assert status != 0
    assert "convnp: rank 0 of 2: no answer from the other ranks for 3 s in" in output
    assert "CONVNP_MPI_TIMEOUT" in output
    assert seconds < 30
    assert_checkpoint_of_epoch_1(tmp_path / "checkpoint.npz")


def test_a_killed_rank_ends_the_job(tmp_path):
    job = start(2, sys.executable, str(WORKER), "fail", str(tmp_path), "1", "kill")
    pid_file = tmp_path / "pid1"
    deadline = time.monotonic() + TIMEOUT
    while not pid_file.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists(), "rank 1 never reached epoch 2"
    time.sleep(0.1)  # the file is written before the process waits; let the write finish
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    status, output, seconds = finish(job, TIMEOUT)
    assert status != 0
    assert seconds < 30
    assert_checkpoint_of_epoch_1(tmp_path / "checkpoint.npz")
