"""Every training hyperparameter in one place: the recipe, its augmentation, and their presets.

Training's command-line options and the checks of a --config file are both derived from TrainConfig
and FIELDS below, so the two cannot disagree. Nothing here imports torch: `--help` reads this module.
"""

import argparse
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import get_args

from errors import InputError

# Each architecture: a contrast stretch, a stem, a 4x4 convolution with stride 2 (28x28 -> 14x14),
# then the body, as output channels of 3x3 convolutions (padding 1) with "M" for a 2x2 max-pool
# (14 -> 7 -> 3), then the head, a 3x3 convolution without padding (3x3 -> 1x1), and a 1x1
# convolution to the 10 logits (model.py builds them).
# Written STEM/BODY/HEAD on the command line (--arch 16/16,32,M,32,M/24), so that any architecture the
# project can build, such as one tune found, is one option away; a checkpoint carries its own.
# Each preset is an architecture and the recipe (preset_recipe) it trains with: a tune study chose the two together,
# and the default's widths were set after, on CPUs, to multiples of 16, which AVX2, AVX-512 and AMX kernels all block
# evenly (docs/plateau.md).
ARCHITECTURES = {
    "default": {"stem": 16, "body": (16, "M", 48, "M"), "head": 32},  # 23,850 parameters; docs/plateau.md
    "compact": {"stem": 8, "body": (8, 12, "M", 24, "M"), "head": 16},  # 7,922 parameters; docs/tune-compact
}
# The presets' layouts before the architecture search: a model file saved before checkpoints described their
# model is recognised by its layers' shapes, these included; and the benchmark trains the recipes of that
# time (FORMER_LAYOUT_RECIPES) on them, as they shipped.
FORMER_ARCHITECTURES = {
    "default": {"stem": 16, "body": (16, 32, "M", 32, "M"), "head": 24},  # 23,786 parameters
    "compact": {"stem": 8, "body": (8, 16, "M", 20, "M"), "head": 16},  # 7,922 parameters
}
PARAMETER_BUDGETS = {"default": 25_000, "compact": 8_000}  # what each preset must stay under, searched or not
POOL, POOLS = "M", 2  # the body's max-pools: exactly two take 14x14 to 3x3, which the head needs
MAX_WIDTH = 512  # channels of any one layer: far beyond any model under a parameter budget of this size


def architecture(value):
    """The {stem, body, head} that value names or describes: a preset name, STEM/BODY/HEAD, or such a mapping
    (as a checkpoint stores it). Raises ValueError saying what is wrong, in the words it was given."""
    given = value
    if isinstance(value, str):
        value = ARCHITECTURES.get(value) or _parse_notation(value)
    if not isinstance(value, dict) or set(value) != {"stem", "body", "head"}:
        raise ValueError(f"an architecture has a stem, a body and a head, got {value!r}")
    body = value["body"]
    if (
        not isinstance(body, list | tuple)
        or body.count(POOL) != POOLS
        or any(before == POOL for before, layer in zip((POOL, *body), body, strict=False) if layer == POOL)
        or not all(_is_width(width) for width in (value["stem"], value["head"], *(w for w in body if w != POOL)))
    ):
        raise ValueError(
            f"architecture {given!r}: stem, head and the body's layers are widths from 1 to {MAX_WIDTH}, "
            f"and the body holds exactly {POOLS} {POOL!r} (max-pools), each after a width"
        )
    return {"stem": value["stem"], "body": tuple(body), "head": value["head"]}


def _parse_notation(text):
    parts = text.split("/")
    if len(parts) != 3:
        raise ValueError(
            f"unknown architecture {text!r}: name a preset ({', '.join(ARCHITECTURES)}) "
            "or write STEM/BODY/HEAD, such as 16/16,32,M,32,M/24"
        )
    stem, body, head = parts
    return {"stem": _number(stem), "body": [_number(w) for w in body.split(",")], "head": _number(head)}


def _number(text):
    return int(text) if text.isdigit() else text  # anything else is left for the checks to refuse


def _is_width(value):
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WIDTH


