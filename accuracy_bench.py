"""`python main.py bench accuracy` (the default mode): this project's presets over several seeds against the classic
baseline, in one run, alternated, clean and under the corruption suite; results to benchmark.json and benchmark.md."""

import platform
import resource
import statistics
from dataclasses import replace

from config import (
    BASELINE_RECIPE,
    DEFAULT_RECIPE,
    QUICK_STEPS,
    QUICK_SUITE_IMAGES,
    architecture,
    architecture_name,
    recipe_model,
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

    from checkpoint import write_results
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

    from bench_table import markdown_table

    table = markdown_table(results)
    if out_dir is not None:
        write_results(out_dir, "benchmark", results, table)
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
                if other.get("recipe") == BASELINE_RECIPE
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
