"""The first body convolution's width: the default's 20 channels against widths that oneDNN's CPU kernels block
evenly (multiples of 8; docs/plateau/training_profile.py shows why). Each seed trains every width in turn with the
default recipe (its views, as the model reads in use), on the training images less the 5,000 held out; the widths take
turns at running first, as a process's first run pays its warm-up. One JSON row
per seed and width: parameters, training seconds, the held-out accuracy, the temperature fitted there, and the
suite on their first 2,000 with the entries nearest real scans.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/widths.py 0,1,2,3,4 20,24,16 --precision fp32
    python docs/plateau/widths.py 0,1,2,3,4 20,24,16 --precision bf16
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from views import study_arguments, study_data

from config import TrainConfig, architecture
from evaluation import accuracy_by_corruption, evaluate_robustness
from train import train_and_evaluate

WATCHED = ("low_resolution_8", "thin_strokes", "scale", "stripe")  # the entries nearest real scans, and the most spread


def with_width(width):
    """The default architecture with its first body convolution `width` channels wide."""
    spec = architecture("default")
    return {**spec, "body": (width, *spec["body"][1:])}


def row(seed, width, precision, data, suite, suite_labels):
    result = train_and_evaluate(with_width(width), replace(TrainConfig(), seed=seed), torch.device("cpu"), data,
                                precision=precision)  # fmt: skip
    model, metrics = result.model, result.metrics
    report = evaluate_robustness(model, suite, suite_labels, metrics["accuracy"])
    corrupted = accuracy_by_corruption(report)
    return {
        "seed": seed,
        "width": width,
        "precision": metrics["numerics"]["precision"],
        "parameters": metrics["parameters"],
        "train_s": metrics["train_seconds"],
        "acc": round(metrics["accuracy"], 3),
        "temperature": metrics["temperature"],
        "suite": round(report["mean_corruption_accuracy"], 3),
        **{name: round(corrupted[name], 2) for name in WATCHED},
    }


if __name__ == "__main__":
    seeds, widths, _, precision = study_arguments(sys.argv[1:])
    data, suite, suite_labels = study_data()
    for turn, seed in enumerate(seeds):
        for width in widths[turn % len(widths) :] + widths[: turn % len(widths)]:  # each width first in turn
            print(json.dumps(row(seed, int(width), precision, data, suite, suite_labels)), flush=True)
