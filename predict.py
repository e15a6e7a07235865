"""Predict the digits in a user's own image files, prepared the way MNIST itself was made.

MNIST digits are white on black, scaled to fit 20x20 with their aspect ratio kept, and placed in
28x28 with their centre of mass at the centre. `prepare` does the same to any PNG, JPEG or BMP:
colour or grey, 8- or 16-bit, palette or alpha, ink on paper or light on dark.

torch is imported where it is used, not at the top: `predict --help` answers without loading it.
"""

import json
import os
import sys
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cli import add_json_option, add_min_confidence_option, add_model_option, add_views_option
from config import MIN_CONFIDENCE

MAX_PIXELS = 50_000_000  # larger images are refused from their header, before any pixel is read
# The formats the project names and opens: Pillow knows about 40 (WebP, ICO, EPS through Ghostscript, ...), some
# of which decode far more than their header says, or run other programs.
FORMATS = ("PNG", "JPEG", "BMP")
MIN_CONTRAST = 0.1  # ink must differ from the background by this much (0..1 scale), else it is blank
INK_THRESHOLD = 0.2  # pixels above this (after removing the background) bound the digit's box
WORKING_SIDE = 1024  # larger images are shrunk to this right after decoding: a 28x28 digit needs no more
# Where MNIST's digits have their centre of mass, in pixel indices of the 28x28 grid: row and column 14 (the test set's
# mean 13.99 and 14.01, spread +/- 0.29, a whole-pixel shift's), not the grid's middle, 13.5, where digits lie half a
# pixel up and left of those the model learnt from: 0.05 to 0.14 points fewer read right in each way users draw, up to
# 0.6 more "not sure" (docs/model.md).
MNIST_CENTRE = 14.0
MOSTLY_TRANSPARENT = 0.5  # fraction of see-through pixels above which opacity, not colour, is the drawing


def add_arguments(parser):
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files, any size, colour or grey")
    add_model_option(parser)
    add_views_option(parser)
    add_min_confidence_option(parser)
    add_json_option(parser)


