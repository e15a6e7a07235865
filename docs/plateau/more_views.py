"""More test-time views where the model is unsure: the product's five (the image and its four 1-pixel shifts) against
nine (with the four diagonal 1-pixel shifts), nine plus the four 2-pixel shifts (thirteen), and the five with the image
turned 8 degrees each way (seven, rotated), each read only for the images whose two highest logits lie less than
config.VIEW_MARGIN apart. Per seed, on the validation split: clean
accuracy, the suite's mean and the share of images viewed.

    python docs/plateau/more_views.py 0,1,2,3,4 > docs/plateau/more-views.jsonl
"""

import json
import statistics
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
import torch.nn.functional as F
from adaptive_views import seed_readings
from views import study_arguments

from config import VIEW_MARGIN
from evaluation import predict_logits
from model import logit_margin

CROSS = [(1, 0), (-1, 0), (0, 1), (0, -1)]
DIAGONAL = [(1, 1), (1, -1), (-1, 1), (-1, -1)]
FAR = [(2, 0), (-2, 0), (0, 2), (0, -2)]
TURNS = [("turn", 8.0), ("turn", -8.0)]
VIEW_SETS = {
    "five": CROSS,
    "nine": CROSS + DIAGONAL,
    "thirteen": CROSS + DIAGONAL + FAR,
    "seven_rotated": CROSS + TURNS,
}


def shifted(images, dy, dx):
    """The images moved by (dy, dx) pixels (|dy|, |dx| <= 2), the edge repeated into the space they leave."""
    padded = F.pad(images, (2, 2, 2, 2), mode="replicate")
    return padded[..., 2 - dy : 30 - dy, 2 - dx : 30 - dx]


def turned(images, degrees):
    """The images turned about their centre, the edge repeated into the corners they leave."""
    angle = torch.tensor(degrees * torch.pi / 180)
    theta = torch.tensor([[angle.cos(), -angle.sin(), 0], [angle.sin(), angle.cos(), 0]]).expand(len(images), 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="border", align_corners=False)


def scaled(images, factor):
    """The images drawn factor times as large about their centre, the edge repeated into the space they leave."""
    theta = torch.tensor([[1 / factor, 0, 0], [0, 1 / factor, 0]]).expand(len(images), 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="border", align_corners=False)


def stroked(images, weight):
    """The images' strokes thickened (weight > 0: moved that far toward each pixel's 3x3 maximum) or thinned
    (weight < 0: toward its 3x3 minimum)."""
    pooled = F.max_pool2d(images, 3, 1, 1) if weight > 0 else -F.max_pool2d(-images, 3, 1, 1)
    return images + abs(weight) * (pooled - images)


def view(images, a, b):
    """A view named (dy, dx) for a shift, or (kind, amount) for "turn", "scale" or "stroke"."""
    kinds = {"turn": turned, "scale": scaled, "stroke": stroked}
    return kinds[a](images, b) if a in kinds else shifted(images, a, b)


def readings(model, images, labels, view_sets=VIEW_SETS):
    """{way of reading: (accuracy %, % of images viewed)} for one set of images."""
    one = predict_logits(model, images).float()
    unsure = logit_margin(one) < VIEW_MARGIN
    read = {"one": one}
    for name, shifts in view_sets.items():
        views = [one] + [predict_logits(model, view(images, a, b)).float() for a, b in shifts]
        read[name] = torch.where(unsure[:, None], torch.stack(views).mean(0), one)
    share = unsure.float().mean().item() * 100
    return {way: ((out.argmax(1) == labels).float().mean().item() * 100, share) for way, out in read.items()}


def main(seeds, test=False, precision="auto", view_sets=VIEW_SETS):
    read = partial(readings, view_sets=view_sets)
    for seed, clean, corrupted in seed_readings(seeds, test, precision, read):
        row = {"seed": seed, "precision": precision}
        for way, (accuracy, viewed) in clean.items():
            suite = statistics.fmean(c[way][0] for c in corrupted)
            row[way] = {"acc": round(accuracy, 3), "viewed": round(viewed, 2), "suite": round(suite, 3)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    seeds, _, test, precision = study_arguments(sys.argv[1:])
    main(seeds, test, precision)
