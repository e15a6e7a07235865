"""A model's logits on a set of images, and what they score: accuracy, per-class accuracy, loss, confusion matrix."""

import torch
import torch.nn.functional as F

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
    return report


def format_calibration(figures, temperature):
    return (
        f"calibrated with temperature {temperature:.3f}: expected calibration error {figures['ece']:.2f}% "
        f"(before {figures['ece_before']:.2f}%; {figures['bins']} equal-width bins), NLL {figures['nll']:.4f} "
        f"(before {figures['nll_before']:.4f})"
    )
