"""A model's "not sure" rule on the held-out non-digits and on test digits drawn the ways users draw them (2,000 in
each of tests/test_predict.py's styles), everything prepared with its centre of mass at the grid's middle (13.5) and
at MNIST's place (predict.MNIST_CENTRE): does where `prepare` puts an image change what the model flags? One JSON
row per centre: % of each non-digit set flagged, and per style % read right and sure, and % not sure.

    python main.py --config configs/nondigits.json --precision fp32 --out /tmp/nd/mnist_model.pth
    python docs/nondigits/centre.py /tmp/nd/mnist_model.pth
"""

import json
import sys
from pathlib import Path
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch

import predict
from calibration import unsure
from checkpoint import load_model
from cli import resolve_data_dir
from config import MIN_CONFIDENCE
from data import load_split, normalize
from evaluation import predict_logits
from nondigits import letters, scribbles, shapes
from tests.test_predict import USER_STYLE_FLOORS, draw_like_a_user, png_file

DIGITS = 2_000


def main(path):
    model = load_model(path)
    images, labels = load_split(resolve_data_dir(None), "test")
    labels = labels[:DIGITS].tolist()
    inks = {
        style: [predict.read_ink(png_file(draw_like_a_user(image, style))) for image in images[:DIGITS]]
        for style in USER_STYLE_FLOORS
    }
    for centre in (13.5, predict.MNIST_CENTRE):
        row = {"model": path, "centre": centre}
        with patch.object(predict, "MNIST_CENTRE", centre):
            for name, drawn in (("scribbles", scribbles), ("letters", letters), ("shapes", shapes)):
                logits = predict_logits(model, normalize(drawn() * 255))
                flagged = unsure(logits, model.temperature, MIN_CONFIDENCE, model.energy_threshold)
                row[f"{name} flagged %"] = round(100 * flagged.float().mean().item(), 1)
            for style, style_inks in inks.items():
                answers = predict.read_digits(model, torch.stack([predict.prepare(ink) for ink in style_inks]))
                right = sum(a["sure"] and a["digit"] == label for a, label in zip(answers, labels, strict=True))
                row[f"{style} right and sure %"] = round(100 * right / DIGITS, 2)
                row[f"{style} not sure %"] = round(100 * sum(not a["sure"] for a in answers) / DIGITS, 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
