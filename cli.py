"""Options that several commands share (device, data folder, model path) and the types they parse with.

Nothing here imports torch at module level: `python main.py COMMAND --help` answers without it.
"""

import argparse
import json
import math
import os
import re
from pathlib import Path

from config import KINDS, MIN_CONFIDENCE, given_path, option_type, repeated
from errors import InputError

DATA_DIR_ENV = "MNIST_DATA_DIR"
DEFAULT_DATA_DIR = "data"
CACHE_DIR_ENV = "MNIST_CACHE_DIR"
DEFAULT_MODEL_PATH = "models/mnist_model.pth"
RUN_RECORD = "metrics.json"  # a training run's figures, beside its model file, which it names (model_file)
ROBUSTNESS_REPORT = "robustness.json"  # `robustness`'s figures of the whole suite, beside the model it names (model)
EXPORT_FORMATS = ("onnx", "pt2")  # `export`'s formats, each also the suffix of its file


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Appends each option's default, except where there is none to show (flags, defaults told in words);
    keeps the description's and epilog's lines as written."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _number(text, kind):
    try:
        return kind(text)
    except ValueError:  # in a --config field's words: "1.5" is a number, not an integer
        raise argparse.ArgumentTypeError(f"must be {KINDS[kind]}, got {text!r}") from None


def positive(kind):
    """argparse's type for a finite number above 0 of kind (int or float)."""

    def parse(text):
        value = _number(text, kind)
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"must be {KINDS[kind]} greater than 0, got {text}")
        return value

    return parse


def port_number(text):
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1 to 65535)")
    return int(text)


def listen_address(text):
    """--host's type: not empty, which a socket binds to every interface (a variable left unset, --host "$HOST",
    would open the server to other machines)."""
    if not text:
        raise argparse.ArgumentTypeError(
            "an empty address listens on every interface, other machines' included; give 127.0.0.1 (this machine "
            "alone, the default) or 0.0.0.0 to open it to others"
        )
    return text


DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def device_name(text):
    """argparse's type for --device: the name's form only, so that a usage error answers before torch loads."""
    if not DEVICE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use auto, cpu, cuda, cuda:N or mps")
    return text


def resolve_device(name):
    """The torch.device for a --device name: 'auto' picks cuda, then mps, then cpu; a named one must be present."""
    import torch  # only once a command runs: --help and usage errors stay fast

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    device = torch.device(name)
    present = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not present[device.type] or (device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count()):
        raise InputError(f"argument --device: device {name!r} is not present on this machine")
    return device


def add_device_option(parser):
    parser.add_argument(
        "--device", type=device_name, default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"
    )


def add_precision_option(parser, nargs=None):
    from numerics import PRECISION_HELP, PRECISIONS

    default = ["auto"] if nargs else "auto"
    action = Distinct if nargs else None
    parser.add_argument(
        "--precision", nargs=nargs, choices=PRECISIONS, default=default, action=action, help=PRECISION_HELP
    )


def add_seeds_option(parser, default, help):
    parser.add_argument("--seeds", nargs="+", type=option_type("seed"), action=Distinct, default=default, help=help)


class Distinct(argparse.Action):
    """A list option whose values differ: a seed, model or precision given twice would run twice and count twice
    in the means and spreads of what it measures."""

    def __call__(self, parser, namespace, values, option_string=None):
        twice = repeated(values)
        if twice:
            parser.error(f"argument {option_string}: {', '.join(map(str, twice))} given more than once")
        setattr(namespace, self.dest, values)


def usable_cpus():
    """The CPUs this process may run on (its affinity where the OS tells it, else all of the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def at_most_cpus(text):
    """argparse's type for --threads and --workers: 1 to the CPUs this process may use. More only slow the work
    down (256 threads on 2 cores made a training step 18 times slower), and far more crash torch's thread pool."""
    value, cpus = _number(text, int), usable_cpus()
    if not 1 <= value <= cpus:
        raise argparse.ArgumentTypeError(f"must be between 1 and {cpus}, the CPUs this process may use; got {text}")
    return value


def add_threads_option(parser):
    parser.add_argument(
        "--threads",
        type=at_most_cpus,
        help=f"CPU threads for torch, at most the CPUs (default: every core, {usable_cpus()} here); give each of "
        "several runs at once its share: two that each take every core run many times slower",
    )


def apply_threads(threads):
    """torch's intra-op threads (and with them OpenMP's) for this process; None leaves torch's default."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def add_data_option(parser):
    _add_folder_option(parser, "--data-dir", "folder holding MNIST/raw; downloaded there if missing", DATA_DIR_ENV,
                       f"./{DEFAULT_DATA_DIR}")  # fmt: skip


def add_cache_option(parser):
    _add_folder_option(parser, "--cache-dir", "folder for the generated corruption suite, reused by later runs",
                       CACHE_DIR_ENV, "$XDG_CACHE_HOME/mnist-cnn, else ~/.cache/mnist-cnn")  # fmt: skip


def _add_folder_option(parser, option, about, env, fallback):
    parser.add_argument(option, type=given_path("folder"), help=f"{about} (default: ${env}, else {fallback})")


def add_run_options(parser):
    """--device, --precision, --threads, --data-dir and --cache-dir: where a training command runs, and on what."""
    add_device_option(parser)
    add_precision_option(parser)
    add_threads_option(parser)
    add_data_option(parser)
    add_cache_option(parser)


def resolve_run_options(args):
    """(device, data folder, cache folder) of add_run_options' options, with --threads applied to this process."""
    device = resolve_device(args.device)
    apply_threads(args.threads)
    return device, resolve_data_dir(args.data_dir), resolve_cache_dir(args.cache_dir)


