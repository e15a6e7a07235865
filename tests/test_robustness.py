"""robustness.py, `python main.py robustness`: the whole suite on all 10,000 test images."""

import json

import pytest
from PIL import Image

from config import SUITE_SEED
from corruptions import SUITE
from robustness import format_table
from tests.helpers import DATA_DIR, assert_one_line_error, read_only_folder, snapshot


@pytest.mark.slow
def test_robustness_command_prints_and_writes_the_report(cli, trained, tmp_path):
    model = tmp_path / "mnist_model.pth"
    model.write_bytes(trained[0].read_bytes())
    result = cli("robustness", "--model", model, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    table = format_table(report)  # what the command prints without --json
    assert all(name in table for name in SUITE) and "mean corruption accuracy" in table
    assert report == json.loads((tmp_path / "robustness.json").read_text())
    assert report["seed"] == SUITE_SEED
    assert report["clean_accuracy"] == pytest.approx(trained[1]["accuracy"]) and report["images"] == 10_000
    assert list(report["corruptions"]) == list(SUITE)
    # The run's figure is an estimate from 2,000 of these images: within four of its standard errors.
    run = trained[1]
    assert (
        abs(report["mean_corruption_accuracy"] - run["mean_corruption_accuracy"])
        <= 4 * run["mean_corruption_accuracy_standard_error"]
    )
    with Image.open(tmp_path / "robustness.png") as picture:
        assert picture.height > picture.width / 2  # a row per corruption


@pytest.mark.parametrize("record", ["metrics.json", "robustness.json"])
def test_robustness_refuses_a_folder_whose_figures_describe_another_model(cli, trained, tmp_path, record):
    """Its report and robustness.png would replace the figures of another model saved beside it: the run's, or the
    report of `robustness` on that model."""
    (tmp_path / "mnist_model.pth").write_bytes(trained[0].read_bytes())
    run_record = trained[0].with_name("metrics.json").read_text()
    (tmp_path / record).write_text(run_record if record == "metrics.json" else '{"model": "mnist_model.pth"}')
    other = tmp_path / "other.pth"
    other.write_bytes(trained[0].read_bytes())
    before = snapshot(tmp_path)
    result = cli("robustness", "--model", other)
    assert_one_line_error(result, 2, f"describe {tmp_path / 'mnist_model.pth'}", "a folder of its own")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("seed", ["-1", str(2**64), "1.5"])
def test_robustness_takes_the_seeds_training_takes(cli, seed):
    """--seed -1 (and any integer) ran and wrote its report, where every other --seed refuses a seed outside 0 to
    2^64 - 1 as a usage error."""
    assert_one_line_error(cli("robustness", "--seed", seed), 2, "--seed")


def test_robustness_on_a_file_that_is_no_model_says_so_first(cli, trained, tmp_path):
    """An export beside a run's model is refused as no model file, not as another model whose report would replace
    the run's figures: copying it into a folder of its own, as that message says, would not help."""
    (tmp_path / "mnist_model.pth").write_bytes(trained[0].read_bytes())
    (tmp_path / "metrics.json").write_text(trained[0].with_name("metrics.json").read_text())
    export = tmp_path / "mnist_model.onnx"
    export.write_bytes(b"\x00onnx" * 100)  # as an export, no torch.load archive
    before = snapshot(tmp_path)
    assert_one_line_error(cli("robustness", "--model", export), 2, "is not a model file (an export: give the .pth")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["robustness.json", "robustness.png"])
def test_robustness_refuses_a_model_named_as_its_report(cli, trained, tmp_path, name):
    """The report, written beside the model under that name, would replace the model."""
    model = tmp_path / name
    model.write_bytes(trained[0].read_bytes())
    before = snapshot(tmp_path)
    assert_one_line_error(cli("robustness", "--model", model), 2, "is named as this command's report")
    assert snapshot(tmp_path) == before


def test_robustness_beside_a_model_in_a_folder_that_cannot_be_written_is_refused_before_the_suite(
    cli, untrained, tmp_path
):
    """The report is written beside the model: in a read-only folder the whole suite was measured (half a minute),
    then the report failed to land. Nothing is built now, not even the suite for the cache."""
    cache = tmp_path / "cache"
    with read_only_folder(tmp_path / "ro", [untrained]) as folder:
        result = cli("robustness", "--model", folder / untrained.name, "--data-dir", DATA_DIR, "--cache-dir", cache)
        assert_one_line_error(result, 1, f"cannot write into {folder}: ")
        assert [path.name for path in folder.iterdir()] == [untrained.name]
    assert not cache.exists()
