"""scikit-image's Canny edge detector at its defaults, on a stack of images in one call.

`skimage.feature.canny` takes one image a call, and for 28x28 digits the overhead of each call is most of its
cost; here each step runs once on the whole stack. Each step is the one canny takes, in the same order and
precision, so the edges are the same pixel for pixel (tests/test_edges.py holds them to scikit-image's).
"""

import numpy as np
from scipy import ndimage as ndi

SIGMA = 1.0
# canny's default thresholds on the gradient's magnitude. It hands the low one to its suppression step as a
# C float, so that comparison is made against the float32 nearest to 0.1.
LOW_THRESHOLD = float(np.float32(0.1))
HIGH_THRESHOLD = 0.2
CHUNK = 500  # images a pass: larger stacks fall out of the CPU's cache and run slower per image


def canny(images):
    """(N, H, W) float64 images on the 0..1 scale -> (N, H, W) bool edges, as canny(image) gives each image."""
    return np.concatenate([canny_stack(images[i : i + CHUNK]) for i in range(0, len(images), CHUNK)])


def canny_stack(images):
    # Smoothing with zeros beyond the border, divided by the same blur of ones: canny's "bleed-over" correction.
    blur = {"mode": "constant", "cval": 0.0, "truncate": 4.0}
    smoothed = ndi.gaussian_filter(images, (0, SIGMA, SIGMA), **blur)
    smoothed /= ndi.gaussian_filter(np.ones(images.shape[1:]), SIGMA, **blur) + np.finfo(np.float64).eps
    rows, columns = sobel(smoothed, 1), sobel(smoothed, 2)
    magnitude = rows * rows
    magnitude += columns * columns
    np.sqrt(magnitude, out=magnitude)
    kept = suppress_non_maxima(rows, columns, magnitude)
    return hysteresis(kept)


def sobel(images, axis):
    """ndimage's sobel along axis (1 or 2) of each image: a derivative along it, smoothing along the other only."""
    gradient = ndi.correlate1d(images, [-1, 0, 1], axis, mode="reflect")
    return ndi.correlate1d(gradient, [1, 2, 1], 3 - axis, gradient, mode="reflect")


def suppress_non_maxima(rows, columns, magnitude):
    """The magnitude where it is at least the low threshold and no less than its two neighbours across the edge
    (interpolated between the pixels on either side of the gradient's direction), else 0; the border is 0."""
    inner = slice(1, -1)
    up, down = slice(None, -2), slice(2, None)  # the neighbour one row (or column) before, and after
    r, c, m = rows[:, inner, inner], columns[:, inner, inner], magnitude[:, inner, inner]
    abs_r, abs_c = np.abs(r), np.abs(c)
    same_sign = (r <= 0) == (c <= 0)
    rows_first = np.where(same_sign, abs_r > abs_c, abs_r >= abs_c)  # the gradient nearer the row axis

    def neighbour(row, column):
        return magnitude[:, row, column]

    def pick(same_rows, same_columns, other_rows, other_columns):
        return np.where(same_sign, np.where(rows_first, same_rows, same_columns),
                        np.where(rows_first, other_rows, other_columns))  # fmt: skip

    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 only where the magnitude is 0, never kept
        weight = np.where(rows_first, abs_c / abs_r, abs_r / abs_c)
    ahead = pick(neighbour(down, inner), neighbour(inner, down), neighbour(up, inner), neighbour(inner, down))
    ahead_diagonal = np.where(same_sign, neighbour(down, down), neighbour(up, down))
    behind = pick(neighbour(up, inner), neighbour(inner, up), neighbour(down, inner), neighbour(inner, up))
    behind_diagonal = np.where(same_sign, neighbour(up, up), neighbour(down, up))
    keep = m >= LOW_THRESHOLD
    keep &= ahead_diagonal * weight + ahead * (1.0 - weight) <= m
    keep &= behind_diagonal * weight + behind * (1.0 - weight) <= m
    kept = np.zeros_like(magnitude)
    kept[:, inner, inner] = np.where(keep, m, 0.0)
    return kept


def hysteresis(kept):
    """The pixels of each 8-connected group of kept pixels that holds one at least the high threshold."""
    within_an_image = np.zeros((3, 3, 3), bool)
    within_an_image[1] = True
    edges = kept > 0
    groups, count = ndi.label(edges, within_an_image)
    strong = np.zeros(count + 1, bool)
    strong[np.unique(groups[edges & (kept >= HIGH_THRESHOLD)])] = True
    return strong[groups]
