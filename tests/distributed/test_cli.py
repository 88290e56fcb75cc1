"""``mpiexec -n P convnp train``: one run folder, the one-process history, Ctrl-C and --resume.

Every job runs under ``mpiexec`` with a hard timeout (``TIMEOUT``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np
import pytest

import convnp
from tests.cli.helpers import same_arrays, train
from tests.distributed.mpi import finish, needs_mpi, run, start

pytestmark = needs_mpi
TIMEOUT = 300  # seconds for one mpiexec job, a hard limit; each takes well under a minute
CONVNP = (sys.executable, "-m", "convnp")
FAST = ("--batch-size", "128")  # few steps per epoch: the digits train in seconds
RUN_FILES = {
    "model.npz", "checkpoint.npz", "config.json", "history.json",
    "learning_curves.png", "confusion_matrix.png", "filters.png", "feature_maps.png",
}  # fmt: skip


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_write_one_run_folder_with_the_one_process_history(tmp_path, ranks):
    status, output, _ = run(
        ranks, *CONVNP, "train", "--epochs", "2", "--dtype", "float64", *FAST, "--out", "run", "--verbose", "2",
        timeout=TIMEOUT, cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, output
    assert os.listdir(tmp_path) == ["run"]  # one run folder, not one per rank
    assert set(os.listdir(tmp_path / "run")) == RUN_FILES
    assert output.count("test accuracy") == 1 and output.count("Epoch 2/2") == 1  # rank 0 alone prints
    assert f"{ranks} MPI ranks" in output

    assert train(tmp_path / "alone", "--epochs", "2", "--dtype", "float64", *FAST, "--no-plots") == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    alone = json.loads((tmp_path / "alone" / "history.json").read_text())
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        np.testing.assert_allclose(history[key], alone[key], rtol=1e-9, err_msg=key)
    weights = convnp.load(tmp_path / "run" / "model.npz").state_dict()
    for key, value in convnp.load(tmp_path / "alone" / "model.npz").state_dict().items():
        np.testing.assert_allclose(weights[key], value, rtol=1e-7, atol=1e-9, err_msg=key)


def test_ctrl_c_stops_every_rank_at_one_batch_and_resume_continues_exactly(tmp_path):
    command = (*CONVNP, "train", "--epochs", "3", *FAST, "--no-plots", "--verbose", "0")
    job = start(2, *command, "--out", "run", cwd=tmp_path)
    checkpoint = tmp_path / "run" / "checkpoint.npz"
    deadline = time.monotonic() + TIMEOUT
    while not checkpoint.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpoint.exists(), "no checkpoint after the first epoch"
    os.kill(job.pid, signal.SIGINT)  # mpiexec passes Ctrl-C on to every rank
    status, output, _ = finish(job, TIMEOUT)
    assert status == 130, output
    assert output.count("convnp train --resume run") == 1, output  # printed by rank 0 alone
    assert checkpoint.exists() and not (tmp_path / "run" / "model.npz").exists()

    status, output, _ = run(2, *CONVNP, "train", "--resume", "run", "--verbose", "0", "--no-plots",
                            timeout=TIMEOUT, cwd=tmp_path)  # fmt: skip
    assert status == 0, output
    status, output, _ = run(2, *command, "--out", "straight", timeout=TIMEOUT, cwd=tmp_path)
    assert status == 0, output
    assert same_arrays(
        convnp.load(tmp_path / "run" / "model.npz").state_dict(),
        convnp.load(tmp_path / "straight" / "model.npz").state_dict(),
    )
