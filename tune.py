"""Hyperparameter search on Optuna: a multi-objective study scored on data held out of the training set.

Each trial trains one epoch per seed on the training images less the validation split (data.py) and
scores it there, clean and under the corruption suite, with the constraint that no corruption falls more
than a point below the earlier recipe, which the study trains when it is made; the test set is never opened.
Any number of workers, in other terminals or on other machines, join a study by sharing its storage: a journal
file by default, or any database URL Optuna takes (PostgreSQL for many machines). torch and the plots are
imported where they are used: `tune --help` answers without them.
"""

import json
import math
import os
import socket
import statistics
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict, replace
from itertools import groupby
from pathlib import Path

import optuna
from optuna.trial import FixedTrial, TrialState

from cli import (
    add_cache_option,
    add_data_option,
    add_device_option,
    add_precision_option,
    add_threads_option,
    apply_threads,
    positive,
    resolve_cache_dir,
    resolve_data_dir,
)
from config import (
    DRY_RUN_STEPS,
    EARLIER_RECIPE,
    PARAMETER_BUDGETS,
    POOL,
    RUN_CONTROLS,
    SUITE_SEED,
    Augmentation,
    TrainConfig,
    add_architecture_option,
    architecture,
    architecture_name,
    preset_recipe,
    recipe_json,
    recipe_model,
)
from errors import InputError

OBJECTIVES = {  # name -> direction; each trial's values are the means over its seeds
    "validation accuracy %": "maximize",
    # The geometric mean of the corruptions' error rates, not the mean of their accuracies: each corruption
    # counts by how many times its error grows, so one that collapses from 1% to 5% (as translate did under
    # a mean's search) weighs as much as a hard one going from 20% to 100%; a mean of accuracies saw 4 points.
    # The worst corruption's accuracy alone would track one corruption (canny edges) and nothing else.
    "validation corruption error, geometric mean %": "minimize",
    "training seconds": "minimize",  # at the default thread count, as users run it
}
# A trial is pruned as hopeless once a seed scores this many points below the earlier recipe on validation (the
# study's reference, on the study's own preset): a fixed 98.5 % pruned most of a compact study's trials, good
# ones included (docs/tuning.md). Studies made before the reference was measured keep HOPELESS_ACCURACY.
HOPELESS_MARGIN, HOPELESS_ACCURACY = 0.5, 98.5
HEARTBEAT_SECONDS = 5  # a database-stored trial whose worker stays silent for 3 beats is failed
SCHEMA_ATTEMPTS = 5  # tries at opening a database that other workers are setting up at the same moment
POLL_SECONDS = 2  # how often a worker that waits for the others' last trials looks again
JOURNAL_FILE = "tune.journal"
SETTINGS_WAIT_SECONDS = 30  # how long a worker that joins a study mid-creation waits for its settings
TRIALS, QUICK_TRIALS = 60, 2  # complete trials a study holds by default, without and with --quick
NOT_SEARCHED = ("augmentation", "epochs", "temperature")  # TrainConfig fields outside the search space
# Channels searched, fewest and most: the stem, each stage's convolutions (at 14x14, then 7x7), the head.
WIDTHS = {"stem": (8, 32), "stage1": (8, 48), "stage2": (12, 64), "head": (8, 48)}
STAGES = ("stage1", "stage2")
MAX_DEPTH = 2  # 3x3 convolutions in a stage
WIDTH_STEP = 4  # channels: finer steps add trials, not accuracy
MIN_ERROR = 0.01  # % error a corruption counts as at least: a perfect score must not zero the geometric mean
# The constraint: no corruption more than this many points below the earlier recipe (before the robustness
# work), on the study's own seeds and validation split, measured when the study is made. A mean, even of
# error rates, let one corruption fall (translate, then stripe) while the others rose.
REFERENCE_MARGIN = 1.0
SHORTFALL = "corruption shortfall"  # the constraint's name: worst points below the reference, less the margin
# Pruned trials carry constraints too. TPE ranks its good trials feasible first, then pruned, then infeasible:
# with the constraint rarely met, pruned trials without one counted as good, and a study drew architectures
# over the budget 85 % of the time (docs/tuning.md). An architecture over the budget is infeasible by
# 100 + its % over (beyond any shortfall, at most 100 points); a hopeless trial by the points it lies under.
OVER_BUDGET, HOPELESS = "parameters over budget", "under the hopeless accuracy"


