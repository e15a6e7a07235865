"""evaluate.py, `python main.py evaluate`, and test.py, the original design's evaluation script that runs it."""

import json

import pytest

from checkpoint import load_model
from config import TrainConfig
from evaluation import evaluate
from tests.helpers import DATA_DIR, run_script


def test_evaluate_prints_accuracy_and_confusion_matrix(cli, trained):
    result = cli("evaluate", "--model", trained[0], "--data-dir", DATA_DIR, "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["accuracy"] == pytest.approx(trained[1]["accuracy"])
    assert sum(map(sum, metrics["confusion_matrix"])) == 10_000 and len(metrics["per_class_accuracy"]) == 10
    text = cli("evaluate", "--model", trained[0], "--data-dir", DATA_DIR).stdout
    assert "confusion matrix" in text and "per-class accuracy" in text


def test_evaluate_with_no_views_reads_each_image_once(cli, trained, mnist):
    result = cli("evaluate", "--model", trained[0], "--data-dir", DATA_DIR, "--no-views", "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    once = evaluate(load_model(trained[0], views=False), *mnist["eval"])
    assert metrics["view_margin"] == 0.0 and metrics["test_loss"] == pytest.approx(once["test_loss"])
    assert metrics["test_loss"] != pytest.approx(trained[1]["test_loss"], abs=1e-5)  # the run's read through views
    viewed = json.loads(cli("evaluate", "--model", trained[0], "--json").stdout)
    assert viewed["view_margin"] == TrainConfig().view_margin


def test_test_script_evaluates_a_saved_model_alone(trained, capsys):
    assert run_script("test.py", "--model", trained[0], "--data-dir", DATA_DIR) == 0
    assert f"test accuracy {trained[1]['accuracy']:.2f}%" in capsys.readouterr().out


def test_the_test_script_names_itself_in_its_usage(capsys):
    """Its help and its usage errors told the user to call `main.py evaluate`, a command line they had not typed."""
    assert run_script("test.py", "--help") == 0
    assert capsys.readouterr().out.startswith("usage: test.py [-h] [--model MODEL]")
    assert run_script("test.py", "--epochs", "3") == 2
    assert capsys.readouterr().err.startswith("usage: test.py [-h]")