def architecture_name(spec):
    """The preset's name if spec is one, else its STEM/BODY/HEAD notation."""
    notation = f"{spec['stem']}/{','.join(map(str, spec['body']))}/{spec['head']}"
    return next((name for name, preset in ARCHITECTURES.items() if preset == spec), notation)


def add_architecture_option(parser):
    parser.add_argument(
        "--arch",
        type=architecture_type,
        default="default",
        help=f"model: a preset ({', '.join(ARCHITECTURES)}) or STEM/BODY/HEAD widths, "
        "such as 16/16,32,M,32,M/24 (default: default)",
    )


def architecture_type(text):
    try:
        architecture(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


# The most the model's deskewing shears an image upright (model.Deskew), as the tangent of the slant it takes out:
# 1 is 45 degrees, a bound on a sane slant rather than a tuned number (every limit from 0.3 to 2 read the same on
# validation, 0 reads 0.2 points lower; docs/plateau.md).
SLANT_LIMIT = 1.0

# Below this margin between its two highest logits, the model reads an image again through test-time views
# (model.MNISTModel.viewed). Chosen on the validation split (seeds 0-4): the least margin that gives every seed the
# whole gain of viewing every image, clean and under the suite, for 2.5 % of clean digits viewed (docs/plateau.md).
VIEW_MARGIN = 1.0

MAX_NOISE = 0.25  # strongest Gaussian noise of the augmentation: std as a fraction of the pixel range


@dataclass(frozen=True)
class Augmentation:
    """Random changes applied to each training image, each drawing its own amounts from these ranges."""

    degrees: float = 5.0
    translate: float = 0.05
    scale: float = 0.05
    stroke: float = 0.0
    resolution: float = 0.0
    noise: float = 0.0
    clean_tail: float = 0.0


DEFAULT_AUGMENT = "robust"
AUGMENTATIONS = {
    # Found by `python main.py tune` on 5,000 images held out from the training set, never on the test
    # set (docs/tuning.md): stroke jitter and noise on about half the images carry the gain under
    # corruption, shifts of up to 12 % keep translate within a point of the earlier recipe, and the
    # unaugmented last 60 % of the steps give back the clean accuracy they cost.
    "robust": Augmentation(
        degrees=14.3, translate=0.121, scale=0.0635, stroke=0.559, resolution=0.0208, noise=0.539, clean_tail=0.6
    ),
    "mild": Augmentation(),  # the recipe before the robustness work: small affine changes only
    "none": None,
}


@dataclass
class TrainConfig:
    """Every training hyperparameter, with its default; FIELDS says what each means and what it may be.

    The defaults are the default preset's recipe: trial 5716 of the tune study in docs/tune-gpu
    (docs/tuning.md), rounded to three significant figures, chosen on the validation split held out of
    the training set.
    """

    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.983
    momentum: float = 0.826
    weight_decay: float = 9.26e-4
    warmup: float = 0.186
    label_smoothing: float = 0.179
    seed: int = 0
    augmentation: Augmentation | None = AUGMENTATIONS[DEFAULT_AUGMENT]  # None: no augmentation
    deskew: float = SLANT_LIMIT  # 0: the model does not deskew (the recipes of before it did)
    view_margin: float = VIEW_MARGIN  # 0: the model reads each image once (the recipes of before the views did)
    temperature: float = 0.371  # median of seeds 0-4 (0.367 to 0.378) fitted on the validation split, views, fp32
    energy_threshold: float | None = None  # None: "not sure" reads the confidence alone (docs/nondigits.md)
    nondigits: float = 0.1
    nondigit_weight: float = 0.0  # off: configs/nondigits.json turns it on, with its threshold (docs/nondigits.md)
    lookahead: float = 0.0  # off: 0.95 lifted the suite on validation, not on the test set (docs/plateau.md)
    bn_bias_lr: float = 1.0  # 8 lifted the suite 1.15 points on the test set; thin strokes fell 0.86 (docs/plateau.md)
    max_steps: int | None = None
    log_every: int = 100


FIELDS = {  # field -> (meaning, lowest, highest) for TrainConfig and Augmentation; None: unbounded
    "epochs": ("passes over the training set", 1, None),
    "batch_size": ("images per step", 1, 60_000),  # at most the training set: one step an epoch
    "lr": ("peak learning rate of the OneCycle schedule", 1e-9, None),
    "momentum": (
        "Nesterov momentum of SGD at the ends of the cycle; it moves to 0.85 as the learning rate peaks",
        0,
        0.999,
    ),
    "weight_decay": ("L2 penalty per step, scaled by the learning rate", 0, None),
    "warmup": ("fraction of all steps spent rising to the peak learning rate", 0.01, 0.99),  # OneCycle needs both sides
    "label_smoothing": ("probability mass spread evenly over the 10 classes", 0, 0.99),
    "seed": (
        (
            "random seed of the weights, shuffling and augmentation: the same seed, --precision, --threads and "
            "machine give bit-identical weights on a CPU; another precision, thread count or CPU family gives other "
            "weights, of the same quality (docs/floors.md)"
        ),
        0,
        2**64 - 1,  # what torch.manual_seed takes
    ),
    "temperature": ("probabilities are softmax(logits / temperature); fitted on the validation split", 0.05, 20),
    "energy_threshold": (
        (
            'above this energy, -T logsumexp(logits / T), an answer is "not sure" whatever its confidence; fitted '
            "on the validation split of a recipe that trains on non-digits; null: the confidence alone decides"
        ),
        -1e3,
        1e3,
    ),
    "deskew": (
        (
            "the most the model's deskewing shears each image upright, as the tangent of the slant it takes out (1 is "
            "45 degrees), in training and in every use of the model; 0 turns it off"
        ),
        0,
        4,
    ),
    "view_margin": (
        (
            "in every use of the model, an image whose two highest logits lie less than this apart is read again "
            "as the mean of it and its four 1-pixel shifts (test-time views); 0 reads every image once"
        ),
        0,
        100,
    ),
    "nondigits": ("non-digit images drawn into each batch, as a fraction of its digits (outliers.py)", 0, 1),
    "nondigit_weight": (
        (
            "weight of the energy-margin loss that lifts the non-digit images' energy above the digits' "
            "(Liu et al. 2020); 0 draws none"
        ),
        0,
        None,
    ),
    "lookahead": (
        (
            "per-step decay of lookahead's slow copy of the model (weights and BatchNorm statistics), which the "
            "training restarts from every 5 steps (train.Lookahead); 0 turns it off, airbench uses 0.95"
        ),
        0,
        0.999,
    ),
    "bn_bias_lr": (
        "the BatchNorm biases' learning rate as a multiple of the rest's (their gradients scaled); 1: plain SGD",
        1e-3,
        1e3,
    ),
    "max_steps": ("stop after this many steps", 1, None),
    "log_every": ("steps between log lines", 1, None),
    "degrees": ("rotation, +/- degrees", 0, 180),
    "translate": ("shift, +/- fraction of the image side", 0, 1),
    "scale": ("zoom, +/- fraction", 0, 0.99),
    "stroke": ("fraction of images whose ink is grown or shrunk by up to a pixel", 0, 1),
    "resolution": ("fraction of images scanned small (7 to 16 pixels a side), then scaled back up", 0, 1),
    "noise": (f"fraction of images given Gaussian pixel noise, each its own std up to {MAX_NOISE}", 0, 1),
    "clean_tail": ("fraction of the final training steps that see unaugmented images", 0, 1),
}
OPTIONS = (
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "warmup",
    "label_smoothing",
    "deskew",
    "view_margin",
    "nondigit_weight",
    "lookahead",
    "bn_bias_lr",
    "seed",
)

CONFIGS = Path(__file__).with_name("configs")  # recipes as files, each as --config reads it (configs/README.md)
PRESET_RECIPE_FILES = {"compact": "compact"}  # a preset's own recipe; the default's is TrainConfig's defaults


def recipe_file(name):
    """The recipe in configs/NAME.json, read as --config reads it (over TrainConfig's defaults)."""
    return read_config(CONFIGS / f"{name}.json", TrainConfig())


def preset_recipe(arch):
    """The recipe that trains arch (a name, notation or mapping) by default: a preset's own, else the default's."""
    name = PRESET_RECIPE_FILES.get(architecture_name(architecture(arch)))
    return recipe_file(name) if name else TrainConfig()


RECIPES = {  # the benchmark's recipes: (configs/ file, None for each preset's own recipe; whether the model's
    # input is contrast-stretched; the recipes of before the model deskewed say so in their files: "deskew": 0)
    "robust": (None, True),  # this project's default
    "hand-found": ("hand-tuned", True),  # the recipe tuned by hand, before tune's search
    "mild": ("affine-augmentation", True),  # the default's numbers, small affine augmentation only
    "earlier": ("hand-tuned-affine-augmentation", False),  # the baseline: before the robustness work
    "nondigits": ("nondigits", True),  # the default trained on non-digits too, with its energy threshold
}
DEFAULT_RECIPE, BASELINE_RECIPE = "robust", "earlier"  # the benchmark compares the first against the second
FORMER_LAYOUT_RECIPES = ("hand-found", "earlier")  # trained the presets' former layouts (FORMER_ARCHITECTURES)


def recipe_model(arch, recipe):
    """(architecture, training config, contrast stretch) that the benchmark's recipe trains for arch: the default
    recipe is each preset's own; a recipe of before the architecture search trains a preset's former layout."""
    name, contrast_stretch = RECIPES[recipe]
    config = preset_recipe(arch) if name is None else recipe_file(name)
    if recipe in FORMER_LAYOUT_RECIPES:
        arch = FORMER_ARCHITECTURES.get(architecture_name(architecture(arch)), arch)  # a preset, named or written out
    return arch, config, contrast_stretch


# Below this calibrated confidence (%), predict and the page say "not sure". Chosen on the validation split; the
# default flags 1.3-1.6 % of test digits and 66-73 % of its wrong answers (seeds 0-4, docs/calibration.md).
MIN_CONFIDENCE = 90.0
# A model trained on non-digits is also "not sure" above the energy that flags this % of its validation digits:
# 1 % flagged letters 88 % and shapes 77 % in docs/nondigits.md's study 6, 2 % flagged more, with less kept right.
ENERGY_FLAGGED = 1.0
VALIDATION_SIZE = 5_000  # training images held out to choose hyperparameters on (tune, --validation)
VALIDATION_SEED = 0  # fixes which ones, so every trial and every worker holds out the same images
SUITE_SEED = 0  # seed of the corruption suite: its images are a function of the seed and the images alone
DRY_RUN_STEPS = 10  # training steps of a smoke run (--dry-run, tune --quick)
QUICK_STEPS = 5  # training steps per run in a smoke run of bench (--quick)
QUICK_SUITE_IMAGES = 500  # images under the corruption suite in a smoke run of bench or tune (--quick)
RUN_CONTROLS = ("seed", "max_steps", "log_every")  # TrainConfig fields that belong to one run, not to a recipe


class ConfigError(InputError):
    """A --config file that cannot be read or holds something TrainConfig does not take."""


KINDS = {int: "an integer", float: "a finite number"}


def field_types(kind):
    """{field: the types it may hold} of the dataclass kind."""
    return {field.name: get_args(field.type) or (field.type,) for field in fields(kind)}


def checked(kind, name, value):
    """value as the type of kind's field `name`, within FIELDS' bounds; raises ValueError saying why not."""
    types = field_types(kind)
    if name not in types:
        raise ValueError(f"unknown field {name!r}; {kind.__name__} has {', '.join(types)}")
    if value is None and type(None) in types[name]:
        return None
    wanted = int if int in types[name] else float
    unusable = isinstance(value, bool) or not isinstance(value, int | float)
    if unusable or value != wanted(value) or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"{name} must be {KINDS[wanted]}, got {value!r}")
    _, low, high = FIELDS[name]
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {bounds}, got {value!r}")
    return wanted(value)


