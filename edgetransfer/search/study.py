"""``edgetransfer search`` as one function: create (or resume, or join) an Optuna study, run trials until the
trial count, the time budget or the candidates run out, and report.

A search lives in its output folder: ``study.db`` (the default SQLite storage), ``trials/NNNN-backbone-SIZEpx-int8``
(one ordinary run directory per trial), ``search.json`` and ``search.html``. The leading process holds the folder's
lock (a second search on it is refused); ``--worker`` processes join the study without it, here or on other machines
(``--storage postgresql://...``), and take the candidates and training options the study recorded at its start."""

from __future__ import annotations

import math
import random
import shutil
import textwrap
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from rich.markup import escape

from edgetransfer import console
from edgetransfer.devices import resolve_device
from edgetransfer.errors import BudgetError, EdgeTransferError, UsageError
from edgetransfer.quantize import Int8Config
from edgetransfer.rundir import CARD, CHECKPOINT, RunDir
from edgetransfer.search import report
from edgetransfer.search.config import SearchConfig, Space, build_space
from edgetransfer.search.live import Progress
from edgetransfer.search.storage import (
    fail_dead_trials,
    host_of,
    missing_sqlite,
    need_optuna,
    open_storage,
    own_folder,
    process_identity,
    redact,
    this_worker,
)
from edgetransfer.search.trial import Budget, Candidate, TrialError, measure_latency, run_trial

FIGURES = ("run", "val_top1", "torch_val_top1", "test_top1", "latency_ms", "latency_key", "p50_ms", "p99_ms")
FIGURES += ("cv_percent", "model_mb", "precision", "epochs_run", "seconds", "within_budget", "over_budget_ms")
FIGURES += ("budget_failures", "p50_p99_batch", "throughput_ips")
FIGURES += ("finetune_s", "export_s", "bench_s", "val_images", "measured_on", "slowest_on", "int8_drop_points")
FIGURES += ("latency_noisy",)
FIRST_PRUNE_EPOCH = 2  # the earliest epoch a trial can be pruned at (epochs count from 1)
EXPORT_MAX_DROP = Int8Config.max_drop  # export's int8 budget (points): a static trial past it has its QAT sibling tried
ALL_FAILED_STOP = 3  # trials that failed, none finished: the search stops (_failing)
MAX_SHARE = 0.5  # with a time budget, a trial may take at most this share of the time left: several get tried
# (the sampler's choices; the initial design's trials run whenever they fit the time left: see _too_long)


@dataclass
class SearchResult:
    """What a search (or a worker) leaves: the trial rows, the budget, the report files and what happened."""

    out: Path
    budget: Budget
    rows: list[dict]
    document: dict
    written: list[Path] = field(default_factory=list)
    failed_dead: list[int] = field(default_factory=list)  # running trials of dead workers, marked failed
    stopped: str = ""
    mine: list[int] = field(default_factory=list)  # the trials this process ran


def search(config: SearchConfig) -> SearchResult:
    """Run (or resume, or join with ``config.worker``) the search ``config`` describes."""
    config.validate()
    need_optuna()
    from edgetransfer.search.tracking import mlflow_logger

    log = mlflow_logger(config.mlflow, Path(config.out).name) if config.mlflow else None  # checked before any work
    out = Path(config.out).expanduser()
    blocked = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:  # before the lock, whose error read "cannot write .../.x.lock: File exists"
        raise UsageError(f"--out {config.out}: {blocked} is a file, not a folder")
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import OperationalError

    try:
        if config.worker:
            return _Search(config, out, log).join()
        with RunDir(out).lock("search"):
            return _Search(config, out, log).lead()
    except Exception as exc:  # noqa: BLE001 - the database went away during the search (else: raised again)
        # Optuna's RDB storage wraps most of SQLAlchemy's errors (a server gone, a connection lost) in its own
        # StorageInternalError, whose text reads "invalid data in the commit": the cause is said (a reviewer's).
        # Where the server stopped mid-trial, Optuna's own bookkeeping then failed reading the trial back and raised
        # an UnboundLocalError ('updated_state') over it: 450 lines of traceback (a new user's trial). The storage's
        # error is looked for in what was being handled when an error was raised, too
        exc = (
            None
            if isinstance(exc, EdgeTransferError)
            else _storage_error(exc, (OperationalError, StorageInternalError))
        )
        if exc is None:  # (one of ours says what went wrong itself)
            raise
        cause = exc.__cause__ if isinstance(exc, StorageInternalError) and exc.__cause__ is not None else exc
        first = str(getattr(cause, "orig", None) or cause).strip().splitlines()
        raise UsageError(
            f"the storage stopped answering ({first[0] if first else 'no reason given'}); the finished trials are kept "
            "in it: --resume (or --worker) when it is back"
        ) from None


def _flag(key: str, value) -> str:
    """An option as typed: ``--skip-bad`` / ``--no-skip-bad`` for a switch ('--skip-bad True' was said), else
    ``--key value``."""
    name = key.replace("_", "-")
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no-{name}"
    return f"--{name} {value}"


def _storage_error(exc: BaseException, kinds: tuple) -> BaseException | None:
    """``exc`` or the first error of ``kinds`` it was raised from or while handling (its causes and contexts), or
    None."""
    seen, todo = set(), [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kinds):
            return current
        todo += [current.__cause__, None if current.__suppress_context__ else current.__context__]
    return None


def _check_new(config: SearchConfig, out: Path):
    """A new search: the output folder is new or empty and apart from the data; the data can be split. Returns the
    data folder (the built-in digits resolved) and its splits."""
    from edgetransfer.builtin_data import resolve_data
    from edgetransfer.data import load_splits
    from edgetransfer.finetune_config import check_splits

    where = out.resolve()
    if where == Path(where.anchor) or where == Path.home().resolve():
        raise UsageError(f"--out {config.out} is {where}; name a folder for the search, e.g. models/NAME")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {config.out} is a file; name a folder for the search")
    mlflow = Path(config.mlflow).expanduser().resolve() if config.mlflow and "://" not in config.mlflow else None
    held = [  # --mlflow's local store inside --out was made a moment ago (it refused the search; a reviewer's)
        p for p in (out.iterdir() if out.is_dir() else ()) if not (mlflow and mlflow.is_relative_to(p.resolve()))
    ]
    if config.storage is not None and (out / "trials").is_dir() and any((out / "trials").iterdir()):
        # another study's trials: this one's would be put in the same folders (trials/0000-...), refused as there
        raise UsageError(f"{out} holds an earlier search's trials; choose another --out (a new or empty folder)")
    if config.storage is None and held:
        if (out / "study.db").is_file():
            raise UsageError(f"{out} holds a search already; --resume continues it, or choose another --out")
        what = "a fine-tuned run" if (out / CARD).is_file() else "files"
        raise UsageError(f"{out} holds {what} and no search; choose another --out (a new or empty folder)")
    data = resolve_data(config.data, config.seed)
    given = Path(data).expanduser().resolve()
    if given.is_relative_to(where) or where.is_relative_to(given):
        raise UsageError(f"--out {config.out} and --data {config.data} overlap; choose an --out outside the data")
    splits = load_splits(data, seed=config.seed, skip_bad=config.skip_bad)
    check_splits(splits)
    return str(given), splits


