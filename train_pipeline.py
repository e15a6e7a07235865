"""Build -> train -> evaluate -> save: the whole run behind `python main.py`, and its options.

The corruption suite is paid for after the accuracy gate, and only when its figure is kept: a dry run,
a diverged run and a run below the gate never build it. The run's figure is measured on a fixed
sample of ROBUSTNESS_IMAGES evaluated images (metrics.json gives its standard error), from a suite
cached between runs; `python main.py robustness` measures all 10,000.
"""

import argparse
import time
from dataclasses import replace
from pathlib import Path

from cli import (
    DEFAULT_MODEL_PATH,
    EXPORT_FORMATS,
    ROBUSTNESS_REPORT,
    RUN_RECORD,
    add_run_options,
    default_output,
    output_file,
    percentage,
    refuse_another_models_outputs,
    resolve_run_options,
)
from config import (
    AUGMENTATIONS,
    DRY_RUN_STEPS,
    SUITE_SEED,
    VALIDATION_SIZE,
    add_architecture_option,
    add_config_options,
    config_from_args,
)

AUGMENTATION_SAMPLES = 8  # training digits shown in augmentation.png
# Evaluated images per corruption for a run's robustness figure: a fixed sample whose mean is within
# about 0.2 points (one standard error) of the whole test set's, at a fifth of the cost.
ROBUSTNESS_IMAGES = 2_000


def add_arguments(parser):
    add_architecture_option(parser)
    add_config_options(parser)
    parser.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        help="augmentation preset: robust (the default preset's: stroke, noise, resolution and affine jitter), "
        "mild (the earlier recipe: small affine changes only) or none "
        "(default: the --config file's, else the preset's own)",
    )
    parser.add_argument(
        "--validation",
        action="store_true",
        help=f"train on the training images less {VALIDATION_SIZE:,} held out, and evaluate on those "
        "instead of the test set (what tune scores)",
    )
    add_run_options(parser)
    parser.add_argument(
        "--out",
        type=model_output,
        help=f"model path; metrics.json and the plots are written beside it (default: {DEFAULT_MODEL_PATH}; "
        "a --dry-run saves nothing unless given --out)",
    )
    parser.add_argument(
        "--min-accuracy",
        type=percentage,
        default=95.0,
        help="fail (exit 1, nothing saved) below this accuracy in %% (on the test set, or the validation split)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help=f"smoke run: {DRY_RUN_STEPS} training steps, no accuracy gate, no corruption suite",
    )


def model_output(text):
    """--out's type: a file's path (cli.output_file) not named as one of the figures a run writes beside its model
    (or removes: `robustness`'s report), which would take the model's place in the same set of outputs, nor with an
    export's suffix, which other tools would open as the format it names."""
    default_name = Path(DEFAULT_MODEL_PATH).name
    text = output_file(default_name)(text)
    if Path(text).name in RUN_OUTPUTS:
        raise argparse.ArgumentTypeError(
            f"{text}: a model's figures beside it take that name ({RUN_RECORD}, the plots, {ROBUSTNESS_REPORT}); "
            f"give the model another, such as {Path(text).with_name(default_name)}"
        )
    if Path(text).suffix[1:] in EXPORT_FORMATS:
        raise argparse.ArgumentTypeError(
            f"{text}: a run saves a state dict for torch.load, not an export; give it a .pth, such as "
            f"{Path(text).with_suffix('.pth')}, and make the {Path(text).suffix} with python main.py export"
        )
    return text


def run(args):
    config = config_from_args(args)  # first: a recipe file's error answers before torch loads
    if args.augment:
        config = replace(config, augmentation=AUGMENTATIONS[args.augment])
    if args.dry_run:
        config = replace(config, max_steps=DRY_RUN_STEPS)
    out = output_path(args)
    if out is not None:
        refuse_another_models_outputs(
            out,
            f"a run saving {out.name} there",
            f"Give --out a folder of its own, such as {out.parent / out.stem / out.name}",
        )
    device, data_dir, cache_dir = resolve_run_options(args)
    from train import load_data

    start = time.perf_counter()
    data = load_data(data_dir, device, args.validation)
    seconds = {"data": time.perf_counter() - start}
    pipeline(
        args.arch,
        config,
        device,
        data,
        out,
        min_accuracy=0.0 if args.dry_run else args.min_accuracy,
        cache_dir=None if args.dry_run else cache_dir,
        seconds=seconds,
        precision=args.precision,
    )


def output_path(args):
    """--out, else the default model path (refused inside the dataset, as a given --out is); a dry run keeps nothing
    unless told where."""
    if args.out is None:
        if args.dry_run:
            return None
        default_output(args, "out", DEFAULT_MODEL_PATH)
    return Path(args.out)


