"""`python main.py evaluate`: a saved model's accuracy, per-class accuracy, calibration and confusion matrix on the
test set."""

import json

from cli import add_data_option, add_json_option, add_model_option, add_views_option, resolve_data_dir


def add_arguments(parser):
    add_model_option(parser)
    add_views_option(parser)
    add_data_option(parser)
    add_json_option(parser)


def run(args):
    from calibration import calibration_figures
    from checkpoint import load_model
    from data import load_split
    from evaluation import format_report, metrics_from_logits, predict_logits

    model = load_model(args.model, args.views)
    images, labels = load_split(resolve_data_dir(args.data_dir), "test")
    logits = predict_logits(model, images)
    metrics = metrics_from_logits(logits, labels)
    metrics.update(
        view_margin=model.view_margin,
        temperature=model.temperature,
        calibration=calibration_figures(logits, labels, model.temperature),
    )
    if model.energy_threshold is not None:
        metrics["energy_threshold"] = model.energy_threshold
    if args.json:
        print(json.dumps(metrics, indent=2))
        return
    print(format_report(metrics))
    print("confusion matrix (rows: true digit, columns: predicted)")
    print("     " + "".join(f"{c:>6}" for c in range(10)))
    for digit, row in enumerate(metrics["confusion_matrix"]):
        print(f"{digit:>5}" + "".join(f"{n:>6}" for n in row))
