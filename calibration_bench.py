"""`python main.py bench calibration`: how well the default architecture's probabilities mean what they say.

Per seed, two runs of the recipe (the default's, or a --config file's): one on the training set less the validation
split, whose temperature is fitted there (what the recipe's temperature is the median of), and one on all 60,000
images, saved with the recipe's temperature and measured on the test set: expected calibration error and NLL before
and after the temperature, clean and under the whole corruption suite; what the "not sure" rule at --min-confidence
flags there; and what it flags among images that are not digits (nondigits.py, never trained on). --min-confidence
is chosen on the validation split: its digits, and non-digits of the training's own kinds (outliers.py) drawn with a
seed no training run uses.
"""

import statistics
from dataclasses import replace

from config import TrainConfig

SETS = ("clean", "corrupted")  # the test set as it is, and the corruption suite made from it
THRESHOLDS = (50, 60, 70, 80, 85, 90, 95, 99)  # --min-confidence candidates, measured on the validation split
HELD_OUT_NONDIGITS = 2000  # non-digits of the training's kinds that the thresholds are measured on
HELD_OUT_SEED = 2**32 + 1  # their seed: training draws from the run's seed, below 2**32 in every study and test


def calibration_benchmark(
    seeds,
    device,
    data_dir,
    out_dir,
    cache_dir,
    min_confidence,
    max_steps=None,
    suite_images=None,
    recipe=None,
    recipe_file=None,
):
    """The figures of each seed; with suite_images, the suite is made from the first that many test images only.
    recipe: the TrainConfig trained (default: the default's); recipe_file: the file it was read from, for the report."""
    import torch

    from calibration import CALIBRATION_BINS
    from checkpoint import write_results
    from corruptions import labelled_suite
    from data import normalize
    from nondigits import digit_shaped_letters, letters, scribbles, shapes
    from outliers import draw
    from train import load_data

    recipe = recipe or TrainConfig()
    test = load_data(data_dir, device)
    validation = load_data(data_dir, device, validation=True)
    suite = labelled_suite(*test["eval"], cache_dir, suite_images)
    made = {"scribbles": scribbles(), "letters": letters(), "shapes": shapes(), "digit_shaped": digit_shaped_letters()}
    nondigits = {name: normalize(images * 255).to(device) for name, images in made.items()}
    held_out = draw(HELD_OUT_NONDIGITS, torch.Generator(device).manual_seed(HELD_OUT_SEED), device)
    runs, sweeps = zip(
        *(
            seed_run(seed, recipe, device, test, validation, held_out, suite, nondigits, min_confidence, max_steps)
            for seed in seeds
        ),
        strict=True,
    )
    results = {
        "architecture": "default",
        "recipe_file": None if recipe_file is None else str(recipe_file),
        "recipe_temperature": recipe.temperature,
        "recipe_energy_threshold": recipe.energy_threshold,
        "recipe_view_margin": recipe.view_margin,
        "nondigit_weight": recipe.nondigit_weight,
        "bins": CALIBRATION_BINS,
        "min_confidence": min_confidence,
        "nondigit_images": {name: len(images) for name, images in nondigits.items()},
        "held_out_nondigits": HELD_OUT_NONDIGITS,
        "runs": runs,
        "mean": _means(runs),
        "validation_thresholds": {t: _means([sweep[t] for sweep in sweeps]) for t in THRESHOLDS},
    }
    table = markdown_table(results)
    if out_dir is not None:
        write_results(out_dir, "calibration", results, table)
    print(table)
    return results


def _means(rows):
    return {key: round(statistics.fmean(row[key] for row in rows), 3) for key in rows[0] if key != "seed"}


