"""tune.py, `python main.py tune`: the study, its report and reproduce commands, several workers, a killed worker."""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from config import architecture
from corruptions import SUITE
from tests.helpers import (
    CPU,
    DATA_DIR,
    ROOT,
    assert_one_line_error,
    hear_sigint,
    read_only_folder,
    run_cli,
    train_only_data_dir,
)
from tune_search import OVER_BUDGET, REFERENCE_MARGIN, SHORTFALL, WATCHED, architecture_params, shortfall

ARCHITECTURE = architecture("default")


@pytest.fixture(autouse=True)
def optuna_logs_to_the_current_stderr():
    """Optuna's own log handler keeps the stderr of the first test that ran it in this process; in-process
    calls log through the root logger instead, to whatever stderr the test captures."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    yield
    optuna.logging.disable_propagation()
    optuna.logging.enable_default_handler()


def tune_cli(out_dir, *options, data_dir=DATA_DIR):
    return run_cli("tune", "--quick", "--out-dir", out_dir, "--data-dir", data_dir, *options)


def start_tune_worker(out_dir, *options):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "tune", "--quick", "--out-dir", out_dir, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MNIST_DATA_DIR": str(DATA_DIR)},
        preexec_fn=hear_sigint,
    )


def journal_study(out_dir, name="mnist"):
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out_dir / "tune.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def assert_complete_trials(study, count):
    trials = study.get_trials()
    numbers = [trial.number for trial in trials]
    assert len(numbers) == len(set(numbers)) == max(numbers) + 1
    assert sum(trial.state.name == "COMPLETE" for trial in trials) == count, [t.state for t in trials]
    return trials


@pytest.mark.slow
def test_tune_quick_reports_a_front_reproducible_without_the_test_set(tmp_path):
    result = tune_cli(tmp_path / "tune", data_dir=train_only_data_dir(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Pareto front" in result.stdout and "Traceback" not in result.stderr
    report = json.loads((tmp_path / "tune" / "tune.json").read_text())
    study = journal_study(tmp_path / "tune")
    pruned = [trial for trial in study.trials if trial.state.name == "PRUNED"]
    assert report["trials"] == {"complete": 2, **({"pruned": len(pruned)} if pruned else {})}
    for trial in pruned:  # --quick prunes only an architecture over the budget, and a run that diverged
        assert "over --max-params" in trial.user_attrs["pruned"] or "diverged" in trial.user_attrs["pruned"]
        assert OVER_BUDGET in trial.constraints or "diverged" in trial.user_attrs["pruned"]
    for name in ("tune.md", "pareto_front.png", "importance_accuracy.png", "importance_corruption.png"):
        assert (tmp_path / "tune" / name).stat().st_size > 0
    row = report["pareto_front"][0]
    assert set(study.user_attrs["reference"]) == set(SUITE) == set(report["reference"])  # the earlier recipe's
    assert 0 < study.user_attrs["reference_accuracy"] <= 100  # its clean accuracy, which hopeless_accuracy reads
    shortfalls = {
        trial.number: trial.constraints[SHORTFALL] for trial in study.trials if trial.state.name == "COMPLETE"
    }
    assert row["shortfall"] == pytest.approx(shortfalls[row["trial"]] + REFERENCE_MARGIN)
    assert row["shortfall"] == pytest.approx(shortfall(row["runs"], study.user_attrs["reference"]))
    assert list(row["watched"]) == list(WATCHED)  # the entries nearest real scans, beside the trial
    for name, (accuracy, against) in row["watched"].items():
        mean = statistics.fmean(run["corruption_accuracy"][name] for run in row["runs"])
        assert (accuracy, against) == (round(mean, 2), round(mean - report["reference"][name], 2)), name
    shown_entries = " | ".join(f"{accuracy:.2f} ({against:+.2f})" for accuracy, against in row["watched"].values())
    assert f"| {shown_entries} |" in (tmp_path / "tune" / "tune.md").read_text()
    command = row["command"].split()
    assert command[:2] == ["python", "main.py"] and "--validation" in command
    reproduced = run_cli(*command[2:], cwd=ROOT)  # paths in the command are as tune printed them: absolute here
    assert reproduced.returncode == 0, reproduced.stderr
    metrics = json.loads((Path(command[command.index("--out") + 1]).parent / "metrics.json").read_text())
    recipe = json.loads(Path(command[command.index("--config") + 1]).read_text())
    assert metrics["evaluated_on"] == "validation" and metrics["train_images"] == 55_000
    assert metrics["augmentation"] == recipe.pop("augmentation")
    assert {key: metrics["hyperparameters"][key] for key in recipe} == recipe
    trained_with = {**metrics["hyperparameters"], **metrics["augmentation"]}
    recipe_params = {key: value for key, value in row["params"].items() if key not in architecture_params(ARCHITECTURE)}
    assert {key: trained_with[key] for key in recipe_params} == recipe_params
    assert (metrics["architecture"], metrics["parameters"]) == (row["architecture"], row["parameters"])
    assert metrics["accuracy"] == pytest.approx(row["runs"][0]["accuracy"])  # the trial's own run, redone
    shown = tune_cli(tmp_path / "tune", "--show")
    assert shown.returncode == 0 and shown.stdout.count("python main.py --arch") == len(report["pareto_front"])
    other_seeds = tune_cli(tmp_path / "tune", "--seeds", "3")  # a worker with other settings is refused
    assert_one_line_error(other_seeds, 2, "was made with --arch default --max-params 25000 --seeds 0 1 --quick")
    other_precision = tune_cli(tmp_path / "tune", "--precision", "fp32")  # its runs would train in another
    assert_one_line_error(other_precision, 2, "--seeds 0 1 --quick --precision auto: run its workers with the same")
    files = {path: path.read_bytes() for path in (tmp_path / "tune").rglob("*") if path.is_file()}
    another = tune_cli(tmp_path / "tune", "--study", "other")  # its report would replace this one's, trial by trial
    assert_one_line_error(another, 2, "holds the report of study 'mnist'", "give study 'other' its own --out-dir")
    assert {path: path.read_bytes() for path in (tmp_path / "tune").rglob("*") if path.is_file()} == files


@pytest.mark.slow
def test_tune_workers_share_one_journal_study_and_the_cores(tmp_path):
    from tune_workers import share_of_cores

    result = tune_cli(tmp_path, "--workers", "2", "--trials", "3", "--seeds", "0")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "[worker 0]" in result.stdout and "[worker 1]" in result.stdout
    assert result.stdout.count("Pareto front") == 1  # the report, once, after the workers
    trials = assert_complete_trials(journal_study(tmp_path), 3)
    assert {trial.user_attrs["numerics"]["threads"] for trial in trials if trial.state.name == "COMPLETE"} == {
        share_of_cores(2)
    }
    assert len({trial.user_attrs["worker"] for trial in trials}) == 2


@pytest.mark.slow
def test_ctrl_c_stops_every_tune_worker_in_one_line(tmp_path):
    parent = start_tune_worker(tmp_path, "--workers", "2", "--trials", "4", "--seeds", "0")
    wait_for_a_running_trial(tmp_path)
    parent.send_signal(signal.SIGINT)
    _, stderr = parent.communicate(timeout=120)
    assert parent.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.count("interrupted") == 1
    # A trial is in the journal a moment before its worker names itself in it: Ctrl-C can fall in between.
    trials = journal_study(tmp_path).trials
    workers = {trial.user_attrs["worker"].rpartition(":")[2] for trial in trials if "worker" in trial.user_attrs}
    assert workers and not any(Path(f"/proc/{pid}").exists() for pid in workers)  # none left running


def test_a_workers_command_carries_the_options_and_its_share_of_the_cores():
    from types import SimpleNamespace

    from tune_workers import failures, share_of_cores, worker_command

    args = SimpleNamespace(arch="compact", max_params=8000, trials=5, seeds=[0, 1], study="s", out_dir="o",
                           device="cpu", precision="fp32", timeout=None, storage="sqlite:///t.db", data_dir=None,
                           cache_dir="c", quick=True, threads=6)  # fmt: skip
    command = worker_command(args, 2)  # each of 2 workers gets half of --threads 6
    assert command[2:] == ["tune", "--arch", "compact", "--max-params", "8000", "--trials", "5", "--seeds", "0",
                           "1", "--study", "s", "--out-dir", "o", "--device", "cpu", "--precision", "fp32",
                           "--threads", "3", "--no-report", "--storage", "sqlite:///t.db", "--cache-dir", "c",
                           "--quick"]  # fmt: skip
    assert [share_of_cores(n, cores=16) for n in (1, 2, 3, 16, 32)] == [16, 8, 5, 1, 1]
    alone = worker_command(SimpleNamespace(**{**vars(args), "threads": None}), 1)
    assert alone[alone.index("--threads") + 1] == str(share_of_cores(1))  # every core
    trial = SimpleNamespace(number=7, user_attrs={"worker": "h:42"}, state=SimpleNamespace(name="FAIL"))
    assert failures([(41, 0), (42, 1)], [trial], "h") == ["worker 1 failed (exit 1) in trial 7"]


def wait_for_a_running_trial(out_dir, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trials = study_trials_so_far(out_dir)
        if any(trial.state.name == "RUNNING" and "worker" in trial.user_attrs for trial in trials):
            return
        time.sleep(0.5)


def study_trials_so_far(out_dir):
    """The study's trials; none while the journal or the study (made once its reference is trained) is missing."""
    try:
        return journal_study(out_dir).trials if (out_dir / "tune.journal").exists() else []
    except KeyError:
        return []


