"""checkpoint.py: atomic saving, and loading only safe, matching state dicts."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from checkpoint import load_model
from conftest import ROOT, assert_one_line_error
from model import MNISTModel

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
