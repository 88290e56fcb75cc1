"""Throughput of two convnp source trees, timed in alternating processes (an A/B of a code change).

    git worktree add /tmp/old <commit>
    python benchmarks/ab_trees.py /tmp/old/src src [pairs] [network] [batch] [train|infer]

Each measurement is a fresh process that imports convnp from the given ``src``
folder, warms up, and counts training steps (forward, loss, backward, SGD) or
inference passes for 3 s. Old and new alternate, so both see the same drift of a
shared machine; the result is the median of the per-pair ratios new / old, with
their range. convnp alone is timed (no PyTorch in the process).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
from convnp.models import build_model
from convnp.optim import SGD
from convnp.training import train_step

network, batch, mode, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
shapes = {"mnist_cnn": (1, 28, 28), "lenet5": (1, 28, 28), "convnet_bn": (3, 32, 32), "resnet20": (3, 32, 32)}
options = {"blocks": 3} if network == "convnet_bn" else {}
model = build_model(network, shapes[network], num_classes=10, seed=0, **options)
rng = np.random.default_rng(0)
x = rng.random((batch, *shapes[network]), dtype=np.float32)
y = rng.integers(0, 10, batch)
optimizer = SGD(model.parameters(), lr=0.01)


def step():
    if mode == "train":
        train_step(model, optimizer, x, y, "cross_entropy", 0.0, None)
    else:
        model.forward_layers(x, training=False, keep_caches=False)


for _ in range(3):
    step()
count, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    step()
    count += 1
print(json.dumps(count * batch / (time.perf_counter() - start)))
"""


def images_per_second(src: str, network: str, batch: int, mode: str, seconds: float = 3.0) -> float:
    environment = {
        key: value for key, value in os.environ.items() if key not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    }
    environment["PYTHONPATH"] = src
    result = subprocess.run(
        [sys.executable, "-c", CHILD, network, str(batch), mode, str(seconds)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    old, new = argv[0], argv[1]
    pairs = int(argv[2]) if len(argv) > 2 else 6
    network = argv[3] if len(argv) > 3 else "mnist_cnn"
    batch = int(argv[4]) if len(argv) > 4 else 64
    mode = argv[5] if len(argv) > 5 else "train"
    ratios = []
    for index in range(pairs):
        before = images_per_second(old, network, batch, mode)
        after = images_per_second(new, network, batch, mode)
        ratios.append(after / before)
        print(f"pair {index}: old {before:.0f} img/s, new {after:.0f} img/s, new/old {after / before:.3f}", flush=True)
    print(
        f"{network} {mode} B={batch}: median new/old {statistics.median(ratios):.3f} "
        f"(range {min(ratios):.3f}-{max(ratios):.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