def add_arguments(parser):
    add_architecture_option(parser)  # the study's trial 0, and the budget --max-params defaults to
    parser.add_argument(
        "--max-params",
        type=positive(int),
        help="parameter budget of the searched architectures, checked before a trial trains "
        "(default: "
        + ", ".join(f"{budget:,} for --arch {name}" for name, budget in PARAMETER_BUDGETS.items())
        + f", else {PARAMETER_BUDGETS['default']:,})",
    )
    parser.add_argument(
        "--trials",
        type=positive(int),
        help=f"complete trials the study should hold, all workers together (default: {TRIALS}, "
        f"{QUICK_TRIALS} with --quick)",
    )
    parser.add_argument(
        "--timeout", type=positive(float), help="stop starting trials after this many seconds (default: no limit)"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="one training run per seed per trial")
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage URL shared by the workers, such as postgresql://user@host/db "
        "(default: the journal file OUT_DIR/tune.journal)",
    )
    parser.add_argument("--study", default="mnist", help="study name; the same name joins the same study")
    parser.add_argument("--out-dir", default="models/tune", help="folder for tune.md, tune.json and the plots")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: a few training steps per run; the figures mean nothing"
    )
    parser.add_argument("--show", action="store_true", help="only write and print the report of the study")
    parser.add_argument(
        "--workers",
        type=positive(int),
        default=1,
        help="worker processes on this machine, sharing the study and the cores (each gets --threads cores / N)",
    )
    parser.add_argument("--no-report", action="store_true", help="leave the report to another worker")
    add_device_option(parser)
    add_precision_option(parser)
    add_threads_option(parser)
    add_data_option(parser)
    add_cache_option(parser)


def run(args):
    from model import MNISTModel, count_parameters

    architecture_params(architecture(args.arch))  # trial 0 must be a point of the search space
    args.trials = args.trials or (QUICK_TRIALS if args.quick else TRIALS)
    args.max_params = args.max_params or PARAMETER_BUDGETS.get(args.arch, PARAMETER_BUDGETS["default"])
    fewest = count_parameters(MNISTModel(smallest_architecture()))
    if args.max_params < fewest:
        raise TuneError(f"--max-params {args.max_params:,} fits no architecture searched: the smallest has {fewest:,}")
    apply_threads(args.threads)
    try:
        if args.workers > 1 and not args.show:
            return run_workers(args)
        data_dir, cache_dir = resolve_data_dir(args.data_dir), resolve_cache_dir(args.cache_dir)
        tune(args, preset_recipe(args.arch), args.device, data_dir, cache_dir)
    except KeyboardInterrupt:
        print("interrupted: the study keeps its finished trials; the same command continues it", file=sys.stderr)
        return 130
    return 0


def run_workers(args):
    """--workers N: the workers to the end, then the report; exit 0 only if every worker finished its part."""
    import tune_workers

    ended = tune_workers.run_workers(args, args.workers)
    settings = study_settings(args)
    study = open_study(args.study, args.storage, args.out_dir, preset_recipe(args.arch), settings)
    failed = tune_workers.failures(ended, study.trials, socket.gethostname())
    for line in failed:
        print(line, file=sys.stderr)
    print(write_report(study, args.study, recorded_settings(study, settings), Path(args.out_dir)))
    return 1 if failed else 0


class TuneError(InputError):
    """The --storage URL cannot be parsed or reached, or the study was made with other settings."""


