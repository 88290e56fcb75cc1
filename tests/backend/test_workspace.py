"""Scratch buffers: reused per thread and purpose, never shared between threads; im2col into one."""

import threading

import numpy as np
import pytest

from convnp.backend.workspace import scratch
from convnp.functional.conv import im2col
from convnp.functional.geometry import pad_channels_last


def test_the_same_purpose_reuses_one_buffer_and_grows_when_needed():
    first = scratch("test reuse", (4, 5), np.float32)
    again = scratch("test reuse", (2, 10), np.float32)
    assert np.shares_memory(first, again) and again.shape == (2, 10) and again.flags.c_contiguous
    other = scratch("test other purpose", (4, 5), np.float32)
    assert not np.shares_memory(first, other)
    bigger = scratch("test reuse", (100, 100), np.float64)
    assert bigger.shape == (100, 100) and bigger.dtype == np.float64
    bigger[...] = 1.0  # the whole view is writable memory of its own size


def test_threads_never_share_a_buffer():
    views = {}

    def take(name):
        views[name] = scratch("test threads", (64,), np.float32)

    threads = [threading.Thread(target=take, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    take("main")
    assert not np.shares_memory(views["a"], views["b"])
    assert not np.shares_memory(views["a"], views["main"])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("stride, dilation", [((1, 1), (1, 1)), ((2, 3), (1, 2))])
def test_im2col_into_a_buffer_equals_the_allocating_version(channels, stride, dilation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 10, channels))
    padded = pad_channels_last(x, (1, 2, 0, 1))
    stale = np.full(padded.size, 7.0)  # old contents must not leak into the padding
    np.testing.assert_array_equal(pad_channels_last(x, (1, 2, 0, 1), out=stale), padded)
    out_hw = ((12 - dilation[0] * 2 - 1) // stride[0] + 1, (11 - dilation[1] * 2 - 1) // stride[1] + 1)
    expected = im2col(padded, (3, 3), stride, dilation, out_hw)
    buffer = np.full(expected.size, np.nan)
    np.testing.assert_array_equal(im2col(padded, (3, 3), stride, dilation, out_hw, out=buffer), expected)
