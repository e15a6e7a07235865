"""`python main.py bench --concurrency`: what sharing the cores costs. The wall time of `python main.py` alone at
the default thread count, against two runs at once at the default (each takes every core) and two at once with
`--threads` sharing them; and tune's trials per minute with one worker against `--workers N`. Runs alternate.
With quick, the runs are `--dry-run`s and tune runs QUICK_TUNE_TRIALS trials: a smoke run whose figures mean nothing.
"""

import os
import statistics
import sys
import tempfile
from pathlib import Path

from end_to_end_bench import timed_together, wall_time_rows

MAIN = Path(__file__).with_name("main.py")
TUNE_TRIALS, QUICK_TUNE_TRIALS = 8, 2


def concurrency_benchmark(data_dir, out_dir, repeats, workers, quick=False):
    from checkpoint import write_json, write_text

    share = max(1, (os.cpu_count() or 1) // 2)
    seconds = {"alone": [], "two_at_once": [], "two_at_once_sharing": []}
    trials = TUNE_TRIALS if not quick else QUICK_TUNE_TRIALS
    tune_minutes = {1: [], workers: []}
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
            print(f"repeat {repeat + 1}/{repeats}: " + ", ".join(f"{k} {v[-2:]}" for k, v in seconds.items()))
    alone = statistics.median(seconds["alone"])
    rate = {count: trials / statistics.median(minutes) for count, minutes in tune_minutes.items()}
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
        },
    }
    out_dir = Path(out_dir)
    write_json(out_dir / "concurrency.json", results)
    write_text(out_dir / "concurrency.md", concurrency_table(results))
    print(concurrency_table(results))
    return results


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
        "| workers | trials per minute |",
        "| ---: | ---: |",
    ]
    lines += [f"| {count} | {rate:.2f} |" for count, rate in tune["trials_per_minute"].items()]
    lines += ["", f"Speed-up of the workers: {tune['speedup']:.2f}x."]
    return "\n".join(lines) + "\n"
