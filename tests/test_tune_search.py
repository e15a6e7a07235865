"""tune_search's rules on their own: the corruption constraint, the entries shown beside each trial, when a
trial is hopeless. tests/test_tune.py runs the studies."""

import optuna

from tune_search import hopeless_accuracy, shortfall, watched


def test_the_shortfall_is_the_most_points_any_corruption_lies_below_the_reference():
    runs = [
        {"corruption_accuracy": {"translate": 90.0, "stripe": 50.0}},
        {"corruption_accuracy": {"translate": 92.0, "stripe": 54.0}},
    ]
    assert shortfall(runs, {"translate": 90.0, "stripe": 60.0}) == 8.0  # stripe: 60 against a mean of 52
    assert shortfall(runs, {"translate": 95.0, "stripe": 40.0}) == 4.0
    assert shortfall(runs, {"translate": 80.0, "stripe": 40.0}) == -11.0  # every corruption above it


def test_the_watched_entries_are_shown_against_the_reference_and_blank_where_never_measured():
    older_suite = {"scale": 96.0, "thin_strokes": 80.0, "low_resolution_8": 90.0}  # no low_resolution_12 then
    runs = [{"corruption_accuracy": {**older_suite, "scale": 97.0}}, {"corruption_accuracy": older_suite}]
    assert watched(runs, {"scale": 95.0, "thin_strokes": 81.0, "low_resolution_8": 90.0}) == {
        "low_resolution_8": (90.0, 0.0),
        "low_resolution_12": (None, None),
        "thin_strokes": (80.0, -1.0),
        "scale": (96.5, 1.5),
    }


def test_a_trial_is_hopeless_half_a_point_below_the_studys_reference():
    study = optuna.create_study()
    study.set_user_attr("reference_accuracy", 98.63)  # as a compact study's earlier recipe might score
    assert hopeless_accuracy(study) == 98.13
