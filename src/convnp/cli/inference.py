"""``convnp evaluate`` and ``convnp predict``: a saved model on a test split, or on image files."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from convnp import distributed
from convnp.cli.args import add_model_file, dataset_name, positive_int
from convnp.cli.data_sources import load_labelled_images
from convnp.cli.errors import EXIT_OK, CLIError, UsageError
from convnp.cli.images import load_array, load_image
from convnp.cli.input_warnings import quiet_python_warnings, warn_flat_images, warn_unfamiliar
from convnp.cli.model_file import load_model
from convnp.data import load as load_dataset
from convnp.plots.explain import class_label

__all__ = ["register", "cmd_evaluate", "cmd_predict", "read_inputs", "prediction_line"]


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``convnp evaluate`` and ``convnp predict`` to the subcommands."""
    _add_evaluate(commands)
    _add_predict(commands)


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="loss and accuracy of a saved model on a test split or a folder of labelled images",
        description=(
            "Print the loss and accuracy of a saved model on the test split of a dataset, or on every "
            "image of a folder with one sub-folder per class (--images)."
        ),
    )
    add_model_file(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--dataset",
        type=dataset_name,
        default=None,
        help="dataset whose test split is used (default: the one the model was trained on by 'convnp train')",
    )
    source.add_argument(
        "--images",
        metavar="DIR",
        default=None,
        help="evaluate on every image in DIR, one sub-folder per class named as the model's classes",
    )
    parser.add_argument("--data-dir", default=None, help="folder holding the dataset files")
    parser.add_argument("--no-download", action="store_true", help="never download")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="inference batch size")
    parser.add_argument(
        "--flip-average",
        action="store_true",
        help="test-time augmentation: average the class probabilities of each image and its mirror image "
        "(for models trained with random flips)",
    )
    parser.set_defaults(handler=cmd_evaluate)


def _add_predict(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "predict",
        help="classify image files (PNG/JPEG/BMP) or .npy arrays",
        description=(
            "Classify images with a saved model. PNG/JPEG/BMP files (needs Pillow) are converted to "
            "grayscale or RGB to match the model, resized to its input size and scaled to [0, 1]. "
            "MNIST-like models expect white digits on a black background (use --invert for dark "
            "ink on white paper). A .npy file holds one image (C, H, W) or (H, W), or a batch "
            "(N, C, H, W) or (N, H, W), as floats in [0, 1] or uint8 pixels."
        ),
    )
    add_model_file(parser)
    parser.add_argument("files", metavar="FILE", nargs="+", help="PNG/JPEG/BMP images or .npy arrays")
    parser.add_argument("--top", type=positive_int, default=1, help="show the K most probable classes")
    parser.add_argument("--invert", action="store_true", help="use 1 - pixel (dark drawing on a light background)")
    parser.set_defaults(handler=cmd_predict)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``convnp evaluate MODEL --dataset NAME``: loss and accuracy on the test split."""
    model, extra = load_model(args.model)
    dataset = args.dataset or (None if args.images else extra.get("dataset"))
    if args.images is not None:
        x_test, y_test = load_labelled_images(args.images, model)
        described = f"the images in {args.images}"
    elif dataset is not None:
        _, (x_test, y_test) = load_dataset(dataset, data_dir=args.data_dir, download=not args.no_download)
        described = f"{dataset} test split"
    elif "images" in extra:
        raise UsageError(
            f"{args.model} was trained on the images in {extra['images']}; pass --images DIR with labelled "
            "images it has not seen (one sub-folder per class)"
        )
    else:
        raise UsageError(f"{args.model} does not record its dataset; pass --dataset or --images")
    if tuple(x_test.shape[1:]) != tuple(model.input_shape):
        raise CLIError(
            f"the model expects inputs {tuple(model.input_shape)} but {dataset} images are {tuple(x_test.shape[1:])}"
        )
    warn_unfamiliar(model, [(described if args.images else f"the {described}", x_test)])
    with quiet_python_warnings():
        result = model.evaluate(x_test, y_test, batch_size=args.batch_size, flip_average=args.flip_average)
    correct = round(result["accuracy"] * len(y_test))
    if not distributed.is_main():  # under mpiexec every rank evaluated its part; rank 0 reports
        return EXIT_OK
    print(
        f"{described} ({len(y_test)} images{', flip-averaged' if args.flip_average else ''}): "
        f"loss {result['loss']:.4f}  "
        f"accuracy {result['accuracy']:.4f} ({correct}/{len(y_test)})"
    )
    return EXIT_OK


def read_inputs(files: list[str], model, invert: bool) -> list[tuple[str, np.ndarray]]:
    """Each file with its images (N, C, H, W) in [0, 1], checked and warned about once for all files.

    PNG/JPEG/BMP files give one image each, .npy files one or a batch (uint8
    pixels divided by 255); ``invert`` gives 1 - x.
    """
    inputs = []
    for file in files:
        if not Path(file).is_file():
            raise FileNotFoundError(f"no such file: {file}")
        if file.lower().endswith(".npy"):
            batch = model.prepare_input(load_array(file, model.input_shape))  # uint8 pixels become [0, 1]
            batch = 1.0 - batch if invert else batch
        else:
            batch = load_image(file, model.input_shape, invert=invert)[None]  # (1, C, H, W)
        inputs.append((file, batch))
    warn_flat_images(inputs)
    warn_unfamiliar(model, inputs, inverted=invert)
    return inputs


def prediction_line(name: str, probabilities: np.ndarray, class_names: list[str] | None, top: int) -> str:
    """``name: class (p=...)``, and with ``top`` > 1 the ``top`` most probable classes with their probabilities."""
    order = np.argsort(-probabilities, kind="stable")[:top]
    line = f"{name}: {class_label(class_names, int(order[0]))} (p={probabilities[order[0]]:.3f})"
    if top > 1:
        line += f"  top-{top}: " + ", ".join(
            f"{class_label(class_names, int(k))} {probabilities[k]:.3f}" for k in order
        )
    return line


def cmd_predict(args: argparse.Namespace) -> int:
    """``convnp predict MODEL FILE...``: predicted class and probability per image."""
    model, _ = load_model(args.model)
    top = min(args.top, int(np.prod(model.output_shape)))
    for file, batch in read_inputs(args.files, model, args.invert):
        labels = [file] if len(batch) == 1 else [f"{file}[{i}]" for i in range(len(batch))]
        with quiet_python_warnings():
            probabilities = model.predict(batch)
        if not distributed.is_main():  # under mpiexec every rank computed its part; rank 0 reports
            continue
        for name, probs in zip(labels, probabilities):
            print(prediction_line(name, probs, model.class_names, top))
    return EXIT_OK
