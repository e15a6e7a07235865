"""main.py: a thin registry; each command parses its own options, and --help never loads torch."""

import sys

import pytest

from checkpoint import save_model
from config import TrainConfig
from main import COMMANDS
from model import MNISTModel
from tests.helpers import DATA_DIR, ROOT, assert_one_line_error, run_cli

HELP_IMPORTS = """
import sys
from main import main
for command in [[]] + [[name] for name in sys.argv[1:]]:
    for argv in ([*command, "--help"], [*command, "--bogus"]):
        try:
            main(argv)
        except SystemExit:
            pass
print("torch loaded" if "torch" in sys.modules else "torch not loaded", file=sys.stderr)
"""


def test_help_and_usage_errors_of_main_and_of_every_command_leave_torch_unloaded():
    """Answered in a tenth of a second, not the seconds torch takes to import."""
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", HELP_IMPORTS, *COMMANDS], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("torch not loaded"), result.stderr
    assert result.stdout.count("usage: main.py") == 1 + len(COMMANDS)
    assert result.stderr.count(": error: ") == 1 + len(COMMANDS)  # one usage error each


def test_help_shows_training_defaults_and_lists_the_commands(cli):
    result = cli("--help")
    assert result.returncode == 0
    assert f"(default: {TrainConfig().batch_size}, 256 for --arch compact)" in result.stdout
    assert "--min-accuracy" in result.stdout
    assert all(f"  {command} " in result.stdout for command in COMMANDS)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "3", "predict", "x.png"], "unrecognized arguments: predict x.png"),
        (["predict", "x.png", "--epochs", "3"], "unrecognized arguments: --epochs 3"),
        (["bench", "--lr", "0.1"], "unrecognized arguments: --lr"),
        (["evaluate", "--config", "recipe.json"], "unrecognized arguments: --config"),
        (["export", "--format", "onnx", "--dry-run"], "unrecognized arguments: --dry-run"),
    ],
)
def test_a_command_refuses_options_that_are_not_its_own(cli, args, message):
    result = cli(*args)
    assert result.returncode == 2 and message in result.stderr


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--batch-size", "0", "must be between 1 and 60000"),
        ("--lr", "-0.1", "must be at least"),
        ("--lr", "inf", "must be a finite number"),  # it trained a step, then said the loss diverged
        ("--epochs", "0", "must be at least 1"),
        ("--warmup", "2", "must be between 0.01 and 0.99"),
        ("--deskew", "-0.5", "must be between 0 and 4"),
        ("--view-margin", "-1", "must be between 0 and 100"),
        ("--batch-size", "1.5", "must be an integer, got '1.5'"),
        ("--batch-size", "1e30", "must be an integer"),
        ("--batch-size", "60001", "must be between 1 and 60000"),
        ("--seed", "18446744073709551616", "must be between 0 and 18446744073709551615"),
        ("--device", "tpu", "unknown device"),
        ("--device", "cuda:7", "not present"),
        ("--threads", "100000", "the CPUs this process may use"),  # torch's thread pool crashed on it
        ("--min-accuracy", "nan", "must be a percentage"),  # no accuracy is below nan: the gate would pass all
        ("--min-accuracy", "101", "must be a percentage"),  # no run could pass: an epoch trained for nothing
    ],
)
def test_invalid_training_options_are_usage_errors(cli, tmp_path, option, value, message):
    result = cli(option, value, "--data-dir", tmp_path / "never-read", "--out", tmp_path / "m.pth")
    assert result.returncode == 2
    assert f"argument {option}" in result.stderr and message in result.stderr
    assert not (tmp_path / "never-read").exists() and not (tmp_path / "m.pth").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["bench", "--seeds", "0", "18446744073709551616"], "argument --seeds: must be between 0 and"),
        (["bench", "--seeds", "-1"], "argument --seeds: must be between 0 and"),
        (["tune", "--seeds", "1e30"], "argument --seeds: must be an integer"),
        (["tune", "--workers", "100000"], "argument --workers: must be between 1 and"),
        (["bench", "concurrency", "--workers", "100000"], "argument --workers: must be between 1 and"),
        (["bench", "--threads", "100000"], "argument --threads: must be between 1 and"),
    ],
)
def test_seeds_workers_and_threads_out_of_range_are_usage_errors(cli, args, message):
    result = cli(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["tune", "--trials", "1.5"], "argument --trials: must be an integer, got '1.5'"),
        (["bench", "end-to-end", "--repeats", "2.5"], "argument --repeats: must be an integer, got '2.5'"),
        (["--threads", "1.0"], "argument --threads: must be an integer, got '1.0'"),
        (["serve", "--max-upload-mb", "1,5"], "argument --max-upload-mb: must be a finite number, got '1,5'"),
        (["bench", "serve", "--clients", "0"], "argument --clients: must be an integer greater than 0, got 0"),
        (["serve", "--max-upload-mb", "0"], "argument --max-upload-mb: must be a finite number greater than 0, got 0"),
    ],
)
def test_a_number_option_names_the_kind_of_number_it_takes(cli, args, message):
    """In a --config field's words: "'1.5' is not a number" was wrong, as 1.5 is one, and a count of clients said it
    must be "a finite number greater than 0", as if 0.5 would do."""
    assert_one_line_error(cli(*args), 2, message)


