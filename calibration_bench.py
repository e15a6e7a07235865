"""`python main.py bench calibration`: how well the default model's probabilities mean what they say.

Per seed, two runs of the default recipe: one on the training set less the validation split, whose
temperature is fitted there (what the recipe's temperature is the median of), and one on all 60,000
images, saved with the recipe's temperature and measured on the test set: expected calibration error and
NLL before and after the temperature, clean and under the whole corruption suite; what the "not sure"
rule at --min-confidence flags there; and what it flags among images that are not digits.
"""

import statistics
from dataclasses import replace
from pathlib import Path

from config import TrainConfig

SETS = ("clean", "corrupted")  # the test set as it is, and the corruption suite made from it
THRESHOLDS = (50, 60, 70, 80, 85, 90, 95, 99)  # --min-confidence candidates, measured on the validation split


def calibration_benchmark(
    seeds, device, data_dir, out_dir, cache_dir, min_confidence, max_steps=None, suite_images=None
):
    """The figures of each seed; with suite_images, the suite is made from the first that many test images only."""
    from calibration import CALIBRATION_BINS
    from checkpoint import write_json, write_text
    from corruptions import labelled_suite
    from data import normalize
    from nondigits import letters, scribbles
    from train import load_data

    test = load_data(data_dir, device)
    validation = load_data(data_dir, device, validation=True)
    suite = labelled_suite(*test["eval"], cache_dir, suite_images)
    nondigits = {"scribbles": normalize(scribbles() * 255), "letters": normalize(letters() * 255)}
    runs, sweeps = zip(
        *(seed_run(seed, device, test, validation, suite, nondigits, min_confidence, max_steps) for seed in seeds),
        strict=True,
    )
    results = {
        "architecture": "default",
        "recipe_temperature": TrainConfig().temperature,
        "bins": CALIBRATION_BINS,
        "min_confidence": min_confidence,
        "nondigit_images": {name: len(images) for name, images in nondigits.items()},
        "runs": runs,
        "mean": _means(runs),
        "validation_thresholds": {t: _means([sweep[t] for sweep in sweeps]) for t in THRESHOLDS},
    }
    write_json(Path(out_dir) / "calibration.json", results)
    table = markdown_table(results)
    write_text(Path(out_dir) / "calibration.md", table)
    print(table)
    return results


def _means(rows):
    return {key: round(statistics.fmean(row[key] for row in rows), 3) for key in rows[0] if key != "seed"}


def seed_run(seed, device, test, validation, suite, nondigits, min_confidence, max_steps):
    """One seed's figures, flat: {set}_{figure} for the clean test set and the suite, and the flagged nondigits;
    and what each of THRESHOLDS flags on the validation split, at the recipe's temperature."""
    import torch

    from calibration import calibration_figures, flagged_fraction, selective_figures
    from evaluation import predict_logits, suite_logits
    from train import train_and_evaluate

    config = replace(TrainConfig(), seed=seed, max_steps=max_steps)
    held_out = train_and_evaluate("default", config, device, validation)
    fitted = held_out.metrics["temperature"]
    sweep = {
        threshold: selective_figures(held_out.logits, validation["eval"][1], config.temperature, threshold)
        for threshold in THRESHOLDS
    }
    result = train_and_evaluate("default", config, device, test)
    model, (suite_images, suite_labels) = result.model, suite
    logits = {
        "clean": result.logits,
        "corrupted": torch.cat([suite_logits(model, images) for images in suite_images.values()]),
    }
    labels = {"clean": test["eval"][1], "corrupted": suite_labels.repeat(len(suite_images))}
    row = {"seed": seed, "accuracy": round(result.metrics["accuracy"], 2), "validation_temperature": fitted}
    for name in SETS:
        figures = {
            **calibration_figures(logits[name], labels[name], model.temperature),
            **selective_figures(logits[name], labels[name], model.temperature, min_confidence),
        }
        row.update(
            {f"{name}_{key}": round(value, 3) for key, value in figures.items() if key not in ("images", "bins")}
        )
    for name, images in nondigits.items():
        row[f"{name}_flagged"] = round(
            flagged_fraction(predict_logits(model, images), model.temperature, min_confidence), 1
        )
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
}


def markdown_table(results):
    lines = [
        "# Calibration of the default model (`python main.py bench calibration`)",
        "",
        (
            f"Recipe temperature {results['recipe_temperature']}; ECE over {results['bins']} equal-width bins; "
            f"'not sure' below {results['min_confidence']}% calibrated confidence; "
            f"{results['nondigit_images']['scribbles']} seeded scribbles and {results['nondigit_images']['letters']} "
            "letters (DejaVu Sans). Test set and its corruption suite; temperatures fitted on the validation split."
        ),
        "",
        "| seed | " + " | ".join(COLUMNS.values()) + " |",
        "| ---: |" + " ---: |" * len(COLUMNS),
    ]
    for run in [*results["runs"], {"seed": "mean", **results["mean"]}]:
        lines.append(f"| {run['seed']} | " + " | ".join(f"{run[key]:g}" for key in COLUMNS) + " |")
    lines += [
        "",
        "How --min-confidence was chosen: each candidate on the validation split, at the recipe's temperature.",
        "",
        "| --min-confidence % | flagged % | wrong answers flagged % | accuracy of the rest % |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for threshold, row in results["validation_thresholds"].items():
        lines.append(
            f"| {threshold} | {row['flagged']:.2f} | {row['flagged_of_wrong']:.1f} | {row['selective_accuracy']:.2f} |"
        )
    return "\n".join(lines) + "\n"
