"""``convnp summary``, ``convnp gradcheck``, ``convnp export`` and ``convnp bench``."""

from __future__ import annotations

import sys

import pytest

import convnp
from convnp.cli import main
from convnp.cli.gradcheck_suite import gradcheck_cases
from convnp.models import MODELS


def test_summary_of_builder_and_file(trained_run, capsys):
    assert main(["summary", "--model", "mnist_cnn"]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith(MODELS["mnist_cnn"]().summary().splitlines()[-1])
    assert "Total parameters: 421,642" in out and "Conv2D" in out and "(64, 7, 7)" in out

    assert main(["summary", str(trained_run / "model.npz")]) == 0
    assert capsys.readouterr().out.strip() == convnp.load(trained_run / "model.npz").summary()

    assert main(["summary", "--dataset", "cifar10"]) == 0
    out = capsys.readouterr().out
    assert "Sequential: input (3, 32, 32)" in out

    assert main(["summary", "--model", "lenet5", "--input-shape", "1", "32", "32"]) == 0
    assert "Sequential: input (1, 32, 32)" in capsys.readouterr().out


def test_gradcheck_passes_every_row(capsys):
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.rstrip().endswith(("PASS", "FAIL"))]
    expected_rows = sum(1 + len(target.parameters()) for _, target, _, _ in gradcheck_cases())
    assert len(rows) == expected_rows > 50
    assert all(row.rstrip().endswith("PASS") for row in rows)
    assert "all passed" in out


def test_gradcheck_reports_failures(capsys):
    assert main(["gradcheck", "--threshold", "1e-30"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_export_onnx(trained_run, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "model.onnx"
    assert main(["export", str(trained_run / "model.npz"), "--onnx", str(out), "--opset", "17"]) == 0
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
    assert main(["bench", "--quick"]) == 0
    assert seen["argv"] == ["--quick"]
