"""`python main.py bench MODE`: what this project measures of itself, one mode each, each with only its own options.

    accuracy      the presets over several seeds against the classic baseline (accuracy_bench.py); the default
    end-to-end    wall time of `python main.py` against the original design's scripts (end_to_end_bench.py)
    concurrency   runs and tune workers sharing the cores (concurrency_bench.py)
    calibration   a recipe's calibration and its "not sure" rule (calibration_bench.py)
    serve         predictions per second over HTTP (serve_bench.py)
    abuse         the server under large, decompression-heavy and slow uploads (abuse_bench.py)

`bench [options]` is `bench accuracy [options]`. Results go to JSON and a Markdown table in --out-dir. Each mode's
module is imported when it runs: `bench MODE --help` answers without torch.
"""

import argparse
import sys

from cli import (
    Distinct,
    HelpFormatter,
    add_cache_option,
    add_data_option,
    add_device_option,
    add_min_confidence_option,
    add_model_option,
    add_precision_option,
    add_seeds_option,
    add_threads_option,
    apply_threads,
    at_most_cpus,
    default_output,
    output_folder,
    positive,
    resolve_cache_dir,
    resolve_data_dir,
    resolve_device,
)
from config import (
    ARCHITECTURES,
    BASELINE_RECIPE,
    DEFAULT_RECIPE,
    QUICK_STEPS,
    QUICK_SUITE_IMAGES,
    RECIPES,
    TrainConfig,
    architecture_type,
    given_path,
    option_type,
    recipe_from,
)
from errors import InputError

SERVE_BENCH_IMAGES = 1000  # distinct test digits that bench serve sends, in turn
QUICK_SERVE_IMAGES = 50  # with --quick
DEFAULT_OUT_DIR = "models"  # where a bench's JSON and Markdown go, unless --quick
QUICK_TRAINING = f"{QUICK_STEPS} training steps per run, the suite on {QUICK_SUITE_IMAGES} test images"
DEFAULT_MODE = "accuracy"
# The modes as options, before they were subcommands: `bench --serve` still runs `bench serve`, with a note.
FORMER_OPTIONS = {("--serve", "--abuse"): "abuse", ("--serve",): "serve", ("--end-to-end",): "end-to-end"}
FORMER_OPTIONS |= {("--concurrency",): "concurrency", ("--calibration",): "calibration"}


def add_accuracy_arguments(parser):
    parser.add_argument(
        "--arch",
        nargs="+",
        type=architecture_type,
        action=Distinct,
        default=list(ARCHITECTURES),
        help="architectures to benchmark: presets or STEM/BODY/HEAD (default: the presets)",
    )
    parser.add_argument(
        "--recipe",
        nargs="+",
        choices=RECIPES,
        action=Distinct,
        default=[DEFAULT_RECIPE, "hand-found", BASELINE_RECIPE],
        help="training recipes: robust (the default), hand-found (the default before tune), mild (--augment mild), "
        "earlier (the default before the robustness work: mild, without the contrast stretch) or nondigits (the "
        "default trained on non-digits too, configs/nondigits.json)",
    )
    add_seeds_option(parser, [0, 1, 2, 3, 4], "one run per seed")
    add_quick_option(parser, QUICK_TRAINING)
    parser.add_argument("--no-classic", action="store_true", help="skip the classic baseline")
    add_device_option(parser)
    add_precision_option(parser, nargs="+")
    add_cache_option(parser)


def add_end_to_end_arguments(parser):
    add_repeats_option(parser)
    add_quick_option(parser, "dry runs")


def add_concurrency_arguments(parser):
    add_repeats_option(parser)
    parser.add_argument("--workers", type=at_most_cpus, default=2, help="tune workers against one")
    add_quick_option(parser, "dry runs, and 2 tune trials")


def add_calibration_arguments(parser):
    add_seeds_option(parser, [0, 1, 2, 3, 4], "one run per seed")
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=given_path("file"),
        help="the recipe to train, as `python main.py --config` reads it (configs/nondigits.json: the model trained on "
        "non-digits, its temperature and energy threshold); the options below override its fields (default: the "
        "default recipe)",
    )
    parser.add_argument(
        "--nondigit-weight",
        type=option_type("nondigit_weight"),
        help="train with non-digit images at this weight (default: the default recipe's, "
        f"{TrainConfig().nondigit_weight}); give the recipe's temperature and energy threshold to match with "
        "--temperature and --energy-threshold, or the whole recipe with --config",
    )
    parser.add_argument("--temperature", type=option_type("temperature"), help="the recipe's temperature")
    parser.add_argument(
        "--energy-threshold", type=option_type("energy_threshold"), help="the recipe's energy threshold (default: none)"
    )
    add_quick_option(parser, QUICK_TRAINING)
    add_min_confidence_option(parser)
    add_device_option(parser)
    add_cache_option(parser)


def add_serve_arguments(parser):
    add_model_option(parser)
    parser.add_argument("--clients", type=positive(int), default=16, help="concurrent HTTP clients")
    parser.add_argument("--requests", type=positive(int), default=4000, help="HTTP predictions in all")
    add_quick_option(parser, f"{QUICK_SERVE_IMAGES} distinct images")


def add_abuse_arguments(parser):
    add_model_option(parser)
    add_quick_option(parser, "fewer uploads of each kind")


def add_repeats_option(parser):
    parser.add_argument("--repeats", type=positive(int), default=3, help="alternated runs of each")


def add_quick_option(parser, what):
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {what}; the figures mean nothing")


