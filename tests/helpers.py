"""Helpers the tests share: the project's folders, real CLI runs in a subprocess, one-line error checks, and
images drawn as users make them. Fixtures are in conftest.py."""

import io
import os
import runpy
import shutil
import signal
import subprocess
import sys
import zipfile
from collections import namedtuple
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from cli import resolve_data_dir

ROOT = Path(__file__).resolve().parents[1]


DATA_DIR = resolve_data_dir().resolve()


CPU = torch.device("cpu")


Result = namedtuple("Result", "returncode stdout stderr")


def hear_sigint():
    """Popen's preexec_fn for a child that Ctrl-C tests interrupt: a shell's background job ignores SIGINT,
    and its children would too."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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


def run_script(script, *args):
    """`python SCRIPT ARGS` run in this process by runpy, as its own __main__: the script's whole command line
    without a new interpreter's start-up. Returns the exit code; the output is the caller's to capture."""
    argv = sys.argv
    sys.argv = [str(ROOT / script), *map(str, args)]
    try:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    except SystemExit as exit:
        return exit.code or 0
    finally:
        sys.argv = argv
    return 0


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


def centres_of_mass(images):
    """(row, column) means of the centres of mass of (N, 28, 28) images, in pixel indices."""
    mass = images.sum((1, 2))
    rows = (images.sum(2) * torch.arange(28)).sum(1) / mass
    columns = (images.sum(1) * torch.arange(28)).sum(1) / mass
    return rows.mean().item(), columns.mean().item()


def render_like_a_user(image, label_index):
    """A 28x28 MNIST digit as a user might supply it: black ink on white, scaled up, off-centre."""
    from PIL import Image

    digit = Image.fromarray(255 - as_8bit(image))
    scale = (2, 3, 5, 8)[label_index % 4]
    digit = digit.resize((28 * scale, 28 * scale), Image.BICUBIC)
    canvas = Image.new("L", (digit.width * 2 + 17 * label_index % 50, digit.height + 40), 255)
    canvas.paste(digit, (label_index * 13 % (canvas.width - digit.width), 7 + label_index % 30))
    return canvas.convert("RGB") if label_index % 2 else canvas


def snapshot(folder):
    """Every path under folder with its size and modification time: equal snapshots, an untouched folder."""
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).rglob("*"))


def train_only_data_dir(tmp_path):
    """A data folder holding the training files alone: anything that opens the test files fails."""
    folder = tmp_path / "train_only" / "MNIST" / "raw"
    folder.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (folder / name).symlink_to(DATA_DIR / "MNIST" / "raw" / name)
    return folder.parents[1]


PREDICT_SAMPLES = 60  # rendered test digits put through `predict`


def write_huge_png(path, width, height, kind="grey"):
    """A real, valid PNG of width x height (abuse_bench.huge_png), one colour throughout, in a few kilobytes."""
    from abuse_bench import huge_png

    path.write_bytes(huge_png(width, height, kind))


def post_image(api, body, content_type="image/png"):
    """POST an image's bytes to the served API (an httpx client)."""
    return api.post("/api/predict", content=body, headers={"content-type": content_type})


def zip_of(members):
    """The bytes of a zip archive holding members ({name: content})."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@contextmanager
def read_only_folder(folder, files=()):
    """folder, made with copies of files, that this process cannot write into: its mode where that binds, else (root)
    a read-only tmpfs mounted over it; the test is skipped where neither can be had."""
    folder.mkdir()
    for file in files:
        shutil.copy(file, folder)
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    mount = shutil.which("mount")
    if (
        not mount
        or subprocess.run([mount, "-t", "tmpfs", "-o", "size=4m", "tmpfs", folder], capture_output=True).returncode
    ):
        folder.chmod(0o755)
        pytest.skip("root, where a folder's mode binds no one, and no read-only mount to be had")
    try:
        for file in files:
            shutil.copy(file, folder)
        subprocess.run([mount, "-o", "remount,ro", folder], check=True)
        yield folder
    finally:
        subprocess.run([shutil.which("umount"), folder], check=True)
        folder.chmod(0o755)
