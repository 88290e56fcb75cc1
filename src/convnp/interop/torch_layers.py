"""One convnp layer and the PyTorch modules that compute the same thing, in both directions.

Both bridges use this table: the chain one (``torch_sequential.py``, convnp
``Sequential`` <-> ``torch.nn.Sequential``) and the graph one
(``torch_graph_export.py`` and ``torch_fx_import.py``, convnp ``Model`` <->
any module torch.fx traces).

    convnp layer          PyTorch modules (roles, in order)
    Conv2D                [pad] Conv2d [activation]
    MaxPool2D             [pad: ConstantPad2d(-inf)] MaxPool2d(dilation, ceil_mode)
    AvgPool2D             [pad: ZeroPad2d] AvgPool2d(ceil_mode, count_include_pad)
    GlobalAvgPool2D       AdaptiveAvgPool2d(1), flatten: Flatten
    AdaptiveAvgPool2D     AdaptiveAvgPool2d(output size)
    ConvTranspose2D       ConvTranspose2d
    Upsample2D            Upsample(scale_factor, mode; bilinear with align_corners=False)
    Dense                 Linear [activation]
    Flatten, Identity     Flatten, Identity
    ReLU, LeakyReLU(alpha), ELU(alpha), Sigmoid, Tanh, Softmax(axis), Dropout(p)
                          ReLU, LeakyReLU(negative_slope=alpha), ELU(alpha), Sigmoid, Tanh, Softmax(dim=axis),
                          Dropout(p)
    Gaussian              TorchGaussian (exp(-x**2); defined here, created on first use)
    BatchNorm1D/2D        BatchNorm1d/2d (weight, bias, running_mean, running_var, eps, momentum)
    GroupNorm(G)          GroupNorm(G, C)
    LayerNorm             LayerNorm(normalized_shape; the per-sample shape when None)

The "main" module holds the layer's parameters under the layer's own keys
("weight", "running_mean"). A fused ``activation`` of Conv2D/Dense becomes a
module after it; padding that resolves to unequal sides becomes a pad module
in front, and going back a pad module in front of a conv or pool folds into
that layer's padding where that is exact (``torch_padding.py``).

``torch`` is imported only inside these functions.
"""

from __future__ import annotations

import numpy as np

from convnp._optional import require
from convnp.functional.geometry import pair
from convnp.interop.torch_padding import (
    check_folded_pool,
    folded_count_include_pad,
    folded_padding,
    needs_pad_module,
    pad_module,
    torch_window,
)
from convnp.nn.activations import ELU, Gaussian, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from convnp.nn.conv import Conv2D
from convnp.nn.conv_transpose import ConvTranspose2D
from convnp.nn.dense import Dense, Flatten
from convnp.nn.dropout import Dropout
from convnp.nn.layer import Layer
from convnp.nn.merge import Identity
from convnp.nn.normalization import BatchNorm1D, BatchNorm2D, GroupNorm, LayerNorm
from convnp.nn.pooling import AdaptiveAvgPool2D, AvgPool2D, GlobalAvgPool2D, MaxPool2D
from convnp.nn.upsample import Upsample2D

__all__ = [
    "INSTALL_HINT", "IGNORED_SUFFIX", "SUPPORTED_MODULES", "gaussian_class", "module_roles", "torch_modules",
    "layer_from_module", "upsample_layer", "softmax_layer", "check", "module_dtype", "to_numpy",
]  # fmt: skip

INSTALL_HINT = "pip install torch (see https://pytorch.org for the build that fits your machine)"
IGNORED_SUFFIX = "num_batches_tracked"
SUPPORTED_MODULES = (
    "Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Upsample (nearest, bilinear), Linear, "
    "Flatten, Identity, ReLU, LeakyReLU, ELU, Sigmoid, Tanh, TorchGaussian, Softmax, Dropout, BatchNorm1d, "
    "BatchNorm2d, GroupNorm, LayerNorm, and ZeroPad2d/ConstantPad2d in front of a conv or pool"
)


# ------------------------------------------------------------- the Gaussian module
_GAUSSIAN_CLASS = None


def gaussian_class():
    """The torch module for convnp's Gaussian activation, created on first use.

    It is defined inside this function so that importing convnp never imports
    torch. Its home is ``convnp.interop.torch_bridge.TorchGaussian`` (that module's
    ``__getattr__`` hands it out), the path pickled modules record.
    """
    global _GAUSSIAN_CLASS
    if _GAUSSIAN_CLASS is None:
        torch = require("torch", "convnp.interop.torch_bridge.TorchGaussian", hint=INSTALL_HINT)

        class TorchGaussian(torch.nn.Module):
            """out = exp(-x**2), convnp's ``Gaussian`` activation."""

            def forward(self, x):
                return torch.exp(-(x * x))

        TorchGaussian.__module__ = "convnp.interop.torch_bridge"
        TorchGaussian.__qualname__ = "TorchGaussian"
        _GAUSSIAN_CLASS = TorchGaussian
    return _GAUSSIAN_CLASS


