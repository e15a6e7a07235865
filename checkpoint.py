"""Saving run outputs atomically, and loading state dicts safely (weights_only=True, checked shapes).

A model file is a plain state dict: `MNISTModel(arch).load_state_dict(torch.load(path, weights_only=True))`
loads it. What rebuilds the model rides along in the state dict's own `_metadata` (PyTorch's per-module
record, which torch.save keeps and load_state_dict passes by): the architecture, the input steps (contrast
stretch, deskewing's slant limit), the views' margin and the temperature. Files saved before they did are matched
against the presets (temperature 1).
"""

import errno
import glob
import json
import os
import re
import signal
import stat
import threading
import zipfile
from collections import OrderedDict
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch

from config import ARCHITECTURES, FORMER_ARCHITECTURES, SLANT_LIMIT, TrainConfig, architecture, checked
from errors import InputError, RunError
from model import MNISTModel

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


class CheckpointError(InputError):
    """A model file is missing, damaged, unsafe, or not one of this project's architectures."""


class OutputError(RunError):
    """An output path that is not a regular, writable file (a folder, a device, a pipe, a read-only file)."""


def output_target(path):
    """The file that writing to path replaces: a symlink's target, written through. Refuses anything that is
    there and is not a regular file with a write bit (root could replace a read-only file or a device node)."""
    target = Path(os.path.realpath(path))
    if target.exists() or target.is_symlink():
        mode = target.stat().st_mode
        if not stat.S_ISREG(mode):
            raise OutputError(f"{path} is not a regular file; refused to replace it")
        if not mode & 0o222:
            raise OutputError(f"{path} is read-only; refused to replace it")
    return target


def model_target(path):
    """output_target(path) for a model file, checked before the work that makes it: a file already there must be in
    torch.save's formats (a model this one replaces), never a source file, notes or an export; and its temporary's
    name must fit the file system's limit, and the folder that will hold it must be one this process may write into,
    where a long name or a read-only folder failed only at the saving."""
    target = output_target(path)
    if target.is_file() and target.stat().st_size and not saved_by_torch(target):
        raise InputError(f"{path} is there and is no model file; refused to replace it with one")
    folder = writable_folder(target.parent)
    limit = os.pathconf(folder, "PC_NAME_MAX")
    if len(temporary_name(target).encode()) > limit:
        raise InputError(f"{path}: the name is too long to save under (the file system takes {limit} bytes a name)")
    return target


def writable_folder(folder):
    """folder, or where it is yet to be made the nearest folder above it (it is made in there), refused unless this
    process may write into it: checked before the work, which otherwise failed only at the saving."""
    folder = Path(folder).absolute()
    folder = next(above for above in (folder, *folder.parents) if os.path.lexists(above))
    try:  # a symbolic link to nothing, or round to itself, exists to lexists only: nothing can be made in it
        os.stat(folder)
    except OSError as error:
        nowhere = f"a symbolic link that leads nowhere ({error.strerror})"
        raise OutputError(f"cannot write into {folder}: {nowhere}") from None
    if not os.access(folder, os.W_OK | os.X_OK):  # a read-only file system binds root too, where modes do not
        read_only = hasattr(os, "statvfs") and os.statvfs(folder).f_flag & os.ST_RDONLY
        raise OutputError(f"cannot write into {folder}: {os.strerror(errno.EROFS if read_only else errno.EACCES)}")
    return folder


TEMPORARY = re.compile(r"\.(?P<stem>.+)\.(?P<pid>\d+)\.tmp(?P<suffix>.*)")  # .NAME.PID.tmp.SUFFIX, beside NAME.SUFFIX


def temporary_beside(target):
    """A hidden temporary beside target, one per process, so concurrent runs never share one; the suffix is kept
    for writers that check it (pt2). Temporaries that a killed process left for target are removed first."""
    for left in target.parent.glob(f".{glob.escape(target.stem)}.*.tmp{glob.escape(target.suffix)}"):
        match = TEMPORARY.fullmatch(left.name)
        if match and match["stem"] == target.stem and not process_exists(int(match["pid"])):
            left.unlink(missing_ok=True)
    return target.with_name(temporary_name(target))


