"""The test-time views for configs/nondigits.json's model, chosen on the validation split. Each seed trains the file's
recipe (views off: training reads each image once either way) on the training images less the 5,000 held out, then
reads them once, below each logit margin through the five views (the model's own rule, MNISTModel.view_margin), and
through the views for every image. For each reading the temperature and the energy threshold are fitted on those
held-out digits' logits, as a --validation run fits them (train.calibrate), and the "not sure" rule they give is read
on the digits, on margins.py's held-out non-digits (used for nothing else) and on the validation images' first 2,000
under the corruption suite; and the non-digits flagged where the threshold flags as many digits as the rule read once
does (the views flag fewer digits, so their own threshold flags fewer of anything). The evaluation's non-digits
(nondigits.py) are read for the record only.
One JSON row per seed and reading:

    python docs/nondigits/views.py 0 1 2 3 4 | grep "^{" > docs/nondigits/views.jsonl
"""

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from margins import held_out_sets

import train
from calibration import calibrated, energy, selective_figures, unsure
from cli import resolve_cache_dir, resolve_data_dir
from config import MIN_CONFIDENCE, recipe_file
from corruptions import labelled_suite
from evaluation import evaluate_robustness, predict_logits

MARGINS = (0.0, 0.5, 1.0, math.inf)  # 0: each image read once; inf: every image through the five views
SUITE_IMAGES = 2000  # as the plateau studies read the suite on validation


def reading(model, margin, recipe, data, sets, suite, suite_labels, matched=None):
    """One reading's row: the model read with this view margin, its T and E fitted on the held-out digits. With
    matched (a % of the held-out digits), the non-digits flagged are also read at the energy threshold that flags
    that share of the digits in all ("matched_"): the rule compared with another reading's at equal cost."""
    model.view_margin = margin
    images, labels = data["eval"]
    logits = predict_logits(model, images)
    calibrated = train.calibrate(model, recipe, data, logits)
    figures = selective_figures(logits, labels, model.temperature, MIN_CONFIDENCE, model.energy_threshold)
    row = {
        "margin": margin if math.isfinite(margin) else "all",
        "acc": round((logits.argmax(1) == labels).float().mean().item() * 100, 3),
        "T": calibrated["temperature"],
        "E": calibrated["energy_threshold"],
        "digits_flagged": round(figures["flagged"], 2),
        "wrong_flagged": round(figures["flagged_of_wrong"], 1),
        "acc_unflagged": round(figures["selective_accuracy"], 3),
    }
    thresholds = {"": model.energy_threshold}
    if matched is not None:
        thresholds["matched_"] = matched_threshold(logits, model.temperature, matched)
    for name, images in sets.items():
        read = predict_logits(model, images)
        for prefix, threshold in thresholds.items():
            flagged = unsure(read, model.temperature, MIN_CONFIDENCE, threshold)
            row[prefix + name] = round(flagged.float().mean().item() * 100, 1)
    row["suite"] = round(evaluate_robustness(model, suite, suite_labels, row["acc"])["mean_corruption_accuracy"], 3)
    return row


def matched_threshold(logits, temperature, share):
    """The energy threshold at which the "not sure" rule flags share % of these digits (as near as whole images go)."""
    low_confidence = calibrated(logits, temperature).amax(1) * 100 < MIN_CONFIDENCE
    more = round(share / 100 * len(logits)) - int(low_confidence.sum())  # to be flagged by their energy alone
    energies = energy(logits, temperature)[~low_confidence].sort(descending=True).values
    return energies[min(max(more, 0), len(energies) - 1)].item()


if __name__ == "__main__":
    seeds = [int(seed) for seed in sys.argv[1:]]
    recipe = recipe_file("nondigits")
    data = train.load_data(resolve_data_dir(), torch.device("cpu"), validation=True)
    suite, suite_labels = labelled_suite(*data["eval"], resolve_cache_dir(), SUITE_IMAGES)
    sets = held_out_sets()
    for seed in seeds:
        result = train.train_and_evaluate("default", replace(recipe, seed=seed), torch.device("cpu"), data)
        numerics = result.metrics["numerics"]["precision"]
        once = None
        for margin in MARGINS:
            row = reading(result.model, margin, recipe, data, sets, suite, suite_labels, once)
            once = row["digits_flagged"] if once is None else once
            print(json.dumps({"seed": seed, "precision": numerics, **row}), flush=True)
