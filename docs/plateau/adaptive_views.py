"""Test-time views where the model is unsure: each seed's default model read as it is, through views.py's five
edge-padded views, and through the views only for the images whose calibrated confidence (the model's own
temperature) is below a threshold, the rest read once. One JSON row per seed: clean accuracy and the suite's mean
for each way of reading, and the share of images that took the views.

    python docs/plateau/adaptive_views.py 0,1,2,3,4 > docs/plateau/adaptive-views.jsonl
    python docs/plateau/adaptive_views.py 0,1,2,3,4 --test > docs/plateau/adaptive-views-test.jsonl

Viewing only the unsure images costs 1 + 4 x that share of one reading; the views change few confident answers.
"""

import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from views import ONE_READING, logits, study_arguments, study_data

from config import preset_recipe
from data import normalize
from train import train_and_evaluate

THRESHOLDS = (0.9, 0.99, 0.999)  # 0.9 is config.MIN_CONFIDENCE, where "not sure" starts


def readings(model, images, labels):
    """{way of reading: accuracy %, "share@T": % of images viewed} for one set of images."""
    one, five = logits(model, images, False), logits(model, images, True)
    confidence = (one / model.temperature).softmax(1).amax(1)
    read = {"one": one, "five": five}
    shares = {}
    for threshold in THRESHOLDS:
        unsure = confidence < threshold
        read[f"adaptive@{threshold}"] = torch.where(unsure[:, None], five, one)
        shares[f"share@{threshold}"] = unsure.float().mean().item() * 100
    return {way: (out.argmax(1) == labels).float().mean().item() * 100 for way, out in read.items()} | shares


def seed_readings(seeds, test, precision, read, arch="default"):
    """(seed, read on the clean images, [read under each corruption]) for each seed's model of arch (reading each
    image once; a preset other than the default trains on its own recipe), trained on the validation study's data
    (or, with test, the whole training set); read(model, images, labels) is a way of reading's figures."""
    data, suite, suite_labels = study_data(test)
    images, labels = data["eval"]
    recipe = ONE_READING if arch == "default" else replace(preset_recipe(arch), view_margin=0.0)
    for seed in seeds:
        config = replace(recipe, seed=seed)
        model = train_and_evaluate(arch, config, torch.device("cpu"), data, precision=precision).model
        yield seed, read(model, images, labels), [read(model, normalize(c), suite_labels) for c in suite.values()]


def main(seeds, test=False, precision="auto"):
    for seed, clean, corrupted in seed_readings(seeds, test, precision, readings):
        mean = {key: statistics.fmean(row[key] for row in corrupted) for key in clean}
        row = {"seed": seed, "clean": {k: round(v, 3) for k, v in clean.items()}}
        print(json.dumps(row | {"suite": {k: round(v, 3) for k, v in mean.items()}}), flush=True)


if __name__ == "__main__":
    seeds, _, test, precision = study_arguments(sys.argv[1:])
    main(seeds, test, precision)
