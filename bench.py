"""`python main.py bench`: this project's presets over several seeds against the classic baseline, in one
run, clean and under the corruption suite; its other modes live beside it: --end-to-end (end_to_end_bench.py),
--concurrency (concurrency_bench.py), --calibration (calibration_bench.py), --serve (serve_bench.py),
--serve --abuse (abuse_bench.py).

Results go to JSON and a Markdown table in --out-dir. Heavy modules are imported where they are used:
`bench --help` answers without torch.
"""

import platform
import resource
import statistics
from dataclasses import replace
from pathlib import Path

from cli import (
    add_cache_option,
    add_data_option,
    add_device_option,
    add_min_confidence_option,
    add_model_option,
    add_precision_option,
    add_threads_option,
    apply_threads,
    positive,
    resolve_cache_dir,
    resolve_data_dir,
)
from config import (
    ARCHITECTURES,
    DEFAULT_RECIPE,
    EARLIER_RECIPE,
    QUICK_STEPS,
    QUICK_SUITE_IMAGES,
    RECIPES,
    architecture,
    architecture_name,
    architecture_type,
    recipe_model,
)
from errors import InputError

SERVE_BENCH_IMAGES = 1000  # distinct test digits that bench --serve sends, in turn
QUICK_SERVE_IMAGES = 50  # with --quick
ROOT = Path(__file__).parent


def add_arguments(parser):
    parser.add_argument(
        "--arch",
        nargs="+",
        type=architecture_type,
        default=list(ARCHITECTURES),
        help="architectures to benchmark: presets or STEM/BODY/HEAD (default: the presets)",
    )
    parser.add_argument(
        "--recipe",
        nargs="+",
        choices=RECIPES,
        default=[DEFAULT_RECIPE, "hand-found", EARLIER_RECIPE],
        help="training recipes: robust (the default), hand-found (the default before tune), mild (--augment mild) "
        "or earlier (the default before the robustness work: mild, without the contrast stretch)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="one run per seed")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_STEPS} training steps per run, the suite on {QUICK_SUITE_IMAGES} test images (with "
        f"--serve: {QUICK_SERVE_IMAGES} images); the figures mean nothing",
    )
    parser.add_argument("--no-classic", action="store_true", help="skip the classic baseline")
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="instead: wall time of `python main.py` (first run without the suite cached, a second run with it) "
        "and of `--dry-run`, against the original design's train and test scripts, alternated, medians",
    )
    parser.add_argument(
        "--repeats", type=positive(int), default=3, help="alternated runs of each with --end-to-end or --concurrency"
    )
    parser.add_argument(
        "--concurrency",
        action="store_true",
        help="instead: `python main.py` alone against two at once, with and without --threads sharing the cores, "
        "and tune's trials per minute with one worker against --workers",
    )
    parser.add_argument("--workers", type=positive(int), default=2, help="tune workers with --concurrency")
    parser.add_argument(
        "--calibration",
        action="store_true",
        help='instead: the default model\'s calibration per seed (ECE, NLL, the "not sure" rule, non-digit images)',
    )
    add_min_confidence_option(parser)
    parser.add_argument(
        "--serve",
        action="store_true",
        help="instead: predictions per second of `serve` over HTTP against in-process predict, on --model",
    )
    parser.add_argument(
        "--abuse",
        action="store_true",
        help="with --serve: instead, 300 large uploads, 8 decompression-heavy PNGs and 50 slow clients at once, "
        "health and memory watched throughout, then SIGTERM mid-upload",
    )
    add_model_option(parser)
    parser.add_argument("--clients", type=positive(int), default=16, help="concurrent HTTP clients with --serve")
    parser.add_argument("--requests", type=positive(int), default=4000, help="HTTP predictions in all with --serve")
    parser.add_argument("--out-dir", default="models", help="folder for the benchmark's JSON and Markdown")
    add_device_option(parser)
    add_precision_option(parser, nargs="+")
    add_threads_option(parser)
    add_data_option(parser)
    add_cache_option(parser)


# The options each mode reads, beyond --out-dir, --threads and --data-dir, which all of them do; a mode refuses
# the others (`bench --serve --seeds 3` would otherwise run and ignore --seeds).
MODE_OPTIONS = {
    "accuracy": {"arch", "recipe", "seeds", "quick", "no_classic", "device", "precision", "cache_dir"},
    "--end-to-end": {"end_to_end", "repeats", "quick"},
    "--concurrency": {"concurrency", "repeats", "workers", "quick"},
    "--calibration": {"calibration", "seeds", "quick", "min_confidence", "device", "cache_dir"},
    "--serve": {"serve", "model", "clients", "requests", "quick"},
    "--serve --abuse": {"serve", "abuse", "model", "quick"},
}