def _plan_devices(config: SearchConfig, out: Path) -> list:
    """The devices of ``--on`` with their SSH clients (host keys recorded in OUT/known_hosts unless
    ``--known-hosts``), checked before any work; empty without ``--on``."""
    if not config.on:
        return []
    from edgetransfer.bench.remote import plan_devices
    from edgetransfer.bench.targets import DeviceError

    devices = plan_devices(
        config.on,
        RunDir(out),
        targets=Path(config.targets) if config.targets else None,
        known_hosts=Path(config.known_hosts) if config.known_hosts else None,
        wheelhouse=Path(config.wheelhouse) if config.wheelhouse else None,
    )
    for device, ssh in devices:  # each device answers before the first trial trains, not after
        try:
            ssh.run("true", timeout=60, what="a first contact")
        except DeviceError as exc:
            raise UsageError(f"--on {device.label} ({device.address}): {exc}") from None
    return devices


def _enqueue(study, c: Candidate) -> None:
    """Queue ``c`` as the study's next trial (the parameters the sampler would suggest for it)."""
    study.enqueue_trial({"backbone": c.backbone, f"size_{c.backbone}": c.size, "int8": c.int8})


def _trials_reached(config: SearchConfig) -> str:
    """Why a search stopped at its --trials (it read "stopped: 0 trial(s)" above a table of three trials: the
    search's total, every worker together, not this run's). ``--trials 0`` runs none by design (it read "--trials 0
    reached" over the table after a --resume that only measured again; a new user's trial)."""
    if config.trials == 0:
        what = "the trials measured again where needed, and reported" if config.resume else "the search made"
        return f"--trials 0: no trial runs ({what})"
    return f"--trials {config.trials} reached (every worker together)"


def _died(trial) -> bool:
    """A trial failed because its worker died (killed, or its heartbeat stopped), not for a reason of its own."""
    return trial.state.name == "FAIL" and (
        "error" not in trial.user_attrs or "died mid-trial" in trial.user_attrs["error"]
    )


def _violation(trial) -> list[float]:
    """The TPE sampler's constraint (feasible when <= 0): ms over the latency budget; at least 1 when the model
    breaks another of the profile's budgets (size, memory, throughput)."""
    over = float(trial.user_attrs.get("over_budget_ms", 0.0))
    return [max(over, 1.0) if trial.user_attrs.get("budget_failures") else over]


def _counts(trial) -> bool:
    """A trial that ended and counts towards --trials and the stop rules: not a repeat of another trial's candidate,
    not skipped, and not one whose worker died (its candidate is tried again)."""
    attrs = trial.user_attrs
    return trial.state.is_finished() and "same_as" not in attrs and "skipped" not in attrs and not _died(trial)


def trial_note(exc: EdgeTransferError) -> str:
    """What a failed trial's row says: the error's first line, whole words; for an int8 budget export could not
    hold, without export's advice (its options, --max-drop and --calib-method, are not search's: the search tries
    the quantization-aware sibling itself)."""
    said = str(exc).splitlines()[0]
    if isinstance(exc, BudgetError):
        said = said.rsplit("; ", 1)[0]
    return textwrap.shorten(said, 400, placeholder=" ...")


def _default_candidate(config: SearchConfig, space: Space, splits) -> Candidate | None:
    """The candidate the commands' defaults make (their backbone, the size from the images, static int8), when it is
    in the space: tried first, so the pick is measured against it in the same search."""
    from edgetransfer import backbones
    from edgetransfer.finetune_config import FinetuneConfig, choose_size

    defaults = FinetuneConfig(data=config.data, out=config.out, seed=config.seed)
    if defaults.backbone not in space.sizes or "static" not in space.int8_methods:
        return None
    size = choose_size(defaults, backbones.get(defaults.backbone), splits)[0]
    return Candidate(defaults.backbone, size, "static") if size in space.sizes[defaults.backbone] else None


def _no_database(option: str, storage: str | None) -> None:
    """A --storage SQLite file that is not there: nothing to join or resume, said before opening it would make it."""
    missing = missing_sqlite(storage) if storage else None
    if missing is not None:
        raise UsageError(
            f"{option}: no search database at {missing} (--storage {redact(storage)}); check the path, or start a "
            "search there with 'edgetransfer search'"
        )


def _initial_design(config: SearchConfig, space: Space, splits) -> list[Candidate]:
    """The first trials, before the sampler chooses: the default candidate (the pick is measured against it), then
    the default backbone at the smallest size of the grid, the fastest and cheapest trial of its family: whether
    the data needs the default's resolution is the question a latency budget asks first, and it costs least to
    answer. Where the default candidate is not in the space (--sizes without the size finetune would choose, or
    --int8-methods without static) the smallest still goes first, with static int8 where it is in the space (the
    sampler's random first choice was a QAT trial or another backbone: a new user's trial); empty where the default
    backbone is not in the space."""
    from edgetransfer.finetune_config import FinetuneConfig

    first = _default_candidate(config, space, splits)
    if first is None:
        backbone = FinetuneConfig(data=config.data, out=config.out).backbone
        if backbone not in space.sizes:
            return []
        method = "static" if "static" in space.int8_methods else space.int8_methods[0]
        return [Candidate(backbone, min(space.sizes[backbone]), method)]
    smallest = Candidate(first.backbone, min(space.sizes[first.backbone]), first.int8)
    return [first] if smallest == first else [first, smallest]