def suggest_config(trial, base):
    """The search space around the hand-found recipe (docs/tuning.md says why these ranges)."""
    augmentation = Augmentation(
        degrees=trial.suggest_float("degrees", 0, 15),
        translate=trial.suggest_float("translate", 0, 0.15),
        scale=trial.suggest_float("scale", 0, 0.15),
        stroke=trial.suggest_float("stroke", 0, 0.8),
        resolution=trial.suggest_float("resolution", 0, 0.6),
        noise=trial.suggest_float("noise", 0, 0.6),
        clean_tail=trial.suggest_float("clean_tail", 0, 0.7),
    )
    return replace(
        base,
        batch_size=trial.suggest_categorical("batch_size", [64, 128, 256]),
        lr=trial.suggest_float("lr", 0.1, 2.0, log=True),
        momentum=trial.suggest_float("momentum", 0.8, 0.97),
        weight_decay=trial.suggest_float("weight_decay", 1e-5, 3e-3, log=True),
        warmup=trial.suggest_float("warmup", 0.05, 0.5),
        label_smoothing=trial.suggest_float("label_smoothing", 0, 0.2),
        augmentation=augmentation,
    )


def suggest_architecture(trial):
    """Widths and depths of MNISTModel: a stem, two stages of one or two 3x3 convolutions (at 14x14, then 7x7),
    each ending in a max-pool, and a head. Both widths of a stage are always drawn, the second used only at
    depth 2: every trial has every parameter, which Optuna's importances need (they read only those)."""
    body = []
    for stage in STAGES:
        depth = trial.suggest_int(f"{stage}_depth", 1, MAX_DEPTH)
        widths = [trial.suggest_int(f"{stage}_width{i}", *WIDTHS[stage], step=WIDTH_STEP) for i in (1, 2)]
        body += [*widths[:depth], POOL]
    stem, head = (trial.suggest_int(part, *WIDTHS[part], step=WIDTH_STEP) for part in ("stem", "head"))
    return architecture({"stem": stem, "body": body, "head": head})


def smallest_architecture():
    fewest = {part: low for part, (low, _) in WIDTHS.items()}
    body = [layer for stage in STAGES for layer in (fewest[stage], POOL)]
    return architecture({"stem": fewest["stem"], "body": body, "head": fewest["head"]})


def architecture_params(spec):
    """The point of suggest_architecture's space that spec is; a TuneError says what of it lies outside."""
    stages = [list(widths) for pooled, widths in groupby(spec["body"], lambda layer: layer == POOL) if not pooled]
    outside = [f"a convolution after the last {POOL!r}"] if len(stages) > len(STAGES) else []
    params = {"stem": spec["stem"], "head": spec["head"]}
    for stage, widths in zip(STAGES, stages, strict=False):
        if len(widths) > MAX_DEPTH:
            outside.append(f"{len(widths)} convolutions in {stage} (at most {MAX_DEPTH})")
        params.update({f"{stage}_depth": len(widths), f"{stage}_width1": widths[0], f"{stage}_width2": widths[-1]})
        outside += [f"{stage} width {width}" for width in widths if not _searched(stage, width)]
    outside += [f"{part} width {params[part]}" for part in ("stem", "head") if not _searched(part, params[part])]
    if outside:
        ranges = ", ".join(f"{part} {low} to {high}" for part, (low, high) in WIDTHS.items())
        raise TuneError(
            f"--arch {architecture_name(spec)} lies outside the search space ({'; '.join(outside)}): "
            f"widths in steps of {WIDTH_STEP}, {ranges}, 1 or {MAX_DEPTH} convolutions a stage"
        )
    return params


def _searched(part, width):
    low, high = WIDTHS[part]
    return width in range(low, high + 1, WIDTH_STEP)


def search_params(config, spec):
    """The point of the search space that config and spec are (for enqueueing the current default)."""
    return {
        **asdict(config.augmentation),
        **{key: value for key, value in asdict(config).items() if key not in (*RUN_CONTROLS, *NOT_SEARCHED)},
        **architecture_params(spec),
    }


