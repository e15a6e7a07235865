"""bench.py, `python main.py bench MODE`: its modes and their options, the accuracy and end-to-end tables."""

import asyncio
import json
from dataclasses import replace

import pytest

from corruptions import SUITE
from end_to_end_bench import timed
from errors import RunError
from tests.helpers import DATA_DIR, ROOT, assert_one_line_error, read_only_folder


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
    assert results["models"]["compact"]["architecture"] == "compact"
    assert results["models"]["compact-earlier"]["architecture"] == "8/8,16,M,20,M/16"  # the layout it shipped with
    for model in results["models"].values():
        assert set(model["runs"][0]["corruption_accuracy"]) == set(SUITE)
        assert 0 <= model["summary"]["mean_corruption_accuracy_mean"] <= 100
    summary = results["models"]["compact"]["summary"]
    assert {"train_time_vs_classic", "corruption_error_vs_earlier", "train_time_vs_earlier"} <= set(summary)
    table = (tmp_path / "benchmark.md").read_text()
    assert "| classic |" in table and "| low_resolution_8 |" in table


@pytest.mark.slow
def test_end_to_end_quick_times_each_way_of_running(cli, tmp_path):
    result = cli("bench", "end-to-end", "--quick", "--repeats", 1, "--data-dir", DATA_DIR, "--out-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "end_to_end.json").read_text())
    assert results["numerics"]["precision"] in ("bf16", "fp32")
    assert set(results["seconds"]) == {"classic", "first_run", "second_run", "dry_run"}
    assert all(len(runs) == 1 and runs[0] > 0 for runs in results["seconds"].values())
    assert results["vs_classic"]["classic"] == 1.0 and results["quick"]
    first = results["median_step_seconds"]["first_run"]
    assert set(first) == {"data", "training", "evaluation", "robustness", "saving", "plots"} and first["robustness"] > 0
    table = (tmp_path / "end_to_end.md").read_text()
    assert "| `python main.py`, second run (cached suite) |" in table and "Quick mode" in table


@pytest.mark.parametrize(
    "options, message",
    [
        (["serve", "--seeds", 3, "--recipe", "mild"], "bench serve: error: unrecognized arguments: --seeds 3"),
        (["end-to-end", "--workers", 3], "bench end-to-end: error: unrecognized arguments: --workers 3"),
        (["--abuse"], "bench accuracy: error: unrecognized arguments: --abuse"),
        (["--serve", "--calibration"], "bench serve: error: unrecognized arguments: --calibration"),
        (["tests"], "bench: error: argument MODE: invalid choice: 'tests'"),
    ],
)
def test_each_bench_mode_takes_only_its_own_options(cli, options, message):
    assert_one_line_error(cli("bench", *options), 2, message)


@pytest.mark.parametrize(
    "argv, parsed, note",
    [
        ([], ["accuracy"], ""),
        (["--seeds", "0", "--quick"], ["accuracy", "--seeds", "0", "--quick"], ""),
        (["serve", "--quick"], ["serve", "--quick"], ""),
        (["--serve", "--abuse", "--quick"], ["abuse", "--quick"], "note: `bench --serve --abuse` is now `bench abuse`"),
        (
            ["--quick", "--end-to-end"],
            ["end-to-end", "--quick"],
            "note: `bench --end-to-end` is now `bench end-to-end`",
        ),
        (["--help"], ["--help"], ""),
    ],
)
def test_bench_names_its_default_mode_and_reads_the_former_mode_options(argv, parsed, note, capsys):
    import bench

    assert bench.command_line(argv) == parsed
    assert capsys.readouterr().err.strip() == note


def test_a_failing_timed_command_is_a_one_line_error():
    with pytest.raises(RunError, match=r"main.py bench --bogus failed \(exit 2\): .*unrecognized arguments"):
        timed("main.py", "bench", "--bogus")  # refused before torch loads


@pytest.mark.slow
def test_serve_benchmark_quick(cli, untrained, tmp_path):
    result = cli("bench", "serve", "--quick", "--model", untrained, "--requests", 24, "--clients", 64,
                 "--data-dir", DATA_DIR, "--out-dir", tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "serve_benchmark.json").read_text())
    assert results["served"]["statuses"] == {"200": 24} and results["served_vs_in_process"] > 0
    # 24 requests keep at most 24 clients busy (within the server's 32 at once): the other 40 would send nothing
    assert results["served"]["clients"] == 24 and "with 24 clients" in result.stdout
    assert "predictions/s" in result.stdout and "not counted" not in result.stdout
    assert results["served"]["predictions_per_second"] == results["served"]["requests_per_second"]  # all answered


