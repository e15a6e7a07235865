"""Anti-aliased pooling (Zhang 2019, "Making convolutional networks shift-invariant again"): each of the model's two
2x2 max-pools read as a max over 2x2 windows at stride 1, then a [1, 2, 1] x [1, 2, 1] / 16 blur taken at stride 2 (its
border reflected), which keeps the sizes (14 -> 7 -> 3) and adds no parameters. Each seed trains each pooling in turn
with the default recipe (its views), on the training images less the 5,000 held out; one JSON row per seed and pooling,
as widths.py's with "pooling" for "width". The blur is patched into the model's blocks for this study's runs only;
"box" blurs with [1, 1] x [1, 1] / 4 instead (the max at stride 1, then 2x2 means at stride 2), "half-box" averages
that with the plain max-pool, "blur-first" and "blur-second" ("box-first", "box-second") blur one of the two, and
"average" takes 2x2 means instead (the pools come before the norms and ReLUs, so this is not the max of the ReLUs'
outputs). "overlap" takes the max over 3x3 windows at stride 2 (Krizhevsky et al. 2012's overlapping pooling): each
output sees a pixel beyond its 2x2 cell, as the blur does, and it stays a max.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/pooling.py 0,1,2,3,4 max,blur --precision fp32
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/pooling.py 0,1,2,3,4 max,box --precision fp32

A pooling may carry changes to the recipe, each `+FIELD=VALUE` of TrainConfig, as widths.py's widths do:

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/pooling.py 0,1,2,3,4 \
        max,box,box+weight_decay=0.0015,box+weight_decay=0.0022,max+weight_decay=0.0022 --precision fp32
"""

import sys
from dataclasses import replace
from pathlib import Path
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
import torch.nn.functional as F
from torch import nn
from views import print_rows_in_turn
from widths import recipe_changes, scored

import model
from config import TrainConfig

BLUR = torch.tensor([1.0, 2.0, 1.0])


class MaxBlurPool(nn.Module):
    """A 2x2 max at stride 1, then the binomial blur at stride 2, channel by channel."""

    def forward(self, x):
        x = F.max_pool2d(x, 2, stride=1)
        kernel = (BLUR[:, None] * BLUR[None, :] / 16).to(x).expand(x.shape[1], 1, 3, 3)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel, stride=2, groups=x.shape[1])


class MaxBoxPool(nn.Module):
    """A 2x2 max at stride 1 (the last row and column repeated, so the size holds), then 2x2 means at stride 2: the
    two-tap blur, in two of torch's pooling kernels."""

    def forward(self, x):
        return F.avg_pool2d(F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, stride=1), 2)


class HalfBoxPool(MaxBoxPool):
    """The plain 2x2 max-pool and MaxBoxPool's, averaged: half the blur."""

    def forward(self, x):
        return (F.max_pool2d(x, 2) + super().forward(x)) / 2


class OverlapPool(nn.Module):
    """A 3x3 max at stride 2: one row and column of -inf padding on a map of even side (14 -> 7), none on an odd one
    (7 -> 3), so the sizes are the 2x2 pool's."""

    def forward(self, x):
        return F.max_pool2d(x, 3, stride=2, padding=1 - x.shape[-1] % 2)


def pooled_blocks(pool, which):
    """A conv_block whose max-pools are pool() where their turn (1 for the first the model builds, 2 for the second)
    is in which."""
    turns = iter((1, 2))

    def block(*args, **kwargs):
        layers = max_block(*args, **kwargs)
        return [pool() if isinstance(layer, nn.MaxPool2d) and next(turns) in which else layer for layer in layers]

    return block


max_block = model.conv_block
POOLINGS = {
    "max": (MaxBlurPool, ()),
    "blur": (MaxBlurPool, (1, 2)),
    "box": (MaxBoxPool, (1, 2)),
    "half-box": (HalfBoxPool, (1, 2)),
    "blur-first": (MaxBlurPool, (1,)),
    "blur-second": (MaxBlurPool, (2,)),
    "box-first": (MaxBoxPool, (1,)),
    "box-second": (MaxBoxPool, (2,)),
    "average": (lambda: nn.AvgPool2d(2), (1, 2)),
    "overlap": (OverlapPool, (1, 2)),
}


def row(seed, setting, precision, data, suite, suite_labels):
    pooling, *changes = setting.split("+")
    changes = recipe_changes(changes)
    config = replace(TrainConfig(), seed=seed, **changes)
    with patch.object(model, "conv_block", pooled_blocks(*POOLINGS[pooling])):
        figures = scored("default", config, precision, data, suite, suite_labels)
    return {"seed": seed, "pooling": pooling, **({"recipe": changes} if changes else {}), **figures}


if __name__ == "__main__":
    print_rows_in_turn(row, sys.argv[1:])
