"""Group normalisation as exporters write it without ONNX's GroupNormalization op, read as one layer.

PyTorch's exporter (and convnp's ``to_onnx``, for every opset) writes
``GroupNorm(G)`` on an input x of per-sample shape S = (C, ...) as five nodes:

    grouped = Reshape(x, [0, G, -1])                   (N, G, size / G)
    normed  = InstanceNormalization(grouped, s, b)     each (n, g) row standardised, then * s[g] + b[g]
    back    = Reshape(normed, Shape(x))                (N, *S); the shape may also be a constant
    scaled  = Mul(back, weight)                        weight (C, 1, ..., 1): one value per channel
    out     = Add(scaled, bias)                        bias likewise

and convnp's ``to_onnx`` writes ``LayerNorm`` below opset 17 the same way,
with G the number of positions before the normalised axes and weight and bias
of the normalised shape. ``Shape(x)`` is computed from the batch, which a
layer cannot read on its own; read together, the chain is one layer:

    out = standardise(x over each of G equal, consecutive slices of a sample) * W + B
    W = spread(s) * weight,  B = spread(b) * weight + bias      (W, B: shape S)

where spread(v) gives every position of slice g the value v[g]. The chain is
``GroupNorm(G)`` when G divides C and W and B vary only along the channels;
``LayerNorm(S[k:])`` when G is the product of the first k axes of S and W and B
do not vary along them. The Mul and the Add are optional.
"""

from __future__ import annotations

import numpy as np

from convnp.nn import GroupNorm, LayerNorm

__all__ = ["read_group_standardisation"]


def _single_reader(reader, name: str, op_type: str, what: str):
    node = reader.only_reader(name)
    if node is None or node.op_type != op_type or node.input[0] != name:
        raise ValueError(f"a reshape to (N, G, -1) is read only as the start of a group normalisation ({what})")
    return node


def _constant_after(reader, name: str, op_type: str, sample_shape: tuple[int, ...]):
    """The node of ``op_type`` that alone reads ``name`` with a constant as its other input, the
    constant's name, and the constant without a leading batch axis of size 1 (or three Nones)."""
    node, other = reader.constant_operand(name, op_type)
    if node is None:
        return None, None, None
    value = np.asarray(reader.constants[other], dtype=np.float64)
    if value.ndim == len(sample_shape) + 1 and value.shape[0] == 1:
        value = value[0]
    try:
        np.broadcast_to(value, sample_shape)
    except ValueError:
        message = f"its {op_type} by a constant of shape {value.shape} does not fit (N, *{sample_shape})"
        raise ValueError(message) from None
    return node, other, value


