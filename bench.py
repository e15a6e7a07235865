"""Benchmark: this project's presets over several seeds against the classic baseline, in one run.

The classic baseline is the design this project started from: a 10.6k-parameter net fed by a
DataLoader that applies PIL RandomRotation(7), ToTensor and Normalize image by image, batch 64,
Adam at 1e-3, one epoch. Run with `python main.py bench`; results go to JSON and a Markdown table.
"""

import platform
import resource
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import MNIST

from checkpoint import atomic_write
from data import MEAN, STD
from robustness import evaluate_robustness
from train import DEFAULT_RECIPE, EARLIER_RECIPE, RECIPES
from train_pipeline import load_data, synchronize, train_and_evaluate, write_json

QUICK_STEPS = 5  # training steps per run in --quick mode


class ClassicNet(nn.Module):
    """The original 10.6k-parameter network, layer for layer."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 32, 2),
        )
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def classic_run(seed, device, data_dir, data, max_steps=None):
    """Train and evaluate the classic baseline exactly as it was built; returns its figures."""
    torch.manual_seed(seed)
    normalize = transforms.Normalize((MEAN,), (STD,))
    train_set = MNIST(
        str(data_dir),
        train=True,
        transform=transforms.Compose([transforms.RandomRotation(7), transforms.ToTensor(), normalize]),
    )
    test_set = MNIST(str(data_dir), train=False, transform=transforms.Compose([transforms.ToTensor(), normalize]))
    model = ClassicNet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(train_set, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))

    model.train()
    seen, start = 0, time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if step == max_steps:
            break
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(x)
    synchronize(device)
    train_seconds = time.perf_counter() - start

    model.eval()
    correct, start = 0, time.perf_counter()
    with torch.no_grad():
        for x, y in DataLoader(test_set, batch_size=1000):
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    synchronize(device)
    test_seconds = time.perf_counter() - start
    accuracy = correct / len(test_set) * 100
    corruptions = evaluate_robustness(model, data["corrupted"], data["eval"][1], accuracy)["corruptions"]
    return _figures(
        seed,
        accuracy,
        train_seconds,
        seen,
        len(test_set) / test_seconds,
        sum(p.numel() for p in model.parameters()),
        {name: c["accuracy"] for name, c in corruptions.items()},
    )


def preset_run(arch, recipe, seed, device, data, max_steps=None):
    config, contrast_stretch = RECIPES[recipe]
    config = replace(config, seed=seed, max_steps=max_steps)
    result = train_and_evaluate(arch, config, device, data, contrast_stretch)
    metrics = result.metrics
    return _figures(
        seed,
        metrics["accuracy"],
        metrics["train_seconds"],
        result.history[-1]["seen"],
        metrics["test_images_per_second"],
        metrics["parameters"],
        metrics["corruption_accuracy"],
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
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }


def model_name(arch, recipe):
    """The default recipe's runs are named by their preset alone; others also by their recipe."""
    return arch if recipe == DEFAULT_RECIPE else f"{arch}-{recipe}"


