"""Images that are not digits, drawn and prepared as predict prepares an upload: what the "not sure" rule is
measured on (seeded scribbles, seeded shapes, and letters in DejaVu Sans, the font matplotlib ships).

These are the evaluation's. Training draws its own (outliers.py), with another generator and other fonts, so
that no image measured here, nor its font, is ever trained on.
"""

import math
import random
import string

import numpy as np
import torch
from PIL import Image, ImageDraw

from predict import prepare

SCRIBBLES = 200  # seeded random scribbles measured for the flagged fraction
SCRIBBLE_STROKES = (2, 5)  # strokes per scribble, fewest and most
CANVAS = 112  # pixels a side of the canvas that scribbles and letters are drawn on, before MNIST's 28x28
# Letters that are digits' own shapes in most hands and fonts: a digit classifier reads them as 0 and 1, rightly.
# They are measured apart (digit_shaped_letters), not counted with the letters.
DIGIT_SHAPED_LETTERS = "OoIl"
LETTERS = "".join(c for c in string.ascii_letters if c not in DIGIT_SHAPED_LETTERS)
SHAPES = 120  # seeded shapes, as many of each kind of SHAPE_KINDS


def scribbles(count=SCRIBBLES, seed=0):
    """count random pen scribbles (2 to 5 joined strokes), prepared as predict prepares an upload: (count, 28, 28)."""
    rng = random.Random(seed)
    images = []
    for _ in range(count):
        canvas, draw = _canvas()
        corners = rng.randint(*SCRIBBLE_STROKES) + 1
        points = [(rng.uniform(8, CANVAS - 8), rng.uniform(8, CANVAS - 8)) for _ in range(corners)]
        draw.line(points, fill=255, width=rng.randint(6, 12), joint="curve")
        images.append(_prepared(canvas))
    return torch.stack(images)


def letters(text=LETTERS):
    """Each character of text drawn in DejaVu Sans (matplotlib's font), prepared as an upload: (len, 28, 28)."""
    from matplotlib import font_manager
    from PIL import ImageFont

    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size=CANVAS * 3 // 4)
    images = []
    for character in text:
        canvas, draw = _canvas()
        draw.text((CANVAS / 2, CANVAS / 2), character, fill=255, font=font, anchor="mm")
        images.append(_prepared(canvas))
    return torch.stack(images)


def digit_shaped_letters():
    return letters(DIGIT_SHAPED_LETTERS)


SHAPE_KINDS = ("rectangle", "triangle", "star", "plus", "cross", "arrow", "house", "face")


def shapes(count=SHAPES, seed=0):
    """count outlined shapes of SHAPE_KINDS in turn, each placed, sized and turned at random (seeded), prepared as
    an upload: (count, 28, 28)."""
    rng = random.Random(seed)
    images = []
    for number in range(count):
        canvas, draw = _canvas()
        kind = SHAPE_KINDS[number % len(SHAPE_KINDS)]
        width, radius = rng.randint(6, 12), rng.uniform(30, 48)
        centre = (CANVAS / 2 + rng.uniform(-6, 6), CANVAS / 2 + rng.uniform(-6, 6))
        turn = rng.uniform(-0.3, 0.3)
        for line in _shape_lines(kind, radius, rng):
            draw.line([_placed(point, centre, turn) for point in line], fill=255, width=width, joint="curve")
        images.append(_prepared(canvas))
    return torch.stack(images)


def _shape_lines(kind, r, rng):
    """The polylines of a shape of size r around (0, 0), y down."""
    if kind == "rectangle":
        w, h = r, r * rng.uniform(0.5, 1.0)
        return [[(-w, -h), (w, -h), (w, h), (-w, h), (-w, -h)]]
    if kind == "triangle":
        return [[(0, -r), (r * 0.95, r * 0.7), (-r * 0.95, r * 0.7), (0, -r)]]
    if kind == "star":
        return [[_polar(r if i % 2 == 0 else r * 0.4, i * math.pi / 5 - math.pi / 2) for i in range(11)]]
    if kind == "plus":
        return [[(-r, 0), (r, 0)], [(0, -r), (0, r)]]
    if kind == "cross":
        return [[(-r, -r), (r, r)], [(-r, r), (r, -r)]]
    if kind == "arrow":
        return [[(-r, 0), (r, 0)], [(r * 0.4, -r * 0.5), (r, 0), (r * 0.4, r * 0.5)]]
    if kind == "house":
        return [[(-r * 0.7, r), (-r * 0.7, 0), (0, -r), (r * 0.7, 0), (r * 0.7, r), (-r * 0.7, r)]]
    ring = [_polar(r, i * math.pi / 12) for i in range(25)]  # a face: a ring, two eyes and a smile
    smile = [_polar(r * 0.55, math.pi * (0.2 + 0.6 * i / 8)) for i in range(9)]
    eyes = [[(-r * 0.35, -r * 0.3), (-r * 0.35, -r * 0.25)], [(r * 0.35, -r * 0.3), (r * 0.35, -r * 0.25)]]
    return [ring, smile, *eyes]


def _polar(radius, angle):
    return radius * math.cos(angle), radius * math.sin(angle)


def _placed(point, centre, turn):
    x, y = point
    return centre[0] + x * math.cos(turn) - y * math.sin(turn), centre[1] + x * math.sin(turn) + y * math.cos(turn)


def _canvas():
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    return canvas, ImageDraw.Draw(canvas)


def _prepared(canvas):
    return prepare(np.asarray(canvas, dtype=np.float32) / 255)
