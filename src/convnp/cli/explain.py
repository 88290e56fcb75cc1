"""``convnp explain MODEL IMAGE --out FILE.png``: which part of an image drove a prediction.

Prints the prediction as ``convnp predict`` does and writes
``convnp.plots.plot_explanation``: the Grad-CAM heat maps of the top classes
over the image, and every convolution block's feature maps (docs/explain.md).
"""

from __future__ import annotations

import argparse

import numpy as np

from convnp import plots
from convnp.cli.args import add_model_file, positive_int
from convnp.cli.errors import EXIT_OK, CLIError
from convnp.cli.inference import prediction_line, read_inputs
from convnp.cli.input_warnings import quiet_python_warnings
from convnp.cli.model_file import load_model
from convnp.plots.gradcam import target_layer

__all__ = ["register", "cmd_explain"]


def _layer(text: str) -> int | str:
    """A layer's index in ``model.layers`` (an integer, negative from the end) or its name."""
    try:
        return int(text)
    except ValueError:
        return text


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``convnp explain`` to the subcommands."""
    parser = commands.add_parser(
        "explain",
        help="show which part of an image drove a prediction (Grad-CAM) and the feature maps, as a PNG",
        description=(
            "Classify one image and write a PNG explaining it: the Grad-CAM heat map (Selvaraju et al. "
            "2017) of each of the top classes laid over the image (red: the evidence for that class), "
            "taken at the model's last convolution, and below, the feature maps of every convolution "
            "block. Needs matplotlib (pip install convnp[plots]); PNG/JPEG/BMP need Pillow."
        ),
    )
    add_model_file(parser)
    parser.add_argument("image", metavar="IMAGE", help="a PNG/JPEG/BMP image, or a .npy array of one image")
    parser.add_argument("--out", metavar="FILE.png", required=True, help="the PNG to write")
    parser.add_argument("--top", type=positive_int, default=3, help="explain the K most probable classes (default 3)")
    parser.add_argument("--invert", action="store_true", help="use 1 - pixel (dark drawing on a light background)")
    parser.add_argument(
        "--layer",
        type=_layer,
        default=None,
        help="explain the output maps of this layer (index in the summary, or name) instead of the last convolution",
    )
    parser.add_argument(
        "--max-maps", type=positive_int, default=8, help="feature maps drawn per convolution block (default 8)"
    )
    parser.set_defaults(handler=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    """``convnp explain MODEL IMAGE --out FILE.png``: the prediction, then the explanation written to FILE.png."""
    plots.require_matplotlib()  # before any work: without matplotlib there is nothing to write
    model, _ = load_model(args.model)
    ((file, batch),) = read_inputs([args.image], model, args.invert)
    if len(batch) != 1:
        raise CLIError(f"{file} holds {len(batch)} images; explain takes one (save one image, (C, H, W))")
    top = min(args.top, int(np.prod(model.output_shape)))
    with quiet_python_warnings():
        probabilities = model.predict(batch)[0]
    print(prediction_line(file, probabilities, model.class_names, top))
    try:
        with model.logits_view(True) as stop:
            target = target_layer(model, args.layer, stop)
    except ValueError as error:
        raise CLIError(str(error)) from None
    path = plots.plot_explanation(model, batch[0], args.out, top=top, layer=target, max_maps=args.max_maps)
    _, height, width = model.layers[target].output_shape
    print(f"wrote {path} (Grad-CAM at {model.layers[target].label}, {height}x{width} maps)")
    return EXIT_OK