def run_benchmark(archs, recipes, seeds, device, data_dir, out_dir, quick=False, classic=True):
    max_steps = QUICK_STEPS if quick else None
    results = {"machine": machine(device), "quick": quick, "models": {}}
    data = load_data(data_dir, device)
    for arch in archs:
        for recipe in recipes:
            runs = [preset_run(arch, recipe, seed, device, data, max_steps) for seed in seeds]
            results["models"][model_name(arch, recipe)] = {"runs": runs, "summary": summarize(runs)}
    if classic:
        runs = [classic_run(seed, device, data_dir, data, max_steps) for seed in seeds]
        results["models"]["classic"] = {"runs": runs, "summary": summarize(runs)}
    compare(results["models"], archs, recipes)
    results["peak_memory_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if device.type == "cuda":
        results["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)

    out_dir = Path(out_dir)
    write_json(out_dir / "benchmark.json", results)
    table = markdown_table(results)
    atomic_write(out_dir / "benchmark.md", lambda temporary: Path(temporary).write_text(table))
    print(table)
    return results


def compare(models, archs, recipes):
    """Each preset's summary against the classic baseline and, for the default recipe, against the earlier one."""
    for arch in archs:
        for recipe in recipes:
            summary = models[model_name(arch, recipe)]["summary"]
            if "classic" in models:
                base = models["classic"]["summary"]
                summary["train_time_vs_classic"] = round(summary["train_seconds_mean"] / base["train_seconds_mean"], 3)
                summary["accuracy_vs_classic"] = round(summary["accuracy_mean"] - base["accuracy_mean"], 3)
                summary["inference_speed_vs_classic"] = round(
                    summary["test_images_per_second_mean"] / base["test_images_per_second_mean"], 2
                )
            earlier = models.get(model_name(arch, EARLIER_RECIPE))
            if recipe == DEFAULT_RECIPE and earlier:
                base = earlier["summary"]
                summary["corruption_error_vs_earlier"] = round(
                    (100 - summary["mean_corruption_accuracy_mean"]) / (100 - base["mean_corruption_accuracy_mean"]), 3
                )
                summary["train_time_vs_earlier"] = round(summary["train_seconds_mean"] / base["train_seconds_mean"], 3)


def markdown_table(results):
    m = results["machine"]
    where = m["gpu"] or f"{m['cpu']}, {m['torch_threads']} threads"
    quick = " (quick mode: not real figures)" if results["quick"] else ""
    lines = [
        f"Measured on {where}; Python {m['python']}, torch {m['torch']}{quick}.",
        "",
        (
            "| model | parameters | seed | test accuracy % | mean corruption accuracy % | train s | train images/s | "
            "inference images/s |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, model in results["models"].items():
        for run in model["runs"]:
            lines.append(
                f"| {name} | {run['parameters']:,} | {run['seed']} | {run['accuracy']:.2f} | "
                f"{run['mean_corruption_accuracy']:.2f} | {run['train_seconds']:.2f} | "
                f"{run['train_images_per_second']:,} | {run['test_images_per_second']:,} |"
            )
    summary_header = (
        "| model | mean accuracy % | min | std | mean corruption accuracy % | min | corruption error vs "
        "earlier | mean train s | train time vs earlier | train time vs classic | accuracy vs classic "
        "(points) | inference speed vs classic |"
    )
    lines += [
        "",
        summary_header,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, model in results["models"].items():
        s = model["summary"]
        lines.append(
            f"| {name} | {s['accuracy_mean']:.2f} | {s['accuracy_min']:.2f} | {s['accuracy_std']:.3f} | "
            f"{s['mean_corruption_accuracy_mean']:.2f} | {s['mean_corruption_accuracy_min']:.2f} | "
            f"{_ratio(s, 'corruption_error_vs_earlier', 'x')} | {s['train_seconds_mean']:.2f} | "
            f"{_ratio(s, 'train_time_vs_earlier', 'x')} | {_ratio(s, 'train_time_vs_classic', 'x')} | "
            f"{_ratio(s, 'accuracy_vs_classic', '', signed=True)} | "
            f"{_ratio(s, 'inference_speed_vs_classic', 'x')} |"
        )
    names = list(results["models"])
    lines += [
        "",
        "Accuracy (%) under each corruption, mean over the seeds:",
        "",
        "| corruption | " + " | ".join(names) + " |",
        "| --- |" + " ---: |" * len(names),
    ]
    first = results["models"][names[0]]["summary"]["corruption_accuracy_mean"]
    for corruption in first:
        lines.append(
            f"| {corruption} | "
            + " | ".join(
                f"{results['models'][name]['summary']['corruption_accuracy_mean'][corruption]:.2f}" for name in names
            )
            + " |"
        )
    memory = f"Peak memory: {results['peak_memory_mib']:,} MiB resident"
    if "peak_gpu_memory_mib" in results:
        memory += f", {results['peak_gpu_memory_mib']:,} MiB on the GPU"
    return "\n".join(lines + ["", memory + "."]) + "\n"


def _ratio(summary, key, unit, signed=False):
    if key not in summary:
        return "-"
    return f"{summary[key]:+.2f}" if signed else f"{summary[key]:.2f}{unit}"
