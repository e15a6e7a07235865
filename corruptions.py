"""The corruption suite: MNIST-C's 15 corruptions at the paper's severities, and four that users' images bring.

MNIST-C (Mu and Gilmer, 2019; google-research/mnist-c, corruptions.py) is the reference for what each
corruption does and how strong it is. This is our own code for the same operations, batched with tensor
ops; docs/robustness.md names each place where it differs from the reference, and why. Every corruption
takes and returns images on the 0..1 scale, shape (N, 1, 28, 28), and draws its randomness from a generator
seeded by the suite's seed and the corruption's name, so the same seed gives the same images anywhere.
"""

import hashlib
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from checkpoint import OutputError, atomic_write
from config import SUITE_SEED
from data import neighbourhood_max, pixels

SIDE = 28
# Part of every cached suite's name: bump it whenever a corruption's output changes, so that no run
# reads images made by the code before the change.
SUITE_VERSION = 1
CENTRE = (SIDE - 1) / 2  # the pixel the reference's affine corruptions keep fixed
PLASMA_SIZE = 256  # side of the reference's fog height map


# --- Helpers --------------------------------------------------------------------------------------


def uniform(n, low, high, generator):
    return torch.rand(n, generator=generator) * (high - low) + low


def random_integers(n, low, high, generator):
    """Integers in [low, high), like numpy's randint."""
    return torch.randint(low, high, (n,), generator=generator)


def random_signs(n, generator):
    return random_integers(n, 0, 2, generator) * 2 - 1


def gaussian_blur(x, sigma):
    """scikit-image's `gaussian`: a kernel truncated at 4 sigma, edges extended ('nearest')."""
    radius = int(4 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    x = F.pad(x, (radius,) * 4, mode="replicate")
    # The images as the channels of one: a grouped convolution is 20 times faster on a CPU than a batch of
    # one-channel images, and gives the same numbers.
    n, height, width = len(x), *x.shape[-2:]
    channels = x.reshape(1, n, height, width)
    channels = F.conv2d(channels, kernel.view(1, 1, 1, -1).expand(n, 1, 1, -1), groups=n)
    channels = F.conv2d(channels, kernel.view(1, 1, -1, 1).expand(n, 1, -1, 1), groups=n)
    return channels.reshape(n, 1, *channels.shape[-2:])


def warp(x, matrix, shift=None, padding="zeros"):
    """Sample each output pixel p at matrix @ (p - centre) + centre + shift (pixels, x then y), bilinearly.

    This is scikit-image's `warp` with an inverse map, as the reference uses it: areas from outside
    the image are background.
    """
    n = len(x)
    theta = torch.zeros(n, 2, 3)
    theta[:, :, :2] = matrix
    if shift is not None:
        theta[:, :, 2] = shift * 2 / (SIDE - 1)  # align_corners=True: pixel centres 0..27 span -1..1
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=True)


def _rotation_matrices(angle):
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)


def line_from_points(c0, r0, c1, r1):
    """The reference's anti-aliased line between (column, row) points, one per image: (N, 1, 28, 28).

    Its distance is vertical, not perpendicular, and it covers columns floor(c0) to ceil(c1) - 1.
    """
    columns = torch.arange(SIDE, dtype=torch.float32).view(1, 1, SIDE)
    rows = torch.arange(SIDE, dtype=torch.float32).view(1, SIDE, 1)
    c0, r0, c1, r1 = (v.float().view(-1, 1, 1) for v in (c0, r0, c1, r1))
    slope = (r1 - r0) / (c1 - c0)
    distance = (rows - (slope * (columns - c0) + r0)).abs().clamp(0, 2.3 - 1e-6)
    line = (torch.log(1 - distance / 2.3) + 1).clamp(0, 1)
    inside = (columns >= torch.floor(c0)) & (columns < torch.ceil(c1))
    return (line * inside * (c1 != c0)).unsqueeze(1)


