"""tune's report: the Pareto front of the trials that meet the constraint, each with a command that reproduces
it, as tune.md, tune.json and plots."""

import statistics
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

from optuna.trial import FixedTrial, TrialState

from cli import read_record
from config import TrainConfig, architecture_name, recipe_json
from tune_search import (
    OBJECTIVES,
    REFERENCE_MARGIN,
    SHORTFALL,
    WATCHED,
    recipe_params,
    suggest_architecture,
    suggest_config,
    watched,
)
from tune_storage import precision_option, study_trials


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
    # A trial made before a field joined the search space trained with that field's default of the time; for
    # deskew and view_margin, none: every study made before they were searched trained a model that did not deskew
    # and read each image once.
    earlier = {**recipe_params(TrainConfig()), "deskew": 0.0, "view_margin": 0.0}
    config = suggest_config(FixedTrial({**earlier, **trial.params}), TrainConfig())
    runs = trial.user_attrs["runs"]
    # the recipe's own, as the default's were fitted: the medians over the seeds, on validation
    config = replace(config, temperature=round(statistics.median(run["temperature"] for run in runs), 3))
    if config.nondigit_weight and all(run.get("energy_threshold") is not None for run in runs):
        config = replace(config, energy_threshold=round(statistics.median(run["energy_threshold"] for run in runs), 3))
    write_text(path, recipe_json(config))
    quick = " --dry-run" if settings["quick"] else ""
    return (
        f"python main.py --arch {trial_architecture(trial)} --config {path} --validation "
        f"--seed {settings['seeds'][0]}{quick}{precision_option(settings)} "
        f"--out {folder / f'trial_{trial.number}' / 'mnist_model.pth'}"
    )


def trial_architecture(trial):
    """The trial's architecture, by name or STEM/BODY/HEAD."""
    return architecture_name(suggest_architecture(FixedTrial(trial.params)))


def write_report(study, name, settings, folder):
    """tune.md, tune.json and the plots in folder; returns the Markdown."""
    states = Counter(trial.state.name.lower() for trial in study.get_trials(deepcopy=False))
    rows = [
        {
            "trial": trial.number,
            **dict(zip(OBJECTIVES, (round(value, 3) for value in trial.values), strict=True)),
            "architecture": trial_architecture(trial),
            "parameters": trial.user_attrs["parameters"],
            "shortfall": trial.constraints[SHORTFALL] + REFERENCE_MARGIN,
            "watched": watched(trial.user_attrs["runs"], study.user_attrs["reference"]),
            "runs": trial.user_attrs["runs"],
            "note": trial.user_attrs.get("note", ""),
            "params": trial.params,
            "command": reproduce(trial, settings, folder),
        }
        for trial in front(study)
    ]
    summary = {
        "study": name,
        "arch": settings["arch"],
        "max_params": settings["max_params"],
        "seeds": settings["seeds"],
        "precision": settings["precision"],
        "reference": study.user_attrs["reference"],
        "trials": dict(states),
        "pareto_front": rows,
    }
    from checkpoint import write_results

    markdown = markdown_report(summary)
    write_results(folder, "tune", summary, markdown)
    if states["complete"] >= 2:
        write_plots(study, folder)
    return markdown


def report_owner(folder):
    """The study whose report folder holds, or None: another study's would replace its files and trial configs."""
    return (read_record(Path(folder) / "tune.json") or {}).get("study")


def markdown_report(summary):
    counts = ", ".join(f"{n} {state}" for state, n in sorted(summary["trials"].items()))
    lines = [
        f"# Study {summary['study']!r}: Pareto front",
        "",
        (
            f"Started from {summary['arch']}, at most {summary['max_params']:,} parameters; seeds "
            f"{', '.join(map(str, summary['seeds']))}; precision {summary['precision']}; trials: {counts}. Scored on "
            "the validation split held out of the training set; the test set was not read."
        ),
        "",
        (
            f"Constraint: no corruption more than {REFERENCE_MARGIN:g} point below the earlier recipe, "
            "trained on the same seeds when the study was made; the front holds only trials that meet it, "
            "or while none does, the one that misses it by least."
        ),
        "",
        "| trial | architecture | parameters | "
        + " | ".join(OBJECTIVES)
        + " | worst corruption, points below the earlier recipe | "
        + " | ".join(f"{name} % (against it)" for name in WATCHED)
        + " | reproduce (drop --validation to train on all 60,000) |",
        "| ---: | --- | ---: |" + " ---: |" * (len(OBJECTIVES) + 1 + len(WATCHED)) + " --- |",
    ]
    for row in summary["pareto_front"]:
        values = " | ".join(f"{row[name]:.2f}" for name in OBJECTIVES)
        entries = " | ".join(
            "-" if accuracy is None else f"{accuracy:.2f} ({against:+.2f})"
            for accuracy, against in row["watched"].values()
        )
        note = f" ({row['note']})" if row["note"] else ""
        lines.append(
            f"| {row['trial']}{note} | {row['architecture']} | {row['parameters']:,} | {values} "
            f"| {row['shortfall']:.2f} | {entries} | `{row['command']}` |"
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