@pytest.mark.slow
def test_a_killed_tune_worker_leaves_a_usable_study(tmp_path):
    killed = start_tune_worker(tmp_path, "--trials", "1", "--seeds", "0")
    wait_for_a_running_trial(tmp_path)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    successor = start_tune_worker(tmp_path, "--trials", "1", "--seeds", "0")
    _, stderr = successor.communicate(timeout=600)
    assert successor.returncode == 0, stderr
    assert f"process {killed.pid}) is gone" in stderr
    trials = assert_complete_trials(journal_study(tmp_path), 1)
    assert trials[0].state.name == "FAIL"


@pytest.mark.slow
def test_ctrl_c_stops_tune_in_one_line_and_the_same_command_continues(tmp_path):
    stopped = start_tune_worker(tmp_path, "--trials", "1", "--seeds", "0")
    wait_for_a_running_trial(tmp_path)
    stopped.send_signal(signal.SIGINT)
    _, stderr = stopped.communicate(timeout=120)
    assert stopped.returncode == 130 and "Traceback" not in stderr, stderr
    assert "interrupted: the study keeps its finished trials" in stderr
    unfinished = [trial for trial in journal_study(tmp_path).trials if trial.state.name != "COMPLETE"]
    assert all(trial.state.name == "PRUNED" and trial.user_attrs["pruned"] == "interrupted" for trial in unfinished)
    successor = start_tune_worker(tmp_path, "--trials", "1", "--seeds", "0")
    _, stderr = successor.communicate(timeout=600)
    assert successor.returncode == 0, stderr
    assert_complete_trials(journal_study(tmp_path), 1)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif("TUNE_POSTGRES_URL" not in os.environ, reason="needs a PostgreSQL server (.ci/run starts one)")