@pytest.mark.parametrize(
    "args, message",
    [
        (["bench", "--seeds", "0", "1", "0"], "argument --seeds: 0 given more than once"),
        (["bench", "calibration", "--seeds", "2", "2"], "argument --seeds: 2 given more than once"),
        (["tune", "--seeds", "3", "3", "4", "4"], "argument --seeds: 3, 4 given more than once"),
        (["bench", "--arch", "compact", "default", "compact"], "argument --arch: compact given more than once"),
        (["bench", "--recipe", "robust", "robust"], "argument --recipe: robust given more than once"),
        (["bench", "--precision", "fp32", "bf16", "fp32"], "argument --precision: fp32 given more than once"),
    ],
)
def test_a_value_given_twice_to_a_list_option_is_a_usage_error(cli, args, message):
    """Each value runs once: a seed given twice ran twice and counted twice in the means, minima and spreads."""
    assert_one_line_error(cli(*args), 2, message)


@pytest.mark.parametrize(
    "args, option, kind",
    [
        (["--dry-run", "--config", ""], "--config", "file"),
        (["bench", "calibration", "--config", ""], "--config", "file"),
        (["--dry-run", "--data-dir", ""], "--data-dir", "folder"),
        (["--dry-run", "--cache-dir", ""], "--cache-dir", "folder"),
        (["evaluate", "--model", ""], "--model", "file"),
        (["tune", "--quick", "--out-dir", ""], "--out-dir", "folder"),
        (["bench", "calibration", "--quick", "--out-dir", ""], "--out-dir", "folder"),
        (["--out", ""], "--out", "file"),
        (["export", "--out", ""], "--out", "file"),
    ],
)
def test_an_empty_path_is_refused_before_any_work(cli, tmp_path, monkeypatch, args, option, kind):
    """An option given a variable left unset ("$RECIPE") is an empty path: --config "" trained the default recipe as
    if no file were named, --data-dir "" read $MNIST_DATA_DIR, and --out-dir "" wrote a study's or a benchmark's
    files into the folder the command ran from."""
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(cli(*args), 2, f"argument {option}: an empty path names no {kind}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command, option",
    [([], "--out"), (["robustness"], "--cache-dir"), (["bench"], "--out-dir"), (["tune"], "--out-dir")],
)
def test_an_output_inside_the_datasets_folder_is_refused_before_any_work(cli, tmp_path, command, option):
    """--out given MNIST's own file would have replaced it with a model; the refusal comes before any reading."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    dataset_file = raw / "train-images-idx3-ubyte"
    dataset_file.write_bytes(b"MNIST's bytes")
    target = dataset_file if option == "--out" else raw / "made"
    result = cli(*command, "--data-dir", tmp_path / "data", option, target)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: {option} {target} lies inside {raw.parent}, MNIST's own folder" in result.stderr
    assert sorted(raw.iterdir()) == [dataset_file] and dataset_file.read_bytes() == b"MNIST's bytes"


@pytest.mark.parametrize("command", [[], ["robustness"], ["tune"], ["bench", "calibration"]])
def test_a_cache_folder_from_the_environment_inside_the_dataset_is_refused(cli, tmp_path, monkeypatch, command):
    """$MNIST_CACHE_DIR inside DATA_DIR/MNIST passed where --cache-dir there was refused: the suite's cache was
    written among MNIST's files."""
    dataset = tmp_path / "data" / "MNIST"
    dataset.mkdir(parents=True)
    monkeypatch.setenv("MNIST_CACHE_DIR", str(dataset / "cache"))
    result = cli(*command, "--data-dir", tmp_path / "data")
    assert_one_line_error(result, 2, f"the cache folder {dataset / 'cache'} ($MNIST_CACHE_DIR) lies inside")
    assert list(dataset.iterdir()) == []


def test_the_default_model_path_inside_the_dataset_is_refused_before_training(cli, tmp_path, monkeypatch):
    """Run from inside DATA_DIR/MNIST, the default models/mnist_model.pth lies in MNIST's own folder: a run trained
    and saved its model and figures there, where a given --out is refused (a dry run keeps nothing: no default)."""
    dataset = tmp_path / "data" / "MNIST"
    dataset.mkdir(parents=True)
    monkeypatch.chdir(dataset)
    result = cli("--data-dir", tmp_path / "data", "--cache-dir", tmp_path / "cache")
    assert_one_line_error(result, 2, "--out models/mnist_model.pth lies inside", "MNIST's own folder")
    assert list(dataset.iterdir()) == []


def test_robustness_refuses_a_model_inside_the_datasets_folder_whose_report_would_land_there(cli, tmp_path):
    """robustness writes robustness.json and .png beside --model: a model kept among MNIST's files (linked here
    from the real ones, so that the command could run) would have put them there."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in (DATA_DIR / "MNIST" / "raw").iterdir():
        (raw / name.name).symlink_to(name)
    model = raw / "model.pth"
    save_model(MNISTModel(), model)
    before = sorted(raw.iterdir())
    result = cli("robustness", "--data-dir", tmp_path / "data", "--model", model)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: the report's folder beside --model {model} lies inside {raw.parent}" in result.stderr
    assert sorted(raw.iterdir()) == before


def test_a_subprocess_exits_with_the_commands_code_and_one_line(tmp_path):
    """Through a real process: main.py's own exit codes (2 for bad input, raised by the command) and no traceback."""
    result = run_cli("--config", tmp_path / "absent.json")
    assert_one_line_error(result, 2, "cannot read --config", "No such file")


def test_workflow_matches_githubs_schema():
    import subprocess

    workflow = ROOT / ".github" / "workflows" / "ml-pipeline.yml"
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = workflow.read_text()
    assert "upload-artifact@v3" not in text and "name: trained-model" in text


def test_study_journals_trained_models_and_data_stay_out_of_git():
    import subprocess

    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["docs/tune/tune.journal", "docs/tune-gpu/tune.journal.gz", "models/mnist_model.pth", "data/MNIST/raw/x"]
    result = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.split() == paths, result.stderr
    kept = subprocess.run(["git", "check-ignore", "--no-index", "models/.gitkeep"], cwd=ROOT, capture_output=True)
    assert kept.returncode == 1  # not ignored
