"""The benchmark's bookkeeping: alternation of the timed functions and the paired ratio."""

import math

import pytest

from convnp import bench


def test_interleaved_alternates_and_returns_every_repeat():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    speeds = bench.interleaved(fns, batch_size=4, repeats=3, min_seconds=0.0)
    assert set(speeds) == {"a", "b"}
    assert [len(values) for values in speeds.values()] == [3, 3]
    assert all(value > 0 for values in speeds.values() for value in values)
    # one warm-up call each, then a, b, a, b, a, b (min_seconds=0: one call per repeat)
    assert calls == ["a", "b"] + ["a", "b"] * 3


def test_paired_ratio_is_the_median_of_per_repeat_ratios():
    mine = [300.0, 220.0, 310.0, 420.0, 520.0]
    theirs = [100.0, 200.0, 300.0, 400.0, 500.0]
    median, low, high = bench.paired_ratio(mine, theirs)
    # per repeat: 3.0, 1.1, 1.0333, 1.05, 1.04 (the ratio of the medians would be 310 / 300)
    assert median == pytest.approx(1.05)
    assert low == pytest.approx(310 / 300)
    assert high == pytest.approx(3.0)
    # a common drift of both libraries cancels in every pair
    assert bench.paired_ratio([600.0, 300.0, 200.0], [300.0, 150.0, 100.0]) == (2.0, 2.0, 2.0)


@pytest.mark.parametrize("mine, theirs", [([], []), ([1.0], [1.0, 2.0])])
def test_paired_ratio_rejects_unpaired_lists(mine, theirs):
    with pytest.raises(ValueError, match="paired_ratio"):
        bench.paired_ratio(mine, theirs)


def test_paired_ratio_is_finite_for_positive_speeds():
    assert math.isfinite(bench.paired_ratio([1e-3], [1e3])[0])


def test_quick_leaves_out_only_resnet18():
    assert "resnet18" in bench.NETWORKS
    assert bench.QUICK_NETWORKS == [name for name in bench.NETWORKS if name != "resnet18"]


def test_networks_are_named_after_their_builders():
    # A builder measured at several input sizes gets a suffix: resnet20_cifar, resnet20_mnist.
    for network, (builder, _, _) in bench.NETWORKS.items():
        assert network == builder or network.startswith(builder + "_"), network


def test_quick_runs_short_repeats_and_skips_the_slow_extras(monkeypatch, capsys):
    timed = []

    def fake_interleaved(fns, batch_size, repeats, min_seconds):
        timed.append((sorted(fns), repeats, min_seconds))
        return {name: [100.0] * repeats for name in fns}

    def must_not_run(*args, **kwargs):
        raise AssertionError("--quick ran a slow extra")

    monkeypatch.setattr(bench, "interleaved", fake_interleaved)
    monkeypatch.setattr(bench, "gemm_peak_gflops", lambda: 100.0)
    for slow in ("peak_rss_mb", "layer_breakdown", "conv_gflops"):
        monkeypatch.setattr(bench, slow, must_not_run)
    assert bench.main(["--quick", "--no-torch", "--networks", "mnist_cnn"]) == 0
    assert timed == [(["convnp"], bench.QUICK_REPEATS, bench.QUICK_SECONDS)] * 3  # train 64, train 256, infer 256
    assert "peak RSS" not in capsys.readouterr().out
