"""Images that are not digits, for training the model to say so.

As in Outlier Exposure (Hendrycks, Mazeika and Dietterich, ICLR 2019), a few such images join each training
batch; their loss is the energy margin of Liu et al. (NeurIPS 2020, train.train_step), which lifts the energy
of what is not a digit above that of digits, and the "not sure" rule reads the energy (calibration.unsure). The
model keeps its ten outputs.

Drawn with tensor ops, a pool of them at the start of a run, as 28x28 ink on a black ground like MNIST's: scribbles
(one pen line of many strokes), marks (a few separate strokes), curves (spirals and waves), rings with marks inside,
hatching (parallel strokes, once or crossed), outlined shapes (regular polygons and stars) and uneven closed
outlines, some crossed by a stroke; and letters in the fonts matplotlib ships, rendered once a run and prepared as
an upload is. The evaluation's non-digits (nondigits.py) are made apart from these: drawn by PIL with their own
seeds, letters in DejaVu Sans, a font no training letter uses; the two share only which letters count
(nondigits.LETTERS: not O, o, I and l, which are digits' own shapes).
"""

import math
from functools import cache
from pathlib import Path

import torch

# Drawn in turn, each as many times as it is named. Letters, with their many forms, make a third of them: on the
# validation split, 80 % of the evaluation's letters flagged against 70 % at one in seven. Uneven outlines, a sixth:
# held-out shapes flagged 73.3 % against 64.6 % without them, seeds 0-9, as many digits right, 3.44 % of them
# flagged against 3.37 (docs/nondigits.md, studies 3 and 8).
KINDS = (
    *("scribble", "marks", "curve", "letter", "ring", "hatching"),
    *("letter", "shape", "letter", "polygon", "letter", "polygon"),
)
POOL = 2048  # a run's non-digits at most: each batch takes a few at random, and the augmentation varies them
CHUNK = 256  # images rendered at once: the distances of every pixel to every stroke take memory
# matplotlib's own fonts, DejaVu Sans and its Mono left out: the evaluation's letters are DejaVu Sans.
FONTS = (
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "cmss10.ttf",
    "cmr10.ttf",
    "cmtt10.ttf",
)
SIDE = 28
FAR = -1e3  # where an unused segment lies: no pixel is near it


def draw(count, generator, device="cpu"):
    """count non-digit images, normalised as data.normalize makes MNIST's: (count, 1, 28, 28)."""
    from data import MEAN, STD

    drawers = {"scribble": scribbles, "marks": marks, "curve": curves, "ring": rings, "hatching": hatching}
    drawers |= {"shape": shapes, "letter": letters, "polygon": polygons}
    turn = torch.arange(count, device=device) % len(KINDS)
    ink = torch.zeros(count, 1, SIDE, SIDE, device=device)
    for kind, drawer in drawers.items():
        named = [number for number, name in enumerate(KINDS) if name == kind]
        chosen = torch.isin(turn, torch.tensor(named, device=device)).nonzero().flatten()
        for part in chosen.split(CHUNK):
            ink[part] = drawer(len(part), generator, device)
    return (centred_by_mass(ink) - MEAN) / STD


def centred_by_mass(ink):
    """ink (N, 1, 28, 28) moved by whole pixels so that each image's centre of mass lies where MNIST's digits have
    theirs, as predict.prepare moves an upload: drawn with their box at the grid's middle instead, non-digits lay half
    a pixel from the digits, and a model trained on them learnt to flag what lay there (docs/nondigits.md)."""
    from predict import MNIST_CENTRE

    grid = torch.arange(SIDE, device=ink.device)
    mass = ink.sum((2, 3)).clamp(min=1e-6)  # (N, 1)
    for axis, profile in ((2, ink.sum(3)), (3, ink.sum(2))):  # (N, 1, 28): the ink in each row, then each column
        centre = (profile * grid).sum(2) / mass
        inked = profile > 0
        first, last = inked.int().argmax(2), SIDE - 1 - inked.flip(2).int().argmax(2)
        # As prepare does, no further than keeps all of the ink inside the grid.
        shift = (MNIST_CENTRE - centre).round().long().clamp(min=-first, max=SIDE - 1 - last)
        source = grid - shift  # (N, 28): the pixel each one is read from
        inside = (source >= 0) & (source < SIDE)
        shape = (-1, 1, SIDE, 1) if axis == 2 else (-1, 1, 1, SIDE)
        index = source.clamp(0, SIDE - 1).view(shape).expand_as(ink)
        ink = ink.gather(axis, index) * inside.view(shape)
    return ink


def _uniform(shape, low, high, generator, device):
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


