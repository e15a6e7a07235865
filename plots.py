"""Pictures of a run, written as PNGs beside the model (matplotlib's Agg backend: no display needed)."""

import io
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from checkpoint import atomic_write
from data import augment, pixels

GRID_COLUMNS = 8


def save_figure(figure, path):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    atomic_write(path, lambda temporary: Path(temporary).write_bytes(buffer.getvalue()))


def training_curves(history):
    steps = [row["step"] for row in history]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    titles = {"loss": "training loss", "accuracy": "batch accuracy (%)", "lr": "learning rate"}
    for ax, (key, label) in zip(axes, titles.items(), strict=True):
        ax.plot(steps, [row[key] for row in history], linewidth=0.8)
        ax.set(xlabel="step", title=label)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(max(0, min(row["accuracy"] for row in history[len(history) // 5 :]) - 2), 100.5)
    return figure


def confusion_matrix(confusion):
    figure, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(confusion, cmap="Blues", norm=matplotlib.colors.LogNorm(vmin=1))
    for true, row in enumerate(confusion):
        for predicted, count in enumerate(row):
            if count:
                ax.text(
                    predicted,
                    true,
                    count,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if true == predicted else "black",
                )
    ax.set(
        xticks=range(10),
        yticks=range(10),
        xlabel="predicted",
        ylabel="true",
        title="confusion matrix (10,000 test images)",
    )
    return figure


def _show(ax, image, title):
    ax.imshow(pixels(image).squeeze().cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def misclassified(images, labels, predictions, limit=32):
    all_wrong = (predictions != labels).nonzero().flatten()
    wrong = all_wrong[:limit].tolist()
    rows = max(1, -(-len(wrong) // GRID_COLUMNS))
    figure, axes = plt.subplots(rows, GRID_COLUMNS, figsize=(GRID_COLUMNS * 1.1, rows * 1.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):  # the grid's last row may be part empty
        _show(ax, images[i], f"true {labels[i].item()}, got {predictions[i].item()}")
    figure.suptitle(f"misclassified test digits (first {len(wrong)} of {len(all_wrong)})")
    return figure


def augmentation(images, aug, generator, copies=3):
    """Each original in the first column, then `copies` random augmentations of it."""
    figure, axes = plt.subplots(len(images), copies + 1, figsize=((copies + 1) * 1.1, len(images) * 1.1))
    versions = [images] + [augment(images, aug, generator) for _ in range(copies)]
    for row, originals_and_copies in enumerate(zip(*versions, strict=True)):
        for column, image in enumerate(originals_and_copies):
            title = ("original" if column == 0 else f"augmented {column}") if row == 0 else ""
            _show(axes[row, column], image, title)
    return figure


def robustness(clean, labels, suite, answers):
    """One row per corruption (clean first): the same test digits, each marked with the model's answer.

    clean: normalised images; suite: {name: 8-bit images}; answers: {name: predicted digits}, "clean" too.
    """
    rows = {"clean": pixels(clean), **{name: images.float() / 255 for name, images in suite.items()}}
    columns, cell = len(labels), 28 + 2  # one 2-pixel gap after each digit
    # One mosaic in one axes: a grid of 200 axes takes matplotlib seconds to draw.
    mosaic = np.ones((len(rows) * cell, columns * cell))
    for row, images in enumerate(rows.values()):
        for column in range(columns):
            mosaic[row * cell : row * cell + 28, column * cell : column * cell + 28] = (
                images[column].squeeze().cpu().numpy()
            )
    figure, ax = plt.subplots(figsize=(columns * 0.75 + 1.5, len(rows) * 0.75))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1)
    for row, name in enumerate(rows):
        for column in range(columns):
            answer = int(answers[name][column])
            right = answer == int(labels[column])
            ax.text(
                column * cell + 26,
                row * cell + 2,
                str(answer),
                ha="right",
                va="top",
                fontsize=8,
                fontweight="bold",
                color="limegreen" if right else "red",
            )
    ax.set_yticks([row * cell + 14 for row in range(len(rows))], [name.replace("_", " ") for name in rows])
    ax.set_xticks([])
    ax.set_title("the model's answer in each corner: green right, red wrong", fontsize=9)
    return figure
