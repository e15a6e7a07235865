"""data.py: reading MNIST's files, naming what is wrong with them, never writing to the data folder."""

import struct

import pytest
import torch
import torch.nn.functional as F

from config import VALIDATION_SIZE
from data import DataError, neighbourhood_max, resolution_jitter, validation_split
from tests.helpers import DATA_DIR, assert_one_line_error, snapshot, train_only_data_dir

RAW_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}  # port 9 refuses


def test_a_missing_test_split_is_named_alone(cli, untrained, tmp_path, monkeypatch):
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    result = cli("evaluate", "--model", untrained, "--data-dir", train_only_data_dir(tmp_path))
    assert_one_line_error(result, 2, "MNIST not found: t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte belong in")
    assert "train-" not in result.stderr  # the training files are there


def test_missing_data_offline_names_the_files_and_folder(cli, tmp_path, monkeypatch):
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    result = cli("--dry-run", "--data-dir", tmp_path / "empty", "--out", tmp_path / "m.pth")
    assert_one_line_error(result, 2, *RAW_NAMES, str(tmp_path / "empty" / "MNIST" / "raw"))
    assert not (tmp_path / "m.pth").exists()
    assert not (tmp_path / "empty").exists()  # the failed download leaves no folders behind


@pytest.mark.parametrize("below", ["MNIST/raw", "MNIST"])
def test_a_data_folder_inside_the_one_meant_is_refused_before_any_download(cli, untrained, tmp_path, below):
    """The download would put a second copy inside the first: online, into a shared or read-only copy too."""
    data_dir = tmp_path / "data"
    (data_dir / "MNIST" / "raw").mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (data_dir / "MNIST" / "raw" / name).symlink_to(DATA_DIR / "MNIST" / "raw" / name)
    before = snapshot(data_dir)
    result = cli("evaluate", "--model", untrained, "--data-dir", data_dir / below)
    assert_one_line_error(result, 2, "lies inside the data folder", f"holds MNIST/raw, {data_dir}")
    assert snapshot(data_dir) == before


def test_a_damaged_archive_is_named_when_the_download_fails(cli, tmp_path, monkeypatch):
    """An interrupted download leaves a short .gz, which torchvision will not unpack but fetch again: offline,
    the error names the archive, and the archive stays."""
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b the first bytes of an archive")
    result = cli("--dry-run", "--data-dir", tmp_path / "data")
    assert_one_line_error(
        result, 2, *RAW_NAMES, "damaged there (not MNIST's MD5), to delete: train-images-idx3-ubyte.gz"
    )
    assert (raw / "train-images-idx3-ubyte.gz").read_bytes().startswith(b"\x1f\x8b the first")


def data_dir_with(tmp_path, name, content):
    """A data folder linking the real files, but with `name` replaced by `content`."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for other in RAW_NAMES:
        (raw / other).symlink_to((DATA_DIR / "MNIST" / "raw" / other).resolve())
    (raw / name).unlink()
    (raw / name).write_bytes(content)
    return raw.parent.parent


@pytest.mark.parametrize(
    "name, damage",
    [
        ("train-images-idx3-ubyte", "truncated"),
        ("t10k-labels-idx1-ubyte", "bad magic"),
        ("train-labels-idx1-ubyte", "count mismatch"),
    ],
)
def test_corrupt_data_names_the_bad_file(cli, tmp_path, name, damage):
    original = (DATA_DIR / "MNIST" / "raw" / name).read_bytes()
    content = {
        "truncated": original[: len(original) // 3],
        "bad magic": b"\x00\x00\x09\x09" + original[4:],
        "count mismatch": original[:4] + struct.pack(">I", 59_999) + original[8:-1],
    }[damage]
    data_dir = data_dir_with(tmp_path, name, content)
    result = cli("--dry-run", "--data-dir", data_dir, "--out", tmp_path / "m.pth")
    assert_one_line_error(result, 2, name)
    assert not (tmp_path / "m.pth").exists()


@pytest.mark.parametrize("split, other", [("train", "t10k"), ("t10k", "train")])
def test_one_splits_files_in_the_others_place_are_refused_before_the_training(cli, tmp_path, split, other):
    """The test files under the training files' names: a run trained on the test digits, then reported its accuracy
    on them as a test accuracy, and saved the model."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW_NAMES:
        source = name.replace(split, other) if name.startswith(split) else name
        (raw / name).symlink_to(DATA_DIR / "MNIST" / "raw" / source)
    result = cli("--dry-run", "--data-dir", raw.parents[1], "--out", tmp_path / "m.pth")
    counts = {"train": ("10,000", "60,000"), "t10k": ("60,000", "10,000")}[split]
    assert_one_line_error(result, 2, f"{split}-images-idx3-ubyte holds {counts[0]} images where MNIST's", counts[1])
    assert "step" not in result.stdout and not (tmp_path / "m.pth").exists()


