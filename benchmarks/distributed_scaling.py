"""Epoch time of data-parallel training: 1 rank x 1 thread, 1 rank x 2 threads, 2 ranks x 1 thread.

    python benchmarks/distributed_scaling.py                      # mnist_cnn and resnet20, real epoch sizes
    python benchmarks/distributed_scaling.py --models mnist_cnn --samples 512   # a quick check

Each configuration runs ``fit`` for one epoch (after one warm-up batch) on
synthetic data of the model's input shape (the time of a step does not depend
on the pixels) in a job of its own, ``mpiexec -n RANKS`` with
``CONVNP_NUM_THREADS=THREADS``, and reports rank 0's epoch time, images per
second, the speed-up over 1 x 1, and the share of the epoch each rank spent in
the gradient ``Allreduce`` and in the small exchanges (batch norm sums, loss,
Ctrl-C agreement). Needs an idle machine: run nothing else meanwhile.
Writes the table to stdout and every measurement as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CONFIGURATIONS = ((1, 1), (1, 2), (2, 1))  # (ranks, threads per rank)
INPUT_SHAPES = {"mnist_cnn": (1, 28, 28), "resnet20": (3, 32, 32), "resnet18": (3, 32, 32), "convnet_bn": (1, 28, 28)}
EPOCH_SIZES = {"mnist_cnn": 60000, "resnet20": 50000, "resnet18": 50000, "convnet_bn": 60000}
MARKER = "distributed-scaling:"


def measure(model_name: str, samples: int, batch_size: int) -> None:
    """One epoch under the current launcher; rank 0 prints one JSON line after MARKER."""
    import numpy as np

    from convnp import distributed
    from convnp.backend import get_num_threads
    from convnp.models import build_model

    communicator = distributed.world()
    spent = {"allreduce": 0.0, "exchanges": 0.0}

    def timed(method, key):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - started

        return run

    communicator.allreduce_sum = timed(communicator.allreduce_sum, "allreduce")
    communicator.sum_in_rank_order = timed(communicator.sum_in_rank_order, "exchanges")
    rng = np.random.default_rng(0)
    shape = INPUT_SHAPES[model_name]
    x = rng.random((samples, *shape), dtype=np.float32)
    y = rng.integers(0, 10, samples)
    model = build_model(model_name, input_shape=shape, num_classes=10, seed=0)
    model.fit(x[:batch_size], y[:batch_size], epochs=1, batch_size=batch_size, verbose=0, seed=0)  # warm-up
    spent.update(allreduce=0.0, exchanges=0.0)
    started = time.perf_counter()
    model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0, seed=0)
    seconds = time.perf_counter() - started
    gradient_bytes = sum(param.data.nbytes for param in model.parameters())
    shares = communicator.gather_rows(np.array([[spent["allreduce"], spent["exchanges"]]]), "benchmark")
    if communicator.is_main:
        result = {
            "model": model_name, "ranks": communicator.size, "threads": get_num_threads(), "samples": samples,
            "batch_size": batch_size, "epoch_s": seconds, "images_per_s": samples / seconds,
            "allreduce_share": float(shares[:, 0].max() / seconds),
            "exchange_share": float(shares[:, 1].max() / seconds),
            "gradient_bytes": gradient_bytes, "steps": -(-samples // batch_size),
        }  # fmt: skip
        print(MARKER + json.dumps(result), flush=True)


def run_configuration(model_name: str, ranks: int, threads: int, samples: int, batch_size: int, timeout: float) -> dict:
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("no mpiexec found: pip install 'convnp[mpi]'")
    command = [mpiexec, "-n", str(ranks), sys.executable, __file__, "--measure", model_name,
               "--samples", str(samples), "--batch-size", str(batch_size)]  # fmt: skip
    # BLAS at the same thread count: outside convnp's split ops it would otherwise take every core.
    limits = ("CONVNP_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    env = {**os.environ, **dict.fromkeys(limits, str(threads))}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    for line in result.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mnist_cnn,resnet20", help="comma-separated convnp.models names")
    parser.add_argument("--samples", type=int, default=None, help="images per epoch (default: MNIST's or CIFAR-10's)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one configuration may take")
    parser.add_argument("--out", default=None, help="write the measurements here as JSON")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # the job run under mpiexec
    args = parser.parse_args(argv)
    if args.measure is not None:
        measure(args.measure, args.samples, args.batch_size)
        return 0
    results = []
    print("| model | ranks x threads | epoch (s) | images/s | speed-up | Allreduce | exchanges |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for model_name in args.models.split(","):
        samples = args.samples or EPOCH_SIZES[model_name]
        baseline = None
        for ranks, threads in CONFIGURATIONS:
            result = run_configuration(model_name, ranks, threads, samples, args.batch_size, args.timeout)
            baseline = baseline or result["epoch_s"]
            results.append(result)
            print(
                f"| {model_name} | {ranks} x {threads} | {result['epoch_s']:.1f} | {result['images_per_s']:.0f} | "
                f"{baseline / result['epoch_s']:.2f}x | {result['allreduce_share']:.1%} | "
                f"{result['exchange_share']:.1%} |",
                flush=True,
            )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
