"""Build -> train -> evaluate -> save: the whole run behind `python main.py`."""

import json
import platform
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import torch

import plots
from checkpoint import atomic_write, save_model
from data import load_split, validation_split
from model import MNISTModel, count_parameters, describe, receptive_field
from robustness import corrupted_test_set, evaluate_robustness, robustness_figure
from test import format_report, metrics_from_logits, predict_logits
from train import AccuracyBelowGate, train

AUGMENTATION_SAMPLES = 8  # training digits shown in augmentation.png


@dataclass
class TrainedRun:
    model: torch.nn.Module
    history: list  # one dict per step: step, seen, loss, accuracy, lr
    metrics: dict  # everything metrics.json holds
    predictions: torch.Tensor  # predicted digit for each test image


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_data(data_dir, device, validation=False):
    """{"train": (images, labels), "eval": (images, labels)} on the device, and "corrupted": the eval
    images under each corruption of the suite, as 8-bit images on the CPU.

    "eval" is MNIST's test set, or with validation=True the VALIDATION_SIZE images held out of the
    training set (and "train" the rest): the test files are then never opened.
    """
    train_split = tuple(t.to(device) for t in load_split(data_dir, "train"))
    if validation:
        data = dict(zip(("train", "eval"), validation_split(*train_split), strict=True))
    else:
        data = {"train": train_split, "eval": tuple(t.to(device) for t in load_split(data_dir, "test"))}
    data["evaluated_on"] = "validation" if validation else "test"
    data["corrupted"] = corrupted_test_set(data["eval"][0].cpu())
    return data


def train_and_evaluate(arch, config, device, data, contrast_stretch=True):
    """Train a fresh model on data["train"] and evaluate it on data["eval"], clean and corrupted."""
    torch.manual_seed(config.seed)
    model = MNISTModel(arch, contrast_stretch).to(device, memory_format=torch.channels_last)
    print(describe(model))

    synchronize(device)
    start = time.perf_counter()
    history = train(model, *data["train"], config)
    synchronize(device)
    train_seconds = time.perf_counter() - start

    test_images, test_labels = data["eval"]
    start = time.perf_counter()
    logits = predict_logits(model, test_images)
    synchronize(device)
    test_seconds = time.perf_counter() - start
    metrics = metrics_from_logits(logits, test_labels)
    report = evaluate_robustness(model, data["corrupted"], test_labels, metrics["accuracy"])
    metrics.update(
        mean_corruption_accuracy=report["mean_corruption_accuracy"],
        corruption_accuracy={name: row["accuracy"] for name, row in report["corruptions"].items()},
        evaluated_on=data["evaluated_on"],
        train_images=len(data["train"][0]),
        architecture=arch,
        parameters=count_parameters(model),
        receptive_field=receptive_field(model),
        epochs=config.epochs,
        steps=len(history),
        batch_size=config.batch_size,
        learning_rate=config.lr,
        seed=config.seed,
        augmentation=asdict(config.augmentation) if config.augmentation else None,
        hyperparameters={k: v for k, v in asdict(config).items() if k != "augmentation"},
        train_seconds=round(train_seconds, 3),
        train_images_per_second=round(history[-1]["seen"] / train_seconds, 1),
        test_seconds=round(test_seconds, 3),
        test_images_per_second=round(len(test_images) / test_seconds, 1),
        device=str(device),
        torch_version=torch.__version__,
        torchvision_version=version("torchvision"),
        python_version=platform.python_version(),
    )
    return TrainedRun(model, history, metrics, logits.argmax(1))


def run(arch, config, device, data_dir, out, min_accuracy, validation=False):
    """The full pipeline. Saves the model, metrics.json and the plots only if the accuracy gate passes."""
    data = load_data(data_dir, device, validation)
    result = train_and_evaluate(arch, config, device, data)
    metrics = result.metrics
    print(format_report(metrics))
    print(
        f"mean corruption accuracy {metrics['mean_corruption_accuracy']:.2f}% over {len(data['corrupted'])} "
        "corruptions (python main.py robustness shows each)"
    )
    print(
        f"trained in {metrics['train_seconds']:.1f} s ({metrics['train_images_per_second']:,.0f} images/s) on {device}"
    )
    if metrics["accuracy"] < min_accuracy:
        raise AccuracyBelowGate(
            f"{metrics['evaluated_on']} accuracy {metrics['accuracy']:.2f}% is below --min-accuracy {min_accuracy}%; "
            "nothing was saved"
        )
    out = Path(out)
    save_model(result.model, out)
    write_json(out.with_name("metrics.json"), metrics)
    names = write_plots(out.parent, result, data, config)
    print(f"saved {out}, metrics.json and {', '.join(names)} in {out.parent}")
    return metrics


def write_plots(folder, result, data, config):
    test_images, test_labels = data["eval"]
    figures = {
        "training_curves.png": plots.training_curves(result.history),
        "confusion_matrix.png": plots.confusion_matrix(result.metrics["confusion_matrix"]),
        "misclassified.png": plots.misclassified(test_images, test_labels, result.predictions),
        "robustness.png": robustness_figure(result.model, test_images, test_labels, data["corrupted"]),
    }
    if config.augmentation:
        generator = torch.Generator(test_images.device).manual_seed(config.seed)
        samples = data["train"][0][:AUGMENTATION_SAMPLES]
        figures["augmentation.png"] = plots.augmentation(samples, config.augmentation, generator)
    for name, figure in figures.items():
        plots.save_figure(figure, Path(folder) / name)
    return list(figures)


def write_json(path, value):
    atomic_write(path, lambda temporary: Path(temporary).write_text(json.dumps(value, indent=2) + "\n"))
