"""checkpoint.py: atomic saving, and loading only safe, matching state dicts that describe their model."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import httpx
import pytest
import torch

from checkpoint import METADATA_KEY, OutputError, Outputs, atomic_write, load_model, save_model, write_results
from config import ARCHITECTURES, FORMER_ARCHITECTURES, SLANT_LIMIT, VIEW_MARGIN, architecture, architecture_name
from model import Deskew, MNISTModel
from serve_bench import free_port, start_server, stop_server
from tests.helpers import ROOT, assert_one_line_error, zip_of

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


def test_a_killed_saves_temporary_is_removed_by_the_next_save(untrained, tmp_path):
    out = tmp_path / "m.pth"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp_path / f".m.{int(dead.stdout)}.tmp.pth"  # what a killed save of another process leaves
    live = tmp_path / f".m.{os.getppid()}.tmp.pth"  # a save still in progress in a live process
    for path in (left, live):
        path.write_bytes(b"half a model")
    save_model(MNISTModel(), out)
    assert not left.exists() and live.exists() and load_model(out) is not None


def write(text):
    return lambda temporary: Path(temporary).write_text(text)


def fail(temporary):
    Path(temporary).write_text("half")
    raise OSError(28, "No space left on device")


def test_outputs_land_together_or_not_at_all(tmp_path):
    first, second = tmp_path / "model.pth", tmp_path / "metrics.json"
    first.write_text("old model")
    second.write_text("old metrics")
    with pytest.raises(OutputError, match="No space"), Outputs() as outputs:
        outputs.write(first, write("new model"))
        outputs.write(second, fail)  # the disk fills on the second file
        outputs.commit()
    assert (first.read_text(), second.read_text()) == ("old model", "old metrics")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "model.pth"]  # no temporaries left


@pytest.mark.parametrize("second", ["write", "remove"])
def test_outputs_refuse_a_path_staged_twice_and_change_nothing(tmp_path, second):
    """A second write would share the first's temporary; a removal would take away what was written."""
    model, record = tmp_path / "model.pth", tmp_path / "metrics.json"
    record.write_text("old metrics")
    with pytest.raises(ValueError, match="staged twice"), Outputs() as outputs:
        outputs.write(model, write("new model"))
        outputs.write(record, write("new metrics"))
        outputs.write(record, write("a plot")) if second == "write" else outputs.remove(record)
        outputs.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"] and record.read_text() == "old metrics"


def test_ctrl_c_while_outputs_land_lets_them_all_land_then_says_so(tmp_path):
    paths = [tmp_path / f"{name}.txt" for name in "abc"]
    with pytest.raises(KeyboardInterrupt, match="after the outputs were saved"), Outputs() as outputs:
        for path in paths:
            outputs.write(path, write("new " + path.stem))
        real_replace = os.replace

        def interrupted_replace(source, target):  # Ctrl-C arrives between two renames
            real_replace(source, target)
            os.kill(os.getpid(), signal.SIGINT)

        os.replace = interrupted_replace
        try:
            outputs.commit()
        finally:
            os.replace = real_replace
    assert [path.read_text() for path in paths] == ["new a", "new b", "new c"]


def test_an_output_writes_through_a_symlink_and_keeps_the_files_mode(tmp_path):
    target = tmp_path / "kept" / "model.pth"
    target.parent.mkdir()
    target.write_text("old")
    target.chmod(0o600)
    link = tmp_path / "link.pth"
    link.symlink_to(target)
    atomic_write(link, write("new"))
    assert link.is_symlink() and target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o600


def test_an_output_that_is_not_a_writable_regular_file_is_refused(tmp_path):
    read_only = tmp_path / "read_only.pth"
    read_only.write_text("kept")
    read_only.chmod(0o444)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for path, message in ((read_only, "read-only"), (pipe, "not a regular file"), (os.devnull, "not a regular file")):
        with pytest.raises(OutputError, match=message):
            atomic_write(path, write("new"))
    assert read_only.read_text() == "kept" and Path(os.devnull).is_char_device()


