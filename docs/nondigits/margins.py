"""Study 7: the energy margin's bounds and weight, chosen on the validation split. Each seed trains every setting in
turn on the training images less the 5,000 held out, then reads the held-out digits ("not sure": the calibrated
confidence below 90 % or the energy above the threshold that flags 1 % of them, both fitted on them, as a
--validation run fits them) and three sets of held-out non-digits drawn here, used for nothing else: letters in the
Liberation fonts (neither training's nor the evaluation's), outlined shapes of kinds neither generator draws, and
smooth pen curves. The evaluation's non-digits (nondigits.py) are read too, for the record only.
One JSON row per seed and setting (name, weight, the two bounds, and the share of each batch, 0.1 if not given):

    python docs/nondigits/margins.py '[["w0.03 -6/-2", 0.03, -6, -2]]' 0 1 2 3 4 >> docs/nondigits/margins.jsonl
"""

import json
import math
import random
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from PIL import ImageFont

import nondigits
import train
from calibration import unsure
from cli import resolve_data_dir
from config import MIN_CONFIDENCE, TrainConfig
from data import normalize
from evaluation import predict_logits
from nondigits import CANVAS, LETTERS, _canvas, _placed, _polar, _prepared

FONT_FOLDER = Path("/usr/share/fonts/truetype/liberation")  # Debian's fonts-liberation
FONTS = ("LiberationSans-Regular", "LiberationSans-Bold", "LiberationSerif-Regular", "LiberationSerif-Italic",
         "LiberationMono-Regular", "LiberationSansNarrow-Regular")  # fmt: skip
SHAPE_KINDS = ("hexagon", "diamond", "heart", "check", "slashed", "zigzag", "hash", "bolt")


def held_out_letters():
    images = []
    for name in FONTS:
        font = ImageFont.truetype(str(FONT_FOLDER / f"{name}.ttf"), size=CANVAS * 3 // 4)
        for character in LETTERS:
            canvas, draw = _canvas()
            draw.text((CANVAS / 2, CANVAS / 2), character, fill=255, font=font, anchor="mm")
            images.append(_prepared(canvas))
    return torch.stack(images)


def _shape_lines(kind, r, rng):
    if kind == "hexagon":
        return [[_polar(r, i * math.pi / 3) for i in range(7)]]
    if kind == "diamond":
        return [[(0, -r), (r * 0.6, 0), (0, r), (-r * 0.6, 0), (0, -r)]]
    if kind == "heart":
        t = [2 * math.pi * i / 40 for i in range(41)]
        return [[(16 * math.sin(a) ** 3 * r / 17,
                  -(13 * math.cos(a) - 5 * math.cos(2 * a) - 2 * math.cos(3 * a) - math.cos(4 * a)) * r / 17)
                 for a in t]]  # fmt: skip
    if kind == "check":
        return [[(-r, 0), (-r * 0.3, r * 0.7), (r, -r)]]
    if kind == "slashed":
        return [[_polar(r, i * math.pi / 12) for i in range(25)], [(-r, r), (r, -r)]]
    if kind == "zigzag":
        n = rng.randint(4, 7)
        return [[(-r + 2 * r * i / (n - 1), (-1) ** i * r * 0.4) for i in range(n)]]
    if kind == "hash":
        a = r * 0.35
        return [[(-a, -r), (-a, r)], [(a, -r), (a, r)], [(-r, -a), (r, -a)], [(-r, a), (r, a)]]
    return [[(r * 0.3, -r), (-r * 0.4, r * 0.1), (r * 0.4, -r * 0.1), (-r * 0.3, r)]]  # a lightning bolt


def held_out_shapes(count=160, seed=7):
    rng = random.Random(seed)
    images = []
    for number in range(count):
        canvas, draw = _canvas()
        width, radius = rng.randint(6, 12), rng.uniform(30, 48)
        centre = (CANVAS / 2 + rng.uniform(-6, 6), CANVAS / 2 + rng.uniform(-6, 6))
        turn = rng.uniform(-0.4, 0.4)
        for line in _shape_lines(SHAPE_KINDS[number % len(SHAPE_KINDS)], radius, rng):
            draw.line([_placed(point, centre, turn) for point in line], fill=255, width=width, joint="curve")
        images.append(_prepared(canvas))
    return torch.stack(images)


def held_out_curves(count=200, seed=11):
    """Smooth pen curves: quadratic Bezier pieces through 3 to 6 random points."""
    rng = random.Random(seed)
    images = []
    for _ in range(count):
        canvas, draw = _canvas()
        points = [(rng.uniform(8, CANVAS - 8), rng.uniform(8, CANVAS - 8)) for _ in range(rng.randint(3, 6))]
        path = []
        for (x0, y0), (x1, y1), (x2, y2) in zip(points, points[1:], points[2:], strict=False):
            (ax, ay), (bx, by) = ((x0 + x1) / 2, (y0 + y1) / 2), ((x1 + x2) / 2, (y1 + y2) / 2)
            for t in (i / 10 for i in range(11)):
                path.append(((1 - t) ** 2 * ax + 2 * (1 - t) * t * x1 + t * t * bx,
                             (1 - t) ** 2 * ay + 2 * (1 - t) * t * y1 + t * t * by))  # fmt: skip
        draw.line(path, fill=255, width=rng.randint(6, 12), joint="curve")
        images.append(_prepared(canvas))
    return torch.stack(images)


def flagged(model, logits):
    return unsure(logits, model.temperature, MIN_CONFIDENCE, model.energy_threshold)


def held_out_sets():
    """The held-out non-digits and the evaluation's, normalised as MNIST is."""
    made = {"h_letters": held_out_letters(), "h_shapes": held_out_shapes(), "h_curves": held_out_curves()}
    made |= {"e_scribbles": nondigits.scribbles(), "e_letters": nondigits.letters(), "e_shapes": nondigits.shapes()}
    return {name: normalize(images * 255) for name, images in made.items()}


def study_data():
    """The validation split on the CPU (load_data's) and the held-out sets: what every study trains and reads on."""
    return train.load_data(resolve_data_dir(), torch.device("cpu"), validation=True), held_out_sets()


def read(name, seed, result, labels, sets):
    """One row: the model's validation figures and the share of each set it flags."""
    model, digits = result.model, flagged(result.model, result.logits)
    right = result.logits.argmax(1).cpu() == labels.cpu()
    row = {"name": name, "seed": seed, "acc": round(result.metrics["accuracy"], 2),
           "T": round(model.temperature, 3), "E": round(model.energy_threshold, 3),
           "train_s": result.metrics["train_seconds"], "numerics": result.metrics["numerics"],
           "digits_flagged": round(digits.float().mean().item() * 100, 2),
           "acc_unflagged": round(right[~digits].float().mean().item() * 100, 3)}  # fmt: skip
    for set_name, images in sets.items():
        row[set_name] = round(flagged(model, predict_logits(model, images)).float().mean().item() * 100, 1)
    return row


def main(settings, seeds):
    validation, sets = study_data()
    for seed in seeds:
        for name, weight, digit_energy, nondigit_energy, *share in settings:
            train.DIGIT_ENERGY, train.NONDIGIT_ENERGY = digit_energy, nondigit_energy
            config = replace(TrainConfig(), seed=seed, nondigit_weight=weight, nondigits=(*share, 0.1)[0])
            result = train.train_and_evaluate("default", config, torch.device("cpu"), validation)
            print(json.dumps(read(name, seed, result, validation["eval"][1], sets)), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), [int(seed) for seed in sys.argv[2:]])
