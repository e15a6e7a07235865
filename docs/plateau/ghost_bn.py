"""Ghost batch normalisation (Hoffer et al., 2017), a lever the search never had: in training, each BatchNorm
after a 3x3 or the stem's convolution normalises each group of GROUP images of a batch by that group's own
statistics, where a plain one normalises by the whole batch's (the running statistics, and so evaluation, are the
whole batch's as before). Smaller groups give noisier statistics, a regulariser said to close part of large batches'
generalisation gap. The head's norm, on 1x1 maps, stays plain. Each seed trains each setting in turn with the
default recipe (its views), on the training images less the 5,000 held out; one JSON row per seed and setting, as
inits.py's. A batch that is not a whole number of groups (the epoch's last) is normalised as a plain BatchNorm does.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/ghost_bn.py 0,1,2,3,4 \
        default,ghost-32,ghost-64 --precision fp32
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
import torch.nn.functional as F
from torch import nn
from views import print_rows_in_turn
from widths import patched_row

import train
from model import HeadBatchNorm, MNISTModel


class GhostBatchNorm(nn.BatchNorm2d):
    """A BatchNorm2d that normalises each group of `group` images by the group's statistics in training."""

    group = 32

    def forward(self, x):
        groups, rest = divmod(x.shape[0], self.group)
        if not self.training or rest or groups < 2:
            return super().forward(x)
        with torch.no_grad():  # the running statistics are the whole batch's, as a plain BatchNorm keeps them
            self.running_mean.lerp_(x.mean((0, 2, 3)).float(), self.momentum)
            self.running_var.lerp_(x.var((0, 2, 3)).float(), self.momentum)
            self.num_batches_tracked += 1
        # (groups * group, C, H, W) -> (group, groups * C, H, W): each group's channels as channels of their own
        grouped = x.unflatten(0, (groups, self.group)).transpose(0, 1).flatten(1, 2)
        weight, bias = self.weight.repeat(groups), self.bias.repeat(groups)
        normed = F.batch_norm(grouped, None, None, weight, bias, True, 0.0, self.eps)
        return normed.unflatten(1, (groups, -1)).transpose(0, 1).flatten(0, 1)


def ghost(group):
    """MNISTModel with each BatchNorm but the head's a GhostBatchNorm of `group` images, its parameters kept."""

    class Ghost(MNISTModel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for index, layer in enumerate(self.features):
                if type(layer) is nn.BatchNorm2d:
                    norm = GhostBatchNorm(layer.num_features, layer.eps, layer.momentum)
                    norm.group = group
                    self.features[index] = norm
            assert any(isinstance(layer, HeadBatchNorm) for layer in self.features)

    return Ghost


SETTINGS = {"default": MNISTModel, "ghost-16": ghost(16), "ghost-32": ghost(32), "ghost-64": ghost(64)}


if __name__ == "__main__":
    print_rows_in_turn(patched_row(train, "MNISTModel", SETTINGS), sys.argv[1:])