def mode(args):
    """The mode the options ask for (a key of MODE_OPTIONS); raises InputError for an option it does not read."""
    import argparse

    modes = [name for name in ("end_to_end", "concurrency", "calibration", "serve") if getattr(args, name)]
    if len(modes) > 1:
        raise InputError("bench takes one of --end-to-end, --concurrency, --calibration and --serve")
    chosen = "--" + modes[0].replace("_", "-") if modes else "accuracy"
    chosen += " --abuse" if args.abuse and chosen == "--serve" else ""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = vars(parser.parse_args([]))  # as parsed: --device's default comes out a torch.device
    given = {name for name, value in vars(args).items() if value != defaults[name]}
    stray = sorted(given - MODE_OPTIONS[chosen] - {"out_dir", "threads", "data_dir"})
    if stray:
        options = ", ".join("--" + name.replace("_", "-") for name in stray)
        raise InputError(f"bench{'' if chosen == 'accuracy' else ' ' + chosen} does not take {options}")
    return chosen


def run(args):
    chosen = mode(args)
    apply_threads(args.threads)
    data_dir = resolve_data_dir(args.data_dir)
    if chosen == "--serve --abuse":
        from abuse_bench import abuse_benchmark

        abuse_benchmark(args.model, data_dir, args.out_dir, args.quick)
    elif chosen == "--serve":
        from serve_bench import serve_benchmark

        images = QUICK_SERVE_IMAGES if args.quick else SERVE_BENCH_IMAGES
        serve_benchmark(args.model, data_dir, args.out_dir, images, args.requests, args.clients)
    elif chosen == "--calibration":
        from calibration_bench import calibration_benchmark

        max_steps = QUICK_STEPS if args.quick else None
        calibration_benchmark(
            args.seeds,
            args.device,
            data_dir,
            args.out_dir,
            resolve_cache_dir(args.cache_dir),
            args.min_confidence,
            max_steps,
            QUICK_SUITE_IMAGES if args.quick else None,
        )
    elif chosen == "--concurrency":
        from concurrency_bench import concurrency_benchmark

        concurrency_benchmark(data_dir, args.out_dir, args.repeats, args.workers, args.quick)
    elif chosen == "--end-to-end":
        from end_to_end_bench import end_to_end_benchmark

        end_to_end_benchmark(data_dir, args.out_dir, args.repeats, args.quick)
    else:
        run_benchmark(
            args.arch,
            args.recipe,
            args.seeds,
            args.device,
            data_dir,
            args.out_dir,
            resolve_cache_dir(args.cache_dir),
            quick=args.quick,
            classic=not args.no_classic,
            precisions=args.precision,
        )


def classic_run(seed, device, data_dir, data, suite, max_steps=None):
    """Train and evaluate the classic baseline exactly as it was built; returns its figures."""
    import classic
    from evaluation import accuracy_by_corruption, evaluate_robustness
    from model import count_parameters

    model, train_seconds, seen = classic.train(seed, device, data_dir, max_steps)
    accuracy, test_images_per_second = classic.test(model, device, data_dir)
    report = evaluate_robustness(model, *suite, accuracy)
    return _figures(
        seed,
        accuracy,
        train_seconds,
        seen,
        test_images_per_second,
        count_parameters(model),
        accuracy_by_corruption(report),
    )


def preset_run(arch, recipe, seed, device, data, suite, max_steps=None, precision="auto"):
    from evaluation import accuracy_by_corruption, evaluate_robustness
    from train import train_and_evaluate

    arch, config, contrast_stretch = recipe_model(arch, recipe)
    config = replace(config, seed=seed, max_steps=max_steps)
    result = train_and_evaluate(arch, config, device, data, contrast_stretch, precision)
    metrics = result.metrics
    report = evaluate_robustness(result.model, *suite, metrics["accuracy"])
    return _figures(
        seed,
        metrics["accuracy"],
        metrics["train_seconds"],
        result.history[-1]["seen"],
        metrics["test_images_per_second"],
        metrics["parameters"],
        accuracy_by_corruption(report),
    )


def _figures(seed, accuracy, train_seconds, images, test_images_per_second, parameters, corruptions):
    corruption_accuracy = {name: round(accuracy, 2) for name, accuracy in corruptions.items()}
    return {
        "seed": seed,
        "accuracy": round(accuracy, 2),
        "train_seconds": round(train_seconds, 2),
        "train_images_per_second": round(images / train_seconds),
        "test_images_per_second": round(test_images_per_second),
        "parameters": parameters,
        "mean_corruption_accuracy": round(statistics.fmean(corruption_accuracy.values()), 2),
        "corruption_accuracy": corruption_accuracy,
    }