def scribbles(count, generator, device):
    """One pen line through 5 to 9 random points: more turns than any digit's."""
    points = _uniform((count, 9, 2), 5, 23, generator, device)
    corners = torch.randint(5, 10, (count, 1), generator=generator, device=device)
    used = torch.arange(8, device=device) < corners - 1  # segments between the first `corners` points
    segments = torch.stack([points[:, :-1], points[:, 1:]], 2)
    return render(segments.masked_fill(~used[..., None, None], FAR), _widths(count, generator, device))


def marks(count, generator, device):
    """2 to 4 separate straight strokes."""
    ends = _uniform((count, 4, 2, 2), 4, 24, generator, device)
    strokes = torch.randint(2, 5, (count, 1), generator=generator, device=device)
    used = torch.arange(4, device=device) < strokes
    return render(ends.masked_fill(~used[..., None, None], FAR), _widths(count, generator, device))


def curves(count, generator, device):
    """Spirals of 1.5 to 3 turns, and waves of 2 to 4 periods, turned at random."""
    points = 32
    t = torch.linspace(0, 1, points, device=device)
    turns = _uniform((count, 1), 1.5, 3, generator, device)
    spiral = torch.stack([(2 * math.pi * turns * t).cos() * t, (2 * math.pi * turns * t).sin() * t], -1)
    periods = _uniform((count, 1), 2, 4, generator, device)
    height = _uniform((count, 1), 0.15, 0.4, generator, device)
    wave = torch.stack([t.expand(count, -1) - 0.5, height * (2 * math.pi * periods * t).sin()], -1)
    spirals = torch.rand(count, 1, 1, generator=generator, device=device) < 0.5
    path = _turned(torch.where(spirals, spiral, wave), generator)
    return render(torch.stack([path[:, :-1], path[:, 1:]], 2), _widths(count, generator, device))


def rings(count, generator, device):
    """A ring with 1 to 3 short strokes inside it: a circle alone would be a zero."""
    points = 25
    angle = torch.linspace(0, 2 * math.pi, points, device=device)
    squash = _uniform((count, 1), 0.7, 1.0, generator, device)
    ring = torch.stack([angle.cos().expand(count, -1), squash * angle.sin()], -1) * 10
    ring = torch.stack([ring[:, :-1], ring[:, 1:]], 2)
    inside = _uniform((count, 3, 2, 2), -5, 5, generator, device)
    strokes = torch.randint(1, 4, (count, 1), generator=generator, device=device)
    inside = inside.masked_fill(~(torch.arange(3, device=device) < strokes)[..., None, None], FAR)
    return render(torch.cat([ring, inside], 1) + 14, _widths(count, generator, device))


def _turned(points, generator):
    """(N, P, 2) points about the origin, each drawing turned by its own random angle."""
    angle = _uniform((len(points), 1), 0, 2 * math.pi, generator, points.device)
    cos, sin = angle.cos(), angle.sin()
    x, y = points[..., 0], points[..., 1]
    return torch.stack([x * cos - y * sin, x * sin + y * cos], -1)


def hatching(count, generator, device):
    """3 to 6 parallel strokes across a box; half of them crossed by as many at another angle."""
    lines = 6
    angle = _uniform((count, 2, 1), 0, math.pi, generator, device)
    spacing = _uniform((count, 2, 1), 2.5, 4.5, generator, device)
    length = _uniform((count, 2, 1), 10, 18, generator, device)
    offsets = (torch.arange(lines, device=device) - (lines - 1) / 2) * spacing  # (count, 2, lines)
    along = torch.stack([angle.cos(), angle.sin()], -1)  # (count, 2, 1, 2)
    across = torch.stack([-angle.sin(), angle.cos()], -1)
    middle = 14 + offsets[..., None] * across  # (count, 2, lines, 2)
    segments = torch.stack([middle - along * length[..., None] / 2, middle + along * length[..., None] / 2], -2)
    used_lines = torch.randint(3, lines + 1, (count, 1, 1), generator=generator, device=device)
    used = (torch.arange(lines, device=device) < used_lines).expand(count, 2, lines).clone()
    used[:, 1] &= torch.rand(count, 1, generator=generator, device=device) < 0.5  # the crossing set, or none
    segments = segments.masked_fill(~used[..., None, None], FAR).flatten(1, 2)
    return render(segments, _widths(count, generator, device))


def shapes(count, generator, device):
    """Outlined triangles, squares, pentagons and five-pointed stars, turned at random."""
    corners = 10  # a star's; a polygon of k sides repeats its corners to fill them
    kinds = torch.tensor([3, 4, 5, 10], device=device)  # sides; 10: a star
    sides = kinds[torch.randint(0, len(kinds), (count,), generator=generator, device=device)]
    star = sides == 10
    step = torch.arange(corners + 1, device=device)
    which = torch.where(star[:, None], step, (step * sides[:, None] / corners).floor())  # polygon: corner index
    turn = which / sides[:, None] * 2 * math.pi + _uniform((count, 1), 0, 2 * math.pi, generator, device)
    radius = _uniform((count, 1), 7, 11, generator, device)
    radius = torch.where(star[:, None] & (step % 2 == 1), radius * 0.4, radius)
    points = 14 + radius[..., None] * torch.stack([turn.cos(), turn.sin()], -1)
    segments = torch.stack([points[:, :-1], points[:, 1:]], 2)
    return render(segments, _widths(count, generator, device))


