"""Command line: `python main.py` trains, evaluates and saves; subcommands use a saved model.

python main.py [options]                    train one epoch, evaluate, save models/mnist_model.pth
python main.py evaluate --model PATH        accuracy, per-class accuracy, confusion matrix
python main.py predict IMAGE [IMAGE ...]    the digit in each of your own image files
python main.py export --format onnx         a model file that runs without this project
python main.py robustness --model PATH      accuracy under each corruption of the suite
python main.py bench [--quick]              presets over seeds 0-4 against the classic baseline
python main.py serve --model PATH          a page to draw digits on, and a JSON API, at http://127.0.0.1:8000
python main.py tune [--trials N]            search the recipe on Optuna, on data held out of the training set
"""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from checkpoint import DEFAULT_MODEL_PATH, CheckpointError, add_model_option, load_model
from corruptions import SUITE_SEED
from data import (
    AUGMENTATIONS,
    DEFAULT_AUGMENT,
    VALIDATION_SIZE,
    DataError,
    add_data_option,
    load_split,
    resolve_data_dir,
)
from export import DEFAULT_PATHS
from model import ARCHITECTURES
from test import evaluate, format_report
from train import (
    DEFAULT_RECIPE,
    DRY_RUN_STEPS,
    EARLIER_RECIPE,
    RECIPES,
    AccuracyBelowGate,
    ConfigError,
    TrainConfig,
    TrainingDiverged,
    read_config,
)

# The commands' own modules (training, plots, the corruption suite, the benchmark, the exporters,
# predict) are imported inside each command function: `--help` and `predict` start in a fraction of
# the time when matplotlib, torchvision and the rest stay unloaded.

DEFAULTS = TrainConfig()
TUNE_TRIALS, TUNE_QUICK_TRIALS = 60, 2
SERVE_BENCH_IMAGES = 1000  # distinct test digits that bench --serve sends, in turn


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends each option's default, except where there is none to show (flags, defaults told in words)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default:" in action.help:
            return action.help
        return super()._get_help_string(action)


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


def port_number(text):
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1 to 65535)")
    return int(text)


