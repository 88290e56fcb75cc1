"""``convnp train``: train a CNN on a built-in dataset or a folder of your images, and write a run folder.

The settings are the dataset's recipe (``convnp.cli.recipes.RECIPES``, a named
one with ``--recipe``, or ``IMAGES_RECIPE`` with ``--images``) overridden by the options given; they are
written to RUN/config.json, so that ``--resume RUN`` continues the run from
RUN/checkpoint.npz with nothing else.

Under ``mpiexec -n P`` every rank trains its share of each batch
(``convnp.distributed``); the ranks load the data in turns (no two fill one
cache at once), and rank 0 alone prints and writes the run folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from convnp import distributed, plots
from convnp._version import __version__
from convnp.callbacks import ExponentialMovingAverage, LearningRateScheduler
from convnp.cli.args import dataset_name, model_name, positive_float, positive_int
from convnp.cli.data_sources import add_image_options, image_settings, load_training_data
from convnp.cli.errors import EXIT_INTERRUPTED, EXIT_OK, CLIError, UsageError
from convnp.cli.recipes import (
    IMAGES_RECIPE,
    NAMED_RECIPES,
    OPTIMIZER_DEFAULTS,
    RECIPES,
    SCHEDULES,
    make_scheduler,
    optimizer_options,
)
from convnp.data import Augment
from convnp.files.atomic import atomic_write_json
from convnp.models import build_model
from convnp.optim import get_optimizer
from convnp.serialization import save

__all__ = ["register", "resolve_config", "cmd_train"]

# Settings that --resume takes from the run's config.json; changing them would not continue the run.
_FIXED_ON_RESUME = (
    "dataset", "recipe", "images", "image_size", "color_mode", "validation_split",
    "model", "batch_size", "optimizer", "lr", "seed", "schedule", "augment", "dtype", "out",
)  # fmt: skip
# The options --resume accepts: a new total of epochs, a dataset that moved, how much to print.
_ALLOWED_ON_RESUME = "--epochs, --data-dir and --verbose"


def _log(message: str, verbose: int = 1) -> None:
    if verbose and distributed.is_main():
        print(message, file=sys.stderr, flush=True)


def _warn(message: str) -> None:
    if distributed.is_main():
        print(f"convnp: warning: {message}", file=sys.stderr, flush=True)


def _describe(recipe: dict) -> str:
    """A recipe in a few words, for --help."""
    augmented = ", augmented" if recipe["augment"] else ""
    return (
        f"{recipe['model']}, {recipe['epochs']} epochs, {recipe['optimizer']} lr {recipe['lr']:g}, "
        f"{recipe['schedule']}{augmented}"
    )


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``convnp train`` to the subcommands."""
    recipes = "; ".join(f"{name}: {_describe(r)}" for name, r in {**RECIPES, "--images": IMAGES_RECIPE}.items())
    named = "; ".join(f"{name} ({r['dataset']}): {_describe(r)}" for name, r in NAMED_RECIPES.items())
    parser = commands.add_parser(
        "train",
        help="train a CNN and write a run folder (model, checkpoint, history, plots)",
        description=(
            "Train a CNN on a built-in dataset, or on your own images with --images DIR (one "
            "sub-folder per class). With no options: a small CNN on the 8x8 digits "
            "embedded in scikit-learn (no download), >= 97% test accuracy in seconds. "
            "The test split (with --images or --validation-split: a share of each class of the training "
            "images held out) is evaluated after "
            "every epoch (shown as validation); it is not used for training or model selection. "
            "Writes RUN/model.npz, checkpoint.npz, config.json, history.json and PNG plots."
        ),
        epilog=f"Defaults per dataset (convnp.cli.RECIPES): {recipes}. Named recipes (--recipe): {named}.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--dataset", type=dataset_name, default=None, help="digits (default), mnist, fashion-mnist or cifar10"
    )
    source.add_argument(
        "--images",
        metavar="DIR",
        default=None,
        help="train on your own PNG/JPEG/BMP images: DIR holds one sub-folder per class (DIR/cat/*.jpg, DIR/dog/...)",
    )
    add_image_options(parser)
    parser.add_argument(
        "--recipe",
        choices=sorted(NAMED_RECIPES),
        default=None,
        help="a named recipe instead of the dataset's default one (its dataset unless --dataset names the same); "
        "the options below override its settings",
    )
    parser.add_argument(
        "--model",
        type=model_name,
        default=None,
        help="one of convnp.models: mnist_cnn, lenet5, convnet_bn, resnet20, resnet32, resnet56, resnet18 "
        "(default: the dataset's recipe)",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=None, help="number of epochs (with --resume: the new total)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=None, help="minibatch size")
    parser.add_argument(
        "--optimizer",
        choices=sorted(OPTIMIZER_DEFAULTS),
        default=None,
        help="optimizer (sgd uses momentum 0.9, Nesterov)",
    )
    parser.add_argument("--lr", type=positive_float, default=None, help="initial learning rate")
    parser.add_argument(
        "--schedule", choices=SCHEDULES, default=None, help="learning-rate schedule, stepped once per epoch"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the initial weights, shuffling, dropout and augmentation (default 0)",
    )
    parser.add_argument(
        "--dtype", choices=("float32", "float64"), default=None, help="the model's precision (default float32)"
    )
    parser.add_argument(
        "--out", default=None, help="run folder (default runs/<dataset or images folder>-<model>-<YYYYmmdd-HHMMSS>)"
    )
    parser.add_argument("--data-dir", default=None, help="folder holding the dataset files (searched first)")
    parser.add_argument("--no-download", action="store_true", help="never download; fail when the files are not found")
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random shifts (and flips for cifar10) of every training batch (default: per recipe)",
    )
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help=f"continue the run in RUN_DIR from its checkpoint, with its config.json "
        f"(only {_ALLOWED_ON_RESUME} may be given with it)",
    )
    parser.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="0: summary line only, 1: a progress bar per epoch (default), 2: one line per epoch",
    )
    parser.set_defaults(handler=cmd_train)


