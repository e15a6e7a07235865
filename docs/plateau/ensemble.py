"""Three compact models (7,922 parameters each, 23,766 together: under the default's budget) read as one, their
calibrated logits averaged, against the default's one model. Each seed trains compact with its own recipe (and
views) at seeds s, s + 1000 and s + 2000, on the training images less the 5,000 held out; one JSON row per seed: each
model's held-out accuracy, the first two's mean and the three's, and their training seconds.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/ensemble.py 0,1,2,3,4 --precision fp32
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from views import study_arguments, study_data

from config import preset_recipe
from train import train_and_evaluate

MEMBERS = 3
SEED_STRIDE = 1000


def accuracy(logits, labels):
    return round((logits.argmax(1) == labels).float().mean().item() * 100, 3)


def row(seed, precision, data):
    logits, seconds = [], []
    for member in range(MEMBERS):
        config = replace(preset_recipe("compact"), seed=seed + SEED_STRIDE * member)
        result = train_and_evaluate("compact", config, torch.device("cpu"), data, precision=precision)
        logits.append(result.logits.float() / result.model.temperature)
        seconds.append(result.metrics["train_seconds"])
    labels = data["eval"][1]
    return {
        "seed": seed,
        "precision": result.metrics["numerics"]["precision"],
        "parameters": MEMBERS * result.metrics["parameters"],
        "members_acc": [accuracy(member, labels) for member in logits],
        "two_acc": accuracy(logits[0] + logits[1], labels),
        "three_acc": accuracy(sum(logits), labels),
        "train_s": seconds,
    }


if __name__ == "__main__":
    seeds, _, _, precision = study_arguments(sys.argv[1:])
    data, _, _ = study_data()
    for seed in seeds:
        print(json.dumps(row(seed, precision, data)), flush=True)