def temporary_name(target):
    return f".{target.stem}.{os.getpid()}.tmp{target.suffix}"


def process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


class Outputs:
    """Files that land together or not at all: each is written in full to a temporary beside its path, then
    commit() moves every one into place in a burst of renames, with Ctrl-C and SIGTERM held off until it is done.
    Leaving the block without a commit (an error, a full disk, Ctrl-C) removes the temporaries and changes nothing.
    """

    def __init__(self):
        self.staged, self.removed = [], []  # [(temporary, target)], [target]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for temporary, _ in self.staged:
            temporary.unlink(missing_ok=True)
        self.staged = []

    def write(self, path, write):
        """Stage write(temporary_path) for path; the new file keeps the permissions of the one it replaces."""
        target = output_target(path)
        self.refuse_twice(target)
        try:  # before the work: a folder it cannot make or write (root's included) fails now, and in these words
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = temporary_beside(target)
            temporary.touch()
        except OSError as error:
            raise OutputError(f"cannot write into {target.parent}: {error.strerror or error}") from None
        self.staged.append((temporary, target))
        try:
            write(temporary)
        except OSError as error:
            raise OutputError(f"cannot write {target}: {error.strerror or error}") from None
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        if target.exists():
            os.chmod(temporary, stat.S_IMODE(target.stat().st_mode))

    def remove(self, path):
        """Stage the removal of path (a previous run's output that this run does not replace)."""
        target = output_target(path)
        self.refuse_twice(target)
        if target.exists():
            self.removed.append(target)

    def refuse_twice(self, target):
        """One change to a path a set: a second write would share the first's temporary, and a removal would take
        away what was written, each after part of the set had landed."""
        if target in {staged for _, staged in self.staged} | set(self.removed):
            raise ValueError(f"{target} is staged twice in one set of outputs")

    def commit(self):
        folders = {target.parent for _, target in self.staged} | {target.parent for target in self.removed}
        with folders_locked(folders), signals_held() as held:  # a Ctrl-C while it waits for the lock saves nothing
            for temporary, target in self.staged:
                os.replace(temporary, target)
            for target in self.removed:
                target.unlink(missing_ok=True)
            self.staged, self.removed = [], []
        if held:
            raise KeyboardInterrupt("interrupted after the outputs were saved")


@contextmanager
def folders_locked(folders):
    """An exclusive lock on each folder itself (flock: no lock file), taken in a fixed order, so that two runs
    committing into one folder at once land one whole set after the other, never a mix of the two. Without
    fcntl (Windows) nothing is locked."""
    with ExitStack() as stack:
        for folder in sorted(folders) if fcntl else ():
            descriptor = os.open(folder, os.O_RDONLY)
            stack.callback(os.close, descriptor)  # closing it releases the lock
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield


@contextmanager
def signals_held(signals=(signal.SIGINT, signal.SIGTERM)):
    """Record SIGINT and SIGTERM instead of acting on them inside the block (main thread only: elsewhere the
    block runs as it is); yields the list of those that arrived. A SIGTERM is delivered again after the block."""
    held = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    previous = {number: signal.signal(number, lambda number, _: held.append(number)) for number in signals}
    try:
        yield held
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if signal.SIGTERM in held:
        os.kill(os.getpid(), signal.SIGTERM)


def atomic_write(path, write):
    """Call write(temporary_path), then move the finished file onto path in one step.

    A run killed at any moment leaves either the old file or the new one, never a part of either.
    """
    with Outputs() as outputs:
        outputs.write(path, write)
        outputs.commit()


def write_text(path, text):
    atomic_write(path, text_writer(text))


