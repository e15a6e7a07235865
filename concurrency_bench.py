"""`python main.py bench concurrency`: what sharing the cores costs. The wall time of `python main.py` alone at
the default thread count, against two runs at once at the default (each takes every core) and two at once with
`--threads` sharing them; and tune's trials per minute with one worker against `--workers N`, over the whole
command and while its trials run (from the study's own trial times: start-up, the reference and the report left
out, which a short study is mostly made of). Runs alternate. With quick, the runs are `--dry-run`s and tune runs
QUICK_TUNE_TRIALS trials: a smoke run whose figures mean nothing."""

import os
import statistics
import sys
import tempfile
from pathlib import Path

from end_to_end_bench import timed_together, wall_time_rows

MAIN = Path(__file__).with_name("main.py")
TUNE_TRIALS, QUICK_TUNE_TRIALS = 8, 2


def concurrency_benchmark(data_dir, out_dir, repeats, workers, quick=False):
    from checkpoint import write_results
    from tune_workers import share_of_cores

    share = share_of_cores(2)  # what --threads accepts: a share of the CPUs this process may use
    seconds = {"alone": [], "two_at_once": [], "two_at_once_sharing": []}
    trials = TUNE_TRIALS if not quick else QUICK_TUNE_TRIALS
    tune_minutes = {1: [], workers: []}
    trial_rates = {1: [], workers: []}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        run = [sys.executable, str(MAIN), "--data-dir", str(data_dir), "--cache-dir", str(folder / "cache")]
        run += ["--dry-run"] if quick else []
        if not quick:  # a dry run makes no suite
            timed_together([run + ["--out", str(folder / "warm" / "m.pth")]])  # fills the suite cache
        for repeat in range(repeats):
            outs = [["--out", str(folder / f"{repeat}-{i}" / "m.pth")] for i in range(2)]
            seconds["alone"] += timed_together([run + outs[0]])
            seconds["two_at_once"] += timed_together([run + out for out in outs])
            seconds["two_at_once_sharing"] += timed_together([run + out + ["--threads", str(share)] for out in outs])
            for count in tune_minutes:
                tune = [sys.executable, str(MAIN), "tune", "--quick", "--trials", str(trials), "--seeds", "0"]
                tune += ["--data-dir", str(data_dir), "--cache-dir", str(folder / "cache")]
                tune += ["--out-dir", str(folder / f"tune-{repeat}-{count}"), "--workers", str(count)]
                tune_minutes[count] += [timed_together([tune])[0] / 60]
                trial_rates[count] += [trials_per_minute_while_running(folder / f"tune-{repeat}-{count}")]
            print(f"repeat {repeat + 1}/{repeats}: " + ", ".join(f"{k} {v[-2:]}" for k, v in seconds.items()))
    alone = statistics.median(seconds["alone"])
    rate = {count: trials / statistics.median(minutes) for count, minutes in tune_minutes.items()}
    running = {count: statistics.median(rates) for count, rates in trial_rates.items()}
    results = {
        "cpu_count": os.cpu_count(),
        "repeats": repeats,
        "quick": quick,
        "seconds": {name: [round(s, 2) for s in values] for name, values in seconds.items()},
        "median_seconds": {name: round(statistics.median(values), 2) for name, values in seconds.items()},
        "vs_alone": {name: round(statistics.median(values) / alone, 2) for name, values in seconds.items()},
        "threads_when_sharing": share,
        "tune": {
            "trials": trials,
            "minutes": {str(c): [round(m, 3) for m in minutes] for c, minutes in tune_minutes.items()},
            "trials_per_minute": {str(c): round(r, 2) for c, r in rate.items()},
            "speedup": round(rate[workers] / rate[1], 2),
            "trials_per_minute_while_running": {str(c): round(r, 2) for c, r in running.items()},
            "speedup_while_running": round(running[workers] / running[1], 2),
        },
    }
    if out_dir is not None:
        write_results(out_dir, "concurrency", results, concurrency_table(results))
    print(concurrency_table(results))
    return results


def trials_per_minute_while_running(out_dir):
    """Complete trials per minute of the study in out_dir, from its first trial's start to its last trial's end."""
    from tune_storage import open_study

    trials = [t for t in open_study("mnist", None, out_dir).trials if t.datetime_complete is not None]
    seconds = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    return sum(t.state.name == "COMPLETE" for t in trials) / seconds * 60


def concurrency_table(results):
    labels = {
        "alone": "`python main.py` alone, default threads",
        "two_at_once": "two at once, default threads (each takes every core)",
        "two_at_once_sharing": f"two at once, `--threads {results['threads_when_sharing']}` each",
    }
    lines = [
        f"{results['cpu_count']} cores, {results['repeats']} alternated repeats; wall seconds of each run, medians"
        + (" (quick mode: not real figures)" if results["quick"] else "")
        + ".",
        "",
        "| runs | wall s (median) | runs | vs alone |",
        "| --- | ---: | --- | ---: |",
    ]
    lines += wall_time_rows(labels, results, "vs_alone")
    tune = results["tune"]
    lines += [
        "",
        f"`tune --quick --trials {tune['trials']}`:",
        "",
        "| workers | trials per minute, whole command | while trials run |",
        "| ---: | ---: | ---: |",
    ]
    running = tune["trials_per_minute_while_running"]
    lines += [f"| {count} | {rate:.2f} | {running[count]:.2f} |" for count, rate in tune["trials_per_minute"].items()]
    lines += [
        "",
        (
            f"Speed-up of the workers: {tune['speedup']:.2f}x over the whole command (start-up, the study's reference "
            f"and the report included), {tune['speedup_while_running']:.2f}x while trials run."
        ),
    ]
    return "\n".join(lines) + "\n"
