"""Where the two body convolutions pool: the default max-pools right after each convolution, then normalises and
applies ReLU on the quarter of the pixels left (model.conv_block; faster on a CPU). Max-pooling commutes with the ReLU
but not with the BatchNorm: the norm's statistics are then the pooled maxima's, and a channel that the norm flips
(a negative scale) still pools its largest values, not its smallest. "norm-then-pool" is the textbook order,
convolution, BatchNorm, ReLU, then the pool: the statistics over every pixel, for 4x the norm's and the ReLU's work in
those two layers. Nothing else changes: the same weights at the start, the same draws. Each seed trains each setting in
turn with the default recipe (its views), on the training images less the 5,000 held out; one JSON row per seed and
setting, as inits.py's.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/norm_order.py 0,1,2,3,4 \
        default,norm-then-pool --precision fp32
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/norm_order.py 5,6,7,8,9 \
        default,norm-then-pool --precision fp32
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from torch import nn
from views import print_rows_in_turn
from widths import patched_row

import model

pool_then_norm = model.conv_block


def norm_then_pool(in_channels, out_channels, kernel=3, stride=1, padding=1, pool=False, norm=nn.BatchNorm2d):
    """model.conv_block with its max-pool, if any, after the norm and the ReLU."""
    layers = pool_then_norm(in_channels, out_channels, kernel, stride, padding, False, norm)
    return [*layers, nn.MaxPool2d(2)] if pool else layers


SETTINGS = {"default": pool_then_norm, "norm-then-pool": norm_then_pool}

if __name__ == "__main__":
    print_rows_in_turn(patched_row(model, "conv_block", SETTINGS), sys.argv[1:])
