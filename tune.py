"""Hyperparameter search on Optuna: a multi-objective study scored on data held out of the training set.

Each trial trains one epoch per seed on the training images less the validation split (data.py) and
scores it there, clean and under the corruption suite, with the constraint that no corruption falls more
than a point below the earlier recipe, which the study trains when it is made; the test set is never opened.
Any number of workers, in other terminals or on other machines, join a study by sharing its storage: a journal
file by default, or any database URL Optuna takes (PostgreSQL for many machines). torch and the plots are
imported where they are used: `tune --help` answers without them.

This module holds the command (its options, the driver); tune_search.py the space and a trial, tune_storage.py
the study's storage and the loop beside other workers, tune_report.py the report, tune_workers.py --workers.
"""

import argparse
import socket
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import optuna

from cli import (
    add_run_options,
    add_seeds_option,
    at_most_cpus,
    default_output,
    output_folder,
    positive,
    resolve_run_options,
)
from config import (
    DRY_RUN_STEPS,
    PARAMETER_BUDGETS,
    QUICK_SUITE_IMAGES,
    add_architecture_option,
    architecture,
    preset_recipe,
)
from tune_report import report_owner, write_report
from tune_search import (
    OBJECTIVES,
    architecture_params,
    hopeless_accuracy,
    measure_reference,
    objective,
    search_params,
    smallest_architecture,
)
from tune_storage import (
    JOURNAL_FILE,
    TuneError,
    open_study,
    recorded_settings,
    redact,
    settings_option,
    study_settings,
    work,
)

DEFAULT_OUT_DIR = "models/tune"  # a study's journal, report and trial configs, unless --quick

TRIALS, QUICK_TRIALS = 60, 2  # complete trials a study holds by default, without and with --quick


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
    add_seeds_option(parser, [0, 1], "one training run per seed per trial")
    parser.add_argument(
        "--storage",
        type=storage_url,
        metavar="URL",
        help="Optuna storage URL shared by the workers, such as postgresql://user@host/db "
        "(default: the journal file OUT_DIR/tune.journal)",
    )
    parser.add_argument("--study", default="mnist", help="study name; the same name joins the same study")
    parser.add_argument(
        "--out-dir",
        type=output_folder,
        help=f"folder for the journal, tune.md, tune.json and the plots of one study (another study needs its own; "
        f"default: {DEFAULT_OUT_DIR}; a --quick run keeps nothing unless given one)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: a few training steps per run, the suite on {QUICK_SUITE_IMAGES} validation images; the "
        "figures mean nothing",
    )
    parser.add_argument("--show", action="store_true", help="only write and print the report of the study")
    parser.add_argument(
        "--workers",
        type=at_most_cpus,
        default=1,
        help="worker processes on this machine, sharing the study and the cores (each gets --threads cores / N)",
    )
    parser.add_argument("--no-report", action="store_true", help="leave the report to another worker")
    add_run_options(parser)


def storage_url(text):
    """--storage's type: a database URL. A file's path is no URL: the journal file is --out-dir's, named here. Not
    echoed: a URL without its scheme may still hold a password."""
    if "://" not in text:
        raise argparse.ArgumentTypeError(
            f"not a database URL (such as postgresql://user@host/db); a study in a journal file is "
            f"OUT_DIR/{JOURNAL_FILE}: give its folder as --out-dir"
        )
    return text


def run(args):
    from checkpoint import writable_folder
    from model import MNISTModel, count_parameters

    architecture_params(architecture(args.arch))  # trial 0 must be a point of the search space
    args.trials = args.trials or (QUICK_TRIALS if args.quick else TRIALS)
    args.max_params = args.max_params or PARAMETER_BUDGETS.get(args.arch, PARAMETER_BUDGETS["default"])
    fewest = count_parameters(MNISTModel(smallest_architecture()))
    if args.max_params < fewest:
        raise TuneError(f"--max-params {args.max_params:,} fits no architecture searched: the smallest has {fewest:,}")
    if args.out_dir is None and args.quick and not args.show:
        # A smoke run's study in the default folder made every later real study there refuse to start.
        with tempfile.TemporaryDirectory(prefix="tune-quick-") as folder:
            args.out_dir = folder
            code = run_study(args, "interrupted: a quick run keeps nothing")
        kept = "its report" if args.storage else "its study and report"
        print(f"quick run: nothing saved here (give --out-dir to keep {kept})")
        return code
    if args.out_dir is None:
        default_output(args, "out_dir", DEFAULT_OUT_DIR)
    if args.storage is None or not args.no_report:
        writable_folder(args.out_dir)  # before the trials, not after them
    owner = report_owner(args.out_dir)
    if owner not in (None, args.study):
        raise TuneError(
            f"--out-dir {args.out_dir} holds the report of study {owner!r}: give study {args.study!r} its own --out-dir"
        )
    return run_study(args, "interrupted: the study keeps its finished trials; the same command continues it")


def run_study(args, interrupted):
    device, data_dir, cache_dir = resolve_run_options(args)
    try:
        if args.workers > 1 and not args.show:
            return run_workers(args)
        tune(args, preset_recipe(args.arch), device, data_dir, cache_dir)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    return 0


def run_workers(args):
    """--workers N: the workers to the end, then the report; exit 0 only if every worker finished its part."""
    import tune_workers

    ended = tune_workers.run_workers(args, args.workers)
    settings = study_settings(args)
    study = open_study(args.study, args.storage, args.out_dir)
    failed = tune_workers.failures(ended, study.trials, socket.gethostname())
    for line in failed:
        print(line, file=sys.stderr)
    print(write_report(study, args.study, recorded_settings(study, settings), Path(args.out_dir)))
    return 1 if failed else 0


def tune(args, base, device, data_dir, cache_dir):
    """The `tune` command: join or create the study, run trials, then write the report."""
    optuna.logging.set_verbosity(optuna.logging.INFO)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if args.show:
        study = open_study(args.study, args.storage, args.out_dir)
    else:
        # --quick trains as --dry-run does, so that its reproduce commands (with --dry-run) match exactly
        base = replace(base, max_steps=DRY_RUN_STEPS if args.quick else None, log_every=sys.maxsize)  # a line a run
        data = load_validation(device, data_dir, cache_dir, QUICK_SUITE_IMAGES if args.quick else None)
        study = open_study(args.study, args.storage, args.out_dir, create=lambda: new_study(args, base, device, data))
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


def new_study(args, base, device, data):
    """A new study's (directions, user attributes, first trial): the earlier recipe's clean and per-corruption
    accuracy on the study's seeds (the constraint's reference), its settings (recorded last: workers that join
    wait for them), and the current recipe as trial 0."""
    accuracy, reference = measure_reference(args.arch, args.seeds, base, device, data, args.precision)
    attributes = {"reference": reference, "reference_accuracy": accuracy, "settings": study_settings(args)}
    return list(OBJECTIVES.values()), attributes, search_params(base, architecture(args.arch))


def load_validation(device, data_dir, cache_dir, suite_images=None):
    """The training split less the validation images, the validation images, and the corruption suite of the first
    suite_images of them (all by default) with their labels."""
    from corruptions import labelled_suite
    from train import load_data

    data = load_data(data_dir, device, validation=True)
    data["corrupted"], data["corrupted_labels"] = labelled_suite(*data["eval"], cache_dir, suite_images)
    return data
