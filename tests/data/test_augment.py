"""Augmentation: exact pixel movement of shifts and crops, flips, dtypes, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from convnp.data import Augment, BatchIterator, random_crop, random_flip, random_shift, shift


def _batch(n=4, c=2, h=5, w=6, dtype=np.float32):
    """Every pixel distinct and non-zero, so a moved pixel can be told apart from padding."""
    return (np.arange(n * c * h * w) + 1).reshape(n, c, h, w).astype(dtype)


def _shift_reference(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """out[c, i, j] = image[c, i - dy, j - dx], 0 outside: one pixel at a time."""
    out = np.zeros_like(image)
    _, h, w = image.shape
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[:, i, j] = image[:, i - dy, j - dx]
    return out


def test_shift_by_a_known_offset_moves_pixels():
    x = _batch()
    out = shift(x, 1, -2)  # down one row, left two columns
    np.testing.assert_array_equal(out[:, :, 1:, :-2], x[:, :, :-1, 2:])
    assert np.all(out[:, :, 0, :] == 0) and np.all(out[:, :, :, -2:] == 0)
    assert out[0, 0, 1, 0] == x[0, 0, 0, 2]


def test_shift_per_sample_offsets_match_the_pixel_loop():
    x = _batch(n=5)
    dy = np.array([0, 2, -1, 5, -7])  # 5 and -7 leave nothing of a 5-row image
    dx = np.array([0, -3, 1, 0, 2])
    out = shift(x, dy, dx)
    for n in range(5):
        np.testing.assert_array_equal(out[n], _shift_reference(x[n], dy[n], dx[n]))
    np.testing.assert_array_equal(out[0], x[0])
    assert np.all(out[3] == 0) and np.all(out[4] == 0)


def _find_offset(original: np.ndarray, shifted: np.ndarray, max_shift: int) -> tuple[int, int]:
    matches = [
        (dy, dx)
        for dy in range(-max_shift, max_shift + 1)
        for dx in range(-max_shift, max_shift + 1)
        if np.array_equal(shifted, _shift_reference(original, dy, dx))
    ]
    assert len(matches) == 1, "output is not a zero-filled shift of the input"
    return matches[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_random_shift_is_a_per_sample_shift_within_range(dtype):
    x = _batch(n=40, c=1, h=6, w=6, dtype=dtype) % 250 + 1
    out = random_shift(x, max_shift=2, rng=0)
    assert out.shape == x.shape and out.dtype == x.dtype
    offsets = {_find_offset(x[n], out[n], 2) for n in range(40)}
    assert len(offsets) > 5  # offsets differ between samples
    assert all(abs(dy) <= 2 and abs(dx) <= 2 for dy, dx in offsets)


def test_random_shift_is_seeded_and_zero_is_identity():
    x = _batch(n=16)
    np.testing.assert_array_equal(random_shift(x, 3, rng=5), random_shift(x, 3, rng=5))
    assert not np.array_equal(random_shift(x, 3, rng=5), random_shift(x, 3, rng=6))
    np.testing.assert_array_equal(random_shift(x, 0, rng=5), x)


def test_random_crop_takes_a_window_of_the_padded_image():
    x = _batch(n=30, c=3, h=8, w=8)
    out = random_crop(x, size=(5, 6), padding=1, rng=2)
    assert out.shape == (30, 3, 5, 6) and out.dtype == np.float32
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    starts = set()
    for n in range(30):
        # The window's first pixel is unique in the image, unless it lies in the padding.
        found = [
            (top, left)
            for top in range(10 - 5 + 1)
            for left in range(10 - 6 + 1)
            if np.array_equal(out[n], padded[n, :, top : top + 5, left : left + 6])
        ]
        assert len(found) == 1
        starts.add(found[0])
    assert len(starts) > 5


def test_random_crop_defaults_and_errors():
    x = _batch()
    np.testing.assert_array_equal(random_crop(x, rng=0), x)  # full size, no padding
    with pytest.raises(ValueError, match="does not fit"):
        random_crop(x, size=7, padding=0)
    with pytest.raises(ValueError, match="padding"):
        random_crop(x, padding=-1)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_crop(x[0, 0], padding=1)


def test_three_dimensional_batches_keep_their_shape():
    x = _batch(c=1)[:, 0]  # (N, H, W)
    out = random_shift(x, 1, rng=0)
    assert out.shape == x.shape
    np.testing.assert_array_equal(shift(x, 1, 0)[:, 1:], x[:, :-1])
    assert random_flip(x, p=1.0).shape == x.shape


def test_random_flip_mirrors_width():
    x = _batch(n=64, dtype=np.uint8)
    np.testing.assert_array_equal(random_flip(x, p=1.0, rng=0), x[..., ::-1])
    np.testing.assert_array_equal(random_flip(x, p=0.0, rng=0), x)
    out = random_flip(x, p=0.5, rng=0)
    assert out.dtype == np.uint8
    flipped = [not np.array_equal(out[n], x[n]) for n in range(64)]
    for n in range(64):
        np.testing.assert_array_equal(out[n], x[n][..., ::-1] if flipped[n] else x[n])
    assert 16 < sum(flipped) < 48
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        random_flip(x, p=1.5)


def test_inputs_are_not_modified():
    x = _batch()
    kept = x.copy()
    random_shift(x, 2, rng=0)
    random_crop(x, size=3, padding=1, rng=0)
    random_flip(x, p=1.0, rng=0)
    np.testing.assert_array_equal(x, kept)


def test_augment_in_a_batch_iterator_is_reproducible():
    x = _batch(n=20, c=3, h=8, w=8)
    y = np.arange(20)
    augment = Augment(max_shift=2, flip=True)

    def run(seed):
        return [(xb.copy(), yb.copy()) for xb, yb in BatchIterator(x, y, 8, rng=seed, transform=augment)]

    first, second = run(11), run(11)
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert any(not np.array_equal(xb, x[yb]) for xb, yb in first)  # it did change images
    assert "max_shift=(2, 2)" in repr(augment)


def test_no_use_of_the_global_random_state():
    state = np.random.get_state()[1].copy()  # noqa: NPY002 - checking it is untouched
    x = _batch()
    random_shift(x, 2)
    random_flip(x)
    list(BatchIterator(x, np.arange(4), 2, transform=Augment(1, flip=True)))
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # noqa: NPY002
