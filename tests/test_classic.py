"""classic.py, the original design kept as the benchmark's baseline: its two scripts' errors, in one line."""

import pytest

from tests.helpers import Result, assert_one_line_error, read_only_folder, run_script


def classic(capsys, *args):
    code = run_script("classic.py", *args)
    return Result(code, *capsys.readouterr())


def test_testing_without_a_model_file_is_a_one_line_error(capsys, tmp_path):
    result = classic(capsys, "test", "--model", tmp_path / "classic.pth")
    assert_one_line_error(result, 2, "no model file at", "python classic.py train --model")


@pytest.mark.parametrize("content", [b"", b"not a model", b"PK\x03\x04"])
def test_a_file_that_is_not_its_model_is_a_one_line_error(capsys, tmp_path, content):
    (tmp_path / "classic.pth").write_bytes(content)
    result = classic(capsys, "test", "--model", tmp_path / "classic.pth")
    assert_one_line_error(result, 2, "is not a model file of classic.py")


@pytest.mark.parametrize("option, kind", [("--model", "file"), ("--data-dir", "folder")])
def test_an_empty_path_is_a_one_line_error(capsys, option, kind):
    """--model "" said "no model file at ; train one with: python classic.py train --model ", and --data-dir ""
    read $MNIST_DATA_DIR as if no folder were given."""
    assert_one_line_error(classic(capsys, "test", option, ""), 2, f"argument {option}: an empty path names no {kind}")


def test_another_models_weights_are_a_one_line_error(capsys, untrained):
    assert_one_line_error(classic(capsys, "test", "--model", untrained), 2, "is not a model file of classic.py")


def test_missing_data_is_a_one_line_error_and_saves_nothing(capsys, tmp_path):
    result = classic(capsys, "train", "--data-dir", tmp_path, "--model", tmp_path / "classic.pth")
    assert_one_line_error(result, 2, "MNIST not found: train-images-idx3-ubyte, train-labels-idx1-ubyte belong in")
    assert not (tmp_path / "classic.pth").exists()


def test_training_over_a_file_that_is_no_model_is_refused_and_keeps_it(capsys, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("kept")
    result = classic(capsys, "train", "--model", notes, "--max-steps", 1)
    assert_one_line_error(result, 2, f"{notes} is there and is no model file")
    assert notes.read_text() == "kept" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_training_into_a_path_it_cannot_write_is_a_one_line_error(capsys, tmp_path):
    """A read-only model file, or a folder it may not write into: a traceback before."""
    kept = tmp_path / "classic.pth"
    kept.write_bytes(b"kept")
    kept.chmod(0o444)
    result = classic(capsys, "train", "--model", kept, "--max-steps", 1)
    assert_one_line_error(result, 1, f"{kept} is read-only; refused to replace it")
    with read_only_folder(tmp_path / "ro") as folder:
        result = classic(capsys, "train", "--model", folder / "classic.pth", "--max-steps", 1)
        assert_one_line_error(result, 1, f"cannot write into {folder}: ")
