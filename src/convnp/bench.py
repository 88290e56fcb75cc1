"""Throughput of convnp against PyTorch on the same networks, in one process.

    python benchmarks/bench_vs_torch.py            (or: convnp bench)
    python benchmarks/bench_vs_torch.py --quick    (a rough look in under a minute)

For each network (``mnist_cnn`` 1x28x28, ``lenet5`` 1x28x28, ``convnet_bn``
3x32x32, ``resnet20`` at 3x32x32 and 1x28x28) both libraries get the same
weights (``convnp.interop.to_torch``). A training step is forward +
softmax cross-entropy + backward + plain SGD update, in float32. The two
libraries are timed alternately (convnp, torch, convnp, torch, ...), each
repeat running for at least ``--seconds`` after a warm-up. Each library's
img/s is the median of its repeats; the ratio is the median of the repeats'
own ratios (convnp's repeat over the torch repeat right after it), because
the speed of a shared machine drifts by 10-20% over a minute and adjacent
repeats see the same drift. The spread of those ratios is printed too.
PyTorch gets as many threads as NumPy's BLAS has.

Also printed: each library's peak RSS for a batch-256 training step
(measured in separate child processes, so neither pays for the other's
imports), the machine's float32 GEMM peak (a 2048x2048 matmul), every
convolution's forward GFLOP/s as a fraction of that peak, and where convnp's
time goes, layer by layer.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info

from convnp._optional import optional
from convnp.models import build_model
from convnp.nn import Conv2D
from convnp.optim import SGD
from convnp.training import train_step

# --quick: 3 networks x 3 measurements x 2 libraries x (warm-up + 3 x 0.25 s) is about 15 s.
QUICK_REPEATS, QUICK_SECONDS = 3, 0.25

NETWORKS = {
    "mnist_cnn": ("mnist_cnn", (1, 28, 28), {}),
    "lenet5": ("lenet5", (1, 28, 28), {}),
    "convnet_bn": ("convnet_bn", (3, 32, 32), {"blocks": 3}),
    "resnet20_cifar": ("resnet20", (3, 32, 32), {}),
    "resnet20_mnist": ("resnet20", (1, 28, 28), {}),
    "resnet18": ("resnet18", (3, 32, 32), {}),
}
# --quick leaves out the 11M-parameter resnet18 (a few seconds per training step at batch 256).
QUICK_NETWORKS = [name for name in NETWORKS if name != "resnet18"]


def blas_threads() -> int:
    """The thread count of NumPy's BLAS (PyTorch is given as many)."""
    counts = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return counts[0] if counts else 1