def plasma_fractal(n, generator, decay, mapsize=PLASMA_SIZE):
    """The reference's diamond-square height map, one per image, normalised to 0..1: (n, mapsize, mapsize)."""
    heights = torch.zeros(n, mapsize, mapsize)
    step, wibble = mapsize, 100.0

    def wibbled_mean(total):
        # The reference draws uniform(-wibble, wibble) and multiplies by wibble again: kept as it is.
        return total / 4 + wibble * uniform(total.shape, -wibble, wibble, generator)

    while step >= 2:
        half = step // 2
        corners = heights[:, ::step, ::step]
        squares = corners + corners.roll(-1, 1)
        heights[:, half::step, half::step] = wibbled_mean(squares + squares.roll(-1, 2))
        centres, corners = heights[:, half::step, half::step], heights[:, ::step, ::step]
        heights[:, ::step, half::step] = wibbled_mean(centres + centres.roll(1, 1) + corners + corners.roll(-1, 2))
        heights[:, half::step, ::step] = wibbled_mean(centres + centres.roll(1, 2) + corners + corners.roll(-1, 1))
        step //= 2
        wibble /= decay
    flat = heights.flatten(1)
    low, high = flat.min(1).values.view(-1, 1, 1), flat.max(1).values.view(-1, 1, 1)
    return (heights - low) / (high - low)


# --- MNIST-C, at the severities its dataset uses --------------------------------------------------


def shot_noise(x, generator):
    photons = 3  # severity 5
    return torch.poisson(x * photons, generator=generator) / photons


def impulse_noise(x, generator):
    amount = 0.17  # severity 4: the fraction of pixels set to black or white
    flipped = torch.rand(x.shape, generator=generator) < amount
    salt = torch.rand(x.shape, generator=generator) < 0.5
    return torch.where(flipped, salt.float(), x)


def glass_blur(x, generator):
    sigma, max_delta, iterations = 0.7, 1, 2  # severity 1
    pixels = (gaussian_blur(x, sigma) * 255).floor().flatten(1).numpy()  # the reference shuffles 8-bit pixels
    n, images = len(pixels), np.arange(len(pixels))
    positions = [(h, w) for h in range(SIDE - max_delta, max_delta, -1) for w in range(SIDE - max_delta, max_delta, -1)]
    # Each pixel, in the reference's order, swaps with a random neighbour in half of the images.
    # numpy's randint(-d, d) excludes d, so the neighbour is always up or left: kept as it is.
    swaps = torch.randint(0, 2, (iterations, len(positions), n), generator=generator).bool().numpy()
    shifts = torch.randint(-max_delta, max_delta, (iterations, len(positions), 2, n), generator=generator).numpy()
    for swap_at, shift_at in zip(swaps, shifts, strict=True):
        for (h, w), swap, (dx, dy) in zip(positions, swap_at, shift_at, strict=True):
            here, neighbour = h * SIDE + w, (h + dy) * SIDE + w + dx
            mine, theirs = pixels[:, here].copy(), pixels[images, neighbour]
            pixels[:, here] = np.where(swap, theirs, mine)
            pixels[images, neighbour] = np.where(swap, mine, theirs)
    return gaussian_blur(torch.from_numpy(pixels).view(-1, 1, SIDE, SIDE) / 255, sigma)


def motion_blur(x, generator):
    radius, sigma = 10, 3  # severity 1
    angle = torch.deg2rad(uniform(len(x), -45, 45, generator))
    weights = torch.exp(-(torch.arange(radius + 1.0) ** 2) / (2 * sigma**2))
    weights /= weights.sum()
    identity = torch.eye(2).expand(len(x), 2, 2)
    blurred = torch.zeros_like(x)
    for i, weight in enumerate(weights):
        # ImageMagick's motion blur averages the pixels behind each one along the angle, at whole-pixel offsets.
        shift = torch.stack([torch.cos(angle), torch.sin(angle)], 1).mul(i).round()
        blurred += weight * warp(x, identity, shift, padding="border")
    return blurred


def shear(x, generator):
    amount = 0.4 * random_signs(len(x), generator)  # severity 2, either direction
    matrix = torch.zeros(len(x), 2, 2)
    matrix[:, 0, 0] = 1
    matrix[:, 0, 1] = -torch.sin(amount)
    matrix[:, 1, 1] = torch.cos(amount)
    return warp(x, matrix)


def scale(x, generator):
    factor = 1 / 0.7  # severity 3: the digit shrinks to 70 %
    return warp(x, torch.eye(2).expand(len(x), 2, 2) * factor)


