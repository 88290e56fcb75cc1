"""benchmarks/shard_contention.py: its four settings run and report per-step times."""

from __future__ import annotations

import re

import pytest

from tests.helpers import BENCHMARKS, load_benchmark_script

SOURCE = BENCHMARKS.parent / "src"


@pytest.fixture(scope="module")
def script():
    return load_benchmark_script("shard_contention")


def test_two_threads_each_train_their_own_copy(script):
    times = script.steps_in_threads("lenet5", 2, 0.05)
    assert len(times) == 2 and all(0 < value < 10_000 for value in times)


def test_two_processes_report_one_time_each(script, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(SOURCE))
    times = script.steps_in_processes("lenet5", 2, 0.05)
    assert len(times) == 2 and all(0 < value < 10_000 for value in times)


def test_main_prints_a_row_per_network_with_ratios_to_alone(script, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(SOURCE))
    assert (
        script.main(["--networks", "lenet5", "--batch", "2", "--seconds", "0.05", "--rounds", "1", "--no-python"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["network", "alone", "2", "threads", "2", "processes"]
    row = lines[2]
    assert row.startswith("lenet5")
    assert len(re.findall(r"\(\d+\.\d\dx\)", row)) == 2
