"""Fixtures shared by test_cases.py (the original design's checks) and tests/ (one file per module or command).

The data folder comes from $MNIST_DATA_DIR (CI points it at a read-only copy), else ./data. One real
training run, shared by every test that needs a trained model, happens once per test run; a test that
only needs a loadable file uses an untrained one. The corruption suite is cached in a folder of the
run's own, for the in-process calls and the subprocesses alike.

pytest-xdist runs the tests in one worker process per core (pytest.ini). Each worker takes its share of
the cores, the tests of the trained model come first, so that the first worker trains it at once while
the others run the rest, and the trained model and the suite's cache are shared by all workers.
"""

import os
import pickle

import httpx
import pytest
import torch
from filelock import FileLock

from checkpoint import save_model
from cli import CACHE_DIR_ENV
from config import TrainConfig
from model import MNISTModel
from tests.helpers import CPU, DATA_DIR, PREDICT_SAMPLES, Result, render_like_a_user
from tune_workers import share_of_cores


def pytest_configure(config):
    """A worker's share of the cores, for its own torch and the commands it runs: workers whose thread teams
    outnumber the cores run many times slower (two workers of two threads each on 2 cores took the quick suite
    twice as long as one process)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = share_of_cores(int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The tests of the trained model first, in their order: xdist's worksteal gives the first worker the first
    half, so it trains the model while the others start on tests that need none."""
    items.sort(key=lambda item: "trained" not in item.fixturenames)


def shared_folder(tmp_path_factory, name):
    """A folder of this test run's that every xdist worker sees (each worker's own base folder is inside it)."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory):
    """The run's suite cache, for everything the tests run: never the user's own cache folder. Workers share it:
    the suite is written atomically."""
    folder = shared_folder(tmp_path_factory, "cache")
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
    """One real epoch of the default model with the default settings, saved like `python main.py` does, with the
    metrics the run returned: trained by the first worker that needs it, read by the others."""
    from train_pipeline import pipeline

    folder = shared_folder(tmp_path_factory, "trained")
    out, returned = folder / "mnist_model.pth", folder / "returned_metrics.pickle"
    with FileLock(folder / "training.lock"):
        if not returned.exists():
            metrics = pipeline("default", TrainConfig(), CPU, mnist, out, 0.0, cache_dir=cache_dir, seconds={})
            returned.write_bytes(pickle.dumps(metrics))
    return out, pickle.loads(returned.read_bytes())


SERVE_TEST_UPLOAD_LIMIT = 2**20  # bytes: 1 MiB, a limit the tests can exceed quickly


@pytest.fixture(scope="session")
def server(trained):
    """The real `python main.py serve` of the trained model on a free loopback port, with a small upload limit."""
    from serve_bench import free_port, start_server, stop_server

    server, url = start_server(trained[0], free_port(), "--max-upload-mb", str(SERVE_TEST_UPLOAD_LIMIT / 2**20))
    yield url
    stop_server(server)


@pytest.fixture(scope="session")
def api(server):
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


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