def run_accuracy(args, data_dir):
    from accuracy_bench import run_benchmark

    run_benchmark(
        args.arch,
        args.recipe,
        args.seeds,
        resolve_device(args.device),
        data_dir,
        args.out_dir,
        resolve_cache_dir(args.cache_dir),
        quick=args.quick,
        classic=not args.no_classic,
        precisions=args.precision,
    )


def run_end_to_end(args, data_dir):
    from end_to_end_bench import end_to_end_benchmark

    end_to_end_benchmark(data_dir, args.out_dir, args.repeats, args.quick)


def run_concurrency(args, data_dir):
    from concurrency_bench import concurrency_benchmark

    concurrency_benchmark(data_dir, args.out_dir, args.repeats, args.workers, args.quick)


def run_calibration(args, data_dir):
    from calibration_bench import calibration_benchmark

    calibration_benchmark(
        args.seeds,
        resolve_device(args.device),
        data_dir,
        args.out_dir,
        resolve_cache_dir(args.cache_dir),
        args.min_confidence,
        QUICK_STEPS if args.quick else None,
        QUICK_SUITE_IMAGES if args.quick else None,
        calibration_recipe(args),
        args.config,
    )


def calibration_recipe(args):
    """The --config recipe (else the default's), with bench calibration's --nondigit-weight, --temperature and
    --energy-threshold where given."""
    given = {name: getattr(args, name) for name in ("nondigit_weight", "temperature", "energy_threshold")}
    recipe = recipe_from(TrainConfig(), args.config, given)
    if recipe.energy_threshold is not None and not recipe.nondigit_weight:  # its report would name a rule not applied
        raise InputError("--energy-threshold needs --nondigit-weight above 0: a model trained on digits alone has none")
    return recipe


def run_serve(args, data_dir):
    from serve_bench import serve_benchmark

    images = QUICK_SERVE_IMAGES if args.quick else SERVE_BENCH_IMAGES
    serve_benchmark(args.model, data_dir, args.out_dir, images, args.requests, args.clients)


def run_abuse(args, data_dir):
    from abuse_bench import abuse_benchmark

    abuse_benchmark(args.model, data_dir, args.out_dir, args.quick)


MODES = {  # name -> (what it measures, its options, its run)
    "accuracy": (
        "the presets over several seeds against the classic baseline, clean and under the corruption suite",
        add_accuracy_arguments,
        run_accuracy,
    ),
    "end-to-end": (
        (
            "wall time of `python main.py` (first run without the suite cached, a second run with it) and of "
            "`--dry-run`, against the original design's train and test scripts, alternated, medians"
        ),
        add_end_to_end_arguments,
        run_end_to_end,
    ),
    "concurrency": (
        (
            "`python main.py` alone against two at once, with and without --threads sharing the cores, and tune's "
            "trials per minute with one worker against --workers"
        ),
        add_concurrency_arguments,
        run_concurrency,
    ),
    "calibration": (
        "calibration per seed, the default recipe's or a --config file's (ECE, NLL, the \"not sure\" rule, non-digits)",
        add_calibration_arguments,
        run_calibration,
    ),
    "serve": (
        "predictions per second of `serve` over HTTP against in-process predict, on --model",
        add_serve_arguments,
        run_serve,
    ),
    "abuse": (
        (
            "300 large uploads, 8 decompression-heavy PNGs and 50 slow clients at once against `serve` on --model, "
            "health and memory watched throughout, then SIGTERM mid-upload"
        ),
        add_abuse_arguments,
        run_abuse,
    ),
}


class ModeParser(argparse.ArgumentParser):
    """A mode's parser refuses what it does not take itself, so that the error names the mode
    (`main.py bench serve: error: unrecognized arguments: --seeds 3`), not only bench."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def add_arguments(parser):
    modes = parser.add_subparsers(
        dest="mode", metavar="MODE", title=f"modes (default: {DEFAULT_MODE})", parser_class=ModeParser
    )
    for name, (about, add_options, _) in MODES.items():
        mode = modes.add_parser(name, help=about, description=about, formatter_class=HelpFormatter)
        add_options(mode)
        mode.add_argument(
            "--out-dir",
            type=output_folder,
            help=f"folder for the benchmark's JSON and Markdown (default: {DEFAULT_OUT_DIR}; a --quick run keeps "
            "nothing unless given one: its figures would replace a real run's)",
        )
        add_threads_option(mode)
        add_data_option(mode)


def command_line(argv):
    """bench's arguments as its parser takes them: the default mode named where none is, and a former mode option
    (`--serve`) replaced by its mode, with a note."""
    for flags, mode in FORMER_OPTIONS.items():
        if set(flags) <= set(argv):
            print(f"note: `bench {' '.join(flags)}` is now `bench {mode}`", file=sys.stderr)
            return [mode, *(arg for arg in argv if arg not in flags)]
    if argv[:1] and (not argv[0].startswith("-") or argv[0] in ("-h", "--help")):
        return argv  # a mode, or a word that argparse refuses as none
    return [DEFAULT_MODE, *argv]


def run(args):
    from checkpoint import writable_folder

    if args.out_dir is None and not args.quick:
        default_output(args, "out_dir", DEFAULT_OUT_DIR)
    if args.out_dir is not None:
        writable_folder(args.out_dir)  # before the minutes of measuring, not after them
    apply_threads(args.threads)
    MODES[args.mode][2](args, resolve_data_dir(args.data_dir))
    if args.out_dir is None:
        print("quick run: nothing saved (give --out-dir to keep its figures)")
