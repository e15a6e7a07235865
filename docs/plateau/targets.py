"""Targets made partly of the model's own reading, which the search never had: the recipe's label smoothing spreads
0.179 of each target evenly over the ten digits, whatever the image. "bootstrap-B" (soft bootstrapping, Reed et al.
2015) takes B of each target from the model's own probabilities (detached), the rest the recipe's smoothed label;
"own-smoothing" keeps the smoothing's mass but spreads it over the other nine digits as the model reads the image
(a 4 that it finds 9-like gives more of it to 9), online label smoothing per image rather than per class (Zhang et
al. 2021). Both from the forward pass the step makes: no cost. Each seed trains each setting in turn with the default
recipe (its views), on the training images less the 5,000 held out; one JSON row per seed and setting, as inits.py's.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/targets.py 0,1,2,3,4 \
        default,bootstrap-0.1,bootstrap-0.3,own-smoothing --precision fp32
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
import torch.nn.functional as F
from losses import smoothed, with_cross_entropy
from views import print_rows_in_turn
from widths import patched_row

import train


def with_targets(target_of):
    """torch.nn.functional with cross_entropy against target_of(logits, labels, label_smoothing)."""
    return with_cross_entropy(
        lambda logits, labels, label_smoothing=0.0: F.cross_entropy(logits, target_of(logits, labels, label_smoothing))
    )


def bootstrap(weight):
    def target_of(logits, labels, label_smoothing):
        own = logits.detach().softmax(1)
        return (1 - weight) * smoothed(logits, labels, label_smoothing) + weight * own

    return target_of


def own_smoothing(logits, labels, label_smoothing):
    """The smoothing's mass, label_smoothing * 9/10 of it off the true digit as the recipe's, spread over the other
    digits in proportion to the model's probabilities for them."""
    classes = logits.shape[1]
    true = F.one_hot(labels, classes).bool()
    others = logits.detach().softmax(1).masked_fill(true, 0)
    others = others / others.sum(1, keepdim=True).clamp(min=torch.finfo(others.dtype).tiny)
    off_true = label_smoothing * (classes - 1) / classes
    return torch.where(true, 1 - off_true, off_true * others)


SETTINGS = {
    "default": F,
    "bootstrap-0.1": with_targets(bootstrap(0.1)),
    "bootstrap-0.3": with_targets(bootstrap(0.3)),
    "own-smoothing": with_targets(own_smoothing),
}

if __name__ == "__main__":
    print_rows_in_turn(patched_row(train, "F", SETTINGS), sys.argv[1:])
