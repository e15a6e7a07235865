"""Deskewing inside the model, on the validation split: each seed trains the default and each setting in turn; one
JSON row per run.

    python docs/plateau/deskew.py 0,1,2,3,4,5,6,7,8,9 default,deskew@1,deskew@0.3,centre,deskew@1+centre
    python docs/plateau/deskew.py 0,1,2,3,4 default,deskew@1 --precision bf16

deskew@C shears every image, after the contrast stretch, in training and in evaluation alike, so that its ink's
principal axis stands upright: the slant is the ink's second moments' ratio mu11 / mu02 (the classic MNIST
preprocessing of LeCun et al. and of many k-NN and SVM results), clamped to [-C, C], and the shear turns about the
ink's centre of mass, the border's pixels repeated into the space it opens. It reads one writer's slant as
another's, which the augmentation (rotation up to 14 degrees, no shear) teaches only in part. centre moves the ink's
centre of mass to the image's centre (MNIST's own framing, to the pixel) in the same resampling. The suite is the
validation images' first 2,000, as in views.py; --test gives the confirmation on the test set.
"""

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
import torch.nn.functional as F
from torch import nn
from views import ONE_READING, print_row, study_arguments, study_data

import train
from model import MNISTModel


class Deskew(nn.Module):
    def __init__(self, limit, centre):
        super().__init__()
        self.limit, self.centre = limit, float(centre)

    def forward(self, x):
        n, _, h, w = x.shape
        ink = x - x.amin((2, 3), keepdim=True)
        mass = ink.sum((2, 3), keepdim=True).clamp(min=1e-6)
        rows = torch.arange(h, dtype=x.dtype, device=x.device).view(1, 1, h, 1)
        cols = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, 1, w)
        cy = (ink * rows).sum((2, 3), keepdim=True) / mass
        cx = (ink * cols).sum((2, 3), keepdim=True) / mass
        mu02 = (ink * (rows - cy) ** 2).sum((2, 3)) / mass.view(n, 1)
        mu11 = (ink * (rows - cy) * (cols - cx)).sum((2, 3)) / mass.view(n, 1)
        slant = (mu11 / mu02.clamp(min=1e-6)).clamp(-self.limit, self.limit).view(n)
        # The centre of mass in grid_sample's -1..1 coordinates; an output pixel (u, v) reads the input at
        # v + r * y and u + r * x + slant * (v + r * y - y), r 1 to recentre, else 0.
        y, x_ = (2 * cy.view(n) + 1) / h - 1, (2 * cx.view(n) + 1) / w - 1
        r = self.centre
        theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = 1, slant, r * x_ + slant * (r - 1) * y
        theta[:, 1, 1], theta[:, 1, 2] = 1, r * y
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


SETTING = {}


class DeskewedModel(MNISTModel):
    """The model, trained with --deskew 0 as the model before it deskewed, with the setting's own deskewing
    (deskew@1 is what model.Deskew adopted)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if SETTING:
            self.stretch = nn.Sequential(self.stretch, Deskew(**SETTING))


def main(seeds, settings, test=False, precision="auto"):
    train.MNISTModel = DeskewedModel
    data, suite, suite_labels = study_data(test)
    for seed in seeds:
        for setting in settings:
            parts = dict(part.partition("@")[::2] for part in setting.split("+"))
            SETTING.clear()
            if "deskew" in parts or "centre" in parts:
                SETTING.update(limit=float(parts.get("deskew", 0)), centre="centre" in parts)
            config = replace(ONE_READING, seed=seed, deskew=0.0)
            print_row(setting, seed, config, data, suite, suite_labels, precision=precision)


if __name__ == "__main__":
    main(*study_arguments(sys.argv[1:]))
