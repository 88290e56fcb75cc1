"""Export a convnp ``Sequential`` or graph ``Model`` as a standard ONNX graph.

``to_onnx(model, path)`` writes one ``.onnx`` file that ONNX Runtime (or any
ONNX consumer) runs with the same predictions as ``model.predict``:

    input          float32, shape ("N", *model.input_shape)   (N is dynamic)
    probabilities  float32, shape ("N", *model.output_shape)  softmax along axis 1

The graph ends in a ``Softmax(axis=1)``, exactly as ``model.predict`` does:
one is appended unless the model's last layer already is a ``Softmax`` layer.
The layers are written in the order of ``model.layers``, each reading the
tensors of the layers it reads in the model (a chain for a ``Sequential``);
``onnx_layers.py`` has each layer's nodes. Every tensor in the graph is
float32: a float64 model is exported with its parameters cast to float32
(ONNX Runtime's CPU kernels for convolution are float32-only).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from convnp._optional import require
from convnp.files.atomic import atomic_write_bytes
from convnp.functional.activations import softmax_forward
from convnp.interop.onnx_layers import INPUT_NAME, OUTPUT_NAME, GraphBuilder, emit_layer
from convnp.nn.network import Network
from convnp.nn.sequential import Sequential

__all__ = ["to_onnx", "build_onnx_model", "MIN_OPSET", "INPUT_NAME", "OUTPUT_NAME"]

MIN_OPSET = 13  # Softmax normalises along one axis from opset 13 on


def build_onnx_model(model, opset: int = 17):
    """The ``onnx.ModelProto`` that ``to_onnx`` writes (checked with ``onnx.checker``).

    Parameters
    ----------
    model : convnp.nn.Sequential or convnp.nn.Model
        A built model.
    opset : int
        ONNX opset version of the default domain, from ``MIN_OPSET`` (13) to the
        newest the installed ``onnx`` knows.

    Returns
    -------
    onnx.ModelProto
    """
    onnx = require("onnx", "convnp.interop.to_onnx", "onnx")
    from convnp._version import __version__

    if not isinstance(model, Network):
        raise TypeError(f"to_onnx: expected a convnp Sequential or Model, got {type(model).__name__}")
    if not model.built:
        raise RuntimeError(
            "to_onnx: the model is not built yet; pass input_shape= to Sequential or run a batch through it"
        )
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"to_onnx: opset must be an int, got {opset!r}")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"to_onnx: opset must be between {MIN_OPSET} and {newest} (the newest this onnx "
            f"{onnx.__version__} knows), got {opset}"
        )
    opset = int(opset)

    graph = GraphBuilder(onnx)
    values = {0: INPUT_NAME}  # value k: the output of layer k - 1
    for index, (layer, inputs, key) in enumerate(zip(model.layers, model.layer_inputs(), model.layer_keys())):
        values[index + 1] = emit_layer(graph, layer, [values[v] for v in inputs], key, f"layer {index}", opset)
    x = values[len(model.layers)]
    if not model.ends_in_softmax():  # the rule model.predict follows
        x = graph.node("Softmax", [x], "probabilities.Softmax", axis=1)
    # The last node writes the graph output directly (the output layer comes last, and nothing else reads it).
    last = graph.nodes[-1]
    last.output[0] = OUTPUT_NAME

    float_type = onnx.TensorProto.FLOAT
    kind = "Sequential" if isinstance(model, Sequential) else "Model"
    graph_proto = onnx.helper.make_graph(
        graph.nodes,
        f"convnp_{kind.lower()}",
        [onnx.helper.make_tensor_value_info(INPUT_NAME, float_type, ["N", *model.input_shape])],
        [onnx.helper.make_tensor_value_info(OUTPUT_NAME, float_type, ["N", *model.output_shape])],
        initializer=graph.initializers,
    )
    opset_id = onnx.helper.make_opsetid("", opset)
    model_proto = onnx.helper.make_model(
        graph_proto,
        opset_imports=[opset_id],
        producer_name="convnp",
        producer_version=__version__,
        doc_string=(
            f"convnp {kind} exported by convnp.interop.to_onnx: float32 input "
            f"(N, {', '.join(map(str, model.input_shape))}), output the class probabilities "
            "(softmax along axis 1), as model.predict returns them"
        ),
    )
    model_proto.ir_version = onnx.helper.find_min_ir_version_for([opset_id])
    onnx.checker.check_model(model_proto, full_check=True)
    return model_proto


def _verify(model, path: Path, atol: float) -> None:
    """Run the file in ONNX Runtime on a random batch and compare with the model's probabilities.

    Computed in this process alone (not with ``model.predict``, which is collective under MPI:
    an export on rank 0 must not wait for the other ranks).
    """
    ort = require("onnxruntime", "convnp.interop.to_onnx(verify=True)", "onnx")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, *model.input_shape)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
    with model.logits_view(True) as stop:
        logits = model.forward_layers(model.prepare_input(x), training=False, stop=stop, keep_caches=False)
    expected = softmax_forward(logits)[0]
    error = float(np.max(np.abs(onnx_out - expected)))
    if not error <= atol:
        raise RuntimeError(
            f"to_onnx: ONNX Runtime's output for {path} differs from model.predict by {error:.3g} (tolerance {atol:g})"
        )


def to_onnx(model, path: str | os.PathLike, opset: int = 17, verify: bool = False, atol: float = 1e-4) -> Path:
    """Write ``model`` as an ONNX file whose output is ``model.predict``'s probabilities.

    Parameters
    ----------
    model : convnp.nn.Sequential or convnp.nn.Model
        A built model (float32 or float64; a float64 model's parameters are cast
        to float32, since the graph is float32 throughout).
    path : str or os.PathLike
        Where to write the file (written atomically; folders are created).
    opset : int, default 17
        ONNX opset version (13 or newer). From 17 on, LayerNorm is one
        ``LayerNormalization`` node; below, it is built from standard ops.
    verify : bool, default False
        After writing, run the file in ONNX Runtime (needs ``onnxruntime``) on a
        random batch of 3 and raise ``RuntimeError`` if the probabilities differ
        from ``model.predict``'s by more than ``atol``.
    atol : float, default 1e-4
        Tolerance of ``verify``.

    Returns
    -------
    pathlib.Path
        The path written.

    Notes
    -----
    The graph has one input, "input" (float32, shape ``("N", *model.input_shape)``
    with a dynamic batch size N), and one output, "probabilities" (float32, shape
    ``("N", *model.output_shape)``): the softmax along axis 1 of the model's
    output, appended unless the last layer is ``Softmax``, exactly as
    ``model.predict`` computes it. Feed images as ``model.predict`` sees them
    after its input preparation: float32, NCHW, in [0, 1] for 8-bit pixels.

    Raises
    ------
    ImportError
        When ``onnx`` (or, with ``verify``, ``onnxruntime``) is not installed; the
        message names ``pip install convnp[onnx]``.
    TypeError
        For a layer type without an ONNX export (named with its index).
    """
    model_proto = build_onnx_model(model, opset=opset)
    path = Path(path)
    atomic_write_bytes(path, model_proto.SerializeToString())
    if verify:
        _verify(model, path, atol)
    return path
