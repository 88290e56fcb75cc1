"""A per-epoch progress bar: tqdm when installed, one plain line per epoch otherwise."""

from __future__ import annotations

import sys
import time

from convnp._optional import optional


class EpochProgress:
    """Shows batches done, running loss and accuracy, and images per second.

    ``verbose``: 0 prints nothing, 1 a live bar (tqdm; one line per epoch
    without it), 2 one line per epoch. The line goes to stderr.
    """

    def __init__(self, epoch: int, epochs: int, total_samples: int, verbose: int) -> None:
        self.verbose = verbose
        self.description = f"Epoch {epoch + 1}/{epochs}"
        self.start = time.perf_counter()
        self.bar = None
        if verbose == 1:
            tqdm_auto = optional("tqdm.auto")
            if tqdm_auto is None:
                self.verbose = 2
            else:
                self.bar = tqdm_auto.tqdm(
                    total=total_samples, desc=self.description, unit="img", leave=True, dynamic_ncols=True
                )

    def update(self, samples: int, loss: float, accuracy: float) -> None:
        """``samples`` more images done; ``loss`` and ``accuracy`` are the epoch's running means."""
        if self.bar is not None:
            elapsed = max(time.perf_counter() - self.start, 1e-9)
            self.bar.update(samples)
            self.bar.set_postfix(
                loss=f"{loss:.4f}", acc=f"{accuracy:.4f}", img_s=f"{self.bar.n / elapsed:.0f}", refresh=False
            )

    def close(self, logs: dict) -> None:
        """End the bar (or print the line) with ``logs``: every value but None and ``seconds``."""
        summary = "  ".join(
            f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}"
            for key, value in logs.items()
            if value is not None and key != "seconds"
        )
        if self.bar is not None:
            self.bar.set_postfix_str(summary, refresh=True)
            self.bar.close()
        elif self.verbose:
            print(f"{self.description}  {summary}  ({logs['seconds']:.1f}s)", file=sys.stderr, flush=True)
