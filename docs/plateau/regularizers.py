"""Two regularisers the search never had: dropout before the classifier, and Cutout (DeVries and Taylor 2017, a
square of each training image set to its background). Each seed trains each setting in turn with the default
recipe (its views), on the training images less the 5,000 held out; one JSON row per seed and setting, as
widths.py's with "setting" for "width". Both are patched in for this study's runs only:

- "dropout": nn.Dropout(DROPOUT) on the head's features, before the 1x1 classifier (evaluation reads them whole);
- "cutout-S": on each augmented step, each image with probability CUTOUT_SHARE gets an S x S square, its centre
  anywhere in the image (so the square may lie partly outside), set to the image's darkest value, after the
  recipe's augmentation.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/regularizers.py 0,1,2,3,4 \
        none,dropout,cutout-8,cutout-12 --precision fp32
"""

import sys
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from torch import nn
from views import print_rows_in_turn
from widths import scored

import model
import train
from config import TrainConfig

DROPOUT = 0.1
CUTOUT_SHARE = 0.5


def with_head_dropout(block):
    """conv_block, with dropout after the head's block (the one normalised by HeadBatchNorm)."""

    def head_dropped(*args, **kwargs):
        layers = block(*args, **kwargs)
        return [*layers, nn.Dropout(DROPOUT)] if kwargs.get("norm") is model.HeadBatchNorm else layers

    return head_dropped


def cutout(images, size, generator):
    """Each image, with probability CUTOUT_SHARE, with a size x size square at a random centre set to its darkest."""
    n, _, height, width = images.shape
    device = images.device
    centre_rows = torch.randint(height, (n, 1, 1, 1), device=device, generator=generator)
    centre_cols = torch.randint(width, (n, 1, 1, 1), device=device, generator=generator)
    chosen = torch.rand(n, 1, 1, 1, device=device, generator=generator) < CUTOUT_SHARE
    rows = torch.arange(height, device=device).view(1, 1, -1, 1)
    cols = torch.arange(width, device=device).view(1, 1, 1, -1)
    low = size // 2
    square = (rows >= centre_rows - low) & (rows < centre_rows - low + size)
    square = square & (cols >= centre_cols - low) & (cols < centre_cols - low + size)
    return torch.where(square & chosen, images.amin((1, 2, 3), keepdim=True), images)


def with_cutout(augment, size):
    def augment_and_cut(images, aug, generator=None):
        return cutout(augment(images, aug, generator), size, generator)

    return augment_and_cut


def row(seed, setting, precision, data, suite, suite_labels):
    if setting == "dropout":
        patched = patch.object(model, "conv_block", with_head_dropout(model.conv_block))
    elif setting.startswith("cutout-"):
        patched = patch.object(train, "augment", with_cutout(train.augment, int(setting.removeprefix("cutout-"))))
    elif setting == "none":
        patched = nullcontext()
    else:
        raise SystemExit(f"unknown setting {setting!r}: none, dropout or cutout-SIZE")
    with patched:
        figures = scored("default", replace(TrainConfig(), seed=seed), precision, data, suite, suite_labels)
    return {"seed": seed, "setting": setting, **figures}


if __name__ == "__main__":
    print_rows_in_turn(row, sys.argv[1:])
