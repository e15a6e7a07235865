"""checkpoint.py: atomic saving, and loading only safe, matching state dicts that describe their model."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
import torch

from checkpoint import METADATA_KEY, load_model, save_model
from config import ARCHITECTURES, FORMER_ARCHITECTURES, architecture, architecture_name
from conftest import ROOT, assert_one_line_error
from model import MNISTModel
from serve_bench import free_port, start_server, stop_server

KILL_MID_SAVE = """
import sys, time
from checkpoint import atomic_write
def write_slowly(temporary):
    with open(temporary, "wb") as f:
        f.write(b"half a model")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
atomic_write(sys.argv[1], write_slowly)
"""


def test_a_run_killed_mid_save_keeps_the_previous_model(untrained, tmp_path):
    out = tmp_path / "mnist_model.pth"
    out.write_bytes(untrained.read_bytes())
    process = subprocess.Popen(
        [sys.executable, "-c", KILL_MID_SAVE, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "writing\n"
    process.kill()
    process.wait(timeout=30)
    assert load_model(out) is not None
    assert [p.name for p in tmp_path.iterdir() if ".tmp" not in p.name] == [out.name]
    assert out.read_bytes() == untrained.read_bytes()


def test_checkpoint_problems_are_named(cli, untrained, tmp_path):
    good = untrained.read_bytes()
    compact = tmp_path / "compact_renamed.pth"
    torch.save({k: v for k, v in MNISTModel("compact").state_dict().items() if "classifier" not in k}, compact)
    cases = {
        "corrupt": (b"\x00garbage" * 100, "corrupt"),
        "truncated": (good[: len(good) // 2], "corrupt or truncated"),
        "other architecture": (compact.read_bytes(), "different architecture"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.pth"
        path.write_bytes(content)
        assert_one_line_error(cli("evaluate", "--model", path), 2, message)
    assert_one_line_error(cli("evaluate", "--model", tmp_path / "absent.pth"), 2, "no model file")


class RunsCode:
    def __reduce__(self):
        return (exec, (f"open({str(MARKER)!r}, 'w').write('ran')",))


MARKER = Path(tempfile.gettempdir()) / f"mnist-pickle-ran-{os.getpid()}"


def test_a_pickle_carrying_code_is_refused_and_never_runs(cli, tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": torch.zeros(1), "payload": RunsCode()}, path)
    MARKER.unlink(missing_ok=True)
    result = cli("predict", "--model", path, tmp_path / "any.png")
    assert_one_line_error(result, 2, "refused")
    assert not MARKER.exists()


def test_a_model_with_nan_weights_is_refused(cli, tmp_path):
    model = MNISTModel()
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    torch.save(model.state_dict(), tmp_path / "nan.pth")
    assert_one_line_error(cli("evaluate", "--model", tmp_path / "nan.pth"), 2, "NaN or infinite weights")


SEARCHED = "12/12,M,20,20,M/16"  # an architecture of no preset, such as tune finds


@pytest.mark.slow
def test_a_checkpoint_describes_its_architecture_and_every_command_loads_it(cli, user_images, tmp_path):
    path = tmp_path / "searched.pth"
    model = MNISTModel(SEARCHED, contrast_stretch=False)
    model.temperature = 0.5
    save_model(model, path)
    loaded = load_model(path)
    assert (loaded.arch, loaded.contrast_stretch, loaded.temperature) == (SEARCHED, False, 0.5)
    assert json.loads(cli("evaluate", "--model", path, "--json").stdout)["temperature"] == 0.5
    assert cli("predict", "--model", path, user_images[0][0]).returncode == 0
    for fmt in ("onnx", "pt2"):
        exported = cli("export", "--format", fmt, "--model", path, "--out", tmp_path / f"searched.{fmt}")
        assert exported.returncode == 0 and f"architecture: {SEARCHED}" in exported.stdout
        assert "temperature: 0.5" in exported.stdout
    assert json.loads(cli("robustness", "--model", path, "--json").stdout)["calibration"]["images"] == 190_000
    server, url = start_server(path, free_port())
    try:
        assert httpx.get(f"{url}/api/health").json()["architecture"] == SEARCHED
    finally:
        stop_server(server)


@pytest.mark.parametrize("arch", [*ARCHITECTURES.values(), *FORMER_ARCHITECTURES.values()], ids=architecture_name)
def test_a_file_saved_before_checkpoints_described_their_model_loads_uncalibrated(tmp_path, arch):
    torch.save(MNISTModel(arch).state_dict(), tmp_path / "old.pth")  # the presets' layouts, today's and before
    old = load_model(tmp_path / "old.pth")
    assert (old.spec, old.contrast_stretch, old.temperature) == (architecture(arch), True, 1.0)


def test_a_wrong_description_is_a_one_line_error(cli, tmp_path):
    state = MNISTModel().state_dict()
    described = {"architecture": {"stem": 16, "body": [16, "M", "M", 8, "M"], "head": 8}}
    cases = {
        "unbuildable": ({**described, "contrast_stretch": True, "temperature": 1.0}, "describes its model wrongly"),
        "other weights": (
            {
                "architecture": {**ARCHITECTURES["compact"], "body": [8, 16, "M", 20, "M"]},
                "contrast_stretch": True,
                "temperature": 1.0,
            },  # fmt: skip
            "do not fit the architecture it describes",
        ),
        "bad temperature": (
            {"architecture": ARCHITECTURES["default"], "contrast_stretch": True, "temperature": -1.0},
            "temperature -1.0",
        ),
    }
    for name, (description, message) in cases.items():
        state._metadata[""][METADATA_KEY] = description
        torch.save(state, tmp_path / f"{name}.pth")
        assert_one_line_error(cli("evaluate", "--model", tmp_path / f"{name}.pth"), 2, message)
