"""Image augmentation on NCHW batches: shifts, crops, horizontal flips and random erasing.

Every function works on a whole batch at once (one random draw per sample, no
Python loop over samples), keeps the input dtype, and takes its randomness
from ``rng`` (a Generator, a seed, or None).

How a crop is taken without a loop: pad the batch with zeros, view every
``(out_h, out_w)`` window of it (``sliding_window_view``, no copy), then pick
one window per sample with fancy indexing:

    windows[n, c, i, j, p, q] = x_padded[n, c, i + p, j + q]
    out[n, c, p, q] = windows[n, c, top[n], left[n], p, q]

A shift by ``(dy, dx)`` is the crop at ``(top, left) = (pad - dy, pad - dx)``:
``out[n, c, i, j] = x[n, c, i - dy, j - dx]``, zero where that falls outside.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from convnp._random import RngLike, as_generator

__all__ = ["shift", "random_shift", "random_crop", "random_flip", "random_erase", "Augment"]


def _pair(value, name: str, owner: str) -> tuple[int, int]:
    """An int or a pair of ints >= 0 as (height, width)."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise ValueError(f"{owner}: {name} must be an int >= 0 or a pair of them, got {value!r}")
    return int(values[0]), int(values[1])


def _as_nchw(x, owner: str) -> tuple[np.ndarray, bool]:
    """(x as (N, C, H, W), whether it came as (N, H, W) and C=1 was added)."""
    x = np.asarray(x)
    if x.ndim == 3:
        return x[:, None], True  # (N, H, W) -> (N, 1, H, W)
    if x.ndim != 4:
        raise ValueError(f"{owner}: expected a (N, C, H, W) or (N, H, W) batch, got {x.shape}")
    return x, False


def _crop_windows(x_padded: np.ndarray, top: np.ndarray, left: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """One ``(out_h, out_w)`` window per sample, at rows ``top[n]`` and columns ``left[n]``."""
    windows = sliding_window_view(x_padded, (out_h, out_w), axis=(2, 3))
    # windows: (N, C, Hp - out_h + 1, Wp - out_w + 1, out_h, out_w), a view.
    samples = np.arange(len(x_padded))
    # Advanced indices split by the channel slice move to the front:
    # result (N, C, out_h, out_w), a fresh array.
    return windows[samples, :, top, left]


def _pad_spatial(x: np.ndarray, pad_h: int, pad_w: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))


def shift(x, dy, dx) -> np.ndarray:
    """Translate each image by ``(dy, dx)`` pixels, filling with zeros.

    Positive ``dy`` moves the content down, positive ``dx`` to the right:
    ``out[n, c, i, j] = x[n, c, i - dy[n], j - dx[n]]`` (0 outside the image).

    Parameters
    ----------
    x : array_like
        Batch ``(N, C, H, W)`` (or ``(N, H, W)``).
    dy, dx : int or array_like of int, shape (N,)
        One offset for the whole batch, or one per sample.

    Shape:
        x: (N, C, H, W) -> out: (N, C, H, W), same dtype
    """
    x4, added_channel = _as_nchw(x, "shift")
    n, _, h, w = x4.shape
    dy = np.broadcast_to(np.asarray(dy, dtype=np.int64), (n,))
    dx = np.broadcast_to(np.asarray(dx, dtype=np.int64), (n,))
    # Padding beyond the image size changes nothing: the window is all zeros then.
    pad_h = int(min(np.abs(dy).max(initial=0), h))
    pad_w = int(min(np.abs(dx).max(initial=0), w))
    x_padded = _pad_spatial(x4, pad_h, pad_w)  # (N, C, H + 2*pad_h, W + 2*pad_w)
    top = pad_h - np.clip(dy, -pad_h, pad_h)
    left = pad_w - np.clip(dx, -pad_w, pad_w)
    out = _crop_windows(x_padded, top, left, h, w)
    return out[:, 0] if added_channel else out