def open_study(name, storage_url, out_dir, base, settings, measure_reference=None):
    """Join the study, or create it if it does not exist and measure_reference is given: a new study records
    the earlier recipe's clean and per-corruption accuracy (measure_reference()) and its settings (arch, seeds, quick),
    and starts with the current default as trial 0. Without measure_reference a missing study is an error."""
    storage = open_storage(storage_url, out_dir)
    try:
        return optuna.load_study(storage=storage, study_name=name)
    except KeyError:
        if measure_reference is None:
            raise TuneError(f"no study {name!r} in this storage: run tune without --show first") from None
    accuracy, reference = measure_reference()  # before the study exists: workers that join wait only for its settings
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=list(OBJECTIVES.values()))
    except optuna.exceptions.DuplicatedStudyError:  # another worker made it meanwhile
        return optuna.load_study(storage=storage, study_name=name)
    study.set_user_attr("reference", reference)
    study.set_user_attr("reference_accuracy", accuracy)
    study.set_user_attr("settings", settings)
    note = "the default recipe before this study"
    study.enqueue_trial(search_params(base, architecture(settings["arch"])), user_attrs={"note": note})
    return study


def recorded_settings(study, own):
    """The settings the study's creator records just after creating it: a worker that joined in between waits.
    A study whose creator stopped before recording them gets this worker's own, with a warning."""
    deadline = time.monotonic() + SETTINGS_WAIT_SECONDS
    while "settings" not in study.user_attrs:
        if time.monotonic() > deadline:
            print(
                f"warning: study {study.study_name!r} held no settings (its creator stopped before recording them); "
                f"recorded this worker's: {settings_option(own)}",
                file=sys.stderr,
            )
            study.set_user_attr("settings", own)
            break
        time.sleep(POLL_SECONDS / 10)
    return study.user_attrs["settings"]


def study_settings(args):
    """What every trial of a study must share: where it starts, its budget, the seeds, and whether runs are --quick."""
    return {"arch": args.arch, "max_params": args.max_params, "seeds": args.seeds, "quick": args.quick}


def settings_option(settings):
    return (
        f"--arch {settings['arch']} --max-params {settings.get('max_params')} "
        f"--seeds {' '.join(map(str, settings['seeds']))}"
    ) + (" --quick" if settings["quick"] else "")


def open_storage(url, out_dir):
    if url is None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        path = str(Path(out_dir) / JOURNAL_FILE)
        lock = optuna.storages.journal.JournalFileSymlinkLock(path)  # the lock Optuna's own writes take
        lock.acquire()
        try:
            repair_journal(Path(path))
        finally:
            lock.release()
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path, lock))
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=3 * HEARTBEAT_SECONDS
            )
        except (IntegrityError, ProgrammingError) as error:
            # Workers started together on a new database all create Optuna's tables (optuna#1092);
            # one wins, and the others find the tables there on their next attempt.
            failure = error
            time.sleep(1 + attempt)
        except Exception as error:  # noqa: BLE001  SQLAlchemy and each database driver raise their own kinds
            failure = error
            break
    raise TuneError(f"cannot open --storage {redact(url)}: {first_line(failure)}")


def repair_journal(path):
    """Drop what a crash mid-write leaves in a journal: a last record without its newline, and a partial
    record that a later write was appended to (that later record is kept). One warning line says so."""
    from checkpoint import atomic_write

    if not path.exists():
        return
    data = path.read_bytes()
    *lines, tail = data.split(b"\n")
    kept, damaged = [], 1 if tail else 0
    for line in lines:
        if _is_record(line):
            kept.append(line)
            continue
        damaged += 1
        start = line.rfind(b'{"op_code"')
        if start > 0 and _is_record(line[start:]):
            kept.append(line[start:])
    if damaged:
        repaired = b"".join(line + b"\n" for line in kept)
        atomic_write(path, lambda temporary: Path(temporary).write_bytes(repaired))
        print(
            f"warning: {path} held {damaged} damaged record(s), from a write cut short; dropped them", file=sys.stderr
        )


