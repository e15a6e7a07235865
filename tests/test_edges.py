"""edges.py: the batched Canny gives scikit-image's edges pixel for pixel, on digits and on what is not."""

import numpy as np
from skimage.feature import canny as library_canny

from data import pixels
from edges import CHUNK, canny


def test_batched_canny_gives_scikit_images_edges(mnist):
    digits = pixels(mnist["eval"][0][: CHUNK + 100]).numpy()[:, 0].astype(np.float64)  # two passes
    noise = np.random.default_rng(0).random((100, 28, 28))
    images = np.concatenate([
        digits,
        noise,  # gradients in every direction, many ties between neighbours
        (noise > 0.7).astype(np.float64),  # flat areas: 0/0 in the interpolation's weight
        digits[:100] * 0.05,  # faint: nothing over the thresholds
        np.zeros((1, 28, 28)),
        np.ones((1, 28, 28)),
    ])  # fmt: skip
    expected = np.stack([library_canny(image) for image in images])
    edges = canny(images.copy())
    assert edges.dtype == bool and edges.shape == images.shape
    assert np.array_equal(edges, expected), f"{(edges != expected).sum()} pixels differ"
    assert 0.01 < expected[: len(digits)].mean() < 0.5  # digits have edges: the check compares something