def gemm_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """float32 GFLOP/s of one large square matmul: the ceiling every conv is measured against."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times) / 1e9


def make_models(network: str, seed: int = 0):
    name, shape, kwargs = NETWORKS[network]
    model = build_model(name, shape, num_classes=10, seed=seed, **kwargs)
    return model, shape


def random_batch(shape, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((batch, *shape), dtype=np.float32), rng.integers(0, 10, batch)


def convnp_train_step(model, batch):
    x, y = batch
    optimizer = SGD(model.parameters(), lr=0.01)
    return lambda: train_step(model, optimizer, x, y, "cross_entropy", 0.0, None)


def convnp_inference(model, batch):
    x, _ = batch
    return lambda: model.forward_layers(x, training=False, keep_caches=False)  # as predict and evaluate run


def torch_train_step(torch, module, batch):
    x, y = (torch.from_numpy(batch[0]), torch.from_numpy(batch[1]))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01)
    module.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(module(x), y)
        loss.backward()
        optimizer.step()

    return step


def torch_inference(torch, module, batch):
    x = torch.from_numpy(batch[0])

    def infer():
        module.eval()
        with torch.inference_mode():
            module(x)

    return infer


def images_per_second(fn, batch_size: int, min_seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while True:
        fn()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return count * batch_size / elapsed


def interleaved(fns: dict, batch_size: int, repeats: int, min_seconds: float) -> dict[str, list[float]]:
    """img/s of each function in every repeat, the functions timed in alternation."""
    for fn in fns.values():  # warm-up: allocations, BLAS thread start-up
        images_per_second(fn, batch_size, min_seconds / 4)
    results = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            results[name].append(images_per_second(fn, batch_size, min_seconds))
    return results


def paired_ratio(mine: list[float], theirs: list[float]) -> tuple[float, float, float]:
    """Median, lowest and highest of the per-repeat ratios ``mine[i] / theirs[i]``."""
    if len(mine) != len(theirs) or not mine:
        raise ValueError(f"paired_ratio: expected two equally long, non-empty lists, got {len(mine)} and {len(theirs)}")
    ratios = [a / b for a, b in zip(mine, theirs)]
    return statistics.median(ratios), min(ratios), max(ratios)


def layer_breakdown(model, batch, steps: int = 5) -> list[tuple[str, float, float]]:
    """Milliseconds per step of ``model.execution_plan()`` for forward (training mode) and backward.

    Steps that run together show up as one row: "MaxPool2D -> ReLU" (a ReLU
    run after its max pooling), "Conv2D -> MaxPool2D -> ReLU" (a convolution
    and its 2x2 max pooling computed in one pass). The batch runs as one
    piece, each op splitting it across cores; a real training step runs whole-
    pass shards (``Sequential.train_pass``), which this view does not separate.
    """
    from convnp.backend.threads import single_threaded_blas
    from convnp.functional.losses import softmax_cross_entropy

    x, y = batch
    plan = model.execution_plan()
    forward = np.zeros(len(plan))
    backward = np.zeros(len(plan))
    with single_threaded_blas():  # as in a real step (the engine's passes)
        for step in range(steps + 1):
            values = {0: x}  # the engine's numbered values: a graph's steps read the values they name
            times_f, times_b = [], []
            for plan_step in plan:
                inputs = [values[value] for value in plan_step.inputs]
                start = time.perf_counter()
                values[plan_step.output] = plan_step.forward(inputs if len(inputs) > 1 else inputs[0], training=True)
                times_f.append(time.perf_counter() - start)
            _, grad = softmax_cross_entropy(values[plan.output], y)
            grads = {plan.output: grad}
            for index in range(len(plan) - 1, -1, -1):
                plan_step = plan[index]
                needed = any(value != 0 for value in plan_step.inputs)  # the model input needs no gradient
                start = time.perf_counter()
                input_grads = plan_step.backward(grads.pop(plan_step.output), input_grad=needed)
                times_b.append(time.perf_counter() - start)
                if needed:
                    input_grads = input_grads if len(plan_step.inputs) > 1 else [input_grads]
                    for value, value_grad in zip(plan_step.inputs, input_grads):
                        grads[value] = value_grad if value not in grads else grads[value] + value_grad
            if step:  # the first pass is a warm-up
                forward += times_f
                backward += times_b[::-1]
    names = [repr(plan_step) for plan_step in plan]
    return [(name, 1e3 * f / steps, 1e3 * b / steps) for name, f, b in zip(names, forward, backward)]


def conv_gflops(model, batch, repeats: int = 10) -> list[tuple[str, float]]:
    """Forward GFLOP/s of every Conv2D (2 * N * H_out * W_out * F * C/G * KH * KW flops), inference mode.

    Each convolution is timed on its own input, found by running the plan's steps in order.
    """
    x, _ = batch
    results = []
    values = {0: x}
    for step in model.execution_plan():
        inputs = [values[value] for value in step.inputs]
        layer = step.layers[0]  # a fused step starts with its convolution
        if isinstance(layer, Conv2D):
            _, h_out, w_out = layer.output_shape
            flops = 2 * len(x) * h_out * w_out * layer.out_channels * layer.weight.data[0].size
            layer.forward(inputs[0])
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                layer.forward(inputs[0])
                times.append(time.perf_counter() - start)
            results.append((layer.short_repr(), flops / statistics.median(times) / 1e9))
        values[step.output] = step.forward(inputs if len(inputs) > 1 else inputs[0], training=False)
    return results


def peak_rss_mb(library: str, network: str, batch_size: int) -> float | None:
    """Peak resident memory of a child process that imports only ``library`` and trains a few steps."""
    command = [sys.executable, "-m", "convnp.bench", "--rss-child", library, "--networks", network,
               "--batch", str(batch_size)]  # fmt: skip
    try:
        output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout
        return json.loads(output.strip().splitlines()[-1])["peak_rss_mb"]
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError):
        return None


def rss_child(library: str, network: str, batch_size: int) -> None:
    model, shape = make_models(network)
    batch = random_batch(shape, batch_size)
    if library == "convnp":
        step, infer = convnp_train_step(model, batch), convnp_inference(model, batch)
    else:
        import torch

        from convnp.interop import to_torch

        torch.set_num_threads(blas_threads())
        module = to_torch(model)
        step, infer = torch_train_step(torch, module, batch), torch_inference(torch, module, batch)
    for _ in range(5):
        step()
        infer()
    print(json.dumps({"peak_rss_mb": peak_rss_of_this_process()}))


def peak_rss_of_this_process() -> float:
    """Peak resident memory in MB. VmHWM starts afresh at exec (ru_maxrss would include the parent's)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(headers: list[str], rows: list[list]) -> None:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if index == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convnp bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--networks",
        default=None,
        help=f"comma-separated, from {list(NETWORKS)} (default: all; with --quick all but resnet18)",
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement (median)")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum seconds per repeat")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_REPEATS} repeats of {QUICK_SECONDS} s, without the peak-memory processes and the per-layer "
        "tables: a rough look in under a minute",
    )
    parser.add_argument("--no-torch", action="store_true", help="time convnp alone")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=256, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child, args.networks, args.batch)
        return 0
    if args.networks is None:
        args.networks = ",".join(QUICK_NETWORKS if args.quick else NETWORKS)
    details = not args.quick
    if args.quick:
        args.repeats, args.seconds, args.no_rss = QUICK_REPEATS, QUICK_SECONDS, True
    networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = [n for n in networks if n not in NETWORKS]
    if unknown:
        parser.error(f"unknown networks {unknown}; choose from {list(NETWORKS)}")

    torch = None if args.no_torch else optional("torch")
    if torch is None and not args.no_torch:
        print("PyTorch is not installed: timing convnp alone (pip install torch for the comparison).")
    threads = blas_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    peak = gemm_peak_gflops()
    print(f"numpy {np.__version__}, BLAS threads {threads}"
          + (f", torch {torch.__version__} with {torch.get_num_threads()} threads" if torch else ""))  # fmt: skip
    print(f"float32 GEMM peak (2048x2048 matmul): {peak:.1f} GFLOP/s")
    print(f"median of {args.repeats} interleaved repeats of >= {args.seconds:g} s each; img/s, higher is better;")
    print("ratio: median of the repeats' convnp/torch ratios (range: lowest-highest)\n")

    rows = []
    tables = {}
    for network in networks:
        model, shape = make_models(network)
        module = None
        if torch is not None:
            from convnp.interop import to_torch

            module = to_torch(model)
        for label, batch_size, kind in (("train B=64", 64, "train"), ("train B=256", 256, "train"),
                                        ("infer B=256", 256, "infer")):  # fmt: skip
            batch = random_batch(shape, batch_size)
            fns = {"convnp": (convnp_train_step if kind == "train" else convnp_inference)(model, batch)}
            if module is not None:
                fns["torch"] = (torch_train_step if kind == "train" else torch_inference)(torch, module, batch)
            speeds = interleaved(fns, batch_size, args.repeats, args.seconds)
            speed = {name: statistics.median(values) for name, values in speeds.items()}
            ratio, low, high = (math.nan,) * 3
            if "torch" in speeds:
                ratio, low, high = paired_ratio(speeds["convnp"], speeds["torch"])
            rows.append([network, label, f"{speed['convnp']:.0f}", f"{speed.get('torch', math.nan):.0f}",
                         f"{ratio:.2f}", f"{low:.2f}-{high:.2f}"])  # fmt: skip
            print_partial(rows[-1])
        if details:
            breakdown = layer_breakdown(model, random_batch(shape, 64))
            tables[network] = (breakdown, conv_gflops(model, random_batch(shape, 256)))

    print()
    print_table(["network", "measurement", "convnp img/s", "torch img/s", "ratio", "ratio range"], rows)

    if not args.no_rss:
        print("\npeak RSS, batch-256 training step, separate processes:")
        rss_rows = []
        for network in networks:
            mine = peak_rss_mb("convnp", network, 256)
            theirs = peak_rss_mb("torch", network, 256) if torch is not None else None
            fmt = lambda v: "n/a" if v is None else f"{v:.0f} MB"  # noqa: E731
            ratio = f"{mine / theirs:.2f}" if mine and theirs else "n/a"
            rss_rows.append([network, fmt(mine), fmt(theirs), ratio])
        print_table(["network", "convnp", "torch", "ratio"], rss_rows)

    for network, (breakdown, gflops) in tables.items():
        print(f"\n{network}: convolution forward at batch 256 (inference), share of the GEMM peak")
        print_table(["layer", "GFLOP/s", "of peak"], [[n, f"{g:.1f}", f"{g / peak:.0%}"] for n, g in gflops])
        total = sum(f + b for _, f, b in breakdown)
        print(f"\n{network}: where a batch-64 training step goes (convnp, ms; SGD update and loss not included)")
        print_table(["layer", "forward", "backward", "share"],
                    [[n, f"{f:.2f}", f"{b:.2f}", f"{(f + b) / total:.0%}"] for n, f, b in breakdown])  # fmt: skip
    return 0


def print_partial(row: list) -> None:
    print(f"  {row[0]:<10} {row[1]:<12} convnp {row[2]:>6}  torch {row[3]:>6}  ratio {row[4]} ({row[5]})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
