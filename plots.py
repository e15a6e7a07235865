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
ROBUSTNESS_SAMPLES = 10  # test digits shown under each corruption in robustness.png


def save_figure(figure, path):
    atomic_write(path, png_writer(figure))


def png_writer(figure):
    """A write(path) for the figure as a PNG, cropped to what it draws as bbox_inches="tight" does; the figure is
    rendered and closed now."""
    buffer = io.BytesIO()
    # The tight box measured before the one drawing: "tight" finds it by drawing the figure once more, a sixth of a
    # run's plotting time. The same pixels (tests/test_plots.py).
    tight = figure.get_tightbbox(figure.canvas.get_renderer()).padded(matplotlib.rcParams["savefig.pad_inches"])
    # zlib's fastest level: a tenth less time than PIL's default (6), and no larger files for these figures.
    figure.savefig(buffer, format="png", dpi=100, bbox_inches=tight, pil_kwargs={"compress_level": 1})
    plt.close(figure)
    return lambda temporary: Path(temporary).write_bytes(buffer.getvalue())


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


def reliability_diagram(logits, labels, temperature):
    """Accuracy against confidence per equal-width bin, before and after the temperature: on the diagonal is
    calibrated; below it, over-confident; above it, under-confident."""
    from calibration import calibrated, reliability

    figure, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 100], [0, 100], color="grey", linewidth=0.8, linestyle="--", label="calibrated")
    for scale, label in ((1.0, "softmax(logits)"), (temperature, f"softmax(logits / {temperature:.3f})")):
        bins = reliability(calibrated(logits, scale), labels.cpu())
        confidence, accuracy, _ = zip(*bins, strict=True)
        ax.plot([c * 100 for c in confidence], [a * 100 for a in accuracy], marker="o", label=label)
    ax.set(xlabel="confidence (%)", ylabel="accuracy (%)", title=f"reliability ({len(labels):,} images)")
    ax.legend()
    ax.grid(alpha=0.3)
    return figure


def confusion_matrix(confusion, evaluated_on):
    """evaluated_on: the split the counts are of (test, validation), named in the title."""
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
        title=f"confusion matrix ({sum(map(sum, confusion)):,} {evaluated_on} images)",
    )
    return figure


CELL = 28 + 2  # a digit and the 2-pixel gap after it, in a mosaic


def mosaic(rows):
    """One array of 0..1 digits laid out in rows, for one imshow: a grid of many axes takes matplotlib seconds."""
    columns = max(len(row) for row in rows)
    canvas = np.ones((len(rows) * CELL, columns * CELL))
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            canvas[r * CELL : r * CELL + 28, c * CELL : c * CELL + 28] = image.squeeze().cpu().numpy()
    return canvas


def misclassified(images, labels, predictions, evaluated_on, limit=32):
    all_wrong = (predictions != labels).nonzero().flatten().tolist()
    wrong = all_wrong[:limit]
    rows = [wrong[i : i + GRID_COLUMNS] for i in range(0, max(len(wrong), 1), GRID_COLUMNS)]
    figure, ax = plt.subplots(figsize=(GRID_COLUMNS * 1.1, len(rows) * 1.2 + 0.4))
    ax.imshow(mosaic([[1 - pixels(images[i]) for i in row] for row in rows]), cmap="gray", vmin=0, vmax=1)
    for r, row in enumerate(rows):
        for c, i in enumerate(row):
            ax.text(c * CELL + 14, r * CELL - 0.5, f"true {labels[i].item()}, got {predictions[i].item()}",
                    ha="center", va="bottom", fontsize=6)  # fmt: skip
    ax.axis("off")
    ax.set_title(f"misclassified {evaluated_on} digits (first {len(wrong)} of {len(all_wrong)})", pad=12)
    return figure


def augmentation(images, aug, generator, copies=3):
    """Each original in the first column, then `copies` random augmentations of it."""
    versions = [images] + [augment(images, aug, generator) for _ in range(copies)]
    rows = [[1 - pixels(image) for image in row] for row in zip(*versions, strict=True)]
    figure, ax = plt.subplots(figsize=((copies + 1) * 1.1, len(images) * 1.1))
    ax.imshow(mosaic(rows), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks(
        [c * CELL + 14 for c in range(copies + 1)], ["original"] + [f"augmented {c + 1}" for c in range(copies)]
    )
    ax.xaxis.tick_top()
    ax.tick_params(length=0, labelsize=8)
    ax.set_yticks([])
    return figure


def robustness(images, labels, suite, answers):
    """One row per corruption (clean first): the digits that `answers` (evaluation.suite_answers) holds answers
    for, each marked with the model's answer.

    images: normalised; suite: {name: 8-bit images} of the same images, corrupted.
    """
    count = len(answers["clean"])
    clean, labels = images[:count], labels[:count].cpu()
    suite = {name: corrupted[:count] for name, corrupted in suite.items()}
    rows = {"clean": pixels(clean), **{name: images.float() / 255 for name, images in suite.items()}}
    columns, cell = len(labels), CELL
    figure, ax = plt.subplots(figsize=(columns * 0.75 + 1.5, len(rows) * 0.75))
    ax.imshow(mosaic(list(rows.values())), cmap="gray", vmin=0, vmax=1)
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
