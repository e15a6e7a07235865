"""Images mixed in pairs, which the search never had. "mixup-A" (Zhang et al., ICLR 2018) trains every step on
lam * x + (1 - lam) * x[perm], its loss lam * CE(y) + (1 - lam) * CE(y[perm]), lam drawn from Beta(A, A) once a step;
"cutmix-P" (Yun et al., ICCV 2019) pastes into each image a box of another's, lam from Beta(1, 1), the box's side
sqrt(1 - lam) of the image's, placed at random (clipped at the edges, lam then the area left), on a fraction P of the
steps. Both mix the batch after the recipe's augmentation, the labels keep the recipe's smoothing, and the pairs and
lam come from a generator of their own seeded with the run's seed, so the training generator draws as the default's.
Each seed trains each setting in turn with the default recipe (its views), on the training images less the 5,000 held
out; one JSON row per seed and setting, as inits.py's.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/mixing.py 0,1,2,3,4 \
        default,mixup-0.2,mixup-0.1,cutmix-0.5 --precision fp32
"""

import sys
from pathlib import Path
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import torch
import torch.nn.functional as F
from losses import with_cross_entropy
from views import print_rows_in_turn
from widths import patched_row

import train


def mixup(x, lam, perm, rng):
    return lam * x + (1 - lam) * x[perm], lam


def cutmix(x, lam, perm, rng):
    height, width = x.shape[-2:]
    side = np.sqrt(1 - lam)
    box_h, box_w = round(height * side), round(width * side)
    row, col = rng.integers(height), rng.integers(width)
    top, bottom = max(row - box_h // 2, 0), min(row + box_h - box_h // 2, height)
    left, right = max(col - box_w // 2, 0), min(col + box_w - box_w // 2, width)
    mixed = x.clone()
    mixed[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
    return mixed, 1 - (bottom - top) * (right - left) / (height * width)


def mixing(mix, alpha, share=1.0):
    """train.train_step with its batch mixed by mix(x, lam, perm, rng) on a share of the steps, and its cross-entropy
    the two labels' weighed by the lam that mix returns."""
    step_alone = train.train_step
    state = {"model": None}

    def train_step(model, optimizer, x, y, *args, **kwargs):
        if state["model"] is not model:  # a new run: its own generator, from the seed train_and_evaluate set
            state.update(model=model, rng=np.random.default_rng(torch.initial_seed()))
        rng = state["rng"]
        if rng.random() >= share:
            return step_alone(model, optimizer, x, y, *args, **kwargs)
        perm = torch.from_numpy(rng.permutation(len(y)))
        x, lam = mix(x, float(rng.beta(alpha, alpha)), perm, rng)

        def cross_entropy(logits, labels, label_smoothing=0.0):
            return lam * F.cross_entropy(logits, labels, label_smoothing=label_smoothing) + (1 - lam) * F.cross_entropy(
                logits, labels[perm], label_smoothing=label_smoothing
            )

        with patch.object(train, "F", with_cross_entropy(cross_entropy)):
            return step_alone(model, optimizer, x, y, *args, **kwargs)

    return train_step


SETTINGS = {
    "default": train.train_step,
    "mixup-0.2": mixing(mixup, 0.2),
    "mixup-0.1": mixing(mixup, 0.1),
    "cutmix-0.5": mixing(cutmix, 1.0, share=0.5),
}

if __name__ == "__main__":
    print_rows_in_turn(patched_row(train, "train_step", SETTINGS), sys.argv[1:])
