"""BatchNorm's settings on the validation split, each seed running every setting in turn; one JSON row per run.

    python docs/plateau/batchnorm.py 0,1,2,3,4 default,momentum@0.4,momentum@0.2,fixed-scale,momentum@0.4+lookahead

momentum@M gives every BatchNorm a running-statistics momentum of M (PyTorch's sense: the share of each batch; the
default is 0.1, airbench's is 0.4); fixed-scale freezes every BatchNorm's weight at 1, as airbench does, leaving
its bias to train; +lookahead adds TrainConfig.lookahead 0.95, which airbench finds pays only with fast momentum.
The suite is the validation images' first 2,000, as in views.py.
"""

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from views import scores, study_data

import train
from config import TrainConfig

SETTING = {"momentum": 0.1, "fixed_scale": False}


def train_with_the_setting(model, *args, _train=train.train, **kwargs):
    for norm in model.modules():
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.momentum = SETTING["momentum"]
            norm.weight.requires_grad_(not SETTING["fixed_scale"])
    return _train(model, *args, **kwargs)


def main(seeds, levers):
    cpu = torch.device("cpu")
    train.train = train_with_the_setting
    data, suite, suite_labels = study_data()
    images, labels = data["eval"]
    for seed in seeds:
        for lever in levers:
            name, _, extra = lever.partition("+")
            kind, _, value = name.partition("@")
            SETTING.update(momentum=float(value) if kind == "momentum" else 0.1, fixed_scale=kind == "fixed-scale")
            config = replace(TrainConfig(), seed=seed, lookahead=0.95 if extra == "lookahead" else 0.0)
            start = time.perf_counter()
            model = train.train_and_evaluate("default", config, cpu, data).model
            seconds = round(time.perf_counter() - start, 2)
            row = {"lever": lever, "seed": seed, "secs": seconds}
            print(json.dumps({**row, **scores(model, images, labels, suite, suite_labels)}), flush=True)


if __name__ == "__main__":
    main([int(seed) for seed in sys.argv[1].split(",")], sys.argv[2].split(","))