def test_an_empty_data_file_is_a_one_line_error(cli, tmp_path):
    name = "t10k-images-idx3-ubyte"
    data_dir = data_dir_with(tmp_path, name, struct.pack(">IIII", 0x0803, 0, 28, 28))
    result = cli("--dry-run", "--data-dir", data_dir, "--out", tmp_path / "m.pth")
    assert_one_line_error(result, 2, name, "is empty")


def test_validation_needs_more_training_images_than_it_holds_out():
    images, labels = torch.zeros(4_000, 1, 28, 28), torch.zeros(4_000, dtype=torch.long)
    with pytest.raises(DataError, match="only 4,000"):
        validation_split(images, labels)


@pytest.mark.slow
def test_data_folder_is_only_read(cli, tmp_path, cache_dir):
    """A whole run, suite and all (a short recipe, so not a dry run), and the data folder is untouched. The suite
    comes from the session's cache, or goes there: the cache's own tests say it is written where told. The quick
    loop's dry run checks the same folder (test_dry_run_cli_writes_only_where_told)."""
    before = snapshot(DATA_DIR)
    (tmp_path / "short.json").write_text('{"max_steps": 20}')
    result = cli("--config", tmp_path / "short.json", "--min-accuracy", "0", "--data-dir", DATA_DIR,
                 "--cache-dir", cache_dir, "--out", tmp_path / "m.pth")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "mean corruption accuracy" in result.stdout and list(cache_dir.iterdir())
    assert snapshot(DATA_DIR) == before


def test_validation_split_is_fixed_and_disjoint_from_the_training_images():
    numbers = torch.arange(60_000)  # each "image" is its own index
    (train_images, train_labels), (held_images, held_labels) = validation_split(numbers, numbers)
    assert len(held_images) == VALIDATION_SIZE and len(train_images) == 60_000 - VALIDATION_SIZE
    assert not set(train_images.tolist()) & set(held_images.tolist())
    assert torch.equal(train_images, train_labels) and torch.equal(held_images, held_labels)
    assert torch.equal(validation_split(numbers, numbers)[1][0], held_images)  # the same split every time


def test_neighbourhood_max_is_a_3x3_max_pool():
    images = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.equal(neighbourhood_max(images), F.max_pool2d(images, 3, stride=1, padding=1))


@pytest.mark.parametrize("fraction", [0.0, 0.02, 0.5, 1.0])
def test_resolution_jitter_rescans_only_the_chosen_images_as_a_whole_batch_would(fraction):
    images = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    draws = torch.Generator().manual_seed(3)  # the same draws, in the same order: the size, then the choice
    size = int(torch.randint(7, 17, (1,), generator=draws))
    chosen = torch.rand(64, 1, 1, 1, generator=draws) < fraction
    small = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    whole_batch = F.interpolate(small, size=(28, 28), mode="bicubic", align_corners=False)
    jittered = resolution_jitter(images, fraction, torch.Generator().manual_seed(3))
    assert torch.equal(jittered, torch.where(chosen, whole_batch, images))