def _is_record(line):
    """Whether a journal line is one of Optuna's records ({"op_code": N, "worker_id": ..., ...})."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and isinstance(record.get("op_code"), int) and "worker_id" in record


def redact(url):
    """The URL with its password hidden, for printing, whether or not it parses: the user information runs to the
    last @ before the path, since a password may hold a raw @ (postgresql://u:p@ss@host/db -> u:***@host/db)."""
    scheme, separator, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not separator or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}{slash}{path}"


def first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def worker_name():
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_abandoned_trials(study):
    """Mark FAIL the running trials whose worker died: by heartbeat in a database, by process id on this
    machine in a journal (a journal on a shared disk relies on each machine's own workers for its dead)."""
    from checkpoint import process_exists

    optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = trial.user_attrs.get("worker", "").rpartition(":")
        if worker_host == host and not process_exists(int(pid)):
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            print(f"trial {trial.number} failed: its worker (process {pid}) is gone", file=sys.stderr)


def objective(trial, n_trials, max_params, seeds, base, device, data, hopeless, precision="auto"):
    """Train one epoch per seed; prune an architecture over max_params before it trains, and a trial once a
    seed scores below `hopeless` % on validation (its later seeds never train). Sets the constraint where the
    study has a reference."""
    from model import MNISTModel, count_parameters
    from train import TrainingDiverged, train_and_evaluate

    trial.set_user_attr("worker", worker_name())
    ahead = study_trials(trial.study, TrialState.COMPLETE, TrialState.RUNNING, before=trial.number)
    if len(ahead) >= n_trials:  # two workers started trials at the same moment; this one is not needed
        trial.set_user_attr("pruned", "surplus")
        raise optuna.TrialPruned()
    config, spec = suggest_config(trial, base), suggest_architecture(trial)
    parameters = count_parameters(MNISTModel(spec))
    trial.set_user_attr("parameters", parameters)
    if parameters > max_params:
        trial.set_user_attr("pruned", f"{parameters:,} parameters, over --max-params {max_params:,}")
        trial.set_constraint(OVER_BUDGET, 100 + 100 * (parameters - max_params) / max_params)
        raise optuna.TrialPruned()
    runs = []
    for seed in seeds:
        try:
            result = train_and_evaluate(spec, replace(config, seed=seed), device, data, precision=precision)
        except TrainingDiverged as error:
            trial.set_user_attr("pruned", str(error))
            raise optuna.TrialPruned() from None
        metrics = result.metrics
        trial.set_user_attr("numerics", metrics["numerics"])
        mean_corruption_accuracy, by_corruption = corruption_accuracies(result.model, data, metrics["accuracy"])
        worst = min(by_corruption, key=by_corruption.get)
        runs.append(
            {
                **{key: metrics[key] for key in ("seed", "accuracy", "train_seconds", "temperature")},
                "corruption_error_geometric_mean": geometric_mean_error(by_corruption.values()),
                "mean_corruption_accuracy": mean_corruption_accuracy,
                "worst_corruption": worst,
                "worst_corruption_accuracy": by_corruption[worst],
                "corruption_accuracy": by_corruption,
            }
        )
        trial.set_user_attr("runs", runs)
        if metrics["accuracy"] < hopeless:
            trial.set_user_attr(
                "pruned", f"validation accuracy {metrics['accuracy']:.2f}% < {hopeless}% on seed {seed}"
            )
            trial.set_constraint(HOPELESS, hopeless - metrics["accuracy"])
            set_shortfall(trial, runs)
            raise optuna.TrialPruned()
    set_shortfall(trial, runs)
    return [
        statistics.fmean(run[key] for run in runs)
        for key in ("accuracy", "corruption_error_geometric_mean", "train_seconds")
    ]


