"""Interoperability: ONNX export and import, and models and weights to and from PyTorch.

- ``to_onnx(model, path, opset=17)`` writes a standard ONNX graph whose output
  is ``model.predict``'s class probabilities, for a ``Sequential`` or a graph
  ``Model`` (needs ``pip install convnp[onnx]``).
- ``from_onnx(path_or_model)`` reads an ONNX graph of 2-D CNN ops into a
  trainable ``Model`` (needs ``pip install convnp[onnx]``).
- ``to_torch(model)`` builds the equivalent torch module: a ``torch.nn.Sequential``
  for a ``Sequential``, a ``torch.fx.GraphModule`` with the same state_dict keys
  for a ``Model``. ``from_torch(module, input_shape)`` builds a convnp
  ``Sequential`` from a ``torch.nn.Sequential``, and a ``Model`` with the
  module's keys from any other module torch.fx can trace;
  ``from_torch(state_dict, model=model)`` loads PyTorch weights into a model
  (need ``pip install torch``). ``torch_key_map(model)`` relates the state_dict keys.

The optional packages are imported only when these functions are called, so
importing convnp never needs them. See docs/interop.md.
"""

from convnp.interop.onnx_export import build_onnx_model, to_onnx
from convnp.interop.onnx_import import OnnxImportError, from_onnx
from convnp.interop.torch_bridge import from_torch, to_torch, torch_key_map

__all__ = ["to_onnx", "build_onnx_model", "from_onnx", "OnnxImportError", "to_torch", "from_torch", "torch_key_map"]
