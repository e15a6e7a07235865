"""`python main.py robustness`: a model's accuracy on the 10,000 test images under each corruption of the suite.

The mean corruption accuracy is the mean over the suite's 19 corruptions, clean images excluded.
"""

import json
from pathlib import Path

from cli import (
    ROBUSTNESS_REPORT,
    add_cache_option,
    add_data_option,
    add_json_option,
    add_model_option,
    add_views_option,
    refuse_another_models_outputs,
    refuse_in_the_dataset,
    resolve_cache_dir,
    resolve_data_dir,
)
from config import SUITE_SEED, option_type
from errors import InputError

REPORT_FILES = (ROBUSTNESS_REPORT, "robustness.png")  # beside the model


def add_arguments(parser):
    add_model_option(parser)
    add_views_option(parser)
    add_data_option(parser)
    add_cache_option(parser)
    seed_help = f"seed of the corrupted images (default: {SUITE_SEED})"
    parser.add_argument("--seed", type=option_type("seed"), default=SUITE_SEED, help=seed_help)
    add_json_option(parser)


def run(args):
    import plots
    from checkpoint import Outputs, json_writer, load_model, writable_folder
    from corruptions import corrupted_test_set
    from data import load_split
    from evaluation import evaluate, evaluate_robustness, suite_answers

    model = load_model(args.model, args.views)  # first: a file that is no model is refused as such, wherever it lies
    folder = Path(args.model).parent
    if Path(args.model).name in REPORT_FILES:
        raise InputError(f"--model {args.model} is named as this command's report, which would replace it; rename it")
    refuse_in_the_dataset(folder, f"the report's folder beside --model {args.model}", args.data_dir)
    refuse_another_models_outputs(
        args.model,
        f"a report on {Path(args.model).name} there",
        "Copy the model into a folder of its own and give that.",
    )
    writable_folder(folder)  # before the suite's minute of work, not after it
    images, labels = load_split(resolve_data_dir(args.data_dir), "test")
    suite = corrupted_test_set(images, args.seed, resolve_cache_dir(args.cache_dir))
    clean_accuracy = evaluate(model, images, labels)["accuracy"]
    report = {
        "model": str(args.model),
        "seed": args.seed,
        "view_margin": model.view_margin,
        **evaluate_robustness(model, suite, labels, clean_accuracy),
    }
    answers = suite_answers(model, images, suite, plots.ROBUSTNESS_SAMPLES)
    with Outputs() as outputs:  # the report and its figure land together
        report_file, figure_file = (folder / name for name in REPORT_FILES)
        outputs.write(report_file, json_writer(report))
        outputs.write(figure_file, plots.png_writer(plots.robustness(images, labels, suite, answers)))
        outputs.commit()
    print(
        json.dumps(report, indent=2)
        if args.json
        else f"{format_table(report)}\nwrote {' and '.join(REPORT_FILES)} in {folder}"
    )


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