def hopeless_accuracy(study):
    """The validation accuracy % under which a trial is pruned: HOPELESS_MARGIN below the study's reference."""
    reference = study.user_attrs.get("reference_accuracy")
    return HOPELESS_ACCURACY if reference is None else round(reference - HOPELESS_MARGIN, 2)


def set_shortfall(trial, runs):
    """The constraint, where the study has a reference (studies made before the constraint have none)."""
    reference = trial.study.user_attrs.get("reference")
    if reference:
        trial.set_constraint(SHORTFALL, shortfall(runs, reference) - REFERENCE_MARGIN)


def corruption_accuracies(model, data, clean_accuracy):
    """The mean corruption accuracy % on data's suite, and {corruption: accuracy %}."""
    from evaluation import accuracy_by_corruption, evaluate_robustness

    report = evaluate_robustness(model, data["corrupted"], data["eval"][1], clean_accuracy)
    return report["mean_corruption_accuracy"], accuracy_by_corruption(report)


def shortfall(runs, reference):
    """The most points that any corruption's accuracy, averaged over the runs, lies below the reference's."""
    return max(
        accuracy - statistics.fmean(run["corruption_accuracy"][name] for run in runs)
        for name, accuracy in reference.items()
    )


def measure_reference(arch, seeds, base, device, data, precision="auto"):
    """The clean accuracy % and {corruption: accuracy %} of the earlier recipe as it shipped on arch (a preset's
    former layout, as config.recipe_model gives it), means over seeds: a compact study is held to the compact
    preset of that time, not to the default's."""
    from train import train_and_evaluate

    print("training the earlier recipe on each seed: the reference of the corruption constraint")
    arch, config, contrast_stretch = recipe_model(arch, EARLIER_RECIPE)
    accuracies, runs = [], []
    for seed in seeds:
        run_config = replace(config, seed=seed, max_steps=base.max_steps, log_every=base.log_every)
        result = train_and_evaluate(arch, run_config, device, data, contrast_stretch, precision)
        accuracies.append(result.metrics["accuracy"])
        runs.append(corruption_accuracies(result.model, data, accuracies[-1])[1])
    return statistics.fmean(accuracies), {name: statistics.fmean(run[name] for run in runs) for name in runs[0]}


def geometric_mean_error(accuracies):
    """The geometric mean of the error rates (%) of these accuracies (%); an error under 0.01% counts as 0.01%."""
    return statistics.geometric_mean(max(100 - accuracy, MIN_ERROR) for accuracy in accuracies)


def study_trials(study, *states, before=math.inf):
    return [t for t in study.get_trials(deepcopy=False, states=states) if t.number < before]


def work(study, n_trials, timeout, run_trial):
    """Run trials until the study holds n_trials complete ones or timeout seconds have passed.

    Counts the other workers' running trials as taken, waiting for them rather than starting more,
    and takes over the trial of a worker that died.
    """
    interrupted = []

    def run_or_stop(trial):
        # Ctrl-C mid-trial: the trial is pruned, with the reason, and Optuna logs one line, not a traceback.
        try:
            return run_trial(trial)
        except KeyboardInterrupt:
            interrupted.append(trial.number)
            trial.set_user_attr("pruned", "interrupted")
            raise optuna.TrialPruned("interrupted") from None

    deadline = time.monotonic() + (timeout or math.inf)
    while time.monotonic() < deadline:
        fail_abandoned_trials(study)
        states = Counter(trial.state for trial in study.get_trials(deepcopy=False))
        if states[TrialState.COMPLETE] >= n_trials:
            return
        if states[TrialState.COMPLETE] + states[TrialState.RUNNING] >= n_trials:
            time.sleep(POLL_SECONDS)
            continue
        study.optimize(run_or_stop, n_trials=1)
        if interrupted:
            raise KeyboardInterrupt


