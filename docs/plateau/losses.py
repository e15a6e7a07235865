"""PolyLoss (Leng et al., ICLR 2022), a loss the search never had: cross-entropy plus epsilon times (1 - p_t), the
first term of cross-entropy's Taylor series in (1 - p_t) weighed up (epsilon > 0: more gradient from examples the
model already reads right, the paper's ImageNet choice epsilon = 2) or down (epsilon = -1: less). With the recipe's
label smoothing, p_t is the probability given to the smoothed target, as the paper does for ImageNet. Each seed trains
each setting in turn with the default recipe (its views), on the training images less the 5,000 held out; one JSON
row per seed and setting, as inits.py's.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/losses.py 0,1,2,3,4 \
        default,poly-1,poly-2 --precision fp32
"""

import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch.nn.functional as F
from views import print_rows_in_turn
from widths import patched_row

import train


def with_cross_entropy(cross_entropy):
    """torch.nn.functional with its cross_entropy replaced, for train.train_step to call."""
    functional = types.SimpleNamespace(**vars(F))
    functional.cross_entropy = cross_entropy
    return functional


def smoothed(logits, labels, label_smoothing):
    """The label-smoothed target distribution that F.cross_entropy(..., label_smoothing) reads against."""
    return F.one_hot(labels, logits.shape[1]).float() * (1 - label_smoothing) + label_smoothing / logits.shape[1]


def poly(epsilon):
    """torch.nn.functional with cross_entropy made Poly-1's."""

    def cross_entropy(logits, labels, label_smoothing=0.0):
        p_target = (logits.softmax(1) * smoothed(logits, labels, label_smoothing)).sum(1)
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing) + epsilon * (1 - p_target).mean()

    return with_cross_entropy(cross_entropy)


SETTINGS = {"default": F, "poly-1": poly(1.0), "poly-2": poly(2.0), "poly-minus-1": poly(-1.0)}


if __name__ == "__main__":
    print_rows_in_turn(patched_row(train, "F", SETTINGS), sys.argv[1:])