class _Search:
    def __init__(self, config: SearchConfig, out: Path, log) -> None:
        self.config, self.out, self.log = config, out, log
        self.profile_toml: str | None = None  # a profile file's text (None: a built-in profile, or an older study)
        self.optuna = need_optuna()
        self.mine: list[int] = []
        self.last_was_repeat = False
        self.rng = random.Random(config.seed)
        self.first: set[str] = set()  # the initial design's candidates (keys)
        self.first_is_default = True  # whether the first of them is the default's candidate (see _initial_design)
        self.deadline: float | None = None
        self.before: set[int] = set()  # the trials started before this process's loop began (_failing)
        self.devices: list = []
        self.fingerprint: str | None = None  # the new search's split, recorded for --resume and workers

    # ------------------------------------------------------------------ the three ways in
    def lead(self) -> SearchResult:
        config, out = self.config, self.out
        # --resume --trials 0 runs no trial (it measures again and reports)
        if not (config.resume and config.trials == 0):
            resolve_device(config.device)  # --device tpu, or cuda without a GPU: one line, not a failed trial each
        if not config.resume:
            from edgetransfer.bench.profiles import load_profile, profile_text
            from edgetransfer.data import median_shorter_side

            # the options first (a bad profile, backbone, size or method), then the folder and the data: one run
            # shows every mistake in turn, not a used --out and then, once that is mended, a misspelt backbone
            profile = load_profile(config.profile)
            self.profile_toml = profile_text(config.profile)  # recorded: workers and --resume read this budget
            named = build_space(config)  # the images' size only sets the grid when no --sizes is given
            data, splits = _check_new(config, out)
            self.fingerprint = splits.fingerprint()  # what --resume and workers given a --data are checked against
            unused = [key for key in ("backends", "variants") if key in profile.settings]
            if unused:  # each trial is measured with --backend and its own int8 variant
                console.err.print(
                    f"[yellow]note: the profile's {' and '.join(unused)} setting not used: a search measures each "
                    f"trial's own int8 model with --backend ({config.backend})[/]"
                )
            side = None if config.sizes else median_shorter_side(splits.train, seed=config.seed)
            space = named if side is None else build_space(config, side)
            first = _initial_design(config, space, splits)
            # the first is the default's candidate, or (not in the space) its backbone's smallest size: only the
            # default's QAT sibling joins the initial design (its int8 is export's auto)
            self.first_is_default = _default_candidate(config, space, splits) is not None
            if config.trials:  # no trial left waiting that will never run (--trials 0 makes a search that workers and
                first = first[: config.trials]  # --resume --trials N run: its initial design waits for them)
        if config.resume and config.storage is None and not (out / "study.db").is_file():
            # opening the SQLite storage would create an empty study.db in a wrong --out (an image folder, say)
            raise UsageError(
                f"--resume: no search to resume in {out} (no study.db); start one with 'edgetransfer search', or "
                "pass its --storage"
            )
        if config.resume:
            _no_database("--resume", config.storage)
        made = not out.exists()
        # an empty --out given: what a failed start made in it goes too (a Ctrl-C while the study was being made
        # kept a study.db without its candidates: refused as a search, and --resume was a KeyError traceback)
        was_empty = not made and not config.resume and out.is_dir() and not any(out.iterdir())
        hosts = out / "known_hosts"
        had_hosts = hosts.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
            if not config.resume:  # after mkdir: first-contact host keys are recorded in OUT/known_hosts
                self.devices = _plan_devices(config, out)
            storage = open_storage(config.storage_url(), heartbeat=config.heartbeat)
            study = self._load(storage) if config.resume else self._create(storage, data, space, first)
        except BaseException:
            if made:
                shutil.rmtree(out, ignore_errors=True)  # nothing half-made stays behind
            elif was_empty:
                for left in list(out.iterdir()):
                    shutil.rmtree(left, ignore_errors=True) if left.is_dir() else left.unlink(missing_ok=True)
            elif not had_hosts:
                hosts.unlink(missing_ok=True)
            raise
        if config.resume and self.config.trials != 0:  # --resume --trials 0 runs no trial
            self.devices = _plan_devices(self.config, out)  # the --on the study recorded
        dead = fail_dead_trials(study, self.out)
        if dead:
            console.err.print(f"[yellow]trial(s) {', '.join(map(str, dead))}: their worker died; marked failed[/]")
        if not config.resume and self.config.trials == 0:
            console.err.print(
                "[yellow]note: --trials 0: the search is made and no trial runs; to run its trials, give the number: "
                "workers join it with --worker --trials N, and --resume --trials N continues it (the limit counts "
                "every worker's trials together; without it they stop at 0 too)[/]"
            )
        if config.resume and self.config.trials != 0:
            self._retry_died(study)
            if config.time_budget is None and study.user_attrs.get("deadline") is not None:  # it had one
                console.err.print(
                    "[yellow]note: a --time-budget is not carried over by --resume; give one to bound this run[/]"
                )
        result = self._run(study, dead)
        result.written = report.write(out, result.document, result.budget)
        return result

    def join(self) -> SearchResult:
        resolve_device(self.config.device)
        if self.config.storage is None and not (self.out / "study.db").is_file():
            raise UsageError(
                f"no search to join in {self.out} (no study.db); start one with 'edgetransfer search' first, or "
                "pass its --storage"
            )
        _no_database("--worker", self.config.storage)
        # the folder only once the search is there: a storage that cannot be reached, or holds no such search,
        # left an empty --out (and its parents) behind
        study = self._load(open_storage(self.config.storage_url(), heartbeat=self.config.heartbeat))
        self.out.mkdir(parents=True, exist_ok=True)
        self.devices = _plan_devices(self.config, self.out)
        return self._run(study, fail_dead_trials(study, self.out))

    def _create(self, storage, data: str, space: Space, first: list[Candidate]):
        sampler, pruner = self._sampler(space), self._pruner()
        name = self.study_name
        try:
            study = self.optuna.create_study(
                storage=storage, study_name=name, direction="maximize", sampler=sampler, pruner=pruner
            )
        except self.optuna.exceptions.DuplicatedStudyError:
            raise UsageError(
                f"{self._where()} holds a search named {name!r} already; --resume continues it, --worker joins it"
            ) from None
        recorded = {**self.config.recorded(), "trials": self.config.trials}
        attrs = {"config": recorded, "space": space.to_dict(), "data": data, "fingerprint": self.fingerprint}
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        self.config = replace(self.config, data=data)
        self.space = space
        # a profile file's text, so that every worker and --resume hold the same budget (its path, recorded as typed,
        # was not found from another folder or machine, and an edit between them changed the budget; a reviewer's)
        study.set_user_attr("profile_toml", self.profile_toml)
        study.set_user_attr("first", [c.key for c in first])
        study.set_user_attr("first_is_default", self.first_is_default)
        self.first = {c.key for c in first}
        for c in first:  # the default candidate, then its smallest size (see _initial_design)
            _enqueue(study, c)
        console.err.print(f"search {name}: {space.describe()}; storage {self._where()}")
        return study

    def _check_same_data(self, study, recorded: dict) -> None:
        """A --data given to --resume or a worker must hold the search's images (another path to them is fine: another
        machine); other images were trained on without a word and ranked with the search's trials."""
        from edgetransfer.builtin_data import resolve_data
        from edgetransfer.data import load_splits

        given, known = self.config.data, study.user_attrs.get("data", "")
        if not given or not known:
            return
        seed = recorded.get("seed", self.config.seed)
        path = resolve_data(given, seed)
        if Path(path).expanduser().resolve() == Path(known).expanduser().resolve():
            return
        fingerprint = study.user_attrs.get("fingerprint")
        if fingerprint is None:  # a study from before the fingerprint was recorded
            console.err.print(
                f"[yellow]note: this search (started by an older edgetransfer) cannot check that --data "
                f"{escape(given)} holds its images ({escape(known)}); its trials train on what is given[/]"
            )
            return
        splits = load_splits(path, seed=seed, skip_bad=recorded.get("skip_bad", self.config.skip_bad))
        if splits.fingerprint() != fingerprint:
            raise UsageError(
                f"--data {given} holds other images than this search's ({known}): every trial of a search trains on "
                "the same split; give the same images (another path to them is fine), or start a new search (another "
                "--out)"
            )

    def _load(self, storage):
        try:
            study = self.optuna.load_study(study_name=self.study_name, storage=storage)
        except KeyError:
            what = "--resume" if self.config.resume else "--worker"
            held = self.optuna.get_all_study_names(storage=storage)
            if held:  # a search folder renamed or copied: its study keeps the name of the folder it started in
                names = ", ".join(repr(n) for n in held[:5]) + (", ..." if len(held) > 5 else "")
                raise UsageError(
                    f"{what}: no search named {self.study_name!r} in {self._where()} (a search is named after its "
                    f"--out folder); it holds {names}: give --out a folder of that name (rename it back if it was "
                    "renamed or copied)"
                ) from None
            raise UsageError(
                f"{what}: no search named {self.study_name!r} in {self._where()}; start one with 'edgetransfer search'"
            ) from None
        recorded = dict(study.user_attrs.get("config", {}))
        self._check_same_data(study, recorded)
        if self.config.trials is not None:  # a new total given here wins (and, resuming, the workers follow it)
            if self.config.resume:
                study.set_user_attr("config", {**recorded, "trials": self.config.trials})
            recorded.pop("trials", None)
        given_on = self.config.on
        defaults = {f.name: f.default for f in fields(self.config)}
        unused = [  # given now, other than the study's and than the default: the study's settings win (said)
            (key, getattr(self.config, key))
            for key in sorted(recorded)
            if key in defaults and key != "on" and getattr(self.config, key) not in (defaults[key], recorded[key])
        ]
        if unused:
            flags = ", ".join(_flag(key, value) for key, value in unused)
            kept = ", ".join(  # None: not given at its start (finetune's default): said so, not as Python's None
                f"{key} {'the default' if recorded[key] is None else recorded[key]}" for key, _ in unused
            )
            console.err.print(
                f"[yellow]note: {escape(flags)} not used: this search keeps the settings it started with "
                f"({escape(kept)}), the same for every worker; start a new search (another --out) to change them[/]"
            )
        self.config = self.config.with_recorded(recorded)
        self.profile_toml = study.user_attrs.get("profile_toml")
        # the study's heartbeat for every process: each failed others' trials after 6 of its own (a worker with
        # --heartbeat 120 had its live trials failed by a lead of 10; a reviewer's finding)
        storage.heartbeat_interval, storage.grace_period = self.config.heartbeat, 6 * self.config.heartbeat
        if given_on is not None and "on" in recorded and given_on != recorded["on"]:
            where = f"on {recorded['on']}" if recorded["on"] else "here"
            console.err.print(
                f"[yellow]--on {given_on} is not used: this search measures {where} (recorded at its start)[/]"
            )
        if not self.config.data:
            self.config = replace(self.config, data=study.user_attrs.get("data", ""))
        if "space" not in study.user_attrs:  # (a search stopped while it was being made, by an older edgetransfer)
            raise UsageError(
                f"the search in {self._where()} was stopped while it was being made (it records no candidates); "
                "start it again in a new --out"
            )
        self.space = Space.from_dict(study.user_attrs["space"])
        self.first = set(study.user_attrs.get("first", []))
        given = [
            option
            for option, value in (
                ("--backbones", self.config.backbones),
                ("--sizes", self.config.sizes),
                ("--int8-methods", self.config.int8_methods),
            )
            if value is not None
        ]
        if given:  # the candidates are the study's: fixed at its start, the same for every worker
            console.err.print(
                f"[yellow]note: {', '.join(given)} not used: this search's candidates were fixed at its start "
                f"({self.space.describe()}); start a new search (another --out) to search others[/]"
            )
        if not (self.config.resume and self.config.trials == 0):  # (--resume --trials 0 trains nothing)
            self._check_here()
        study.sampler, study.pruner = self._sampler(self.space), self._pruner()
        how = "resumed" if self.config.resume else "joined"  # --resume leads the search it started; a worker joins
        console.err.print(f"{how} search {self.study_name} ({self.space.describe()}) as {this_worker()}")
        return study

    def _check_here(self) -> None:
        """Before this process takes a trial: the search's images and every candidate's pretrained weights are on
        this machine. A worker started elsewhere without --data (the lead's path is not there) failed each trial in
        a second as the candidate's own failure, never tried again: it used up the whole search (a reviewer's)."""
        from edgetransfer import backbones
        from edgetransfer.builtin_data import resolve_data

        what = "--resume" if self.config.resume else "--worker"
        data = str(self.config.data or "")
        if not data or not Path(resolve_data(data, self.config.seed)).expanduser().is_dir():  # ('digits' too)
            raise UsageError(
                f"{what}: this search's images ({data or 'no folder recorded'}) are not on this machine; pass --data "
                "with the same images (another path to them is fine)"
            )
        for name in self.space.backbones:
            status = backbones.weights_status(backbones.get(name))
            if status.startswith("not here"):
                raise UsageError(
                    f"{what}: this search's candidates include {name}, whose pretrained weights are {status}"
                )

    @property
    def study_name(self) -> str:
        return self.out.expanduser().resolve().name

    def _where(self) -> str:
        from edgetransfer.search.storage import redact

        return redact(self.config.storage_url())

    def _sampler(self, space: Space):
        seed = self.config.seed if not self.config.worker else self.rng.randrange(2**31) ^ hash(this_worker())
        return self.optuna.samplers.TPESampler(
            seed=seed % 2**31,
            n_startup_trials=min(10, max(2, space.count() // 3)),
            constraints_func=_violation,
        )

    def _pruner(self):
        # never on the first epoch: in finetune's two-phase recipe (the default below 300 training images) it
        # trains the head alone, and in full fine-tuning it is mostly warm-up; its score says little about the
        # fine-tuned network (a 64 px MobileNetV2 was pruned there at 79.6 % on the digits)
        if self.config.pruner == "median":
            return self.optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=FIRST_PRUNE_EPOCH)
        if self.config.pruner == "halving":
            return self.optuna.pruners.SuccessiveHalvingPruner(min_resource=FIRST_PRUNE_EPOCH, reduction_factor=3)
        return self.optuna.pruners.NopPruner()

    # ------------------------------------------------------------------ the loop
    def _run(self, study, dead: list[int]) -> SearchResult:
        from edgetransfer.bench.profiles import load_profile, parse_profile

        self.profile = (
            parse_profile(self.profile_toml, f"{self.config.profile} (as this search recorded it at its start)")
            if self.profile_toml
            else load_profile(self.config.profile)
        )
        self.budget = Budget.of(self.profile)
        self.deadline = time.monotonic() + self.config.time_budget if self.config.time_budget else None
        waiting = self.optuna.trial.TrialState.WAITING  # (a queued trial runs in this process's time)
        self.before = {t.number for t in study.get_trials(deepcopy=False) if t.state != waiting}  # see _failing
        if not self.config.worker and not (self.config.resume and self.config.trials == 0):
            # the search's deadline, in wall-clock time: workers without a --time-budget of their own follow it
            study.set_user_attr("deadline", time.time() + self.config.time_budget if self.config.time_budget else None)
        self.progress = Progress(study, self.budget, self.out)
        stopped = ""
        with self.progress.shown():
            while not stopped:
                stopped = self._why_stop(study)
                if stopped:
                    break
                if self.last_was_repeat:  # the sampler chose a candidate tried already: give it an untried one
                    self._enqueue_untried(study)
                try:
                    study.optimize(self._objective, n_trials=1, catch=(EdgeTransferError,), callbacks=[self._after])
                except ValueError as exc:  # another worker failed this trial (its heartbeat came too late)
                    if "Cannot tell a" not in str(exc):
                        raise
                    trials = study.get_trials(deepcopy=False)
                    late = next((t for t in trials if t.number == self.mine[-1]), None)
                    # its own run (a repeat records the earlier trial's, which stays) is of no use: its figures are
                    # not counted; gone, as a dead worker's
                    run = late.user_attrs.get("run") if late is not None and own_folder(late, trials) else None
                    if run:
                        shutil.rmtree(run, ignore_errors=True)
                    console.err.print(
                        f"[yellow]trial {self.mine[-1]} was marked failed by another worker: this worker sent no "
                        "heartbeat in time (it stalled or was paused); its figures are not counted"
                        + (" and its run folder is removed" if run else "")
                        + "[/]"
                    )
            if not self.config.worker:
                self._wait_for_others(study)
                self._remeasure(study)
        if self.config.resume and self.config.trials and not self.mine and stopped == _trials_reached(self.config):
            console.err.print(
                f"[yellow]note: the search has its {self.config.trials} trial(s) already: none ran; --trials N "
                "(more) runs more[/]"
            )
        rows = report.trial_rows(
            study.get_trials(deepcopy=False),
            stopped=stopped or True,
            remeasured=study.user_attrs.get("remeasured"),
            out=self.out,
        )
        report.check_old_trials(rows, self.budget, self.out)
        doc = report.document(
            rows, budget=self.budget, space=self.space.to_dict(), profile=self.config.profile, data=self.config.data
        )
        return SearchResult(self.out, self.budget, rows, doc, failed_dead=dead, stopped=stopped, mine=self.mine)

    def _covered(self, study) -> tuple[set[str], int, int]:
        """Candidates tried or being tried, the trials that count (not repeats), and how many run now."""
        state = self.optuna.trial.TrialState
        covered, counted, running = set(), 0, 0
        for t in study.get_trials(deepcopy=False):
            attrs = t.user_attrs
            if t.state == state.RUNNING:
                running += 1
                covered.add(attrs.get("candidate"))
            elif _counts(t):
                counted += 1  # a trial whose worker died does not count: its candidate is tried again
                if t.state != state.FAIL or "error" in attrs:
                    covered.add(attrs.get("candidate"))
        covered.discard(None)
        return covered, counted, running

    def _past_total(self, trial) -> str | None:
        """Workers that each saw one trial left start theirs at once (the check before and the new trial are not
        one step): the trial past --trials, counting the trials that ended and those running that started before
        it, is not started (the earlier-numbered one goes on)."""
        if self.config.trials is None:
            return None
        running = self.optuna.trial.TrialState.RUNNING
        ahead = sum(
            _counts(t)
            or (t.state == running and t.number < trial.number and not {"same_as", "skipped"} & set(t.user_attrs))
            for t in trial.study.get_trials(deepcopy=False)
            if t.number != trial.number
        )
        if ahead < self.config.trials:
            return None
        return f"not started: the search has its {self.config.trials} trial(s) (another worker started the last one)"

    def _follow_lead(self, study) -> None:
        """A worker without a --time-budget of its own keeps the lead's: the deadline the lead recorded in the study
        (wall-clock time, so machines' clocks must agree; a lead resumed with another budget moves it)."""
        if not self.config.worker or self.config.time_budget:
            return
        at = study.user_attrs.get("deadline")
        self.deadline = time.monotonic() + (float(at) - time.time()) if at is not None else None

    def _why_stop(self, study) -> str:
        fail_dead_trials(study, self.out)  # a worker killed mid-trial: its trial fails now, not at the end
        self._follow_lead(study)
        deadline = self.deadline
        failing = self._failing(study)
        if failing:
            return failing
        covered, counted, running = self._covered(study)
        if self.config.trials is not None and counted + running >= self.config.trials:
            return _trials_reached(self.config)
        if len(covered) >= self.space.count():
            return "every candidate tried"
        budget = "the lead's time budget" if self.config.worker and not self.config.time_budget else "time budget"
        if deadline is not None and time.monotonic() >= deadline:
            return budget
        if deadline is not None and not self._untried(study):
            left = deadline - time.monotonic()  # (the look at the untried ones takes seconds: it may have passed)
            return f"{budget} (no untried candidate fits the {left:.0f} s left)" if left >= 1 else budget
        return ""

    def _failing(self, study) -> str:
        """Why to stop when the search only fails: since this process started, ALL_FAILED_STOP trials or more ended,
        each failed with an error of its own, none finished, none is running, and the failures share their cause
        (one error text, or several backbones): a cause every candidate shares, such as unusable data or an
        unreachable device, is not met once per candidate. "" otherwise. Trials from before (a search resumed after
        such a stop) do not count: the cause may be gone."""
        state = self.optuna.trial.TrialState
        every = study.get_trials(deepcopy=False)
        if any(t.state == state.RUNNING for t in every):  # another worker's, started before this process, too
            return ""
        trials = [t for t in every if t.number not in self.before]
        ended = [t for t in trials if _counts(t)]
        if len(ended) < ALL_FAILED_STOP or any(t.state != state.FAIL for t in ended):
            return ""  # (a failed trial left in ``ended`` failed with an error of its own: see _died)
        errors = {t.user_attrs.get("error") for t in ended}
        if len(errors) > 1 and len({t.user_attrs.get("backbone") for t in ended}) < 2:
            return ""  # one backbone failing in several ways: the others may work
        last = ended[-1]
        return f"{len(ended)} trials failed and none finished (trial {last.number}: {last.user_attrs.get('error')})"

    def _untried(self, study) -> list[Candidate]:
        """The candidates not tried yet that are predicted to end within the time left."""
        covered, measured = self._covered(study)[0], self._measured(study)
        untried = [
            Candidate(b, s, m)
            for b, sizes in self.space.sizes.items()
            for s in sizes
            for m in self.space.int8_methods
            if f"{b}/{s}/{m}" not in covered
        ]
        return [
            c for c in untried if self._too_long(c, measured, fine_tuned=self._fine_tuned(study, c) is not None) is None
        ]

    def _fine_tuned(self, study, candidate: Candidate):
        """A finished trial of ``candidate``'s backbone and size whose run (its fine-tune) is on this machine, for
        the candidate to reuse instead of fine-tuning the same model again (the fine-tune does not depend on the
        int8 method); None when there is none."""
        for t in study.get_trials(deepcopy=False):
            attrs = t.user_attrs
            run = report.located_run(attrs.get("run"), self.out)
            if (
                t.state.name == "COMPLETE"
                and "same_as" not in attrs
                and (attrs.get("backbone"), attrs.get("size")) == (candidate.backbone, candidate.size)
                and run
                and (Path(run) / CHECKPOINT).is_file()
                and (Path(run) / CARD).is_file()
            ):
                return t
        return None

    def _too_long(self, candidate: Candidate, measured: list[dict], *, fine_tuned: bool = False) -> str | None:
        """Why ``candidate``'s trial would end past the time budget (its predicted time, the time left), or None
        when it is predicted to fit, nothing was measured yet to predict from, or there is no budget. A candidate
        the sampler chose may take at most MAX_SHARE of the time left, so that several get tried; one of the initial
        design (the default, then its backbone's smallest size, the cheapest of its family) runs whenever it fits
        the time left: it is the comparison and the first question a budget asks. (A run in which the default's
        trial took 5x a default fine-tune, its int8 export escalating on 72 validation images, left 44 s of 120:
        the 64 px trial, predicted at 33 s, was not started under the share rule, and the search ended with the
        default alone; grey-c in benchmarks/results/search_run7.md.)"""
        if self.deadline is None:
            return None
        from edgetransfer.search.cost import predict

        guess = predict(candidate, measured, max_epochs=self._max_epochs(), fine_tuned=fine_tuned)
        left = self.deadline - time.monotonic()
        share = 1.0 if candidate.key in self.first else MAX_SHARE
        if guess is None or guess <= share * left:
            return None
        if guess <= left:
            return (
                f"not started: predicted {guess:.0f} s, more than {MAX_SHARE:.0%} of the {left:.0f} s left "
                "(no one candidate takes the rest of the time budget)"
            )
        return f"not started: predicted {guess:.0f} s, {max(left, 0):.0f} s of the time budget left"

    def _may_prune(self, epoch: int) -> bool:
        """Whether a trial may be pruned after ``epoch``: not after its last, when no training is left to save (a
        trial pruned there had scored what the recommended one scored, within the validation noise)."""
        return epoch < self._max_epochs()

    def _max_epochs(self) -> int:
        """The most epochs a trial may run: --epochs, else finetune's default."""
        from edgetransfer.finetune_config import FinetuneConfig

        return self.config.epochs or FinetuneConfig.epochs

    def _measured(self, study) -> list[dict]:
        """Every trial that made its own model, with its candidate and the time each step took (for the cost)."""
        keys = ("backbone", "size", "int8", "epochs_run", "finetune_s", "export_s", "bench_s")
        return [
            {k: t.user_attrs.get(k) for k in keys}
            for t in study.get_trials(deepcopy=False)
            if t.state.name == "COMPLETE" and "same_as" not in t.user_attrs and "finetune_s" in t.user_attrs
        ]

    def _retry_died(self, study) -> None:
        """Queue again the candidates of trials that failed because they were interrupted or their worker died
        (not for a reason of their own) and that no other trial has tried since: before any candidate the sampler
        chooses, after any trial already waiting in the study (Optuna runs waiting trials in the order queued)."""
        state = self.optuna.trial.TrialState
        covered = self._covered(study)[0]
        retried = []
        for t in study.get_trials(deepcopy=False, states=(state.FAIL,)):
            attrs = t.user_attrs
            key = attrs.get("candidate")
            if not _died(t) or key is None or key in covered or key in retried:
                continue
            _enqueue(study, Candidate(attrs.get("backbone"), attrs.get("size"), attrs.get("int8")))
            retried.append(key)
        if retried:
            console.err.print(
                f"queued again (interrupted or their worker died), after any trial waiting: {', '.join(retried)}"
            )

    def _enqueue_untried(self, study) -> None:
        untried = self._untried(study)
        if untried:
            c = self.rng.choice(untried)
            _enqueue(study, c)

    def _wait_for_others(self, study) -> None:
        """The lead reports once the other workers' running trials end (or their workers die)."""
        state, said = self.optuna.trial.TrialState, False
        while study.get_trials(deepcopy=False, states=(state.RUNNING,)):
            if not said:
                console.err.print("waiting for the other workers' running trials...")
                said = True
            fail_dead_trials(study, self.out)
            self.progress.refresh()
            time.sleep(2)

    # ------------------------------------------------------------------ one trial
    def _objective(self, trial) -> float:
        space = self.space
        backbone = trial.suggest_categorical("backbone", list(space.backbones))
        size = int(trial.suggest_categorical(f"size_{backbone}", list(space.sizes[backbone])))
        candidate = Candidate(backbone, size, trial.suggest_categorical("int8", list(space.int8_methods)))
        for key, value in (("backbone", backbone), ("size", size), ("int8", candidate.int8)):
            trial.set_user_attr(key, value)
        trial.set_user_attr("candidate", candidate.key)
        trial.set_user_attr("worker", this_worker())
        trial.set_user_attr("worker_process", process_identity())  # (see storage.process_identity)
        self.mine.append(trial.number)
        self.last_was_repeat = False
        past = self._past_total(trial)
        if past is not None:
            trial.set_user_attr("skipped", past)
            raise self.optuna.TrialPruned()
        prior = self._prior(trial, candidate)
        if prior is not None:
            return self._repeat(trial, prior)
        self.first |= set(trial.study.user_attrs.get("first", []))  # the default's QAT sibling may have joined it
        source = self._fine_tuned(trial.study, candidate)
        too_long = self._too_long(candidate, self._measured(trial.study), fine_tuned=source is not None)
        if too_long is not None:  # not started: it would end past the time budget; the next trial gets one that fits
            self.last_was_repeat = True
            trial.set_user_attr("skipped", too_long)
            raise self.optuna.TrialPruned()
        # absolute: the study is read by other workers and --resume, started in other folders (a worker's trial was
        # named by a path relative to its own working directory), without ".." (--out lead/../out was recorded so),
        # resolved as study.db's path is (a symlinked lead/.. is not the text's parent)
        folder = self.out.expanduser().resolve() / "trials" / candidate.folder(trial.number)
        trial.set_user_attr("run", str(folder))
        self.progress.refresh()

        def on_epoch(epoch: int, record: dict) -> None:
            trial.report(100 * record["val_top1"], epoch)
            self.progress.refresh()
            if self._may_prune(epoch) and trial.should_prune():
                trial.set_user_attr("pruned", f"val top-1 {record['val_top1']:.2%} after epoch {epoch}")
                raise self.optuna.TrialPruned()

        try:
            figures = run_trial(
                self.config,
                candidate,
                folder,
                self.profile,
                on_epoch=on_epoch,
                devices=self.devices,
                trained=Path(report.located_run(source.user_attrs["run"], self.out)) if source is not None else None,
            )
        except self.optuna.TrialPruned:
            shutil.rmtree(folder, ignore_errors=True)  # a pruned run is of no use; its curve stays in the study
            trial.set_user_attr("run", None)
            raise
        except KeyboardInterrupt:  # Optuna marks the trial failed; --resume tries its candidate again, first
            shutil.rmtree(folder, ignore_errors=True)
            trial.set_user_attr("run", None)
            trial.set_user_attr("interrupted", "interrupted (Ctrl-C or SIGTERM); --resume tries it again")
            raise
        except EdgeTransferError as exc:
            trial.set_user_attr("error", trial_note(exc))
            if isinstance(exc, BudgetError):
                self._escalate(trial, candidate)
            raise
        except Exception as exc:  # noqa: BLE001 -- one candidate's crash (a CUDA out-of-memory, an engine's own
            # error, a bug) fails its trial, said with its type, and the search goes on; uncaught, it stopped the
            # search and left the trial failed without a reason, as if its worker had died: --resume ran it first
            # and stopped again, every time. The study's storage failing (a locked SQLite, a lost PostgreSQL) is
            # not the candidate's: it goes up as before (the trial is then retried as a dead worker's)
            from sqlalchemy.exc import SQLAlchemyError

            # (found as search() finds it: in what was being handled too, as Optuna's own errors come over it)
            if _storage_error(exc, (self.optuna.exceptions.StorageInternalError, SQLAlchemyError)) is not None:
                # its run cannot be recorded: a half-made folder was left among the runs (a new user's trial);
                # --resume tries the candidate again as a dead worker's
                shutil.rmtree(folder, ignore_errors=True)
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            said = textwrap.shorten(f"{type(exc).__name__}: {first}", 400, placeholder=" ...")
            trial.set_user_attr("error", f"unexpected error, not retried: {said}")
            raise TrialError(said) from exc
        if figures["val_top1"] is None:
            note = f"{folder}: export recorded no validation top-1 for the measured model"
            trial.set_user_attr("error", note)  # a failure of its own (without one it reads as a dead worker's)
            raise TrialError(note)
        if source is not None:  # its fine-tune is trial N's: the cost model learns what a fine-tune of it took
            figures["finetune_s"] = source.user_attrs.get("finetune_s")
            trial.set_user_attr("fine_tune_of", source.number)
        drop = figures.get("int8_drop_points")
        if drop is not None and drop > EXPORT_MAX_DROP:  # kept, ranked by its own int8 accuracy; export would refuse it
            trial.set_user_attr(
                "int8_note",
                f"int8 loses {drop:.2f} points vs fp32 (over export's {EXPORT_MAX_DROP:g}-point budget)",
            )
            self._escalate(trial, candidate)
        figures.update(self._against_budget(figures))
        for key in FIGURES:
            trial.set_user_attr(key, figures.get(key))
        return 100 * figures["val_top1"]

    def _against_budget(self, figures: dict) -> dict:
        """A measurement's place against the profile's budget: within it (latency and the other budgets) and by how
        many ms it is over (0 without a latency budget)."""
        over = figures["latency_ms"] - self.budget.limit_ms
        within = figures["latency_ms"] <= self.budget.limit_ms and not figures.get("budget_failures")
        return {"within_budget": within, "over_budget_ms": over if math.isfinite(over) else 0.0}

    # ------------------------------------------------------------------ after the trials
    def _remeasure(self, study) -> None:
        """Bench again on this machine the trials whose latency was read beside another trial of the search on it,
        or found noisy by their bench, where they could change the verdict: those at least as accurate as the pick
        less its tie band (every one where nothing meets the budget), the most accurate first, while no trial runs on
        this machine and the time budget allows. Two workers on one machine read a trial's latency at 5x its quiet
        figure, and the verdict called another '12.91x faster' (a new user's trial); a note asking to measure again
        was all it said. The new figures replace the first ones in the report; the study keeps both (``remeasured``:
        trial number -> figures, the first reading and when; or the error, tried again by a later --resume)."""
        import datetime

        host = host_of(this_worker())
        running = self.optuna.trial.TrialState.RUNNING
        done = dict(study.user_attrs.get("remeasured") or {})
        tried: set[str] = set()  # this time (a failed one is tried again by a later --resume, not in a loop here)
        elsewhere_said = False
        while True:
            trials = study.get_trials(deepcopy=False)
            rows = report.trial_rows(trials, remeasured=done, out=self.out)
            doubtful = [
                r
                for r in report.measured(rows)
                if (r["beside"] or r["latency_noisy"])
                and (r["measured_on"] or "here") == "here"
                and (str(r["number"]) not in done or "error" in done[str(r["number"])])
                and str(r["number"]) not in tried
            ]
            pick = report.recommend(rows, self.budget.limit_ms)
            if pick["row"] is not None:  # one less accurate than the pick's tie band cannot become it, nor tie it
                floor = pick["row"]["val_top1"] - pick["tie_points"] / 100 - 1e-12
                doubtful = [r for r in doubtful if r["val_top1"] >= floor]
            hosts = {r["number"]: host_of(r["worker"]) for r in doubtful}
            other = [r for r in doubtful if hosts[r["number"]] != host]
            if other and not elsewhere_said:  # their machine's load is not this one's: measured there or not at all
                elsewhere_said = True
                named = ", ".join(f"trial {r['number']} ({hosts[r['number']] or '?'})" for r in other)
                console.err.print(
                    f"[yellow]note: {named}: read beside another trial on its machine, or noisy; not measured again "
                    "here (another machine): 'edgetransfer bench RUN --profile ...' there, when it is quiet[/]"
                )
            doubtful = [r for r in doubtful if hosts[r["number"]] == host]
            if not doubtful:
                return
            row = max(doubtful, key=lambda r: (r["val_top1"], -r["latency_ms"]))
            number, trial = row["number"], next(t for t in trials if t.number == row["number"])
            left = [str(r["number"]) for r in doubtful]
            busy = [t.number for t in trials if t.state == running and host_of(t.user_attrs.get("worker")) == host]
            need = trial.user_attrs.get("bench_s") or 0.0
            if busy or (self.deadline is not None and time.monotonic() + need > self.deadline):
                why = (
                    f"trial(s) {', '.join(map(str, busy))} run on this machine" if busy else "the time budget is spent"
                )
                console.err.print(
                    f"[yellow]note: trial(s) {', '.join(left)} not measured again ({why}): their latency stays as "
                    f"first read; 'edgetransfer search --resume --trials 0 --out {self.out}' on this machine ({host}), "
                    "when it is quiet, measures them again[/]"
                )
                return
            tried.add(str(number))
            candidate = Candidate(row["backbone"], int(row["size"]), row["int8"])
            first = f"{row['latency_ms']:.3f} ms" + (
                f" beside trial(s) {', '.join(map(str, row['beside']))}" if row["beside"] else ", noisy"
            )
            console.err.print(f"trial {number}: its latency read {first}; measuring it again on this machine")
            began = datetime.datetime.now()
            try:
                figures = measure_latency(
                    RunDir(report.run_folder(row, self.out)), self.config, candidate, self.profile
                )
            except Exception as exc:  # noqa: BLE001 -- one trial's failure (a removed run, an engine's error) leaves
                # its first reading and the others' re-measure; the report is written all the same (Ctrl-C goes up
                # as in a trial: what was measured again is in the study, and --resume --trials 0 goes on)
                said = textwrap.shorten(f"{type(exc).__name__}: {exc}", 300, placeholder=" ...")
                done[str(number)] = {"error": said}
                console.err.print(
                    f"[yellow]trial {number}: could not measure it again ({escape(said)}); its first reading stays[/]"
                )
            else:
                figures.update(self._against_budget(figures))
                done[str(number)] = {
                    **figures,
                    "first_ms": row["latency_ms"],
                    "first_beside": row["beside"],
                    "first_noisy": row["latency_noisy"],
                    "started": began.isoformat(),
                    "ended": datetime.datetime.now().isoformat(),
                    "by": this_worker(),
                }
            study.set_user_attr("remeasured", done)  # kept first: a tracking server that retries can take minutes
            if self.log is not None and "error" not in done[str(number)]:
                self.log.remeasured(study, number, done[str(number)])

    def _escalate(self, trial, candidate: Candidate) -> None:
        """A static trial whose int8 model loses more than export's budget against its fp32 model (kept, ranked by
        its own accuracy), or fails the budget: its quantization-aware sibling (same backbone and size) is queued,
        as ``export --int8-method auto`` escalates, when QAT is searched, not tried yet and predicted to fit the
        time left. Without it a search on a small validation split (one image = 3 points of a 1-point budget) could
        fail every static trial and recommend nothing (benchmarks/results/search.md, run 4)."""
        if candidate.int8 != "static" or "qat" not in self.space.int8_methods:
            return
        sibling = Candidate(candidate.backbone, candidate.size, "qat")
        study = trial.study
        first = list(study.user_attrs.get("first", []))
        if first and candidate.key == first[0] and study.user_attrs.get("first_is_default", True):
            # the default's int8 is export's auto, static or QAT: its sibling joins the initial design and runs
            # whenever it fits the time left (search run 9, fifty-e: the default's static trial lost 4 points, and
            # its QAT sibling, predicted at 48 s with 62 s left, was not started under the half-the-time-left rule);
            # recorded in the study, so a worker or --resume that starts it follows the same rule
            study.set_user_attr("first", [*first, sibling.key])
            self.first.add(sibling.key)
        reuse = trial.user_attrs.get("run") is not None and "error" not in trial.user_attrs  # kept: its fine-tune
        if (
            sibling.key in self._covered(study)[0]
            or self._too_long(sibling, self._measured(study), fine_tuned=reuse) is not None
        ):
            return
        _enqueue(study, sibling)
        trial.set_user_attr("escalated", sibling.key)
        drop = trial.user_attrs.get("int8_note")
        console.err.print(
            f"[yellow]trial {trial.number}: "
            + (f"{drop}: kept; " if drop else "static int8 cannot hold the budget; ")
            + f"its quantization-aware sibling ({sibling.backbone} {sibling.size}px qat) is queued[/]"
        )

    def _prior(self, trial, candidate: Candidate):
        """An earlier trial of the same candidate: done, pruned, running, or failed for a reason of its own."""
        state = self.optuna.trial.TrialState
        order = {state.COMPLETE: 0, state.RUNNING: 1, state.PRUNED: 2, state.FAIL: 3}
        same = [
            t
            for t in trial.study.get_trials(deepcopy=False)
            if t.number != trial.number
            and t.user_attrs.get("candidate") == candidate.key
            and "same_as" not in t.user_attrs
            and "skipped" not in t.user_attrs
            and (t.state != state.FAIL or ("error" in t.user_attrs and not _died(t)))
            and t.state in order
        ]
        return min(same, key=lambda t: (order[t.state], t.number)) if same else None

    def _repeat(self, trial, prior) -> float:
        """A candidate tried already: its figures again (no second run), or its fate."""
        self.last_was_repeat = True
        trial.set_user_attr("same_as", prior.number)
        if prior.state == self.optuna.trial.TrialState.COMPLETE:
            for key in FIGURES:
                trial.set_user_attr(key, prior.user_attrs.get(key))
            return prior.value
        if prior.state == self.optuna.trial.TrialState.FAIL:
            trial.set_user_attr("error", f"as trial {prior.number}: {prior.user_attrs.get('error', '')}"[:300])
            raise TrialError(f"candidate failed in trial {prior.number}")
        trial.set_user_attr("pruned", f"as trial {prior.number} ({prior.state.name.lower()})")
        raise self.optuna.TrialPruned()

    def _after(self, study, trial) -> None:
        self.progress.finished(trial)
        if self.log is not None:
            self.log(study, trial)
