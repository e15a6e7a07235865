"""tune's storage: opening and creating a study in a journal file or a database, repairing a journal that a crash
cut short, the settings every worker of a study shares, and running trials beside other workers (taking over
the trials of workers that died). Knows nothing of what a trial trains."""

import json
import math
import os
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import TrialState

from errors import InputError

HEARTBEAT_SECONDS = 5  # a database-stored trial whose worker stays silent for 3 beats is failed
SCHEMA_ATTEMPTS = 5  # tries at opening a database that other workers are setting up at the same moment
POLL_SECONDS = 2  # how often a worker that waits for the others' last trials looks again
JOURNAL_FILE = "tune.journal"
SETTINGS_WAIT_SECONDS = 30  # how long a worker that joins a study mid-creation waits for its settings


class TuneError(InputError):
    """The --storage URL cannot be parsed or reached, or the study was made with other settings."""


def open_study(name, storage_url, out_dir, create=None):
    """Join the study; or, where it does not exist and create is given, make it. create() returns the study's
    (directions, user attributes, first trial's parameters), measured before the study exists, so that workers
    joining meanwhile wait only for its "settings", recorded last. Without create a missing study is an error,
    and no journal is made for it."""
    if create is None and storage_url is None and not (Path(out_dir) / JOURNAL_FILE).is_file():
        raise TuneError(f"no study journal at {Path(out_dir) / JOURNAL_FILE}: run tune without --show first")
    storage = open_storage(storage_url, out_dir)
    try:
        return optuna.load_study(storage=storage, study_name=name)
    except KeyError:
        if create is None:
            raise TuneError(f"no study {name!r} in this storage: run tune without --show first") from None
    directions, attributes, first_trial = create()
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=directions)
    except optuna.exceptions.DuplicatedStudyError:  # another worker made it meanwhile
        return optuna.load_study(storage=storage, study_name=name)
    for key, value in attributes.items():
        study.set_user_attr(key, value)
    study.enqueue_trial(first_trial, user_attrs={"note": "the default recipe before this study"})
    return study


def recorded_settings(study, own):
    """The settings the study's creator records just after creating it: a worker that joined in between waits.
    A study whose creator stopped before recording them gets this worker's own, with a warning."""
    deadline = time.monotonic() + SETTINGS_WAIT_SECONDS
    while "settings" not in study.user_attrs:
        if time.monotonic() > deadline:
            print(
                f"warning: study {study.study_name!r} held no settings (its creator stopped before recording them); "
                f"recorded this worker's: {settings_option(own)}",
                file=sys.stderr,
            )
            study.set_user_attr("settings", own)
            break
        time.sleep(POLL_SECONDS / 10)
    return {"precision": "auto", **study.user_attrs["settings"]}  # a study made before precision was recorded: auto


def study_settings(args):
    """What every trial of a study must share: where it starts, its budget, the seeds, whether runs are --quick, and
    the --precision they train in (auto: each worker's machine decides, as for a user's run)."""
    return {
        "arch": args.arch,
        "max_params": args.max_params,
        "seeds": args.seeds,
        "quick": args.quick,
        "precision": args.precision,
    }


def settings_option(settings):
    seeds, quick = " ".join(map(str, settings["seeds"])), " --quick" if settings["quick"] else ""
    return (
        f"--arch {settings['arch']} --max-params {settings.get('max_params')} --seeds {seeds}{quick} "
        f"--precision {settings['precision']}"
    )


def precision_option(settings):
    """The --precision a study's runs trained in, as an option of its commands; none for auto."""
    return "" if settings["precision"] == "auto" else f" --precision {settings['precision']}"


def open_storage(url, out_dir):
    if url is None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        path = str(Path(out_dir) / JOURNAL_FILE)
        lock = optuna.storages.journal.JournalFileSymlinkLock(path)  # the lock Optuna's own writes take
        lock.acquire()
        try:
            repair_journal(Path(path))
        finally:
            lock.release()
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path, lock))
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=3 * HEARTBEAT_SECONDS
            )
        except (IntegrityError, ProgrammingError) as error:
            # Workers started together on a new database all create Optuna's tables (optuna#1092);
            # one wins, and the others find the tables there on their next attempt.
            failure = error
            time.sleep(1 + attempt)
        except Exception as error:  # noqa: BLE001  SQLAlchemy and each database driver raise their own kinds
            failure = error
            break
    raise TuneError(f"cannot open --storage {redact(url)}: {first_line(failure)}")