def rotate(x, generator):
    return warp(x, _rotation_matrices(0.4 * random_signs(len(x), generator)))  # severity 2: 0.4 rad


def brightness(x, generator):
    return x + 0.5  # severity 5: +0.5 on HSV's value, which for grey pixels is the pixel itself


def translate(x, generator):
    pixels = 3  # severity 3, in each axis, each in a random direction
    shift = torch.stack([random_signs(len(x), generator), random_signs(len(x), generator)], 1) * pixels
    return warp(x, torch.eye(2).expand(len(x), 2, 2), shift)


def stripe(x, generator):
    x = x.clone()
    x[..., :7] = 1 - x[..., :7]
    x[..., 21:] = 1 - x[..., 21:]
    return x


def fog(x, generator):
    strength, decay = 3.0, 1.4  # severity 5
    brightest = x.flatten(1).max(1).values.view(-1, 1, 1, 1)
    # The reference makes a 256x256 map per image and keeps its top-left 28x28; each map here gives
    # its 9x9 tiles of 28x28 to 81 images, so that the suite is made in a second rather than in 20.
    tiles_per_side = PLASMA_SIZE // SIDE
    maps = plasma_fractal(-(-len(x) // tiles_per_side**2), generator, decay)
    tiles = maps[:, : tiles_per_side * SIDE, : tiles_per_side * SIDE].unfold(1, SIDE, SIDE).unfold(2, SIDE, SIDE)
    plasma = tiles.reshape(-1, 1, SIDE, SIDE)[: len(x)]
    return (x + strength * plasma) * brightest / (brightest + strength)


def spatter(x, generator):
    mean, std, sigma, threshold, mask_sigma = 0.65, 0.3, 1, 0.65, 1.5  # severity 4
    liquid = gaussian_blur(torch.randn(x.shape, generator=generator) * std + mean, sigma)
    mask = gaussian_blur((liquid > threshold).float(), mask_sigma)
    mask = torch.where(mask < 0.8, 0.0, mask)
    return x * (1 - mask) + 63 / 255 * mask


def dotted_line(x, generator):
    n = len(x)
    r0, r1 = random_integers(n, 0, SIDE - 1, generator), random_integers(n, 0, SIDE - 1, generator)
    line = line_from_points(torch.zeros(n), r0, torch.full((n,), SIDE - 1.0), r1)
    dashes = (torch.arange(SIDE) // 2) % 2 == 1  # columns 2-3, 6-7, ...: the reference's dots
    return x + line * dashes


def zigzag(x, generator):
    n, length, width, start, end = len(x), 2.0, 2.0, 2, 25
    r0 = random_integers(n, 0, SIDE - 1, generator).float()
    r1 = r0 + random_integers(n, -5, 5, generator)
    theta = torch.atan((r1 - r0) / (end - start))
    straight = (end - start) / torch.cos(theta)
    # For |r1 - r0| <= 5 the reference always makes 6 teeth and a short last segment.
    teeth = [((2 * i + 1) * length, (-1) ** i * width) for i in range(6)]
    last_row = teeth[-1][1]
    whole = 2 * length * torch.floor(straight / (2 * length))
    columns = torch.stack([torch.zeros(n), *(torch.full((n,), c) for c, _ in teeth), straight], 1)
    rows = torch.stack(
        [torch.zeros(n), *(torch.full((n,), r) for _, r in teeth), last_row / (2 * (straight - whole))], 1
    )
    cos, sin = torch.cos(theta).view(-1, 1), torch.sin(theta).view(-1, 1)
    cs, rs = cos * columns - sin * rows + start, sin * columns + cos * rows + r0.view(-1, 1)
    for i in range(1, cs.shape[1]):
        x = x + line_from_points(cs[:, i - 1], rs[:, i - 1], cs[:, i], rs[:, i])
    return x


def canny_edges(x, generator):
    from edges import canny  # scikit-image's, a stack at a time

    return torch.from_numpy(canny(x[:, 0].numpy().astype(np.float64))).float().unsqueeze(1)


# --- What users' images bring and MNIST-C lacks ----------------------------------------------------


def thick_strokes(x, generator):
    return neighbourhood_max(x)  # grey dilation: the ink grows by a pixel each side


def thin_strokes(x, generator):
    # Grey erosion by a plus-shaped element: a 3x3 square erases MNIST's two-pixel strokes outright.
    padded = F.pad(x, (1, 1, 1, 1))
    neighbours = [padded[..., 1:-1, 1:-1], padded[..., :-2, 1:-1], padded[..., 2:, 1:-1]]
    neighbours += [padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]]
    return torch.stack(neighbours).min(0).values


def low_resolution(size):
    def scan(x, generator):
        small = F.interpolate(x, size=(size, size), mode="area")
        return F.interpolate(small, size=(SIDE, SIDE), mode="bilinear", align_corners=False)

    scan.__name__ = f"low_resolution_{size}"
    return scan


MNIST_C = [
    shot_noise, impulse_noise, glass_blur, motion_blur, shear, scale, rotate, brightness, translate,
    stripe, fog, spatter, dotted_line, zigzag, canny_edges,
]  # fmt: skip
USERS = [thick_strokes, thin_strokes, low_resolution(8), low_resolution(12)]
SUITE = {corruption.__name__: corruption for corruption in MNIST_C + USERS}


def corrupt(images, name, seed=0):
    """images (N, 1, 28, 28) on the 0..1 scale, corrupted by SUITE[name], as 8-bit pixels like MNIST-C's files."""
    # One 32-bit seed per (seed, corruption): the CPU generator keeps only the low 32 bits of its seed.
    generator = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{name}".encode()))
    corrupted = SUITE[name](images.cpu().float(), generator)
    return (corrupted.clamp(0, 1) * 255).round().to(torch.uint8)


def corrupt_all(images, seed=SUITE_SEED, cache_dir=None):
    """{name: corrupted 8-bit images} for the whole suite, in the suite's order.

    With cache_dir, the suite is read from there when an intact copy made from the same images, seed and
    SUITE_VERSION is cached, and otherwise made and cached for the next run.
    """
    if cache_dir is None:
        return {name: corrupt(images, name, seed) for name in SUITE}
    images = images.cpu().float().contiguous()
    digest = hashlib.sha256(images.numpy().tobytes()).hexdigest()[:32]
    path = Path(cache_dir) / f"suite-v{SUITE_VERSION}-seed{seed}-{len(images)}-{digest}.bin"
    suite = read_cached_suite(path, len(images))
    if suite is None:
        suite = corrupt_all(images, seed)
        write_cached_suite(path, suite)
    return suite


def read_cached_suite(path, count):
    """The suite cached at path, or None if there is none or it is damaged (a damaged file is not trusted)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        print(f"warning: cannot read the cached suite {path} ({error.strerror}); making it anew", file=sys.stderr)
        return None
    body, checksum = data[:-32], data[-32:]
    if len(body) != len(SUITE) * count * SIDE * SIDE or hashlib.sha256(body).digest() != checksum:
        print(f"warning: the cached suite {path} is damaged; making it anew", file=sys.stderr)
        return None
    images = torch.frombuffer(bytearray(body), dtype=torch.uint8).view(len(SUITE), count, 1, SIDE, SIDE)
    return dict(zip(SUITE, images, strict=True))


def write_cached_suite(path, suite):
    """The suite's bytes then their SHA-256, written atomically: concurrent runs each write a whole file."""
    body = b"".join(images.numpy().tobytes() for images in suite.values())
    try:
        atomic_write(path, lambda temporary: Path(temporary).write_bytes(body + hashlib.sha256(body).digest()))
    except OutputError as error:  # a read-only or full cache folder costs the next run time, not this run
        print(f"warning: cannot cache the corruption suite: {error}", file=sys.stderr)
    except OSError as error:
        print(f"warning: cannot cache the corruption suite in {Path(path).parent} ({error.strerror})", file=sys.stderr)


# --- A model under the suite ----------------------------------------------------------------------


def corrupted_test_set(images, seed=SUITE_SEED, cache_dir=None):
    """{corruption: 8-bit images} of the normalised images, corrupted once, to evaluate any number of models."""
    return corrupt_all(pixels(images), seed, cache_dir)


def labelled_suite(images, labels, cache_dir=None, count=None):
    """(the suite of the first count images, all by default; their labels): what evaluate_robustness scores."""
    return corrupted_test_set(images[:count].cpu(), SUITE_SEED, cache_dir), labels[:count]