# ------------------------------------------------------------------ convnp -> torch
def module_roles(layer: Layer) -> list[str]:
    """The PyTorch modules one convnp layer becomes, by role, in order.

    Roles: "pad" (an explicit pad module), "main" (the module holding the
    layer's parameters, or its only module), "activation" (a fused activation),
    "flatten" (after the AdaptiveAvgPool2d of a GlobalAvgPool2D).
    """
    if isinstance(layer, (Conv2D, MaxPool2D, AvgPool2D)):
        roles = ["pad", "main"] if needs_pad_module(layer) else ["main"]
    elif isinstance(layer, GlobalAvgPool2D):
        roles = ["main", "flatten"]
    else:
        roles = ["main"]
    if getattr(layer, "activation", None) is not None:
        roles.append("activation")
    return roles


def _parameter_free_module(layer: Layer, nn):
    """The torch module of a parameter-free convnp layer (an activation, Dropout, Identity, Flatten), or None."""
    if isinstance(layer, ReLU):
        return nn.ReLU()
    if isinstance(layer, LeakyReLU):
        return nn.LeakyReLU(negative_slope=layer.alpha)
    if isinstance(layer, ELU):
        return nn.ELU(alpha=layer.alpha)
    if isinstance(layer, Sigmoid):
        return nn.Sigmoid()
    if isinstance(layer, Tanh):
        return nn.Tanh()
    if isinstance(layer, Gaussian):
        return gaussian_class()()
    if isinstance(layer, Softmax):
        return nn.Softmax(dim=layer.axis)
    if isinstance(layer, Dropout):
        return nn.Dropout(p=layer.p)
    if isinstance(layer, Identity):
        return nn.Identity()
    if isinstance(layer, Flatten):
        return nn.Flatten()
    return None


def _torch_main(layer: Layer, nn, where: str):
    """The torch module holding a convnp layer's parameters (or its only module)."""
    module = _parameter_free_module(layer, nn)
    if module is not None:
        return module
    if isinstance(layer, (Conv2D, MaxPool2D, AvgPool2D)):
        window = torch_window(layer, where)  # padding (none behind a pad module), a pool's ceil_mode
        if isinstance(layer, Conv2D):
            return nn.Conv2d(
                layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                dilation=layer.dilation, groups=layer.groups, bias=layer.bias is not None, **window,
            )  # fmt: skip
        if isinstance(layer, MaxPool2D):
            return nn.MaxPool2d(layer.kernel_size, stride=layer.stride, dilation=layer.dilation, **window)
        return nn.AvgPool2d(layer.kernel_size, stride=layer.stride, count_include_pad=layer.count_include_pad, **window)
    if isinstance(layer, ConvTranspose2D):
        return nn.ConvTranspose2d(
            layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride, padding=layer.padding,
            output_padding=layer.output_padding, groups=layer.groups, bias=layer.bias is not None,
            dilation=layer.dilation,
        )  # fmt: skip
    if isinstance(layer, Upsample2D):
        height, width = layer.scale_factor
        scale = height if height == width else (float(height), float(width))
        align_corners = False if layer.mode == "bilinear" else None  # PyTorch takes it for the interpolating modes only
        return nn.Upsample(scale_factor=scale, mode=layer.mode, align_corners=align_corners)
    if isinstance(layer, GlobalAvgPool2D):
        return nn.AdaptiveAvgPool2d(1)
    if isinstance(layer, AdaptiveAvgPool2D):
        return nn.AdaptiveAvgPool2d(tuple(layer.output_shape[1:]))
    if isinstance(layer, Dense):
        return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    if isinstance(layer, BatchNorm1D):
        return nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, BatchNorm2D):
        return nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, GroupNorm):
        return nn.GroupNorm(layer.num_groups, layer.input_shape[0], eps=layer.eps)
    if isinstance(layer, LayerNorm):
        return nn.LayerNorm(list(layer.normalized_shape or layer.input_shape), eps=layer.eps)
    raise TypeError(f"to_torch: {where} ({type(layer).__name__}) has no PyTorch equivalent")