@pytest.mark.slow
def test_the_serve_load_counts_a_refused_request_as_no_prediction(untrained):
    """A refused request (413 here, every upload over the server's limit; 503 when it is busy) answers no digit: the
    serve benchmark set requests a second, refusals included, against predict's images a second, and read 1.69x
    where 4,968 of 5,000 requests were refused and the server made 6 predictions a second."""
    from serve_bench import digit_pngs, free_port, http_load, start_server, stop_server

    pngs, _ = digit_pngs(DATA_DIR, 4)
    server, url = start_server(untrained, free_port(), "--max-upload-mb", "0.0001")  # 104 bytes: under any digit's PNG
    try:
        load = asyncio.run(http_load(url, pngs, 4, 8))
    finally:
        stop_server(server)
    assert load["statuses"] == {413: 8}
    assert load["requests_per_second"] > 0 and load["predictions_per_second"] == 0


@pytest.mark.slow
def test_abuse_benchmark_quick(cli, untrained, tmp_path):
    result = cli("bench", "abuse", "--quick", "--model", untrained, "--data-dir", DATA_DIR,
                 "--out-dir", tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "serve_abuse.json").read_text())
    assert results["all_answered"] and results["tracebacks_in_log"] == 0
    assert sum(results["upload_statuses"].values()) == 40 and results["white_png_statuses"] == {"422": 2}
    assert sum(results["slow_clients"].values()) == 4 and "never cut off" not in results["slow_clients"]
    assert results["health_ms"]["count"] > 0 and results["server_resident_mib_max"] > 0
    assert results["sigterm_stop_seconds"] < 10
    bombs = results["bombs"]["statuses"]  # one colour throughout: the PNGs are blank; WebP and ICO are not opened
    assert bombs == {"rgba": {"422": 2}, "palette": {"422": 2}, "grey16": {"422": 2}, "webp": {"415": 2},
                     "ico": {"415": 2}}  # fmt: skip
    assert results["prediction_while_slow_uploads_held"]["status"] == 200


def test_a_recipe_of_before_the_search_trains_the_layout_its_preset_had_then():
    from config import FORMER_ARCHITECTURES, recipe_model

    for arch in ("compact", "8/8,12,M,24,M/16"):  # the preset by name and written out
        assert recipe_model(arch, "earlier")[0] == FORMER_ARCHITECTURES["compact"]
    assert recipe_model("12/12,M,20,20,M/16", "hand-found")[0] == "12/12,M,20,20,M/16"  # no preset: as given
    assert recipe_model("compact", "robust")[0] == "compact"


@pytest.mark.slow
def test_concurrency_quick_times_runs_alone_and_together(cli, tmp_path):
    result = cli("bench", "concurrency", "--quick", "--repeats", 1, "--data-dir", DATA_DIR, "--out-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "concurrency.json").read_text())
    assert set(results["seconds"]) == {"alone", "two_at_once", "two_at_once_sharing"}
    assert len(results["seconds"]["two_at_once"]) == 2 and results["tune"]["speedup"] > 0
    assert results["tune"]["speedup_while_running"] > 0
    assert "trials per minute" in (tmp_path / "concurrency.md").read_text()


@pytest.mark.slow
def test_bench_runs_both_precisions_in_one_table(cli, tmp_path):
    result = cli("bench", "--quick", "--arch", "compact", "--recipe", "robust", "earlier", "--no-classic", "--seeds", 0,
                 "--precision", "bf16", "fp32", "--data-dir", DATA_DIR, "--out-dir", tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "benchmark.json").read_text())
    assert results["precisions"] == ["bf16", "fp32"]
    assert {name: model["precision"] for name, model in results["models"].items()} == {
        "compact-bf16": "bf16", "compact-earlier-bf16": "bf16", "compact-fp32": "fp32", "compact-earlier-fp32": "fp32",
    }  # fmt: skip
    assert "corruption_error_vs_earlier" in results["models"]["compact-fp32"]["summary"]  # each against its own
    assert {"cpu_capability", "bf16_native"} <= set(results["machine"])
    table = (tmp_path / "benchmark.md").read_text()
    assert "| compact-bf16 | bf16 |" in table and "| compact-fp32 | fp32 |" in table and "CPU capability" in table


