"""Measures, per seed, every figure that a test floors on the session's trained model, so that each floor is set
from a distribution over seeds and precisions, not read off one run (docs/floors.md holds the table).

    python tests/floors.py measure --precision fp32 --out docs/floors/fp32-avx2.json
    OMP_NUM_THREADS=1 python tests/floors.py measure --precision bf16 --out docs/floors/bf16-avx512-1thread.json
    python tests/floors.py table docs/floors/*.json

docs/floors.md lists every path measured and the command for each (seeds 0-9 unless --seeds says otherwise).
Each seed trains as the `trained` fixture does (train_pipeline.pipeline with the default recipe) and is
scored by the same functions the tests call, on the same images.
"""

import argparse
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from numerics import PRECISIONS
from tests.helpers import CPU, DATA_DIR, PREDICT_SAMPLES, render_like_a_user
from tests.test_predict import USER_STYLE_FLOORS, USER_STYLE_OFFSET, USER_STYLE_SAMPLES, draw_like_a_user

# figure -> (what it is, "min" if a test floors it from below, "max" if it caps it from above)
FIGURES = {
    "accuracy": ("clean test accuracy %", "min"),
    "mean_corruption_accuracy": ("mean corruption accuracy % (the run's 2,000-image sample)", "min"),
    "worst_corruption_accuracy": ("worst corruption's accuracy % (the same sample)", "min"),
    "ece": ("clean expected calibration error %", "max"),
    "corruption_ece": ("expected calibration error % under corruption", "max"),
    "flagged": ('clean test digits flagged "not sure" %', "max"),
    "flagged_of_wrong": ("wrong answers flagged %", "min"),
    "selective_gain": ("accuracy of the answers not flagged, less the accuracy (points)", "min"),
    "scribbles_flagged": ("scribbles flagged %", "min"),
    "letters_flagged": ("letters flagged %", "min"),
    "predict_rendered": (f"predict: {PREDICT_SAMPLES} rendered test digits read right (fraction)", "min"),
    **{
        f"predict_{style}": (f"predict: {USER_STYLE_SAMPLES} {style.replace('_', ' ')} digits read right", "min")
        for style in USER_STYLE_FLOORS
    },
    "predict_sure_of_20": ("predict: sure answers among the first 20 rendered digits", "min"),
}


def measure(seed, precision, data, folder):
    from calibration import flagged_fraction, selective_figures
    from checkpoint import load_model
    from config import MIN_CONFIDENCE, TrainConfig
    from data import normalize
    from evaluation import predict_logits
    from nondigits import letters, scribbles
    from predict import predict_files
    from train_pipeline import pipeline

    out = folder / f"seed{seed}" / "mnist_model.pth"
    metrics = pipeline(
        "default", replace(TrainConfig(), seed=seed), CPU, data, out, 0.0, folder / "cache", {}, precision
    )
    model = load_model(out)
    images, labels = data["eval"]
    selective = selective_figures(predict_logits(model, images), labels, model.temperature, MIN_CONFIDENCE)

    def flagged(drawn):
        return flagged_fraction(predict_logits(model, normalize(drawn * 255)), model.temperature, MIN_CONFIDENCE)

    def read_right(paths, truth):
        readings = list(predict_files(model, paths))
        return sum(r["digit"] == label for r, label in zip(readings, truth, strict=True)) / len(truth), readings

    rendered = [folder / f"digit_{i}.{('png', 'jpg', 'bmp')[i % 3]}" for i in range(PREDICT_SAMPLES)]
    rendered_right, readings = read_right(rendered, labels[:PREDICT_SAMPLES].tolist())
    chosen = range(USER_STYLE_OFFSET, USER_STYLE_OFFSET + USER_STYLE_SAMPLES)
    styles = {
        f"predict_{style}": read_right(
            [folder / f"{style}_{i}.png" for i in chosen], labels[chosen.start : chosen.stop].tolist()
        )[0]
        for style in USER_STYLE_FLOORS
    }
    return {
        "seed": seed,
        # oneDNN limited to an older ISA computes as that CPU would (AVX512_CORE_BF16 on a Xeon with AMX: an EPYC's)
        "numerics": {**metrics["numerics"], "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA")},
        "accuracy": metrics["accuracy"],
        "mean_corruption_accuracy": metrics["mean_corruption_accuracy"],
        "worst_corruption_accuracy": min(metrics["corruption_accuracy"].values()),
        "ece": metrics["calibration"]["ece"],
        "corruption_ece": metrics["corruption_calibration"]["ece"],
        "flagged": selective["flagged"],
        "flagged_of_wrong": selective["flagged_of_wrong"],
        "selective_gain": selective["selective_accuracy"] - metrics["accuracy"],
        "scribbles_flagged": flagged(scribbles()),
        "letters_flagged": flagged(letters()),
        "predict_rendered": rendered_right,
        **styles,
        "predict_sure_of_20": sum(r["sure"] for r in readings[:20]),
    }


def draw_test_images(data, folder):
    """The images the predict tests read, drawn as they draw them."""
    images = data["eval"][0]
    for i in range(PREDICT_SAMPLES):
        render_like_a_user(images[i], i).save(folder / f"digit_{i}.{('png', 'jpg', 'bmp')[i % 3]}")
    for style in USER_STYLE_FLOORS:
        for i in range(USER_STYLE_OFFSET, USER_STYLE_OFFSET + USER_STYLE_SAMPLES):
            draw_like_a_user(images[i], style).save(folder / f"{style}_{i}.png")


def measure_command(args):
    from train import load_data

    data = load_data(DATA_DIR, CPU)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        draw_test_images(data, folder)
        for seed in args.seeds:
            rows.append(measure(seed, args.precision, data, folder))
            print(json.dumps(rows[-1]), flush=True)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


def short_cpu_name(name):
    """'Intel Xeon' for 'Intel(R) Xeon(R) Processor': the vendor and family, which tell how bfloat16 rounds."""
    return name.replace("(R)", "").removesuffix(" Processor")


def capability(numerics):
    """The ISA the run computed with: oneDNN's limit where one was set (ATen's capability says AVX512 under it)."""
    return numerics.get("onednn_max_cpu_isa") or numerics["cpu_capability"]


def table_command(args):
    lines = [
        "| figure | floor | precision (CPU, capability, threads) | seeds | min | mean | max |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    sets = [json.loads(Path(path).read_text()) for path in args.files]
    for name, (meaning, side) in FIGURES.items():
        for rows in sets:
            values = [row[name] for row in rows]
            numerics = rows[0]["numerics"]
            lines.append(
                f"| {meaning} | {'at least' if side == 'min' else 'at most'} | "
                f"{numerics['precision']} ({short_cpu_name(numerics['cpu'])}, {capability(numerics)}, "
                f"{numerics['threads']}) | {len(rows)} | "
                f"{min(values):.3f} | {sum(values) / len(values):.3f} | {max(values):.3f} |"
            )
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("measure")
    run.add_argument("--precision", choices=PRECISIONS, default="auto")
    run.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    run.add_argument("--out", required=True)
    table = commands.add_parser("table")
    table.add_argument("files", nargs="+")
    args = parser.parse_args()
    measure_command(args) if args.command == "measure" else table_command(args)


if __name__ == "__main__":
    main()