def resolve_config(args: argparse.Namespace) -> dict:
    """The full training settings: the dataset's recipe, overridden by the given options."""
    images = image_settings(args)
    recipe_name = getattr(args, "recipe", None)
    if recipe_name is not None:
        recipe = NAMED_RECIPES[recipe_name]
        if "images" in images or (args.dataset is not None and args.dataset != recipe["dataset"]):
            given = "--images" if "images" in images else f"--dataset {args.dataset}"
            raise UsageError(f"--recipe {recipe_name} trains on {recipe['dataset']}; it cannot be used with {given}")
        dataset = recipe["dataset"]
    else:
        dataset = "images" if "images" in images else args.dataset or "digits"
        recipe = IMAGES_RECIPE if "images" in images else RECIPES[dataset]
    model = args.model or recipe["model"]
    optimizer = args.optimizer or recipe["optimizer"]
    if args.lr is not None:
        lr = args.lr
    elif optimizer == recipe["optimizer"]:
        lr = recipe["lr"]
    else:
        lr = OPTIMIZER_DEFAULTS[optimizer]["lr"]
    return {
        "dataset": dataset,
        "recipe": recipe_name,
        **images,
        "model": model,
        "model_options": dict(recipe["model_options"]) if model == recipe["model"] else {},
        "epochs": args.epochs or recipe["epochs"],
        "batch_size": args.batch_size or recipe["batch_size"],
        "optimizer": optimizer,
        "optimizer_options": optimizer_options(recipe, optimizer),
        "lr": lr,
        "schedule": args.schedule or recipe["schedule"],
        "warmup_epochs": recipe["warmup_epochs"],
        "augment": recipe["augment"] if args.augment is None else args.augment,
        "augmentation": dict(recipe["augmentation"]),
        "label_smoothing": recipe["label_smoothing"],
        "flip_average": recipe.get("flip_average", False),
        "ema_decay": recipe.get("ema_decay"),
        "seed": 0 if args.seed is None else args.seed,
        "dtype": args.dtype or "float32",
        "data_dir": args.data_dir,
    }