def repair_journal(path):
    """Drop what a crash mid-write leaves in a journal: a last record without its newline, and a partial
    record that a later write was appended to (that later record is kept). One warning line says so."""
    from checkpoint import atomic_write

    if not path.exists():
        return
    data = path.read_bytes()
    *lines, tail = data.split(b"\n")
    kept, damaged = [], 1 if tail else 0
    for line in lines:
        if _is_record(line):
            kept.append(line)
            continue
        damaged += 1
        start = line.rfind(b'{"op_code"')
        if start > 0 and _is_record(line[start:]):
            kept.append(line[start:])
    if damaged:
        repaired = b"".join(line + b"\n" for line in kept)
        atomic_write(path, lambda temporary: Path(temporary).write_bytes(repaired))
        print(
            f"warning: {path} held {damaged} damaged record(s), from a write cut short; dropped them", file=sys.stderr
        )


def _is_record(line):
    """Whether a journal line is one of Optuna's records ({"op_code": N, "worker_id": ..., ...})."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and isinstance(record.get("op_code"), int) and "worker_id" in record


def redact(url):
    """The URL with its password hidden, for printing, whether or not it parses: the user information runs to the
    last @ before the path, since a password may hold a raw @ (postgresql://u:p@ss@host/db -> u:***@host/db)."""
    scheme, separator, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not separator or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}{slash}{path}"


def first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def worker_name():
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_abandoned_trials(study):
    """Mark FAIL the running trials whose worker died: by heartbeat in a database, by process id on this
    machine in a journal (a journal on a shared disk relies on each machine's own workers for its dead)."""
    from checkpoint import process_exists

    optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = trial.user_attrs.get("worker", "").rpartition(":")
        if worker_host == host and not process_exists(int(pid)):
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            print(f"trial {trial.number} failed: its worker (process {pid}) is gone", file=sys.stderr)


def study_trials(study, *states, before=math.inf):
    return [t for t in study.get_trials(deepcopy=False, states=states) if t.number < before]


def work(study, n_trials, timeout, run_trial):
    """Run trials until the study holds n_trials complete ones or timeout seconds have passed.

    Counts the other workers' running trials as taken, waiting for them rather than starting more,
    and takes over the trial of a worker that died.
    """
    interrupted, signalled = [], []

    def on_ctrl_c(number, frame):
        signalled.append(number)
        raise KeyboardInterrupt

    def run_or_stop(trial):
        # Ctrl-C mid-trial: the trial is pruned, with the reason, and Optuna logs one line, not a traceback. It can
        # land inside Optuna's own journal writes, whose lock cleanup then raises another error in its place
        # (FileNotFoundError for the lock it had already removed): any error after a Ctrl-C is the Ctrl-C.
        try:
            return run_trial(trial)
        except BaseException as error:
            if not (isinstance(error, KeyboardInterrupt) or signalled):
                raise
            interrupted.append(trial.number)
            trial.set_user_attr("pruned", "interrupted")
            raise optuna.TrialPruned("interrupted") from None

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        deadline = time.monotonic() + (timeout or math.inf)
        while time.monotonic() < deadline:
            fail_abandoned_trials(study)
            states = Counter(trial.state for trial in study.get_trials(deepcopy=False))
            if states[TrialState.COMPLETE] >= n_trials:
                return
            if states[TrialState.COMPLETE] + states[TrialState.RUNNING] >= n_trials:
                time.sleep(POLL_SECONDS)
                continue
            study.optimize(run_or_stop, n_trials=1)
            if interrupted:
                raise KeyboardInterrupt
    finally:
        signal.signal(signal.SIGINT, previous)
