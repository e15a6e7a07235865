"""The learning rate's fall after its peak: OneCycle's cosine (the default) against a straight line to the same end
(the decay that airbench and recent studies of schedules favour), the momentum's cycle unchanged. Each seed trains
the default (its views, as the model reads in use) with each schedule in turn, on the training images less the 5,000
held out; one JSON row per seed and schedule: the held-out accuracy, the suite's mean on their first 2,000 and its
entries nearest real scans, the training seconds.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/schedule.py 0,1,2,3,4 cosine,linear \
        --precision fp32
    python docs/plateau/schedule.py 0,1,2,3,4 cosine,linear --precision bf16

The straight line is patched into train.OneCycleSGD.schedule for its runs only (the product has one schedule).
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from views import study_arguments, study_data
from widths import WATCHED

import train
from config import TrainConfig
from evaluation import accuracy_by_corruption, evaluate_robustness

COSINE = train.OneCycleSGD.schedule


def linear(self, step):
    """OneCycle's warmup and momentum; after the peak the learning rate falls in a straight line to the same end."""
    lr, momentum = COSINE(self, step)
    if step > self.peak_step:
        fraction = (step - self.peak_step) / (self.total_steps - 1 - self.peak_step)
        peak, end = self.phases[1][:2]
        lr = peak + (end - peak) * fraction
    return lr, momentum


SCHEDULES = {"cosine": COSINE, "linear": linear}


def row(seed, schedule, precision, data, suite, suite_labels):
    train.OneCycleSGD.schedule = SCHEDULES[schedule]
    try:
        result = train.train_and_evaluate("default", replace(TrainConfig(), seed=seed), torch.device("cpu"), data,
                                          precision=precision)  # fmt: skip
    finally:
        train.OneCycleSGD.schedule = COSINE
    metrics = result.metrics
    report = evaluate_robustness(result.model, suite, suite_labels, metrics["accuracy"])
    corrupted = accuracy_by_corruption(report)
    return {
        "seed": seed,
        "schedule": schedule,
        "precision": metrics["numerics"]["precision"],
        "train_s": metrics["train_seconds"],
        "acc": round(metrics["accuracy"], 3),
        "suite": round(report["mean_corruption_accuracy"], 3),
        **{name: round(corrupted[name], 2) for name in WATCHED},
    }


if __name__ == "__main__":
    seeds, schedules, _, precision = study_arguments(sys.argv[1:])
    data, suite, suite_labels = study_data()
    for turn, seed in enumerate(seeds):
        for schedule in schedules[turn % len(schedules) :] + schedules[: turn % len(schedules)]:  # each first in turn
            print(json.dumps(row(seed, schedule, precision, data, suite, suite_labels)), flush=True)
