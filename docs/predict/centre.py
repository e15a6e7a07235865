"""Where `prepare` puts a digit's centre of mass: MNIST's own place (predict.MNIST_CENTRE, pixel index 14.0 in rows
and columns) against the 28x28 grid's middle (13.5), read by trained models on test digits drawn the ways users
draw them (tests/test_predict.py's styles: 4x larger with a thick marker or a thin pen, or scanned small, and
plainly 4x larger), each image read from a PNG as predict reads it. One JSON row per model, style and centre.

    python docs/predict/centre.py models/mnist_model.pth --images 10000
"""

import argparse
import json
import sys
from pathlib import Path
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch

import predict
from checkpoint import load_model
from cli import resolve_data_dir
from data import load_split
from tests.test_predict import USER_STYLE_FLOORS, draw_like_a_user, png_file

CENTRES = {"grid middle": 13.5, "MNIST's": predict.MNIST_CENTRE}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--images", type=int, default=10_000, help="the first N test digits (default: 10000)")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    images, labels = load_split(resolve_data_dir(args.data_dir), "test")
    images, labels = images[: args.images], labels[: args.images].tolist()
    for style in ("plain", *USER_STYLE_FLOORS):
        inks = [predict.read_ink(png_file(draw_like_a_user(image, style))) for image in images]
        for path in args.models:
            model = load_model(path)
            for name, centre in CENTRES.items():
                with patch.object(predict, "MNIST_CENTRE", centre):
                    prepared = torch.stack([predict.prepare(ink) for ink in inks])
                answers = predict.read_digits(model, prepared)
                right = sum(a["digit"] == label for a, label in zip(answers, labels, strict=True))
                row = {
                    "model": path,
                    "style": style,
                    "centre": name,
                    "images": len(labels),
                    "right %": round(100 * right / len(labels), 2),
                    "not sure %": round(100 * sum(not a["sure"] for a in answers) / len(labels), 2),
                }
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
