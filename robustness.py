"""Robustness: a model's accuracy on the 10,000 test images under each corruption of the suite.

The mean corruption accuracy is the mean over the suite's 19 corruptions, clean images excluded.
"""

import math

import plots
from corruptions import SUITE_SEED, corrupt_all
from data import normalize, pixels
from test import predict_logits

FIGURE_SAMPLES = 10  # test digits shown under each corruption in robustness.png


def corrupted_test_set(images, seed=SUITE_SEED):
    """{corruption: 8-bit images} of the normalised images, corrupted once, to evaluate any number of models."""
    return corrupt_all(pixels(images), seed)


def predictions(model, images_8bit, device):
    return predict_logits(model, normalize(images_8bit).to(device)).argmax(1)


def evaluate_robustness(model, suite, labels, clean_accuracy):
    """Accuracy (%) under each corruption, its error relative to the clean error, and the suite's mean."""
    device = next(model.parameters()).device
    corruptions = {}
    for name, images in suite.items():
        accuracy = (predictions(model, images, device) == labels).sum().item() / len(labels) * 100
        corruptions[name] = {
            "accuracy": accuracy,
            "error": 100 - accuracy,
            "relative_error": (100 - accuracy) / max(100 - clean_accuracy, 1e-9),
        }
    mean_accuracy = math.fsum(c["accuracy"] for c in corruptions.values()) / len(corruptions)
    return {
        "clean_accuracy": clean_accuracy,
        "mean_corruption_accuracy": mean_accuracy,
        "mean_corruption_error": 100 - mean_accuracy,
        "corruptions": corruptions,
    }


def format_table(report):
    lines = [f"{'corruption':<18} {'accuracy %':>10} {'error %':>8} {'error / clean error':>20}"]
    lines.append(f"{'clean':<18} {report['clean_accuracy']:>10.2f} {100 - report['clean_accuracy']:>8.2f} {1:>19.1f}x")
    for name, row in report["corruptions"].items():
        lines.append(f"{name:<18} {row['accuracy']:>10.2f} {row['error']:>8.2f} {row['relative_error']:>19.1f}x")
    lines.append(
        f"mean corruption accuracy {report['mean_corruption_accuracy']:.2f}% "
        f"(error {report['mean_corruption_error']:.2f}%, over {len(report['corruptions'])} corruptions)"
    )
    return "\n".join(lines)


def robustness_figure(model, images, labels, suite, count=FIGURE_SAMPLES):
    """robustness.png: the first `count` test digits, clean and under each corruption, with the model's answers."""
    device = next(model.parameters()).device
    suite = {name: corrupted[:count] for name, corrupted in suite.items()}
    answers = {"clean": predict_logits(model, images[:count]).argmax(1).cpu()}
    answers.update({name: predictions(model, corrupted, device).cpu() for name, corrupted in suite.items()})
    return plots.robustness(images[:count], labels[:count], suite, answers)