def summarize(runs):
    accuracies = [run["accuracy"] for run in runs]
    corrupted = [run["mean_corruption_accuracy"] for run in runs]
    return {
        "accuracy_mean": round(statistics.mean(accuracies), 3),
        "accuracy_min": min(accuracies),
        "accuracy_std": round(statistics.pstdev(accuracies), 3),
        "mean_corruption_accuracy_mean": round(statistics.mean(corrupted), 3),
        "mean_corruption_accuracy_min": min(corrupted),
        "corruption_accuracy_mean": {
            name: round(statistics.mean(run["corruption_accuracy"][name] for run in runs), 2)
            for name in runs[0]["corruption_accuracy"]
        },
        "train_seconds_mean": round(statistics.mean(run["train_seconds"] for run in runs), 2),
        "test_images_per_second_mean": round(statistics.mean(run["test_images_per_second"] for run in runs)),
    }


def machine(device):
    import torch
    import torchvision

    from numerics import bf16_native, cpu_name

    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": bf16_native(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }


def model_name(arch, recipe, precision=None):
    """The default recipe's runs are named by their preset alone; others also by their recipe; and where several
    precisions run, each name ends in its own."""
    name = arch if recipe == DEFAULT_RECIPE else f"{arch}-{recipe}"
    return f"{name}-{precision}" if precision else name


def run_benchmark(
    archs, recipes, seeds, device, data_dir, out_dir, cache_dir, quick=False, classic=True, precisions=("auto",)
):
    import torch

    from checkpoint import write_json, write_text
    from corruptions import labelled_suite
    from numerics import resolve_precision
    from train import load_data

    max_steps = QUICK_STEPS if quick else None
    precisions = list(dict.fromkeys(resolve_precision(p, device) for p in precisions))
    results = {"machine": machine(device), "quick": quick, "precisions": precisions, "models": {}}
    data = load_data(data_dir, device)
    suite = labelled_suite(*data["eval"], cache_dir, QUICK_SUITE_IMAGES if quick else None)
    models = [(arch, recipe, precision) for precision in precisions for arch in archs for recipe in recipes]
    models += [("classic", None, "fp32")] if classic else []
    runs = {model: [] for model in models}
    for seed in seeds:  # each seed runs every model in turn, so that a machine's drift spreads over all of them
        for arch, recipe, precision in models:
            run = (
                classic_run(seed, device, data_dir, data, suite, max_steps)
                if recipe is None
                else preset_run(arch, recipe, seed, device, data, suite, max_steps, precision)
            )
            runs[arch, recipe, precision].append(run)
    for (arch, recipe, precision), model_runs in runs.items():
        entry = {"precision": precision, "runs": model_runs, "summary": summarize(model_runs)}
        if recipe is None:
            results["models"]["classic"] = entry
        else:
            trained = architecture_name(architecture(recipe_model(arch, recipe)[0]))
            name = model_name(arch, recipe, precision if len(precisions) > 1 else None)
            results["models"][name] = {"architecture": trained, "arch": arch, "recipe": recipe, **entry}
    compare(results["models"])
    results["peak_memory_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if device.type == "cuda":
        results["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)

    out_dir = Path(out_dir)
    write_json(out_dir / "benchmark.json", results)
    from bench_table import markdown_table

    table = markdown_table(results)
    write_text(out_dir / "benchmark.md", table)
    print(table)
    return results


def compare(models):
    """Each preset's summary against the classic baseline and, for the default recipe, against the earlier one
    on the same architecture in the same precision."""
    for model in models.values():
        if "recipe" not in model:
            continue
        summary = model["summary"]
        if "classic" in models:
            base = models["classic"]["summary"]
            summary["train_time_vs_classic"] = round(summary["train_seconds_mean"] / base["train_seconds_mean"], 3)
            summary["accuracy_vs_classic"] = round(summary["accuracy_mean"] - base["accuracy_mean"], 3)
            summary["inference_speed_vs_classic"] = round(
                summary["test_images_per_second_mean"] / base["test_images_per_second_mean"], 2
            )
        earlier = next(
            (
                other
                for other in models.values()
                if other.get("recipe") == EARLIER_RECIPE
                and (other["arch"], other["precision"]) == (model["arch"], model["precision"])
            ),
            None,
        )
        if model["recipe"] == DEFAULT_RECIPE and earlier:
            base = earlier["summary"]
            summary["corruption_error_vs_earlier"] = round(
                (100 - summary["mean_corruption_accuracy_mean"]) / (100 - base["mean_corruption_accuracy_mean"]), 3
            )
            summary["train_time_vs_earlier"] = round(summary["train_seconds_mean"] / base["train_seconds_mean"], 3)