def seed_run(seed, recipe, device, test, validation, held_out, suite, nondigits, min_confidence, max_steps):
    """One seed's figures, flat: {set}_{figure} for the clean test set and the suite, and the flagged nondigits;
    and what each of THRESHOLDS flags on the validation split and among the held-out non-digits, at the recipe's
    temperature."""
    import torch

    from calibration import calibration_figures, flagged_fraction, selective_figures
    from evaluation import predict_logits, suite_logits
    from train import train_and_evaluate

    config = replace(recipe, seed=seed, max_steps=max_steps)
    held_out_run = train_and_evaluate("default", config, device, validation)
    fitted = held_out_run.metrics["temperature"]
    held_out_logits = predict_logits(held_out_run.model, held_out)
    result = train_and_evaluate("default", config, device, test)
    model, (suite_images, suite_labels) = result.model, suite
    # The recipe's temperature and energy threshold, as train.calibrate gives them to the model it saves.
    temperature, energy_threshold = model.temperature, model.energy_threshold
    sweep = {
        threshold: {
            **selective_figures(held_out_run.logits, validation["eval"][1], temperature, threshold, energy_threshold),
            "nondigits_flagged": flagged_fraction(held_out_logits, temperature, threshold, energy_threshold),
        }
        for threshold in THRESHOLDS
    }
    logits = {
        "clean": result.logits,
        "corrupted": torch.cat([suite_logits(model, images) for images in suite_images.values()]),
    }
    labels = {"clean": test["eval"][1], "corrupted": suite_labels.repeat(len(suite_images))}
    row = {"seed": seed, "accuracy": round(result.metrics["accuracy"], 2), "validation_temperature": fitted}
    if config.nondigit_weight:
        row["validation_energy_threshold"] = held_out_run.metrics["energy_threshold"]
    for name in SETS:
        figures = {
            **calibration_figures(logits[name], labels[name], temperature),
            **selective_figures(logits[name], labels[name], temperature, min_confidence, energy_threshold),
        }
        row.update(
            {f"{name}_{key}": round(value, 3) for key, value in figures.items() if key not in ("images", "bins")}
        )
    for name, images in nondigits.items():
        flagged = flagged_fraction(predict_logits(model, images), temperature, min_confidence, energy_threshold)
        row[f"{name}_flagged"] = round(flagged, 1)
    return row, sweep


COLUMNS = {  # key in a run -> column heading
    "accuracy": "test acc %",
    "validation_temperature": "T fitted (validation)",
    "clean_ece_before": "ECE % before",
    "clean_ece": "ECE % after",
    "clean_nll_before": "NLL before",
    "clean_nll": "NLL after",
    "corrupted_ece_before": "suite ECE % before",
    "corrupted_ece": "suite ECE % after",
    "corrupted_nll": "suite NLL after",
    "clean_flagged": "flagged %",
    "clean_flagged_of_wrong": "wrong flagged %",
    "clean_selective_accuracy": "acc. unflagged %",
    "corrupted_flagged": "suite flagged %",
    "corrupted_selective_accuracy": "suite acc. unflagged %",
    "scribbles_flagged": "scribbles flagged %",
    "letters_flagged": "letters flagged %",
    "shapes_flagged": "shapes flagged %",
    "digit_shaped_flagged": "O, o, I, l flagged %",
}


def energy_rule(results):
    threshold = results["recipe_energy_threshold"]
    return "" if threshold is None else f" or energy above {threshold}"


def markdown_table(results):
    fitted = {"validation_energy_threshold": "E fitted (validation)"} if results["nondigit_weight"] else {}
    columns = {**COLUMNS, **fitted}
    lines = [
        "# Calibration of the default architecture (`python main.py bench calibration`)",
        "",
        (
            f"Recipe: {results['recipe_file'] or 'the default'}. "
            f"Non-digit training weight {results['nondigit_weight']} (0: digits alone); "
            f"recipe temperature {results['recipe_temperature']}; test-time views below a logit margin of "
            f"{results['recipe_view_margin']} (0: each image read once); ECE over {results['bins']} equal-width bins; "
            f"'not sure' below {results['min_confidence']}% calibrated confidence{energy_rule(results)}. "
            "Non-digits never trained on "
            f"(nondigits.py): {results['nondigit_images']['scribbles']} seeded scribbles, "
            f"{results['nondigit_images']['shapes']} seeded shapes, {results['nondigit_images']['letters']} letters in "
            "DejaVu Sans, and O, o, I and l apart (digits' own shapes). Test set and its corruption suite; "
            "temperatures fitted on the validation split."
        ),
        "",
        "| seed | " + " | ".join(columns.values()) + " |",
        "| ---: |" + " ---: |" * len(columns),
    ]
    for run in [*results["runs"], {"seed": "mean", **results["mean"]}]:
        lines.append(f"| {run['seed']} | " + " | ".join(f"{run[key]:g}" for key in columns) + " |")
    lines += [
        "",
        (
            "How --min-confidence was chosen: each candidate on the validation split, at the recipe's temperature, "
            f"and on {results['held_out_nondigits']:,} non-digits of the training's kinds drawn with a seed no "
            "training uses."
        ),
        "",
        "| --min-confidence % | flagged % | wrong answers flagged % | accuracy of the rest % | non-digits flagged % |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for threshold, row in results["validation_thresholds"].items():
        lines.append(
            f"| {threshold} | {row['flagged']:.2f} | {row['flagged_of_wrong']:.1f} | {row['selective_accuracy']:.2f} "
            f"| {row['nondigits_flagged']:.1f} |"
        )
    return "\n".join(lines) + "\n"
