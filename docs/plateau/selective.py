"""Selective backprop on the validation split: each seed trains the default and each setting in turn; one JSON row
per run.

    python docs/plateau/selective.py 0,1,2,3,4,5,6,7,8,9 default,select@0.5,select@0.25

select@K: in the recipe's unaugmented tail (its last 60 % of steps), each batch is first read without gradients, in
evaluation mode (so that the BatchNorm statistics are not updated twice), and only the K share of its images with
the highest loss trains the step: forward and backward on them alone (Jiang et al. 2019, "Accelerating deep learning
by focusing on the biggest losers"). Late in the epoch most images are read right and sure, so their gradients are
small; the step skips the backward pass on them, about two thirds of what an image costs. The suite is the
validation images' first 2,000, as in views.py; --test gives the confirmation on the test set.
"""

import math
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
import torch.nn.functional as F
from views import ONE_READING, print_row, study_arguments, study_data

import train

SETTING = {}


def train_with_the_setting(model, images, labels, config, *args, _train=train.train, **kwargs):
    steps = math.ceil(len(images) / config.batch_size) * config.epochs
    tail = config.augmentation.clean_tail if config.augmentation else 1.0
    SETTING.update(step=0, first=round(steps * (1 - tail)))
    return _train(model, images, labels, config, *args, **kwargs)


def selective_step(model, optimizer, x, y, label_smoothing=0.0, dtype=torch.float32, nondigit_weight=0.0,
                   _step=train.train_step):  # fmt: skip
    SETTING["step"] += 1
    share = SETTING.get("share")
    if share and SETTING["step"] > SETTING["first"]:
        model.eval()
        with torch.no_grad(), torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits = model(x.contiguous(memory_format=torch.channels_last)).float()
        model.train()
        losses = F.cross_entropy(logits, y, label_smoothing=label_smoothing, reduction="none")
        chosen = losses.topk(max(2, round(share * len(y)))).indices
        x, y = x[chosen], y[chosen]
    return _step(model, optimizer, x, y, label_smoothing, dtype, nondigit_weight)


def main(seeds, settings, test=False, precision="auto"):
    train.train, train.train_step = train_with_the_setting, selective_step
    data, suite, suite_labels = study_data(test)
    for seed in seeds:
        for setting in settings:
            kind, _, value = setting.partition("@")
            SETTING.clear()
            if kind == "select":
                SETTING["share"] = float(value)
            config = replace(ONE_READING, seed=seed)
            print_row(setting, seed, config, data, suite, suite_labels, precision=precision)


if __name__ == "__main__":
    main(*study_arguments(sys.argv[1:]))
