"""Crafted ONNX files: what a few bytes declare cannot make ``from_onnx`` allocate, and is refused clearly."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from convnp.interop import OnnxImportError, from_onnx

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from tests.interop.test_onnx_import import initializer, single_node_model  # noqa: E402

helper, numpy_helper = onnx.helper, onnx.numpy_helper


def _constant_then_add(nodes, inits=(), input_shape=("N", 4)):
    """``nodes`` compute the constant "c" (from nothing but constants), which "y" = x + c reads."""
    graph = helper.make_graph(
        [*nodes, helper.make_node("Add", ["x", "c"], ["y"])], "crafted",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], initializer=list(inits),
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _int64(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


@pytest.mark.parametrize(
    ("nodes", "inits", "match"),
    [
        (
            [helper.make_node("ConstantOfShape", ["s"], ["c"])],
            [_int64("s", [10**6, 10**6])],
            "1,000,000,000,000 values",
        ),
        (
            [helper.make_node("Expand", ["one", "s"], ["c"])],
            [initializer("one", [1.0]), _int64("s", [10**5, 10**6])],
            "100,000,000,000 values",
        ),
        (
            [helper.make_node("Range", ["a", "b", "d"], ["c"])],
            [_int64("a", 0), _int64("b", 10**12), _int64("d", 1)],
            "1,000,000,000,000 values",
        ),
        (
            [helper.make_node("Tile", ["one", "s"], ["c"])],
            [initializer("one", [1.0]), _int64("s", [10**10])],
            "10,000,000,000 values",
        ),
        (
            [
                helper.make_node(
                    "Constant",
                    [],
                    ["c"],
                    sparse_value=helper.make_sparse_tensor(initializer("v", [1.0]), _int64("i", [5]), [10**6, 10**6]),
                )
            ],
            [],
            "1,000,000,000,000 values",
        ),
    ],  # fmt: skip
    ids=["ConstantOfShape", "Expand", "Range", "Tile", "sparse-Constant"],
)
def test_a_crafted_constant_cannot_make_the_reader_allocate(nodes, inits, match):
    """A few bytes that declare a huge constant are refused from its inferred shape, before it is computed."""
    model_proto = _constant_then_add(nodes, inits)
    tracemalloc.start()
    try:
        with pytest.raises(OnnxImportError, match=f"{match}, more than the 16,777,216 a constant of this file"):
            from_onnx(model_proto)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20


def test_a_computed_constant_as_large_as_the_files_own_data_is_read():
    """The bound is the file's own data (or 2**24 values): a transposed weight of any size folds."""
    weight = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
         helper.make_node("Gemm", ["x", "wt"], ["y"], transB=1)], "transposed",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], initializer=[initializer("w", weight)],
    )  # fmt: skip
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = np.random.default_rng(1).random((2, 4)).astype(np.float32)
    np.testing.assert_allclose(from_onnx(model_proto).forward(x), x @ weight, rtol=1e-6)


def test_an_initializer_whose_data_does_not_fill_its_shape_is_refused():
    tensor = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[10**6, 10**6], float_data=[1.0, 2.0])
    node = helper.make_node("Gemm", ["x", "w"], ["y"])
    with pytest.raises(OnnxImportError, match="initializer 'w' cannot be read"):
        from_onnx(single_node_model(node, [tensor], input_shape=("N", 4)))


def _peak_bytes_of_refused(model_proto, match: str) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(OnnxImportError, match=match):
            from_onnx(model_proto)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_huge_declared_input_cannot_make_the_layers_allocate():
    """A LayerNormalization of samples of 10^10 values with a one-value scale: the layer would own
    10^10 weights, which the file's two numbers cannot fill; refused before any is allocated."""
    node = helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=1)
    model_proto = single_node_model(
        node, [initializer("s", [1.0]), initializer("b", [0.0])], input_shape=("N", 1, 10**5, 10**5), opset=17
    )
    peak = _peak_bytes_of_refused(model_proto, "would hold 20,000,000,000 values, more than the 16,777,216")
    assert peak < 4 * 2**20