def random_crop(x, size=None, padding=0, rng: RngLike = None) -> np.ndarray:
    """Zero-pad each image, then cut a ``size`` window at a random place (per sample).

    With ``size`` equal to the image size this is a random shift of up to
    ``padding`` pixels (the usual CIFAR-10 recipe: ``padding=4``).

    Parameters
    ----------
    x : array_like
        Batch ``(N, C, H, W)`` (or ``(N, H, W)``).
    size : int or (int, int), optional
        Output ``(out_h, out_w)``; default the input's ``(H, W)``.
    padding : int or (int, int)
        Zeros added on each side (top and bottom, left and right).
    rng : numpy.random.Generator, int or None

    Shape:
        x: (N, C, H, W) -> out: (N, C, out_h, out_w), same dtype;
        needs out_h <= H + 2*pad_h and out_w <= W + 2*pad_w
    """
    x4, added_channel = _as_nchw(x, "random_crop")
    n, _, h, w = x4.shape
    pad_h, pad_w = _pair(padding, "padding", "random_crop")
    out_h, out_w = (h, w) if size is None else _pair(size, "size", "random_crop")
    if not (1 <= out_h <= h + 2 * pad_h and 1 <= out_w <= w + 2 * pad_w):
        raise ValueError(
            f"random_crop: size {(out_h, out_w)} does not fit input {x4.shape} with padding {(pad_h, pad_w)}"
        )
    rng = as_generator(rng)
    top = rng.integers(0, h + 2 * pad_h - out_h + 1, size=n)  # inclusive of the last start
    left = rng.integers(0, w + 2 * pad_w - out_w + 1, size=n)
    x_padded = _pad_spatial(x4, pad_h, pad_w)  # (N, C, H + 2*pad_h, W + 2*pad_w)
    out = _crop_windows(x_padded, top, left, out_h, out_w)
    return out[:, 0] if added_channel else out


def random_shift(x, max_shift=2, rng: RngLike = None) -> np.ndarray:
    """Translate each image by a random ``(dy, dx)``, each uniform in ``[-max_shift, max_shift]``.

    Zero fill; the output has the input's shape and dtype. Equal to
    ``random_crop(x, padding=max_shift)``.

    Parameters
    ----------
    x : array_like
        Batch ``(N, C, H, W)`` (or ``(N, H, W)``).
    max_shift : int or (int, int)
        Largest shift in pixels, for both axes or as ``(rows, columns)``.
    rng : numpy.random.Generator, int or None

    Shape:
        x: (N, C, H, W) -> out: (N, C, H, W), same dtype
    """
    return random_crop(x, size=None, padding=_pair(max_shift, "max_shift", "random_shift"), rng=rng)


def random_flip(x, p: float = 0.5, rng: RngLike = None) -> np.ndarray:
    """Mirror each image left-right with probability ``p`` (horizontal flip).

    Meant for natural images (CIFAR-10); do not use it on digits, where a
    mirrored 2 or 7 is no longer the same class.

    Shape:
        x: (N, C, H, W) or (N, H, W) -> out: same shape and dtype
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"random_flip: p must be in [0, 1], got {p}")
    x = np.asarray(x)
    if x.ndim not in (3, 4):
        raise ValueError(f"random_flip: expected a (N, C, H, W) or (N, H, W) batch, got {x.shape}")
    flip = as_generator(rng).random(len(x)) < p  # (N,) which samples to mirror
    out = x.copy()
    out[flip] = x[flip][..., ::-1]  # reverse the width axis
    return out


def _unit_interval_pair(value, name: str, low_limit: float) -> tuple[float, float]:
    """A pair (low, high) with low_limit < low <= high, for random_erase's ranges."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"random_erase: {name} must be a pair (low, high), got {value!r}") from None
    if not (low_limit < low <= high):
        raise ValueError(f"random_erase: {name} must satisfy {low_limit} < low <= high, got {value!r}")
    return low, high


