"""``convnp import MODEL.onnx --out MODEL.npz``: an ONNX graph as a convnp model file."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from convnp._optional import require
from convnp.cli.args import positive_float, positive_int
from convnp.cli.errors import EXIT_OK, CLIError
from convnp.interop import from_onnx

__all__ = ["register", "cmd_import"]


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``convnp import`` to the subcommands."""
    parser = commands.add_parser(
        "import",
        help="read an ONNX graph into a convnp model file",
        description=(
            "Read an ONNX graph of 2-D CNN ops (opsets 11-21; exported from PyTorch, Keras, TensorFlow, ...) "
            "into a trainable convnp model and save it as a model file (needs: pip install convnp[onnx]). "
            "An op convnp cannot express is reported with the node's name."
        ),
    )
    parser.add_argument("onnx_file", metavar="MODEL.onnx", help="the ONNX file to read")
    parser.add_argument("--out", metavar="MODEL.npz", default=None, help="where to save (default: MODEL.npz beside it)")
    parser.add_argument(
        "--input-shape",
        type=positive_int,
        nargs="+",
        metavar="SIZE",
        default=None,
        help="per-sample input shape, e.g. 3 32 32 (only for a graph whose input sizes are symbolic)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run the ONNX file in ONNX Runtime on a random batch and compare with the imported model",
    )
    parser.add_argument("--atol", type=positive_float, default=1e-4, help="tolerance of --verify (default 1e-4)")
    parser.set_defaults(handler=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    """``convnp import``: ``convnp.interop.from_onnx``, then ``model.save``; prints the layer table."""
    source = Path(args.onnx_file)
    out = Path(args.out) if args.out is not None else source.with_suffix(".npz")
    model = from_onnx(source, input_shape=None if args.input_shape is None else tuple(args.input_shape))
    if args.verify:
        _verify(model, source, args.atol)
    model.save(out)
    print(model.summary())
    print(f"wrote {out}")
    return EXIT_OK


def _verify(model, source: Path, atol: float) -> None:
    """ONNX Runtime's output on a random batch of 3 against the imported model's; ``CLIError`` beyond ``atol``."""
    ort = require("onnxruntime", "convnp import --verify", "onnx")
    x = np.random.default_rng(0).standard_normal((3, *model.input_shape)).astype(np.float32)
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {session.get_inputs()[0].name: x})
    error = float(np.max(np.abs(model.forward(x) - expected)))
    if not error <= atol:
        raise CLIError(f"ONNX Runtime's output differs from the imported model's by {error:.3g} (tolerance {atol:g})")
    print(f"verified: ONNX Runtime's output and the imported model's differ by at most {error:.2g}")
