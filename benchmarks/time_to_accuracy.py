"""Minutes to reach a test accuracy, from the run folders of ``convnp train``.

    python benchmarks/time_to_accuracy.py \\
        --run "convnet_bn (default recipe)" docs/results/fashion-mnist-history.json 999 \\
        --run "resnet (fashion-mnist-resnet)" runs/fashion-resnet/history.json 3550 \\
        --plot docs/results/fashion-mnist-time-to-accuracy.png

Each ``--run LABEL HISTORY_JSON WALL_SECONDS`` names a run's history.json and the
wall time its summary line printed. ``history["seconds"]`` holds each epoch's
training time; the rest of the wall time (loading the data, evaluating the test
split after each epoch, saving, drawing) is spread evenly over the epochs, so
the minutes at epoch k are

    (seconds[0] + ... + seconds[k-1] + k * (wall - sum(seconds)) / epochs) / 60

Prints a Markdown table (minutes until the test accuracy after an epoch first
reaches 92, 93, 94 and 95%; "not reached" otherwise) and, with ``--plot``,
draws test accuracy against minutes for every run.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

THRESHOLDS = (0.92, 0.93, 0.94, 0.95)


def minutes_per_epoch(history: dict, wall_seconds: float) -> np.ndarray:
    """Minutes since the start at the end of each epoch (see the module docstring)."""
    seconds = np.asarray(history["seconds"], dtype=float)
    overhead = max(wall_seconds - seconds.sum(), 0.0) / len(seconds)
    return np.cumsum(seconds + overhead) / 60.0


def first_reached(accuracy: np.ndarray, minutes: np.ndarray, threshold: float) -> str:
    reached = np.nonzero(accuracy >= threshold)[0]
    if len(reached) == 0:
        return "not reached"
    epoch = reached[0]
    return f"{minutes[epoch]:.1f} (epoch {epoch + 1})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", nargs=3, action="append", metavar=("LABEL", "HISTORY_JSON", "WALL_SECONDS"),
                        required=True)  # fmt: skip
    parser.add_argument("--plot", default=None, help="PNG of test accuracy against minutes")
    args = parser.parse_args(argv)

    curves = []
    header = " | ".join(f"{t:.0%}" for t in THRESHOLDS)
    print(f"| run | {header} | final | wall time |")
    print("|---" * (len(THRESHOLDS) + 3) + "|")
    for label, path, wall in args.run:
        with open(path, encoding="utf-8") as file:
            history = json.load(file)
        accuracy = np.asarray(history["val_accuracy"], dtype=float)
        minutes = minutes_per_epoch(history, float(wall))
        cells = " | ".join(first_reached(accuracy, minutes, t) for t in THRESHOLDS)
        print(f"| {label} | {cells} | {accuracy[-1]:.2%} | {float(wall) / 60:.1f} min |")
        curves.append((label, minutes, accuracy))

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, ax = plt.subplots(figsize=(7, 4.5))
        for label, minutes, accuracy in curves:
            ax.plot(minutes, accuracy * 100, marker="o", markersize=3, label=label)
        for threshold in THRESHOLDS:
            ax.axhline(threshold * 100, color="grey", linewidth=0.6, linestyle=":")
        ax.set_xlabel("minutes since the start (2 cores)")
        ax.set_ylabel("test accuracy after the epoch (%)")
        ax.set_ylim(85, 96.5)
        ax.grid(True, alpha=0.3)
        ax.legend()
        figure.tight_layout()
        figure.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