def test_bench_calibration_trains_the_default_recipe_or_a_recipe_file_with_the_fields_it_is_given():
    import bench
    from config import TrainConfig, recipe_file
    from main import build_parser

    parser = build_parser("bench")[0]
    given = parser.parse_args(["calibration", "--nondigit-weight", "0.5", "--temperature", "0.35"])
    assert bench.calibration_recipe(given) == TrainConfig(nondigit_weight=0.5, temperature=0.35)
    assert bench.calibration_recipe(parser.parse_args(["calibration"])) == TrainConfig()
    nondigits = parser.parse_args(["calibration", "--config", str(ROOT / "configs/nondigits.json")])
    assert bench.calibration_recipe(nondigits) == recipe_file("nondigits")  # every field, its view margin too
    overridden = parser.parse_args(
        ["calibration", "--config", str(ROOT / "configs/nondigits.json"), "--temperature", "0.4"]
    )
    assert bench.calibration_recipe(overridden) == replace(recipe_file("nondigits"), temperature=0.4)


def test_bench_calibration_refuses_a_config_it_cannot_read(cli, tmp_path):
    (tmp_path / "bad.json").write_text("[1, 2]")
    result = cli("bench", "calibration", "--quick", "--config", tmp_path / "bad.json", "--out-dir", tmp_path)
    assert_one_line_error(result, 2, "must hold a JSON object of TrainConfig fields")
    assert not (tmp_path / "calibration.json").exists()


def test_bench_calibration_refuses_an_energy_threshold_for_digits_alone(cli):
    result = cli("bench", "calibration", "--quick", "--energy-threshold", -3)
    assert_one_line_error(result, 2, "--energy-threshold needs --nondigit-weight above 0")


@pytest.mark.parametrize("mode", ["accuracy", "calibration", "end-to-end", "concurrency", "serve", "abuse"])
def test_every_mode_refuses_an_out_dir_inside_a_file_before_it_runs(cli, tmp_path, mode):
    taken = tmp_path / "benchmark.json"
    taken.write_text("kept")
    result = cli("bench", mode, "--quick", "--out-dir", taken / "results")
    assert_one_line_error(result, 2, "--out-dir", f"{taken} is a file, so")
    assert list(tmp_path.iterdir()) == [taken] and taken.read_text() == "kept"


@pytest.mark.parametrize("mode", ["accuracy", "end-to-end"])
def test_an_out_dir_that_cannot_be_written_is_refused_before_the_measuring(cli, tmp_path, mode):
    """The report landed after the benchmark's minutes, and failed there."""
    with read_only_folder(tmp_path / "ro") as folder:
        result = cli("bench", mode, "--quick", "--data-dir", DATA_DIR, "--out-dir", folder / "bench")
        assert_one_line_error(result, 1, f"cannot write into {folder}: ")
        assert not result.stdout and not list(folder.iterdir())


def test_a_quick_bench_keeps_nothing_unless_given_an_out_dir(cli, tmp_path, cache_dir, monkeypatch):
    """bench --quick wrote its figures, which mean nothing, over models/benchmark.json and .md: a real run's."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "benchmark.md").write_text("a real run's table")
    result = cli("bench", "accuracy", "--quick", "--arch", "compact", "--recipe", "robust", "--no-classic",
                 "--seeds", 0, "--data-dir", DATA_DIR, "--cache-dir", cache_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "compact" in result.stdout and "quick run: nothing saved (give --out-dir" in result.stdout
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["benchmark.md"]
    assert (tmp_path / "models" / "benchmark.md").read_text() == "a real run's table"


def test_the_default_out_dir_inside_the_dataset_is_refused_before_the_run(cli, tmp_path, monkeypatch):
    """Run from inside DATA_DIR/MNIST, the default models/ lies in MNIST's own folder: refused as a given --out-dir is
    (a quick run, which keeps nothing, has no default to refuse)."""
    dataset = tmp_path / "data" / "MNIST"
    dataset.mkdir(parents=True)
    monkeypatch.chdir(dataset)
    result = cli("bench", "accuracy", "--data-dir", tmp_path / "data")
    assert_one_line_error(result, 2, "--out-dir models lies inside", "MNIST's own folder")
    assert list(dataset.iterdir()) == []
