"""The learning rate's fall after its peak: OneCycle's cosine (the default) against a straight line to the same end
(the decay that airbench and recent studies of schedules favour), the momentum's cycle unchanged. Each seed trains
the default (its views, as the model reads in use) with each schedule in turn, on the training images less the 5,000
held out; one JSON row per seed and schedule, with widths.py's figures (held-out accuracy, temperature, the suite's
mean on their first 2,000 and its entries nearest real scans, training seconds).

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/schedule.py 0,1,2,3,4 cosine,linear \
        --precision fp32
    python docs/plateau/schedule.py 0,1,2,3,4 cosine,linear --precision bf16

The straight line is patched into train.OneCycleSGD.schedule for its runs only (the product has one schedule).
"""

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from views import print_rows_in_turn
from widths import scored

import train
from config import TrainConfig

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
        figures = scored("default", replace(TrainConfig(), seed=seed), precision, data, suite, suite_labels)
    finally:
        train.OneCycleSGD.schedule = COSINE
    return {"seed": seed, "schedule": schedule, **figures}


if __name__ == "__main__":
    print_rows_in_turn(row, sys.argv[1:])