def resolve_data_dir(data_dir=None):
    """The data folder: the option if given, else $MNIST_DATA_DIR, else ./data."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def resolve_cache_dir(cache_dir=None):
    """The cache folder: the option if given, else $MNIST_CACHE_DIR, else the user's cache folder."""
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-cnn"
    return Path(cache_dir or os.environ.get(CACHE_DIR_ENV) or user_cache)


# Output paths are checked while parsing: a command would otherwise do its work (a training run, a benchmark)
# and only then fail to save it, or save it where the user did not mean.


def output_file(example=None):
    """--out's type: a file's path (example: a file name to suggest), not one that names a folder (it is one, or
    ends in a separator), nor one inside a file."""

    def parse(text):
        given_path("file")(text)
        if text.endswith(("/", os.sep)) or Path(text).is_dir():
            such_as = f", such as {Path(text) / example}" if example else ""
            raise argparse.ArgumentTypeError(f"{text} names a folder; give a file's path{such_as}")
        check_folders_above(Path(text))
        return text

    return parse


def output_folder(text):
    """--out-dir's type: a folder, or a path where one can be made: not a file, nor one inside a file."""
    given_path("folder")(text)
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    check_folders_above(Path(text))
    return text


def check_folders_above(path):
    """The nearest part of path above it that exists must be a folder."""
    above = path.absolute().parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise argparse.ArgumentTypeError(f"{above} is a file, so {path} cannot be made")


def refuse_outputs_in_the_dataset(args):
    """An output (--out, --out-dir, --cache-dir) inside the dataset's own folder, DATA_DIR/MNIST, is refused: it
    could replace one of MNIST's files, and every later run reads that folder. Only for a command that reads it.
    The cache folder is checked where it is, given or not ($MNIST_CACHE_DIR, the user's cache)."""
    if not hasattr(args, "data_dir"):
        return
    for option in ("out", "out_dir", "cache_dir"):
        _refuse_option_in_the_dataset(args, option)
    if hasattr(args, "cache_dir") and args.cache_dir is None:
        cache = resolve_cache_dir()
        source = f"${CACHE_DIR_ENV}" if os.environ.get(CACHE_DIR_ENV) else "the default"
        refuse_in_the_dataset(cache, f"the cache folder {cache} ({source})", args.data_dir)


def _refuse_option_in_the_dataset(args, option):
    path = getattr(args, option, None)
    if path is not None:
        refuse_in_the_dataset(path, f"--{option.replace('_', '-')} {path}", args.data_dir)


def default_output(args, option, path):
    """Give args.option (out, out_dir), where none was given, the command's default path, refused inside the dataset
    as main.py refuses the options given: the default is set after that check ran, so it alone is checked here."""
    setattr(args, option, path)
    if hasattr(args, "data_dir"):
        _refuse_option_in_the_dataset(args, option)


def outputs_owner(folder):
    """The name of the model file that the outputs in folder describe (metrics.json, the plots and `robustness`'s
    report): metrics.json's model_file (the default model's name for a metrics.json written before that field), else
    the model robustness.json names; None where the folder holds no readable record of either."""
    run = read_record(Path(folder) / RUN_RECORD)
    if run is not None:
        return run.get("model_file", Path(DEFAULT_MODEL_PATH).name)
    model = (read_record(Path(folder) / ROBUSTNESS_REPORT) or {}).get("model")
    return Path(model).name if isinstance(model, str) else None


def read_record(path):
    """The JSON object at path, or None where there is none to read."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def refuse_another_models_outputs(model, what, advice):
    """InputError if the run outputs beside model describe another model file, still there: writing `what` would
    replace them and leave that model with another's figures, or with none."""
    folder, name = Path(model).parent, Path(model).name
    owner = outputs_owner(folder)
    if owner is not None and owner != name and (folder / owner).exists():
        raise InputError(
            f"the figures in {folder} ({RUN_RECORD}, the plots, {ROBUSTNESS_REPORT}) describe {folder / owner}; "
            f"{what} would replace them. {advice}"
        )


def refuse_in_the_dataset(path, what, data_dir):
    """InputError if path lies inside DATA_DIR/MNIST; `what` names it in the message."""
    # realpath, not Path.resolve: on a loop of symbolic links it gives the path back where resolve raises
    dataset = Path(os.path.realpath(resolve_data_dir(data_dir) / "MNIST"))
    if Path(os.path.realpath(path)).is_relative_to(dataset):
        raise InputError(
            f"{what} lies inside {dataset}, MNIST's own folder, which this project only reads (and downloads into); "
            "write it elsewhere"
        )


def add_model_option(parser):
    parser.add_argument(
        "--model",
        type=given_path("file"),
        default=DEFAULT_MODEL_PATH,
        help=f"saved state dict (default: {DEFAULT_MODEL_PATH})",
    )


def add_views_option(parser):
    parser.add_argument(
        "--no-views",
        dest="views",
        action="store_false",
        help="read each image once, without the test-time views the model file turns on (its view_margin): "
        "faster, and what a model of before the views read (default: the model file's views)",
    )


def add_min_confidence_option(parser):
    parser.add_argument(
        "--min-confidence",
        type=percentage,
        default=MIN_CONFIDENCE,
        metavar="PERCENT",
        help="below this calibrated confidence, say the model is not sure and give its best guesses (a model "
        "trained on non-digits is also not sure above the energy threshold its file keeps) (default: %(default)s)",
    )


def percentage(text):
    value = _number(text, float)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be a percentage from 0 to 100, got {text}")
    return value


def add_json_option(parser):
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
