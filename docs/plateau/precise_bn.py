"""Precise BatchNorm statistics (Wu and Johnson, "Rethinking 'Batch' in BatchNorm", 2021): after training, every
norm's running mean and variance replaced by the exact average over the first N of a seeded shuffle of the clean
training images (batches of 500, float32), against the running averages the training left, on the same weights.
Each seed trains the default (its views, as the model reads in use) on the training images less the 5,000 held out;
one JSON row per seed: the held-out accuracy and the suite's mean on their first 2,000, per set of statistics.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/precise_bn.py 0,1,2,3,4 --precision fp32
"""

import copy
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from views import study_arguments, study_data

from config import TrainConfig
from evaluation import evaluate, evaluate_robustness
from train import train_and_evaluate

COUNTS = (10_000, 55_000)  # training images the statistics are averaged over
BATCH = 500


def with_precise_statistics(model, images):
    """A copy of model whose norms hold the exact mean and variance of their inputs over images, batch by batch."""
    model = copy.deepcopy(model)
    for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: every batch weighs the same
    model.train()
    with torch.no_grad():
        for start in range(0, len(images), BATCH):
            model(images[start : start + BATCH].contiguous(memory_format=torch.channels_last))
    return model.eval()


def scores(model, images, labels, suite, suite_labels):
    accuracy = evaluate(model, images, labels)["accuracy"]
    return round(accuracy, 3), round(
        evaluate_robustness(model, suite, suite_labels, accuracy)["mean_corruption_accuracy"], 3
    )


if __name__ == "__main__":
    seeds, _, _, precision = study_arguments(sys.argv[1:])
    data, suite, suite_labels = study_data()
    images, labels = data["eval"]
    training_images = data["train"][0]
    for seed in seeds:
        result = train_and_evaluate("default", replace(TrainConfig(), seed=seed), torch.device("cpu"), data,
                                    precision=precision)  # fmt: skip
        row = {"seed": seed, "precision": result.metrics["numerics"]["precision"]}
        row["trained"] = scores(result.model, images, labels, suite, suite_labels)
        shuffled = training_images[torch.randperm(len(training_images), generator=torch.Generator().manual_seed(seed))]
        for count in COUNTS:
            row[f"precise_{count}"] = scores(with_precise_statistics(result.model, shuffled[:count]), images, labels,
                                             suite, suite_labels)  # fmt: skip
        print(json.dumps(row), flush=True)