def tune(args, base, device, data_dir, cache_dir):
    """The `tune` command: join or create the study, run trials, then write the report."""
    optuna.logging.set_verbosity(optuna.logging.INFO)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if args.show:
        study = open_study(args.study, args.storage, args.out_dir, base, study_settings(args))
    else:
        # --quick trains as --dry-run does, so that its reproduce commands (with --dry-run) match exactly
        base = replace(base, max_steps=DRY_RUN_STEPS if args.quick else None, log_every=sys.maxsize)  # a line a run
        data = load_validation(device, data_dir, cache_dir)
        study = open_study(
            args.study,
            args.storage,
            args.out_dir,
            base,
            study_settings(args),
            measure_reference=lambda: measure_reference(args.arch, args.seeds, base, device, data, args.precision),
        )
    settings = recorded_settings(study, study_settings(args))
    print(f"study {args.study!r} in {redact(args.storage) if args.storage else Path(args.out_dir) / JOURNAL_FILE}")
    if not args.show:
        if settings != study_settings(args):
            raise TuneError(
                f"study {args.study!r} was made with {settings_option(settings)}: "
                "run its workers with the same options, or name another --study"
            )
        hopeless = 0.0 if args.quick else hopeless_accuracy(study)

        def run_trial(trial):
            return objective(
                trial, args.trials, args.max_params, args.seeds, base, device, data, hopeless, args.precision
            )

        work(study, args.trials, args.timeout, run_trial)
    if not args.no_report:
        print(write_report(study, args.study, settings, Path(args.out_dir)))


def load_validation(device, data_dir, cache_dir):
    """The training split less the validation images, the validation images, and their corruption suite."""
    from corruptions import corrupted_test_set
    from train import load_data

    data = load_data(data_dir, device, validation=True)
    data["corrupted"] = corrupted_test_set(data["eval"][0].cpu(), SUITE_SEED, cache_dir)
    return data


def front(study):
    """The Pareto-optimal trials that meet the constraint, lowest validation corruption error first; while none
    meets it, the trial that misses it by least."""
    trials = study.best_trials
    if not trials and (complete := study_trials(study, TrialState.COMPLETE)):
        trials = [min(complete, key=lambda trial: trial.constraints[SHORTFALL])]
    return sorted(trials, key=lambda trial: trial.values[1])


def reproduce(trial, settings, folder):
    """Write the trial's recipe as a --config file; return the command that trains with it."""
    from checkpoint import write_text

    path = folder / "trials" / f"trial_{trial.number}.json"
    config = suggest_config(FixedTrial(trial.params), TrainConfig())
    fitted = [run["temperature"] for run in trial.user_attrs.get("runs", []) if "temperature" in run]
    if fitted:  # the recipe's own, as the default's was fitted: the median over the seeds, on validation
        config = replace(config, temperature=round(statistics.median(fitted), 3))
    write_text(path, recipe_json(config))
    quick = " --dry-run" if settings["quick"] else ""
    return (
        f"python main.py --arch {trial_architecture(trial, settings)} --config {path} --validation "
        f"--seed {settings['seeds'][0]}{quick} --out {folder / f'trial_{trial.number}' / 'mnist_model.pth'}"
    )


def trial_architecture(trial, settings):
    """The trial's architecture, by name or STEM/BODY/HEAD; a study from before the search kept --arch's."""
    if "stem" not in trial.params:
        return settings["arch"]
    return architecture_name(suggest_architecture(FixedTrial(trial.params)))


