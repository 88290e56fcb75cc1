"""``convnp train``: the run folder, seeds, --resume, Ctrl-C, missing matplotlib or dataset."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import numpy as np
import pytest

import convnp
import convnp.training
from convnp.cli import main
from convnp.cli.recipes import RECIPES
from convnp.data import load as load_dataset
from tests.cli.helpers import png_size, same_arrays, train

RUN_FILES = (
    "model.npz",
    "checkpoint.npz",
    "config.json",
    "history.json",
    "learning_curves.png",
    "confusion_matrix.png",
    "filters.png",
    "feature_maps.png",
)


def test_train_writes_every_file(trained_run, digits_test):
    for name in RUN_FILES:
        assert (trained_run / name).is_file(), name
        assert (trained_run / name).stat().st_size > 0, name
    for name in RUN_FILES:
        if name.endswith(".png"):
            width, height = png_size(trained_run / name)
            assert width > 0 and height > 0
    model = convnp.load(trained_run / "model.npz")
    x_test, _ = digits_test
    probabilities = model.predict(x_test[:5])
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    config = json.loads((trained_run / "config.json").read_text())
    recipe = RECIPES["digits"]
    assert config["dataset"] == "digits"
    assert config["model"] == recipe["model"]
    assert config["model_options"] == recipe["model_options"]
    assert config["epochs"] == 1
    assert config["seed"] == 0
    history = json.loads((trained_run / "history.json").read_text())
    assert len(history["loss"]) == 1
    assert history["val_accuracy"][0] is not None  # the test split is the validation data


def test_train_prints_summary_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, "--epochs", "1", "--no-plots") == 0
    out = capsys.readouterr().out.strip().splitlines()
    match = re.search(r"test accuracy ([\d.]+)% \((\d+)/360\).*\| ([\d.]+) s \| run folder: (.+)$", out[-1])
    assert match, out[-1]
    model = convnp.load(run / "model.npz")
    x_test, y_test = load_dataset("digits")[1]
    assert float(match.group(1)) == pytest.approx(100 * model.evaluate(x_test, y_test)["accuracy"], abs=0.01)
    assert Path(match.group(4)) == run
    assert not list(run.glob("*.png"))  # --no-plots


def test_train_same_seed_gives_identical_models(tmp_path):
    for name in ("a", "b"):
        assert train(tmp_path / name, "--epochs", "1", "--no-plots", "--seed", "3") == 0
    assert train(tmp_path / "c", "--epochs", "1", "--no-plots", "--seed", "4") == 0
    a, b, c = (convnp.load(tmp_path / name / "model.npz").state_dict() for name in "abc")
    assert same_arrays(a, b)
    assert not same_arrays(a, c)


def test_resume_finished_run_with_more_epochs_continues(tmp_path):
    run = tmp_path / "run"
    assert train(run, "--epochs", "1", "--no-plots") == 0
    assert main(["train", "--resume", str(run), "--epochs", "2", "--verbose", "0", "--no-plots"]) == 0
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == 2
    assert json.loads((run / "config.json").read_text())["epochs"] == 2
    # The cosine schedule is stretched over the new total, and epoch 0 runs at the base lr
    # whatever the total, so 1 + 1 epochs equal 2 straight ones.
    assert train(tmp_path / "straight", "--epochs", "2", "--no-plots") == 0
    straight = json.loads((tmp_path / "straight" / "history.json").read_text())
    assert history["lr"] == straight["lr"]
    assert same_arrays(
        convnp.load(run / "model.npz").state_dict(), convnp.load(tmp_path / "straight" / "model.npz").state_dict()
    )


def test_ctrl_c_saves_checkpoint_and_resume_continues_exactly(tmp_path, monkeypatch, capsys):
    original_step = convnp.training.loop.train_step
    calls = {"n": 0}

    def step_then_ctrl_c(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 60:  # inside the second epoch (45 batches of 32 per epoch)
            signal.raise_signal(signal.SIGINT)
        return original_step(*args, **kwargs)

    monkeypatch.setattr(convnp.training.loop, "train_step", step_then_ctrl_c)
    run = tmp_path / "run"
    assert train(run, "--epochs", "3", "--no-plots") == 130
    err = capsys.readouterr().err
    assert f"convnp train --resume {run}" in err
    assert (run / "checkpoint.npz").is_file() and not (run / "model.npz").exists()
    monkeypatch.setattr(convnp.training.loop, "train_step", original_step)

    assert main(["train", "--resume", str(run), "--verbose", "0", "--no-plots"]) == 0
    assert train(tmp_path / "straight", "--epochs", "3", "--no-plots") == 0
    assert same_arrays(
        convnp.load(run / "model.npz").state_dict(), convnp.load(tmp_path / "straight" / "model.npz").state_dict()
    )


def test_resume_rejects_changed_settings(trained_run, capsys):
    assert main(["train", "--resume", str(trained_run), "--lr", "0.1"]) == 2
    assert "--lr" in capsys.readouterr().err


def test_train_refuses_to_overwrite_a_run(trained_run, capsys):
    assert train(trained_run, "--epochs", "1") == 1
    assert "--resume" in capsys.readouterr().err


def test_resume_of_a_folder_without_config(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 1
    assert "config.json" in capsys.readouterr().err


def test_train_without_matplotlib_skips_plots(tmp_path, monkeypatch, capsys):
    from convnp import plots

    def missing():
        raise ImportError("no matplotlib")

    monkeypatch.setattr(plots, "require_matplotlib", missing)
    run = tmp_path / "run"
    assert train(run, "--epochs", "1") == 0
    assert "pip install convnp[plots]" in capsys.readouterr().err
    assert (run / "model.npz").is_file()
    assert not list(run.glob("*.png"))


def test_dataset_not_found_gives_the_loader_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CONVNP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CONVNP_DATA", raising=False)
    status = main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--no-download", "--out",
                       str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1
    assert "mnist" in err and "Traceback" not in err


def test_the_model_keeps_the_dataset_class_names(trained_run):
    assert convnp.load(trained_run / "model.npz").class_names == [str(digit) for digit in range(10)]