def test_checkpoint_problems_are_named(cli, untrained, tmp_path):
    good = untrained.read_bytes()
    compact = tmp_path / "compact_renamed.pth"
    torch.save({k: v for k, v in MNISTModel("compact").state_dict().items() if "classifier" not in k}, compact)
    cases = [
        (b"\x00garbage" * 100, "is not a model file"),
        (b'{"accuracy": 99.3}', "is not a model file"),  # metrics.json given as --model
        (b"torch==2.14.1\nnumpy\n", "is not a model file"),  # a text file, which the unpickler fails on
        (zip_of({"digit.png": b"\x89PNG"}), "is not a model file"),  # a zip archive that torch.save did not write
        (good[: len(good) // 2], "is corrupt or truncated"),
        (compact.read_bytes(), "different architecture"),
    ]
    for number, (content, message) in enumerate(cases):
        path = tmp_path / f"case{number}.pth"  # a name that no message matches by itself
        path.write_bytes(content)
        assert_one_line_error(cli("evaluate", "--model", path), 2, message)
    assert_one_line_error(cli("evaluate", "--model", tmp_path / "absent.pth"), 2, "no model file")


def test_a_model_path_that_is_no_regular_file_says_what_it_is(cli, tmp_path):
    """A device, a pipe or a link that leads nowhere is named as such: "no model file there; train one with python
    main.py --out PATH" was wrong twice, as the run it advised refuses to replace a device or a pipe."""
    os.mkfifo(tmp_path / "pipe.pth")
    (tmp_path / "dangling.pth").symlink_to(tmp_path / "gone.pth")
    cases = {
        os.devnull: "is not a regular file (a device, a pipe or a socket)",
        tmp_path / "pipe.pth": "is not a regular file (a device, a pipe or a socket)",
        tmp_path / "dangling.pth": "is a symbolic link that leads nowhere",
    }
    for path, message in cases.items():
        assert_one_line_error(cli("evaluate", "--model", path), 2, f"{path} {message}")


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
    model = MNISTModel(SEARCHED, contrast_stretch=False, deskew=0.3, view_margin=0.5)
    model.temperature, model.energy_threshold = 0.5, -3.0
    save_model(model, path)
    loaded = load_model(path)
    assert (loaded.arch, loaded.contrast_stretch, loaded.deskew, loaded.temperature) == (SEARCHED, False, 0.3, 0.5)
    assert loaded.view_margin == 0.5 and load_model(path, views=False).view_margin == 0.0
    assert loaded.upright.slant_limit == 0.3
    assert loaded.energy_threshold == -3.0
    evaluated = json.loads(cli("evaluate", "--model", path, "--json").stdout)
    assert (evaluated["view_margin"], evaluated["temperature"], evaluated["energy_threshold"]) == (0.5, 0.5, -3.0)
    assert cli("predict", "--model", path, user_images[0][0]).returncode == 0
    for fmt in ("onnx", "pt2"):
        exported = cli("export", "--format", fmt, "--model", path, "--out", tmp_path / f"searched.{fmt}")
        assert exported.returncode == 0 and f"architecture: {SEARCHED}" in exported.stdout
        assert "temperature: 0.5" in exported.stdout and "energy_threshold: -3.0" in exported.stdout
        assert "view_margin: 0.5" in exported.stdout
    server, url = start_server(path, free_port())
    try:
        health = httpx.get(f"{url}/api/health").json()
        assert (health["architecture"], health["view_margin"], health["energy_threshold"]) == (SEARCHED, 0.5, -3.0)
    finally:
        stop_server(server)


@pytest.mark.parametrize("arch", [*ARCHITECTURES.values(), *FORMER_ARCHITECTURES.values()], ids=architecture_name)
def test_a_file_saved_before_checkpoints_described_their_model_loads_uncalibrated(tmp_path, arch):
    torch.save(MNISTModel(arch).state_dict(), tmp_path / "old.pth")  # the presets' layouts, today's and before
    old = load_model(tmp_path / "old.pth")
    assert (old.spec, old.contrast_stretch, old.deskew, old.temperature) == (architecture(arch), True, 0.0, 1.0)
    assert old.view_margin == 0.0  # nor did it read through views
    assert old.energy_threshold is None


def test_a_file_that_does_not_say_its_slant_limit_was_trained_before_the_model_deskewed_or_with_the_default(tmp_path):
    save_model(MNISTModel(), tmp_path / "new.pth")
    assert load_model(tmp_path / "new.pth").deskew == SLANT_LIMIT
    state = torch.load(tmp_path / "new.pth", weights_only=True)
    described = state._metadata[""][METADATA_KEY]
    for said, slant_limit in ((None, 0.0), (True, SLANT_LIMIT), (False, 0.0)):
        if said is None:  # as files saved before the model deskewed
            described.pop("deskew")
        else:  # as files saved before the limit could be set: whether the model deskewed
            described["deskew"] = said
        torch.save(state, tmp_path / "before.pth")
        loaded = load_model(tmp_path / "before.pth")
        assert loaded.deskew == slant_limit
        assert isinstance(loaded.upright, Deskew) == bool(slant_limit)


def test_a_file_that_does_not_say_its_view_margin_reads_each_image_once(tmp_path):
    save_model(MNISTModel(), tmp_path / "new.pth")
    assert load_model(tmp_path / "new.pth").view_margin == VIEW_MARGIN
    state = torch.load(tmp_path / "new.pth", weights_only=True)
    state._metadata[""][METADATA_KEY].pop("view_margin")  # as files saved before the model read through views
    torch.save(state, tmp_path / "before.pth")
    assert load_model(tmp_path / "before.pth").view_margin == 0.0


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
        "bad deskew": (
            {"architecture": ARCHITECTURES["default"], "contrast_stretch": True, "deskew": "yes", "temperature": 1.0},
            "describes its model wrongly: deskew must be a finite number, got 'yes'",
        ),
        "negative deskew": (
            {"architecture": ARCHITECTURES["default"], "contrast_stretch": True, "deskew": -1, "temperature": 1.0},
            "describes its model wrongly: deskew must be between 0 and 4, got -1",
        ),
        "negative view margin": (
            {"architecture": ARCHITECTURES["default"], "contrast_stretch": True, "view_margin": -1, "temperature": 1.0},
            "describes its model wrongly: view_margin must be between 0 and 100, got -1",
        ),
        "bad temperature": (
            {"architecture": ARCHITECTURES["default"], "contrast_stretch": True, "temperature": -1.0},
            "temperature must be between 0.05 and 20, got -1.0",
        ),
        "bad energy threshold": (
            {
                "architecture": ARCHITECTURES["default"],
                "contrast_stretch": True,
                "temperature": 1.0,
                "energy_threshold": "high",
            },  # fmt: skip
            "energy_threshold must be a finite number, got 'high'",
        ),
    }
    for name, (description, message) in cases.items():
        state._metadata[""][METADATA_KEY] = description
        torch.save(state, tmp_path / f"{name}.pth")
        assert_one_line_error(cli("evaluate", "--model", tmp_path / f"{name}.pth"), 2, message)


def test_a_model_file_that_would_load_wrongly_or_at_great_cost_is_refused(cli, untrained, tmp_path):
    def described_as(temperature=None, metadata=None, dtype=None, extra=None):
        state = torch.load(untrained, weights_only=True)
        if temperature is not None:
            state._metadata[""][METADATA_KEY]["temperature"] = temperature
        if metadata is not None:
            state._metadata[""] = metadata
        if dtype is not None:
            state = type(state)((name, tensor.to(dtype)) for name, tensor in state.items())
            state._metadata = torch.load(untrained, weights_only=True)._metadata
        if extra is not None:
            state["extra"] = extra
        return state

    cases = {
        "cold": (described_as(temperature=1e-300), "describes its model wrongly"),
        "not a mapping": (described_as(metadata=[1, 2]), "metadata is not a mapping"),
        "integers": (described_as(dtype=torch.int64), "holds int64 values where the model's are float32"),
        "booleans": (described_as(dtype=torch.bool), "holds bool values"),
        # 80 MB of zeros: it compresses to almost nothing in a zip, and would unpack to all of it.
        "bomb": (described_as(extra=torch.zeros(20 * 2**20)), "unpacks to 80 MB"),
    }
    for name, (state, message) in cases.items():
        path = tmp_path / f"{name}.pth"
        torch.save(state, path)
        if name == "bomb":  # stored deflated, as a crafted file would be
            with zipfile.ZipFile(path) as archive, zipfile.ZipFile(tmp_path / "z.pth", "w", zipfile.ZIP_DEFLATED) as z:
                for member in archive.infolist():
                    z.writestr(member.filename, archive.read(member))
            (tmp_path / "z.pth").replace(path)
            assert path.stat().st_size < 2**20
        assert_one_line_error(cli("evaluate", "--model", path, "--json"), 2, message)
    assert_one_line_error(cli("evaluate", "--model", tmp_path), 2, "is a folder, not a model file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_model_file_is_named_as_such(cli, untrained, tmp_path):
    path = tmp_path / "locked.pth"
    path.write_bytes(untrained.read_bytes())
    path.chmod(0)
    assert_one_line_error(cli("evaluate", "--model", path), 2, "permission denied")


def test_results_and_their_table_land_together_or_not_at_all(tmp_path):
    """A benchmark's or study's JSON and Markdown: a Ctrl-C between two writes left one run's beside another's."""
    (tmp_path / "bench.md").mkdir()  # the table cannot land: its path is a folder
    with pytest.raises(OutputError):
        write_results(tmp_path, "bench", {"accuracy": 99.3}, "| accuracy |\n")
    assert [path.name for path in tmp_path.iterdir()] == ["bench.md"]  # and no bench.json
    (tmp_path / "bench.md").rmdir()
    write_results(tmp_path, "bench", {"accuracy": 99.3}, "| accuracy |\n")
    assert json.loads((tmp_path / "bench.json").read_text()) == {"accuracy": 99.3}
    assert (tmp_path / "bench.md").read_text() == "| accuracy |\n"


def test_a_commit_waits_while_another_commits_into_the_same_folder(tmp_path):
    """Two runs to one --out land one whole set after the other, never the model of one beside the other's plots."""
    import fcntl
    import threading

    out = tmp_path / "m.pth"
    other = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(other, fcntl.LOCK_EX)  # held, as another run's commit holds it for its renames
    landed = threading.Event()

    def commit():
        with Outputs() as outputs:
            outputs.write(out, lambda temporary: Path(temporary).write_text("model"))
            outputs.write(out.with_name("metrics.json"), lambda temporary: Path(temporary).write_text("{}"))
            outputs.commit()
        landed.set()

    thread = threading.Thread(target=commit)
    thread.start()
    assert not landed.wait(0.5) and not out.exists()
    os.close(other)  # the other commit is done
    assert landed.wait(30) and out.read_text() == "model" and out.with_name("metrics.json").read_text() == "{}"
    thread.join()
