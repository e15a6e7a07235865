"""evaluate.py, `python main.py evaluate`, and test.py, the original design's evaluation script that runs it."""

import json

import pytest

from tests.helpers import DATA_DIR, run_script


def test_evaluate_prints_accuracy_and_confusion_matrix(cli, trained):
    result = cli("evaluate", "--model", trained[0], "--data-dir", DATA_DIR, "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["accuracy"] == pytest.approx(trained[1]["accuracy"])
    assert sum(map(sum, metrics["confusion_matrix"])) == 10_000 and len(metrics["per_class_accuracy"]) == 10
    text = cli("evaluate", "--model", trained[0], "--data-dir", DATA_DIR).stdout
    assert "confusion matrix" in text and "per-class accuracy" in text


def test_test_script_evaluates_a_saved_model_alone(trained, capsys):
    assert run_script("test.py", "--model", trained[0], "--data-dir", DATA_DIR) == 0
    assert f"test accuracy {trained[1]['accuracy']:.2f}%" in capsys.readouterr().out
