"""`tune --workers N`: N worker processes on this machine sharing one study's storage, each with its share of
the cores (--threads), so that they do not fight over them: two processes that each take every core run
tens of times slower than either alone (docs/concurrency.md).

Each worker is `python main.py tune` with the parent's options, in a session of its own: Ctrl-C reaches the
parent alone, which stops every worker and says so in one line. Workers on other machines join the same
study through the same --storage, as a lone worker does.
"""

import signal
import subprocess
import sys
import threading
from pathlib import Path

from cli import usable_cpus

MAIN = Path(__file__).with_name("main.py")
STOP_SECONDS = 60  # a worker stopped by Ctrl-C finishes writing its trial's state within this, or is killed


def share_of_cores(workers, cores=None):
    """Threads for each of `workers` processes on `cores` (the CPUs this process may use): an equal share, at
    least one."""
    return max(1, (cores or usable_cpus()) // workers)


def worker_command(args, count):
    """`python main.py tune ...` for one of `count` workers: the parent's options, its share of the cores (of
    --threads where given), no report."""
    threads = share_of_cores(count, args.threads)
    command = [sys.executable, str(MAIN), "tune", "--arch", args.arch, "--max-params", args.max_params]
    command += ["--trials", args.trials, "--seeds", *args.seeds, "--study", args.study, "--out-dir", args.out_dir]
    command += ["--device", args.device, "--precision", args.precision, "--threads", threads, "--no-report"]
    for option in ("timeout", "storage", "data_dir", "cache_dir"):
        if getattr(args, option) is not None:
            command += ["--" + option.replace("_", "-"), getattr(args, option)]
    command += ["--quick"] if args.quick else []
    return [str(part) for part in command]


def run_workers(args, count):
    """Run `count` workers to the end; returns [(process id, exit code)], one per worker. Each output line is
    printed with its worker's number. Ctrl-C stops them all (SIGINT each, then wait) and raises KeyboardInterrupt."""
    command = worker_command(args, count)
    workers = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, bufsize=1
        )
        for _ in range(count)
    ]
    stopping = threading.Event()
    echoes = [threading.Thread(target=echo, args=(n, w.stdout, stopping), daemon=True) for n, w in enumerate(workers)]
    for thread in echoes:
        thread.start()
    try:
        ended = [(worker.pid, worker.wait()) for worker in workers]
    except KeyboardInterrupt:
        stopping.set()
        stop(workers)
        raise
    for thread in echoes:
        thread.join()
    return ended


def echo(number, stream, stopping):
    for line in stream:
        if not stopping.is_set():
            print(f"[worker {number}] {line}", end="", flush=True)


def stop(workers):
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGINT)  # each prunes its running trial, as a lone worker does on Ctrl-C
    for worker in workers:
        try:
            worker.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def failures(ended, trials, host):
    """One line for each worker that failed (ended: [(process id, exit code)]), naming the trials it left failed
    or unfinished (trials record their worker as host:pid)."""
    lines = []
    for number, (pid, code) in enumerate(ended):
        if code == 0:
            continue
        left = [
            t.number for t in trials if t.user_attrs.get("worker") == f"{host}:{pid}" and t.state.name != "COMPLETE"
        ]
        where = f" in trial {', '.join(map(str, left))}" if left else ""
        lines.append(f"worker {number} failed (exit {code}){where}")
    return lines