def run(args):
    from checkpoint import load_model

    model = load_model(args.model, args.views)
    results = []
    for result in predict_files(model, args.images, args.min_confidence):  # each answer as soon as it is made
        results.append(result)
        if not args.json:
            print(format_result(result), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    failed = sum("error" in result for result in results)
    if failed:
        print(f"{failed} of {len(results)} files could not be predicted", file=sys.stderr)
        return 1
    return 0


class ImageError(Exception):
    """This file cannot be predicted; the message says why. Its subclasses say which way it failed."""


class NotAnImage(ImageError):
    """Not in a format PIL reads."""


class TooManyPixels(ImageError):
    """Over MAX_PIXELS."""


class BlankImage(ImageError):
    """No ink on the background."""


def read_ink(source):
    """The image (a path or a binary file object) as a float array in 0..1 where ink is high and the background is 0."""
    if isinstance(source, str | os.PathLike) and not os.path.isfile(source):
        if not os.path.lexists(source):
            raise ImageError("no such file")
        # A folder, a pipe or a device: opening a pipe would wait for a writer for ever.
        raise ImageError("a folder, not an image" if os.path.isdir(source) else "not a regular file")
    try:
        ink = _load_gray_or_alpha(source)
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except UnidentifiedImageError:
        raise NotAnImage(f"not an image in {', '.join(FORMATS[:-1])} or {FORMATS[-1]}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooManyPixels(f"image is over the {MAX_PIXELS // 1_000_000}-megapixel limit") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"unreadable or truncated image ({error})") from None
    background = float(np.median(ink))
    # The ink lies on the side of the background that reaches further from it: dark ink on paper, as people write,
    # reaches down (also on grey paper, in an under-exposed photo), light strokes on a dark screen reach up.
    darker, lighter = background - float(ink.min()), float(ink.max()) - background
    if darker > lighter or (darker == lighter and background > 0.5):
        ink, background = 1 - ink, 1 - background
    contrast = float(ink.max()) - background
    if contrast < MIN_CONTRAST:
        raise BlankImage("no digit found: the image is blank")
    return np.clip((ink - background) / contrast, 0, 1)


def header_pixels(source):
    """Width x height as the image's header says, without decoding it; 0 where predict would not open it."""
    try:
        with Image.open(source, formats=FORMATS) as image:
            return image.width * image.height
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return 0


def _load_gray_or_alpha(source):
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # PIL's own size alarm: refuse, don't warn
        with Image.open(source, formats=FORMATS) as image:
            if image.width * image.height > MAX_PIXELS:
                raise TooManyPixels(
                    f"image is {image.width}x{image.height}, over the {MAX_PIXELS // 1_000_000}-megapixel limit"
                )
            image.draft(image.mode, (WORKING_SIDE, WORKING_SIDE))  # a JPEG decodes at a reduced scale
            # Shrunk first: EXIF's rotation and every conversion after it then copy about a megapixel.
            return _gray_or_alpha(ImageOps.exif_transpose(_shrunk(image)))  # phone photos carry their rotation


def _shrunk(image):
    """The decoded image reduced by a whole factor (box filter) to at most WORKING_SIDE a side, in a mode
    `_gray_or_alpha` reads: the float arrays after it never hold more than about a megapixel. A palette
    image is converted at full size to grey and alpha (2 bytes a pixel), not to RGBA (4)."""
    if image.mode in ("P", "PA"):
        image = image.convert("LA" if _has_transparency(image) else "L")
    elif image.mode == "1":
        image = image.convert("L")
    factor = -(-max(image.size) // WORKING_SIDE)
    if image.mode.startswith("I;16"):  # Pillow reduces no 16-bit mode: a block mean of the pixels, as floats
        pixels = np.asarray(image, dtype=np.uint16)
        return Image.fromarray(_block_mean(pixels, factor).astype(np.int32), mode="I")
    if factor == 1:
        return image
    if image.mode in ("RGBA", "LA"):  # reduce premultiplies a copy at full size: grey and alpha apart cost less
        return Image.merge("LA", [image.convert("L").reduce(factor), image.getchannel("A").reduce(factor)])
    return image.reduce(factor)


def _has_transparency(image):
    return image.mode == "PA" or "transparency" in image.info


def _block_mean(pixels, factor):
    """The mean of each factor x factor block of a 2-D array (the edge's partial blocks dropped, as reduce does
    not), as float32, without a full-size float copy."""
    height, width = (side // factor * factor for side in pixels.shape)
    blocks = pixels[:height, :width].reshape(height // factor, factor, width // factor, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def _gray_or_alpha(image):
    if image.mode in ("RGBA", "LA"):
        alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255
        if (alpha < 0.5).mean() > MOSTLY_TRANSPARENT:  # strokes drawn on a transparent canvas: opacity is the ink
            return alpha
        # An opaque drawing with a few see-through pixels (rounded corners, say): its colours, on white.
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    if image.mode == "I":  # 16-bit greyscale
        return np.clip(np.asarray(image, dtype=np.float32) / 65535, 0, 1)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


def prepare(ink):
    """Crop to the digit, fit it in 20x20 keeping its aspect ratio, its centre of mass where MNIST's lie in 28x28."""
    import torch
    import torch.nn.functional as F

    rows, cols = np.nonzero(ink > INK_THRESHOLD)
    digit = torch.from_numpy(ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].copy())
    height, width = digit.shape
    scale = 20 / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    digit = F.interpolate(digit[None, None], size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0]
    digit = digit.clamp(0, 1)
    total = digit.sum()
    centre_y = (digit.sum(1) * torch.arange(size[0])).sum() / total
    centre_x = (digit.sum(0) * torch.arange(size[1])).sum() / total
    top, left = round(MNIST_CENTRE - centre_y.item()), round(MNIST_CENTRE - centre_x.item())
    canvas = torch.zeros(28, 28)
    top, left = min(max(top, 0), 28 - size[0]), min(max(left, 0), 28 - size[1])
    canvas[top : top + size[0], left : left + size[1]] = digit
    return canvas


def classify(model, source, min_confidence=MIN_CONFIDENCE):
    """The model's reading of one image (a path or a binary file object), and the 28x28 image it saw.

    Returns ({digit, confidence, sure, top3, probabilities}, prepared) with percentages for the numbers and
    prepared on the 0..1 scale; raises ImageError.
    """
    prepared = prepared_image(source)
    return read_digits(model, prepared[None], min_confidence)[0], prepared


def prepared_image(source):
    """The 28x28 image (0..1) the model reads from an image file or binary file object; raises ImageError."""
    return prepare(read_ink(source))


def read_digits(model, prepared, min_confidence=MIN_CONFIDENCE):
    """{digit, confidence, sure, not_a_digit, top3, probabilities} for each of a batch of prepared (N, 28, 28)
    images: calibrated probabilities (the model's temperature); sure false where the "not sure" rule flags the
    answer (calibration.unsure: the confidence below min_confidence %, or not_a_digit: the energy above the
    threshold of a model trained on non-digits)."""
    import torch

    from calibration import calibrated, not_a_digit, unsure
    from data import normalize

    with torch.no_grad():
        logits = model.eval()(normalize(prepared * 255))
    probabilities = calibrated(logits, model.temperature)
    sure = (~unsure(logits, model.temperature, min_confidence, model.energy_threshold)).tolist()
    strange = not_a_digit(logits, model.temperature, model.energy_threshold).tolist()
    results = []
    for row, is_sure, is_strange in zip(probabilities, sure, strange, strict=True):
        top = row.topk(3)
        results.append(
            {
                "digit": int(top.indices[0]),
                "confidence": round(float(top.values[0]) * 100, 2),
                "sure": is_sure,
                "not_a_digit": is_strange,
                "top3": [
                    {"digit": int(d), "probability": round(float(p) * 100, 2)}
                    for d, p in zip(top.indices, top.values, strict=True)
                ],
                "probabilities": [round(p * 100, 2) for p in row.tolist()],
            }
        )
    return results


def predict_files(model, paths, min_confidence=MIN_CONFIDENCE):
    """One result per path, yielded as each is made: {file, digit, confidence, sure, top3, probabilities} or
    {file, error}. A file name that is not valid UTF-8 is shown with its odd bytes escaped (\\xff)."""
    for path in paths:
        name = os.fsencode(path).decode("utf-8", "backslashreplace")
        try:
            result, _ = classify(model, path, min_confidence)
        except ImageError as error:
            yield {"file": name, "error": str(error)}
            continue
        yield {"file": name, **result}


def format_result(result):
    if "error" in result:
        return f"{result['file']}: error: {result['error']}"
    top3 = ", ".join(f"{t['digit']} {t['probability']:.1f}%" for t in result["top3"])
    answer = result["digit"] if result["sure"] else "not a digit?" if result["not_a_digit"] else "not sure"
    return f"{result['file']}: {answer} (confidence {result['confidence']:.1f}%; top 3: {top3})"
