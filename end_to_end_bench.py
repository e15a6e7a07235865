"""`python main.py bench end-to-end`: `python main.py` as a user runs it (first run, second run with the suite
cached, dry run) against the original design's two scripts, each timed as a whole process, alternated; and the
timing of whole commands that concurrency_bench.py shares."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cli import RUN_RECORD
from config import QUICK_STEPS
from errors import RunError

ROOT = Path(__file__).parent
END_TO_END_STEPS = ("data", "training", "evaluation", "robustness", "saving", "plots")  # the run record's seconds


def end_to_end_benchmark(data_dir, out_dir, repeats, quick=False):
    """Wall seconds of each way of running, alternated `repeats` times: the original design's train.py then
    test.py; `python main.py` with an empty suite cache, then again with it filled; `python main.py --dry-run`.
    With quick, the training runs stop after QUICK_STEPS steps: a smoke run whose figures mean nothing."""
    from checkpoint import write_results
    from numerics import cpu_name

    seconds = {"classic": [], "first_run": [], "second_run": [], "dry_run": []}
    steps = {"first_run": [], "second_run": []}
    numerics = None
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        classic_options, main_options = ["--data-dir", data_dir], ["--data-dir", data_dir]
        if quick:
            (folder / "quick.json").write_text(json.dumps({"max_steps": QUICK_STEPS}))
            classic_options += ["--max-steps", QUICK_STEPS]
            main_options += ["--config", folder / "quick.json", "--min-accuracy", 0]
        for repeat in range(repeats):
            model = ("--model", folder / f"classic-{repeat}.pth")
            seconds["classic"].append(
                timed("classic.py", "train", *model, *classic_options)
                + timed("classic.py", "test", *model, *classic_options)
            )
            cache = ("--cache-dir", folder / f"cache-{repeat}")
            for run in ("first_run", "second_run"):
                out = folder / f"{run}-{repeat}" / "mnist_model.pth"
                seconds[run].append(timed("main.py", "--out", out, *cache, *main_options))
                metrics = json.loads(out.with_name(RUN_RECORD).read_text())
                steps[run].append(metrics["seconds"])
                numerics = metrics["numerics"]
            dry = ("--dry-run", "--out", folder / "dry" / "m.pth", "--data-dir", data_dir)
            seconds["dry_run"].append(timed("main.py", *dry, *cache))
            print(f"repeat {repeat + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in seconds.items()))
    classic = statistics.median(seconds["classic"])
    results = {
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count()},
        "numerics": numerics,
        "quick": quick,
        "repeats": repeats,
        "seconds": {name: [round(value, 2) for value in values] for name, values in seconds.items()},
        "median_seconds": {name: round(statistics.median(values), 2) for name, values in seconds.items()},
        "vs_classic": {name: round(statistics.median(values) / classic, 3) for name, values in seconds.items()},
        "median_step_seconds": {
            run: {step: round(statistics.median(row.get(step, 0) for row in rows), 2) for step in END_TO_END_STEPS}
            for run, rows in steps.items()
        },
    }
    if out_dir is not None:
        write_results(out_dir, "end_to_end", results, end_to_end_table(results))
    print(end_to_end_table(results))
    return results


def timed(script, *options):
    """Wall seconds of `python script options` as a user runs it (default threads), from the project folder."""
    return timed_together([[sys.executable, str(ROOT / script), *map(str, options)]])[0]


def timed_together(commands):
    """Wall seconds of each command (lists of strings), all started at once from the project folder; a command
    that fails is a RunError naming it and its last line of output."""
    start = time.perf_counter()
    processes = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    seconds = []
    for command, process in zip(commands, processes, strict=True):
        _, stderr = process.communicate()
        seconds.append(time.perf_counter() - start)
        if process.returncode:
            last = (stderr.strip().splitlines() or ["no output"])[-1]
            raise RunError(f"{' '.join(command[1:])} failed (exit {process.returncode}): {last}")
    return seconds


def wall_time_rows(labels, results, ratio):
    """Markdown rows of a timing table: each label's median wall seconds, its runs, and results[ratio] of it."""
    rows = []
    for name, label in labels.items():
        runs = ", ".join(f"{value:.1f}" for value in results["seconds"][name])
        rows.append(f"| {label} | {results['median_seconds'][name]:.2f} | {runs} | {results[ratio][name]:.2f}x |")
    return rows


def end_to_end_table(results):
    median = results["median_seconds"]
    names = {
        "classic": "original design: `python classic.py train` + `test`",
        "first_run": "`python main.py`, first run (no cached suite)",
        "second_run": "`python main.py`, second run (cached suite)",
        "dry_run": "`python main.py --dry-run`",
    }
    host, numerics = results["machine"], results["numerics"]
    where = (
        f"{host['cpu']} ({host['cpu_count']} cores), training in {numerics['precision']} (CPU capability "
        f"{numerics['cpu_capability']}), default threads, {results['repeats']} alternated runs each"
    )
    lines = [
        f"Measured on {where}; medians.",
        "",
        "| command | wall s (median) | runs | vs original |",
        "| --- | ---: | --- | ---: |",
    ]
    lines += wall_time_rows(names, results, "vs_classic")
    if results["quick"]:
        lines += ["", f"Quick mode: {QUICK_STEPS} training steps a run; the figures mean nothing."]
    lines += ["", f"Where a run's seconds go (medians, from {RUN_RECORD}):", ""]
    lines += ["| run | " + " | ".join(END_TO_END_STEPS) + " | other (start-up and imports, printing) |"]
    lines += ["| --- |" + " ---: |" * (len(END_TO_END_STEPS) + 1)]
    for run, step in results["median_step_seconds"].items():
        other = median[run] - sum(step.values())
        lines.append(f"| {run} | " + " | ".join(f"{step[s]:.2f}" for s in END_TO_END_STEPS) + f" | {other:.2f} |")
    return "\n".join(lines) + "\n"
