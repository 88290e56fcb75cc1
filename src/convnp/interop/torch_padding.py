"""Padding between convnp and PyTorch: convnp pads each side of a conv or pool on its own, PyTorch's layers both alike.

To PyTorch (``pad_module``, ``torch_window``): a conv or pool whose padding
resolves to unequal sides ("same" with an even kernel or a stride, or
``((top, bottom), (left, right))``) gets an explicit pad module in front and
pads nothing itself:

    Conv2D, AvgPool2D   ZeroPad2d((left, right, top, bottom))
    MaxPool2D           ConstantPad2d((left, right, top, bottom), -inf): a max pool's padding never wins a max

From PyTorch (``folded_padding``, ``folded_count_include_pad``,
``check_folded_pool``): a pad module (ZeroPad2d, ConstantPad2d) or an
``F.pad`` (constant) in front of a conv or pool folds into that layer's padding
where that is exact, and is refused otherwise:

    Conv2d       zeros: always
    AvgPool2d    zeros: always when the pool counts its padding (count_include_pad=True); when it does not,
                 only where the pool pads nothing itself: PyTorch then counts the pad's zeros in every
                 average, as convnp's AvgPool2D(count_include_pad=True) counts its padding
    MaxPool2d    -inf only: a zero pad can win a max (where every input is negative), convnp's padding
                 never does, and convnp has no padding layer to keep the zeros apart

Ceil mode: PyTorch drops a last window that starts in the pool's own padding
after the input, but not one that starts in a pad module's padding (to the pool
that is input). Both directions compare PyTorch's output size with the layer's;
equal sizes mean the same windows (same start, same stride), and then the same
values. Where they differ, to_torch tries floor mode (ceil mode that adds no
window changes nothing), and otherwise both directions refuse.
"""

from __future__ import annotations

from convnp.functional.geometry import Padding, normalize_padding, pair, pool_geometry, pooled_output_size
from convnp.nn.layer import Layer
from convnp.nn.pooling import AvgPool2D, MaxPool2D

__all__ = [
    "resolved_pads", "needs_pad_module", "pad_module", "torch_window", "is_pad_module", "pad_sides",
    "check_pad_value", "folded_padding", "folded_count_include_pad", "check_folded_pool",
]  # fmt: skip


# ------------------------------------------------------------------ convnp -> torch
def resolved_pads(layer: Layer) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a built conv or pool layer, "same" resolved."""
    return normalize_padding(
        layer.padding, layer.kernel_size, layer.stride, layer.dilation, layer.input_shape[1:], layer.label
    )


def needs_pad_module(layer: Layer) -> bool:
    top, bottom, left, right = resolved_pads(layer)
    return top != bottom or left != right


def pad_module(layer: Layer, nn):
    """The pad module in front of a conv or pool with unequal sides: -inf before a max pool, zeros otherwise."""
    top, bottom, left, right = resolved_pads(layer)
    if isinstance(layer, MaxPool2D):
        return nn.ConstantPad2d((left, right, top, bottom), float("-inf"))
    return nn.ZeroPad2d((left, right, top, bottom))


def _torch_pool_hw(padded_hw, layer: Layer, padding: tuple[int, int], ceil_mode: bool) -> tuple[int, int]:
    """The output size of PyTorch's pool of ``layer`` with ``padding`` on each side, over an input of ``padded_hw``."""
    return tuple(
        pooled_output_size(
            padded_hw[a], layer.kernel_size[a], layer.stride[a], padding[a], padding[a], layer.dilation[a], ceil_mode
        )
        for a in range(2)
    )


def torch_window(layer: Layer, where: str) -> dict:
    """``padding`` (and, for a pool, ``ceil_mode``) of the torch conv or pool of ``layer`` (behind its pad module).

    Raises ``ValueError`` naming the layer where no pad module in front of a
    PyTorch pool computes the same: an average that leaves unequal padding out
    (count_include_pad=False), or a ceil-mode pool whose last window would start
    in the pad module's padding.
    """
    top, bottom, left, right = resolved_pads(layer)
    pooling = isinstance(layer, (MaxPool2D, AvgPool2D))
    if not needs_pad_module(layer):
        return {"padding": (top, left), "ceil_mode": layer.ceil_mode} if pooling else {"padding": (top, left)}
    if not pooling:
        return {"padding": (0, 0)}
    kind, sides = type(layer).__name__, ((top, bottom), (left, right))
    if isinstance(layer, AvgPool2D) and not layer.count_include_pad:
        raise ValueError(
            f"to_torch: {where} ({kind}) with count_include_pad=False pads unequal sides {sides}: PyTorch's "
            "AvgPool2d pads both sides alike, and the zeros of a pad module in front would count in the average"
        )
    height, width = layer.input_shape[1:]
    padded_hw = (height + top + bottom, width + left + right)
    for ceil_mode in dict.fromkeys((layer.ceil_mode, False)):
        if _torch_pool_hw(padded_hw, layer, (0, 0), ceil_mode) == tuple(layer.output_shape[1:]):
            return {"padding": (0, 0), "ceil_mode": ceil_mode}
    raise ValueError(
        f"to_torch: {where} ({kind}) with ceil_mode=True and unequal padding {sides}: behind a pad module, "
        f"PyTorch's pool keeps a last window starting in that padding, which the layer drops (output "
        f"{_torch_pool_hw(padded_hw, layer, (0, 0), True)} instead of {tuple(layer.output_shape[1:])})"
    )