def _spread(per_slice: np.ndarray, groups: int, shape: tuple[int, ...]) -> np.ndarray:
    """Each of ``groups`` equal, consecutive slices of a sample of ``shape`` filled with its value."""
    values = np.broadcast_to(np.asarray(per_slice, dtype=np.float64).reshape(-1), (groups,))
    return np.repeat(values, int(np.prod(shape)) // groups).reshape(shape)


def _varies_outside(array: np.ndarray, keep_axes: tuple[int, ...]) -> bool:
    """Whether ``array`` changes along any axis not in ``keep_axes``."""
    index = tuple(slice(None) if axis in keep_axes else slice(0, 1) for axis in range(array.ndim))
    return not np.array_equal(array, np.broadcast_to(array[index], array.shape))


def read_group_standardisation(reader, node, x, shape: list[int]):
    """Read the chain starting at ``node`` (Reshape of ``x`` to ``shape`` = [0 or N, G, -1]) as one layer.

    Returns the graph node of the GroupNorm or LayerNorm; the chain's other
    nodes are folded into it (``reader.fold_into``). Raises ``ValueError`` when
    the nodes after the Reshape are not the chain above.
    """
    sample_shape, groups = tuple(x.shape), int(shape[1])
    size = int(np.prod(sample_shape))
    if groups < 1 or size % groups:
        raise ValueError(f"a reshape to {shape} does not split a sample of shape {sample_shape} into equal groups")
    if size > reader.max_constant_values:  # the scale and shift below are spread over a whole sample
        raise ValueError(f"a group normalisation of samples of {size:,} values is more than this file can describe")
    norm = _single_reader(reader, node.output[0], "InstanceNormalization", "no InstanceNormalization reads it")
    back = _single_reader(reader, norm.output[0], "Reshape", "no Reshape back follows the InstanceNormalization")
    shape_name = back.input[1]
    if reader.is_constant(shape_name):
        target = [int(d) for d in reader.constants[shape_name]]
        if len(target) != len(sample_shape) + 1 or tuple(target[1:]) != sample_shape:
            raise ValueError(f"the reshape back is to {target}, not to the input's shape (N, *{sample_shape})")
        shape_node = None
    else:  # Shape(x), as PyTorch writes it
        shape_node = next((n for n in reader.readers.get(node.input[0], []) if shape_name in n.output), None)
        if shape_node is None or shape_node.op_type != "Shape" or reader.only_reader(shape_name) is not back:
            raise ValueError("the reshape back is not to Shape(x) of the normalised input x, nor to a constant")
        if any(attribute.name in ("start", "end") for attribute in shape_node.attribute):
            raise ValueError("the reshape back reads part of Shape(x) (start or end), not the whole shape")
    scale = reader.constant(norm.input[1], "the InstanceNormalization's scale")
    shift = reader.constant(norm.input[2], "the InstanceNormalization's bias")
    eps = next((float(a.f) for a in norm.attribute if a.name == "epsilon"), 1e-5)
    weight, bias = _spread(scale, groups, sample_shape), _spread(shift, groups, sample_shape)
    chain, last, constants = [norm, back], back, []
    mul, factor_name, factor = _constant_after(reader, back.output[0], "Mul", sample_shape)
    if mul is not None:
        weight, bias = weight * factor, bias * factor
        chain, last, constants = chain + [mul], mul, constants + [factor]
    add, _, offset = _constant_after(reader, last.output[0], "Add", sample_shape)
    if add is not None:
        bias = bias + offset
        chain, constants = chain + [add], constants + [offset]
    weight, bias = np.broadcast_to(weight, sample_shape), np.broadcast_to(bias, sample_shape)
    # GroupNorm's export writes its weight and bias as (C, 1, ..., 1); LayerNorm's, of the
    # normalised shape. Where both layers compute the chain, that layout names the layer.
    per_position = any(_laid_out_per_position(value, len(sample_shape)) for value in constants)
    name = reader.layer_name(factor_name if mul is not None else norm.input[1])
    layer = _choose_layer(sample_shape, groups, weight, bias, per_position, eps, name)
    for later in chain + ([shape_node] if shape_node is not None else []):
        reader.fold_into(later, node)
    out = layer(x)
    if isinstance(layer, GroupNorm):
        weight, bias = weight.reshape(sample_shape[0], -1)[:, 0], bias.reshape(sample_shape[0], -1)[:, 0]
    else:
        leading = len(sample_shape) - len(layer.normalized_shape)
        weight, bias = weight[(0,) * leading], bias[(0,) * leading]
    reader.add_state(name, "weight", weight)
    reader.add_state(name, "bias", bias)
    return out


def _laid_out_per_position(value: np.ndarray, sample_rank: int) -> bool:
    """Whether a constant, aligned with the trailing axes of a sample, has more than one value
    along an axis after the channels (LayerNorm's layout, not GroupNorm's (C, 1, ..., 1))."""
    aligned = (1,) * (sample_rank - value.ndim) + value.shape
    return any(size > 1 for size in aligned[1:])


def _choose_layer(sample_shape, groups, weight, bias, per_position, eps, name):
    """GroupNorm(G) or LayerNorm(S[k:]), whichever computes the chain. Where both do, GroupNorm,
    unless the affine constants are laid out per position (as LayerNorm's export writes them) or
    the sample is a vector normalised as one group."""
    channels, rank = sample_shape[0], len(sample_shape)
    leading = next((k for k in range(rank) if int(np.prod(sample_shape[:k])) == groups), None)
    group_fits = channels % groups == 0 and not any(_varies_outside(a, (0,)) for a in (weight, bias))
    layer_fits = leading is not None and not any(
        _varies_outside(a, tuple(range(leading, rank))) for a in (weight, bias)
    )
    prefer_layer = per_position or (rank == 1 and groups == 1)
    if layer_fits and (prefer_layer or not group_fits):
        return LayerNorm(sample_shape[leading:], eps, name=name)
    if group_fits:
        return GroupNorm(groups, eps, name=name)
    raise ValueError(
        f"a group normalisation with {groups} groups of a sample of shape {sample_shape} whose scale and shift "
        "are neither per channel (GroupNorm) nor per position of the normalised axes (LayerNorm)"
    )
