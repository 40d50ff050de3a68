"""The Optuna study behind a search: opening its storage (SQLite in the output folder, or a PostgreSQL server shared
by workers on many machines), and failing the trials whose worker died."""

from __future__ import annotations

import importlib.util
import os
import random
import re
import socket
import time
import warnings
from pathlib import Path
from typing import Any

from edgetransfer.errors import UsageError


def need_optuna():
    """The optuna module, or a one-line :class:`UsageError` saying how to install it."""
    try:
        import optuna
    except ModuleNotFoundError:
        raise UsageError("edgetransfer search needs optuna: pip install 'edgetransfer[search]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the search says what happens (a failed trial too) itself
    # heartbeats and stale-trial failing are "experimental" since 2.9; constraints_func is deprecated from 5.0 on
    # (still there, and what 3.6 has): the features are used knowingly, the warnings say nothing to a user
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*constraints_func. has been deprecated", category=FutureWarning)
    return optuna


def redact(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``: everything from the user's ':' to
    the last '@' before the query goes (a password holding '@' or '/' included: 'p@ss' printed 'ss', 'pa/ss' all of
    it; a database name holding '@' is hidden too, rather than a password shown)."""
    head, sep, query = url.partition("?")
    found = re.match(r"([\w+.-]+://[^:/@]+):.*@", head)
    return url if found is None else f"{found.group(1)}:***@{head[found.end() :]}{sep}{query}"


def _host(url: str) -> str | None:
    """The host SQLAlchemy reads in ``url`` (None where it reads none or cannot read the URL)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).host
    except (ArgumentError, ValueError):
        return None


def missing_sqlite(url: str) -> Path | None:
    """The file of a SQLite storage URL that is not there: opening it would make an empty database (a mistyped
    path given to --worker or --resume left one behind)."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        database = make_url(url).database
    except ArgumentError:  # not a URL it can read: open_storage says so, with the forms --storage takes
        return None
    if not database or database == ":memory:":
        return None
    return None if Path(database).exists() else Path(database)


def open_storage(url: str, *, heartbeat: int):
    """An Optuna RDB storage with heartbeats (a trial whose worker stops beating for 6 heartbeats is failed by the
    next worker that starts a trial). An unreachable server, a wrong URL or a missing driver: one line."""
    optuna = need_optuna()
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    shown, url = redact(url), with_driver(url)
    if "@" in (_host(url) or ""):  # SQLAlchemy splits at the first '@': the rest of the password became the host
        raise UsageError(
            f"--storage {shown}: its password (or user name) holds '@': write it URL-encoded, as %40 (the driver read "
            "the rest of it as the host name, and said it)"
        )
    if url.startswith("sqlite"):
        # several worker processes on one SQLite file take turns; sqlite3's own transactions are off (they begin
        # at the first write) for BEGIN IMMEDIATE below
        connect: dict[str, Any] = {"timeout": 60, "isolation_level": None}
    elif url.startswith("postgresql"):
        connect = {"connect_timeout": 10}
    else:
        connect = {}
    deadline = time.monotonic() + _SCHEMA_RACE_S
    attempt = 0
    while True:
        attempt += 1
        try:
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs={"connect_args": connect, "pool_pre_ping": True},
                heartbeat_interval=heartbeat,
                grace_period=6 * heartbeat,
            )
            if url.startswith("sqlite"):
                _lock_at_begin(storage)
            return storage
        except ImportError as exc:
            raise UsageError(f"--storage {shown}: its database driver is not installed ({exc})") from None
        except (SQLAlchemyError, ArgumentError, ValueError, OSError) as exc:
            if _schema_race(exc) and time.monotonic() < deadline:
                # another worker is creating the same new study's tables right now: once it has, opening works (a
                # fixed 8 tries, about 7 s, could run out on a busy machine while the winner was still at it)
                time.sleep(min(0.2 * attempt, 2.0) + random.uniform(0, 0.2))
                continue
            first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            form = (  # not a URL SQLAlchemy can read, or one of a database it has no dialect for: the forms taken
                "; --storage takes sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB"
                if isinstance(exc, ArgumentError) or "Can't load plugin" in str(exc)
                else ""
            )
            raise UsageError(
                f"cannot reach the storage {shown}: {first[0] if first else type(exc).__name__}{form}"
            ) from None


def _lock_at_begin(storage) -> None:
    """Every transaction takes SQLite's write lock at its start. Optuna claims a waiting trial by reading its state
    and writing RUNNING "for update", which SQLite ignores: with Python's sqlite3 beginning a transaction only at
    the first write, two workers both read WAITING and both took the trial (SQLAlchemy's recipe for pysqlite)."""
    from sqlalchemy import event

    event.listen(storage.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))


_SCHEMA_RACE_S = 60.0  # as long as SQLite's own lock timeout above


def _schema_race(exc: BaseException) -> bool:
    """Whether opening failed because another process created Optuna's tables at the same moment (two workers
    starting on a new storage): SQLite says "table ... already exists" or fails alembic's version row as a
    duplicate; PostgreSQL says "duplicate key" or "already exists"."""
    from sqlalchemy.exc import IntegrityError

    text = str(getattr(exc, "orig", None) or exc).lower()
    return isinstance(exc, IntegrityError) or "already exists" in text or "alembic_version" in text


def with_driver(url: str) -> str:
    """``postgresql://...`` with the PostgreSQL driver that is installed (SQLAlchemy 2.1 assumes psycopg 3, older
    versions psycopg2; the [search] extra brings psycopg2): ``postgresql+psycopg2://...``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return url
    for module in ("psycopg2", "psycopg"):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{module}://{rest}"
    raise UsageError(f"--storage {redact(url)} needs a PostgreSQL driver: pip install 'edgetransfer[search]'")


def this_worker() -> str:
    """``host:pid``: who runs a trial (recorded with it, shown in the tables)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_identity(pid: int | str = "self") -> dict | None:
    """Where a process's pid means it (the boot, the pid namespace) and when it started (clock ticks since boot), or
    None without Linux's /proc. Recorded with a trial: a host name and pid alone were shared by containers of one
    host name (another container's live worker looked dead: its pid is not in this namespace) and by a pid reused
    after the worker died (a dead worker looked alive)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat(f"/proc/{pid}/ns/pid").st_ino
        stat = Path(f"/proc/{pid}/stat").read_text()
        start = int(stat[stat.rindex(")") + 2 :].split()[19])  # field 22, after the name in parentheses
    except (OSError, ValueError, IndexError):
        return None
    return {"boot": boot, "pid_namespace": namespace, "start": start}


def _dead_here(worker: str, recorded: dict | None) -> bool:
    """Whether the worker ``host:pid`` ran on this machine, in this pid namespace, and is gone (or its pid is another
    process's now). One recorded elsewhere (another boot, container or namespace) is not judged here: Optuna's
    heartbeat rule fails it when it stops beating."""
    where, _, pid = worker.rpartition(":")
    if where != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    here = process_identity()
    if recorded and here and any(recorded.get(key) != here[key] for key in ("boot", "pid_namespace")):
        return False
    if not _alive(int(pid)):
        return True
    now = process_identity(int(pid)) if recorded else None
    return bool(now and recorded.get("start") is not None and now["start"] != recorded["start"])  # pid reused


def host_of(worker: str | None) -> str:
    """The machine of a ``host:pid`` worker ("" when unknown)."""
    return (worker or "").rpartition(":")[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study, out: Path | None = None) -> list[int]:
    """Mark failed the running trials whose worker is gone: on this machine, a worker process that no longer
    exists; anywhere, one whose heartbeat stopped (Optuna's stale-trial rule). Returns their numbers."""
    optuna = need_optuna()
    from optuna.trial import TrialState

    failed = []
    storage = study._storage  # the public API has no "fail this trial": the storage's own calls
    trials = study.get_trials(deepcopy=False)
    for trial in (t for t in trials if t.state == TrialState.RUNNING):
        worker = str(trial.user_attrs.get("worker", ""))
        if _dead_here(worker, trial.user_attrs.get("worker_process")):
            try:  # (a finished trial's attributes cannot change: the folder first)
                # where it is now (the search folder moved: the recorded path is gone), and only in this search's
                # own folder (a copy's resume removed the original's trial folder: a review)
                run = located_run(trial.user_attrs.get("run"), out)
                ours = out is None or (run is not None and _inside(Path(run), Path(out).expanduser().resolve()))
                if own_folder(trial, trials) and ours and _remove_half_made(run):
                    storage.set_trial_user_attr(trial._trial_id, "run", None)
                storage.set_trial_user_attr(trial._trial_id, "error", f"its worker ({worker}) died mid-trial")
                if storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                    failed.append(trial.number)
            except optuna.exceptions.UpdateFinishedTrialError:  # another worker marked it failed meanwhile
                continue
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    optuna.storages.fail_stale_trials(study)  # another machine's worker: its folder is on that machine
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    return sorted(set(failed) | (after - before))


def located_run(run: str | None, out: Path | None) -> str | None:
    """A trial's run folder where it is now: ``out/trials/<its name>`` where that is a folder, else as recorded. The
    study records absolute paths, of where the search was made: a search folder moved (as the refusal of a renamed
    one advises) reported its runs, its pick included, at the old place, gone, and reused fine-tunes from there; a
    copy's report pointed into the original (a new user's trial). A trial of a worker on another machine (its own
    --out there) has no folder here and keeps its recorded path."""
    if run and out is not None:
        here = Path(out).expanduser().resolve() / "trials" / Path(run).name
        if here.is_dir():
            return str(here)
    return run


def own_folder(trial, trials) -> bool:
    """Whether ``trial``'s recorded run folder is its own: a repeat of a finished candidate records that trial's
    folder (its figures are copied), which must not go with the repeat."""
    run = trial.user_attrs.get("run")
    if not run or "same_as" in trial.user_attrs or not Path(run).name.startswith(f"{trial.number:04d}-"):
        return False
    return not any(t.user_attrs.get("run") == run for t in trials if t.number != trial.number)


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder)
    except OSError:
        return False


def _remove_half_made(run: str) -> bool:
    """A dead worker's trial folder (a half-trained or half-exported run, its staging folders inside) and its lock go,
    as an interrupted trial's do: left, it sat among the search's runs (a 27 MB resume.pt, an 8.9 MB staging export)
    and bench on it said to continue it with finetune --resume. A folder whose lock a process still holds (a worker
    whose heartbeat only stalled) stays. Returns whether the trial has no run folder now."""
    from edgetransfer.rundir import RunDir

    folder = RunDir(Path(run))
    if not folder.path.exists() and not folder.path.is_absolute():  # a relative path from another working folder
        return False  # may name one elsewhere: left as it is
    return folder.remove_unless_held()  # (killed after taking the run's lock, before its first write: the lock goes)
