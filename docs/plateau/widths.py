"""The first body convolution's width: the default's 20 channels against widths that oneDNN's CPU kernels block
evenly (multiples of 8; docs/plateau/training_profile.py shows why). Each seed trains every width in turn with the
default recipe (its views, as the model reads in use), on the training images less the 5,000 held out; the widths take
turns at running first, as a process's first run pays its warm-up. One JSON row
per seed and width: parameters, training seconds, the held-out accuracy, the temperature fitted there, and the
suite on their first 2,000 with the entries nearest real scans.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/widths.py 0,1,2,3,4 20,24,16 --precision fp32
    python docs/plateau/widths.py 0,1,2,3,4 20,24,16 --precision bf16

A width may carry changes to the recipe, each `+FIELD=VALUE` of TrainConfig (a row then names them under "recipe"):

    python docs/plateau/widths.py 0,1,2,3,4 24+lr=0.786,24+weight_decay=5.56e-4 --precision fp32
"""

import sys
from dataclasses import replace
from pathlib import Path
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from views import print_rows_in_turn

from config import TrainConfig, architecture
from evaluation import accuracy_by_corruption, evaluate_robustness
from train import train_and_evaluate

WATCHED = ("low_resolution_8", "thin_strokes", "scale", "stripe", "canny_edges")  # nearest real scans; the two worst


def with_width(width):
    """The default architecture with its first body convolution `width` channels wide."""
    spec = architecture("default")
    return {**spec, "body": (width, *spec["body"][1:])}


def variant(text):
    """(width, {field: value}) from WIDTH[+FIELD=VALUE...]: the recipe's fields as floats."""
    width, *changes = text.split("+")
    return int(width), recipe_changes(changes)


def recipe_changes(changes):
    """{field: value} from FIELD=VALUE texts: TrainConfig's fields, as floats."""
    return {field: float(value) for field, value in (change.split("=") for change in changes)}


def scored(arch, config, precision, data, suite, suite_labels):
    """arch trained with config in precision, and read: its parameters, training seconds, held-out accuracy, the
    temperature fitted there, and the suite's mean with the WATCHED entries."""
    result = train_and_evaluate(arch, config, torch.device("cpu"), data, precision=precision)
    model, metrics = result.model, result.metrics
    report = evaluate_robustness(model, suite, suite_labels, metrics["accuracy"])
    corrupted = accuracy_by_corruption(report)
    return {
        "precision": metrics["numerics"]["precision"],
        "parameters": metrics["parameters"],
        "train_s": metrics["train_seconds"],
        "acc": round(metrics["accuracy"], 3),
        "temperature": metrics["temperature"],
        "suite": round(report["mean_corruption_accuracy"], 3),
        **{name: round(corrupted[name], 2) for name in WATCHED},
    }


def patched_row(target, attribute, settings):
    """A row function for print_rows_in_turn: each setting (a name in settings) trains the default recipe with
    target.attribute patched to settings[name], and is scored; one row of {seed, setting, figures}."""

    def row(seed, setting, precision, data, suite, suite_labels):
        if setting not in settings:
            raise SystemExit(f"unknown setting {setting!r}: {', '.join(settings)}")
        with patch.object(target, attribute, settings[setting]):
            figures = scored("default", replace(TrainConfig(), seed=seed), precision, data, suite, suite_labels)
        return {"seed": seed, "setting": setting, **figures}

    return row


def width_rows(arch_of, key):
    """A row function for print_rows_in_turn: each setting, WIDTH[+FIELD=VALUE...], trains arch_of(WIDTH) with the
    recipe so changed, and is scored; one row of {seed, key: WIDTH, recipe if changed, figures}."""

    def row(seed, setting, precision, data, suite, suite_labels):
        width, changes = variant(setting)
        config = replace(TrainConfig(), seed=seed, **changes)
        figures = scored(arch_of(width), config, precision, data, suite, suite_labels)
        return {"seed": seed, key: width, **({"recipe": changes} if changes else {}), **figures}

    return row


if __name__ == "__main__":
    print_rows_in_turn(width_rows(with_width, "width"), sys.argv[1:])
