"""Test-time views on the validation split: each seed's default model read as it is, and as the mean of the logits
of the image and its four 1-pixel shifts (edge-padded). One JSON row per seed and way of reading. With --test,
the confirmation: trained on the whole training set, read on the test set and the whole suite.

    python docs/plateau/views.py 0 1 2 3 4 > docs/plateau/views.jsonl
    python docs/plateau/views.py --test 0 1 2 3 4 > docs/plateau/views-test.jsonl
"""

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
import torch.nn.functional as F

from cli import resolve_cache_dir, resolve_data_dir
from config import TrainConfig
from corruptions import labelled_suite
from data import normalize
from evaluation import predict_logits
from numerics import PRECISIONS
from train import load_data, train_and_evaluate

SHIFTS = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]
SUITE_IMAGES = 2000
# Every study's base: the default reading each image once, with the temperature fitted for that reading (the
# model's own views are what these studies measured before they were adopted, and are measured here again).
ONE_READING = replace(TrainConfig(), view_margin=0.0, temperature=0.376)


def shifted(images, dy, dx):
    """The images moved by (dy, dx) pixels, the edge repeated into the space they leave."""
    return torch.roll(F.pad(images, (1, 1, 1, 1), mode="replicate"), (dy, dx), (2, 3))[..., 1:-1, 1:-1]


def logits(model, images, views):
    if not views:
        return predict_logits(model, images).float()
    return torch.stack([predict_logits(model, shifted(images, dy, dx)).float() for dy, dx in SHIFTS]).mean(0)


def accuracy(model, images, labels, views):
    return round((logits(model, images, views).argmax(1) == labels).float().mean().item() * 100, 2)


def study_data(test=False):
    """The data (load_data's, the validation split unless test) and its suite: (data, suite, suite labels), the
    suite on the validation images' first SUITE_IMAGES, or on every test image."""
    data = load_data(resolve_data_dir(), torch.device("cpu"), validation=not test)
    images, labels = data["eval"]
    return data, *labelled_suite(images, labels, resolve_cache_dir(), None if test else SUITE_IMAGES)


def scores(model, images, labels, suite, suite_labels, views=False):
    """{acc, suite, each corruption's accuracy}: the model read on the clean images and under the suite."""
    corrupted = {name: accuracy(model, normalize(c), suite_labels, views) for name, c in suite.items()}
    mean = round(sum(corrupted.values()) / len(corrupted), 2)
    return {"acc": accuracy(model, images, labels, views), "suite": mean, **corrupted}


def print_row(lever, seed, config, data, suite, suite_labels, views=False, precision="auto"):
    """Train the default on data["train"] with config in precision, timed, and print one JSON row: the lever, the
    seed, the seconds, then its scores (read through the views if views)."""
    start = time.perf_counter()
    result = train_and_evaluate("default", config, torch.device("cpu"), data, precision=precision)
    seconds, model = round(time.perf_counter() - start, 2), result.model
    row = {"lever": lever, "seed": seed, "precision": result.metrics["numerics"]["precision"], "secs": seconds}
    images, labels = data["eval"]
    print(json.dumps({**row, **scores(model, images, labels, suite, suite_labels, views)}), flush=True)


def study_arguments(argv):
    """([seeds], [settings], test, precision) from a study's command line: SEEDS,... [SETTINGS,...] [--test]
    [--precision auto|bf16|fp32]."""
    parser = argparse.ArgumentParser()
    parser.add_argument("seeds", type=lambda text: [int(seed) for seed in text.split(",")])
    parser.add_argument("settings", nargs="?", default=[], type=lambda text: text.split(","))
    parser.add_argument("--test", action="store_true", help="train on the whole training set, read the test set")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="of training (default: auto)")
    args = parser.parse_args(argv)
    return args.seeds, args.settings, args.test, args.precision


def in_turn(settings, turn):
    """settings rotated so that each comes first in its turn: a process's first run pays its warm-up."""
    first = turn % len(settings)
    return settings[first:] + settings[:first]


def print_rows_in_turn(row, argv):
    """A study's command line (study_arguments) run: each seed runs every setting, each first in its turn, printing
    row(seed, setting, precision, data, suite, suite_labels) as one JSON line; with --test, trained on the whole
    training set and read on the test set and the whole suite."""
    seeds, settings, test, precision = study_arguments(argv)
    data, suite, suite_labels = study_data(test)
    for turn, seed in enumerate(seeds):
        for setting in in_turn(settings, turn):
            print(json.dumps(row(seed, setting, precision, data, suite, suite_labels)), flush=True)


def main(seeds, test=False):
    data, suite, suite_labels = study_data(test)
    images, labels = data["eval"]
    for seed in seeds:
        model = train_and_evaluate("default", replace(ONE_READING, seed=seed), torch.device("cpu"), data).model
        for views in (False, True):
            row = {"seed": seed, "views": "replicate" if views else "none"}
            print(json.dumps({**row, **scores(model, images, labels, suite, suite_labels, views)}), flush=True)


if __name__ == "__main__":
    test = "--test" in sys.argv[1:]
    main([int(seed) for seed in sys.argv[1:] if seed != "--test"], test)
