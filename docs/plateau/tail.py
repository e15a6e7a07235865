"""Two changes to the recipe's clean tail, the last 60 % of its steps, which read the training images as they are and
with the recipe's label smoothing. Each seed trains each setting in turn with the default recipe (its views), on the
training images less the 5,000 held out; one JSON row per seed and setting, as widths.py's with "setting" for
"width". Patched in for this study's runs only:

- "shift-5", "shift-9": each tail step reads each image moved by one of a set of shifts, drawn uniformly per image
  (the edge repeated into the space it leaves, as the test-time views do): the views' own (none, and one pixel up,
  down, left or right), or every move of at most one pixel each way, diagonals too;
- "smoothing-F": the tail's cross-entropy with F times the recipe's label smoothing (0: none).

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/tail.py 0,1,2,3,4 \
        none,shift-5,shift-9 --precision fp32
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/tail.py 0,1,2,3,4 \
        none,smoothing-0,smoothing-0.5 --precision fp32
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/tail.py 0,1,2,3,4 \
        none,smoothing-1.5 --precision fp32
"""

import sys
from dataclasses import replace
from pathlib import Path
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
import torch.nn.functional as F
from views import print_rows_in_turn
from widths import scored

import train
from config import TrainConfig
from model import VIEW_SHIFTS

SHIFTS = {
    "shift-5": ((0, 0), *VIEW_SHIFTS),
    "shift-9": tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)),
}


def shifted(images, shifts, generator):
    """Each image moved by one of shifts (dy, dx), drawn uniformly, the edge repeated."""
    height, width = images.shape[-2:]
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    choice = torch.randint(len(shifts), (len(images), 1, 1, 1), generator=generator)
    moved = images
    for k, (dy, dx) in enumerate(shifts):
        crop = padded[..., 1 - dy : 1 - dy + height, 1 - dx : 1 - dx + width]  # the content moved by (dy, dx)
        moved = torch.where(choice == k, crop, moved)
    return moved


class Tail:
    """train.augment and train.train_step, patched: a step that augment was not called for (the clean tail) reads
    its images through shifts (none: as they are) and its labels smoothed by smoothing x the recipe's."""

    def __init__(self, seed, shifts=None, smoothing=1.0):
        self.shifts, self.smoothing, self.augmented = shifts, smoothing, False
        self.generator = torch.Generator().manual_seed(seed + 7919)  # its own: the recipe's draws stay as they are
        self.augment, self.train_step = train.augment, train.train_step

    def augmenting(self, *args, **kwargs):
        self.augmented = True
        return self.augment(*args, **kwargs)

    def stepping(self, model, optimizer, x, y, label_smoothing, *args):
        if not self.augmented:
            x = shifted(x, self.shifts, self.generator) if self.shifts else x
            label_smoothing *= self.smoothing
        self.augmented = False
        return self.train_step(model, optimizer, x, y, label_smoothing, *args)

    def patched(self):
        return patch.multiple(train, augment=self.augmenting, train_step=self.stepping)


def row(seed, setting, precision, data, suite, suite_labels):
    smoothing = float(setting.removeprefix("smoothing-")) if setting.startswith("smoothing-") else 1.0
    if setting not in ("none", *SHIFTS) and not setting.startswith("smoothing-"):
        raise SystemExit(f"unknown setting {setting!r}: none, {', '.join(SHIFTS)} or smoothing-F")
    tail = Tail(seed, SHIFTS.get(setting), smoothing)
    with tail.patched():
        figures = scored("default", replace(TrainConfig(), seed=seed), precision, data, suite, suite_labels)
    return {"seed": seed, "setting": setting, **figures}


if __name__ == "__main__":
    print_rows_in_turn(row, sys.argv[1:])
