"""The data a command trains or evaluates on: a built-in dataset, or a folder of your own images.

``convnp train --dataset NAME`` trains on the dataset's training split and
validates on its test split, or, with ``--validation-split F``, on a share F of
each class held out from the training split (the test split is then left
unused: the way to choose a recipe without looking at the test set);
``convnp train --images DIR`` reads DIR with
``convnp.data.image_folder`` (one sub-folder per class) and validates on a
share of each class held out (``--validation-split``, 20% by default; the
split does not depend on ``--seed``, so runs with other seeds are compared on
the same images). ``convnp evaluate MODEL --images DIR`` scores a model on
every image of a labelled folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import numpy as np

from convnp.cli.args import positive_int
from convnp.cli.errors import CLIError, UsageError
from convnp.data import DATASETS, image_folder, stratified_split
from convnp.data import load as load_dataset
from convnp.data.image_folder import COLOR_MODES

__all__ = ["TrainingData", "add_image_options", "load_training_data", "load_labelled_images", "SPLIT_SEED"]

SPLIT_SEED = 0  # the held-out images are the same whatever --seed trains with


class TrainingData(NamedTuple):
    """What ``convnp train`` learns from and validates on, and how to describe it."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: list[str]
    source: str  # "digits", "the images in photos/"
    validation: str  # what the validation images are, for the log line and the summary


def _validation_split(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def add_image_options(parser: argparse.ArgumentParser) -> None:
    """``--image-size``, ``--color-mode`` and ``--validation-split`` of ``convnp train --images``."""
    parser.add_argument(
        "--image-size",
        type=positive_int,
        nargs="+",
        metavar="N",
        default=None,
        help="with --images: resize every image to N x N, or H x W with two numbers "
        "(default: the most common size, shrunk to at most 64 pixels a side)",
    )
    parser.add_argument(
        "--color-mode",
        choices=COLOR_MODES,
        default=None,
        help="with --images: grayscale, rgb, or auto (default: grey when every image is grey)",
    )
    parser.add_argument(
        "--validation-split",
        type=_validation_split,
        default=None,
        metavar="F",
        help="the share of each class held out from the training images for validation (with --images: "
        "default 0.2; with a dataset: default none, the test split validates)",
    )


def image_settings(args: argparse.Namespace) -> dict:
    """The ``--images`` settings for config.json; ``UsageError`` for image options without ``--images``."""
    given = [name for name in ("image_size", "color_mode") if getattr(args, name) is not None]
    if args.images is None:
        if args.validation_split:
            return {"validation_split": args.validation_split}
        if given:
            options = ", ".join("--" + name.replace("_", "-") for name in given)
            raise UsageError(f"{options} only apply to --images")
        return {}
    if args.image_size is not None and len(args.image_size) > 2:
        raise UsageError(f"--image-size takes N or H W, got {len(args.image_size)} numbers")
    size = args.image_size
    return {
        "images": str(Path(args.images).expanduser().resolve()),
        "image_size": None if size is None else [size[0], size[-1]],
        "color_mode": args.color_mode or "auto",
        "validation_split": 0.2 if args.validation_split is None else args.validation_split,
    }


def load_training_data(config: dict, download: bool, verbose: bool) -> TrainingData:
    """The training and validation images ``config`` names; for an image folder, ``config`` gets the size chosen.

    ``config["image_size"]`` and ``config["color_mode"]`` are set to what was
    read, so that ``--resume`` reads the folder the same way.
    """
    if config["dataset"] != "images":
        info = DATASETS[config["dataset"]]
        (x_train, y_train), (x_test, y_test) = load_dataset(
            config["dataset"], data_dir=config.get("data_dir"), download=download, verbose=verbose
        )
        share = config.get("validation_split")
        if not share:
            return TrainingData(
                x_train, y_train, x_test, y_test, list(info.class_names), config["dataset"], "the test split"
            )
        del x_test, y_test  # choosing a recipe on held-out training images never looks at the test split
        train, held_out = stratified_split(y_train, share, SPLIT_SEED, num_classes=len(info.class_names))
        description = f"{len(held_out)} training images held out ({share:.4g} of each class; the test split is unused)"
        return TrainingData(
            x_train[train],
            y_train[train],
            x_train[held_out],
            y_train[held_out],
            list(info.class_names),
            config["dataset"],
            description,
        )
    folder = config["images"]
    (x_train, y_train), (x_val, y_val), names = image_folder(
        folder,
        image_size=config["image_size"],
        color_mode=config["color_mode"],
        validation_split=config["validation_split"],
        seed=SPLIT_SEED,
    )
    config["image_size"] = list(x_train.shape[2:])
    config["color_mode"] = "grayscale" if x_train.shape[1] == 1 else "rgb"
    held_out = f"{config['validation_split']:.0%} of each class held out"
    return TrainingData(x_train, y_train, x_val, y_val, names, f"the images in {folder}", held_out)


def load_labelled_images(folder: str, model) -> tuple[np.ndarray, np.ndarray]:
    """Every image of ``folder`` (one sub-folder per class) for ``model``: its size, channels and class order.

    The sub-folders must be classes the model knows (``model.class_names``).
    """
    names = model.class_names
    if names is None:
        raise CLIError("the model keeps no class names, so the folders of --images cannot be matched to its outputs")
    channels, height, width = model.input_shape
    if channels not in (1, 3):
        raise CLIError(f"the model takes {channels}-channel inputs; image files give 1 or 3")
    (x, y), _, folder_names = image_folder(
        folder, image_size=(height, width), color_mode="grayscale" if channels == 1 else "rgb", validation_split=0
    )
    unknown = [name for name in folder_names if name not in names]
    if unknown:
        raise CLIError(f"{folder} has class folders the model does not know: {unknown}; its classes are {names}")
    to_model = np.array([names.index(name) for name in folder_names], dtype=np.int64)
    return x, to_model[y]
