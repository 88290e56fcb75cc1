"""im2col against Winograd F(2x2, 3x3), per 3x3 stride-1 layer shape of the built-in networks.

    python benchmarks/winograd_layers.py                       # every shape, batch 64 and 256, 7 pairs
    python benchmarks/winograd_layers.py --repeats 1 --size 8 --batches 2   # a smoke check (no timing value)

The layer shapes are those of resnet20 at 3x32x32 and 1x28x28, convnet_bn
(width 32) at 3x32x32 and resnet18 at 3x32x32: every Conv2D with a 3x3 kernel,
stride 1, dilation 1 and one group, each distinct (input channels, size,
filters, padding) once. For each shape and batch size, in float32, three ops
are timed for both algorithms:

    forward         the layer's forward pass
    weight grad     backward with input_grad=False (what a network's first layer runs)
    full backward   backward with dx and dweight (every other layer)

and "input grad" is full backward minus weight grad (per pair). Each repeat is a
pair, im2col then Winograd in alternating order, so both see the same drift of
the machine; the table gives the median times (ms) and the median of the
per-pair ratios Winograd / im2col (below 1: Winograd is faster). The last
column, forward + full backward, is what a training step spends in the layer.
Inputs and output gradients are channels-last in memory, as between the layers
of a network. Threads as the library runs them (``--threads``, default 2: one
slice of the batch per core, single-threaded BLAS in each). Needs an idle
machine; before timing, each shape checks that both algorithms agree.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

NETWORKS = [  # (label, builder, input shape, options)
    ("resnet20 3x32x32", "resnet20", (3, 32, 32), {}),
    ("resnet20 1x28x28", "resnet20", (1, 28, 28), {}),
    ("convnet_bn 3x32x32", "convnet_bn", (3, 32, 32), {"width": 32}),
    ("resnet18 3x32x32", "resnet18", (3, 32, 32), {}),
]
OPS = ("forward", "weight grad", "input grad", "full backward", "fwd + bwd")


def layer_shapes(size: int | None) -> dict[tuple, list[str]]:
    """Distinct (C, H, W, F, pads) of the networks' Winograd-eligible convolutions -> the networks using them."""
    from convnp.functional.geometry import normalize_padding
    from convnp.models import build_model
    from convnp.nn import Conv2D

    shapes: dict[tuple, list[str]] = {}
    for label, builder, input_shape, options in NETWORKS:
        if size is not None:
            input_shape = (input_shape[0], size, size)
        model = build_model(builder, input_shape, seed=0, **options)
        for layer in model.layers:
            for part in layer.self_and_sublayers():
                if type(part) is not Conv2D or part.kernel_size != (3, 3) or part.stride != (1, 1):
                    continue
                if part.dilation != (1, 1) or part.groups != 1:
                    continue
                channels, height, width = part.input_shape
                pads = normalize_padding(part.padding, (3, 3), (1, 1), (1, 1), (height, width))
                key = (channels, height, width, part.out_channels, pads)
                users = shapes.setdefault(key, [])
                if label not in users:
                    users.append(label)
    return shapes


def channels_last(rng: np.random.Generator, shape: tuple[int, int, int, int]) -> np.ndarray:
    """A float32 (N, C, H, W) array stored channels-last, as a network's layers hand them over."""
    n, c, h, w = shape
    return rng.standard_normal((n, h, w, c), dtype=np.float32).transpose(0, 3, 1, 2)


def timed(fn, *args, **kwargs) -> float:
    """Seconds one call ``fn(*args, **kwargs)`` takes."""
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def measure(shape: tuple, batch: int, repeats: int, rng: np.random.Generator) -> dict[str, tuple[float, float, float]]:
    """op -> (median im2col ms, median Winograd ms, median per-pair ratio Winograd / im2col)."""
    from convnp.nn.conv import CONV_ALGORITHMS

    channels, height, width, filters, pads = shape
    padding = ((pads[0], pads[1]), (pads[2], pads[3]))
    x = channels_last(rng, (batch, channels, height, width))
    weight = (rng.standard_normal((filters, channels, 3, 3)) * np.sqrt(2 / (9 * channels))).astype(np.float32)
    bias = None  # the networks' 3x3 convolutions sit before batch norm, without a bias
    outputs, caches = {}, {}
    for name, (forward, _) in CONV_ALGORITHMS.items():
        outputs[name], caches[name] = forward(x, weight, bias, 1, padding)  # warm-up and check
    dout = channels_last(rng, outputs["im2col"].shape)
    scale = float(np.abs(outputs["im2col"]).max())
    if not np.allclose(outputs["winograd"], outputs["im2col"], rtol=0, atol=1e-4 * scale):
        raise AssertionError(f"shape {shape}: the two algorithms disagree")
    for name, (_, backward) in CONV_ALGORITHMS.items():
        backward(dout, caches[name])

    samples = {name: {op: [] for op in OPS} for name in CONV_ALGORITHMS}
    for repeat in range(repeats):
        order = list(CONV_ALGORITHMS) if repeat % 2 == 0 else list(reversed(CONV_ALGORITHMS))
        for name in order:
            forward, backward = CONV_ALGORITHMS[name]
            cache = caches[name]
            times = samples[name]
            times["forward"].append(timed(forward, x, weight, bias, 1, padding))
            times["weight grad"].append(timed(backward, dout, cache, input_grad=False))
            times["full backward"].append(timed(backward, dout, cache))
            times["input grad"].append(times["full backward"][-1] - times["weight grad"][-1])
            times["fwd + bwd"].append(times["forward"][-1] + times["full backward"][-1])
    result = {}
    for op in OPS:
        im2col, winograd = samples["im2col"][op], samples["winograd"][op]
        ratios = [w / i if i > 0 else float("nan") for w, i in zip(winograd, im2col)]
        result[op] = (1e3 * statistics.median(im2col), 1e3 * statistics.median(winograd), statistics.median(ratios))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="64,256", help="comma-separated batch sizes (default 64,256)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved pairs per measurement (default 7)")
    parser.add_argument("--threads", type=int, default=2, help="slices of the batch, one per core (default 2)")
    parser.add_argument("--size", type=int, default=None, help="build the networks at SIZE x SIZE (smoke checks)")
    args = parser.parse_args(argv)

    import convnp

    convnp.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    rng = np.random.default_rng(0)
    shapes = layer_shapes(args.size)
    print(f"float32, {args.threads} threads, median of {args.repeats} interleaved pairs; "
          "ms im2col / ms winograd (ratio winograd / im2col; below 1: winograd faster)")  # fmt: skip
    header = f"{'C -> F':>11} {'H x W':>7} {'pads':>12} {'N':>4} " + " ".join(f"{op:>25}" for op in OPS)
    print(header)
    print("-" * len(header))
    for shape, users in shapes.items():
        channels, height, width, filters, pads = shape
        for batch in batches:
            result = measure(shape, batch, args.repeats, rng)
            cells = " ".join(f"{f'{i:.2f}/{w:.2f} ({r:.2f})':>25}" for i, w, r in (result[op] for op in OPS))
            print(f"{f'{channels} -> {filters}':>11} {f'{height}x{width}':>7} {str(pads):>12} {batch:>4} {cells}")
        print(f"{'':>11} used by: {', '.join(users)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
