"""``convnp`` itself: one-line errors, exit statuses, --help, ``python -m convnp``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from convnp.cli import main


def test_missing_model_file(tmp_path, capsys):
    for command in (["evaluate", "--dataset", "digits"], ["predict"], ["summary"], ["export", "--onnx", "x.onnx"]):
        missing = str(tmp_path / "nope.npz")
        args = [command[0], missing, *command[1:]]
        if command[0] == "predict":
            args.append(str(tmp_path / "x.npy"))
        assert main(args) == 1, command
        err = capsys.readouterr().err
        assert "nope.npz" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_damaged_model_file(trained_run, tmp_path, capsys):
    data = (trained_run / "model.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    assert main(["evaluate", str(tmp_path / "truncated.npz"), "--dataset", "digits"]) == 1
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
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_help_and_no_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "predict", "summary", "gradcheck", "export", "bench"):
        assert command in out
    assert main([]) == 2


def test_python_m_convnp_help():
    result = subprocess.run([sys.executable, "-m", "convnp", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "usage: convnp" in result.stdout and "train" in result.stdout
    result = subprocess.run([sys.executable, "-m", "convnp", "train", "--help"], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0 and "--resume" in result.stdout and "digits" in result.stdout


def test_a_run_folder_stands_for_its_model(trained_run, tmp_path, capsys):
    for command in (["evaluate", str(trained_run)], ["summary", str(trained_run)]):
        assert main(command) == 0, command
    out = capsys.readouterr().out
    assert "digits test split" in out and "Total parameters" in out
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "empty"), "--dataset", "digits"]) == 1
    err = capsys.readouterr().err
    assert "is a folder without model.npz" in err and "Errno" not in err


def test_train_help_names_every_option_resume_allows(capsys):
    assert main(["train", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    assert "only --epochs, --data-dir and --verbose may be given with it" in out