def polygons(count, generator, device):
    """Closed outlines of 3 to 8 corners at uneven angles and radii, half of them crossed by a stroke or two: the
    regular shapes' kin, of more forms."""
    corners = 8
    sides = torch.randint(3, corners + 1, (count, 1), generator=generator, device=device)
    step = torch.arange(corners + 1, device=device)
    angle = (step + _uniform((count, corners + 1), -0.3, 0.3, generator, device)) / sides * 2 * math.pi
    radius = _uniform((count, corners + 1), 0.5, 1.0, generator, device) * 10
    closing = step == sides  # the last corner is the first again
    angle = torch.where(closing, angle[:, :1] + 2 * math.pi, angle)
    radius = torch.where(closing, radius[:, :1], radius)
    points = radius[..., None] * torch.stack([angle.cos(), angle.sin()], -1)
    segments = torch.stack([points[:, :-1], points[:, 1:]], 2)
    segments = segments.masked_fill(~(step[:-1] < sides)[..., None, None], FAR)
    across = _uniform((count, 2, 2, 2), -11, 11, generator, device)
    crossed = torch.randint(1, 3, (count, 1), generator=generator, device=device) * (
        torch.rand(count, 1, generator=generator, device=device) < 0.5
    )
    across = across.masked_fill(~(torch.arange(2, device=device) < crossed)[..., None, None], FAR)
    return render(torch.cat([segments, across], 1) + 14, _widths(count, generator, device))


def letters(count, generator, device):
    """Letters in FONTS, drawn at random."""
    bank = letter_bank().to(device)
    return bank[torch.randint(0, len(bank), (count,), generator=generator, device=device)]


@cache
def letter_bank():
    """Every letter of nondigits.LETTERS in every font of FONTS, prepared as predict prepares an upload:
    (N, 1, 28, 28)."""
    import matplotlib
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from nondigits import LETTERS
    from predict import prepare

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    canvas_side = 64
    images = []
    for name in FONTS:
        font = ImageFont.truetype(str(folder / name), size=canvas_side * 3 // 4)
        for character in LETTERS:
            canvas = Image.new("L", (canvas_side, canvas_side), 0)
            ImageDraw.Draw(canvas).text((canvas_side / 2, canvas_side / 2), character, fill=255, font=font, anchor="mm")
            images.append(prepare(np.asarray(canvas, dtype=np.float32) / 255))
    return torch.stack(images)[:, None]


def _widths(count, generator, device):
    return _uniform((count, 1), 1.5, 3.0, generator, device)


def fitted(segments):
    """The segments scaled and moved so that the drawing's box is 20 pixels on its longer side, at the centre."""
    used = (segments > FAR / 2).all(-1, keepdim=True)  # (N, S, 2, 1)
    low = torch.where(used, segments, math.inf).amin((1, 2), keepdim=True)
    high = torch.where(used, segments, -math.inf).amax((1, 2), keepdim=True)
    scale = 20 / (high - low).amax(-1, keepdim=True).clamp(min=1)
    placed = (segments - (low + high) / 2) * scale + (SIDE - 1) / 2
    return torch.where(used, placed, segments)


def render(segments, widths):
    """Anti-aliased strokes of widths (N, 1) pixels, segments (N, S, 2 ends, xy) fitted in a 20x20 box at the
    centre, as MNIST's digits and predict's uploads are (a far-off segment is none): ink (N, 1, 28, 28) in 0..1."""
    segments = fitted(segments)
    coordinates = torch.arange(SIDE, device=segments.device, dtype=segments.dtype)
    x, y = coordinates.repeat(SIDE), coordinates.repeat_interleave(SIDE)  # each pixel's, row by row
    ax, ay, bx, by = segments.flatten(2).unsqueeze(-1).unbind(2)  # (N, S, 1) each: the ends' coordinates
    dx, dy = bx - ax, by - ay
    px, py = x - ax, y - ay  # (N, S, pixels): from each stroke's start to each pixel
    # In place where a temporary of N x S x pixels would be made: the same numbers, a third of the time.
    along = (px * dx).add_(py * dy).div_((dx * dx + dy * dy).clamp(min=1e-6)).clamp_(0, 1)
    squared = px.sub_(along * dx).pow_(2).add_(py.sub_(along.mul_(dy)).pow_(2)).amin(1)  # to the nearest stroke
    ink = (widths / 2 + 0.5 - squared.sqrt()).clamp(0, 1)
    return ink.reshape(-1, 1, SIDE, SIDE)
