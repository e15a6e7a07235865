"""A model's logits on a set of images, and what they score: accuracy, per-class accuracy, loss, confusion matrix."""

import math

import torch
import torch.nn.functional as F

from calibration import calibration_figures
from data import normalize
from model import NUM_CLASSES

EVAL_BATCH_SIZE = 500  # measured fastest on a 2-core CPU: larger batches fall out of cache


@torch.no_grad()
def predict_logits(model, images, batch_size=EVAL_BATCH_SIZE):
    model.eval()
    return torch.cat(
        [
            model(images[i : i + batch_size].contiguous(memory_format=torch.channels_last))
            for i in range(0, len(images), batch_size)
        ]
    )


def evaluate(model, images, labels):
    """Metrics of the model on images/labels (on the model's device), as plain Python numbers."""
    return metrics_from_logits(predict_logits(model, images), labels)


def metrics_from_logits(logits, labels):
    predictions = logits.argmax(1)
    confusion = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
    confusion.index_put_((labels.cpu(), predictions.cpu()), torch.ones_like(labels.cpu()), accumulate=True)
    per_class = confusion.diag() / confusion.sum(1).clamp(min=1) * 100
    return {
        "accuracy": (predictions == labels).sum().item() / len(labels) * 100,
        "per_class_accuracy": {str(c): round(a, 2) for c, a in enumerate(per_class.tolist())},
        "test_loss": F.cross_entropy(logits, labels).item(),
        "confusion_matrix": confusion.tolist(),
    }


def format_report(metrics):
    split = metrics.get("evaluated_on", "test")
    per_class = "  ".join(f"{c}:{a:.2f}" for c, a in metrics["per_class_accuracy"].items())
    report = (
        f"{split} accuracy {metrics['accuracy']:.2f}%  {split} loss {metrics['test_loss']:.4f}\n"
        f"per-class accuracy (%)  {per_class}"
    )
    if "calibration" in metrics:
        report += "\n" + format_calibration(metrics["calibration"], metrics["temperature"])
    if metrics.get("energy_threshold") is not None:
        report += f"\nnot sure also above energy {metrics['energy_threshold']:.3f} (trained on non-digits)"
    return report


def format_calibration(figures, temperature):
    return (
        f"calibrated with temperature {temperature:.3f}: expected calibration error {figures['ece']:.2f}% "
        f"(before {figures['ece_before']:.2f}%; {figures['bins']} equal-width bins), NLL {figures['nll']:.4f} "
        f"(before {figures['nll_before']:.4f})"
    )


# --- A model under the corruption suite ({corruption: 8-bit images}, corruptions.py) ------------------------


def suite_logits(model, images_8bit):
    return predict_logits(model, normalize(images_8bit).to(next(model.parameters()).device))


def evaluate_robustness(model, suite, labels, clean_accuracy):
    """Accuracy (%) under each corruption, its error relative to the clean error, and the suite's mean.

    Also the mean's standard error as an estimate over the images evaluated (the spread of each image's
    accuracy over the suite): what a sample of the test set tells about the whole; and the calibration
    of the model's probabilities over the whole suite.
    """
    labels = labels.to(next(model.parameters()).device)
    logits = [suite_logits(model, images) for images in suite.values()]
    correct = torch.stack([(row.argmax(1) == labels).float() for row in logits])
    corruptions = {}
    for name, right in zip(suite, correct, strict=True):
        accuracy = right.sum().item() / len(labels) * 100
        corruptions[name] = {
            "accuracy": accuracy,
            "error": 100 - accuracy,
            "relative_error": (100 - accuracy) / max(100 - clean_accuracy, 1e-9),
        }
    mean_accuracy = math.fsum(c["accuracy"] for c in corruptions.values()) / len(corruptions)
    per_image = correct.mean(0) * 100
    return {
        "clean_accuracy": clean_accuracy,
        "mean_corruption_accuracy": mean_accuracy,
        "mean_corruption_error": 100 - mean_accuracy,
        "images": len(labels),
        "mean_corruption_accuracy_standard_error": (per_image.std() / math.sqrt(len(labels))).item(),
        "calibration": calibration_figures(torch.cat(logits), labels.repeat(len(logits)), model.temperature),
        "corruptions": corruptions,
    }


def accuracy_by_corruption(report):
    """{corruption: accuracy %} from evaluate_robustness's report."""
    return {name: row["accuracy"] for name, row in report["corruptions"].items()}


def suite_answers(model, images, suite, count):
    """The model's answers for the first `count` images, clean (normalised) and under each corruption:
    {"clean": digits, corruption: digits}, on the CPU."""
    answers = {"clean": predict_logits(model, images[:count]).argmax(1).cpu()}
    answers.update({name: suite_logits(model, corrupted[:count]).argmax(1).cpu() for name, corrupted in suite.items()})
    return answers
