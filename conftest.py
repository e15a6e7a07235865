"""Fixtures shared by test_cases.py (the original design's checks) and tests/ (one file per module or command).

The data folder comes from $MNIST_DATA_DIR (CI points it at a read-only copy), else ./data. One real
training run, shared by every test that needs a trained model, happens once per session; a test that
only needs a loadable file uses an untrained one. The corruption suite is cached in a folder of the
session's own, for the in-process calls and the subprocesses alike.
"""

import os
import signal
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from checkpoint import save_model
from cli import CACHE_DIR_ENV, resolve_data_dir
from config import TrainConfig
from model import MNISTModel

ROOT = Path(__file__).parent
DATA_DIR = resolve_data_dir().resolve()
CPU = torch.device("cpu")
Result = namedtuple("Result", "returncode stdout stderr")


def hear_sigint():
    """Popen's preexec_fn for a child that Ctrl-C tests interrupt: a shell's background job ignores SIGINT,
    and its children would too."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory):
    """The session's suite cache, for everything the tests run: never the user's own cache folder."""
    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(folder)
    yield folder
    if previous is None:
        del os.environ[CACHE_DIR_ENV]
    else:
        os.environ[CACHE_DIR_ENV] = previous


@pytest.fixture(scope="session")
def mnist():
    """Both splits on the CPU, as `python main.py` loads them."""
    from train import load_data

    return load_data(DATA_DIR, CPU)


@pytest.fixture(scope="session")
def trained(mnist, tmp_path_factory, cache_dir):
    """One real epoch of the default model with the default settings, saved like `python main.py` does."""
    from train_pipeline import pipeline

    out = tmp_path_factory.mktemp("trained") / "mnist_model.pth"
    metrics = pipeline("default", TrainConfig(), CPU, mnist, out, min_accuracy=0.0, cache_dir=cache_dir, seconds={})
    return out, metrics


@pytest.fixture(scope="session")
def untrained(tmp_path_factory):
    """A loadable checkpoint of an untrained default model, for tests that need a file, not a good model."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("untrained") / "mnist_model.pth"
    save_model(MNISTModel(), path)
    return path


@pytest.fixture
def batch(mnist):
    images, labels = mnist["train"]
    return images[:64], labels[:64]


def run_cli(*args, env=None, cwd=ROOT, script="main.py"):
    """`python main.py ARGS` in a subprocess, for what only a real process shows: exit codes, signals, imports."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def cli(capsys):
    """`python main.py ARGS` called in this process: the same parsing, output and exit code, without start-up."""
    from main import main

    def call(*args):
        try:
            code = main([str(arg) for arg in args]) or 0
        except SystemExit as exit:
            code = exit.code or 0
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return call


def assert_one_line_error(result, code, *fragments):
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error) == 1, result.stderr
    for fragment in fragments:
        assert fragment in error[0], error[0]


def as_8bit(image):
    from data import pixels

    return (pixels(image).squeeze() * 255).round().byte().numpy()


def render_like_a_user(image, label_index):
    """A 28x28 MNIST digit as a user might supply it: black ink on white, scaled up, off-centre."""
    from PIL import Image

    digit = Image.fromarray(255 - as_8bit(image))
    scale = (2, 3, 5, 8)[label_index % 4]
    digit = digit.resize((28 * scale, 28 * scale), Image.BICUBIC)
    canvas = Image.new("L", (digit.width * 2 + 17 * label_index % 50, digit.height + 40), 255)
    canvas.paste(digit, (label_index * 13 % (canvas.width - digit.width), 7 + label_index % 30))
    return canvas.convert("RGB") if label_index % 2 else canvas


def train_only_data_dir(tmp_path):
    """A data folder holding the training files alone: anything that opens the test files fails."""
    folder = tmp_path / "train_only" / "MNIST" / "raw"
    folder.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (folder / name).symlink_to(DATA_DIR / "MNIST" / "raw" / name)
    return folder.parents[1]


PREDICT_SAMPLES = 60  # rendered test digits put through `predict`


@pytest.fixture(scope="session")
def user_images(mnist, tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_images")
    images, labels = mnist["eval"]
    paths = []
    for i in range(PREDICT_SAMPLES):
        path = folder / f"digit_{i}.{('png', 'jpg', 'bmp')[i % 3]}"
        render_like_a_user(images[i], i).save(path)
        paths.append(path)
    return paths, labels[:PREDICT_SAMPLES].tolist()


def write_huge_png(path, width, height, kind="grey"):
    """A real, valid PNG of width x height (serve_bench.huge_png), one colour throughout, in a few kilobytes."""
    from serve_bench import huge_png

    path.write_bytes(huge_png(width, height, kind))
