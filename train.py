"""One-epoch training: the whole training set on the device, augmented per batch, OneCycle SGD."""

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import get_args

import torch
import torch.nn.functional as F
from tqdm import tqdm

from data import AUGMENTATIONS, DEFAULT_AUGMENT, Augmentation, augment


@dataclass
class TrainConfig:
    """Every training hyperparameter, with its default; main.py's options come from here.

    The defaults are trial 52 of the tune study in docs/tune (README, Tuning), rounded to three
    significant figures: chosen on the validation split held out of the training set.
    """

    epochs: int = 1
    batch_size: int = 64  # images per step
    lr: float = 0.184  # peak learning rate of the OneCycle schedule
    momentum: float = 0.949  # Nesterov momentum of SGD
    weight_decay: float = 4.07e-4  # L2 penalty per step, scaled by the learning rate
    warmup: float = 0.109  # fraction of all steps spent rising to the peak learning rate
    label_smoothing: float = 0.139  # probability mass spread evenly over the 10 classes
    seed: int = 0  # seeds the initial weights, the shuffling and the augmentation
    augmentation: Augmentation | None = AUGMENTATIONS[DEFAULT_AUGMENT]  # None: no augmentation
    max_steps: int | None = None  # stop early after this many steps (for --dry-run)
    log_every: int = 100  # steps between log lines


# The default before tune: the robustness work's hand-found recipe.
HAND_FOUND = TrainConfig(
    batch_size=128,
    lr=0.6,
    momentum=0.9,
    weight_decay=5e-4,
    warmup=0.25,
    label_smoothing=0.1,
    augmentation=Augmentation(translate=0.08, stroke=0.4, resolution=0.2, clean_tail=0.4),
)
RECIPES = {  # the benchmark's recipes: (training config, contrast stretch in the model)
    "robust": (TrainConfig(), True),  # this project's default
    "hand-found": (HAND_FOUND, True),  # the default before tune
    "mild": (replace(TrainConfig(), augmentation=AUGMENTATIONS["mild"]), True),  # `python main.py --augment mild`
    "earlier": (
        replace(HAND_FOUND, augmentation=AUGMENTATIONS["mild"]),
        False,
    ),  # the default before the robustness work
}
DEFAULT_RECIPE, EARLIER_RECIPE = "robust", "earlier"  # the benchmark compares the first against the second


DRY_RUN_STEPS = 10  # training steps of a smoke run (--dry-run, tune --quick)
RUN_CONTROLS = ("seed", "max_steps", "log_every")  # TrainConfig fields that belong to one run, not to a recipe


class ConfigError(Exception):
    """A --config file that cannot be read or holds something TrainConfig does not take."""


def recipe_json(config):
    """The recipe in config (every field but the run controls) as --config reads it."""
    recipe = {key: value for key, value in asdict(config).items() if key not in RUN_CONTROLS}
    return json.dumps(recipe, indent=2) + "\n"


def read_config(path):
    """TrainConfig's defaults with the fields that the JSON file at path sets; "augmentation" is an object of
    Augmentation fields (missing ones take Augmentation's defaults), a preset name, or null."""
    try:
        values = json.loads(Path(path).read_text())
    except OSError as error:
        raise ConfigError(f"cannot read --config {path}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"--config {path} is not JSON: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path} must hold a JSON object of TrainConfig fields")
    _check_fields(path, values, TrainConfig, skip=("augmentation",))
    if isinstance(values.get("augmentation"), dict):
        _check_fields(path, values["augmentation"], Augmentation)
        values["augmentation"] = Augmentation(**values["augmentation"])
    elif isinstance(values.get("augmentation"), str):
        if values["augmentation"] not in AUGMENTATIONS:
            raise ConfigError(f"--config {path}: augmentation must be an object, null or one of {list(AUGMENTATIONS)}")
        values["augmentation"] = AUGMENTATIONS[values["augmentation"]]
    return replace(TrainConfig(), **values)


LIMITS = {  # (lowest, highest) each field of a --config file may take; None: unbounded
    "epochs": (1, None),
    "batch_size": (1, None),
    "lr": (1e-9, None),
    "momentum": (0, 0.999),
    "weight_decay": (0, None),
    "warmup": (0.01, 0.99),  # OneCycle needs some steps on each side of the peak
    "label_smoothing": (0, 0.99),
    "max_steps": (1, None),
    "log_every": (1, None),
    "degrees": (0, 180),
    "translate": (0, 1),
    "scale": (0, 0.99),
    "stroke": (0, 1),
    "resolution": (0, 1),
    "clean_tail": (0, 1),
}


def _check_fields(path, values, kind, skip=()):
    """Every key is a field of the dataclass kind holding a number of its type within LIMITS, or null where allowed."""
    types = {field.name: get_args(field.type) or (field.type,) for field in fields(kind)}
    for key, value in values.items():
        if key not in types:
            raise ConfigError(f"--config {path}: unknown field {key!r}; {kind.__name__} has {', '.join(types)}")
        if key in skip or (value is None and type(None) in types[key]):
            continue
        wanted = int if int in types[key] else float
        if isinstance(value, bool) or not isinstance(value, int | float) or value != wanted(value):
            raise ConfigError(
                f"--config {path}: {key} must be {'an integer' if wanted is int else 'a number'}, got {value!r}"
            )
        low, high = LIMITS.get(key, (None, None))
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise ConfigError(f"--config {path}: {key} must be {bounds}, got {value!r}")
        values[key] = wanted(value)


class TrainingDiverged(Exception):
    """The loss stopped being a finite number."""


class AccuracyBelowGate(Exception):
    """The trained model missed --min-accuracy."""


def train(model, images, labels, config):
    """Train in place on images/labels (already on the model's device); return the per-step history."""
    device = images.device
    generator = torch.Generator(device=device).manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(images) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=config.warmup
    )
    augmentation = config.augmentation
    augmented_steps = round(total_steps * (1 - augmentation.clean_tail)) if augmentation else 0
    history, seen = [], 0
    model.train()
    with tqdm(total=total_steps, desc="train", unit="step", leave=False) as bar:
        for step in range(total_steps):
            if step % steps_per_epoch == 0:
                order = torch.randperm(len(images), device=device, generator=generator)
            batch = order[(step % steps_per_epoch) * config.batch_size :][: config.batch_size]
            x, y = images[batch], labels[batch]
            if augmentation and step < augmented_steps:
                x = augment(x, augmentation, generator)
            lr = schedule.get_last_lr()[0]
            loss, accuracy = train_step(model, optimizer, x, y, config.label_smoothing)
            schedule.step()
            seen += len(batch)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"training diverged: the loss became {loss} at step {step + 1}; try a lower --lr than {config.lr}"
                )
            history.append({"step": step + 1, "seen": seen, "loss": loss, "accuracy": accuracy, "lr": lr})
            bar.update()
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.1f}%")
            if (step + 1) % config.log_every == 0 or step + 1 == total_steps:
                recent = history[-config.log_every :]
                bar.write(
                    f"step {step + 1}/{total_steps}  loss {_mean(recent, 'loss'):.4f}  "
                    f"accuracy {_mean(recent, 'accuracy'):.2f}%  lr {lr:.4f}"
                )
    return history


def train_step(model, optimizer, x, y, label_smoothing=0.0):
    """One SGD step on a batch; returns its loss and accuracy (%) before the step."""
    logits = model(x.contiguous(memory_format=torch.channels_last))
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    accuracy = (logits.argmax(1) == y).float().mean() * 100
    return loss.item(), accuracy.item()


def _mean(rows, key):
    return sum(row[key] for row in rows) / len(rows)