def torch_modules(layer: Layer, nn, where: str) -> list[tuple[str, object]]:
    """``(role, torch module)`` for each module of one convnp layer, following ``module_roles``.

    ``where`` names the layer in errors ("layer 3").
    """
    modules = []
    for role in module_roles(layer):
        if role == "pad":
            modules.append((role, pad_module(layer, nn)))
        elif role == "main":
            modules.append((role, _torch_main(layer, nn, where)))
        elif role == "flatten":
            modules.append((role, nn.Flatten()))
        else:  # the fused activation
            module = _parameter_free_module(layer.activation, nn)
            if module is None:
                raise TypeError(
                    f"to_torch: {where} ({type(layer).__name__}) has a fused activation "
                    f"{type(layer.activation).__name__} with no PyTorch equivalent"
                )
            modules.append((role, module))
    return modules


# ------------------------------------------------------------------ torch -> convnp
def to_numpy(value) -> np.ndarray:
    """A torch tensor (or array-like) as a NumPy array."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _int_pair(value, name: str = "value", minimum: int = 1) -> tuple[int, int]:
    """A torch size argument (an int, or a tuple or list of two) as ``(height, width)``."""
    return pair(tuple(value) if isinstance(value, list) else value, name, minimum=minimum)


def check(condition: bool, where: str, module, what: str) -> None:
    """``ValueError`` "from_torch: <where> (<module>) is not supported: <what>" unless ``condition``.

    ``module`` is shown when given (None for a function call, which ``where`` names).
    """
    if not condition:
        shown = "" if module is None else f" ({module!r})"
        raise ValueError(f"from_torch: {where}{shown} is not supported: {what}")


def upsample_layer(size, scale_factor, mode, align_corners, shape, where: str, module=None, name=None) -> Upsample2D:
    """The Upsample2D of ``nn.Upsample`` or ``F.interpolate`` arguments, for per-sample input ``shape``.

    The scale is the whole-number ``scale_factor`` (an int or a pair), or
    ``size`` divided by the input size when that divides evenly.
    """
    check(mode in ("nearest", "bilinear"), where, module, "mode must be 'nearest' or 'bilinear'")
    check(not align_corners, where, module, "align_corners must be False")
    check(len(shape) == 3, where, module, f"upsampling needs (C, H, W) inputs, got {tuple(shape)}")
    if size is not None:
        size = _int_pair(size)
        check(
            size[0] % shape[1] == 0 and size[1] % shape[2] == 0, where, module,
            f"the output size must be a whole multiple of the input size {tuple(shape[1:])}",
        )  # fmt: skip
        return Upsample2D((size[0] // shape[1], size[1] // shape[2]), mode=mode, name=name)
    factors = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
    check(
        len(factors) == 2 and all(isinstance(f, (int, float)) and f >= 1 and float(f) == int(f) for f in factors),
        where, module, "scale_factor must be a whole number (or a pair of them)",
    )  # fmt: skip
    return Upsample2D((int(factors[0]), int(factors[1])), mode=mode, name=name)


def softmax_layer(dim, shape, where: str, module=None, name=None) -> Softmax:
    """The Softmax of ``nn.Softmax(dim)`` or ``softmax(x, dim)`` on per-sample ``shape``: any axis but the batch's."""
    rank = len(shape) + 1
    if dim is None:  # PyTorch's legacy choice: dim 0 for 0-, 1- and 3-D tensors, 1 otherwise
        check(rank != 3, where, module, "dim=None picks the batch axis (dim 0) of 3-D inputs")
        return Softmax(name=name)
    check(
        isinstance(dim, int) and -rank <= dim < rank and dim % rank != 0, where, module,
        f"dim must be an axis of the {rank}-D input other than the batch axis (0 or {-rank})",
    )  # fmt: skip
    return Softmax(axis=dim, name=name)