def test_two_tune_workers_share_a_postgresql_study(tmp_path):
    import optuna

    url, name = os.environ["TUNE_POSTGRES_URL"], f"test-{os.getpid()}-{time.time_ns()}"
    workers = [
        start_tune_worker(
            tmp_path / f"worker{i}",
            "--trials",
            "3",
            "--seeds",
            "0",
            "--storage",
            url,
            "--study",
            name,
            "--threads",
            "1",
        )
        for i in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0 and "Traceback" not in stderr, stderr
    assert_complete_trials(optuna.load_study(study_name=name, storage=url), 3)


def test_a_trial_made_before_fields_joined_the_space_is_reproduced_as_it_trained(tmp_path):
    from types import SimpleNamespace

    from config import TrainConfig
    from tune_report import reproduce
    from tune_search import search_params

    params = search_params(TrainConfig(), ARCHITECTURE)
    del params["nondigits"], params["nondigit_weight"], params["deskew"], params["view_margin"]
    trial = SimpleNamespace(number=7, params=params, user_attrs={"runs": [{"temperature": 0.4}]})
    command = reproduce(trial, {"quick": False, "seeds": [0], "precision": "auto"}, tmp_path)
    assert "--arch default --config" in command
    recipe = json.loads((tmp_path / "trials" / "trial_7.json").read_text())
    assert recipe["nondigit_weight"] == 0.0 and recipe["nondigits"] == TrainConfig().nondigits
    # the model did not deskew nor read through views until after those studies
    assert recipe["deskew"] == 0.0 and recipe["view_margin"] == 0.0
    trial.params["deskew"], trial.params["view_margin"] = 0.3, 0.7
    reproduce(trial, {"quick": False, "seeds": [0], "precision": "auto"}, tmp_path)
    recipe = json.loads((tmp_path / "trials" / "trial_7.json").read_text())
    assert (recipe["deskew"], recipe["view_margin"]) == (0.3, 0.7)


def test_a_studys_precision_is_in_its_reproduce_commands_and_one_recorded_before_it_reads_auto(tmp_path):
    """A study trained in --precision fp32 (or bf16) says so in each command, which would otherwise train in the
    machine's auto; a study made before the precision was recorded trained in auto, and its commands say nothing."""
    from types import SimpleNamespace

    from config import TrainConfig
    from tune_report import reproduce
    from tune_search import search_params
    from tune_storage import recorded_settings, settings_option

    runs = [{"temperature": 0.4}]
    trial = SimpleNamespace(number=3, params=search_params(TrainConfig(), ARCHITECTURE), user_attrs={"runs": runs})
    settings = {"arch": "default", "max_params": 25_000, "seeds": [0], "quick": False, "precision": "fp32"}
    assert "--seed 0 --precision fp32 --out" in reproduce(trial, settings, tmp_path)
    assert settings_option(settings).endswith("--seeds 0 --precision fp32")  # what a worker with another is told
    assert "--precision" not in reproduce(trial, {**settings, "precision": "auto"}, tmp_path)
    before = SimpleNamespace(user_attrs={"settings": {key: settings[key] for key in ("arch", "seeds", "quick")}})
    assert recorded_settings(before, {})["precision"] == "auto"


def test_an_architecture_over_the_budget_is_pruned_before_it_trains():
    import optuna

    from config import TrainConfig
    from tune_search import OBJECTIVES, objective, search_params

    study = optuna.create_study(directions=list(OBJECTIVES.values()))
    study.enqueue_trial(search_params(TrainConfig(), ARCHITECTURE))
    # No data: a trial that trained would fail, not be pruned.
    study.optimize(lambda trial: objective(trial, 1, 20_000, [0], TrainConfig(), CPU, None, 0.0), n_trials=1)
    (trial,) = study.trials
    assert trial.state.name == "PRUNED"
    assert trial.user_attrs["pruned"] == "23,850 parameters, over --max-params 20,000"
    assert trial.constraints == {OVER_BUDGET: 100 + 100 * 3_850 / 20_000}  # so that the sampler ranks it last


def test_a_budget_that_fits_no_architecture_is_a_one_line_error(cli, tmp_path):
    assert_one_line_error(cli("tune", "--quick", "--out-dir", tmp_path, "--max-params", 500), 2, "fits no architecture")


@pytest.mark.parametrize(
    ("arch", "outside"),
    [
        ("16/16,32,32,M,32,M/24", "3 convolutions in stage1"),
        ("16/16,M,32,M,8/24", "a convolution after the last 'M'"),
        ("17/16,M,32,M/24", "stem width 17"),
        ("16/16,M,100,M/24", "stage2 width 100"),
    ],
)
def test_an_architecture_outside_the_search_space_is_a_one_line_error(cli, tmp_path, arch, outside):
    assert_one_line_error(
        cli("tune", "--quick", "--out-dir", tmp_path, "--arch", arch), 2, "outside the search space", outside
    )
    assert not any(tmp_path.iterdir())  # refused before a study was made


@pytest.mark.parametrize(
    "url, message",
    [
        ("not a url at all", "not a database URL"),
        # a journal file's path: it said "Could not parse SQLAlchemy URL", not where a journal goes
        ("models/tune/tune.journal", "a study in a journal file is OUT_DIR/tune.journal: give its folder as --out-dir"),
        ("u:secretpw@host/db", "not a database URL"),  # not echoed: no password printed
        ("postgresql://nobody@127.0.0.1:1/none", "cannot open --storage"),
    ],
)
def test_tune_refuses_an_unusable_storage_in_one_line(cli, tmp_path, url, message):
    result = cli("tune", "--quick", "--out-dir", tmp_path, "--storage", url)
    assert_one_line_error(result, 2, message)
    assert "secretpw" not in result.stderr


def test_tune_show_without_a_study_is_a_one_line_error_and_makes_nothing(cli, tmp_path):
    out = tmp_path / "tune"
    assert_one_line_error(cli("tune", "--quick", "--out-dir", out, "--show"), 2, "no study journal at")
    assert not out.exists()  # it made the folder and an empty journal
    journal_with_a_study(tmp_path)
    result = cli("tune", "--quick", "--out-dir", tmp_path, "--show", "--study", "other")
    assert_one_line_error(result, 2, "no study 'other'")


def journal_with_a_study(folder, settings=True):
    """A journal holding a study, as a worker that died after creating it (and maybe recording it) leaves it."""
    import optuna

    path = folder / "tune.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(storage=storage, study_name="mnist", directions=["maximize"] * 2 + ["minimize"])
    study.set_user_attr("reference", dict.fromkeys(SUITE, 90.0))  # recorded before the settings, as new_study does
    study.set_user_attr("reference_accuracy", 98.9)
    if settings:
        study.set_user_attr("settings", {"arch": "default", "max_params": 25_000, "seeds": [0, 1], "quick": True})
        study.set_user_attr("note", "the last record")
    return path


def test_a_worker_that_joins_a_study_mid_creation_waits_for_its_settings(tmp_path):
    import threading

    import optuna

    from tune_storage import recorded_settings

    path = journal_with_a_study(tmp_path, settings=False)
    study = optuna.load_study(
        study_name="mnist",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path))),
    )
    threading.Timer(0.5, lambda: study.set_user_attr("settings", {"arch": "default"})).start()
    assert recorded_settings(study, {"arch": "compact"}) == {"arch": "default", "precision": "auto"}


