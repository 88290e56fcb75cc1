"""The speed machinery, apart from the math: how a batched op is spread over cores and chunks.

``convnp.functional`` writes each op for one chunk of images, as the formula
reads; this package runs such a function over a batch:

- ``threads``: one slice of the batch per CPU core, each with single-threaded
  BLAS (controlled through threadpoolctl), in plain Python threads;
- ``batched``: ``run_batched``, ``sum_batched`` and ``map_batched``, the one
  helper every op uses: slices, then cache-sized chunks within each slice, and
  per-chunk results summed (or listed) in a fixed order (reproducible run to run);
- ``workspace``: per-thread scratch buffers reused from call to call;
- ``reductions``: column sums of tall matrices (bias gradients, statistics).

Nothing here knows of layers, models or files.
"""

from convnp.backend.batched import images_per_chunk, map_batched, run_batched, sum_batched
from convnp.backend.reductions import column_sum, ordered_sum
from convnp.backend.threads import get_num_threads, set_num_threads, single_threaded_blas
from convnp.backend.workspace import scratch

__all__ = [
    "run_batched", "sum_batched", "map_batched", "images_per_chunk", "column_sum", "ordered_sum",
    "get_num_threads", "set_num_threads", "single_threaded_blas", "scratch",
]  # fmt: skip
