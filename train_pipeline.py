"""Build -> train -> evaluate -> save: the whole run behind `python main.py`."""
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torchvision

from checkpoint import atomic_write, save_model
from data import load_split
from model import MNISTModel, count_parameters, describe, receptive_field
from test import evaluate, format_report
from train import train


class AccuracyBelowGate(Exception):
    """The trained model missed --min-accuracy."""


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_and_evaluate(arch, config, device, data_dir):
    """Train a fresh model on MNIST and evaluate it; returns (model, history, metrics)."""
    torch.manual_seed(config.seed)
    model = MNISTModel(arch).to(device, memory_format=torch.channels_last)
    print(describe(model))
    train_images, train_labels = (t.to(device) for t in load_split(data_dir, "train"))
    test_images, test_labels = (t.to(device) for t in load_split(data_dir, "test"))

    synchronize(device)
    start = time.perf_counter()
    history = train(model, train_images, train_labels, config)
    synchronize(device)
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    metrics = evaluate(model, test_images, test_labels)
    synchronize(device)
    test_seconds = time.perf_counter() - start
    metrics.update(
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
        torchvision_version=torchvision.__version__,
        python_version=platform.python_version(),
    )
    return model, history, metrics


def run(arch, config, device, data_dir, out, min_accuracy):
    """The full pipeline. Saves the model and metrics.json beside it only if the accuracy gate passes."""
    model, history, metrics = train_and_evaluate(arch, config, device, data_dir)
    print(format_report(metrics))
    print(f"trained in {metrics['train_seconds']:.1f} s ({metrics['train_images_per_second']:,.0f} images/s) "
          f"on {device}")
    if metrics["accuracy"] < min_accuracy:
        raise AccuracyBelowGate(f"test accuracy {metrics['accuracy']:.2f}% is below --min-accuracy "
                                f"{min_accuracy}%; the model was not saved")
    out = Path(out)
    save_model(model, out)
    write_json(out.with_name("metrics.json"), metrics)
    print(f"saved {out} and {out.with_name('metrics.json')}")
    return metrics


def write_json(path, value):
    atomic_write(path, lambda temporary: Path(temporary).write_text(json.dumps(value, indent=2) + "\n"))