def test_a_study_whose_creator_died_before_its_settings_takes_the_next_workers(cli, tmp_path, monkeypatch):
    import tune_storage

    journal_with_a_study(tmp_path, settings=False)
    monkeypatch.setattr(tune_storage, "SETTINGS_WAIT_SECONDS", 0.5)
    result = cli("tune", "--quick", "--out-dir", tmp_path, "--show")
    assert result.returncode == 0 and "held no settings" in result.stderr, result.stderr
    assert journal_study(tmp_path).user_attrs["settings"]["quick"] is True
    again = cli("tune", "--quick", "--out-dir", tmp_path, "--show")  # the next worker finds them
    assert again.returncode == 0 and "held no settings" not in again.stderr


@pytest.mark.parametrize("damage", ["cut last line", "a record appended to a cut one", "JSON but no record"])
def test_a_journal_damaged_by_a_crash_mid_write_is_repaired_with_one_warning(cli, tmp_path, damage):
    path = journal_with_a_study(tmp_path)
    records = path.read_bytes().splitlines(keepends=True)
    cut = records[-1][: len(records[-1]) // 2]  # the note's record, cut short
    if damage == "JSON but no record":
        cut = b'{"note": "written by hand"}\n'
    path.write_bytes(b"".join(records[:-1]) + cut + (records[-1] if damage != "cut last line" else b""))
    result = cli("tune", "--quick", "--out-dir", tmp_path, "--show")
    assert result.returncode == 0 and "Pareto front" in result.stdout, result.stderr
    assert result.stderr.count("damaged record") == 1
    assert all(json.loads(line) for line in path.read_bytes().splitlines())


def test_a_password_holding_a_raw_at_sign_is_hidden_whole():
    from tune_storage import redact

    assert redact("postgresql://u:p@ss:wd@host/db") == "postgresql://u:***@host/db"
    assert redact("postgresql://u:pw@host:5432/db?x=a@b") == "postgresql://u:***@host:5432/db?x=a@b"
    assert redact("sqlite:///tune.db") == "sqlite:///tune.db"


def test_a_password_in_an_unparsable_storage_url_is_never_printed(cli, tmp_path):
    result = cli("tune", "--quick", "--out-dir", tmp_path, "--storage", "postgresql://u:secretpw@127.0.0.1:abc/db")
    assert_one_line_error(result, 2, "cannot open --storage", "u:***@")
    assert "secretpw" not in result.stdout + result.stderr


def test_an_out_dir_that_is_a_file_is_refused_before_the_study(cli, tmp_path):
    taken = tmp_path / "tune.md"
    taken.write_text("kept")
    assert_one_line_error(cli("tune", "--quick", "--out-dir", taken), 2, "--out-dir", "is a file, not a folder")
    assert list(tmp_path.iterdir()) == [taken] and taken.read_text() == "kept"


def test_an_out_dir_that_cannot_be_written_is_refused_before_the_study(cli, tmp_path):
    """The journal's folder failed as a raw "[Errno 30] Read-only file system"."""
    with read_only_folder(tmp_path / "ro") as folder:
        result = cli("tune", "--quick", "--data-dir", DATA_DIR, "--out-dir", folder / "tune")
        assert_one_line_error(result, 1, f"cannot write into {folder}: ")
        assert not list(folder.iterdir())


def test_a_quick_tune_keeps_nothing_unless_given_an_out_dir(cli, tmp_path, cache_dir, monkeypatch):
    """tune --quick made its smoke study in models/tune, where every later real study then refused to start ("study
    'mnist' was made with ... --quick"), and wrote its report over a real study's."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "tune").mkdir(parents=True)
    (tmp_path / "models" / "tune" / "tune.md").write_text("a real study's report")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temporary"))
    (tmp_path / "temporary").mkdir()
    result = cli("tune", "--quick", "--trials", 1, "--seeds", 0, "--data-dir", DATA_DIR, "--cache-dir", cache_dir)
    assert result.returncode == 0, result.stderr
    assert "| trial |" in result.stdout
    assert "quick run: nothing saved here (give --out-dir to keep its study and report)" in result.stdout
    assert [p.name for p in (tmp_path / "models" / "tune").iterdir()] == ["tune.md"]
    assert (tmp_path / "models" / "tune" / "tune.md").read_text() == "a real study's report"
    assert not list((tmp_path / "temporary").iterdir())


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # as tune.py ignores it
def test_an_error_a_ctrl_c_causes_inside_optuna_stops_tune_as_the_ctrl_c():
    """Ctrl-C can land inside Optuna's journal writes, whose lock cleanup then raises FileNotFoundError in its place
    (seen in CI): the trial is pruned as interrupted and the worker stops as on any Ctrl-C (exit 130), not with it."""
    import optuna

    from tune_storage import work

    def interrupted_inside_a_journal_write(trial):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(10)  # the interrupt lands here
        except KeyboardInterrupt:
            raise FileNotFoundError("the lock file it had already removed") from None

    study = optuna.create_study()
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        work(study, 1, None, interrupted_inside_a_journal_write)
    (trial,) = study.trials
    assert trial.state.name == "PRUNED" and trial.user_attrs["pruned"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is handler
