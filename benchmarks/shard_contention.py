"""How much two shards of one process slow each other down, against two processes.

    python benchmarks/shard_contention.py [--networks lenet5,mnist_cnn] [--batch 32] [--seconds 3]

convnp runs a training step as one whole-pass shard per core, in threads of
one process (``convnp/nn/shards.py``). This script separates what that costs
from the work itself. For each network it times a training step (forward,
softmax cross-entropy, backward, SGD) on ``--batch`` images, one BLAS thread
and no batch splitting, in four settings:

- ``alone``: one thread of one process, nothing else running;
- ``2 threads``: two threads of one process at the same time, each training
  its own copy of the network, so they share nothing but the interpreter;
- ``2 processes``: two processes at the same time, each running ``alone``'s loop;
- ``beside Python``: one thread beside a second thread that runs pure Python.

Each setting reports milliseconds per step (the median over its threads or
processes and over ``--rounds`` rounds, the settings of a round taken in turn
so that they share the machine's drift). Two processes slow each other only
through the hardware they share (memory bandwidth, the L3 cache). Two threads
share the interpreter's lock as well: a thread that comes back from a NumPy
call must wait for the lock while the other thread runs Python. The last
setting shows that wait at its worst, when the other thread never lets go of
the lock for long.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading

CHILD = r"""
import json, sys
sys.path[:0] = [sys.argv[1]]
from shard_contention import steps_alone
print(json.dumps(steps_alone(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))
"""


def make_step(network: str, batch: int, seed: int = 0):
    """A training step of ``network`` on a fixed random batch, with its own model and optimizer."""
    from convnp.bench import convnp_train_step, make_models, random_batch

    model, shape = make_models(network, seed)
    return convnp_train_step(model, random_batch(shape, batch, seed))


def _count_steps(step, seconds: float, start_together: threading.Barrier | None = None) -> float:
    """Milliseconds per call of ``step`` over at least ``seconds`` (after 3 warm-up calls)."""
    from convnp.bench import images_per_second

    for _ in range(3):
        step()
    if start_together is not None:
        start_together.wait()
    return 1e3 / images_per_second(step, 1, seconds)  # calls per second, as images of a batch of one


@contextlib.contextmanager
def _one_core():
    """One BLAS thread and no batch splitting, the setting of one shard; both restored on exit."""
    from threadpoolctl import threadpool_limits

    from convnp.backend.threads import get_num_threads, set_num_threads

    threads = get_num_threads()
    set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        set_num_threads(threads)


def steps_alone(network: str, batch: int, seconds: float) -> float:
    """ms per step of one network, one core, nothing else in this process."""
    with _one_core():
        return _count_steps(make_step(network, batch), seconds)


def steps_in_threads(network: str, batch: int, seconds: float) -> list[float]:
    """ms per step of each of two threads, each training its own copy of the network at the same time."""
    steps = [make_step(network, batch, seed) for seed in (0, 1)]
    together = threading.Barrier(2)
    results = [0.0, 0.0]

    def run(index: int) -> None:
        results[index] = _count_steps(steps[index], seconds, together)

    with _one_core():
        workers = [threading.Thread(target=run, args=(index,)) for index in (0, 1)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return results


def steps_in_processes(network: str, batch: int, seconds: float) -> list[float]:
    """ms per step of each of two processes running ``steps_alone`` at the same time."""
    environment = {key: value for key, value in os.environ.items() if key != "OPENBLAS_CORETYPE"}
    environment["OPENBLAS_NUM_THREADS"] = "1"
    here = os.path.dirname(os.path.abspath(__file__))
    command = [sys.executable, "-c", CHILD, here, network, str(batch), str(seconds)]
    children = [subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [child.communicate()[0] for child in children]
    if any(child.returncode for child in children):
        raise RuntimeError(f"shard_contention: a child process failed: {outputs}")
    return [json.loads(output.strip().splitlines()[-1]) for output in outputs]


def steps_beside_python(network: str, batch: int, seconds: float) -> float:
    """ms per step of one thread while another thread of the process runs pure Python."""
    step = make_step(network, batch)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            total = 0
            for value in range(1000):
                total += value

    spinner = threading.Thread(target=spin)
    with _one_core():
        spinner.start()
        try:
            return _count_steps(step, seconds)
        finally:
            stop.set()
            spinner.join()


SETTINGS = {
    "alone": lambda network, batch, seconds: [steps_alone(network, batch, seconds)],
    "2 threads": steps_in_threads,
    "2 processes": steps_in_processes,
    "beside Python": lambda network, batch, seconds: [steps_beside_python(network, batch, seconds)],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default="lenet5,mnist_cnn,resnet20_cifar")
    parser.add_argument("--batch", type=int, default=32, help="images per step and thread (one shard)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each timed loop")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-python", action="store_true", help="leave out the 'beside Python' setting")
    args = parser.parse_args(argv)
    settings = [name for name in SETTINGS if not (args.no_python and name == "beside Python")]
    print(f"ms per training step of {args.batch} images on one core; median of {args.rounds} rounds")
    print(f"{'network':<16}" + "".join(f"{name:>16}" for name in settings))
    for network in args.networks.split(","):
        times: dict[str, list[float]] = {name: [] for name in settings}
        for _ in range(args.rounds):
            for name in settings:
                times[name].extend(SETTINGS[name](network, args.batch, args.seconds))
        alone = statistics.median(times["alone"])
        cells = []
        for name in settings:
            median = statistics.median(times[name])
            cells.append(f"{median:8.2f}" + ("" if name == "alone" else f" ({median / alone:.2f}x)"))
        print(f"{network:<16}" + "".join(f"{cell:>16}" for cell in cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
