"""Command line: `python main.py` trains, evaluates and saves; subcommands use a saved model.

    python main.py [options]                    train one epoch, evaluate, save models/mnist_model.pth
    python main.py evaluate --model PATH        accuracy, per-class accuracy, confusion matrix
"""
import argparse
import json
import sys
from dataclasses import replace

import torch

from checkpoint import CheckpointError, load_model
from data import DataError, load_split, resolve_data_dir
from model import ARCHITECTURES
from test import evaluate, format_report
from train import TrainConfig, TrainingDiverged
from train_pipeline import AccuracyBelowGate, run

DEFAULTS = TrainConfig()
DEFAULT_MODEL_PATH = "models/mnist_model.pth"
DRY_RUN_STEPS = 10


def positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value
    return parse


def parse_device(name):
    """'auto' picks cuda, then mps, then cpu; a named device must exist on this machine."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    present = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not present.get(device.type, False) or (device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count()):
        raise argparse.ArgumentTypeError(f"device {name!r} is not present on this machine")
    return device


def add_data_option(parser):
    parser.add_argument("--data-dir", help="folder holding MNIST/raw; downloaded there if missing "
                        "(default: $MNIST_DATA_DIR, else ./data)")


def add_model_option(parser):
    parser.add_argument("--model", default=DEFAULT_MODEL_PATH, help=f"saved state dict (default: {DEFAULT_MODEL_PATH})")


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train a <25k-parameter CNN on MNIST for one epoch, evaluate it and save it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--arch", choices=ARCHITECTURES, default="default", help="model preset")
    parser.add_argument("--epochs", type=positive(int), default=DEFAULTS.epochs, help="passes over the training set")
    parser.add_argument("--batch-size", type=positive(int), default=DEFAULTS.batch_size, help="images per step")
    parser.add_argument("--lr", type=positive(float), default=DEFAULTS.lr, help="peak OneCycle learning rate")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed; same seed, same weights on CPU")
    parser.add_argument("--device", type=parse_device, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    add_data_option(parser)
    parser.add_argument("--out", default=DEFAULT_MODEL_PATH, help="model path; metrics.json is written beside it")
    parser.add_argument("--no-augment", action="store_true", help="train without random rotation/shift/zoom")
    parser.add_argument("--min-accuracy", type=float, default=95.0,
                        help="fail (exit 1, nothing saved) below this test accuracy in %%")
    parser.add_argument("--dry-run", action="store_true",
                        help=f"smoke run: {DRY_RUN_STEPS} training steps, no accuracy gate")
    commands = parser.add_subparsers(dest="command", metavar="{evaluate}",
                                     help="use a saved model instead of training (see COMMAND --help)")

    evaluate_parser = commands.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix",
                                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_option(evaluate_parser)
    add_data_option(evaluate_parser)
    evaluate_parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def train_command(args):
    config = replace(DEFAULTS, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                     augmentation=None if args.no_augment else DEFAULTS.augmentation,
                     max_steps=DRY_RUN_STEPS if args.dry_run else None)
    run(args.arch, config, args.device, resolve_data_dir(args.data_dir), args.out,
        min_accuracy=0.0 if args.dry_run else args.min_accuracy)


def evaluate_command(args):
    model = load_model(args.model)
    metrics = evaluate(model, *load_split(resolve_data_dir(args.data_dir), "test"))
    if args.json:
        print(json.dumps(metrics, indent=2))
        return
    print(format_report(metrics))
    print("confusion matrix (rows: true digit, columns: predicted)")
    print("     " + "".join(f"{c:>6}" for c in range(10)))
    for digit, row in enumerate(metrics["confusion_matrix"]):
        print(f"{digit:>5}" + "".join(f"{n:>6}" for n in row))


COMMANDS = {None: train_command, "evaluate": evaluate_command}


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (DataError, CheckpointError) as error:
        parser.exit(2, f"error: {error}\n")
    except (TrainingDiverged, AccuracyBelowGate) as error:
        parser.exit(1, f"error: {error}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted: nothing was saved\n")


if __name__ == "__main__":
    sys.exit(main())
