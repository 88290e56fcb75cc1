"""Whether an MPI launcher started this process, and the world communicator.

mpi4py is imported, which initialises MPI, only when the environment shows a
launcher that started more than one process: ``mpiexec`` (MPICH's Hydra, Intel
MPI), Open MPI's ``mpirun``, Slurm's ``srun`` (through PMI or PMIx). A plain
``python script.py`` never loads it, and ``mpiexec -n 1`` needs no mpi4py.
``CONVNP_MPI=0`` turns MPI off whatever the environment says; ``CONVNP_MPI=1``
asks mpi4py even when no launcher variable is set.
"""

from __future__ import annotations

import os
import threading

from convnp._optional import require
from convnp.distributed.communicator import Communicator, MPICommunicator
from convnp.distributed.failures import install_excepthook

__all__ = ["launched_size", "world"]

# What launchers put in the environment of the processes they start.
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")  # the number of ranks
LAUNCHER_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MPI_LOCALNRANKS")

_world: Communicator | None = None
_lock = threading.Lock()


def launched_size() -> int | None:
    """How many ranks the launcher started, as its environment says: 1 outside a launcher, None when it does not say."""
    setting = os.environ.get("CONVNP_MPI", "").strip()
    if setting == "0":
        return 1
    for name in SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    if setting == "1" or any(name in os.environ for name in LAUNCHER_VARIABLES):
        return None
    return 1


def world() -> Communicator:
    """The communicator of every rank of the job (a single-process one outside a launcher); made on first use."""
    global _world
    with _lock:
        if _world is None:
            _world = _connect()
        return _world


def _connect() -> Communicator:
    if launched_size() == 1:
        return Communicator()
    mpi = require("mpi4py.MPI", "running convnp under an MPI launcher with more than one rank", "mpi")
    if mpi.COMM_WORLD.Get_size() == 1:
        return Communicator()
    communicator = MPICommunicator(mpi, mpi.COMM_WORLD)
    install_excepthook(communicator)
    return communicator
