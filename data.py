"""MNIST held as tensors in memory, and per-batch augmentation done with tensor ops."""

import contextlib
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from config import MAX_NOISE, VALIDATION_SEED, VALIDATION_SIZE
from errors import InputError

MEAN, STD = 0.1307, 0.3081  # training-set pixel statistics, on the 0..1 scale
RAW_FILES = {  # split -> (images, labels), as torchvision keeps them in DIR/MNIST/raw
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# MNIST's images per split: a file of another count is the other split's (a run would train on the test digits and
# report its accuracy on them as a test) or another dataset's.
SPLIT_SIZES = {"train": 60_000, "test": 10_000}


class DataError(InputError):
    """The data is missing or unusable; the message says which file and what to do."""


def raw_folder(data_dir):
    return Path(data_dir) / "MNIST" / "raw"


def missing_files(data_dir, splits=tuple(RAW_FILES)):
    """The files of these splits that DIR/MNIST/raw lacks, split by split."""
    folder = raw_folder(data_dir)
    return [name for split in splits for name in RAW_FILES[split] if not (folder / name).is_file()]


def load_split(data_dir, split):
    """Images as normalised float (N, 1, 28, 28) and labels as int64 (N,), read from DIR/MNIST/raw.

    Downloads the four files into DIR only when one of this split's is missing, so a read-only folder
    that holds them is never written to, and reading the training split never opens the test files.
    """
    folder = raw_folder(data_dir)
    if missing_files(data_dir, [split]):
        refuse_a_folder_below(data_dir, split)
        _download(data_dir)
    image_path, label_path = (folder / name for name in RAW_FILES[split])
    images = read_idx(image_path, dimensions=3)
    labels = read_idx(label_path, dimensions=1)
    if tuple(images.shape[1:]) != (28, 28):
        raise DataError(f"{image_path} holds images of shape {tuple(images.shape[1:])}, not 28x28")
    if len(images) != len(labels):
        raise DataError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels")
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) <= 9:
        raise DataError(f"{label_path} holds labels outside 0..9")
    if len(images) != SPLIT_SIZES[split]:
        raise DataError(
            f"{image_path} holds {len(images):,} images where MNIST's {split} split has {SPLIT_SIZES[split]:,}: "
            "the other split's file, or another dataset's; put MNIST's own there"
        )
    return normalize(images), labels.long()


def refuse_a_folder_below(data_dir, split):
    """A data folder that names MNIST/raw itself, or MNIST, where it should name the folder holding MNIST/raw: the
    download would put a second copy inside the first (a read-only or shared copy included). Refused, with the
    folder meant."""
    given = Path(os.path.realpath(data_dir))  # resolve raises on a loop of symbolic links; realpath gives it back
    for holder, meant in ((given, given.parent.parent), (given / "raw", given.parent)):
        if raw_folder(meant) == holder and all((holder / name).is_file() for name in RAW_FILES[split]):
            raise DataError(
                f"{data_dir} lies inside the data folder: {holder} holds MNIST's files, and the data folder is the "
                f"one that holds MNIST/raw, {meant}"
            )


def validation_split(images, labels):
    """(training images, labels), (validation images, labels): a fixed VALIDATION_SIZE held out of the training set."""
    if len(images) <= VALIDATION_SIZE:
        raise DataError(
            f"--validation holds out {VALIDATION_SIZE:,} training images, and the training set has only {len(images):,}"
        )
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(VALIDATION_SEED)).to(images.device)
    held_out, kept = order[:VALIDATION_SIZE], order[VALIDATION_SIZE:]
    return (images[kept], labels[kept]), (images[held_out], labels[held_out])


def _download(data_dir):
    # torchvision only here: it knows the mirrors and checks the MD5s, and takes over a second to import.
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import check_integrity

    folder = raw_folder(data_dir)
    missing = ", ".join(missing_files(data_dir))
    created = [path for path in (folder, *folder.parents) if not path.exists()]  # deepest first
    try:
        MNIST(str(data_dir), download=True)
    except Exception as error:  # noqa: BLE001  a download fails in many ways (network, proxy, disk, checksum)
        for path in created:  # a mistyped --data-dir is left as it was; a folder holding a file is kept
            with contextlib.suppress(OSError):
                path.rmdir()
        # An interrupted download leaves a short archive, which torchvision fetches again rather than unpack.
        damaged = [
            name
            for name, md5 in MNIST.resources
            if (folder / name).is_file() and not check_integrity(folder / name, md5)
        ]
        raise DataError(
            f"MNIST not found: {missing} belong in {folder}, and downloading them failed ({_last_line(error)})"
            + (f"; damaged there (not MNIST's MD5), to delete: {', '.join(damaged)}" if damaged else "")
        ) from None