def write_json(path, value):
    atomic_write(path, json_writer(value))


def write_results(folder, name, results, table):
    """A benchmark's or a study's NAME.json (results) and NAME.md (table) in folder, together or not at all."""
    with Outputs() as outputs:
        outputs.write(Path(folder) / f"{name}.json", json_writer(results))
        outputs.write(Path(folder) / f"{name}.md", text_writer(table))
        outputs.commit()


def text_writer(text):
    return lambda temporary: Path(temporary).write_text(text)


def json_writer(value):
    return text_writer(json.dumps(value, indent=2) + "\n")


METADATA_KEY = "mnist_cnn"  # this project's entry in the root module's _metadata


def save_model(model, path, trained_with=None):
    atomic_write(path, model_writer(model, trained_with))


def model_writer(model, trained_with=None):
    """A write(path) for the model's state dict, described (architecture, input steps, temperature, any
    energy threshold) and, given trained_with (numerics.numerics), with what its training computed in and on what."""
    source = model.state_dict()
    state = OrderedDict((name, tensor.detach().cpu()) for name, tensor in source.items())
    state._metadata = source._metadata
    state._metadata[""][METADATA_KEY] = {
        "architecture": {**model.spec, "body": list(model.spec["body"])},
        "contrast_stretch": model.contrast_stretch,
        "deskew": model.deskew,
        "view_margin": model.view_margin,
        "temperature": float(model.temperature),
        **({"energy_threshold": float(model.energy_threshold)} if model.energy_threshold is not None else {}),
        **({"trained_with": trained_with} if trained_with else {}),
    }
    return lambda temporary: torch.save(state, temporary)


# A model under the parameter budget takes about 100 KB; a file, or the tensors it unpacks to, far beyond that
# is refused before torch reads it (a 1 MB zip can unpack to gigabytes).
MAX_MODEL_BYTES = 64 * 2**20


# torch.load's words for a pickle that holds more than tensors, and for a zip archive without torch's records.
NOT_SAVED_BY_TORCH = ("weights only load failed", "failed locating file data.pkl")


def saved_by_torch(path):
    """Whether the file is in one of torch.save's formats: a pickle, or a zip archive holding a data.pkl (one too
    damaged to list counts). A file that is not (text, JSON, an image, another zip) is no model file, whatever
    torch.load fails with; one that is and does not load is damaged."""
    with path.open("rb") as file:
        head = file.read(4)
    if head.startswith(b"\x80"):  # a pickle's protocol byte: the format before torch 1.6
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") for name in archive.namelist())
    except zipfile.BadZipFile:
        return head == b"PK\x03\x04"  # a zip archive's start, its end missing: truncated


def no_file_to_read(path, train_command):
    """Why a model path that is no regular file holds no model: a link that leads nowhere, a device or pipe (which
    a run refuses to replace: training one there is no advice), or nothing at all (train_command PATH makes one)."""
    if os.path.lexists(path) and not os.path.exists(path):
        return f"{path} is a symbolic link that leads nowhere; give the model file itself"
    if os.path.exists(path):
        return f"{path} is not a regular file (a device, a pipe or a socket), not a model file"
    return f"no model file at {path}; train one with: {train_command} {path}"