def option_type(name):
    """argparse's type for TrainConfig's field `name`: the same checks as a --config file's."""
    wanted = int if int in field_types(TrainConfig)[name] else float

    def parse(text):
        try:
            value = wanted(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {KINDS[wanted]}, got {text!r}") from None
        try:
            return checked(TrainConfig, name, value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"{name} ")) from None

    return parse


def given_path(kind):
    """argparse's type for an option naming a file or folder (kind): not an empty path. Python reads "" as the
    current folder, and an option given a variable left unset (--config "$RECIPE") would otherwise pass for one
    not given, or work in whatever folder the command ran from."""

    def parse(text):
        if not text:
            raise argparse.ArgumentTypeError(f"an empty path names no {kind}")
        return text

    return parse


def add_config_options(parser):
    """--config FILE and one option per OPTIONS field; their default (None) means the file's, else the preset's."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=given_path("file"),
        help="JSON file of TrainConfig fields (config.py), such as a recipe tune found; the fields it leaves "
        "out keep --arch's recipe, and options given on the command line override it",
    )
    for name in OPTIONS:
        help = f"{FIELDS[name][0]} (default: {preset_values(name)})"
        parser.add_argument("--" + name.replace("_", "-"), type=option_type(name), help=help)


def preset_values(name):
    """The default of the recipe field `name`, and where another preset's own recipe differs, that preset's."""
    default = getattr(TrainConfig(), name)
    presets = {preset: getattr(preset_recipe(preset), name) for preset in PRESET_RECIPE_FILES}
    return f"{default}" + "".join(f", {value} for --arch {arch}" for arch, value in presets.items() if value != default)


def config_from_args(args):
    """The recipe of --arch, with the fields of --config and then the options given on the command line applied;
    raises ConfigError."""
    return recipe_from(preset_recipe(args.arch), args.config, {name: getattr(args, name) for name in OPTIONS})


def recipe_from(base, config_file, given):
    """base with the fields of the --config file (None: none), then the given fields that are not None; raises
    ConfigError."""
    if config_file:
        base = read_config(config_file, base)
    return replace(base, **{name: value for name, value in given.items() if value is not None})


def recipe_json(config):
    """The recipe in config (every field but the run controls) as --config reads it."""
    recipe = {key: value for key, value in asdict(config).items() if key not in RUN_CONTROLS}
    return json.dumps(recipe, indent=2) + "\n"


def _first_line(error):
    return (str(error).strip() or type(error).__name__).splitlines()[0]


class FieldTwice(ValueError):
    """A JSON object that names a field more than once."""


def repeated(values):
    """The values that occur more than once, each once, in the order they first occur."""
    return list(dict.fromkeys(value for value in values if values.count(value) > 1))


def _fields_once(pairs):
    """json's object_pairs_hook: the object as a dict, or FieldTwice where a name repeats: json.loads keeps the last
    silently, so an edit to the first would change nothing."""
    twice = repeated([name for name, _ in pairs])
    if twice:
        raise FieldTwice(f"{', '.join(twice)} given more than once")
    return dict(pairs)


MAX_CONFIG_BYTES = 2**20  # a recipe file holds under a kilobyte; reading stops here (/dev/zero never ends)


def read_config(path, base):
    """The recipe base with the fields that the JSON file at path sets; "augmentation" is an object of
    Augmentation fields (missing ones take Augmentation's defaults), a preset name, or null."""
    try:
        with open(path, "rb") as file:  # a pipe, as from <(...), reads too
            text = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read --config {path}: {error.strerror}") from None
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"--config {path} holds over {MAX_CONFIG_BYTES:,} bytes, more than any recipe file")
    try:
        values = json.loads(text, object_pairs_hook=_fields_once)
    except FieldTwice as error:
        raise ConfigError(f"--config {path}: {error}") from None
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, an integer of 4,300+ digits
        raise ConfigError(f"--config {path} is not JSON this project reads: {_first_line(error)}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path} must hold a JSON object of TrainConfig fields")
    augmentation = values.pop("augmentation", base.augmentation)
    try:
        values = {name: checked(TrainConfig, name, value) for name, value in values.items()}
        if isinstance(augmentation, dict):
            augmentation = Augmentation(**{k: checked(Augmentation, k, v) for k, v in augmentation.items()})
    except ValueError as error:
        raise ConfigError(f"--config {path}: {error}") from None
    if isinstance(augmentation, str) and augmentation in AUGMENTATIONS:
        augmentation = AUGMENTATIONS[augmentation]
    elif augmentation is not None and not isinstance(augmentation, Augmentation):
        raise ConfigError(f"--config {path}: augmentation must be an object, null or one of {list(AUGMENTATIONS)}")
    return replace(base, **values, augmentation=augmentation)
