"""Running a command under ``mpiexec`` from a test, always with a hard timeout."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import convnp

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(convnp.__file__).resolve().parents[1]  # the convnp under test, for the launched processes
WORKER = Path(__file__).with_name("worker.py")
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")

needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
    reason="needs mpi4py and an mpiexec (pip install convnp[mpi])",
)


def mpi_env(**settings: str) -> dict[str, str]:
    """The test's environment for the ranks: this convnp first, one thread per rank, a short collective timeout."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PMI", "OMPI_", "HYDI_", "MPI_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE), str(ROOT), env.get("PYTHONPATH")]))
    env["CONVNP_NUM_THREADS"] = "1"
    env["CONVNP_MPI_TIMEOUT"] = "60"
    env.update(settings)
    return env


def start(ranks: int, *command: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """``mpiexec -n RANKS COMMAND`` in its own process group, output (stdout and stderr) to a pipe."""
    return subprocess.Popen(
        [MPIEXEC, "-n", str(ranks), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or mpi_env(),
        cwd=cwd,
        start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout: float) -> tuple[int, str, float]:
    """Wait at most ``timeout`` seconds for the job; returns (exit status, output, seconds waited).

    A job still running then is killed, process group and all, and the test fails.
    """
    started = time.monotonic()
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the MPI job did not end within {timeout} s; its output:\n{output}")
    return process.returncode, output, time.monotonic() - started


def run(ranks: int, *command: str, timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None):
    """``mpiexec -n RANKS COMMAND`` to its end, within ``timeout`` seconds: (exit status, output, seconds)."""
    return finish(start(ranks, *command, env=env, cwd=cwd), timeout)


def run_worker(ranks: int, *arguments: str, timeout: float, env: dict[str, str] | None = None):
    """``tests/distributed/worker.py ARGUMENTS`` on ``ranks`` ranks (see run)."""
    return run(ranks, sys.executable, str(WORKER), *arguments, timeout=timeout, env=env)
