"""The ``convnp`` command: train, evaluate, predict, explain, summary, gradcheck, export, bench.

    convnp train                      # a CNN on the embedded 8x8 digits, in seconds
    convnp train --dataset fashion-mnist --out runs/fashion
    convnp train --resume runs/fashion --epochs 30
    convnp train --images photos/ --out runs/pets   # your own images, one sub-folder per class
    convnp evaluate runs/fashion/model.npz --dataset fashion-mnist
    convnp predict runs/fashion/model.npz shoe.png --top 3
    convnp explain runs/fashion shoe.png --out shoe-explained.png   # Grad-CAM and feature maps
    convnp summary --model convnet_bn --dataset cifar10
    convnp gradcheck
    convnp export runs/fashion/model.npz --onnx fashion.onnx
    convnp bench

``main(argv)`` returns the exit status: 0 on success, 1 for an error with a
one-line message (missing or damaged model file, dataset not found, ...), 2 for
bad arguments, 130 after Ctrl-C. ``RECIPES`` holds the per-dataset defaults of
``convnp train``. Under ``mpiexec`` an error or Ctrl-C that one rank meets
alone is printed with the rank's number and ends the whole job (MPI Abort);
one that every rank meets together is printed once.

One module per command group, each adding its subcommands with ``register``:
``train`` (train), ``inference`` (evaluate, predict; image files in ``images``),
``explain`` (explain), ``tools`` (summary, gradcheck with its cases in ``gradcheck_suite``, export,
bench). ``args`` holds the argparse value types, ``recipes`` the training
recipes and learning-rate schedules, ``data_sources`` what train and evaluate
read (a dataset or an image folder), ``input_warnings`` the warnings on inputs
unlike the training data, ``model_file`` the reading of a saved model,
``errors`` the exit statuses.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from convnp import distributed
from convnp._version import __version__
from convnp.checks import InputWarning
from convnp.cli import explain, inference, onnx_import, tools, train
from convnp.cli.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, CLIError, UsageError
from convnp.cli.gradcheck_suite import gradcheck_cases
from convnp.cli.recipes import OPTIMIZER_DEFAULTS, RECIPES, SCHEDULES

__all__ = ["RECIPES", "OPTIMIZER_DEFAULTS", "SCHEDULES", "main", "build_parser", "gradcheck_cases"]

# What a user can cause is reported as one line instead of a traceback: OSError covers a
# missing file and DatasetNotFoundError/DownloadError, ValueError covers ModelFileError,
# ChecksumError and bad shapes, FloatingPointError covers TrainingDivergedError, ImportError
# a missing optional package.
_EXPECTED_ERRORS = (CLIError, OSError, ValueError, TypeError, ImportError, FloatingPointError)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``convnp`` command and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="convnp",
        description="convnp: convolutional neural networks from scratch in NumPy.",
        epilog="Run 'convnp COMMAND --help' for a command's options. Quick start: 'convnp train'.",
    )
    parser.add_argument("--version", action="version", version=f"convnp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    train.register(commands)
    inference.register(commands)
    explain.register(commands)
    tools.register(commands)
    onnx_import.register(commands)
    return parser


def _one_line_warnings(command: str, show_otherwise):
    """A ``warnings.showwarning`` that prints an ``InputWarning`` as one line: ``convnp COMMAND: warning: ...``."""

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, InputWarning):
            print(f"convnp {command}: warning: {message}", file=sys.stderr, flush=True)
        else:
            show_otherwise(message, category, filename, lineno, file, line)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``convnp`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and args.command != "bench":  # only bench passes options on (to convnp.bench)
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exit_:  # --help, --version, or an argparse error (status 2)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    args.extra = extra
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(args.command, warnings.showwarning)
            return args.handler(args)
    except KeyboardInterrupt as error:
        return _failed("\nconvnp: interrupted", error, EXIT_INTERRUPTED)
    except UsageError as error:
        # The same arguments give every MPI rank the same usage error.
        return _failed(f"convnp {args.command}: error: {error}", distributed.on_every_rank(error), EXIT_USAGE)
    except _EXPECTED_ERRORS as error:
        if os.environ.get("CONVNP_TRACEBACK"):
            raise
        return _failed(f"convnp {args.command}: error: {error}", error, EXIT_ERROR)


def _failed(message: str, error: BaseException, status: int) -> int:
    """Print ``message`` and return ``status``; under MPI, an error of one rank alone also ends the job."""
    try:
        # Without a launcher this starts nothing; with one and no mpi4py there is no job to end.
        communicator = distributed.world() if distributed.launched_size() != 1 else None
    except ImportError:
        communicator = None
    if communicator is None:
        print(message, file=sys.stderr)
        return status
    return distributed.report_failure(communicator, message, error, status)
