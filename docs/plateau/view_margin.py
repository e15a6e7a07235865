"""Test-time views where the model is unsure, by a rule free of the temperature: the five views (views.py) read only
for the images whose two highest logits lie less than a margin apart, the rest read once. Per seed, on the
validation split: clean accuracy, the suite's mean and the share of images viewed for each margin, and the
temperature fitted on those logits (what the recipe's temperature would become).

    python docs/plateau/view_margin.py 0,1,2,3,4 > docs/plateau/view-margin.jsonl
"""

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from adaptive_views import seed_readings
from views import logits, study_arguments

from calibration import fit_temperature
from model import logit_margin

MARGINS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)  # in logits


def readings(model, images, labels):
    """{way of reading: (accuracy %, % of images viewed, the logits, the labels)} for one set of images."""
    one, five = logits(model, images, False), logits(model, images, True)
    read = {
        "one": (one, torch.zeros(len(one), dtype=torch.bool)),
        "five": (five, torch.ones(len(one), dtype=torch.bool)),
    }
    margin = logit_margin(one)
    for m in MARGINS:
        unsure = margin < m
        read[f"margin@{m}"] = (torch.where(unsure[:, None], five, one), unsure)
    return {
        way: ((out.argmax(1) == labels).float().mean().item() * 100, viewed.float().mean().item() * 100, out, labels)
        for way, (out, viewed) in read.items()
    }


def main(seeds, test=False, precision="auto", arch="default"):
    for seed, clean, corrupted in seed_readings(seeds, test, precision, readings, arch):
        row = {"seed": seed, "precision": precision}
        for way, (accuracy, viewed, out, labels) in clean.items():
            row[way] = {
                "acc": round(accuracy, 3),
                "viewed": round(viewed, 2),
                "temperature": round(fit_temperature(out, labels), 4),
                "suite": round(statistics.fmean(c[way][0] for c in corrupted), 3),
                "suite_viewed": round(statistics.fmean(c[way][1] for c in corrupted), 2),
            }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    seeds, _, test, precision = study_arguments(sys.argv[1:])
    main(seeds, test, precision)
