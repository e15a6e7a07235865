"""corruptions.py: the suite is seeded and keeps shape and range; its cache is exact and never trusted blindly."""

import pytest
import torch
import torch.nn.functional as F

from corruptions import SUITE, SUITE_VERSION, corrupt, corrupt_all, gaussian_blur
from data import pixels
from tests.helpers import read_only_folder

UNSEEDED = {
    "scale",
    "brightness",
    "stripe",
    "canny_edges",
    "thick_strokes",
    "thin_strokes",
    "low_resolution_8",
    "low_resolution_12",
}  # fmt: skip  corruptions that draw no random numbers


def test_corruption_suite_is_seeded_and_keeps_shape_and_range(mnist):
    images = pixels(mnist["eval"][0][:64])
    original = (images * 255).round().byte()
    assert len(SUITE) == 19
    for name in SUITE:
        first, again, other = (corrupt(images, name, seed) for seed in (0, 0, 1))
        assert first.dtype == torch.uint8 and first.shape == images.shape, name
        assert torch.equal(first, again), name
        assert (first != original).float().mean() > 0.01, name
        assert torch.equal(first, other) == (name in UNSEEDED), name


@pytest.fixture
def images(mnist):
    return pixels(mnist["eval"][0][:50])


def test_a_cached_suite_equals_a_freshly_built_one_image_for_image(images, tmp_path):
    fresh = corrupt_all(images, 0)
    made = corrupt_all(images, 0, tmp_path)  # made and cached
    (cached_file,) = tmp_path.glob(f"suite-v{SUITE_VERSION}-seed0-50-*.bin")
    read = corrupt_all(images, 0, tmp_path)  # read back
    for suite in (made, read):
        assert list(suite) == list(fresh)
        assert all(torch.equal(suite[name], fresh[name]) for name in fresh)
    assert corrupt_all(images, 1, tmp_path)["shot_noise"].ne(fresh["shot_noise"]).any()  # the seed is in the key
    assert len(list(tmp_path.glob("suite-*.bin"))) == 2 and cached_file.exists()


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "empty"])
def test_a_damaged_cache_file_is_rebuilt_not_trusted(images, tmp_path, capsys, damage):
    fresh = corrupt_all(images, 0, tmp_path)
    (path,) = tmp_path.glob("suite-*.bin")
    data = path.read_bytes()
    middle = len(data) // 2
    path.write_bytes(
        {
            "truncated": data[:middle],
            "flipped byte": data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :],
            "empty": b"",
        }[damage]  # fmt: skip
    )
    rebuilt = corrupt_all(images, 0, tmp_path)
    assert all(torch.equal(rebuilt[name], fresh[name]) for name in fresh)
    assert "damaged; making it anew" in capsys.readouterr().err
    assert path.read_bytes() == data  # rewritten whole


def test_an_unwritable_cache_folder_costs_time_not_the_run(images, tmp_path, capsys):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    suite = corrupt_all(images, 0, blocker / "cache")
    assert len(suite) == 19 and "cannot cache the corruption suite" in capsys.readouterr().err


def test_a_read_only_cache_folder_costs_time_not_the_run(images, tmp_path, capsys):
    """Its temporary cannot be made there: that failed the run, after its training."""
    with read_only_folder(tmp_path / "ro") as folder:
        suite = corrupt_all(images, 0, folder)
        assert len(suite) == 19 and not list(folder.iterdir())
    assert f"cannot cache the corruption suite: cannot write into {folder}" in capsys.readouterr().err


def test_gaussian_blur_is_a_separable_convolution_of_each_image():
    images = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    offsets = torch.arange(-6, 7.0)
    kernel = torch.exp(-(offsets**2) / (2 * 1.5**2))
    kernel /= kernel.sum()
    padded = F.pad(images, (6,) * 4, mode="replicate")
    expected = F.conv2d(F.conv2d(padded, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))
    assert torch.allclose(gaussian_blur(images, 1.5), expected, atol=1e-6)