class _StretchingScheduler(LearningRateScheduler):
    """A LearningRateScheduler that keeps the current run length when a checkpoint is restored.

    On ``--resume`` with a new ``--epochs`` the schedule is stretched over the
    new total: the epoch counter comes from the checkpoint, the horizon
    (T_max, total_epochs, step_size) from this run's settings.
    """

    def load_state_dict(self, state: dict) -> None:
        current = {name: getattr(self.scheduler, name) for name in self.scheduler.hyperparameter_names}
        super().load_state_dict({**state, **current, "base_lr": self.scheduler.base_lr})


def _default_run_dir(dataset: str, model: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{dataset}-{model}-{stamp}"
    candidate, counter = base, 2
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{counter}")
        counter += 1
    return candidate


def _read_config(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    if not path.is_file():
        raise CLIError(f"{run_dir} is not a run folder of 'convnp train' (no config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CLIError(f"cannot read {path}: {error}") from error
    missing = [key for key in ("dataset", "model", "epochs", "seed") if key not in config]
    if missing:
        raise CLIError(f"{path} lacks the settings {missing}")
    return config


def _resume_config(args: argparse.Namespace) -> tuple[dict, Path]:
    run_dir = Path(args.resume)
    given = [name for name in _FIXED_ON_RESUME if getattr(args, name) is not None]
    if given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(
            f"--resume continues the run with its own settings; {options} cannot be given with it "
            f"(only {_ALLOWED_ON_RESUME})"
        )
    config = _read_config(run_dir)
    if args.epochs is not None:
        config["epochs"] = args.epochs
    if args.data_dir is not None:
        config["data_dir"] = args.data_dir
    return config, run_dir


def _new_run_dir(args: argparse.Namespace, config: dict) -> Path:
    if args.out is None:
        name = Path(config["images"]).name if config["dataset"] == "images" else config["dataset"]
        return _default_run_dir(name, config["model"])
    run_dir = Path(args.out)
    if (run_dir / "config.json").exists() or (run_dir / "checkpoint.npz").exists():
        raise CLIError(
            f"{run_dir} already holds a run; continue it with 'convnp train --resume {run_dir}' or choose another --out"
        )
    return run_dir


def cmd_train(args: argparse.Namespace) -> int:
    """``convnp train``: see the module docstring and docs/cli.md."""
    started = time.perf_counter()
    if args.resume is not None:
        config, run_dir = _resume_config(args)
    else:
        config = resolve_config(args)
        run_dir = _new_run_dir(args, config)
    main_rank = distributed.is_main()
    data = distributed.in_turns(
        lambda: load_training_data(config, download=not args.no_download, verbose=bool(args.verbose) and main_rank)
    )
    x_train, y_train = data.x_train, data.y_train
    validation = (data.x_val, data.y_val) if len(data.y_val) else None
    model = build_model(
        config["model"],
        input_shape=x_train.shape[1:],
        num_classes=len(data.class_names),
        seed=config["seed"],
        dtype=config.get("dtype", "float32"),
        **config.get("model_options", {}),
    )
    model.class_names = list(data.class_names)
    optimizer = get_optimizer(
        config["optimizer"], model.parameters(), lr=config["lr"], **config.get("optimizer_options", {})
    )
    scheduler = make_scheduler(config, optimizer)
    callbacks = [] if scheduler is None else [_StretchingScheduler(scheduler)]
    if config.get("ema_decay"):  # validated each epoch and kept at the end
        callbacks.append(ExponentialMovingAverage(decay=config["ema_decay"]))
    augment = Augment(**config.get("augmentation", {})) if config.get("augment") else None

    checkpoint = run_dir / "checkpoint.npz"
    config["convnp_version"] = __version__
    if main_rank:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", config)
    ranks = distributed.world_size()
    if args.resume is not None and not checkpoint.exists():
        _warn(f"{checkpoint} not found; training {run_dir} from the start")
    classes = f"{len(data.class_names)} classes, " if config["dataset"] == "images" else ""
    # The images validated on: held out of the training images, or the dataset's test split.
    held_out = config["dataset"] == "images" or bool(config.get("validation_split"))
    checked = (
        f"Validation = {data.validation}, evaluated after each epoch (not used for training)."
        if validation
        else "No validation images (each class too small to hold one out, or --validation-split 0)."
    )
    _log(
        f"{'Resuming' if args.resume else 'Training'} {config['model']} on {data.source} "
        f"({classes}{len(x_train)} train / {len(data.y_val)} {'validation' if held_out else 'test'} images, "
        f"{'x'.join(map(str, x_train.shape[1:]))}): "
        f"{config['epochs']} epochs, batch {config['batch_size']}, {config['optimizer']} lr {config['lr']:g}, "
        f"schedule {config['schedule']}{', augmented' if augment else ''}, seed {config['seed']}"
        f"{f', {ranks} MPI ranks' if ranks > 1 else ''}.\n"
        f"{checked} Run folder: {run_dir}",
        args.verbose,
    )

    try:
        history = model.fit(
            x_train,
            y_train,
            epochs=config["epochs"],
            batch_size=config["batch_size"],
            optimizer=optimizer,
            validation_data=validation,
            callbacks=callbacks,
            seed=config["seed"],
            verbose=args.verbose,
            augment=augment,
            label_smoothing=config.get("label_smoothing", 0.0),
            checkpoint=checkpoint,
            resume=args.resume is not None,
        )
    except KeyboardInterrupt as interrupt:
        if not distributed.raised_on_every_rank(interrupt):
            raise  # a Ctrl-C that only this MPI rank saw ends the whole job (convnp.cli.main)
        if not main_rank:
            return EXIT_INTERRUPTED
        if checkpoint.exists():
            message = (
                f"Interrupted. The checkpoint {checkpoint} holds the progress so far; continue with:\n"
                f"  convnp train --resume {run_dir}"
            )
        else:
            message = f"Interrupted before the first checkpoint; start again with: convnp train --resume {run_dir}"
        print(f"\n{message}", file=sys.stderr)
        return EXIT_INTERRUPTED

    if main_rank:
        extra = {"dataset": config["dataset"]} if config["dataset"] != "images" else {"images": config["images"]}
        save(model, run_dir / "model.npz", extra=extra)
        atomic_write_json(run_dir / "history.json", history.to_dict())
    # The summary and the plots are about the held-out images, or the training images when there are none.
    split = ("validation" if held_out else "test") if validation else "training"
    x_eval, y_eval = validation or (x_train, y_train)
    flip_average = bool(config.get("flip_average", False))
    # like predict below, every MPI rank computes its part
    result = model.evaluate(x_eval, y_eval, flip_average=flip_average)
    if not args.no_plots:
        predictions = model.predict(x_eval).argmax(axis=1)
        if main_rank:
            _draw_plots(model, history, x_eval, y_eval, predictions, data.class_names, run_dir, split)
    if not main_rank:
        return EXIT_OK
    correct = round(result["accuracy"] * len(y_eval))
    print(
        f"{split} accuracy {result['accuracy']:.2%} ({correct}/{len(y_eval)}"
        f"{', flip-averaged' if flip_average else ''}), loss {result['loss']:.4f} | "
        f"{time.perf_counter() - started:.1f} s | run folder: {run_dir}"
    )
    return EXIT_OK


def _draw_plots(model, history, x_test, y_test, predictions, class_names, run_dir: Path, split: str) -> None:
    """Write the four PNGs of the ``split`` images; without matplotlib (or on a plot's error) warn and go on."""
    try:
        plots.require_matplotlib()
    except ImportError:
        _warn(f"matplotlib is not installed; skipping the plots ({plots.INSTALL_HINT})")
        return
    jobs = {
        "learning_curves.png": lambda path: plots.plot_learning_curves(history, path),
        "confusion_matrix.png": lambda path: plots.plot_confusion_matrix(
            y_test, predictions, path, class_names, title=f"Confusion matrix ({split} set)"
        ),
        "filters.png": lambda path: plots.plot_filters(model, path),
        "feature_maps.png": lambda path: plots.plot_feature_maps(
            model, x_test[0], path, image_title=f"input (class {class_names[int(y_test[0])]})"
        ),
    }
    for name, draw in jobs.items():
        try:
            draw(run_dir / name)
        except (ValueError, TypeError, OSError) as error:
            _warn(f"could not draw {name}: {error}")
