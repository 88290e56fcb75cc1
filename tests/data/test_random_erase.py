"""Random erasing: one axis-aligned rectangle per chosen image, in every channel, sized as drawn."""

from __future__ import annotations

import numpy as np
import pytest

from convnp.data import Augment, random_erase


def _ones(n=64, c=3, h=12, w=10, dtype=np.float32):
    return np.ones((n, c, h, w), dtype=dtype)


def _erased_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the erased pixels of one (H, W) mask, or None."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return None
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def test_each_erased_region_is_one_full_rectangle_in_every_channel():
    x = _ones()
    out = random_erase(x, p=1.0, rng=0)
    for image in out:
        mask = image[0] == 0
        top, bottom, left, right = _erased_box(mask)
        assert mask[top:bottom, left:right].all()  # a filled rectangle...
        assert mask.sum() == (bottom - top) * (right - left)  # ...and nothing else
        for channel in image[1:]:
            np.testing.assert_array_equal(channel == 0, mask)


def test_area_and_aspect_follow_the_ranges():
    height, width = 40, 40
    x = _ones(n=400, c=1, h=height, w=width)
    out = random_erase(x, p=1.0, scale=(0.1, 0.2), ratio=(0.5, 2.0), rng=1)
    fractions = (out[:, 0] == 0).sum(axis=(1, 2)) / (height * width)
    # Rounding h and w to whole pixels moves the area by under a row plus a column.
    slack = (np.sqrt(0.2 * height * width * 2.0) + 1) / (height * width)
    assert fractions.min() >= 0.1 - 2 * slack and fractions.max() <= 0.2 + 2 * slack
    boxes = [_erased_box(image[0] == 0) for image in out]
    aspects = np.array([(b - t) / (r - left) for t, b, left, r in boxes])
    assert aspects.min() > 0.5 * 0.8 and aspects.max() < 2.0 * 1.25
    assert aspects.min() < 0.8 and aspects.max() > 1.25  # both tall and wide rectangles occur


def test_probability_selects_images():
    x = _ones(n=1000, c=1, h=8, w=8)
    erased = (random_erase(x, p=0.3, rng=2) == 0).any(axis=(1, 2, 3))
    assert 0.25 < erased.mean() < 0.35
    np.testing.assert_array_equal(random_erase(x, p=0.0, rng=2), x)


def test_rectangles_larger_than_the_image_are_clipped():
    x = _ones(n=50, c=1, h=4, w=4)
    out = random_erase(x, p=1.0, scale=(1.0, 1.0), ratio=(4.0, 4.0), rng=3)  # h = 8 rows wanted
    for image in out:
        top, bottom, left, right = _erased_box(image[0] == 0)
        assert (top, bottom) == (0, 4)  # the whole height
        assert right - left == 2  # w = round(sqrt(16 / 4)) = 2


def test_fill_values_dtype_shapes_and_inputs_untouched():
    x = _ones(n=16, dtype=np.float64)
    kept = x.copy()
    out = random_erase(x, p=1.0, value=0.25, rng=4)
    assert out.dtype == np.float64 and out.shape == x.shape
    assert set(np.unique(out)) == {0.25, 1.0}
    noisy = random_erase(x, p=1.0, value="random", rng=4)
    erased = noisy != 1.0
    assert erased.any() and (noisy[erased] >= 0).all() and (noisy[erased] < 1).all()
    assert len(np.unique(noisy[erased])) > 10  # noise, not one value
    np.testing.assert_array_equal(x, kept)
    three_d = random_erase(np.ones((5, 6, 6), np.float32), p=1.0, rng=0)
    assert three_d.shape == (5, 6, 6) and (three_d == 0).any()


def test_seeded_draws_repeat():
    x = _ones()
    np.testing.assert_array_equal(random_erase(x, rng=7), random_erase(x, rng=7))
    assert not np.array_equal(random_erase(x, rng=7), random_erase(x, rng=8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": -0.1}, r"p must be in \[0, 1\]"),
        ({"scale": (0.0, 0.3)}, "scale must satisfy"),
        ({"scale": (0.5, 0.2)}, "scale must satisfy"),
        ({"ratio": 3}, "ratio must be a pair"),
        ({"value": "noise"}, "value must be a number or 'random'"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        random_erase(_ones(n=2), **kwargs)


def test_augment_erases_after_shift_and_flip():
    x = _ones(n=200, c=1, h=10, w=10)
    augment = Augment(max_shift=0, flip=True, erase_p=0.5)
    out = augment(x, rng=5)
    erased = (out == 0).any(axis=(1, 2, 3))
    assert 0.4 < erased.mean() < 0.6
    assert "erase_p=0.5" in repr(augment)
    with pytest.raises(ValueError, match="erase_p must be in"):
        Augment(erase_p=2.0)
