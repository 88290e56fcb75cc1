"""``convnp summary``, ``convnp gradcheck``, ``convnp export`` and ``convnp bench``."""

from __future__ import annotations

import argparse
import time

from convnp.cli.args import add_model_file, dataset_name, model_name, positive_float, positive_int
from convnp.cli.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, UsageError
from convnp.cli.gradcheck_suite import gradcheck_cases
from convnp.cli.model_file import load_model
from convnp.cli.recipes import RECIPES
from convnp.data import DATASETS
from convnp.gradcheck import gradcheck
from convnp.interop import to_onnx
from convnp.models import build_model

__all__ = ["register", "cmd_summary", "cmd_gradcheck", "cmd_export", "cmd_bench"]


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``convnp summary``, ``gradcheck``, ``export`` and ``bench`` to the subcommands."""
    _add_summary(commands)
    _add_gradcheck(commands)
    _add_export(commands)
    _add_bench(commands)


def _add_summary(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "summary",
        help="layer table of a model builder or a saved model",
        description="Print Sequential.summary(): layers, output shapes and parameter counts.",
    )
    parser.add_argument("model_file", metavar="MODEL_FILE", nargs="?", help="a saved model (instead of --model)")
    parser.add_argument(
        "--model",
        type=model_name,
        default=None,
        help="builder name (default: the dataset's recipe model, or mnist_cnn)",
    )
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument(
        "--dataset", type=dataset_name, default=None, help="take the input shape and classes from this dataset"
    )
    shape.add_argument(
        "--input-shape",
        type=positive_int,
        nargs=3,
        metavar=("C", "H", "W"),
        default=None,
        help="per-sample input shape",
    )
    parser.add_argument("--num-classes", type=positive_int, default=None, help="number of outputs (default 10)")
    parser.set_defaults(handler=cmd_summary)


def _add_gradcheck(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "gradcheck",
        help="check every layer's backward pass against finite differences",
        description=(
            "Build a tiny float64 instance of every layer type (and a small Sequential), compare "
            "each analytic gradient (input and parameters) with central differences, and print "
            "the max relative error per tensor. Exit status 1 when any error exceeds --threshold."
        ),
    )
    parser.add_argument(
        "--threshold", type=positive_float, default=1e-7, help="largest relative error that passes (default 1e-7)"
    )
    parser.set_defaults(handler=cmd_gradcheck)


def _add_export(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="write a saved model as an ONNX graph",
        description="Export a saved model to ONNX (needs: pip install convnp[onnx]).",
    )
    add_model_file(parser)
    parser.add_argument("--onnx", metavar="OUT", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=positive_int, default=17, help="ONNX opset version (default 17)")
    parser.set_defaults(handler=cmd_export)


def _add_bench(commands: argparse._SubParsersAction) -> None:
    # No options of its own (not even -h): everything after "bench" goes to the benchmark.
    parser = commands.add_parser(
        "bench",
        add_help=False,
        help="training and inference throughput (vs PyTorch when available); see 'convnp bench -h'",
    )
    parser.set_defaults(handler=cmd_bench)


def cmd_summary(args: argparse.Namespace) -> int:
    """``convnp summary``: the layer table of a saved model or of a builder."""
    if args.model_file is not None:
        if args.model or args.dataset or args.input_shape:
            raise UsageError("give either MODEL_FILE or --model/--dataset/--input-shape, not both")
        model, _ = load_model(args.model_file)
        print(model.summary())
        return EXIT_OK
    recipe = RECIPES.get(args.dataset) if args.dataset else None
    name = args.model or (recipe["model"] if recipe else "mnist_cnn")
    options = dict(recipe["model_options"]) if recipe and recipe["model"] == name else {}
    if args.dataset:
        info = DATASETS[args.dataset]
        shape, classes = info.input_shape, info.num_classes
    else:
        shape, classes = tuple(args.input_shape or (1, 28, 28)), 10
    model = build_model(name, input_shape=shape, num_classes=args.num_classes or classes, seed=0, **options)
    print(f"{name}{'(' + ', '.join(f'{k}={v}' for k, v in options.items()) + ')' if options else ''}")
    print(model.summary())
    return EXIT_OK


def cmd_gradcheck(args: argparse.Namespace) -> int:
    """``convnp gradcheck``: a PASS/FAIL table of every layer's gradients."""
    started = time.perf_counter()
    rows = [("Layer", "Mode", "Tensor", "Max rel. error", "Result")]
    failures = 0
    for description, target, x, training in gradcheck_cases():
        mode = "train" if training else "eval"
        try:
            errors = gradcheck(target, x, training=training)
        except Exception as error:  # report a crashing layer as a failure, keep checking the rest
            rows.append((description, mode, "-", f"{type(error).__name__}: {error}", "FAIL"))
            failures += 1
            continue
        for tensor, value in errors.items():
            passed = value <= args.threshold
            failures += not passed
            rows.append((description, mode, tensor, f"{value:.2e}", "PASS" if passed else "FAIL"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))
    checked = len(rows) - 1
    verdict = "all passed" if not failures else f"{failures} FAILED"
    print(
        f"\n{checked} gradients checked in float64 (threshold {args.threshold:g}): {verdict} "
        f"({time.perf_counter() - started:.1f} s)"
    )
    return EXIT_OK if not failures else EXIT_ERROR


def cmd_export(args: argparse.Namespace) -> int:
    """``convnp export MODEL --onnx OUT``: write the model as ONNX via ``convnp.interop.to_onnx``."""
    model, _ = load_model(args.model)
    to_onnx(model, args.onnx, opset=args.opset)  # without onnx: its ImportError names the extra
    print(f"wrote {args.onnx} (ONNX opset {args.opset})")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    """``convnp bench``: ``convnp.bench.main`` with every option after ``bench``."""
    # Imported here, not with the other commands: convnp.bench uses the POSIX-only resource
    # module, and every other command must keep working where that is missing.
    from convnp import bench

    try:
        return int(bench.main(list(args.extra)) or 0)
    except SystemExit as exit_:  # the benchmark's own argument parser: -h or an error
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
