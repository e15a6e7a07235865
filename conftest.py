"""Fixtures shared by test_cases.py (the original design's checks) and tests/ (one file per module or command).

The data folder comes from $MNIST_DATA_DIR (CI points it at a read-only copy), else ./data. One real
training run, shared by every test that needs a trained model, happens once per session; a test that
only needs a loadable file uses an untrained one. The corruption suite is cached in a folder of the
session's own, for the in-process calls and the subprocesses alike.
"""

import os

import pytest
import torch

from checkpoint import save_model
from cli import CACHE_DIR_ENV
from config import TrainConfig
from model import MNISTModel
from tests.helpers import CPU, DATA_DIR, PREDICT_SAMPLES, Result, render_like_a_user


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


@pytest.fixture
def cli(capsys):
    """`python main.py ARGS` called in this process: the same parsing, output and exit code, without start-up."""
    from main import main

    def call(*args):
        threads = torch.get_num_threads()  # a command sets its process's (--threads, serve): not the next test's
        try:
            code = main([str(arg) for arg in args]) or 0
        except SystemExit as exit:
            code = exit.code or 0
        finally:
            torch.set_num_threads(threads)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return call


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
