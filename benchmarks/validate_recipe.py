"""A named recipe, or a variant of it, trained with images held out of the training split for validation.

    python benchmarks/validate_recipe.py fashion-mnist-convnet --out runs/val-convnet
    python benchmarks/validate_recipe.py fashion-mnist-convnet --set augmentation.erase_p=0.25 \\
        --out runs/val-convnet-erase

This is how a recipe is chosen without looking at the test split: each variant
runs ``convnp train --recipe NAME --validation-split 0.16667`` (Fashion-MNIST:
1,000 images of each class, 10,000 in all, held out of the 60,000 training
images; the test split is not read), and the variants are compared on the
held-out accuracy. ``--set KEY=VALUE`` changes one setting of the recipe
(``KEY`` may name a key of ``augmentation`` or ``model_options`` with a dot;
``VALUE`` is read as JSON, else kept as a string). The variant is registered
under a new name for this process only.

Run variants side by side with ``CONVNP_NUM_THREADS=1`` each (one core each:
convnp then holds BLAS to one thread too), or one at a time: two processes with
two threads each on two cores slow each other down far more than twice.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys

from convnp.cli import main as convnp_main
from convnp.cli.recipes import NAMED_RECIPES


def variant(recipe: dict, settings: list[str]) -> dict:
    """A deep copy of ``recipe`` with each ``KEY=VALUE`` of ``settings`` applied."""
    changed = copy.deepcopy(recipe)
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE, got {setting!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        *parents, leaf = key.split(".")
        target = changed
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", choices=sorted(NAMED_RECIPES))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change one setting")
    parser.add_argument("--validation-split", default="0.16667", help="share of each class held out")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--out", required=True, help="run folder")
    args = parser.parse_args(argv)
    name = args.recipe
    if args.set:
        name = f"{args.recipe}+" + ",".join(args.set)
        NAMED_RECIPES[name] = variant(NAMED_RECIPES[args.recipe], args.set)
    print(f"recipe {name}: {json.dumps(NAMED_RECIPES[name])}", flush=True)
    command = ["train", "--recipe", name, "--validation-split", args.validation_split, "--seed", args.seed]
    return convnp_main([*command, "--out", args.out, "--no-plots", "--verbose", "2"])


if __name__ == "__main__":
    sys.exit(main())
