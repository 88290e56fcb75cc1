"""The ``convnp`` command line: train, evaluate, predict, summary, gradcheck, export, bench."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convnp
import convnp.training
from convnp import cli
from convnp.cli.images import load_image
from convnp.cli.recipes import make_scheduler
from convnp.data import DATASETS, Augment
from convnp.data import load as load_dataset
from convnp.models import MODELS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; checks the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def same_arrays(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def train(out: Path, *options: str) -> int:
    return cli.main(["train", "--out", str(out), "--verbose", "0", *options])


@pytest.fixture(scope="module")
def digits_test():
    _, test = load_dataset("digits")
    return test


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One epoch of the default digits recipe, with plots."""
    run = tmp_path_factory.mktemp("run") / "digits"
    assert train(run, "--epochs", "1") == 0
    return run


# --------------------------------------------------------------------- train
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
    recipe = cli.RECIPES["digits"]
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
    assert cli.main(["train", "--resume", str(run), "--epochs", "2", "--verbose", "0", "--no-plots"]) == 0
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
    original_step = convnp.training.train_step
    calls = {"n": 0}

    def step_then_ctrl_c(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 60:  # inside the second epoch (45 batches of 32 per epoch)
            signal.raise_signal(signal.SIGINT)
        return original_step(*args, **kwargs)

    monkeypatch.setattr(convnp.training, "train_step", step_then_ctrl_c)
    run = tmp_path / "run"
    assert train(run, "--epochs", "3", "--no-plots") == 130
    err = capsys.readouterr().err
    assert f"convnp train --resume {run}" in err
    assert (run / "checkpoint.npz").is_file() and not (run / "model.npz").exists()
    monkeypatch.setattr(convnp.training, "train_step", original_step)

    assert cli.main(["train", "--resume", str(run), "--verbose", "0", "--no-plots"]) == 0
    assert train(tmp_path / "straight", "--epochs", "3", "--no-plots") == 0
    assert same_arrays(
        convnp.load(run / "model.npz").state_dict(), convnp.load(tmp_path / "straight" / "model.npz").state_dict()
    )


def test_resume_rejects_changed_settings(trained_run, capsys):
    assert cli.main(["train", "--resume", str(trained_run), "--lr", "0.1"]) == 2
    assert "--lr" in capsys.readouterr().err


def test_train_refuses_to_overwrite_a_run(trained_run, capsys):
    assert train(trained_run, "--epochs", "1") == 1
    assert "--resume" in capsys.readouterr().err


def test_resume_of_a_folder_without_config(tmp_path, capsys):
    assert cli.main(["train", "--resume", str(tmp_path)]) == 1
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
    status = cli.main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--no-download", "--out",
                       str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1
    assert "mnist" in err and "Traceback" not in err


def test_default_recipe_reaches_97_percent(tmp_path, digits_test):
    """The full default ``convnp train`` (seed 0): about 10-20 s on 2 cores."""
    run = tmp_path / "default"
    assert train(run, "--no-plots") == 0
    x_test, y_test = digits_test
    assert convnp.load(run / "model.npz").evaluate(x_test, y_test)["accuracy"] >= 0.97


def test_recipes_are_complete():
    keys = {"model", "model_options", "epochs", "batch_size", "optimizer", "lr", "schedule", "warmup_epochs",
            "augment", "augmentation", "label_smoothing"}  # fmt: skip
    assert set(cli.RECIPES) == set(DATASETS)
    for name, recipe in cli.RECIPES.items():
        assert set(recipe) == keys, name
        assert recipe["model"] in MODELS
        assert recipe["optimizer"] in cli.OPTIMIZER_DEFAULTS
        assert recipe["schedule"] in cli.SCHEDULES
        Augment(**recipe["augmentation"])
        model = MODELS[recipe["model"]](input_shape=DATASETS[name].input_shape, **recipe["model_options"])
        assert model.output_shape == (DATASETS[name].num_classes,)
    assert cli.RECIPES["cifar10"]["augmentation"].get("flip") is True


@pytest.mark.parametrize("schedule", cli.SCHEDULES)
@pytest.mark.parametrize("epochs", [1, 2, 10])
def test_make_scheduler_any_length(schedule, epochs):
    from convnp.optim import Adam

    model = MODELS["mnist_cnn"](input_shape=(1, 8, 8))
    optimizer = Adam(model.parameters(), lr=0.01)
    config = {"schedule": schedule, "epochs": epochs, "lr": 0.01, "warmup_epochs": 2}
    scheduler = make_scheduler(config, optimizer)
    assert (scheduler is None) == (schedule == "none")
    if schedule == "warmup_cosine":
        assert optimizer.lr == pytest.approx(0.01 if epochs == 1 else 0.01 / 3)  # warm-up from lr / 3
    elif schedule != "none":
        assert optimizer.lr == pytest.approx(0.01)


# ------------------------------------------------------------------ evaluate
def test_evaluate_matches_sequential_evaluate(trained_run, digits_test, capsys):
    assert cli.main(["evaluate", str(trained_run / "model.npz"), "--dataset", "digits"]) == 0
    out = capsys.readouterr().out
    match = re.search(r"loss ([\d.]+)\s+accuracy ([\d.]+) \((\d+)/(\d+)\)", out)
    assert match, out
    expected = convnp.load(trained_run / "model.npz").evaluate(*digits_test)
    assert float(match.group(1)) == pytest.approx(expected["loss"], abs=1e-4)
    assert float(match.group(2)) == pytest.approx(expected["accuracy"], abs=1e-4)
    assert int(match.group(3)) == round(expected["accuracy"] * 360) and match.group(4) == "360"


def test_evaluate_uses_the_recorded_dataset(trained_run, capsys):
    assert cli.main(["evaluate", str(trained_run / "model.npz")]) == 0
    assert "digits test split" in capsys.readouterr().out


def test_evaluate_wrong_input_shape(trained_run, tmp_path, capsys):
    model = MODELS["mnist_cnn"]()  # 28x28 inputs
    model.save(tmp_path / "m28.npz")
    assert cli.main(["evaluate", str(tmp_path / "m28.npz"), "--dataset", "digits"]) == 1
    assert "(1, 28, 28)" in capsys.readouterr().err


# ------------------------------------------------------------------- predict
def test_predict_npy_single_and_batch(trained_run, digits_test, tmp_path, capsys):
    x_test, _ = digits_test
    np.save(tmp_path / "one.npy", x_test[0])  # (1, 8, 8)
    np.save(tmp_path / "hw.npy", x_test[1, 0])  # (8, 8)
    np.save(tmp_path / "batch.npy", x_test[:3])  # (3, 1, 8, 8)
    files = [str(tmp_path / name) for name in ("one.npy", "hw.npy", "batch.npy")]
    assert cli.main(["predict", str(trained_run / "model.npz"), *files]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = convnp.load(trained_run / "model.npz").predict(np.concatenate([x_test[:2], x_test[:3]]))
    assert len(lines) == 5
    assert lines[0].startswith(files[0] + ": ") and lines[2].startswith(files[2] + "[0]: ")
    for line, probs in zip(lines, expected):
        match = re.search(r": (\d+) \(p=([\d.]+)\)$", line)
        assert match, line
        assert int(match.group(1)) == probs.argmax()
        assert float(match.group(2)) == pytest.approx(probs.max(), abs=1e-3)


def test_predict_png_with_top3(trained_run, digits_test, tmp_path, capsys):
    image_module = pytest.importorskip("PIL.Image")
    x_test, _ = digits_test
    pixels = np.round(x_test[2, 0] * 255).astype(np.uint8)  # (8, 8), white on black
    image_module.fromarray(pixels).convert("RGB").save(tmp_path / "digit.png")  # RGB: converted to grey
    assert cli.main(["predict", str(trained_run / "model.npz"), str(tmp_path / "digit.png"), "--top", "3"]) == 0
    line = capsys.readouterr().out.strip()
    expected = convnp.load(trained_run / "model.npz").predict(pixels[None, None] / np.float32(255))[0]
    top3 = np.argsort(-expected)[:3]
    match = re.fullmatch(r".*digit\.png: (\d+) \(p=[\d.]+\)  top-3: (\d+) [\d.]+, (\d+) [\d.]+, (\d+) [\d.]+", line)
    assert match, line
    assert int(match.group(1)) == top3[0]
    assert [int(match.group(i)) for i in (2, 3, 4)] == list(top3)


def test_predict_resizes_large_images(trained_run, tmp_path, capsys):
    image_module = pytest.importorskip("PIL.Image")
    canvas = np.zeros((64, 48), dtype=np.uint8)
    canvas[8:56, 20:28] = 255  # a white vertical stroke
    image_module.fromarray(canvas).save(tmp_path / "stroke.png")
    image = load_image(tmp_path / "stroke.png", (1, 8, 8))
    assert image.shape == (1, 8, 8) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image[0, 4, 3:5].mean() > 0.5
    inverted = load_image(tmp_path / "stroke.png", (1, 8, 8), invert=True)
    np.testing.assert_allclose(inverted, 1.0 - image)
    assert cli.main(["predict", str(trained_run / "model.npz"), str(tmp_path / "stroke.png")]) == 0
    assert re.search(r"stroke\.png: \d \(p=", capsys.readouterr().out)


def test_predict_bad_inputs(trained_run, tmp_path, capsys):
    model = str(trained_run / "model.npz")
    np.save(tmp_path / "wrong.npy", np.zeros((5, 5), dtype=np.float32))
    assert cli.main(["predict", model, str(tmp_path / "wrong.npy")]) == 1
    assert "(5, 5)" in capsys.readouterr().err
    (tmp_path / "text.png").write_text("not an image")
    assert cli.main(["predict", model, str(tmp_path / "text.png")]) == 1
    assert "text.png" in capsys.readouterr().err
    assert cli.main(["predict", model, str(tmp_path / "absent.png")]) == 1


# ------------------------------------------------------------------- summary
def test_summary_of_builder_and_file(trained_run, capsys):
    assert cli.main(["summary", "--model", "mnist_cnn"]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith(MODELS["mnist_cnn"]().summary().splitlines()[-1])
    assert "Total parameters: 421,642" in out and "Conv2D" in out and "(64, 7, 7)" in out

    assert cli.main(["summary", str(trained_run / "model.npz")]) == 0
    assert capsys.readouterr().out.strip() == convnp.load(trained_run / "model.npz").summary()

    assert cli.main(["summary", "--dataset", "cifar10"]) == 0
    out = capsys.readouterr().out
    assert "Sequential: input (3, 32, 32)" in out

    assert cli.main(["summary", "--model", "lenet5", "--input-shape", "1", "32", "32"]) == 0
    assert "Sequential: input (1, 32, 32)" in capsys.readouterr().out


# ----------------------------------------------------------------- gradcheck
def test_gradcheck_passes_every_row(capsys):
    assert cli.main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.rstrip().endswith(("PASS", "FAIL"))]
    expected_rows = sum(1 + len(target.parameters()) for _, target, _, _ in cli.gradcheck_cases())
    assert len(rows) == expected_rows > 50
    assert all(row.rstrip().endswith("PASS") for row in rows)
    assert "all passed" in out


def test_gradcheck_covers_every_layer_type():
    from convnp import nn

    layer_types = {
        name for name in nn.__all__ if isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name), nn.Layer)
    } - {"Layer"}
    checked, modes, conv_variants = set(), set(), set()
    for _, target, x, training in cli.gradcheck_cases():
        checked.add(type(target).__name__)
        modes.add((type(target).__name__, training))
        if isinstance(target, nn.Conv2D):
            conv_variants.add((target.stride, target.dilation, target.groups, target.padding))
        assert x.dtype == np.float64
    assert layer_types <= checked
    assert {("BatchNorm1D", True), ("BatchNorm1D", False), ("BatchNorm2D", True), ("BatchNorm2D", False)} <= modes
    assert ("Dropout", True) in modes and "Sequential" in checked
    assert any(stride != (1, 1) for stride, _, _, _ in conv_variants)
    assert any(dilation != (1, 1) for _, dilation, _, _ in conv_variants)
    assert any(groups > 1 for _, _, groups, _ in conv_variants)