def load_state_dict(path):
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a model file")
    if not path.is_file():
        raise CheckpointError(no_file_to_read(path, "python main.py --out"))
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"cannot read {path}: permission denied")
    check_size(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise CheckpointError(f"cannot read {path}: permission denied") from None
    except Exception as error:  # noqa: BLE001  torch.load raises whatever its unpickler or zip reader meets
        message = str(error).lower()
        if "unsupported global" in message:  # the unpickler met a class or function to import and call
            raise CheckpointError(
                f"{path} holds pickled code or objects, not only tensors; refused to load it"
            ) from None
        if not saved_by_torch(path) or any(sign in message for sign in NOT_SAVED_BY_TORCH):
            export = " (an export: give the .pth it was made from)" if path.suffix in (".onnx", ".pt2") else ""
            raise CheckpointError(f"{path} is not a model file{export}: torch.load reads no tensors from it") from None
        raise CheckpointError(f"{path} is corrupt or truncated ({type(error).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise CheckpointError(f"{path} holds NaN or infinite weights; refused to load it")
    return state


def check_size(path):
    """Refuse a file, or a zip archive's unpacked members (torch.save writes one), over MAX_MODEL_BYTES."""
    limit = f"over the {MAX_MODEL_BYTES // 2**20} MB a model file of this project can be; refused to load it"
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise CheckpointError(f"{path} is {path.stat().st_size / 2**20:,.0f} MB, {limit}")
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        return  # not a zip: torch.load says what it is
    if unpacked > MAX_MODEL_BYTES:
        raise CheckpointError(f"{path} unpacks to {unpacked / 2**20:,.0f} MB, {limit}")


def load_model(path, views=True):
    """The MNISTModel the file at path describes (or, for an older file, the preset its layers match), with its
    weights and temperature, in eval mode; with views False, it reads each image once whatever the file says."""
    state = load_state_dict(path)
    root = getattr(state, "_metadata", {}).get("", {})
    if not isinstance(root, dict):
        raise CheckpointError(f"{path} describes its model wrongly: its metadata is not a mapping")
    described = root.get(METADATA_KEY)
    model = described_model(path, described) if described else preset_model(path, state)
    expected = model.state_dict()
    wrong = [name for name, tensor in state.items() if name in expected and tensor.dtype != expected[name].dtype]
    if wrong:
        name = wrong[0]
        raise CheckpointError(
            f"{path}: {name} holds {str(state[name].dtype).removeprefix('torch.')} values where the model's are "
            f"{str(expected[name].dtype).removeprefix('torch.')}; refused to load it"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise CheckpointError(f"{path}: its weights do not fit the architecture it describes, {model.arch}") from None
    if not views:
        model.view_margin = 0.0
    # The layout training reads in (train.train_and_evaluate): a third faster to read the suite than the default's.
    return model.to(memory_format=torch.channels_last).eval()


def described_model(path, described):
    try:
        spec = architecture(described["architecture"])
        stretch, temperature = described["contrast_stretch"], described["temperature"]
        deskew = described.get("deskew", False)  # files written before the model deskewed do not say
        view_margin = described.get("view_margin", 0.0)  # nor before it viewed: they read each image once
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} describes its model wrongly: {error}") from None
    if not isinstance(stretch, bool):
        raise CheckpointError(f"{path} describes its model wrongly: contrast_stretch {stretch!r}")
    try:  # as a --config file's recipe is checked; a file of before the slant limit says only whether (limit 1)
        deskew = SLANT_LIMIT * deskew if isinstance(deskew, bool) else checked(TrainConfig, "deskew", deskew)
        view_margin = checked(TrainConfig, "view_margin", view_margin)
        temperature = checked(TrainConfig, "temperature", temperature)
        energy_threshold = checked(TrainConfig, "energy_threshold", described.get("energy_threshold"))
    except ValueError as error:
        raise CheckpointError(f"{path} describes its model wrongly: {error}") from None
    model = MNISTModel(spec, stretch, deskew, view_margin)
    model.temperature, model.energy_threshold = temperature, energy_threshold
    return model


def preset_model(path, state):
    shapes = {name: tuple(tensor.shape) for name, tensor in state.items()}
    for arch in (*ARCHITECTURES, *FORMER_ARCHITECTURES.values()):
        model = MNISTModel(arch, deskew=0, view_margin=0)  # a bare state dict comes from before both
        if shapes == {name: tuple(t.shape) for name, t in model.state_dict().items()}:
            return model
    raise CheckpointError(
        f"{path} is from a different architecture: its layers match none of {', '.join(ARCHITECTURES)}"
    )
