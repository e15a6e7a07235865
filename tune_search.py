"""tune's search: the space (the recipe's numbers and the architecture's widths and depths), the objectives, and
a trial's objective function: one epoch per seed on the training images less the validation split, scored
there clean and under the corruption suite, against the earlier recipe's reference."""

import statistics
from dataclasses import asdict, replace
from itertools import groupby

import optuna
from optuna.trial import TrialState

from config import (
    BASELINE_RECIPE,
    POOL,
    RUN_CONTROLS,
    Augmentation,
    architecture,
    architecture_name,
    recipe_model,
)
from tune_storage import TuneError, study_trials, worker_name

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
# ones included (docs/tuning.md).
HOPELESS_MARGIN = 0.5
# TrainConfig fields outside the search space: the last two are fitted on validation, not searched
NOT_SEARCHED = ("augmentation", "epochs", "temperature", "energy_threshold")
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
# The suite's nearest relatives of digits scanned from other writers (lower resolution, thinner pens, other
# sizes, and predict's preparation between them): shown beside each front trial against the reference, as a
# study must not trade them away for the others.
WATCHED = ("low_resolution_8", "low_resolution_12", "thin_strokes", "scale")
SHORTFALL = "corruption shortfall"  # the constraint's name: worst points below the reference, less the margin
# Pruned trials carry constraints too. TPE ranks its good trials feasible first, then pruned, then infeasible:
# with the constraint rarely met, pruned trials without one counted as good, and a study drew architectures
# over the budget 85 % of the time (docs/tuning.md). An architecture over the budget is infeasible by
# 100 + its % over (beyond any shortfall, at most 100 points); a hopeless trial by the points it lies under.
OVER_BUDGET, HOPELESS = "parameters over budget", "under the hopeless accuracy"


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
        deskew=trial.suggest_float("deskew", 0, 1.5),
        view_margin=trial.suggest_float("view_margin", 0, 2),
        nondigits=trial.suggest_float("nondigits", 0.02, 0.25),
        nondigit_weight=trial.suggest_float("nondigit_weight", 0, 0.1),
        lookahead=trial.suggest_float("lookahead", 0, 0.97),
        bn_bias_lr=trial.suggest_float("bn_bias_lr", 1, 32, log=True),
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
    return {**recipe_params(config), **architecture_params(spec)}


def recipe_params(config):
    """The recipe part of search_params: config's searched fields, the augmentation's included."""
    searched = {key: value for key, value in asdict(config).items() if key not in (*RUN_CONTROLS, *NOT_SEARCHED)}
    return {**asdict(config.augmentation), **searched}


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
                **{
                    key: metrics[key]
                    for key in ("seed", "accuracy", "train_seconds", "temperature", "energy_threshold")
                },
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
    return round(study.user_attrs["reference_accuracy"] - HOPELESS_MARGIN, 2)


def set_shortfall(trial, runs):
    """The constraint: the corruption shortfall against the study's reference, less the margin."""
    trial.set_constraint(SHORTFALL, shortfall(runs, trial.study.user_attrs["reference"]) - REFERENCE_MARGIN)


def corruption_accuracies(model, data, clean_accuracy):
    """The mean corruption accuracy % on data's suite, and {corruption: accuracy %}."""
    from evaluation import accuracy_by_corruption, evaluate_robustness

    report = evaluate_robustness(model, data["corrupted"], data["corrupted_labels"], clean_accuracy)
    return report["mean_corruption_accuracy"], accuracy_by_corruption(report)


def mean_accuracy(runs, corruption):
    """A corruption's accuracy %, averaged over a trial's runs."""
    return statistics.fmean(run["corruption_accuracy"][corruption] for run in runs)


def watched(runs, reference):
    """{corruption: (accuracy %, points against the reference)} of WATCHED, the accuracies averaged over the runs;
    (None, None) for one that a study made with an older suite never measured."""
    entries = {}
    for name in WATCHED:
        if name in reference and all(name in run["corruption_accuracy"] for run in runs):
            mean = mean_accuracy(runs, name)
            entries[name] = (round(mean, 2), round(mean - reference[name], 2))
        else:
            entries[name] = (None, None)
    return entries


def shortfall(runs, reference):
    """The most points that any corruption's accuracy, averaged over the runs, lies below the reference's."""
    return max(accuracy - mean_accuracy(runs, name) for name, accuracy in reference.items())


def measure_reference(arch, seeds, base, device, data, precision="auto"):
    """The clean accuracy % and {corruption: accuracy %} of the earlier recipe as it shipped on arch (a preset's
    former layout, as config.recipe_model gives it), means over seeds: a compact study is held to the compact
    preset of that time, not to the default's."""
    from train import train_and_evaluate

    print("training the earlier recipe on each seed: the reference of the corruption constraint")
    arch, config, contrast_stretch = recipe_model(arch, BASELINE_RECIPE)
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
