"""airbench's settings on the validation split, each seed running every setting in turn; one JSON row per run.

    python docs/plateau/airbench.py 0,1,2,3,4 default,momentum@0.4,momentum@0.2,fixed-scale,momentum@0.4+lookahead
    python docs/plateau/airbench.py 0,1,2,3,4 default,bias-lr@2,bias-lr@8,bias-lr@16,whiten@0.03,whiten@0.3,whiten@1
    python docs/plateau/airbench.py --test 0,1,2,3,4 default,bias-lr@8
    python docs/plateau/airbench.py 0,1,2,3,4,5,6,7,8,9 bias-lr@8+stroke@0.8
    python docs/plateau/airbench.py 0,1,2,3,4,5,6,7,8,9 no-norm-decay
    python docs/plateau/airbench.py 0,1,2,3,4,5,6,7,8,9 \
        default,default+views,bias-lr@8+views,bias-lr@8+lookahead,bias-lr@8+lookahead+views
    python docs/plateau/airbench.py 0,1,2,3,4,5,6,7,8,9 default,bias-lr@8,default+views \
        > docs/plateau/airbench-deskew.jsonl

The rows of airbench.jsonl and airbench-test.jsonl are of the model before it deskewed (they come back at commit
9e5111d); airbench-deskew.jsonl's are of today's.

momentum@M gives every BatchNorm a running-statistics momentum of M (PyTorch's sense: the share of each batch; the
default is 0.1, airbench's is 0.4); fixed-scale freezes every BatchNorm's weight at 1, as airbench does, leaving
its bias to train; bias-lr@K is TrainConfig.bn_bias_lr K (the BatchNorm biases' gradients times K, the weight decay
added after); whiten@S initialises the stem (it stays trainable) with the whitening filters of the stem's 4x4
training patches, strongest first, times S, and their negatives; no-norm-decay exempts the BatchNorm weights and
biases from the weight decay. +lookahead adds TrainConfig.lookahead 0.95, which airbench finds pays only with fast
momentum; +stroke@F sets the augmentation's stroke fraction to F (the default's is 0.559); +views reads the trained
model through views.py's five edge-padded views (training is unchanged). The suite is the
validation images' first 2,000, as in views.py. With --test, the confirmation: trained on the whole training set,
read on the test set and the whole suite.
"""

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
import torch.nn.functional as F
from views import ONE_READING, print_row, study_arguments, study_data

import train
from model import STEM_KERNEL

PATCH_IMAGES = 10_000  # training images whose patches the whitening is measured on
EPSILON = 0.01  # added to each eigenvalue: the faintest directions are not blown up

SETTING = {}


def whitening_filters(model, images, scale):
    """(2C, 1, k, k) stem filters: the C strongest whitening directions of the stem's patches, and their negatives."""
    with torch.no_grad():
        seen = model.stretch(images[:PATCH_IMAGES].float())
    patches = F.unfold(seen, STEM_KERNEL, stride=2).transpose(1, 2).flatten(0, 1)  # the stem's strided windows
    values, vectors = torch.linalg.eigh(torch.cov(patches.T))
    values, vectors = values.flip(0), vectors.flip(1)  # strongest first
    filters = (vectors / (values + EPSILON).sqrt()).T * scale
    count = model.features[0].out_channels // 2
    return torch.cat([filters[:count], -filters[:count]]).view(-1, 1, STEM_KERNEL, STEM_KERNEL)


def train_with_the_setting(model, images, labels, config, *args, _train=train.train, **kwargs):
    for norm in model.modules():
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.momentum = SETTING.get("momentum", 0.1)
            norm.weight.requires_grad_(SETTING.get("kind") != "fixed-scale")
            if SETTING.get("kind") == "no-norm-decay":  # the optimizer adds the decay back: none is left
                for p in (norm.weight, norm.bias):
                    p.register_hook(lambda grad, p=p: grad - config.weight_decay * p.detach())
    if SETTING.get("kind") == "whiten":
        with torch.no_grad():
            model.features[0].weight.copy_(whitening_filters(model, images, SETTING["value"]))
    return _train(model, images, labels, config, *args, **kwargs)


def main(seeds, levers, test=False, precision="auto"):
    train.train = train_with_the_setting
    data, suite, suite_labels = study_data(test)
    for seed in seeds:
        for lever in levers:
            name, *extras = lever.split("+")
            kind, _, value = name.partition("@")
            SETTING.clear()
            SETTING.update(kind=kind, value=float(value or 0))
            if kind == "momentum":
                SETTING["momentum"] = float(value)
            config = replace(ONE_READING, seed=seed, lookahead=0.95 if "lookahead" in extras else 0.0)
            if kind == "bias-lr":
                config = replace(config, bn_bias_lr=float(value))
            for stroke in (float(extra.removeprefix("stroke@")) for extra in extras if extra.startswith("stroke@")):
                config = replace(config, augmentation=replace(config.augmentation, stroke=stroke))
            print_row(lever, seed, config, data, suite, suite_labels, views="views" in extras, precision=precision)


if __name__ == "__main__":
    main(*study_arguments(sys.argv[1:]))