def test_gradcheck_reports_failures(capsys):
    assert cli.main(["gradcheck", "--threshold", "1e-30"]) == 1
    assert "FAIL" in capsys.readouterr().out


# ------------------------------------------------------------ errors, --help
def test_missing_model_file(tmp_path, capsys):
    for command in (["evaluate", "--dataset", "digits"], ["predict"], ["summary"], ["export", "--onnx", "x.onnx"]):
        missing = str(tmp_path / "nope.npz")
        args = [command[0], missing, *command[1:]]
        if command[0] == "predict":
            args.append(str(tmp_path / "x.npy"))
        assert cli.main(args) == 1, command
        err = capsys.readouterr().err
        assert "nope.npz" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_damaged_model_file(trained_run, tmp_path, capsys):
    data = (trained_run / "model.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    assert cli.main(["evaluate", str(tmp_path / "truncated.npz"), "--dataset", "digits"]) == 1
    err = capsys.readouterr().err
    assert "truncated.npz" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--epochs", "0"],
        ["train", "--epochs", "x"],
        ["train", "--dataset", "imagenet"],
        ["train", "--model", "resnet"],
        ["train", "--lr", "-1"],
        ["evaluate"],
        ["predict", "model.npz"],
        ["summary", "--dataset", "digits", "--input-shape", "1", "8", "8"],
        ["nonsense"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_help_and_no_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "predict", "summary", "gradcheck", "export", "bench"):
        assert command in out
    assert cli.main([]) == 2


def test_python_m_convnp_help():
    result = subprocess.run([sys.executable, "-m", "convnp", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "usage: convnp" in result.stdout and "train" in result.stdout
    result = subprocess.run([sys.executable, "-m", "convnp", "train", "--help"], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0 and "--resume" in result.stdout and "digits" in result.stdout


# ------------------------------------------------------------ export, bench
def test_export_onnx(trained_run, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "model.onnx"
    assert cli.main(["export", str(trained_run / "model.npz"), "--onnx", str(out), "--opset", "17"]) == 0
    assert str(out) in capsys.readouterr().out
    graph = onnx.load(str(out))
    onnx.checker.check_model(graph)
    assert any(opset.version == 17 for opset in graph.opset_import if opset.domain in ("", "ai.onnx"))


def test_bench_calls_convnp_bench_main(monkeypatch):
    import types

    seen = {}

    def fake_main(argv):
        seen["argv"] = argv
        return 0

    module = types.ModuleType("convnp.bench")
    module.main = fake_main
    monkeypatch.setitem(sys.modules, "convnp.bench", module)
    monkeypatch.setattr(convnp, "bench", module, raising=False)
    assert cli.main(["bench", "--quick"]) == 0
    assert seen["argv"] == ["--quick"]
