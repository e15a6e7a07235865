"""Images that are not digits, drawn and prepared as predict prepares an upload: what the "not sure" rule is
measured on (seeded scribbles, and letters in DejaVu Sans, the font matplotlib ships)."""

import random
import string

import numpy as np
import torch
from PIL import Image, ImageDraw

from predict import prepare

SCRIBBLES = 200  # seeded random scribbles measured for the flagged fraction
SCRIBBLE_STROKES = (2, 5)  # strokes per scribble, fewest and most
CANVAS = 112  # pixels a side of the canvas that scribbles and letters are drawn on, before MNIST's 28x28
LETTERS = string.ascii_letters


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


def _canvas():
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    return canvas, ImageDraw.Draw(canvas)


def _prepared(canvas):
    return prepare(np.asarray(canvas, dtype=np.float32) / 255)