def read_idx(path, dimensions):
    """An IDX file of unsigned bytes (MNIST's format) as a uint8 tensor.

    The format is a big-endian header, magic number 0x0800 + dimensions then one 32-bit size per
    dimension, followed by the raw bytes.
    """
    data = Path(path).read_bytes()
    header = 4 * (1 + dimensions)
    if len(data) < header or int.from_bytes(data[:4], "big") != 0x0800 + dimensions:
        raise DataError(f"{path} is truncated or corrupt (not an IDX file of {dimensions}-dimensional bytes)")
    shape = [int.from_bytes(data[i : i + 4], "big") for i in range(4, header, 4)]
    if len(data) - header != math.prod(shape):
        raise DataError(
            f"{path} is truncated or corrupt ({len(data) - header:,} bytes of data where its header "
            f"promises {math.prod(shape):,})"
        )
    if not math.prod(shape):
        raise DataError(f"{path} is empty: its header gives a size of {' x '.join(map(str, shape))}")
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(shape)


def _last_line(error):
    text = str(error).strip()
    return text.splitlines()[-1] if text else "no details"


def normalize(images):
    """uint8 (N, 28, 28) or (N, 1, 28, 28) pixels -> float (N, 1, 28, 28) with the MNIST mean and std."""
    # One copy, then in place: three temporaries of the whole set took three times as long.
    return images.to(torch.float32, copy=True).div_(255).sub_(MEAN).div_(STD).reshape(-1, 1, 28, 28)


def pixels(images):
    """Normalised images back on the 0..1 pixel scale."""
    return (images * STD + MEAN).clamp(0, 1)


def augment(images, aug, generator=None):
    """One batched step: stroke-width and resolution jitter, then rotation, shift and zoom, then noise."""
    if aug.stroke:
        images = stroke_jitter(images, aug.stroke, generator)
    if aug.resolution:
        images = resolution_jitter(images, aug.resolution, generator)
    images = random_affine(images, aug, generator)
    if aug.noise:
        images = additive_noise(images, aug.noise, generator)
    return images


def _per_image(images, generator):
    """One uniform 0..1 number per image, shaped to broadcast over its pixels."""
    return torch.rand(len(images), 1, 1, 1, device=images.device, generator=generator)


def stroke_jitter(images, fraction, generator):
    """Grow (grey dilation) or shrink (grey erosion) the ink of a fraction of the images by up to a pixel."""
    grown, shrunk = neighbourhood_max(images), -neighbourhood_max(-images)
    target = torch.where(_per_image(images, generator) < 0.5, grown, shrunk)
    changed = images + _per_image(images, generator) * (target - images)
    return torch.where(_per_image(images, generator) < fraction, changed, images)


def neighbourhood_max(images):
    """Each pixel's maximum over its 3x3 neighbourhood: F.max_pool2d(images, 3, 1, 1), exactly, in a sixth of
    the time on a CPU (a row maximum, then a column maximum, of shifted views)."""
    padded = F.pad(images, (1, 1, 1, 1), value=-math.inf)
    rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def resolution_jitter(images, fraction, generator):
    """Scan a fraction of the images at a lower resolution (one random size per batch), then scale them back up.

    Only the chosen images are rescanned (each is on its own, so they come out the same as in a whole batch):
    the default recipe picks 2 % of them.
    """
    size = int(torch.randint(7, 17, (1,), device=images.device, generator=generator))
    chosen = (_per_image(images, generator) < fraction).flatten()
    if not chosen.any():
        return images
    small = F.interpolate(images[chosen], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    images = images.clone()
    images[chosen] = F.interpolate(small, size=images.shape[-2:], mode="bicubic", align_corners=False)
    return images


def additive_noise(images, fraction, generator):
    """Add Gaussian noise to a fraction of the images, each with a std drawn up to MAX_NOISE of the pixel range."""
    strength = _per_image(images, generator) * MAX_NOISE / STD  # images are normalised: a pixel range spans 1 / STD
    noisy = images + torch.randn(images.shape, device=images.device, generator=generator) * strength
    return torch.where(_per_image(images, generator) < fraction, noisy, images)


def random_affine(images, aug, generator=None):
    """Rotate, shift and zoom each image of a batch by its own random amounts, in one grid_sample."""
    n, device = len(images), images.device

    def uniform(limit):
        return (torch.rand(n, device=device, generator=generator) * 2 - 1) * limit

    angle = uniform(math.radians(aug.degrees))
    zoom = 1 + uniform(aug.scale)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    shift_x, shift_y = uniform(2 * aug.translate), uniform(2 * aug.translate)  # grid coordinates span 2
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # MNIST's border pixels are all background, so "border" fills uncovered areas with background.
    return F.grid_sample(images, grid, padding_mode="border", align_corners=False)
