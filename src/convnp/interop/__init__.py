"""Interoperability: ONNX export and import, and weights to and from PyTorch.

- ``to_onnx(model, path, opset=17)`` writes a standard ONNX graph whose output
  is ``model.predict``'s class probabilities (needs ``pip install convnp[onnx]``).
- ``from_onnx(path_or_model)`` reads an ONNX graph of 2-D CNN ops into a
  trainable ``Model`` (needs ``pip install convnp[onnx]``).
- ``to_torch(model)`` builds the equivalent ``torch.nn.Sequential``;
  ``from_torch(module, input_shape)`` builds a convnp ``Sequential`` from one, and
  ``from_torch(state_dict, model=model)`` loads PyTorch weights into a model
  (need ``pip install torch``). ``torch_key_map(model)`` relates the state_dict keys.

The optional packages are imported only when these functions are called, so
importing convnp never needs them. See docs/interop.md.
"""

from convnp.interop.onnx_export import build_onnx_model, to_onnx
from convnp.interop.onnx_import import OnnxImportError, from_onnx
from convnp.interop.torch_bridge import from_torch, to_torch, torch_key_map

__all__ = ["to_onnx", "build_onnx_model", "from_onnx", "OnnxImportError", "to_torch", "from_torch", "torch_key_map"]
