"""plots.py: each figure of a run, written as matplotlib writes it with bbox_inches="tight", pixel for pixel."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import plots
from config import AUGMENTATIONS
from corruptions import labelled_suite


def figures(mnist):
    """{name: a function that draws the figure anew}, from real test digits and made-up training figures."""
    images, labels = (tensor[:64] for tensor in mnist["eval"])
    predictions = labels.roll(1)  # mostly wrong: a full misclassified grid
    logits = torch.nn.functional.one_hot(predictions, 10).float() * 4
    suite, suite_labels = labelled_suite(images, labels, count=plots.ROBUSTNESS_SAMPLES)
    answers = {"clean": predictions[: plots.ROBUSTNESS_SAMPLES], **{name: suite_labels for name in suite}}
    history = [{"step": step, "loss": 2 / step, "accuracy": 100 - 50 / step, "lr": 0.1} for step in range(1, 50)]
    confusion = torch.randint(0, 900, (10, 10), generator=torch.Generator().manual_seed(0)).tolist()
    return {
        "training_curves": lambda: plots.training_curves(history),
        "confusion_matrix": lambda: plots.confusion_matrix(confusion, "test"),
        "misclassified": lambda: plots.misclassified(images, labels, predictions, "test"),
        "reliability": lambda: plots.reliability_diagram(logits, labels, 0.4),
        "robustness": lambda: plots.robustness(images, labels, suite, answers),
        "augmentation": lambda: plots.augmentation(
            images[:4], AUGMENTATIONS["robust"], torch.Generator().manual_seed(0)
        ),
    }


def pixels_of(png):
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image)


@pytest.mark.parametrize(
    "name", ["training_curves", "confusion_matrix", "misclassified", "reliability", "robustness", "augmentation"]
)
def test_a_figure_is_cropped_as_matplotlibs_tight_bbox_crops_it(mnist, tmp_path, name):
    draw = figures(mnist)[name]
    plots.png_writer(draw())(tmp_path / "ours.png")
    theirs = io.BytesIO()
    figure = draw()
    figure.savefig(theirs, format="png", dpi=100, bbox_inches="tight")
    plots.plt.close(figure)
    ours, theirs = pixels_of((tmp_path / "ours.png").read_bytes()), pixels_of(theirs.getvalue())
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


def test_the_figures_name_the_images_they_count(mnist):
    """A --validation run's confusion_matrix.png said "10,000 test images" and misclassified.png "test digits" of
    the 5,000 validation images it had read."""
    confusion = [[500 if true == predicted else 0 for predicted in range(10)] for true in range(10)]
    figure = plots.confusion_matrix(confusion, "validation")
    assert figure.axes[0].get_title() == "confusion matrix (5,000 validation images)"
    images, labels = (tensor[:64] for tensor in mnist["eval"])
    figure = plots.misclassified(images, labels, (labels + 1) % 10, "validation")  # every one wrong
    assert figure.axes[0].get_title() == "misclassified validation digits (first 32 of 64)"
    plots.plt.close("all")