def pipeline(arch, config, device, data, out, min_accuracy, cache_dir, seconds, precision="auto"):
    """Train, evaluate, gate; then (cache_dir given) the robustness figure; then (out given) save the model,
    plots and metrics.json, all together or none of them. Nothing is saved when the gate fails."""
    from checkpoint import Outputs, json_writer, model_target, model_writer
    from evaluation import format_calibration, format_report
    from numerics import describe_numerics
    from train import AccuracyBelowGate, train_and_evaluate

    if out is not None:
        model_target(out)  # a file that cannot, or must not, be replaced fails now, not after the training
    result = train_and_evaluate(arch, config, device, data, precision=precision)
    metrics = result.metrics
    seconds.update(training=metrics["train_seconds"], evaluation=metrics["test_seconds"])
    print(format_report(metrics))
    print(
        f"trained in {metrics['train_seconds']:.1f} s ({metrics['train_images_per_second']:,.0f} images/s), "
        + describe_numerics(metrics["numerics"])
    )
    if metrics["accuracy"] < min_accuracy:
        raise AccuracyBelowGate(
            f"{metrics['evaluated_on']} accuracy {metrics['accuracy']:.2f}% is below --min-accuracy {min_accuracy}%; "
            "nothing was saved"
        )
    robustness = None
    if cache_dir is not None:
        start = time.perf_counter()
        robustness = robustness_sample(data["eval"], cache_dir)
        suite, _, labels = robustness
        metrics.update(robustness_figures(result.model, suite, labels, metrics["accuracy"]))
        seconds["robustness"] = time.perf_counter() - start
        print(
            f"mean corruption accuracy {metrics['mean_corruption_accuracy']:.2f}% "
            f"(+/- {metrics['mean_corruption_accuracy_standard_error']:.2f}) over {len(suite)} corruptions of "
            f"{metrics['corruption_images']:,} {metrics['evaluated_on']} images; python main.py robustness measures all"
        )
        print("under corruption, " + format_calibration(metrics["corruption_calibration"], metrics["temperature"]))
    if out is None:
        print("dry run: nothing saved (give --out to keep its model)")
        return metrics
    with Outputs() as outputs:
        start = time.perf_counter()
        outputs.write(out, model_writer(result.model, trained_with=metrics["numerics"]))
        seconds["saving"] = time.perf_counter() - start
        start = time.perf_counter()
        names = write_plots(outputs, out.parent, result, data, config, robustness)
        seconds["plots"] = time.perf_counter() - start
        metrics["seconds"] = {step: round(value, 3) for step, value in seconds.items()}
        metrics["model_file"] = out.name  # whose figures these are: another model's run is refused this folder
        outputs.write(out.with_name(RUN_RECORD), json_writer(metrics))
        outputs.commit()
    print(f"saved {out}, metrics.json and {', '.join(names)} in {out.parent}")
    return metrics


def robustness_sample(evaluated, cache_dir):
    """The suite made from a fixed, seeded sample of the evaluated images, and those images and labels."""
    import torch

    from corruptions import corrupted_test_set

    images, labels = evaluated
    chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(SUITE_SEED))[:ROBUSTNESS_IMAGES]
    chosen = chosen.sort().values.to(images.device)
    images, labels = images[chosen], labels[chosen]
    return corrupted_test_set(images, SUITE_SEED, cache_dir), images, labels


def robustness_figures(model, suite, labels, clean_accuracy):
    """metrics.json's corruption keys: the mean, its standard error, each corruption's accuracy, the sample size."""
    from evaluation import accuracy_by_corruption, evaluate_robustness

    report = evaluate_robustness(model, suite, labels, clean_accuracy)
    return {
        "mean_corruption_accuracy": report["mean_corruption_accuracy"],
        "mean_corruption_accuracy_standard_error": report["mean_corruption_accuracy_standard_error"],
        "corruption_images": report["images"],
        "corruption_accuracy": accuracy_by_corruption(report),
        "corruption_calibration": report["calibration"],
    }


PLOTS = ("training_curves.png", "confusion_matrix.png", "misclassified.png", "reliability.png", "robustness.png",
         "augmentation.png")  # fmt: skip
RUN_OUTPUTS = (RUN_RECORD, *PLOTS, ROBUSTNESS_REPORT)  # what a run writes (or removes) beside its model


def write_plots(outputs, folder, result, data, config, robustness):
    """Stage the run's plots in outputs, and the removal of a previous run's plots that this run does not draw;
    returns the names drawn."""
    import torch

    import plots
    from evaluation import suite_answers

    images, labels = data["eval"]
    evaluated_on = result.metrics["evaluated_on"]
    figures = {
        "training_curves.png": plots.training_curves(result.history),
        "confusion_matrix.png": plots.confusion_matrix(result.metrics["confusion_matrix"], evaluated_on),
        "misclassified.png": plots.misclassified(images, labels, result.logits.argmax(1), evaluated_on),
        "reliability.png": plots.reliability_diagram(result.logits, labels, result.model.temperature),
    }
    if robustness:
        suite, sample_images, sample_labels = robustness
        answers = suite_answers(result.model, sample_images, suite, plots.ROBUSTNESS_SAMPLES)
        figures["robustness.png"] = plots.robustness(sample_images, sample_labels, suite, answers)
    if config.augmentation:
        generator = torch.Generator(images.device).manual_seed(config.seed)
        samples = data["train"][0][:AUGMENTATION_SAMPLES]
        figures["augmentation.png"] = plots.augmentation(samples, config.augmentation, generator)
    for name in PLOTS:
        if name in figures:
            outputs.write(Path(folder) / name, plots.png_writer(figures[name]))
        else:
            outputs.remove(Path(folder) / name)
    outputs.remove(Path(folder) / ROBUSTNESS_REPORT)  # `robustness`'s figures of the model this run replaces
    return list(figures)