def parse_device(name):
    """'auto' picks cuda, then mps, then cpu; a named device must exist on this machine."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    present = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not present.get(device.type, False) or (
        device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count()
    ):
        raise argparse.ArgumentTypeError(f"device {name!r} is not present on this machine")
    return device


def add_device_option(parser):
    parser.add_argument(
        "--device", type=parse_device, default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"
    )


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train a <25k-parameter CNN on MNIST for one epoch, evaluate it and save it.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--arch", choices=ARCHITECTURES, default="default", help="model preset")
    parser.add_argument("--epochs", type=positive(int), default=DEFAULTS.epochs, help="passes over the training set")
    parser.add_argument("--batch-size", type=positive(int), default=DEFAULTS.batch_size, help="images per step")
    parser.add_argument("--lr", type=positive(float), default=DEFAULTS.lr, help="peak OneCycle learning rate")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed; same seed, same weights on CPU")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="JSON file of TrainConfig fields (train.py), such as a recipe tune found; "
        "options given on the command line override it",
    )
    parser.add_argument(
        "--validation",
        action="store_true",
        help=f"train on the training images less {VALIDATION_SIZE:,} held out, and evaluate on those "
        "instead of the test set (what tune scores)",
    )
    add_device_option(parser)
    add_data_option(parser)
    parser.add_argument("--out", default=DEFAULT_MODEL_PATH, help="model path; metrics.json is written beside it")
    parser.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default=DEFAULT_AUGMENT,
        help="augmentation preset: robust (stroke, resolution and affine jitter), "
        "mild (the earlier recipe: small affine changes only) or none",
    )
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=95.0,
        help="fail (exit 1, nothing saved) below this accuracy in %% (on the test set, or the validation split)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help=f"smoke run: {DRY_RUN_STEPS} training steps, no accuracy gate"
    )
    commands = parser.add_subparsers(
        dest="command",
        metavar="{predict,evaluate,robustness,export,bench,serve,tune}",
        help="use a saved model instead of training (see COMMAND --help)",
    )

    predict_parser = commands.add_parser(
        "predict", help="predict the digit in your own PNG, JPEG or BMP files", formatter_class=HelpFormatter
    )
    predict_parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files, any size, colour or grey")
    add_model_option(predict_parser)
    predict_parser.add_argument("--json", action="store_true", help="print the results as JSON")

    evaluate_parser = commands.add_parser(
        "evaluate", help="accuracy, per-class accuracy and confusion matrix", formatter_class=HelpFormatter
    )
    add_model_option(evaluate_parser)
    add_data_option(evaluate_parser)
    evaluate_parser.add_argument("--json", action="store_true", help="print the results as JSON")

    robustness_parser = commands.add_parser(
        "robustness",
        help="accuracy under each corruption; writes robustness.json and .png beside the model",
        formatter_class=HelpFormatter,
    )
    add_model_option(robustness_parser)
    add_data_option(robustness_parser)
    robustness_parser.add_argument("--seed", type=int, default=SUITE_SEED, help="seed of the corrupted images")
    robustness_parser.add_argument("--json", action="store_true", help="print the results as JSON")

    export_parser = commands.add_parser(
        "export", help="write the model as ONNX or a torch.export program (pt2)", formatter_class=HelpFormatter
    )
    export_parser.add_argument(
        "--format",
        required=True,
        type=export_format,
        metavar="{onnx,pt2}",
        help="file format: onnx, or pt2 for torch.export.load",
    )
    add_model_option(export_parser)
    export_parser.add_argument(
        "--out",
        help="output path (default: " + ", ".join(f"{path} for {fmt}" for fmt, path in DEFAULT_PATHS.items()) + ")",
    )

    bench_parser = commands.add_parser(
        "bench", help="benchmark the presets against the classic baseline", formatter_class=HelpFormatter
    )
    bench_parser.add_argument(
        "--arch", nargs="+", choices=ARCHITECTURES, default=list(ARCHITECTURES), help="presets to benchmark"
    )
    bench_parser.add_argument(
        "--recipe",
        nargs="+",
        choices=RECIPES,
        default=[DEFAULT_RECIPE, "hand-found", EARLIER_RECIPE],
        help="training recipes: robust (the default), hand-found (the default before tune), mild (--augment mild) "
        "or earlier (the default before the robustness work: mild, without the contrast stretch)",
    )
    bench_parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="one run per seed")
    bench_parser.add_argument(
        "--quick", action="store_true", help="smoke run: a few training steps per run; the figures mean nothing"
    )
    bench_parser.add_argument("--no-classic", action="store_true", help="skip the classic baseline")
    bench_parser.add_argument(
        "--serve",
        action="store_true",
        help="instead: predictions per second of `serve` over HTTP against in-process predict, on --model",
    )
    add_model_option(bench_parser)
    bench_parser.add_argument("--clients", type=positive(int), default=16, help="concurrent HTTP clients with --serve")
    bench_parser.add_argument(
        "--requests", type=positive(int), default=4000, help="HTTP predictions in all with --serve"
    )
    bench_parser.add_argument("--out-dir", default="models", help="folder for benchmark.json and benchmark.md")
    add_device_option(bench_parser)
    add_data_option(bench_parser)

    serve_parser = commands.add_parser(
        "serve", help="a web page to draw digits on, and a JSON API (FastAPI, uvicorn)", formatter_class=HelpFormatter
    )
    add_model_option(serve_parser)
    serve_parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 opens it to other machines"
    )
    serve_parser.add_argument("--port", type=port_number, default=8000, help="TCP port")
    serve_parser.add_argument(
        "--max-upload-mb", type=positive(float), default=5.0, help="larger uploads are refused (HTTP 413)"
    )

    tune_parser = commands.add_parser(
        "tune",
        help="search the training recipe on Optuna, scored on data held out of the training set",
        formatter_class=HelpFormatter,
    )
    tune_parser.add_argument("--arch", choices=ARCHITECTURES, default="default", help="model preset")
    tune_parser.add_argument(
        "--trials",
        type=positive(int),
        help=f"complete trials the study should hold, all workers together (default: {TUNE_TRIALS}, "
        f"{TUNE_QUICK_TRIALS} with --quick)",
    )
    tune_parser.add_argument(
        "--timeout", type=positive(float), help="stop starting trials after this many seconds (default: no limit)"
    )
    tune_parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="one training run per seed per trial")
    tune_parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage URL shared by the workers, such as postgresql://user@host/db "
        "(default: the journal file OUT_DIR/tune.journal)",
    )
    tune_parser.add_argument("--study", default="mnist", help="study name; the same name joins the same study")
    tune_parser.add_argument("--out-dir", default="models/tune", help="folder for tune.md, tune.json and the plots")
    tune_parser.add_argument(
        "--quick", action="store_true", help="smoke run: a few training steps per run; the figures mean nothing"
    )
    tune_parser.add_argument("--show", action="store_true", help="only write and print the report of the study")
    add_device_option(tune_parser)
    add_data_option(tune_parser)
    return parser


def train_command(args):
    from train_pipeline import run

    base = args.config or DEFAULTS
    config = replace(
        base,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        augmentation=AUGMENTATIONS[args.augment] if args.augment else base.augmentation,
        max_steps=DRY_RUN_STEPS if args.dry_run else base.max_steps,
    )
    run(
        args.arch,
        config,
        args.device,
        resolve_data_dir(args.data_dir),
        args.out,
        min_accuracy=0.0 if args.dry_run else args.min_accuracy,
        validation=args.validation,
    )


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


def predict_command(args):
    from predict import format_result, predict_files

    results = predict_files(load_model(args.model), args.images)
    print(json.dumps(results, indent=2) if args.json else "\n".join(map(format_result, results)))
    failed = sum("error" in result for result in results)
    if failed:
        print(f"{failed} of {len(results)} files could not be predicted", file=sys.stderr)
        return 1
    return 0


def robustness_command(args):
    from plots import save_figure
    from robustness import corrupted_test_set, evaluate_robustness, format_table, robustness_figure
    from train_pipeline import write_json

    model = load_model(args.model)
    images, labels = load_split(resolve_data_dir(args.data_dir), "test")
    suite = corrupted_test_set(images, args.seed)
    clean_accuracy = evaluate(model, images, labels)["accuracy"]
    report = {"model": str(args.model), "seed": args.seed, **evaluate_robustness(model, suite, labels, clean_accuracy)}
    folder = Path(args.model).parent
    write_json(folder / "robustness.json", report)
    save_figure(robustness_figure(model, images, labels, suite), folder / "robustness.png")
    print(
        json.dumps(report, indent=2)
        if args.json
        else f"{format_table(report)}\nwrote robustness.json and robustness.png in {folder}"
    )


def export_format(name):
    if name == "torchscript":
        raise argparse.ArgumentTypeError(
            "torchscript is no longer written (PyTorch deprecated it): use --format pt2, "
            "a torch.export program that torch.export.load runs"
        )
    if name not in DEFAULT_PATHS:
        raise argparse.ArgumentTypeError(f"unknown format {name!r}; choose onnx or pt2")
    return name


def export_command(args):
    from export import export

    out = args.out or DEFAULT_PATHS[args.format]
    info = export(load_model(args.model), args.format, out)
    print(f"wrote {out}")
    print("\n".join(f"  {key}: {value}" for key, value in info.items()))


def bench_command(args):
    if args.serve:
        from serve_bench import serve_benchmark

        serve_benchmark(
            args.model, resolve_data_dir(args.data_dir), args.out_dir, SERVE_BENCH_IMAGES, args.requests, args.clients
        )
        return
    from bench import run_benchmark

    run_benchmark(
        args.arch,
        args.recipe,
        args.seeds,
        args.device,
        resolve_data_dir(args.data_dir),
        args.out_dir,
        quick=args.quick,
        classic=not args.no_classic,
    )


def serve_command(args):
    from serve import serve

    serve(args.model, args.host, args.port, args.max_upload_mb)


def tune_command(args):
    from tune import TuneError, tune

    args.trials = args.trials or (TUNE_QUICK_TRIALS if args.quick else TUNE_TRIALS)
    try:
        tune(args, DEFAULTS, args.device, resolve_data_dir(args.data_dir))
    except TuneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the study keeps its finished trials; the same command continues it", file=sys.stderr)
        return 130
    return 0


COMMANDS = {
    None: train_command,
    "predict": predict_command,
    "evaluate": evaluate_command,
    "robustness": robustness_command,
    "export": export_command,
    "bench": bench_command,
    "serve": serve_command,
    "tune": tune_command,
}


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        try:
            config = read_config(args.config)
        except ConfigError as error:
            parser.exit(2, f"error: {error}\n")
        # The file's values become the options' defaults, so options given on the command line still win;
        # no --augment means the file's augmentation.
        parser.set_defaults(
            epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed, augment=None
        )
        args = parser.parse_args(argv)
        args.config = config
    try:
        return COMMANDS[args.command](args)
    except (DataError, CheckpointError) as error:
        parser.exit(2, f"error: {error}\n")
    except (TrainingDiverged, AccuracyBelowGate) as error:
        parser.exit(1, f"error: {error}\n")
    except OSError as error:  # an output that cannot be written: a folder in the way, no permission, a full disk
        parser.exit(1, f"error: {error}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted: nothing was saved\n")


if __name__ == "__main__":
    sys.exit(main())
