"""bench.py, `python main.py bench`: the presets against the classic baseline, and the end-to-end table."""

import json

import pytest

from bench import end_to_end_table
from conftest import DATA_DIR
from corruptions import SUITE


@pytest.mark.slow
def test_bench_quick_mode(cli, tmp_path):
    result = cli(
        "bench", "--quick", "--arch", "compact", "--seeds", 0, 1, "--data-dir", DATA_DIR, "--out-dir", tmp_path
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "benchmark.json").read_text())
    assert set(results["models"]) == {"compact", "compact-hand-found", "compact-earlier", "classic"}
    assert [run["seed"] for run in results["models"]["compact"]["runs"]] == [0, 1]
    assert results["models"]["classic"]["runs"][0]["parameters"] == 10_602
    for model in results["models"].values():
        assert set(model["runs"][0]["corruption_accuracy"]) == set(SUITE)
        assert 0 <= model["summary"]["mean_corruption_accuracy_mean"] <= 100
    summary = results["models"]["compact"]["summary"]
    assert {"train_time_vs_classic", "corruption_error_vs_earlier", "train_time_vs_earlier"} <= set(summary)
    table = (tmp_path / "benchmark.md").read_text()
    assert "| classic |" in table and "| low_resolution_8 |" in table


def test_end_to_end_table_reports_each_way_of_running_and_where_the_seconds_go():
    steps = {
        "imports": 0.0,
        "data": 0.3,
        "training": 5.5,
        "evaluation": 0.2,
        "robustness": 0.6,
        "saving": 0.0,
        "plots": 0.9,
    }
    results = {
        "machine": {"cpu": "a CPU", "cpu_count": 2},
        "repeats": 1,
        "seconds": {"classic": [20.0], "first_run": [10.0], "second_run": [9.0], "dry_run": [4.0]},
        "median_seconds": {"classic": 20.0, "first_run": 10.0, "second_run": 9.0, "dry_run": 4.0},
        "vs_classic": {"classic": 1.0, "first_run": 0.5, "second_run": 0.45, "dry_run": 0.2},
        "median_step_seconds": {"first_run": steps, "second_run": steps},
    }
    table = end_to_end_table(results)
    assert "| `python main.py`, second run (cached suite) | 9.00 | 9.0 | 0.45x |" in table
    assert "| second_run | 0.30 | 5.50 | 0.20 | 0.60 | 0.00 | 0.90 | 1.50 |" in table
