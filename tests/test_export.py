"""export.py, `python main.py export`: ONNX and torch.export files that match PyTorch, with their metadata."""

import hashlib
import json
import os

import onnx
import onnxruntime
import pytest
import torch

from checkpoint import load_model, save_model
from export import export
from model import MNISTModel, count_parameters, logit_margin
from tests.helpers import assert_one_line_error


def run_exported(path, fmt, images):
    """Logits from an exported file, loaded the way a user without this project's code would."""
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"image": images.numpy()})[0])
    with torch.no_grad():
        return torch.export.load(path).module()(images)


def exported_metadata(path, fmt):
    if fmt == "onnx":
        return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}
    files = {"metadata.json": ""}
    torch.export.load(path, extra_files=files)
    return json.loads(files["metadata.json"])


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_export_matches_pytorch_at_any_batch_size(cli, untrained, mnist, tmp_path, fmt):
    out = tmp_path / f"model.{fmt}"
    result = cli("export", "--format", fmt, "--model", untrained, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "input_layout: (N, 1, 28, 28)" in result.stdout
    assert "warn" not in result.stderr.lower()  # neither Python warnings nor torch's logged ones
    model = load_model(untrained)
    for n in (1, 37):
        images = mnist["eval"][0][:n]
        with torch.no_grad():
            expected = model(images)
        torch.testing.assert_close(run_exported(out, fmt, images), expected, atol=1e-4, rtol=0)
    info = exported_metadata(out, fmt)
    assert info["mean"] == "0.1307" and info["std"] == "0.3081" and info["classes"] == "0,1,2,3,4,5,6,7,8,9"
    assert info["architecture"] == "default" and info["parameters"] == str(count_parameters(model))
    assert info["input_layout"].startswith("(N, 1, 28, 28)")
    # which model file it came from: after a new training run, an export beside the model can be checked against it
    assert info["model_sha256"] == hashlib.sha256(untrained.read_bytes()).hexdigest()
    # given where a model file belongs, the export is named for what it is (a pt2 is a zip, as torch.save writes)
    assert_one_line_error(cli("evaluate", "--model", out), 2, "is not a model file (an export: give the .pth")


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_export_of_a_compact_model(mnist, tmp_path, fmt):
    """In-process, so that a deprecation warning from this project's own calls fails the test (pytest.ini)."""
    model = MNISTModel("compact").eval()
    info = export(model, fmt, tmp_path / f"compact.{fmt}")
    assert info["architecture"] == "compact" and info["parameters"] == str(count_parameters(model))
    images = mnist["eval"][0][:5]
    with torch.no_grad():
        expected = model(images)
    torch.testing.assert_close(run_exported(tmp_path / f"compact.{fmt}", fmt, images), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_an_export_reads_the_views_where_the_model_does(mnist, tmp_path, fmt):
    """The exported graph reads every image's views and keeps them where the model is unsure: the same logits."""
    model = MNISTModel().eval()
    images = mnist["eval"][0][:64]
    with torch.no_grad():
        middle = logit_margin(model.read(images)).sort().values[31:33]
        model.view_margin = middle.mean().item()  # half the images viewed, none on the line
        expected, once = model(images), model.read(images)
    assert not torch.equal(expected, once)
    info = export(model, fmt, tmp_path / f"m.{fmt}")
    assert info["view_margin"] == str(model.view_margin)
    torch.testing.assert_close(run_exported(tmp_path / f"m.{fmt}", fmt, images), expected, atol=1e-4, rtol=0)


def test_export_with_no_views_reads_each_image_once(cli, untrained, mnist, tmp_path):
    out = tmp_path / "once.pt2"
    result = cli("export", "--format", "pt2", "--no-views", "--model", untrained, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "view_margin: 0.0" in result.stdout
    model, images = load_model(untrained), mnist["eval"][0][:37]
    with torch.no_grad():
        torch.testing.assert_close(run_exported(out, "pt2", images), model.read(images), atol=1e-4, rtol=0)


def test_torchscript_export_is_refused_naming_pt2(cli, untrained, tmp_path):
    result = cli("export", "--format", "torchscript", "--model", untrained, "--out", tmp_path / "m.pt")
    assert_one_line_error(result, 2, "pt2")
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(("fmt", "name"), [("onnx", "m.pt2"), ("pt2", "m.onnx")])
def test_an_out_named_for_the_other_format_is_refused(cli, untrained, tmp_path, fmt, name):
    assert_one_line_error(cli("export", "--format", fmt, "--model", untrained, "--out", tmp_path / name), 2,
                          "named for the other format", f"ending in .{fmt}")  # fmt: skip
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("name", ["metrics.json", "m", "m.onnx.bak"])
def test_an_out_not_ending_in_its_formats_suffix_is_refused_and_nothing_replaced(cli, untrained, tmp_path, name):
    out = tmp_path / name
    out.write_bytes(b"a file of the run's")  # such as the run's metrics.json beside the model
    for fmt in ("onnx", "pt2"):
        assert_one_line_error(cli("export", "--format", fmt, "--model", untrained, "--out", out), 2,
                              "does not end in", f"ending in .{fmt}")  # fmt: skip
    assert out.read_bytes() == b"a file of the run's" and list(tmp_path.iterdir()) == [out]


def test_export_into_a_folder_it_cannot_write_is_a_one_line_error(cli, untrained, tmp_path):
    folder = "/sys" if os.geteuid() == 0 else tmp_path / "read_only"  # root writes anywhere but a read-only mount
    if folder != "/sys":
        folder.mkdir()
        folder.chmod(0o555)
    for fmt in ("pt2", "onnx"):
        result = cli("export", "--format", fmt, "--model", untrained, "--out", f"{folder}/m.{fmt}")
        assert_one_line_error(result, 1, "cannot write", "ermission denied")


def test_an_export_through_a_loop_of_symbolic_links_is_refused_before_the_work(cli, untrained, tmp_path):
    """It said "cannot write into LOOP: File exists", after the export's work, where a run says what the loop is."""
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    result = cli("export", "--format", "onnx", "--model", untrained, "--out", loop / "m.onnx")
    assert_one_line_error(result, 1, f"cannot write into {loop}: a symbolic link that leads nowhere")


def test_an_export_out_that_names_a_folder_is_refused(cli, untrained, tmp_path):
    result = cli("export", "--format", "onnx", "--model", untrained, "--out", f"{tmp_path}/new/")
    assert_one_line_error(result, 2, "--out", "names a folder")
    assert list(tmp_path.iterdir()) == []


def test_an_export_never_replaces_the_model_it_reads(cli, untrained, tmp_path):
    model = tmp_path / "mnist_model.pth"
    model.write_bytes(untrained.read_bytes())
    result = cli("export", "--format", "onnx", "--model", model, "--out", tmp_path / "." / model.name)
    assert_one_line_error(result, 2, "--model", "refused to replace it")
    assert model.read_bytes() == untrained.read_bytes() and list(tmp_path.iterdir()) == [model]


def test_an_export_lands_beside_its_model_unless_told(cli, untrained, tmp_path):
    """Not in models/: the export of another run's model replaced the default model's there."""
    model = tmp_path / "run" / "m.pth"
    model.parent.mkdir()
    model.write_bytes(untrained.read_bytes())
    result = cli("export", "--format", "pt2", "--model", model)
    assert result.returncode == 0 and f"wrote {model.with_suffix('.pt2')}" in result.stdout
    assert sorted(path.name for path in model.parent.iterdir()) == ["m.pt2", "m.pth"]


def test_a_loaded_model_reads_in_trainings_layout_and_exports_in_the_default_one(tmp_path, recwarn):
    save_model(MNISTModel(), tmp_path / "m.pth")
    model = load_model(tmp_path / "m.pth")
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)  # a third faster to read
    export(model, "pt2", tmp_path / "m.pt2")  # torch.export's archive warned of channels-last weights
    assert not [warning for warning in recwarn if issubclass(warning.category, UserWarning)]
