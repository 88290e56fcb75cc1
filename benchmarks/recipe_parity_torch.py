"""A named training recipe's first epochs in convnp and in PyTorch, side by side.

    python benchmarks/recipe_parity_torch.py --recipe fashion-mnist-resnet --epochs 2

Both libraries start from the same weights (``convnp.interop.to_torch``), see
the same augmented batches in the same order (each batch is augmented once, by
``convnp.data.Augment`` with the recipe's settings, and fed to both), and use the
recipe's optimizer, weight decay, label smoothing and per-epoch learning-rate
schedule (``convnp.cli.recipes.make_scheduler``; the same rate is set on the
PyTorch optimizer each epoch). After every epoch both models are evaluated on
the test split. Equal curves, up to float32 drift, show that the recipe and not
a bug in either library sets the accuracy.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from parity_torch import torch_accuracy  # the sibling script (benchmarks/ is on sys.path)


def torch_optimizer(torch, module, config: dict):
    """The PyTorch twin of the recipe's optimizer (same lr, momentum, Nesterov, weight decay)."""
    options = config["optimizer_options"]
    if config["optimizer"] == "sgd":
        return torch.optim.SGD(
            module.parameters(),
            lr=config["lr"],
            momentum=options.get("momentum", 0.0),
            nesterov=options.get("nesterov", False),
            weight_decay=options.get("weight_decay", 0.0),
        )
    if config["optimizer"] == "adam":
        return torch.optim.Adam(module.parameters(), lr=config["lr"], weight_decay=options.get("weight_decay", 0.0))
    raise SystemExit(f"recipe_parity_torch: no PyTorch twin for optimizer {config['optimizer']!r}")


def main(argv=None) -> int:
    import torch

    from convnp.cli.recipes import NAMED_RECIPES, make_scheduler, optimizer_options
    from convnp.data import Augment, load
    from convnp.interop import to_torch
    from convnp.models import build_model
    from convnp.optim import get_optimizer
    from convnp.training import train_step

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="fashion-mnist-resnet", choices=sorted(NAMED_RECIPES))
    parser.add_argument("--epochs", type=int, default=2, help="epochs to run (the schedule keeps the recipe's length)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)

    recipe = NAMED_RECIPES[args.recipe]
    options = optimizer_options(recipe, recipe["optimizer"])
    config = {**recipe, "optimizer_options": options}
    (x, y), (x_test, y_test) = load(recipe["dataset"], data_dir=args.data_dir, verbose=False)
    model = build_model(recipe["model"], x.shape[1:], 10, seed=args.seed, **recipe["model_options"])
    module = to_torch(model)
    module.train()
    optimizer = get_optimizer(recipe["optimizer"], model.parameters(), lr=recipe["lr"], **options)
    scheduler = make_scheduler(config, optimizer)
    twin = torch_optimizer(torch, module, config)
    augment = Augment(**recipe["augmentation"]) if recipe["augment"] else None
    smoothing = recipe["label_smoothing"]
    rng = np.random.default_rng(args.seed)
    batch_size = recipe["batch_size"]
    print(f"{args.recipe}: {recipe['model']} {recipe['model_options']}, first {args.epochs} of {recipe['epochs']} "
          f"epochs, seed {args.seed}")  # fmt: skip
    print(f"{'epoch':>5}  {'lr':>8}  {'convnp loss':>11}  {'torch loss':>10}  {'convnp test':>11}  {'torch test':>10}")
    for epoch in range(args.epochs):
        for group in twin.param_groups:
            group["lr"] = float(optimizer.lr)
        order = rng.permutation(len(x))
        losses = np.zeros(2)
        started = time.perf_counter()
        for batch in range(math.ceil(len(x) / batch_size)):
            index = order[batch * batch_size : (batch + 1) * batch_size]
            x_batch = x[index] if augment is None else augment(x[index], rng)
            mine, _ = train_step(model, optimizer, x_batch, y[index], "cross_entropy", smoothing, None)
            twin.zero_grad()
            logits = module(torch.from_numpy(np.ascontiguousarray(x_batch)))
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[index]), label_smoothing=smoothing)
            loss.backward()
            twin.step()
            losses += np.array([mine, float(loss.detach())]) * len(index)
        lr = float(optimizer.lr)
        if scheduler is not None:
            scheduler.step()
        losses /= len(x)
        mine_test = model.evaluate(x_test, y_test)["accuracy"]
        theirs_test = torch_accuracy(module, torch, x_test, y_test)
        print(f"{epoch + 1:>5}  {lr:>8.4f}  {losses[0]:>11.4f}  {losses[1]:>10.4f}  {mine_test:>11.2%}  "
              f"{theirs_test:>10.2%}   ({time.perf_counter() - started:.0f} s for both)", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