def random_erase(
    x,
    p: float = 0.5,
    scale=(0.02, 0.33),
    ratio=(0.3, 3.3),
    value: float | str = 0.0,
    rng: RngLike = None,
) -> np.ndarray:
    """Random erasing (Zhong et al. 2017): blank one random rectangle in each chosen image.

    Each image is chosen with probability ``p``. Its rectangle covers a
    fraction ``s ~ U(scale)`` of the image area with aspect ratio ``r``
    (``log r ~ U(log ratio)``, height / width):

        h = round(sqrt(s * H * W * r)),  w = round(sqrt(s * H * W / r)),
        both clipped to [1, H] and [1, W]
        top ~ U{0, ..., H - h},  left ~ U{0, ..., W - w}
        out[n, :, top:top+h, left:left+w] = value   (every channel)

    Where torchvision redraws a rectangle that does not fit (up to 10 times,
    then erases nothing), this clips it to the image, so every chosen image
    is erased and the whole batch is drawn at once without a Python loop.

    Parameters
    ----------
    x : array_like
        Batch ``(N, C, H, W)`` (or ``(N, H, W)``).
    p : float
        Probability that an image is erased.
    scale : (float, float)
        Range of the erased fraction of the area, 0 < low <= high (high <= 1 in practice).
    ratio : (float, float)
        Range of the rectangle's aspect ratio (height / width), 0 < low <= high.
    value : float or "random"
        Fill value, or "random" for uniform noise in [0, 1) per erased pixel
        (the paper's choice for images in [0, 1]).
    rng : numpy.random.Generator, int or None

    Shape:
        x: (N, C, H, W) or (N, H, W) -> out: same shape and dtype (a new array)
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"random_erase: p must be in [0, 1], got {p}")
    scale = _unit_interval_pair(scale, "scale", 0.0)
    ratio = _unit_interval_pair(ratio, "ratio", 0.0)
    if not (value == "random" or (isinstance(value, (int, float, np.number)) and not isinstance(value, bool))):
        raise ValueError(f"random_erase: value must be a number or 'random', got {value!r}")
    x4, added_channel = _as_nchw(x, "random_erase")
    n, _, height, width = x4.shape
    rng = as_generator(rng)
    chosen = rng.random(n) < p  # (N,)
    area = height * width * rng.uniform(scale[0], scale[1], size=n)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), size=n))
    h = np.clip(np.rint(np.sqrt(area * aspect)), 1, height).astype(np.int64)
    w = np.clip(np.rint(np.sqrt(area / aspect)), 1, width).astype(np.int64)
    top = (rng.random(n) * (height - h + 1)).astype(np.int64)  # uniform in {0, ..., H - h}
    left = (rng.random(n) * (width - w + 1)).astype(np.int64)
    rows = np.arange(height)
    cols = np.arange(width)
    inside_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # (N, H)
    inside_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # (N, W)
    mask = chosen[:, None, None] & inside_rows[:, :, None] & inside_cols[:, None, :]  # (N, H, W)
    mask = np.broadcast_to(mask[:, None], x4.shape)  # the same rectangle in every channel
    out = x4.copy()
    if value == "random":
        out[mask] = rng.random(int(mask.sum())).astype(out.dtype, copy=False)
    else:
        out[mask] = value
    return out[:, 0] if added_channel else out


class Augment:
    """A batch transform: random shift, then (optionally) a random horizontal flip and random erasing.

    Pass it as ``BatchIterator(..., transform=Augment(max_shift=2))``; it is
    called as ``augment(x_batch, rng=generator)``.

    Parameters
    ----------
    max_shift : int or (int, int)
        Largest random translation in pixels (0: none).
    flip : bool
        Mirror half of the images left-right (for CIFAR-10, not for digits).
    flip_p : float
        Probability of a flip when ``flip`` is on.
    erase_p : float
        Probability of random erasing per image (0: off); see ``random_erase``.
    erase_scale, erase_ratio, erase_value
        ``random_erase``'s ``scale``, ``ratio`` and ``value``.
    """

    def __init__(
        self,
        max_shift=0,
        flip: bool = False,
        flip_p: float = 0.5,
        erase_p: float = 0.0,
        erase_scale=(0.02, 0.33),
        erase_ratio=(0.3, 3.3),
        erase_value: float | str = 0.0,
    ):
        self.max_shift = _pair(max_shift, "max_shift", "Augment")
        self.flip = flip
        self.flip_p = flip_p
        if not 0.0 <= erase_p <= 1.0:
            raise ValueError(f"Augment: erase_p must be in [0, 1], got {erase_p}")
        self.erase_p = float(erase_p)
        self.erase_scale = tuple(erase_scale)
        self.erase_ratio = tuple(erase_ratio)
        self.erase_value = erase_value

    def __call__(self, x, rng: RngLike = None) -> np.ndarray:
        rng = as_generator(rng)
        out = np.asarray(x)
        if self.max_shift != (0, 0):
            out = random_shift(out, self.max_shift, rng=rng)
        if self.flip:
            out = random_flip(out, self.flip_p, rng=rng)
        if self.erase_p > 0.0:
            out = random_erase(out, self.erase_p, self.erase_scale, self.erase_ratio, self.erase_value, rng=rng)
        return out

    def __repr__(self) -> str:
        erase = f", erase_p={self.erase_p}" if self.erase_p > 0.0 else ""
        return f"Augment(max_shift={self.max_shift}, flip={self.flip}, flip_p={self.flip_p}{erase})"