def layer_from_module(module, nn, shape: tuple[int, ...], where: str, pad=None, name: str | None = None) -> Layer:
    """The convnp layer of one torch module reading per-sample ``shape``.

    ``where`` names the module in errors ("module 3", or a torch.fx node);
    ``pad`` is ``(where the pad module is, (top, bottom, left, right))`` of a pad module in front,
    or None; ``name`` is the layer's name. Raises ``TypeError`` for a module
    type without an equivalent, ``ValueError`` for settings convnp lacks.
    """
    kind = type(module).__name__
    if pad is not None and not isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        raise ValueError(
            f"from_torch: the pad module at {pad[0]} must be followed by Conv2d, MaxPool2d or AvgPool2d, not {kind}"
        )
    if type(module) is nn.Conv2d:
        check(module.padding_mode == "zeros", where, module, "padding_mode must be 'zeros'")
        kernel, stride, dilation = (_int_pair(v) for v in (module.kernel_size, module.stride, module.dilation))
        padding = folded_padding(module, pad, kernel, stride, dilation, shape[1:])
        return Conv2D(
            module.out_channels, kernel, stride=stride, padding=padding, dilation=dilation,
            groups=module.groups, use_bias=module.bias is not None, in_channels=module.in_channels, name=name,
        )  # fmt: skip
    if type(module) is nn.ConvTranspose2d:
        check(module.padding_mode == "zeros", where, module, "padding_mode must be 'zeros'")
        return ConvTranspose2D(
            module.out_channels, _int_pair(module.kernel_size), stride=_int_pair(module.stride),
            padding=_int_pair(module.padding, minimum=0), output_padding=_int_pair(module.output_padding, minimum=0),
            groups=module.groups, dilation=_int_pair(module.dilation), use_bias=module.bias is not None,
            in_channels=module.in_channels, name=name,
        )  # fmt: skip
    if type(module) in (nn.MaxPool2d, nn.AvgPool2d):
        kernel, stride = _int_pair(module.kernel_size), _int_pair(module.stride)
        if isinstance(module, nn.MaxPool2d):
            check(not module.return_indices, where, module, "return_indices must be False")
            dilation = _int_pair(module.dilation)
            cls, options = MaxPool2D, {"dilation": dilation}
        else:
            check(module.divisor_override is None, where, module, "divisor_override must be None")
            dilation = (1, 1)
            cls, options = AvgPool2D, {"count_include_pad": folded_count_include_pad(module, where, pad)}
        padding = folded_padding(module, pad, kernel, stride, dilation, shape[1:])
        layer = cls(kernel, stride=stride, padding=padding, ceil_mode=bool(module.ceil_mode), name=name, **options)
        check_folded_pool(module, where, pad, layer, shape)
        return layer
    if type(module) is nn.AdaptiveAvgPool2d:
        size = module.output_size
        return AdaptiveAvgPool2D(tuple(size) if isinstance(size, (tuple, list)) else size, name=name)
    if isinstance(module, nn.Upsample):  # UpsamplingNearest2d and UpsamplingBilinear2d too
        return upsample_layer(
            module.size, module.scale_factor, module.mode, module.align_corners, shape, where, module, name
        )
    if type(module) is nn.Linear:
        return Dense(module.out_features, use_bias=module.bias is not None, in_features=module.in_features, name=name)
    if type(module) is nn.Flatten:
        check(module.start_dim == 1 and module.end_dim == -1, where, module, "only Flatten(1, -1)")
        return Flatten(name=name)
    if type(module) is nn.Identity:
        return Identity(name=name)
    if type(module) is nn.ReLU:
        return ReLU(name=name)
    if type(module) is nn.LeakyReLU:
        return LeakyReLU(alpha=module.negative_slope, name=name)
    if type(module) is nn.ELU:
        return ELU(alpha=module.alpha, name=name)
    if type(module) is nn.Sigmoid:
        return Sigmoid(name=name)
    if type(module) is nn.Tanh:
        return Tanh(name=name)
    if type(module) is gaussian_class():
        return Gaussian(name=name)
    if type(module) is nn.Softmax:
        return softmax_layer(module.dim, shape, where, module, name)
    if type(module) is nn.Dropout:
        return Dropout(module.p, name=name)
    if type(module) in (nn.BatchNorm1d, nn.BatchNorm2d):
        check(module.track_running_stats, where, module, "track_running_stats must be True")
        check(module.momentum is not None, where, module, "momentum=None (cumulative) has no equivalent")
        cls = BatchNorm1D if isinstance(module, nn.BatchNorm1d) else BatchNorm2D
        return cls(momentum=module.momentum, eps=module.eps, num_features=module.num_features, name=name)
    if type(module) is nn.GroupNorm:
        check(shape[0] == module.num_channels, where, module, f"input shape {shape} has {shape[0]} channels")
        return GroupNorm(module.num_groups, eps=module.eps, name=name)
    if type(module) is nn.LayerNorm:  # LayerNorm checks that normalized_shape ends the per-sample shape
        normalized_shape = tuple(module.normalized_shape)
        return LayerNorm(None if normalized_shape == tuple(shape) else normalized_shape, module.eps, name=name)
    raise TypeError(f"from_torch: {where} ({kind}) is not supported; supported: {SUPPORTED_MODULES}")


def module_dtype(module) -> str:
    """ "float32" or "float64": the dtype of the module's first floating-point parameter or buffer."""
    import torch

    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point():
            if tensor.dtype not in (torch.float32, torch.float64):
                raise TypeError(f"from_torch: parameters must be float32 or float64, got {tensor.dtype}")
            return "float64" if tensor.dtype == torch.float64 else "float32"
    return "float32"
