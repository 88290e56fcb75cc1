"""``convnp import MODEL.onnx --out MODEL.npz``: an ONNX file becomes a convnp model file."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import convnp
from convnp.cli import main
from convnp.interop import to_onnx
from convnp.models import lenet5

onnx = pytest.importorskip("onnx")


@pytest.fixture
def onnx_file(tmp_path):
    model = lenet5(input_shape=(1, 12, 12), num_classes=4, seed=0)
    return model, to_onnx(model, tmp_path / "lenet.onnx")


def test_import_writes_a_model_file_that_predicts_like_the_original(onnx_file, tmp_path, capsys):
    model, path = onnx_file
    out = tmp_path / "models" / "lenet.npz"
    assert main(["import", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "Conv2D" in printed and "Total parameters: " in printed
    x = np.random.default_rng(0).random((3, 1, 12, 12)).astype(np.float32)
    np.testing.assert_allclose(convnp.load(out).predict(x), model.predict(x), atol=1e-6)


def test_import_defaults_to_the_onnx_name_and_verifies_with_onnx_runtime(onnx_file, capsys):
    pytest.importorskip("onnxruntime")
    _, path = onnx_file
    assert main(["import", str(path), "--verify"]) == 0
    assert "verified" in capsys.readouterr().out
    assert path.with_suffix(".npz").is_file()


def test_import_takes_the_input_shape_of_a_symbolic_graph(tmp_path, capsys):
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "symbolic",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", "C", "H", "W"])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )
    path = tmp_path / "relu.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    assert main(["import", str(path)]) == 1
    assert "unknown per-sample sizes; pass input_shape" in capsys.readouterr().err
    assert main(["import", str(path), "--input-shape", "2", "5", "5"]) == 0
    assert convnp.load(tmp_path / "relu.npz").input_shape == (2, 5, 5)


def test_an_unsupported_node_is_one_line_naming_it(tmp_path, capsys):
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Sin", ["x"], ["y"], name="wave")],
        "sine",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3])],
    )
    path = tmp_path / "sine.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    assert main(["import", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("convnp import: error: from_onnx: node 'wave' (Sin): the op is not supported")
    assert len(err.strip().splitlines()) == 1
    assert not path.with_suffix(".npz").exists()


def test_a_missing_file_and_missing_onnx_are_one_line(tmp_path, capsys, monkeypatch):
    assert main(["import", str(tmp_path / "nope.onnx")]) == 1
    err = capsys.readouterr().err
    assert "nope.onnx" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["import", str(tmp_path / "nope.onnx")]) == 1
    assert "pip install convnp[onnx]" in capsys.readouterr().err


def test_import_is_listed_in_the_help(capsys):
    assert main(["--help"]) == 0
    assert "import" in capsys.readouterr().out
    assert main(["import", "--help"]) == 0
    assert "--out" in capsys.readouterr().out