# ------------------------------------------------------------------ torch -> convnp
def is_pad_module(module, nn) -> bool:
    return type(module) in (nn.ZeroPad2d, nn.ConstantPad2d)


def check_pad_value(value: float, pad_where: str, following, where: str, nn) -> None:
    """A pad in front of a max pool must pad with -inf, in front of anything else with zeros."""
    expected = float("-inf") if type(following) is nn.MaxPool2d else 0.0
    if value != expected:
        why = (
            ": a pad that can win a max is not a max pool's padding, and convnp has no padding layer"
            if type(following) is nn.MaxPool2d
            else ""
        )
        raise ValueError(f"from_torch: {pad_where} must pad with {expected} in front of {where}{why}")


def pad_sides(module, where: str, following, nn) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a ZeroPad2d/ConstantPad2d in front of the module ``following``.

    Checked with ``check_pad_value``; sides must be non-negative.
    """
    left, right, top, bottom = module.padding
    if min(module.padding) < 0:
        raise ValueError(f"from_torch: {where} ({module!r}) must pad non-negative sides")
    check_pad_value(module.value, f"{where} ({module!r})", following, type(following).__name__, nn)
    return (top, bottom, left, right)


def folded_padding(module, pad, kernel, stride, dilation, input_hw) -> Padding:
    """The convnp ``padding`` argument for a torch conv/pool plus an optional pad ``(where, sides)`` in front.

    Equal sides give a pair ``(PH, PW)``; unequal ones "same" where they are what
    "same" gives for this input, ``((top, bottom), (left, right))`` otherwise.
    """
    if isinstance(module.padding, str):  # Conv2d(padding="same" | "valid")
        own = normalize_padding(module.padding, kernel, stride, dilation)
        if pad is None:
            return module.padding
    else:
        ph, pw = pair(module.padding, "padding", minimum=0)
        own = (ph, ph, pw, pw)
        if pad is None:
            return (ph, pw)
    top, bottom, left, right = (a + b for a, b in zip(own, pad[1]))
    if top == bottom and left == right:
        return (top, left)
    if (top, bottom, left, right) == normalize_padding("same", kernel, stride, dilation, input_hw):
        return "same"
    return ((top, bottom), (left, right))


def folded_count_include_pad(module, where: str, pad) -> bool:
    """convnp's count_include_pad for a torch AvgPool2d with an optional pad ``(where, sides)`` in front.

    PyTorch counts a pad module's zeros as input: convnp counts them as padding
    (True), which is exact where the pool pads nothing of its own.
    """
    if pad is None or module.count_include_pad:
        return bool(module.count_include_pad)
    if pair(module.padding, "padding", minimum=0) != (0, 0):
        raise ValueError(
            f"from_torch: the pad module at {pad[0]} and {where} (AvgPool2d) with count_include_pad=False and "
            f"padding {module.padding}: the pad's zeros count in the average and the pool's own padding does not, "
            "which one convnp AvgPool2D cannot tell apart"
        )
    return True


def check_folded_pool(module, where: str, pad, layer: Layer, input_shape: tuple[int, ...]) -> None:
    """A ceil-mode pool with a pad ``(where, sides)`` folded in: PyTorch's output size must be the layer's."""
    if pad is None or not layer.ceil_mode:
        return
    top, bottom, left, right = pad[1]
    _, out_hw = pool_geometry(
        input_shape[1:], layer.kernel_size, layer.stride, layer.padding, layer.label, input_shape, layer.dilation, True
    )
    padded_hw = (input_shape[1] + top + bottom, input_shape[2] + left + right)
    torch_hw = _torch_pool_hw(padded_hw, layer, pair(module.padding, "padding", minimum=0), True)
    if torch_hw != out_hw:
        raise ValueError(
            f"from_torch: the pad module at {pad[0]} and {where} ({type(module).__name__}) with ceil_mode=True: "
            f"PyTorch keeps a last window starting in the pad module's padding, which convnp's padding drops "
            f"(output {torch_hw} against {out_hw})"
        )