def write_report(study, name, settings, folder):
    """tune.md, tune.json and the plots in folder; returns the Markdown."""
    states = Counter(trial.state.name.lower() for trial in study.get_trials(deepcopy=False))
    rows = [
        {
            "trial": trial.number,
            **dict(zip(OBJECTIVES, (round(value, 3) for value in trial.values), strict=True)),
            "architecture": trial_architecture(trial, settings),
            "parameters": trial.user_attrs.get("parameters"),
            "shortfall": trial.constraints[SHORTFALL] + REFERENCE_MARGIN if SHORTFALL in trial.constraints else None,
            "runs": trial.user_attrs.get("runs"),
            "note": trial.user_attrs.get("note", ""),
            "params": trial.params,
            "command": reproduce(trial, settings, folder),
        }
        for trial in front(study)
    ]
    summary = {
        "study": name,
        "arch": settings["arch"],
        "max_params": settings.get("max_params"),
        "seeds": settings["seeds"],
        "reference": study.user_attrs.get("reference"),
        "trials": dict(states),
        "pareto_front": rows,
    }
    from checkpoint import write_json, write_text

    write_json(folder / "tune.json", summary)
    markdown = markdown_report(summary)
    write_text(folder / "tune.md", markdown)
    if states["complete"] >= 2:
        write_plots(study, folder)
    return markdown


def markdown_report(summary):
    counts = ", ".join(f"{n} {state}" for state, n in sorted(summary["trials"].items()))
    budget = f", at most {summary['max_params']:,} parameters" if summary["max_params"] else ""
    lines = [
        f"# Study {summary['study']!r}: Pareto front",
        "",
        (
            f"Started from {summary['arch']}{budget}; seeds "
            f"{', '.join(map(str, summary['seeds']))}; trials: {counts}. Scored on the validation split held out "
            "of the training set; the test set was not read."
        ),
        "",
        *(
            [
                (
                    f"Constraint: no corruption more than {REFERENCE_MARGIN:g} point below the earlier recipe, "
                    "trained on the same seeds when the study was made; the front holds only trials that meet it, "
                    "or while none does, the one that misses it by least."
                ),
                "",
            ]
            if summary["reference"]
            else []
        ),
        "| trial | architecture | parameters | "
        + " | ".join(OBJECTIVES)
        + " | worst corruption, points below the earlier recipe"
        + " | reproduce (drop --validation to train on all 60,000) |",
        "| ---: | --- | ---: |" + " ---: |" * (len(OBJECTIVES) + 1) + " --- |",
    ]
    for row in summary["pareto_front"]:
        values = " | ".join(f"{row[name]:.2f}" for name in OBJECTIVES)
        note = f" ({row['note']})" if row["note"] else ""
        parameters = f"{row['parameters']:,}" if row["parameters"] else ""
        shortfall = "" if row["shortfall"] is None else f"{row['shortfall']:.2f}"
        lines.append(
            f"| {row['trial']}{note} | {row['architecture']} | {parameters} | {values} | {shortfall} "
            f"| `{row['command']}` |"
        )
    params = sorted({name for row in summary["pareto_front"] for name in row["params"]})
    lines += ["", "Their hyperparameters:", "", "| trial | " + " | ".join(params) + " |"]
    lines.append("| ---: |" + " ---: |" * len(params))
    for row in summary["pareto_front"]:
        lines.append(f"| {row['trial']} | " + " | ".join(f"{row['params'][name]:.4g}" for name in params) + " |")
    return "\n".join(lines) + "\n"


def write_plots(study, folder):
    """The Pareto front of the two accuracies, and each parameter's importance for each objective."""
    from optuna.visualization import matplotlib as optuna_plots

    import plots

    accuracy, corruption, _ = OBJECTIVES
    axes = optuna_plots.plot_pareto_front(
        study, targets=lambda trial: trial.values[:2], target_names=[accuracy, corruption]
    )
    plots.save_figure(axes.figure, folder / "pareto_front.png")
    files = ("importance_accuracy.png", "importance_corruption.png", "importance_seconds.png")
    for index, ((name, direction), file) in enumerate(zip(OBJECTIVES.items(), files, strict=True)):
        sign = -1 if direction == "maximize" else 1  # PED-ANOVA, Optuna's default, ranks what makes a target low
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes")  # heeded by sign
            axes = optuna_plots.plot_param_importances(
                study, target=lambda trial, index=index, sign=sign: sign * trial.values[index], target_name=name
            )
        plots.save_figure(axes.figure, folder / file)