def test_a_group_normalisation_of_huge_samples_is_refused_before_its_scale_is_spread():
    nodes = [
        helper.make_node("Reshape", ["x", "grouped_shape"], ["grouped"]),
        helper.make_node("InstanceNormalization", ["grouped", "s", "b"], ["normed"]),
        helper.make_node("Shape", ["x"], ["x_shape"]),
        helper.make_node("Reshape", ["normed", "x_shape"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "huge_group_norm", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 2, 10**5, 10**5])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.array([0, 2, -1], dtype=np.int64), "grouped_shape"),
                     initializer("s", [1.0, 1.0]), initializer("b", [0.0, 0.0])],
    )  # fmt: skip
    model_proto = onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert _peak_bytes_of_refused(model_proto, "samples of 20,000,000,000 values") < 4 * 2**20


def test_a_loop_of_constants_is_not_run():
    """A Loop reading constants only would be folded by running it: 10^12 trips. It is refused, not run."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
        [helper.make_tensor_value_info("i", onnx.TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", onnx.TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, [])],
    )  # fmt: skip
    loop = helper.make_node("Loop", ["trips", "go"], [], body=body, name="spin")
    inits = [numpy_helper.from_array(np.array(10**12, dtype=np.int64), "trips"),
             numpy_helper.from_array(np.array(True), "go")]  # fmt: skip
    graph = helper.make_graph(
        [loop, helper.make_node("Relu", ["x"], ["y"])], "loop",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], initializer=inits,
    )  # fmt: skip
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(OnnxImportError, match=r"node 'spin' \(Loop\): the op is not supported"):
        from_onnx(model_proto)


@pytest.mark.parametrize(
    ("node", "inits", "input_shape", "work"),
    [
        (  # a 2x2 kernel dilated to 201x201: the reference im2col would hold 3,136 x 40,401 values
            helper.make_node("Conv", ["image", "w"], ["c"], dilations=[200, 200]),
            [initializer("image", np.ones((1, 1, 256, 256))), initializer("w", np.ones((1, 1, 2, 2)))],
            ["N", 1, 56, 56],
            "126,697,536",
        ),
        (  # a broadcast matrix product: 1,024 products of (1 x 32) by (32 x 1,024) from 2 x 32,768 values
            helper.make_node("MatMul", ["a", "b"], ["c"]),
            [initializer("a", np.ones((1024, 1, 32))), initializer("b", np.ones((32, 1024)))],
            ["N", 1024, 1, 1024],
            "33,554,432",
        ),
        (  # a 1-channel image pooled with a 4096-value window
            helper.make_node("AveragePool", ["image"], ["c"], kernel_shape=[64, 64]),
            [initializer("image", np.ones((1, 1, 256, 256)))],
            ["N", 1, 193, 193],
            "152,571,904",
        ),
    ],  # fmt: skip
    ids=["dilated-Conv", "broadcast-MatMul", "AveragePool"],
)
def test_a_constant_product_whose_work_exceeds_the_files_data_is_not_computed(node, inits, input_shape, work):
    """A product of constants whose output is small can still take far more work (and, for the
    reference Conv, an im2col matrix) than the file holds values: refused before it runs."""
    match = f"computing it would take {work} multiply-adds, more than the 16,777,216"
    assert _peak_bytes_of_refused(_constant_then_add([node], inits, input_shape), match) < 4 * 2**20


def test_a_small_constant_product_is_computed():
    """A weight given as the product of two constants folds into one Dense weight."""
    a = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["w"]), helper.make_node("MatMul", ["x", "w"], ["y"])], "product",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[initializer("a", a), initializer("b", b)],
    )  # fmt: skip
    model = from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    x = np.random.default_rng(2).random((2, 4)).astype(np.float32)
    np.testing.assert_allclose(model.forward(x), x @ (a @ b), rtol=1e-5)


def test_an_einsum_of_constants_is_not_run():
    """Ops whose work the shapes do not bound (recurrences, Einsum, box searches) are never folded."""
    node = helper.make_node("Einsum", ["a", "b"], ["c"], equation="ij,jk->ik", name="contract")
    model_proto = _constant_then_add([node], [initializer("a", np.ones((2, 2))), initializer("b", np.ones((2, 2)))])
    with pytest.raises(OnnxImportError, match=r"node 'contract' \(Einsum\): the op is not supported"):
        from_onnx(model_proto)
