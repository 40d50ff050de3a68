"""edgetransfer search: the candidates, the Pareto front and the pick, bad input, and real searches with two worker
processes on SQLite and on a throwaway PostgreSQL cluster (tiny images, 32 px, 1 epoch)."""

from __future__ import annotations

import json
import math
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import make_folder

from edgetransfer.errors import UsageError
from edgetransfer.search import SearchConfig, build_space, parse_duration
from edgetransfer.search import report as rep
from edgetransfer.search.trial import Budget

optuna = pytest.importorskip("optuna", reason="edgetransfer[search] is not installed")

FAST = ["--sizes", "32", "--epochs", "1", "--batch-size", "8", "--min-time", "0.1", "--int8-methods", "static,dynamic"]
FAST += ["--backbones", "mobilenet_v2,efficientnet_lite0"]


def cli(*args: str, wait: bool = True, timeout: float = 300, tmpdir: Path | None = None):
    """The real entry point in a process of its own (a worker is a process). ``tmpdir``: its temporary files go
    there (a process killed with SIGKILL cannot remove them: kept out of the machine's /tmp)."""
    command = [sys.executable, "-m", "edgetransfer", "search", *args]
    env = None
    if tmpdir is not None:
        tmpdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TMPDIR": str(tmpdir)}
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def load(storage: str, name: str):
    from edgetransfer.search.storage import with_driver

    return optuna.load_study(study_name=name, storage=with_driver(storage))


def wait_for(predicate, process, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            pytest.fail(f"the process ended first ({process.returncode}): {process.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def running_trial_of(storage: str, name: str, pid: int) -> bool:
    try:
        trials = load(storage, name).get_trials(deepcopy=False)
    except (KeyError, Exception):  # noqa: BLE001 - the study or the database may not exist yet
        return False
    return any(t.state.name == "RUNNING" and t.user_attrs.get("worker", "").endswith(f":{pid}") for t in trials)


# ----------------------------------------------------------------------------- candidates and options


def test_space_comes_from_the_registries(tmp_path):
    from edgetransfer import backbones
    from edgetransfer.search.config import export_int8_methods, offline_backbones

    space = build_space(SearchConfig(data="d", out=str(tmp_path)))
    assert set(space.backbones) == set(offline_backbones())
    assert {"mobilenet_v2", "efficientnet_lite0"} <= set(space.backbones)
    for name, sizes in space.sizes.items():
        top = backbones.get(name).input_size
        assert sizes[0] == 96 and all(s % 32 == 0 for s in sizes) and max(sizes) <= top < max(sizes) + 32
    assert "static" in space.int8_methods and "dynamic" not in space.int8_methods  # dynamic: slow for CNNs
    assert set(space.int8_methods) == set(export_int8_methods()) - {"dynamic", "auto"}  # auto: static, then qat
    assert "dynamic" in build_space(SearchConfig(data="d", out="o", int8_methods=("dynamic",))).int8_methods
    assert space.count() == sum(len(s) for s in space.sizes.values()) * len(space.int8_methods)
    chosen = build_space(
        SearchConfig(data="d", out="o", backbones=("mobilenet_v2",), sizes=(64, 96, 320), int8_methods=("none",))
    )
    assert chosen.sizes == {"mobilenet_v2": (64, 96)} and chosen.count() == 2  # 320 is past its 224


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backbones": ("nope",)}, "unknown backbone"),
        ({"sizes": (100,)}, "multiples of 32"),
        ({"backbones": ("mobilenet_v2",), "sizes": (512,)}, "none fits mobilenet_v2"),
        ({"int8_methods": ("fp8",)}, "fp8"),
    ],
)
def test_bad_candidates_are_one_line(options, message):
    with pytest.raises(UsageError, match=message):
        build_space(SearchConfig(data="d", out="o", **options))


def test_a_backbone_without_weights_here_is_refused_before_any_work(monkeypatch):
    """A search fine-tunes from the weights on this machine (it has no --weights): a backbone whose weights would
    need a download that is off is one line, not a search whose every trial fails."""
    from edgetransfer import backbones

    monkeypatch.setenv(backbones.OFFLINE_ENV, "1")
    if backbones.weights_status(backbones.get("resnet18")).startswith("offline"):
        pytest.skip("resnet18's weights are in this machine's torch hub cache")
    with pytest.raises(UsageError, match="resnet18: its pretrained weights are not on this machine and downloads"):
        build_space(SearchConfig(data="d", out="o", backbones=("mobilenet_v2", "resnet18")))


def test_resume_tries_an_interrupted_trial_s_candidate_again_first():
    """A trial that failed because it was interrupted (Ctrl-C) or its worker died (no error of its own) has its
    candidate queued first on --resume, unless a trial has tried it since; a trial that failed for its own reason
    is not."""
    from edgetransfer.search.config import Space
    from edgetransfer.search.study import _Search

    study = optuna.create_study(direction="maximize")

    def failed(backbone, size, **attrs):
        trial = study.ask()
        for key, value in {"backbone": backbone, "size": size, "int8": "static", **attrs}.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("candidate", f"{backbone}/{size}/static")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)

    failed("mobilenet_v2", 64, interrupted="interrupted (Ctrl-C); --resume tries it again")
    failed("mobilenet_v2", 96, error="ONNX int8 cannot hold the 1.0-point budget")  # its own reason
    search = _Search.__new__(_Search)
    search.config, search.deadline, search.optuna = SearchConfig(data="d", out="o"), None, optuna
    search.space = Space({"mobilenet_v2": (64, 96)}, ("static",))
    search._retry_died(study)
    waiting = [t.system_attrs["fixed_params"] for t in study.get_trials(deepcopy=False) if t.state.name == "WAITING"]
    assert waiting == [{"backbone": "mobilenet_v2", "size_mobilenet_v2": 64, "int8": "static"}]


def test_int8_weights_are_resolved_where_the_study_starts_and_recorded_for_every_worker(monkeypatch):
    """auto is this machine's choice (export's rule), recorded as 7bit or 8bit: a worker on another CPU takes it."""
    from edgetransfer.quantize import Int8Config

    recorded = SearchConfig(data="d", out="o").recorded()
    assert recorded["int8_weights"] == f"{Int8Config().weight_bits()}bit"
    assert SearchConfig(data="d", out="o", int8_weights="7bit").recorded()["int8_weights"] == "7bit"
    worker = SearchConfig(data="", out="o", worker=True).with_recorded(recorded)
    assert worker.int8_weights == recorded["int8_weights"]
    # a worker's export says why in the search's words, not as an --int8-weights 7bit nobody passed
    note = Int8Config(weights=worker.int8_weights, weights_why=worker.int8_weights_why).weights_note()
    assert note.startswith("the search's --int8-weights auto, chosen on the CPU it started on: ")
    assert socket.gethostname() not in note  # kept in the cards, which travel inside the model files
    # a worker without VNNI given the 8 bits a VNNI lead chose: warned, with the search's fix, not "auto, here"
    from edgetransfer import machine

    monkeypatch.setattr(machine, "int8_overflows", lambda: True)
    warned = Int8Config(weights="8bit", weights_why="the search's --int8-weights auto, ...").weights_warning()
    assert warned.startswith("warning: 8-bit int8 weights (the search's") and warned.endswith("(--int8-weights 7bit)")
    assert "--int8-weights 7bit)" not in note and "--int8-weights 8bit)" not in note
    given = SearchConfig(data="", out="o", worker=True).with_recorded(
        SearchConfig(data="d", out="o", int8_weights="7bit").recorded()
    )
    assert (
        Int8Config(weights=given.int8_weights, weights_why=given.int8_weights_why).weights_note()
        == "search --int8-weights 7bit"
    )
    with pytest.raises(UsageError, match="unknown --int8-weights '6bit'"):
        SearchConfig(data="d", out="o", int8_weights="6bit").validate()


def test_options_checked_before_any_work():
    assert parse_duration("2h") == 7200 and parse_duration("1h30m") == 5400 and parse_duration("90") == 90
    assert parse_duration(".5") == 0.5 and parse_duration("1e3") == 1000  # what the float option took
    for bad in ("soon", "", "30m1h", "1m1m", "inf", "-5", "1_000"):  # units out of order or twice: a typo, not a sum
        with pytest.raises(UsageError, match="duration like 2h, 30m, 90s or 1h30m, or seconds"):
            parse_duration(bad)
    with pytest.raises(UsageError, match="--int8-methods dynamic makes an ONNX model only"):
        build_space(SearchConfig(data="d", out="o", int8_methods=("static", "dynamic"), backend="openvino-cpu"))
    for bad in ({"trials": -1}, {"pruner": "random"}, {"backend": "tpu"}, {"epochs": 0}, {"time_budget": math.nan}):
        with pytest.raises(UsageError):
            SearchConfig(data="d", out="o", **bad).validate()
    with pytest.raises(UsageError, match="--worker"):
        SearchConfig(data="d", out="o", worker=True, resume=True).validate()
    for alone in ({"targets": "t.toml"}, {"wheelhouse": "wh"}, {"known_hosts": "kh"}):
        with pytest.raises(UsageError, match="go with --on"):
            SearchConfig(data="d", out="o", **alone).validate()
    SearchConfig(data="d", out="o", on="dev", targets="t.toml").validate()


def test_an_out_under_a_file_says_so(tmp_path):
    """It read 'cannot write .../.x.lock: File exists' (a new user's finding): the lock was tried first."""
    from edgetransfer.search import search

    (tmp_path / "afile").write_text("")
    with pytest.raises(UsageError, match=r"^--out .*afile/x: .*afile is a file, not a folder$"):
        search(SearchConfig(data="d", out=str(tmp_path / "afile" / "x")))


# ----------------------------------------------------------------------------- the Pareto front and the pick


def _row(number, val, latency, state="done", **extra):
    row = {k: None for k in ("backbone", "size", "int8", "within_budget", "run", "same_as", "test_top1")}
    row.update(number=number, state=state, val_top1=val, latency_ms=latency, note="", epochs=2, worker="w")
    row.update(backbone="mobilenet_v2", size=96, int8="static", last_val_top1=val, **extra)
    return row


def test_the_trial_table_keeps_each_candidate_whole_on_an_80_column_terminal():
    """At 80 columns every column was cut, the candidate too (EfficientNet-Lite0, 1 and 2 all read "effici… 32px
    static"), and each note wrapped a word per line (a new user's trial): narrow, the worker column goes and the notes
    are lines under the table; wide, as before."""
    from rich.console import Console

    rows = [{**_row(n, 0.9, 1.0), "backbone": f"efficientnet_lite{n}", "size": 32} for n in range(3)]
    rows[1]["note"] = "pruned: val top-1 41.67% after epoch 1, below the median of the trials before it"
    for width in (80, 160):
        shown = Console(width=width, record=True, file=open(os.devnull, "w"))
        shown.print(rep.trials_table(rows, Budget("p50_ms", 5.0), width=width))
        text = shown.export_text()
        assert all(f"efficientnet_lite{n} 32px static" in text for n in range(3)), text
        assert "val top-1 41.67% after epoch 1" in " ".join(text.split()), text  # not a word per line
        assert ("worker" in text) == (width == 160)
    # narrow by what the columns hold, not by a fixed width: with a long worker name the note column was 0 wide at
    # 120 columns, the notes gone, and a word per line at 130 (a review)
    for r in rows:
        r["worker"] = "build-machine-07.example.org:123456"
    for width in (120, 130, 200):
        shown = Console(width=width, record=True, file=open(os.devnull, "w"))
        shown.print(rep.trials_table(rows, Budget("p50_ms", 5.0), width=width))
        text = shown.export_text()
        assert "val top-1 41.67% after epoch 1" in " ".join(text.split()), (width, text)
        assert all(f"efficientnet_lite{n} 32px static" in text for n in range(3)), text
        assert max(len(line.rstrip()) for line in text.splitlines()) <= width


def test_pareto_front_and_recommendation():
    rows = [
        _row(0, 0.90, 1.0),
        _row(1, 0.95, 3.0),
        _row(2, 0.93, 4.0),
        _row(3, 0.99, 9.0),
        _row(4, None, None, "pruned"),
    ]
    rows.append(_row(5, 0.99, 9.0, same_as=3))  # a repeat is no point of its own
    assert [r["number"] for r in rep.pareto_front(rows)] == [0, 1, 3]  # 2 is beaten by 1 on both
    pick = rep.recommend(rows, 5.0)
    assert pick["row"]["number"] == 1 and pick["margin_ms"] == pytest.approx(2.0)
    lines = rep.verdict(rows, Budget("p50_ms", 5.0))
    assert "trial 1" in lines[0] and "2.000 ms (40%) under the budget" in lines[0]
    none = rep.recommend(rows, 0.5)
    assert none["row"] is None and none["closest"]["number"] == 0
    line = rep.verdict(rows, Budget("p99_ms", 0.5))[0]
    assert (
        "no candidate meets the budget p99 <= 0.5 ms" in line
        and "closest is trial 0" in line
        and "0.500 ms over" in line
    )


def test_a_stopped_trials_last_val_top1_is_in_the_html_as_in_the_terminal():
    """search.html left it blank for a pruned or failed trial while the terminal table showed it."""
    rows = [_row(0, 0.90, 1.0), {**_row(1, None, None, "pruned"), "last_val_top1": 0.4321}]
    doc = rep.document(rows, budget=Budget("p50_ms", 5.0), space={}, profile="camera", data="d")
    page = rep.to_html(doc, Budget("p50_ms", 5.0))
    assert "<td>1</td><td>mobilenet_v2 96px static</td><td>pruned</td><td>2</td><td>43.21%</td>" in page


def test_search_json_is_strict_json_without_a_latency_budget_and_counts_repeats_apart():
    """A profile without a latency budget (server) wrote "margin_ms": Infinity (jq and JSON.parse refuse it); a
    repeat of a finished candidate counted as one more "done" though it made no model."""
    import json

    rows = [_row(0, 0.90, 1.0), _row(1, 0.95, 3.0), _row(2, 0.95, 3.0, same_as=1)]
    doc = rep.document(rows, budget=Budget("p50_ms", math.inf), space={}, profile="server", data="d")
    assert doc["recommended"] == 1 and doc["margin_ms"] is None
    json.dumps(doc, allow_nan=False)  # raises on Infinity or NaN
    assert doc["counts"]["done"] == 2 and doc["counts"]["repeats"] == 1


# ----------------------------------------------------------------------------- the finetune hook


def test_on_epoch_reports_and_can_stop_training(tmp_path):
    from edgetransfer.finetune import FinetuneConfig, finetune

    data = make_folder(tmp_path / "img", per_class=6)
    seen = []

    class Stop(Exception):
        pass

    def on_epoch(epoch, record):
        seen.append((epoch, record["val_top1"]))
        raise Stop

    with pytest.raises(Stop):
        finetune(
            FinetuneConfig(data=str(data), out=str(tmp_path / "run"), size=32, epochs=3, batch_size=8),
            on_epoch=on_epoch,
        )
    assert len(seen) == 1 and seen[0][0] == 1 and 0 <= seen[0][1] <= 1  # stopped after epoch 1 of 3


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line_and_leaves_nothing(tmp_path):
    data = make_folder(tmp_path / "img", per_class=6)
    out = tmp_path / "s"
    unreachable = cli(
        "--data", str(data), "--out", str(out), "--storage", "postgresql://u:secret@127.0.0.1:1/db", *FAST
    )
    assert unreachable.returncode == 2, unreachable.stderr
    lines = unreachable.stderr.strip().splitlines()
    assert lines[-1].startswith("error: cannot reach the storage postgresql://u:***@127.0.0.1:1/db")
    assert "secret" not in unreachable.stderr and not out.exists()
    # an unescaped '@' in the password: the driver read part of it as the host and said it (a new user's trial)
    at = cli("--data", str(data), "--out", str(out), "--storage", "postgresql://bob:p@ss@127.0.0.1:1/x", *FAST)
    assert at.returncode == 2 and "holds '@': write it URL-encoded, as %40" in at.stderr, at.stderr
    assert "p@ss" not in at.stderr and "ss@" not in at.stderr and not out.exists()
    # an empty list meant the defaults, unsaid, where an empty --sizes was an error (a new user's trial)
    for option in ("--backbones", "--int8-methods"):
        empty = cli("--data", str(data), "--out", str(out), option, "")
        assert empty.returncode == 2 and f"error: {option} is empty" in empty.stderr and not out.exists()
    # a negative seed made the study, then failed every trial, and the folder could not be used again
    seed = cli("--data", str(data), "--out", str(out), "--seed", "-1", *FAST)
    assert seed.returncode == 2 and seed.stderr.strip().splitlines()[-1].startswith("error: --seed must be 0..")
    assert not out.exists()
    no_study = cli("--worker", "--out", str(out))
    assert no_study.returncode == 2 and "no search to join" in no_study.stderr and not out.exists()
    # a worker on a storage it cannot reach makes no folder either (it left --out and its parents, empty)
    worker = cli("--worker", "--out", str(out / "deeper"), "--storage", "postgresql://u:secret@127.0.0.1:1/db")
    assert worker.returncode == 2 and "error: cannot reach the storage" in worker.stderr and not out.exists()
    nothing = cli("--resume", "--out", str(out))
    assert nothing.returncode == 2 and "--resume: no search to resume in" in nothing.stderr and not out.exists()
    # nor the folders above --out it made for the lock (a new user found deep/a/b left behind)
    tpu = cli("--data", str(data), "--out", str(out / "a" / "b"), "--device", "tpu", *FAST)
    assert tpu.returncode == 2 and tpu.stderr.strip().splitlines()[-1] == (
        "error: unknown device 'tpu'; choose one of auto, cpu, cuda"
    ), tpu.stderr
    assert not out.exists()
    for name, said in (("card.json", "holds a fine-tuned run and no search"), ("study.db", "holds a search already")):
        taken = tmp_path / f"taken-{name}"
        taken.mkdir()
        (taken / name).write_text("x")
        refused = cli("--data", str(data), "--out", str(taken), *FAST)
        assert refused.returncode == 2 and said in refused.stderr.strip().splitlines()[-1], refused.stderr
        assert sorted(p.name for p in taken.iterdir()) == [name]
    # a misspelt option is said before the used folder: one run shows the mistakes in turn, the options' first
    typo = cli("--data", str(data), "--out", str(tmp_path / "taken-study.db"), *FAST[:-2], "--backbones", "mobilenet")
    assert typo.returncode == 2 and "unknown backbone 'mobilenet'" in typo.stderr.strip().splitlines()[-1], typo.stderr
    no_data = cli("--out", str(out))
    assert no_data.returncode == 2 and "--data is needed" in no_data.stderr
    bad_profile = tmp_path / "tight.toml"
    bad_profile.write_text("[budget]\np50ms = 3\n")  # a typo of p50_ms
    typo = cli("--data", str(data), "--out", str(out), "--profile", str(bad_profile), *FAST)
    assert typo.returncode == 2 and "did you mean 'p50_ms'" in typo.stderr and not out.exists(), typo.stderr
    try:
        import mlflow  # noqa: F401
    except ModuleNotFoundError:
        no_mlflow = cli("--data", str(data), "--out", str(out), "--mlflow", str(tmp_path / "mlruns"))
        assert no_mlflow.returncode == 2 and "--mlflow needs MLflow" in no_mlflow.stderr and not out.exists()


def test_a_second_search_of_one_name_in_a_shared_storage_is_refused(tmp_path):
    """Two machines starting 'the same' search in one storage: the second is told to --resume or --worker."""
    data = make_folder(tmp_path / "img", per_class=6)
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    first = cli("--data", str(data), "--out", str(tmp_path / "a" / "cam"), "--storage", shared, "--trials", "0", *FAST)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "no trial finished with a measured model yet" in first.stdout
    said = " ".join(first.stderr.split())  # a worker or --resume without --trials N ran nothing (a user's trial)
    assert "note: --trials 0: the search is made and no trial runs; to run its trials, give the number: " in said
    assert "workers join it with --worker --trials N, and --resume --trials N continues it" in said
    second = cli("--data", str(data), "--out", str(tmp_path / "b" / "cam"), "--storage", shared, *FAST)
    assert second.returncode == 2
    assert (
        second.stderr.strip()
        .splitlines()[-1]
        .endswith("holds a search named 'cam' already; --resume continues it, --worker joins it")
    )


def test_a_copied_search_folder_says_the_name_its_study_holds(tmp_path):
    """A search folder copied elsewhere could not be resumed, and the error did not say why: its study keeps the name
    of the folder it started in."""
    import shutil

    data = make_folder(tmp_path / "img", per_class=6)
    first = cli("--data", str(data), "--out", str(tmp_path / "cam"), "--trials", "0", *FAST)
    assert first.returncode == 0, first.stderr[-2000:]
    shutil.copytree(tmp_path / "cam", tmp_path / "cam-copy")
    resumed = cli("--resume", "--out", str(tmp_path / "cam-copy"))
    assert resumed.returncode == 2
    assert " ".join(resumed.stderr.split()).endswith(
        f"no search named 'cam-copy' in sqlite:///{tmp_path / 'cam-copy' / 'study.db'} (a search is named after "
        "its --out folder); it holds 'cam': "
        "give --out a folder of that name (rename it back if it was renamed or copied)"
    ), resumed.stderr


def test_a_worker_without_a_budget_of_its_own_keeps_the_leads(tmp_path):
    """The lead's --time-budget bounds the search: a worker joining after it passed starts no trial (it used to
    train until the space or --trials was used up)."""
    data = make_folder(tmp_path / "img", per_class=6)
    out = tmp_path / "cam"
    lead = cli("--data", str(data), "--out", str(out), "--trials", "0", "--time-budget", "1s", *FAST)
    assert lead.returncode == 0, lead.stderr[-2000:]
    time.sleep(1.5)
    worker = cli("--worker", "--out", str(out), "--trials", "1")
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert "this worker ran no trial (the search stopped: the lead's time budget)" in worker.stdout, worker.stdout
    # (the initial design's trial is queued, not run)
    assert all(t.state.name == "WAITING" for t in load(f"sqlite:///{out / 'study.db'}", "cam").trials)


def _open_at_once(url, barrier, results):
    from edgetransfer.search.storage import open_storage

    barrier.wait()
    try:
        open_storage(url, heartbeat=5)
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - the test shows which error a worker met
        results.put(f"{type(exc).__name__}: {exc}")


def test_workers_opening_a_new_sqlite_study_at_once_all_get_it(tmp_path):
    """Several workers starting on one new SQLite file at the same moment each create Optuna's tables; the losers
    of that race retry instead of failing ("table studies already exists", a duplicate alembic version row). Before
    the fix, 2 of 5 such starts here had a worker fail."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    for round_ in range(3):
        url = f"sqlite:///{tmp_path / f'study{round_}.db'}"
        barrier, results = ctx.Barrier(5), ctx.Queue()
        workers = [ctx.Process(target=_open_at_once, args=(url, barrier, results)) for _ in range(5)]
        for w in workers:
            w.start()
        outcomes = [results.get(timeout=120) for _ in workers]
        for w in workers:
            w.join(timeout=60)
        assert outcomes == ["ok"] * 5, outcomes


def _claim_slowly(url, trial_id, barrier, results):
    """Take a waiting trial as Optuna's ``study.ask`` does, with a pause between reading its state and writing
    RUNNING (a busy machine's pause, made certain)."""
    import time as clock

    from optuna.storages._rdb import models
    from optuna.trial import TrialState

    from edgetransfer.search.storage import open_storage

    store = open_storage(url, heartbeat=5)
    found = models.TrialModel.find_or_raise_by_id

    def slow(*args, **kwargs):
        trial = found(*args, **kwargs)
        clock.sleep(1.0)
        return trial

    models.TrialModel.find_or_raise_by_id = slow
    barrier.wait()
    results.put(store.set_trial_state_values(trial_id, TrialState.RUNNING))


def test_two_workers_never_take_the_same_waiting_trial_on_sqlite(tmp_path):
    """A queued trial is taken by one worker only. Python's sqlite3 starts a transaction at the first write, so
    both workers read WAITING and both wrote RUNNING: two processes trained the same trial, and one's figures
    overwrote the other's. Each transaction now takes SQLite's write lock at its start (BEGIN IMMEDIATE)."""
    import multiprocessing

    from edgetransfer.search.storage import open_storage

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=open_storage(url, heartbeat=5), study_name="s")
    study.enqueue_trial({"x": 1})
    trial_id = study.get_trials(deepcopy=False)[0]._trial_id
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_claim_slowly, args=(url, trial_id, barrier, results)) for _ in range(2)]
    for w in workers:
        w.start()
    taken = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    assert sorted(taken) == [False, True], taken


def test_opening_retries_only_a_schema_race(monkeypatch):
    """A duplicate-schema error is retried until the other worker's tables are there; an unreachable server fails
    at once, in one line (no retry delaying a user's typo)."""
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    from edgetransfer.search import storage

    calls = []

    def racing(url, **kwargs):
        calls.append(url)
        if len(calls) < 3:
            raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed: alembic_version.version_num"))
        return "opened"

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(storage, "_lock_at_begin", lambda store: None)  # (the fake storage has no engine)
    monkeypatch.setattr(storage.time, "sleep", lambda s: None)
    assert storage.open_storage("sqlite:///x.db", heartbeat=5) == "opened" and len(calls) == 3

    calls.clear()

    def unreachable(url, **kwargs):
        calls.append(url)
        raise OperationalError("connect", {}, Exception("connection refused\nIs the server running?"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", unreachable)
    with pytest.raises(UsageError, match=r"^cannot reach the storage sqlite:///x.db: connection refused$"):
        storage.open_storage("sqlite:///x.db", heartbeat=5)
    assert len(calls) == 1
    monkeypatch.undo()  # a URL that is none, and one of a database without a dialect: the forms it takes are said
    for url in ("notaurl", "redis://host/0"):
        with pytest.raises(UsageError, match=r"; --storage takes sqlite:///PATH or postgresql://USER:PASSWORD@"):
            storage.open_storage(url, heartbeat=5)


# ----------------------------------------------------------------------------- real searches


def over_budget(note: str | None) -> bool:
    """A trial that failed because its int8 model could not hold export's accuracy budget: it ran to the end."""
    return bool(note) and "int8 cannot hold the" in note


def test_sqlite_two_workers_a_killed_one_and_the_report(tmp_path):
    """A lead and a worker share the SQLite study; a third worker is killed mid-trial: its trial is marked failed
    and the others go on; a second search on the folder is refused; --resume marks dead workers' trials."""
    data = make_folder(tmp_path / "img", per_class=6)
    out = tmp_path / "s"
    storage, name = f"sqlite:///{out / 'study.db'}", "s"
    lead = cli("--data", str(data), "--out", str(out), "--trials", "3", *FAST, wait=False)
    wait_for(lambda: running_trial_of(storage, name, lead.pid), lead)
    victim = cli("--worker", "--out", str(out), wait=False, tmpdir=tmp_path / "victim-tmp")
    wait_for(lambda: running_trial_of(storage, name, victim.pid), victim)
    worker = cli("--worker", "--out", str(out), wait=False)
    time.sleep(1)
    victim.send_signal(signal.SIGKILL)
    victim.wait()  # reaped: its pid is gone
    twice = cli("--data", str(data), "--out", str(out), "--resume")
    assert twice.returncode == 2 and "in use by 'edgetransfer search'" in twice.stderr.strip().splitlines()[-1]
    assert twice.stderr.strip().endswith(f"wait for it to finish, or join it: edgetransfer search --worker --out {out}")
    worker_out, worker_err = worker.communicate(timeout=900)
    lead_out, lead_err = lead.communicate(timeout=900)
    assert lead.returncode == 0, lead_err[-3000:]
    assert worker.returncode == 0, worker_err[-3000:]
    doc = json.loads((out / "search.json").read_text())
    trials = {t["number"]: t for t in doc["trials"]}
    killed = [t for t in trials.values() if t["worker"].endswith(f":{victim.pid}") and t["same_as"] is None]
    assert len(killed) == 1 and killed[0]["state"] == "failed" and "died mid-trial" in killed[0]["note"]
    # its half-made run folder and lock went, as an interrupted trial's do (they stayed among the search's runs)
    number = f"{killed[0]['number']:04d}-"
    assert killed[0]["run"] is None
    assert not [p.name for p in (out / "trials").iterdir() if p.name.lstrip(".").startswith(number)]
    # a trial whose int8 fails export's budget ran too (3-image validation splits: one image is 33 points)
    ran = [
        t
        for t in trials.values()
        if (t["state"] in ("done", "pruned") or over_budget(t["note"])) and t["same_as"] is None
    ]
    assert len(ran) >= 3
    assert {t["worker"].rsplit(":", 1)[1] for t in ran} == {str(lead.pid), str(worker.pid)}  # both did trials
    assert "running" not in {t["state"] for t in trials.values()}
    for t in ran:
        if t["state"] == "done":
            assert (Path(t["run"]) / "card.json").is_file() and (Path(t["run"]) / "bench.json").is_file()
            assert 0 <= t["val_top1"] <= 1 and t["latency_ms"] > 0
            assert t["latency_key"] == "p50_ms" and t["p50_p99_batch"] == 1  # the camera profile's
    assert "the Pareto front" in lead_out and "recommended: trial" in lead_out and "every trial" in lead_out
    assert doc["recommended"] in doc["pareto"]
    html = (out / "search.html").read_text()
    assert "data:image/png;base64," in html and "Pareto front" in html
    assert "this worker's trials" in worker_out
    # a worker that died with a trial RUNNING and no one left to notice: --resume marks it failed
    study = load(storage, name)
    ghost = subprocess.Popen(["true"])
    ghost.wait()
    trial = study.ask()
    trial.set_user_attr("worker", f"{socket.gethostname()}:{ghost.pid}")
    trial.set_user_attr("candidate", "mobilenet_v2/32/static")
    resumed = cli("--resume", "--out", str(out), "--trials", "0", "--sizes", "64", "--epochs", "3")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"trial(s) {trial.number}: their worker died; marked failed" in resumed.stderr
    assert "resumed search s (" in resumed.stderr and "joined search s (" in worker_err  # not "joined" (--resume)
    # candidates given again are not the study's: said, not silently ignored (a new user's finding)
    assert "note: --sizes not used: this search's candidates were fixed at its start (" in resumed.stderr
    said = " ".join(resumed.stderr.split())
    assert "note: --epochs 3 not used: this search keeps the settings it started with (epochs 1)" in said
    assert load(storage, name).trials[trial.number].state.name == "FAIL"


def test_a_dead_workers_own_trial_folder_goes_never_a_finished_trials(tmp_path, monkeypatch):
    """A dead worker's half-made trial folder and lock are removed; a repeat of a finished candidate records that
    trial's folder (its figures are copied), and that folder stays (a reviewer's finding: it was removed, the
    recommended model with it). A trial another worker marked failed meanwhile is passed over (it raised Optuna's
    UpdateFinishedTrialError and stopped the worker)."""
    optuna = pytest.importorskip("optuna")
    from edgetransfer.search.storage import fail_dead_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    ghost = subprocess.Popen(["true"])
    ghost.wait()  # reaped: its pid is gone
    dead = f"{socket.gethostname()}:{ghost.pid}"
    trials = tmp_path / "trials"
    finished = trials / "0000-mobilenet_v2-96px-static"
    finished.mkdir(parents=True)
    first = study.ask()
    first.set_user_attr("run", str(finished))
    study.tell(first, 90.0)
    repeat = study.ask()
    for key, value in (("run", str(finished)), ("same_as", 0), ("worker", dead)):
        repeat.set_user_attr(key, value)
    own = trials / "0002-mobilenet_v2-64px-static"
    (own / ".export.x.partial").mkdir(parents=True)
    lock = trials / ".0002-mobilenet_v2-64px-static.lock"
    lock.write_text("{}")
    half = study.ask()
    half.set_user_attr("run", str(own))
    half.set_user_attr("worker", dead)
    assert fail_dead_trials(study) == [1, 2]
    assert finished.is_dir() and not own.exists() and not lock.exists()
    after = study.get_trials()
    assert after[1].user_attrs["run"] == str(finished) and after[2].user_attrs["run"] is None
    assert after[0].state.name == "COMPLETE" and after[2].user_attrs["error"].endswith("died mid-trial")
    # a look at the trials taken before another worker failed trial 3: skipped, not an error
    late = study.ask()
    late.set_user_attr("worker", dead)
    stale, real = study.get_trials(deepcopy=True), study.get_trials
    study._storage.set_trial_state_values(late._trial_id, optuna.trial.TrialState.FAIL)
    looks = []
    monkeypatch.setattr(
        study, "get_trials", lambda **kw: stale if not looks.append(1) and len(looks) == 1 else real(**kw)
    )
    assert fail_dead_trials(study) == []


def test_a_dead_trial_of_a_moved_or_copied_search_is_removed_there_only(tmp_path):
    """--resume on a search folder moved or copied elsewhere: a dead worker's half-made folder was looked for at the
    recorded path (where the search was made): a moved search's stayed, and a copy's resume removed the trial folder
    of the original (a review). It is removed where it is now, in this search's folder only."""
    optuna = pytest.importorskip("optuna")
    from edgetransfer.search.storage import fail_dead_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ghost = subprocess.Popen(["true"])
    ghost.wait()
    dead = f"{socket.gethostname()}:{ghost.pid}"
    name = "0000-mobilenet_v2-96px-static"
    original, copy = tmp_path / "s", tmp_path / "elsewhere" / "s"
    for folder in (original, copy):
        (folder / "trials" / name / ".export.x.partial").mkdir(parents=True)
    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr("run", str(original / "trials" / name))
    trial.set_user_attr("worker", dead)
    assert fail_dead_trials(study, copy) == [0]
    assert not (copy / "trials" / name).exists() and (original / "trials" / name).is_dir()
    shutil.rmtree(copy / "trials")  # a copy made before the trial's folder was: the original's is not touched
    again = study.ask()
    again.set_user_attr("run", str(original / "trials" / name))
    again.set_user_attr("worker", dead)
    assert fail_dead_trials(study, copy) == [1] and (original / "trials" / name).is_dir()


@pytest.mark.skipif(not Path("/proc/self/ns/pid").exists(), reason="no Linux /proc here")
def test_a_worker_is_told_dead_by_its_process_not_its_pid_alone():
    """A host name and pid alone: a pid reused after the worker died looked alive (its trial never failed here), and
    a worker in another container of the same host name looked dead (its pid is not in this namespace: a live
    trial failed). The process's start time and pid namespace are recorded with the trial and compared."""
    optuna = pytest.importorskip("optuna")
    from edgetransfer.search.storage import fail_dead_trials, process_identity

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    alive = subprocess.Popen(["sleep", "60"])
    ghost = subprocess.Popen(["true"])
    ghost.wait()
    try:
        host, real = socket.gethostname(), process_identity(alive.pid)
        cases = {
            "alive": (alive.pid, real),
            "pid reused": (alive.pid, {**real, "start": real["start"] - 1}),
            "other container": (ghost.pid, {**real, "pid_namespace": real["pid_namespace"] + 1}),
            "dead": (ghost.pid, real),
            "recorded before": (ghost.pid, None),  # a trial of an older search: host and pid, as before
        }
        for pid, identity in cases.values():
            trial = study.ask()
            trial.set_user_attr("worker", f"{host}:{pid}")
            trial.set_user_attr("worker_process", identity)
        assert fail_dead_trials(study) == [1, 3, 4]  # the reused pid, the dead one, the older record
    finally:
        alive.kill()
        alive.wait()


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 and a free port (as 'nobody' when the tests run as root: the
    server refuses root); skipped with the reason where it cannot start."""
    pytest.importorskip("psycopg2", reason="psycopg2 (edgetransfer[search]) is not installed")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    # outside pytest's temporary tree: every pytest session started on this machine (another job's, too) makes
    # that tree 0700 again, which would take the cluster away from its user
    root = Path(tempfile.mkdtemp(prefix="edgetransfer-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            shutil.rmtree(root)
            pytest.skip("running as root and no runuser to start PostgreSQL as another user")
        prefix = [runuser, "-u", "nobody", "--"]
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
    cluster, port = root / "cluster", _free_port()
    init = subprocess.run(
        [*prefix, str(bin_dir / "initdb"), "-D", str(cluster), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        capture_output=True,
        text=True,
    )
    if init.returncode:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb could not make a cluster: {init.stderr.strip().splitlines()[-1:]}")
    ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(cluster)]
    options = f"-p {port} -h 127.0.0.1 -k {root}"
    start = subprocess.run(
        [*ctl, "-l", str(root / "log"), "-w", "-t", "60", "start", "-o", options], capture_output=True
    )
    if start.returncode:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {start.stderr.decode(errors='replace').strip()[-300:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_postgresql_two_workers_on_other_folders(tmp_path, postgres):
    """Two machines' worth: each worker its own output folder, one study in PostgreSQL; a budget no candidate meets
    is said, with the closest."""
    data = make_folder(tmp_path / "img", per_class=6)
    tight = tmp_path / "tight.toml"
    tight.write_text('name = "tight"\n[settings]\nthreads = 1\nbatches = [1]\n[budget]\np99_ms = 0.001\n')
    lead_out, other_out = tmp_path / "s", tmp_path / "machine2" / "s"  # the same name: the same study
    lead = cli(
        "--data",
        str(data),
        "--out",
        str(lead_out),
        "--storage",
        postgres,
        "--trials",
        "3",
        "--profile",
        str(tight),
        *FAST,
        wait=False,
    )
    wait_for(lambda: running_trial_of(postgres, "s", lead.pid), lead)
    worker = cli("--worker", "--out", str(other_out), "--storage", postgres, "--data", str(data), wait=False)
    worker_out, worker_err = worker.communicate(timeout=900)
    out, err = lead.communicate(timeout=900)
    assert lead.returncode == 1, err[-3000:]  # none meets the budget: exit 1, as bench's budgets (the worker: 0)
    assert worker.returncode == 0, worker_err[-3000:]
    trials = load(postgres, "s").get_trials(deepcopy=False)
    ran = [
        t
        for t in trials
        if (t.state.name in ("COMPLETE", "PRUNED") or over_budget(t.user_attrs.get("error")))
        and "same_as" not in t.user_attrs
    ]
    assert len(ran) >= 3
    workers = {t.user_attrs["worker"].rsplit(":", 1)[1] for t in ran}
    assert workers == {str(lead.pid), str(worker.pid)}
    by_worker = [t for t in ran if t.user_attrs["worker"].endswith(f":{worker.pid}") and t.state.name == "COMPLETE"]
    assert all(str(other_out) in t.user_attrs["run"] for t in by_worker)  # its runs in its own folder
    assert "no candidate meets the budget p99 <= 0.001 ms: the closest is trial" in out
    assert (lead_out / "search.html").is_file() and not (lead_out / "study.db").exists()


def test_a_tracking_server_gone_mid_search_is_a_warning(tmp_path, monkeypatch, capsys):
    # MLflow's error went up through Optuna's callback and ended the search with a traceback
    import types

    from edgetransfer.search.tracking import mlflow_logger

    def gone(*args, **kwargs):
        raise ConnectionError("HTTPConnectionPool(host='tracker', port=5000): Max retries exceeded")

    fake = types.SimpleNamespace(
        set_tracking_uri=lambda uri: None, get_experiment_by_name=lambda name: object(), set_experiment=lambda n: None,
        start_run=gone,
    )  # fmt: skip
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    study.tell(trial, 90.0)
    mlflow_logger("http://tracker:5000", "demo")(study, study.trials[0])
    err = capsys.readouterr().err
    assert "MLflow did not take trial 0 (ConnectionError: HTTPConnectionPool" in err and "the search goes on" in err
    fake.search_runs = gone  # a re-measure after the trials: the search does not "go on" then
    mlflow_logger("http://tracker:5000", "demo").remeasured(study, 0, {"p50_ms": 1.0})
    err = capsys.readouterr().err
    assert "MLflow did not take trial 0" in err and "goes on" not in err and "its own records are complete" in err


def test_mlflow_logs_each_trial(tmp_path):
    pytest.importorskip("mlflow", reason="mlflow is an optional extra (pip install 'edgetransfer[mlflow]')")
    from edgetransfer.search.tracking import mlflow_logger

    study = optuna.create_study(direction="maximize")
    study.set_user_attr("config", {"epochs": 1, "profile": "camera"})
    trial = study.ask()
    for key, value in {
        "backbone": "mobilenet_v2",
        "size": 96,
        "int8": "static",
        "val_top1": 0.9,
        "p50_ms": 8.7,
        "budget_failures": ["peak RSS 300 MB > 200 MB"],
    }.items():
        trial.set_user_attr(key, value)
    trial.report(80.0, 1)
    study.tell(trial, 90.0)
    mlflow_logger(str(tmp_path / "mlruns"), "demo")(study, study.trials[0])
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["edgetransfer-search-demo"], output_format="list")
    assert len(runs) == 1 and runs[0].data.params["backbone"] == "mobilenet_v2"
    assert runs[0].data.metrics["val_top1"] == 0.9 and runs[0].data.tags["state"] == "complete"
    assert runs[0].data.tags["budget_failures"] == "peak RSS 300 MB > 200 MB"
    # a latency measured again after the search: the run's metric is the new reading, the first kept in its history
    logger = mlflow_logger(str(tmp_path / "mlruns2"), "again")
    logger(study, study.trials[0])
    logger.remeasured(study, 0, {"p50_ms": 1.7, "latency_ms": 1.7, "first_ms": 8.7, "budget_failures": None})
    logger.remeasured(study, 5, {"p50_ms": 1.0, "first_ms": 2.0})  # a trial it never logged: left alone
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns2' / 'mlflow.db'}")
    (run,) = mlflow.search_runs(experiment_names=["edgetransfer-search-again"], output_format="list")
    assert run.data.metrics["p50_ms"] == 1.7 and "first read 8.700 ms" in run.data.tags["latency_measured_again"]
    assert "budget_failures" not in run.data.tags  # measured again within the other budgets: the first's tag gone
    history = mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, "p50_ms")
    assert [(m.step, m.value) for m in history] == [(0, 8.7), (1, 1.7)]


def test_the_defaults_candidate_is_tried_first(tmp_path):
    """The first trial is what finetune + export make by default (MobileNetV2, the size from the images, static int8),
    so the pick is measured against it in the same search."""
    from edgetransfer.data import load_splits
    from edgetransfer.search.study import _default_candidate
    from edgetransfer.search.trial import Candidate

    data = make_folder(tmp_path / "img", per_class=6)
    config = SearchConfig(data=str(data), out=str(tmp_path / "s"))
    splits = load_splits(data)
    assert _default_candidate(config, build_space(config), splits) == Candidate("mobilenet_v2", 96, "static")
    narrow = SearchConfig(data=str(data), out="o", sizes=(32,))
    assert _default_candidate(narrow, build_space(narrow), splits) is None  # not in the space: nothing forced
    from edgetransfer.search.study import _initial_design

    space = build_space(config, side=40)  # 40 px images: the grid starts at 64
    assert _initial_design(config, space, splits) == [
        Candidate("mobilenet_v2", 96, "static"),
        Candidate("mobilenet_v2", 64, "static"),  # then the default's smallest size: the fastest of its family
    ]
    # the default candidate not in the space: its backbone's smallest size still goes first (the sampler's random
    # first choice was a QAT trial or another backbone: a new user's trial)
    assert _initial_design(narrow, build_space(narrow), splits) == [Candidate("mobilenet_v2", 32, "static")]
    qat = SearchConfig(data=str(data), out="o", sizes=(64,), int8_methods=("qat",))
    assert _initial_design(qat, build_space(qat), splits) == [Candidate("mobilenet_v2", 64, "qat")]
    other = SearchConfig(data=str(data), out="o", backbones=("efficientnet_lite0",), sizes=(64,))
    assert _initial_design(other, build_space(other), splits) == []  # not the default's backbone: the sampler's


def test_the_size_grid_starts_at_64_for_small_images():
    """Below finetune's own floor (96 px, for images of 96 px or less) the grid goes one step further, so the
    default candidate always has a faster sibling of its backbone to be measured against."""
    config = SearchConfig(data="d", out="o", backbones=("mobilenet_v2",), int8_methods=("static",))
    assert build_space(config, side=32).sizes["mobilenet_v2"][0] == 64  # 32 px images: 64 px loses no pixel
    assert build_space(config, side=64).sizes["mobilenet_v2"][0] == 64
    assert build_space(config, side=72).sizes["mobilenet_v2"][0] == 64  # trains at 96 by default: 64 is below
    assert build_space(config, side=96).sizes["mobilenet_v2"][0] == 64
    assert build_space(config, side=97).sizes["mobilenet_v2"][0] == 96  # trains at 128 by default: 96 is below
    assert build_space(config).sizes["mobilenet_v2"] == (96, 128, 160, 192, 224)  # size unknown: from 96


def test_the_most_accurate_is_recommended_and_a_faster_one_within_the_noise_is_named():
    """97.77 % vs 97.03 % on 269 validation images is 2 images apart, within one standard error (~0.9 points): the
    more accurate trial is recommended (an earlier rule picked the faster one; on held-out sets such picks were never
    more accurate on test and up to 17 points less), and the verdict names the 49x faster one and its gap."""
    slow, fast = dict(val_images=269), dict(val_images=269)
    rows = [_row(0, 0.9703, 0.48, **fast), _row(1, 0.9777, 23.7, **slow), _row(2, 0.90, 0.2, val_images=269)]
    pick = rep.recommend(rows, 33.0)
    assert pick["row"]["number"] == 1 and pick["most_accurate"]["number"] == 1
    assert pick["faster_within_noise"]["number"] == 0  # trial 2 is faster still, but far outside the noise
    assert 0.74 < pick["tie_points"] < 1.2  # one standard error of ~97.8 % on 269 images, in points
    lines = rep.verdict(rows, Budget("p50_ms", 33.0))
    assert "recommended: trial 1" in lines[0]
    assert "trial 0" in lines[1] and "49.38x faster" in lines[1] and "0.74 points less" in lines[1]
    assert "noise (0.97 points on 269 images)" in lines[1] and "note: its" not in lines[1]
    # a faster trial whose int8 lost more than export's budget: said where it is offered, not in the table alone
    lossy = [dict(rows[0], int8_note="int8 loses 3.33 points vs fp32 (over export's 1-point budget)"), *rows[1:]]
    assert "; note: its int8 loses 3.33 points vs fp32" in rep.verdict(lossy, Budget("p50_ms", 33.0))[1]
    many = [dict(r, val_images=100_000) for r in rows]
    assert rep.recommend(many, 33.0)["faster_within_noise"] is None  # a real 0.74-point gap: nothing to name
    assert len(rep.verdict(many, Budget("p50_ms", 33.0))) == 2  # the pick and its run only
    assert rep.recommend(rows, 10.0)["row"]["number"] == 0  # the slow one is over this budget
    assert rep.noise(_row(0, 1.0, 1.0, val_images=50)) > 0.01  # a perfect score on 50 images is not certainty
    one_image = [_row(0, 72 / 72, 8.3, val_images=72), _row(1, 71 / 72, 0.41, val_images=72)]
    assert rep.recommend(one_image, 33.0)["row"]["number"] == 0  # one image more is the more accurate
    assert rep.recommend(one_image, 33.0)["faster_within_noise"]["number"] == 1  # one image is never evidence
    two_images = [_row(0, 1.0, 8.3, val_images=500), _row(1, 498 / 500, 0.41, val_images=500)]
    assert rep.recommend(two_images, 33.0)["faster_within_noise"] is None  # 2 of 500 below a perfect score: over 1 SE
    equal = [_row(0, 1.0, 1.2, val_images=30), _row(1, 1.0, 0.6, val_images=30)]
    assert rep.recommend(equal, 33.0)["row"]["number"] == 1  # equal scores: the faster
    assert rep.recommend(equal, 33.0)["faster_within_noise"] is None
    assert rep.noise(_row(0, 0.5, 1.0)) == 0  # the count unknown (an older study): no band
    doc = rep.document(rows, budget=Budget("p50_ms", 33.0), space={}, profile="camera", data="d")
    assert doc["recommended"] == 1 and doc["faster_within_noise"] == 0


def test_the_profiles_other_budgets_bind_the_recommendation(tmp_path):
    """A profile limiting model size (or memory, or throughput) was judged on latency alone: search recommended a
    2.6 MB model as within a 1 MB budget, with exit 0, while bench failed it on that profile."""
    from edgetransfer.bench.profiles import load_profile

    profile = tmp_path / "flash.toml"
    profile.write_text('name = "flash"\n[budget]\np50_ms = 33.0\nmax_model_mb = 1.0\nmax_top1_drop_points = 1.0\n')
    budget = Budget.of(load_profile(str(profile)))
    assert budget.others == (("max_model_mb", 1.0),)  # the top-1 drop is bench's test-split check, not the search's
    assert budget.describe() == "p50 <= 33 ms, model size <= 1 MB"
    big = dict(_row(0, 0.95, 0.6, val_images=60), budget_failures=["model size 2.602 MB > 1 MB"])
    small = _row(1, 0.90, 0.9, val_images=60)
    assert rep.recommend([big, small], budget.limit_ms)["row"]["number"] == 1  # the more accurate one is too big
    lines = rep.verdict([big], budget)
    assert lines[0].startswith("no candidate meets the budget p50 <= 33 ms, model size <= 1 MB: the closest is trial 0")
    assert "(over the profile's model size 2.602 MB > 1 MB)" in lines[0]
    assert "within the profile's other budgets" in rep.verdict([small], budget)[0]


def test_a_finished_trials_log_line_says_over_once(monkeypatch, capsys):
    """In a log, a trial over the budget read "p50 0.902 ms (over) (over the profile's p50 ...)" (a new user's
    finding): the note says it once; a trial within the budget still says so."""
    from edgetransfer.search.live import Progress

    budget = Budget(key="p50_ms", limit_ms=0.5)
    over = _row(0, 1.0, 0.902, within_budget=False)
    over["note"] = "over the profile's p50 0.902 ms > 0.5 ms"
    rows = [over, _row(1, 0.9, 0.4, within_budget=True)]
    monkeypatch.setattr(Progress, "_rows", lambda self: rows)
    progress = Progress(None, budget)
    for number in (0, 1):
        progress.finished(type("Trial", (), {"number": number})())
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("p50 0.902 ms (over the profile's p50 0.902 ms > 0.5 ms)") and "(over)" not in lines[0]
    assert lines[1].endswith("p50 0.400 ms (within)")


def test_a_time_budget_starts_only_trials_predicted_to_fit():
    """The cost model scales the measured trial nearest in FLOPs; the search does not start a candidate predicted
    to end past the time left (its trial is 'skipped' with the prediction), and starts one that fits."""
    from edgetransfer.search.cost import gflops, predict
    from edgetransfer.search.study import _Search
    from edgetransfer.search.trial import Candidate

    assert gflops("efficientnet_lite1", 224) > 5 * gflops("mobilenet_v2", 96) > 0
    done = [dict(backbone="mobilenet_v2", size=96, int8="static", epochs_run=4, finetune_s=30.0, export_s=8.0,
                 bench_s=3.0)]  # fmt: skip
    same = predict(Candidate("mobilenet_v2", 96, "static"), done)
    assert same == pytest.approx(41.0)
    bigger = predict(Candidate("mobilenet_v2", 192, "static"), done)
    assert 3.0 * 38 < bigger - 3.0 < 5.0 * 38  # about 4x the pixels
    assert predict(Candidate("mobilenet_v2", 96, "qat"), done) > same + 20  # QAT adds its epochs to export
    assert predict(Candidate("mobilenet_v2", 96, "static"), []) is None  # nothing measured: no prediction
    four = predict(Candidate("mobilenet_v2", 96, "static"), [dict(done[0], epochs_run=2)], max_epochs=4)
    assert four == pytest.approx(30.0 * 2 + 8.0 + 3.0)  # stopped early after 2 epochs: the next may run all 4
    early = [dict(done[0], epochs_run=2)]  # 15 s per epoch; QAT: 3 plain epochs' time per QAT epoch, on top
    qat = predict(Candidate("mobilenet_v2", 96, "qat"), early, max_epochs=4)
    assert qat == pytest.approx(15.0 * 4 + 8.0 + 3 * 15.0 + 3.0)
    auto = predict(Candidate("mobilenet_v2", 96, "auto"), early, max_epochs=4)
    assert auto == pytest.approx(qat)  # export's auto may escalate to QAT: predicted as long as QAT's
    measured_auto = [dict(early[0], int8="auto")]  # an auto trial that kept static: QAT is still charged on top
    assert predict(Candidate("mobilenet_v2", 96, "auto"), measured_auto, max_epochs=4) == pytest.approx(qat)
    assert predict(Candidate("mobilenet_v2", 96, "qat"), measured_auto, max_epochs=4) == pytest.approx(qat)
    with_qat = [*early, dict(early[0], int8="qat", export_s=80.0)]  # a measured QAT export is the bound
    assert predict(Candidate("mobilenet_v2", 96, "auto"), with_qat, max_epochs=4) == pytest.approx(
        15.0 * 4 + 80.0 + 3.0
    )
    setup = [*done, dict(done[0], size=64, bench_s=30.0)]  # a bench that included a one-time setup (a device's venv)
    assert predict(Candidate("mobilenet_v2", 96, "static"), setup) == pytest.approx(41.0)  # the smallest bench
    search = _Search.__new__(_Search)
    search.config = SearchConfig(data="d", out="o", epochs=4)
    search.first = set()
    search.deadline = time.monotonic() + 100
    assert search._too_long(Candidate("mobilenet_v2", 96, "static"), done) is None
    why = search._too_long(Candidate("efficientnet_lite1", 224, "static"), done)
    assert why is not None and why.startswith("not started: predicted") and "of the time budget left" in why
    search.deadline = time.monotonic() + 60  # 41 s of 60 fits, but would leave too little for any other trial
    half = search._too_long(Candidate("mobilenet_v2", 96, "static"), done)
    assert half is not None and "more than 50% of the" in half
    search.first = {"mobilenet_v2/96/static"}  # of the initial design: it runs whenever it fits the time left
    assert search._too_long(Candidate("mobilenet_v2", 96, "static"), done) is None
    search.deadline = time.monotonic() + 30  # ...but not past the budget
    assert "of the time budget left" in search._too_long(Candidate("mobilenet_v2", 96, "static"), done)
    search.deadline = None
    assert search._too_long(Candidate("efficientnet_lite1", 224, "static"), done) is None  # no budget: all fit


def test_a_static_trial_that_cannot_hold_the_budget_queues_its_qat_sibling(capsys):
    """As export --int8-method auto escalates: a static trial failing export's int8 budget queues the same backbone
    and size with QAT next, once, when QAT is searched and not tried yet."""
    from edgetransfer.search.config import Space
    from edgetransfer.search.study import _Search
    from edgetransfer.search.trial import Candidate

    class Trial:  # what _escalate uses of an Optuna trial (study.ask() would take the queued one)
        def __init__(self, study, number=0):
            self.study, self.number, self.user_attrs = study, number, {}

        def set_user_attr(self, key, value):
            self.user_attrs[key] = value

    def searcher(methods):
        search = _Search.__new__(_Search)
        search.config, search.deadline = SearchConfig(data="d", out="o"), None
        search.space, search.optuna = Space({"mobilenet_v2": (96, 128)}, methods), optuna
        search.first = set()
        return search

    def waiting(study):
        return [t.system_attrs["fixed_params"] for t in study.get_trials(deepcopy=False) if t.state.name == "WAITING"]

    study = optuna.create_study(direction="maximize")
    search, static = searcher(("static", "qat")), Candidate("mobilenet_v2", 128, "static")
    trial = Trial(study)
    search._escalate(trial, static)
    qat = {"backbone": "mobilenet_v2", "size_mobilenet_v2": 128, "int8": "qat"}
    assert waiting(study) == [qat] and trial.user_attrs["escalated"] == "mobilenet_v2/128/qat"
    assert "quantization-aware sibling (mobilenet_v2 128px qat) is queued" in capsys.readouterr().err
    running = study.ask({"backbone": optuna.distributions.CategoricalDistribution(["mobilenet_v2"])})
    running.set_user_attr("candidate", "mobilenet_v2/96/qat")  # the 96 px sibling is being tried already
    assert waiting(study) == []  # (ask took the queued trial; the sampler would have)
    search._escalate(Trial(study, 1), Candidate("mobilenet_v2", 96, "static"))
    search._escalate(Trial(study, 2), Candidate("mobilenet_v2", 96, "qat"))  # QAT itself failed: nothing further
    searcher(("static",))._escalate(Trial(study, 3), static)  # QAT not searched: nothing queued
    assert waiting(study) == []
    search._escalate(Trial(study, 4), static)  # the 128 px sibling is not running or done: queued again
    assert waiting(study) == [qat]
    assert search.first == set()  # not the default's: the sampler's rule (at most half the time left) holds for it

    # the default's sibling (export's auto is static, then QAT) joins the initial design: it runs whenever it fits
    # the time left (search run 9, fifty-e: predicted at 48 s with 62 s left, it was not started)
    import time

    measured = [dict(backbone="mobilenet_v2", size=96, int8="static", epochs_run=4, finetune_s=20.0, export_s=5.0,
                     bench_s=3.0)]  # fmt: skip
    fresh = optuna.create_study(direction="maximize")
    default = Candidate("mobilenet_v2", 96, "static")
    fresh.set_user_attr("first", [default.key, "mobilenet_v2/64/static"])  # as the lead records it
    search.first, search.deadline = {default.key, "mobilenet_v2/64/static"}, time.monotonic() + 62
    search._measured = lambda study: measured
    search._escalate(Trial(fresh), default)
    assert search.first == {default.key, "mobilenet_v2/64/static", "mobilenet_v2/96/qat"}
    assert fresh.user_attrs["first"][-1] == "mobilenet_v2/96/qat"  # in the study: a worker or --resume reads it
    search._escalate(Trial(fresh, 1), Candidate("mobilenet_v2", 64, "static"))  # the smallest size's: not the default
    assert "mobilenet_v2/64/qat" not in search.first and "mobilenet_v2/64/qat" not in fresh.user_attrs["first"]
    assert waiting(fresh)[0] == {"backbone": "mobilenet_v2", "size_mobilenet_v2": 96, "int8": "qat"}
    predicted = search._too_long(Candidate("mobilenet_v2", 96, "qat"), measured) is None
    assert predicted  # more than half of the 62 s left (a QAT epoch costs 3), yet it fits: started
    search.first = set()
    assert "more than 50%" in search._too_long(Candidate("mobilenet_v2", 96, "qat"), measured)
    # reusing a finished fine-tune of its backbone and size, it is export and bench only: it fits the share
    assert search._too_long(Candidate("mobilenet_v2", 96, "qat"), measured, fine_tuned=True) is None


def test_a_search_escalates_a_static_trial_over_the_budget_to_qat(tmp_path, monkeypatch):
    """In a real (in-process) search whose trials are stubbed: the default candidate's static int8 fails the budget
    (BudgetError), so the next trial is its QAT sibling, which is then recommended."""
    from edgetransfer.errors import BudgetError
    from edgetransfer.search import search, study

    tried = []

    def trial(config, candidate, folder, profile, on_epoch=None, devices=None, trained=None):
        tried.append(candidate.key)
        if candidate.int8 == "static":
            raise BudgetError("ONNX int8 cannot hold the 1.0-point budget: it loses 3.12 points of validation top-1")
        return dict(run=str(folder), val_top1=0.9, latency_ms=1.0, latency_key="p50_ms", p50_ms=1.0, p99_ms=1.2)

    monkeypatch.setattr(study, "run_trial", trial)
    data = make_folder(tmp_path / "img", per_class=6)
    config = SearchConfig(data=str(data), out=str(tmp_path / "s"), backbones=("mobilenet_v2",), sizes=(96, 128))
    result = search(replace(config, int8_methods=("static", "qat"), trials=2))
    assert tried == ["mobilenet_v2/96/static", "mobilenet_v2/96/qat"]  # the sibling before the queued 2nd design
    (pick,) = [r for r in result.rows if r["number"] == result.document["recommended"]]
    assert (pick["int8"], pick["state"]) == ("qat", "done") and result.rows[0]["state"] == "failed"


def test_a_trial_that_crashes_fails_alone_and_is_not_taken_for_a_dead_worker(tmp_path, monkeypatch):
    """A trial raising something other than edgetransfer's errors (a CUDA out-of-memory, an engine's own error)
    stopped the whole search with a traceback and left its trial failed without a reason, read as a dead worker's:
    --resume ran it first and crashed again. A measured model without a val top-1 was such a trial too."""
    from edgetransfer.search import search, study

    tried = []

    def trial(config, candidate, folder, profile, on_epoch=None, devices=None, trained=None):
        tried.append(candidate.key)
        if len(tried) == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore lines")
        figures = dict(run=str(folder), val_top1=0.9, latency_ms=1.0, latency_key="p50_ms", p50_ms=1.0, p99_ms=1.2)
        return {**figures, "val_top1": None} if len(tried) == 2 else figures

    monkeypatch.setattr(study, "run_trial", trial)
    data = make_folder(tmp_path / "img", per_class=6)
    config = SearchConfig(data=str(data), out=str(tmp_path / "s"), sizes=(32, 64, 96), int8_methods=("static",))
    result = search(replace(config, backbones=("mobilenet_v2",), trials=3))
    assert len(tried) == 3
    assert [r["state"] for r in result.rows] == ["failed", "failed", "done"]
    assert result.rows[0]["note"] == (
        "unexpected error, not retried: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    )
    assert result.rows[1]["note"].endswith("export recorded no validation top-1 for the measured model")
    resumed = search(replace(config, backbones=None, sizes=None, int8_methods=None, resume=True, trials=3))
    assert len(tried) == 3 and not resumed.mine  # neither failure is queued again as a dead worker's trial
    # the storage failing is not the candidate's failure: it goes up (a reviewer's finding), said in one line with
    # its cause (Optuna wraps SQLAlchemy's errors in StorageInternalError: it was a traceback; another reviewer's)
    import optuna

    def storage_fails(*args, **kwargs):
        try:
            raise OSError("server closed the connection unexpectedly")
        except OSError as exc:
            raise optuna.exceptions.StorageInternalError("invalid data in the commit") from exc

    monkeypatch.setattr(study, "run_trial", storage_fails)
    with pytest.raises(UsageError, match=r"^the storage stopped answering \(server closed the connection unexp"):
        search(replace(config, out=str(tmp_path / "t"), backbones=("mobilenet_v2",), trials=1))
    # the server stopped mid-trial: Optuna's reading the trial back failed too and raised an UnboundLocalError
    # ('updated_state') over it, 450 lines of traceback, and the trial's half-made folder stayed (a new user's trial)
    from optuna.storages import RDBStorage

    def server_gone(config, candidate, folder, profile, **kwargs):
        (folder / "resume.pt").parent.mkdir(parents=True)
        (folder / "resume.pt").write_bytes(b"half")
        monkeypatch.setattr(RDBStorage, "get_trial", storage_fails)
        storage_fails()

    monkeypatch.setattr(study, "run_trial", server_gone)
    with pytest.raises(UsageError, match=r"^the storage stopped answering \(server closed the connection unexp"):
        search(replace(config, out=str(tmp_path / "u"), backbones=("mobilenet_v2",), trials=1))
    assert not list((tmp_path / "u" / "trials").iterdir())


def test_a_trial_s_noise_verdict_reaches_the_rows_and_search_json(tmp_path, monkeypatch):
    """run_trial's latency_noisy was not among the figures saved on the trial (0e8aa2d): the note and search.json
    never had it from a real trial. Through the search itself, with a stand-in trial."""
    import json

    from edgetransfer.search import search, study

    noisy = "CV 67% (above 10%)"
    monkeypatch.setattr(
        study,
        "run_trial",
        lambda config, candidate, folder, *a, **k: dict(
            run=str(folder), val_top1=0.9, latency_ms=1.0, latency_key="p50_ms", p50_ms=1.0, p99_ms=1.2,
            latency_noisy=noisy,
        ),
    )  # fmt: skip
    data = make_folder(tmp_path / "img", per_class=6)
    out = tmp_path / "s"
    monkeypatch.chdir(tmp_path)  # --out s: a trial's run is named by its absolute path (a worker's was by a path
    # relative to its own working directory, which another worker or --resume started elsewhere cannot open), and
    # without "..": --out img/../s was recorded as such
    config = SearchConfig(data=str(data), out="img/../s", backbones=("mobilenet_v2",), sizes=(32,), trials=1)
    (row,) = [r for r in search(config).rows if r["state"] == "done"]
    assert row["latency_noisy"] == noisy and f"latency noisy ({noisy})" in row["note"]
    assert row["run"] == str(out / "trials" / "0000-mobilenet_v2-32px-static")
    (saved,) = [t for t in json.loads((out / "search.json").read_text())["trials"] if t["state"] == "done"]
    assert saved["latency_noisy"] == noisy


def _stand_in_trials(monkeypatch) -> list[str]:
    """The search's trials stood in for (every one done, 90 %, 1 ms): the candidates it runs, in order."""
    from edgetransfer.search import study

    tried: list[str] = []
    monkeypatch.setattr(
        study,
        "run_trial",
        lambda config, candidate, folder, *a, **k: (
            tried.append(candidate.key)
            or dict(run=str(folder), val_top1=0.9, latency_ms=1.0, latency_key="p50_ms", p50_ms=1.0, p99_ms=1.2)
        ),
    )
    return tried


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the stand-in worker asks without optimize
def test_a_trial_started_past_trials_by_a_worker_at_the_same_time_is_skipped(tmp_path, monkeypatch):
    """Two workers that each saw one trial left both started one (the check and the new trial are not one step):
    --trials 1 ran 2. The later-numbered trial is not started now."""
    from edgetransfer.search import search, study

    tried, checks = _stand_in_trials(monkeypatch), []
    data = make_folder(tmp_path / "img", per_class=6)
    config = SearchConfig(data=str(data), out=str(tmp_path / "s"), backbones=("mobilenet_v2",), sizes=(32, 64))
    search(replace(config, trials=0))
    storage = study.open_storage(f"sqlite:///{tmp_path / 's' / 'study.db'}", heartbeat=config.heartbeat)
    other = study.need_optuna().load_study(study_name="s", storage=storage)
    original, others = study._Search._why_stop, []

    def why_stop(self, s):
        said = original(self, s)
        if not checks:  # between this worker's check and its new trial, another worker starts one
            others.append(other.ask())
            others[0].set_user_attr("worker", study.this_worker())  # alive: not failed as a dead worker's
        else:
            other.tell(others[0], 90.0)  # and finishes it (the lead waits for running trials)
        checks.append(said)
        return said

    monkeypatch.setattr(study._Search, "_why_stop", why_stop)
    result = search(replace(config, backbones=None, sizes=None, resume=True, trials=1))
    assert tried == [] and checks[0] == ""
    (mine,) = [r for r in result.rows if r["number"] in result.mine]
    assert mine["state"] == "skipped"
    assert mine["note"] == "not started: the search has its 1 trial(s) (another worker started the last one)"


def test_a_trial_whose_worker_stopped_beating_says_why(tmp_path, monkeypatch):
    """A worker paused past the heartbeat's grace period: Optuna failed its trial and the trial's note was empty,
    where a killed worker's says it died (a new user's trial)."""
    from edgetransfer.search import storage
    from edgetransfer.search import study as study_module

    store = storage.open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=5)
    study = optuna.create_study(storage=store, study_name="s")
    trial = study.ask()
    trial.set_user_attr("worker", "elsewhere:123")  # another machine's: only its heartbeat tells
    monkeypatch.setattr(type(study._storage), "_get_stale_trial_ids", lambda self, study_id: [trial._trial_id])
    assert storage.fail_dead_trials(study) == [0]
    (row,) = rep.trial_rows(study.get_trials())
    assert row["state"] == "failed" and row["note"] == (
        "no cause recorded: its worker (elsewhere:123) stopped mid-trial (a heartbeat that stopped: stalled, killed "
        "or on a lost machine); marked failed"
    )
    # a died worker's trial: its candidate is tried again and it does not count (a recorded cause of its own made
    # it a failure of the candidate, in a first version of this change: a read-only review caught it)
    assert study_module._died(study.get_trials()[0])


def test_a_stalled_worker_whose_trial_was_failed_removes_its_run(tmp_path, monkeypatch, capsys):
    """A worker paused past its heartbeat: another worker marks its trial failed, and when it wakes and ends the trial
    its figures are not counted; its run folder stayed among the search's runs (a new user's trial). Here the trial
    is failed from outside while it runs (as another worker's heartbeat check does)."""
    from edgetransfer.search import search, study

    def trial(config, candidate, folder, profile, **kwargs):
        folder.mkdir(parents=True)
        (folder / "card.json").write_text("{}")
        if folder.name.startswith("0000-"):  # the first: failed while it runs (its worker's heartbeat was late)
            stored = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's' / 'study.db'}")
            (running,) = stored.get_trials(states=(optuna.trial.TrialState.RUNNING,))
            stored._storage.set_trial_state_values(running._trial_id, optuna.trial.TrialState.FAIL)
        return dict(run=str(folder), val_top1=0.9, latency_ms=1.0, latency_key="p50_ms", p50_ms=1.0, p99_ms=1.2)

    monkeypatch.setattr(study, "run_trial", trial)
    data = make_folder(tmp_path / "img", per_class=6)
    out = tmp_path / "s"
    config = SearchConfig(data=str(data), out=str(out), backbones=("mobilenet_v2",), sizes=(32,), trials=1)
    result = search(config)
    said = " ".join(capsys.readouterr().err.split())
    assert "trial 0 was marked failed by another worker" in said and "its run folder is removed" in said
    assert not (out / "trials" / "0000-mobilenet_v2-32px-static").exists()
    assert [(r["number"], r["state"]) for r in result.rows] == [(0, "failed"), (1, "done")]  # the worker goes on
    assert result.rows[0]["run"] is None and Path(result.rows[1]["run"]).is_dir()


def test_a_search_whose_every_trial_fails_stops_after_three(tmp_path, monkeypatch):
    """A cause every candidate shares (here a stubbed trial that always fails) is not met once per candidate: the
    search stops after three failed trials when none finished, and says why."""
    from edgetransfer.search import search, study
    from edgetransfer.search.trial import TrialError

    tried = []

    def trial(config, candidate, folder, profile, on_epoch=None, devices=None, trained=None):
        tried.append(candidate.key)
        raise TrialError("the images cannot be read")

    monkeypatch.setattr(study, "run_trial", trial)
    data = make_folder(tmp_path / "img", per_class=6)
    config = SearchConfig(data=str(data), out=str(tmp_path / "s"), sizes=(32, 64, 96, 128))
    result = search(config)
    assert len(tried) == 3, tried
    assert result.stopped == "3 trials failed and none finished (trial 2: the images cannot be read)"
    assert [r["state"] for r in result.rows] == ["failed"] * 3
    # the command exits 1 with one line (it exited 0, as if the search had found nothing better)
    from typer.testing import CliRunner

    from edgetransfer.cli import app

    ran = CliRunner().invoke(app, ["search", "--data", str(data), "--out", str(tmp_path / "t"), "--sizes", "32,64"])
    assert ran.exit_code == 1, ran.output
    assert (
        ran.stderr.strip().splitlines()[-1] == "error: no trial finished, 3 failed (trial 2: the images cannot be read)"
    )
    # a worker whose own trials all fail exits 1 too (it printed its table and exited 0)
    worker = CliRunner().invoke(app, ["search", "--worker", "--out", str(tmp_path / "t")])
    assert worker.exit_code == 1, worker.output
    said = worker.stderr.strip().splitlines()[-1]
    assert said.startswith("error: none of this worker's trials finished, ") and "the images cannot be read" in said
    # resumed once the cause is gone, the old failures do not stop it again
    monkeypatch.setattr(
        study,
        "run_trial",
        lambda config, candidate, folder, *a, **k: dict(
            run=str(folder), val_top1=0.9, latency_ms=1.0, latency_key="p50_ms", p50_ms=1.0, p99_ms=1.2
        ),
    )
    again = search(replace(config, resume=True, trials=5))
    assert [r["state"] for r in again.rows].count(
        "done"
    ) == 2 and again.stopped == "--trials 5 reached (every worker together)"


def test_what_stops_a_search_that_only_fails():
    """Three failures with none finished stop a search only when nothing runs and they share a cause: one error
    text, or several backbones (one backbone failing in several ways leaves the others worth trying)."""
    from edgetransfer.search.study import _Search

    state = optuna.trial.TrialState
    search = _Search(SearchConfig(data="d", out="o"), Path("o"), None)

    def study_of(*trials):
        study = optuna.create_study()
        for backbone, error, st in trials:
            attrs = {"backbone": backbone, **({"error": error} if error else {})}
            study.add_trial(
                optuna.trial.create_trial(state=st, user_attrs=attrs, value=None if st != state.COMPLETE else 1.0)
            )
        return study

    same = [("mobilenet_v2", "disk full", state.FAIL)] * 3
    assert search._failing(study_of(*same)) == "3 trials failed and none finished (trial 2: disk full)"
    assert search._failing(study_of(*same[:2])) == ""
    mixed = [("mobilenet_v2", f"error {i}", state.FAIL) for i in range(3)]
    assert search._failing(study_of(*mixed)) == ""  # one backbone, three causes
    spread = [
        ("mobilenet_v2", "a", state.FAIL),
        ("efficientnet_lite0", "b", state.FAIL),
        ("mobilenet_v2", "c", state.FAIL),
    ]
    assert search._failing(study_of(*spread)).startswith("3 trials failed")
    assert search._failing(study_of(*same, ("mobilenet_v2", None, state.COMPLETE))) == ""  # one finished
    running = study_of(*same)
    running.ask()  # a trial running (another worker's, say): it may finish
    assert search._failing(running) == ""
    search.before = {0, 1, 2}  # the failures came before this process (a --resume): they do not count
    assert search._failing(study_of(*same)) == ""
    earlier_running = study_of(*same)
    earlier_running.ask()  # trial 3: another worker's, running since before this process began
    for _ in range(3):
        earlier_running.add_trial(
            optuna.trial.create_trial(state=state.FAIL, user_attrs={"backbone": "mobilenet_v2", "error": "disk full"})
        )
    search.before = {0, 1, 2, 3}
    assert search._failing(earlier_running) == "", "a trial running since before this process may still finish"


class _Frozen:
    """What trial_rows reads of a finished Optuna trial."""

    def __init__(self, attrs):
        import datetime

        self.number, self.user_attrs, self.intermediate_values = 1, {"backbone": "mobilenet_v2", **attrs}, {}
        self.state = optuna.trial.TrialState.COMPLETE
        self.datetime_start = self.datetime_complete = datetime.datetime(2026, 12, 5)


def test_a_latency_measured_beside_another_trial_on_the_machine_is_said():
    """Two workers of one search on one machine: a trial's bench ran while the other trained, its latency read 5x
    the quiet figure, and the verdict called a trial '12.91x faster' without a word (a new user's trial). Trials
    that overlapped on one host, and bench's noise verdict, are said in their notes and in the verdict."""
    import datetime

    def frozen(number, worker, start, end, latency, val, noisy=None):
        trial = _Frozen({"worker": worker, "latency_ms": latency, "val_top1": val, "size": 96, "int8": "static"})
        trial.number, trial.user_attrs["run"] = number, f"trials/{number}"
        trial.user_attrs["val_images"], trial.user_attrs["latency_noisy"] = 100, noisy
        trial.datetime_start = datetime.datetime(2026, 12, 7, 1, start)
        trial.datetime_complete = datetime.datetime(2026, 12, 7, 1, end)
        return trial

    trials = [
        frozen(0, "vm:10", 0, 5, 0.7, 0.95),
        frozen(1, "vm:11", 3, 9, 8.7, 0.96, noisy="CV 67% (above 10%)"),  # overlaps trial 0 on vm
        frozen(2, "other:12", 4, 8, 1.0, 0.90),  # another machine at the same time
        frozen(3, "vm:10", 10, 12, 0.9, 0.80),  # on vm after both
    ]
    rows = rep.trial_rows(trials)
    assert [r["beside"] for r in rows] == [[1], [0], [], []]
    assert rows[1]["note"] == (
        "ran beside trial(s) 0 on the same machine; latency noisy (CV 67% (above 10%)): its latency may be inflated"
    )
    assert rows[2]["note"] == rows[3]["note"] == ""
    lines = rep.verdict(rows, Budget("p50_ms", 33.0))
    assert "recommended: trial 1" in lines[0] and "12.43x faster" in lines[1]
    assert lines[2].startswith("  note: trial 1 ran beside trial(s) 0 on the same machine; latency noisy")
    assert "trial 0 ran beside trial(s) 1" in lines[2] and "measure again on a quiet machine" in lines[2]
    quiet = rep.trial_rows([trials[2], trials[3]])
    assert len(rep.verdict(quiet, Budget("p50_ms", 33.0))) == 2  # nothing to doubt: the pick and its run
    # where the timings say when a trial benched, only what ran then counts: trial 0 benched in its last minute
    # (4-5), after trial 4 (0-3) had ended; trial 4 benched at 2-3 while trial 0 trained. A repeat did no work.
    timed = frozen(0, "vm:10", 0, 5, 0.7, 0.95)
    timed.user_attrs.update(finetune_s=200.0, export_s=40.0, bench_s=60.0)
    early = frozen(4, "vm:13", 0, 3, 0.8, 0.94)
    early.user_attrs.update(finetune_s=100.0, export_s=20.0, bench_s=60.0)
    repeat = frozen(5, "vm:14", 4, 4, 0.7, 0.95)
    repeat.user_attrs["same_as"] = 0
    rows = rep.trial_rows([timed, early, repeat])
    assert [r["beside"] for r in rows] == [[], [0], []]
    # a trial that copied trial 0's fine-tune records trial 0's 200 s for the cost model: counted from its start it
    # 'benched' past its end, beside the next trial of a one-process search (a new user's)
    copied = frozen(6, "vm:10", 10, 11, 0.7, 0.95)
    copied.user_attrs.update(finetune_s=200.0, export_s=30.0, bench_s=20.0, fine_tune_of=0)
    after = frozen(7, "vm:10", 11, 15, 0.8, 0.90)
    after.user_attrs.update(finetune_s=180.0, export_s=30.0, bench_s=20.0)
    assert [r["beside"] for r in rep.trial_rows([copied, after])] == [[], []]
    over = rep.verdict(rep.trial_rows(trials), Budget("p50_ms", 5.0))  # trial 1 (8.7 ms) read over the budget
    assert "recommended: trial 0" in over[0] and "trial 1 ran beside trial(s) 0" in over[1]  # it was more accurate
    none = rep.verdict(rep.trial_rows(trials), Budget("p50_ms", 0.2))
    assert none[0].startswith("no candidate meets") and "before concluding that nothing meets the budget" in none[1]
    # only trials a quiet reading could bring within it: trial 0 (0.7 ms beside trial 1, up to 5x), not trial 1
    # (8.7 ms, 43x over; a new user's search named a trial 34x over the budget)
    assert "trial 0 ran beside" in none[1] and "trial 1 " not in none[1], none[1]
    assert len(rep.verdict(rep.trial_rows(trials), Budget("p50_ms", 0.1))) == 1  # 0.7 ms: 7x over, no note
    # a trial over a budget no reading changes (model size) is not one to measure again (a new user's trial)
    sized = rep.trial_rows(trials)
    for r in sized:
        r["budget_failures"] = ["model size 2.602 MB > 1 MB"]
    assert len(rep.verdict(sized, Budget("p50_ms", 0.2))) == 1
    sized[0]["budget_failures"] = ["p99 9.1 ms > 5 ms"]  # a latency budget: a quieter reading may change it
    assert "trial 0 ran beside" in rep.verdict(sized, Budget("p50_ms", 0.2))[1]


def test_a_trial_read_beside_another_is_measured_again_where_it_could_change_the_pick(tmp_path, monkeypatch, capsys):
    """The search measures again, once no trial runs on the machine, the trials whose latency was read beside another
    trial there (or noisy) and that could be or tie the pick, the most accurate first: a trial read at 8.7 ms beside
    another (over a 5 ms budget) that reads 1.7 ms alone is recommended, and the note says what was first read. One
    far less accurate than the pick is not measured again; a trial running on the machine, or a spent time budget,
    stops it with a note. (Before, the verdict asked the user to measure again on a quiet machine.)"""
    import datetime
    import socket

    from edgetransfer.search import study as study_module
    from edgetransfer.search.study import _Search

    host, state = socket.gethostname(), optuna.trial.TrialState

    def trial(number, worker, start, end, latency, val):
        run = tmp_path / "trials" / f"{number:04d}-mobilenet_v2-96px-static"
        attrs = {"backbone": "mobilenet_v2", "size": 96, "int8": "static", "worker": f"{worker}", "run": str(run)}
        attrs.update(latency_ms=latency, latency_key="p50_ms", val_top1=val, val_images=100, within_budget=latency <= 5)
        attrs["over_budget_ms"] = latency - 5
        return optuna.trial.FrozenTrial(
            number=number, state=state.COMPLETE, value=100 * val, values=None, params={}, distributions={},
            datetime_start=datetime.datetime(2026, 12, 7, 1, start), user_attrs=attrs, system_attrs={},
            datetime_complete=datetime.datetime(2026, 12, 7, 1, end), intermediate_values={}, trial_id=number,
        )  # fmt: skip

    def study_of():
        made = optuna.create_study(direction="maximize")
        for t in (
            trial(0, f"{host}:10", 0, 5, 8.7, 0.96),  # the most accurate, read over the budget beside 1 and 3
            trial(1, f"{host}:11", 3, 9, 0.7, 0.95),  # read beside 0: the pick as first read
            trial(2, f"{host}:12", 10, 12, 0.9, 0.80),  # alone: nothing to measure again
            trial(3, f"{host}:13", 1, 2, 0.8, 0.60),  # beside 0, far below the pick: not measured again
        ):
            made.add_trial(t)
        return made

    for t in range(4):
        (tmp_path / "trials" / f"{t:04d}-mobilenet_v2-96px-static").mkdir(parents=True, exist_ok=True)
    calls = []
    alone = {0: 1.7, 1: 0.72, 3: 0.75}

    def measure(run, config, candidate, profile, devices=None):
        number = int(Path(run.path).name[:4])
        calls.append(number)
        figures = dict(latency_ms=alone[number], latency_key="p50_ms", p50_ms=alone[number], p99_ms=alone[number])
        return {**figures, "latency_noisy": None, "budget_failures": None, "measured_on": "here"}

    monkeypatch.setattr(study_module, "measure_latency", measure)
    logged = []  # what --mlflow is told: the new figures, with the first reading

    class Log:
        def remeasured(self, study, number, figures):
            logged.append((number, figures["p50_ms"], figures["first_ms"]))

    search = _Search(SearchConfig(data="d", out=str(tmp_path)), tmp_path, Log())
    search.budget, search.profile = Budget("p50_ms", 5.0), None
    first = rep.trial_rows(study_of().get_trials())
    assert rep.recommend(first, 5.0)["row"]["number"] == 1  # as first read: trial 0 is over the budget
    studied = study_of()
    search._remeasure(studied)
    assert calls == [0, 1]  # the most accurate first; trial 3 (60 %) could not be the pick or tie it
    assert logged == [(0, 1.7, 8.7), (1, 0.72, 0.7)]
    again = studied.user_attrs["remeasured"]
    assert set(again) == {"0", "1"} and again["0"]["first_ms"] == 8.7 and again["0"]["first_beside"] == [1, 3]
    rows = rep.trial_rows(studied.get_trials(), remeasured=again)
    assert [r["latency_ms"] for r in rows] == [1.7, 0.72, 0.9, 0.8]
    assert rows[0]["within_budget"] and rows[0]["beside"] == [] and rows[0]["remeasured"]["first_ms"] == 8.7
    assert rows[0]["note"] == "p50 measured again after the search (first read 8.700 ms, beside trial(s) 1, 3)"
    lines = rep.verdict(rows, Budget("p50_ms", 5.0))
    assert "recommended: trial 0" in lines[0] and not any("measure again" in line for line in lines)
    assert rows[3]["beside"] == [0] and "its latency may be inflated" in rows[3]["note"]
    search._remeasure(studied)
    assert calls == [0, 1], "a trial is measured again once"
    # a trial running on this machine (a worker's), or a time budget spent: nothing measured, said
    busy = study_of()
    running = busy.ask()
    running.set_user_attr("worker", f"{host}:99")
    capsys.readouterr()
    search._remeasure(busy)
    assert calls == [0, 1] and "remeasured" not in busy.user_attrs
    said = " ".join(capsys.readouterr().err.split())
    assert "note: trial(s) 0, 1 not measured again (trial(s) 4 run on this machine)" in said
    assert f"--resume --trials 0 --out {tmp_path}' on this machine ({host}), when it is quiet" in said
    search.deadline = time.monotonic() - 1
    search._remeasure(study_of())
    assert calls == [0, 1] and "(the time budget is spent)" in capsys.readouterr().err
    search.deadline = None
    # a trial read beside another on another machine is not measured here: said; one whose measure fails keeps
    # its first reading, and a later run (--resume --trials 0) tries it again
    elsewhere = optuna.create_study(direction="maximize")
    elsewhere.add_trial(trial(0, "camera-rig:10", 0, 5, 8.7, 0.96))
    elsewhere.add_trial(trial(1, "camera-rig:11", 3, 9, 0.7, 0.95))
    search._remeasure(elsewhere)
    assert calls == [0, 1] and "trial 0 (camera-rig), trial 1 (camera-rig): read beside another trial" in " ".join(
        capsys.readouterr().err.split()
    )
    failing = study_of()

    def broken(*args, **kwargs):
        raise RuntimeError("engine crashed")

    monkeypatch.setattr(study_module, "measure_latency", broken)
    search._remeasure(failing)
    assert failing.user_attrs["remeasured"]["1"] == {"error": "RuntimeError: engine crashed"}
    assert "0" in failing.user_attrs["remeasured"]  # each tried once, then the report (no loop on a failure)
    monkeypatch.setattr(study_module, "measure_latency", measure)
    search._remeasure(failing)
    assert calls[-2:] == [1, 0] or calls[-2:] == [0, 1]  # tried again, now measured
    assert "error" not in failing.user_attrs["remeasured"]["1"]
    # nothing meets the budget: no pick to be near, so every trial read beside another is measured again, the one
    # far less accurate too (the report shows the closest to the budget, which any of them could be)
    calls.clear()
    search.budget = Budget("p50_ms", 0.1)
    search._remeasure(study_of())
    assert calls == [0, 1, 3]


def test_a_static_trial_that_loses_accuracy_is_kept_and_its_qat_sibling_tried(tmp_path, monkeypatch):
    """A trial exports without an accuracy budget and is ranked by its int8 model's own validation top-1 (a trial
    failed for its drop was measured and thrown away: search run 9); a static one that loses more than export's
    budget against its fp32 model is kept with a note, and its QAT sibling is tried next. The more accurate int8
    model is recommended, whichever method made it."""
    from edgetransfer.search import search, study

    tried, reused = [], []

    def trial(config, candidate, folder, profile, on_epoch=None, devices=None, trained=None):
        tried.append(candidate.key)
        reused.append(trained)
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"weights")  # what _fine_tuned looks for: a fine-tuned run
        (folder / "card.json").write_text("{}")
        static = candidate.int8 == "static"
        return dict(run=str(folder), val_top1=0.85 if static else 0.89, latency_ms=1.0, latency_key="p50_ms",
                    p50_ms=1.0, p99_ms=1.2, int8_drop_points=4.0 if static else 0.0,
                    finetune_s=0.1 if trained else 20.0)  # fmt: skip

    monkeypatch.setattr(study, "run_trial", trial)
    data = make_folder(tmp_path / "img", per_class=6)
    config = SearchConfig(data=str(data), out=str(tmp_path / "s"), backbones=("mobilenet_v2",), sizes=(96, 128))
    result = search(replace(config, int8_methods=("static", "qat"), trials=2))
    assert tried == ["mobilenet_v2/96/static", "mobilenet_v2/96/qat"]
    first = result.rows[0]
    assert first["state"] == "done" and first["val_top1"] == 0.85
    assert first["note"] == "int8 loses 4.00 points vs fp32 (over export's 1-point budget)"
    (pick,) = [r for r in result.rows if r["number"] == result.document["recommended"]]
    assert pick["int8"] == "qat" and pick["note"] == "trial 0's fine-tune, exported again"
    # the sibling is export's QAT on the static trial's fine-tuned model, not the same fine-tune run again
    assert reused == [None, Path(first["run"])]
    url = f"sqlite:///{tmp_path / 's' / 'study.db'}"  # the study, as a worker would read it
    (summary,) = optuna.get_all_study_summaries(url)
    qat_trial = optuna.load_study(study_name=summary.study_name, storage=url).trials[1]
    assert qat_trial.user_attrs["fine_tune_of"] == 0 and qat_trial.user_attrs["finetune_s"] == 20.0  # the cost model
    lossy = [dict(r, val_top1=0.95) if r["number"] == 0 else r for r in result.rows]  # the most accurate now
    assert rep.verdict(lossy, Budget("p50_ms", 33.0))[1] == (
        "  note: int8 loses 4.00 points vs fp32 (over export's 1-point budget); it is still the most accurate "
        f"trial within the budget (its QAT sibling, trial {pick['number']}, scored 89.00%)"
    )
    assert "(its QAT sibling was not tried)" in rep.verdict(lossy[:1], Budget("p50_ms", 33.0))[1]
    # a QAT trial on a reused fine-tune that lost more than the budget: both said, and no "sibling" of itself
    attrs = {"fine_tune_of": 0, "int8_note": "int8 loses 6.25 points vs fp32 (over export's 1-point budget)"}
    assert rep.trial_rows([_Frozen(attrs)], stopped=True)[0]["note"] == (
        "trial 0's fine-tune, exported again; int8 loses 6.25 points vs fp32 (over export's 1-point budget)"
    )
    qat = [dict(pick, int8_note=attrs["int8_note"], val_top1=0.99)]
    line = rep.verdict(qat, Budget("p50_ms", 33.0))[1]
    assert line.endswith("it is still the most accurate trial within the budget") and "sibling" not in line


def test_a_failed_trial_says_why_in_whole_words_without_export_options():
    """A trial whose int8 could not hold export's budget said '...; raise --max-drop, try --calib-method entropy or
    --int8-method qat, ' (cut mid-advice), options search does not have; the table cut it mid-word ('(trie')."""
    from edgetransfer.quantize import over_budget
    from edgetransfer.search.study import trial_note
    from edgetransfer.search.trial import TrialError

    tried = "tried " + ", ".join(f"{n} in float: drop {n / 3:.2f}" for n in range(40))
    note = trial_note(over_budget("ONNX int8", 3.12, 1.0, tried))
    assert note.startswith("ONNX int8 cannot hold the 1.0-point budget: it loses 3.12 points of validation top-1")
    assert "--max-drop" not in note and "--calib-method" not in note
    assert len(note) <= 400 and note.endswith(" ...") and note[:-4] in str(over_budget("ONNX int8", 3.12, 1.0, tried))
    assert trial_note(TrialError("a\nb")) == "a"


def test_a_trial_is_not_pruned_after_its_last_epoch():
    """Pruning after the last epoch saves no training: such a trial (88.89 %, the recommended one's score) was pruned
    where the tie rule would have called it equal."""
    from edgetransfer.search.study import _Search

    search = _Search.__new__(_Search)
    search.config = SearchConfig(data="d", out="o", epochs=2)
    assert search._may_prune(1) and not search._may_prune(2)
    search.config = SearchConfig(data="d", out="o")  # finetune's default epochs
    from edgetransfer.finetune_config import FinetuneConfig

    assert search._may_prune(FinetuneConfig.epochs - 1) and not search._may_prune(FinetuneConfig.epochs)


def test_a_queued_trial_that_never_ran_is_named_and_an_interrupted_one_retried_says_so():
    """A lead's QAT sibling queued while a worker used up --trials stayed in the finished report as '(not sampled
    yet) waiting'; an interrupted trial kept '--resume tries it again' after it had been."""
    import optuna

    from edgetransfer.search import report as rep

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    first = study.ask({"backbone": optuna.distributions.CategoricalDistribution(["mobilenet_v2"])})
    for key, value in (("backbone", "mobilenet_v2"), ("size", 64), ("int8", "static")):
        first.set_user_attr(key, value)
    first.set_user_attr("interrupted", "interrupted (Ctrl-C); --resume tries it again")
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    again = study.ask()
    for key, value in (("backbone", "mobilenet_v2"), ("size", 64), ("int8", "static")):
        again.set_user_attr(key, value)
    study.tell(again, 90.0)
    study.enqueue_trial({"backbone": "mobilenet_v2", "size_mobilenet_v2": 96, "int8": "qat"})
    rows = rep.trial_rows(study.get_trials(deepcopy=False), stopped=True)
    assert rows[0]["note"] == "interrupted (Ctrl-C); tried again as trial 1"
    queued = rows[2]
    assert (queued["state"], rep._name(queued)) == ("queued", "mobilenet_v2 96px qat")
    assert queued["note"] == (
        "not started: the search stopped before it; --resume runs it first (with a higher --trials if the search "
        "stopped at its --trials)"
    )
    for why, need in (  # a search stopped by its time budget was told to raise --trials (a new user's finding)
        (
            "time budget (no untried candidate fits the 27 s left)",
            " (give a --time-budget again: it is not carried over)",
        ),
        ("--trials 3 reached (every worker together)", " (with a higher --trials)"),
    ):
        said = rep.trial_rows(study.get_trials(deepcopy=False), stopped=why)[2]["note"]
        assert said == f"not started: the search stopped before it; --resume runs it first{need}"
    live = rep.trial_rows(study.get_trials(deepcopy=False))  # while the search runs: queued, no such note
    assert live[2]["state"] == "queued" and live[2]["note"] == ""
    assert (
        rep.document(rows, budget=Budget("p50_ms", 33.0), space={}, profile="camera", data="d")["counts"]["queued"] == 1
    )


def test_a_static_trial_keeps_every_layer_int8_without_exports_layer_ranking(monkeypatch):
    """Export's accuracy-aware step (one re-quantization per layer) took 66 s against a 6 s fine-tune in search run 8
    and ended that search after one trial: a trial exports without it (every layer int8) and without export's
    accuracy budget (the search ranks by the int8 model's own accuracy); --int8-methods auto is export's own auto."""
    import edgetransfer.export as export_module
    import edgetransfer.finetune as finetune_module
    from edgetransfer.search.trial import Candidate, run_trial

    seen = {}

    class Stop(Exception):
        pass

    def fake_export(run, config, by_search=False):
        seen["int8"], seen["by_search"] = config.int8, by_search
        raise Stop

    monkeypatch.setattr(finetune_module, "finetune", lambda config, on_epoch=None, data_notes=True: "run")
    monkeypatch.setattr(export_module, "export", fake_export)
    config = SearchConfig(data="d", out="o", int8_weights="7bit")
    with pytest.raises(Stop):
        run_trial(config, Candidate("mobilenet_v2", 96, "static"), Path("o/t"), profile=None)
    assert seen["int8"].mode == "static" and seen["int8"].weights == "7bit"
    assert seen["int8"].accuracy_aware is False
    assert seen["int8"].max_drop == 100.0  # ranked by its own int8 accuracy, not failed for its drop
    assert seen["by_search"]  # its own trial: the note to a user re-exporting one is not for it
    with pytest.raises(Stop):
        run_trial(config, Candidate("mobilenet_v2", 96, "auto"), Path("o/t"), profile=None)
    assert seen["int8"].mode == "auto" and seen["int8"].accuracy_aware and seen["int8"].max_drop == 1.0


def test_skip_bad_splits_a_folder_with_bad_files_and_every_trial_trains_on_the_rest(tmp_path, monkeypatch):
    """The search's bad-file error said 'pass --skip-bad', an option search did not have ('No such option')."""
    import edgetransfer.finetune as finetune_module
    from edgetransfer.errors import DataError
    from edgetransfer.search.study import _check_new
    from edgetransfer.search.trial import Candidate, run_trial

    data = make_folder(tmp_path / "img", per_class=8)
    (data / "class0" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="pass --skip-bad"):
        _check_new(SearchConfig(data=str(data), out=str(tmp_path / "s")), tmp_path / "s")
    config = SearchConfig(data=str(data), out=str(tmp_path / "s"), skip_bad=True)
    _, splits = _check_new(config, tmp_path / "s")
    assert splits.extra["skipped"] == ("class0/broken.png",)
    assert config.recorded()["skip_bad"] is True  # every worker and a resumed search train as the lead did
    seen = []

    class Stop(Exception):
        pass

    def fake_finetune(finetune_config, on_epoch=None, data_notes=True):
        seen.append(finetune_config)
        raise Stop

    monkeypatch.setattr(finetune_module, "finetune", fake_finetune)
    with pytest.raises(Stop):
        run_trial(config, Candidate("mobilenet_v2", 96, "static"), tmp_path / "t", profile=None)
    assert seen[0].skip_bad is True


def test_resume_or_a_worker_with_other_images_is_refused(tmp_path):
    """search --resume (or --worker) --data OTHER trained the next trials on other images, ranked them with the
    search's and wrote the other folder into search.json. The same images under another path are fine."""
    import shutil

    data = make_folder(tmp_path / "img", per_class=6)
    out = tmp_path / "s"
    started = cli("--data", str(data), "--out", str(out), "--trials", "0", *FAST)
    assert started.returncode == 0, started.stderr
    other = make_folder(tmp_path / "other", per_class=6, seed=5)
    for how in ("--resume", "--worker"):
        refused = cli(how, "--out", str(out), "--data", str(other), "--trials", "0")
        assert refused.returncode == 2, refused.stderr
        assert f"--data {other} holds other images than this search's" in refused.stderr.strip().splitlines()[-1]
    moved = shutil.copytree(data, tmp_path / "moved")  # the same images elsewhere (another machine)
    same = cli("--resume", "--out", str(out), "--data", str(moved), "--trials", "0")
    assert same.returncode == 0 and "holds other images" not in same.stderr, same.stderr
    resumed = cli("--resume", "--out", str(out), "--trials", "1", "--sizes", "32", "--epochs", "1")
    said = " ".join(resumed.stderr.split())
    assert "--time-budget is not carried over" not in said  # this search never had one
    again = cli("--resume", "--out", str(out))  # its one trial done: nothing runs, and that is said
    assert again.returncode in (0, 1) and "the search has its 1 trial(s) already: none ran" in " ".join(
        again.stderr.split()
    ), again.stderr
    # a profile's backends/variants: search measures each trial with --backend, said (they were silently unused)
    profile = tmp_path / "mine.toml"
    profile.write_text(
        'name = "mine"\n[settings]\nbackends = ["openvino-cpu"]\nvariants = ["fp32"]\n[budget]\np50_ms = 50\n'
    )
    noted = cli("--data", str(data), "--out", str(tmp_path / "s2"), "--trials", "0", "--profile", str(profile), *FAST)
    assert noted.returncode == 0, noted.stderr
    assert "the profile's backends and variants setting not used" in " ".join(noted.stderr.split())


def test_labels_of_points_close_together_are_lifted_apart():
    """search.html's plot wrote the labels of trials with equal scores and similar latency on top of each other."""
    assert rep.label_lifts([]) == []
    assert rep.label_lifts([(1.0, 100.0), (1.01, 100.0), (1.02, 100.0), (5.0, 90.0)]) == [0, 1, 2, 0]
    assert rep.label_lifts([(1.0, 100.0), (5.0, 100.0)]) == [0, 0]  # far apart: none lifted
    assert rep.label_lifts([(1.0, 100.0), (1.0, 100.0)]) == [0, 1]  # the same point (one range is 0)
    png = rep._plot_png([_row(0, 1.0, 0.2, val_images=30), _row(1, 1.0, 0.21, val_images=30),
                         _row(2, 0.9, 30.0, val_images=30)], Budget("p50_ms", 33.0))  # fmt: skip
    assert len(png) > 1000  # a log-scale plot was drawn


def test_the_plot_marks_the_pick_and_draws_a_front_only_of_two_or_more_points():
    """search.html's plot did not show which trial was recommended, and listed "Pareto" in its legend for a front of
    one point (nothing drawn)."""
    import matplotlib.pyplot as plt

    one = [_row(0, 0.9, 1.0), _row(1, 0.8, 2.0)]  # trial 0 is better and faster: a front of one
    fig = rep._figure(one, Budget("p50_ms", 33.0), recommended=0)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    plt.close(fig)
    assert "recommended (#0)" in labels and "Pareto" not in labels
    two = [_row(0, 0.9, 2.0), _row(1, 0.8, 1.0)]
    fig = rep._figure(two, Budget("p50_ms", 33.0), recommended=None)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    plt.close(fig)
    assert "Pareto" in labels and not any(label.startswith("recommended") for label in labels)
    # a budget far past every trial is named, not drawn to scale (it squeezed the points into the left and piled
    # up their labels); the axis stops near 100 % (it ran to 104 %; a new user's search)
    fig = rep._figure([_row(0, 1.0, 2.0), _row(1, 0.2, 3.5)], Budget("p50_ms", 33.0), recommended=0)
    ax = fig.axes[0]  # (100 % and 20 %: matplotlib's margin alone would take the axis to 104 %)
    labels, right, top = ax.get_legend_handles_labels()[1], ax.get_xlim()[1], ax.get_ylim()[1]
    plt.close(fig)
    assert "budget 33 ms (off the axis, right)" in labels and right < 10 and top <= 101, (labels, right, top)
    fig = rep._figure([_row(0, 1.0, 20.0), _row(1, 0.95, 25.0)], Budget("p50_ms", 33.0), recommended=0)
    labels, right = fig.axes[0].get_legend_handles_labels()[1], fig.axes[0].get_xlim()[1]
    plt.close(fig)
    assert "budget 33 ms" in labels and right > 33  # near the trials: drawn where it is


def test_a_copied_fine_tune_is_exported_as_a_run_of_its_own(trained_run, tmp_path, capsys):
    """A QAT (or other int8) candidate of a finished trial's backbone and size reuses that trial's fine-tune: the
    copy keeps the checkpoint, card and splits and drops what the export and bench made, so the export in it makes
    the only models there and says nothing of an earlier export."""
    import shutil

    from edgetransfer.export import ExportConfig, export
    from edgetransfer.quantize import Int8Config
    from edgetransfer.search.trial import copy_fine_tuned

    source = Path(shutil.copytree(trained_run.path, tmp_path / "source"))
    (source / "bench.json").write_text("{}")  # a bench of the source's models: not copied
    run = copy_fine_tuned(source, tmp_path / "copy")
    names = {p.name for p in run.path.iterdir()}
    assert {"model.safetensors", "card.json", "splits.json"} <= names
    assert not names & {"model.onnx", "model.int8.onnx", "openvino", "bench.json"}
    card = run.load_card()
    assert not any(k.startswith(("onnx_", "openvino_")) for k in card.metrics) and "torch" in card.metrics
    assert card.export == {} and "export" not in card.complete and card.complete.get("finetune")
    # where the copy is and where it came from (the card said the source's folder as its own --out)
    assert card.training["config"]["out"] == str(tmp_path / "copy") and card.training["copied_from"] == str(source)
    from edgetransfer.rundir import RunDir

    source_card = RunDir(source).load_card()
    assert {k: v for k, v in card.training["config"].items() if k != "out"} == {
        k: v for k, v in source_card.training["config"].items() if k != "out"
    }  # the recipe as it trained
    capsys.readouterr()
    export(run, ExportConfig(openvino=False, int8=Int8Config(mode="static", calibration_size=16, max_drop=100.0)))
    assert "previous export" not in capsys.readouterr().err
    again = run.load_card()
    assert again.metrics["onnx_int8"]["val_top1"] is not None and (run.path / "model.int8.onnx").is_file()
    assert (source / "model.onnx").is_file() and (source / "bench.json").is_file()  # the source is untouched


def test_the_int8_drop_is_counted_as_exports_budget_counts_it():
    """One image of 100 is 1.00 point, within export's 1-point budget: the search computed 1.0000000000000009 and
    flagged it as over (search run 10, fifty-f's 64 px trial), queueing a QAT sibling for nothing."""
    from edgetransfer.search.trial import Candidate, int8_drop

    config = SearchConfig(data="d", out="o")
    static = Candidate("mobilenet_v2", 64, "static")
    metrics = {"onnx_fp32": {"val_top1": 0.85}, "onnx_int8": {"val_top1": 0.84}}
    assert 100 * (0.85 - 0.84) != 1.0 and int8_drop(metrics, config, static) == 1.0
    assert int8_drop(metrics, config, Candidate("mobilenet_v2", 64, "none")) is None  # fp32: no int8 to lose
    assert int8_drop({"onnx_int8": {"val_top1": 0.84}}, config, static) is None  # fp32 not measured
    ov = SearchConfig(data="d", out="o", backend="openvino-cpu")
    assert int8_drop({"openvino_fp32": {"val_top1": 0.9}, "openvino_int8": {"val_top1": 0.8}}, ov, static) == 10.0


def test_resume_in_a_folder_without_a_search_writes_nothing_there(tmp_path):
    """A new user's finding: '--resume --out IMAGES' (a wrong folder) said 'no search named ...' and left a 114 KB
    study.db among the images."""
    from edgetransfer.errors import UsageError
    from edgetransfer.search import search

    images = make_folder(tmp_path / "img", per_class=6)
    before = sorted(p.relative_to(images) for p in images.rglob("*"))
    with pytest.raises(UsageError, match=r"--resume: no search to resume in .*img \(no study.db\)"):
        search(SearchConfig(data="", out=str(images), resume=True))
    assert sorted(p.relative_to(images) for p in images.rglob("*")) == before
    # a mistyped --storage SQLite file: opening it made an empty 114 KB database there (a new user's trial)
    typo = tmp_path / "nonexist.db"
    for how in ({"worker": True}, {"resume": True}):
        option = "--worker" if "worker" in how else "--resume"
        with pytest.raises(UsageError, match=rf"^{option}: no search database at {typo} \(--storage sqlite:///"):
            search(SearchConfig(data="", out=str(tmp_path / "o"), storage=f"sqlite:///{typo}", **how))
        assert not typo.exists() and not (tmp_path / "o").exists()
        with pytest.raises(UsageError, match="--storage takes sqlite:///PATH"):  # no URL: said, not a traceback
            search(SearchConfig(data="", out=str(tmp_path / "o"), storage="sqlite:study.db", **how))


def test_a_size_above_every_backbones_range_is_said(capsys):
    """--sizes 96,1024 searched 96 and said nothing of 1024 (a new user's finding); 1024 alone is an error."""
    from edgetransfer.errors import UsageError

    config = SearchConfig(data="d", out="o", backbones=("mobilenet_v2",), sizes=(96, 1024), int8_methods=("static",))
    assert build_space(config).sizes == {"mobilenet_v2": (96,)}
    assert "note: --sizes 1024: above every backbone's range (mobilenet_v2 at 224 px); not searched" in (
        capsys.readouterr().err
    )
    build_space(replace(config, sizes=(96,)))
    assert "not searched" not in capsys.readouterr().err
    with pytest.raises(UsageError, match="none fits mobilenet_v2"):
        build_space(replace(config, sizes=(1024,)))


def test_a_size_list_with_an_empty_item_is_refused():
    """--sizes 64,,96 was taken as 64,96: a size typed out of the list went unsaid."""
    from edgetransfer.cli.search import _ints
    from edgetransfer.errors import UsageError

    assert _ints("64, 96", "--sizes") == (64, 96) and _ints(None, "--sizes") is None
    for text in ("64,,96", "64,", ",96"):
        with pytest.raises(UsageError, match="expected whole numbers like 96,128,160"):
            _ints(text, "--sizes")


def test_trials_measured_before_the_other_budgets_were_checked_are_checked_from_their_bench(tmp_path):
    """A search resumed across versions: its earlier trials recorded no budget_failures and counted as within the
    profile's size budget unchecked; they are checked from their run's bench.json, or counted over."""
    budget = Budget("p50_ms", 33.0, (("max_model_mb", 1.0),))
    big, gone, fresh = (tmp_path / name for name in ("big", "gone", "fresh"))
    big.mkdir()
    (big / "bench.json").write_text(
        json.dumps({"results": [{"backend": "ort-cpu", "variant": "int8", "model_bytes": 2.6e6}]})
    )
    rows = [
        dict(_row(0, 0.99, 0.5, run=str(big)), budget_checked=False, within_budget=True),
        dict(_row(1, 0.98, 0.5, run=str(gone)), budget_checked=False, within_budget=True),
        dict(_row(2, 0.90, 0.7, run=str(fresh)), budget_checked=True, within_budget=True, budget_failures=None),
    ]
    rep.check_old_trials(rows, budget)
    assert rows[0]["budget_failures"] == ["model size 2.6 MB > 1 MB"] and rows[0]["within_budget"] is False
    assert rows[1]["budget_failures"][0].startswith("not checked") and rows[1]["within_budget"] is False
    assert rep.recommend(rows, 33.0)["row"]["number"] == 2  # the only one known to be within
    assert "over the profile's model size 2.6 MB > 1 MB" in rows[0]["note"]
    moved = tmp_path / "s" / "trials" / "big"  # the run recorded relative to another folder: found under OUT/trials
    moved.parent.mkdir(parents=True)
    big.rename(moved)
    again = [dict(_row(0, 0.99, 0.5, run="elsewhere/trials/big"), budget_checked=False, within_budget=True)]
    rep.check_old_trials(again, budget, tmp_path / "s")
    assert again[0]["budget_failures"] == ["model size 2.6 MB > 1 MB"]


def test_a_trial_over_a_size_budget_is_infeasible_to_the_sampler():
    from edgetransfer.search.study import _violation

    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, value=90.0, user_attrs={"over_budget_ms": -30.0}
    )
    assert _violation(trial) == [-30.0]  # within the latency budget, nothing else broken: feasible
    trial.user_attrs["budget_failures"] = ["model size 2.602 MB > 1 MB"]
    assert _violation(trial) == [1.0]


def test_a_trial_over_the_latency_budget_says_so_in_its_note():
    """docs/search.md: 'A trial over any of them is "over" (its note says which)'; a trial over the latency budget
    alone had an empty note, and one over both named only the model size (a new user's finding)."""
    import optuna

    study = optuna.create_study(direction="maximize")
    for over, failures in ((103.468, None), (1.664, ["model size 4.684 MB > 3 MB"])):
        trial = study.ask()
        attrs = dict(backbone="mobilenet_v2", size=96, int8="static", val_top1=0.9, latency_key="p99_ms")
        attrs |= dict(latency_ms=50.0 + over, over_budget_ms=over, within_budget=False, budget_failures=failures)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        study.tell(trial, 90.0)
    rows = rep.trial_rows(study.get_trials())
    assert rows[0]["note"] == "over the profile's p99 153.468 ms > 50 ms"
    assert rows[1]["note"] == "over the profile's p99 51.664 ms > 50 ms; model size 4.684 MB > 3 MB"


def test_a_profile_without_a_latency_budget_shows_the_throughput_it_checks():
    """The server profile (no latency budget, min_throughput 500) recommended 'p50 62.248 ms (the profile sets no
    latency budget)': batch 32's p50, unsaid, and not the throughput that decided (510 img/s: a new user's finding)."""
    budget = Budget("p50_ms", math.inf, (("min_throughput", 500.0),))
    rows = [{**_row(0, 0.95, 62.248), "throughput_ips": 510.1}]
    line = rep.verdict(rows, budget)[0]
    assert "p50 62.248 ms (its worst over the profile's batch sizes; the profile sets no latency budget)" in line
    assert "(throughput 510 img/s >= 500, +2%)" in line


def test_a_search_made_with_trials_0_keeps_its_initial_design_for_the_workers(tmp_path, monkeypatch):
    """--trials 0 makes a search that workers (or --resume --trials N) run: its first trials, the default candidate
    then its smallest size, were cut to none, and the sampler chose from the start (a new user's trial: the
    default ran last, after repeats)."""
    from edgetransfer.search import search, study

    tried = _stand_in_trials(monkeypatch)
    data = make_folder(tmp_path / "img", per_class=6)
    config = SearchConfig(data=str(data), out=str(tmp_path / "s"), backbones=("mobilenet_v2",))
    assert search(replace(config, trials=0)).stopped == "--trials 0: no trial runs (the search made)"
    assert tried == []
    storage = study.open_storage(f"sqlite:///{tmp_path / 's' / 'study.db'}", heartbeat=config.heartbeat)
    first = study.need_optuna().load_study(study_name="s", storage=storage).user_attrs["first"]
    assert len(first) == 2 and first[0].startswith("mobilenet_v2/"), first
    search(replace(config, backbones=None, resume=True, trials=2))
    assert tried == first
    # (it read "stopped: --trials 0 reached (every worker together)" over the table: a new user's trial)
    again = search(replace(config, backbones=None, resume=True, trials=0))
    assert again.stopped == "--trials 0: no trial runs (the trials measured again where needed, and reported)"


def test_a_setting_given_to_resume_that_the_search_left_to_the_default_says_so(tmp_path, capsys):
    """'--resume --epochs 1' on a search started without --epochs said '(epochs None)' (a new user's trial)."""
    from edgetransfer.search import search

    data = make_folder(tmp_path / "img", per_class=6)
    config = SearchConfig(data=str(data), out=str(tmp_path / "s"), backbones=("mobilenet_v2",), trials=0)
    search(config)
    capsys.readouterr()
    search(replace(config, backbones=None, resume=True, epochs=1))
    said = " ".join(capsys.readouterr().err.split())
    assert "note: --epochs 1 not used: this search keeps the settings it started with (epochs the default)" in said


def test_a_worker_holds_the_search_s_heartbeat_images_and_profile(tmp_path, monkeypatch, capsys):
    """A reviewer's findings: a worker with its own --heartbeat failed (or had failed) live trials of the others
    after 6 of its own; a worker without the search's images failed every candidate in turn, each in a second, as
    the candidate's own failure; a profile given by a relative path was not found from another folder, and an edit
    of the file between the lead and a worker changed the budget."""
    from edgetransfer.search import search, study

    tried = _stand_in_trials(monkeypatch)
    data = make_folder(tmp_path / "img", per_class=6)
    lead_dir = tmp_path / "lead"
    lead_dir.mkdir()
    (lead_dir / "cam.toml").write_text('name = "cam"\n[budget]\np99_ms = 40.0\n')
    monkeypatch.chdir(lead_dir)
    config = SearchConfig(data=str(data), out=str(tmp_path / "s"), backbones=("mobilenet_v2",), profile="cam.toml")
    search(replace(config, trials=0, heartbeat=5))
    (lead_dir / "cam.toml").write_text('name = "cam"\n[budget]\np99_ms = 1.0\n')  # edited after the search began
    monkeypatch.chdir(tmp_path)  # another folder: cam.toml is not here
    loaded = []
    original = study._Search._load

    def load(self, storage):
        made = original(self, storage)
        loaded.append((storage.heartbeat_interval, storage.grace_period))
        return made

    monkeypatch.setattr(study._Search, "_load", load)
    worker = replace(config, data="", backbones=None, profile="camera", worker=True, trials=1, heartbeat=120)
    result = search(worker)
    assert loaded == [(5, 30)] and len(tried) == 1
    assert result.budget.limit_ms == 40.0  # the profile as recorded at the start, not the edited file
    said = " ".join(capsys.readouterr().err.split())
    assert "--heartbeat 120 not used" in said
    data.rename(tmp_path / "moved")  # another machine: the lead's path to the images is not there
    with pytest.raises(UsageError, match=r"^--worker: this search's images \(/.*/img\) are not on this machine; pass"):
        search(worker)
    data = tmp_path / "moved"
    worker = replace(worker, data=str(data))
    monkeypatch.setattr(study._Search, "_check_same_data", lambda self, s, r: None)
    from edgetransfer import backbones

    monkeypatch.setattr(backbones, "weights_status", lambda backbone: "not here (pip install x)")
    with pytest.raises(UsageError, match=r"candidates include mobilenet_v2, whose pretrained weights are not here"):
        search(worker)
    assert len(tried) == 1  # no trial taken by either


def test_a_new_search_with_storage_refuses_an_out_with_an_earlier_search_s_trials(tmp_path):
    """Its trials would go into the earlier search's folders (trials/0000-...), each refused there and recorded as
    the candidate's failure (a reviewer's finding)."""
    from edgetransfer.search import search

    data = make_folder(tmp_path / "img", per_class=6)
    (tmp_path / "s" / "trials" / "0000-mobilenet_v2-96-static").mkdir(parents=True)
    url = f"sqlite:///{tmp_path / 'other.db'}"
    config = SearchConfig(data=str(data), out=str(tmp_path / "s"), backbones=("mobilenet_v2",), storage=url)
    with pytest.raises(UsageError, match=r"s holds an earlier search's trials; choose another --out"):
        search(replace(config, trials=0))


def test_an_mlflow_store_inside_out_does_not_refuse_the_new_search(tmp_path, monkeypatch):
    """--mlflow OUT/mlflow: its local store was made before the check that --out is new or empty, which then
    refused the search ('holds files and no search'), and every try after it (a reviewer's finding)."""
    from edgetransfer.search import search, tracking

    tried = _stand_in_trials(monkeypatch)

    def logger(uri, experiment):  # as MLflow's local store does: its folder made when the logger is
        (tmp_path / "s" / "mlflow").mkdir(parents=True)
        return tracking.Logger(lambda study, trial: None, lambda study, number, figures: None)

    monkeypatch.setattr(tracking, "mlflow_logger", logger)
    data = make_folder(tmp_path / "img", per_class=6)
    config = SearchConfig(data=str(data), out=str(tmp_path / "s"), backbones=("mobilenet_v2",), sizes=(32,))
    search(replace(config, trials=1, mlflow=str(tmp_path / "s" / "mlflow")))
    assert len(tried) == 1 and (tmp_path / "s" / "study.db").is_file()


def test_a_search_stopped_while_it_is_made_leaves_an_empty_out_empty(tmp_path, monkeypatch):
    """A Ctrl-C while the study was being made, in an --out given empty, kept a study.db without its candidates:
    the next search was refused there ('holds a search already') and --resume was a KeyError traceback (a
    reviewer's finding)."""
    from edgetransfer.search import search, study

    data = make_folder(tmp_path / "img", per_class=6)
    (tmp_path / "s").mkdir()
    config = SearchConfig(data=str(data), out=str(tmp_path / "s"), backbones=("mobilenet_v2",), trials=0)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(study, "_enqueue", interrupted)
    with pytest.raises(KeyboardInterrupt):
        search(config)
    assert list((tmp_path / "s").iterdir()) == []
    storage = study.open_storage(f"sqlite:///{tmp_path / 's' / 'study.db'}", heartbeat=10)
    study.need_optuna().create_study(storage=storage, study_name="s")  # as an older edgetransfer left it
    with pytest.raises(UsageError, match=r"was stopped while it was being made \(it records no candidates\)"):
        search(replace(config, backbones=None, resume=True))


def test_a_worker_given_the_built_in_digits_is_not_refused(tmp_path, monkeypatch):
    """The images check before a worker's first trial read --data digits as a path (no such folder here): the
    built-in name is resolved as finetune resolves it."""
    from pathlib import Path

    from edgetransfer import builtin_data
    from edgetransfer.search import study
    from edgetransfer.search.config import Space

    folder = make_folder(tmp_path / "img", per_class=2)
    monkeypatch.setattr(builtin_data, "resolve_data", lambda data, seed=0: str(folder) if data == "digits" else data)
    monkeypatch.chdir(tmp_path)
    searching = study._Search(SearchConfig(data="digits", out="s", worker=True), Path("s"), None)
    searching.space = Space({"mobilenet_v2": (96,)}, ("static",))
    searching._check_here()  # no error
    searching.config = replace(searching.config, data="elsewhere")
    with pytest.raises(UsageError, match=r"^--worker: this search's images \(elsewhere\) are not on this machine"):
        searching._check_here()


def test_a_dead_workers_lock_goes_when_it_died_before_its_run_folder(tmp_path):
    """A worker killed after taking its trial's run lock but before writing the folder left the lock file among
    the search's runs (`.0002-mobilenet_v2-32px-dynamic.lock`, seen in the two-worker test)."""
    from edgetransfer.rundir import RunDir
    from edgetransfer.search.storage import _remove_half_made

    run = tmp_path / "trials" / "0002-mobilenet_v2-32px-dynamic"
    lock = RunDir(run)._lock_path()
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    assert _remove_half_made(str(run)) and not lock.exists() and not run.exists()
    assert not _remove_half_made("trials/0003-elsewhere")  # relative, from another working folder: left alone


def test_a_search_says_the_data_notes_at_its_first_trial_only(tmp_path, monkeypatch):
    """Every trial's fine-tune said the data folder's notes again (bad files skipped, near copies...) between the
    progress lines: the first trial of a process says them, the next of the same folder do not."""
    from edgetransfer import finetune as finetune_module
    from edgetransfer.search import trial
    from edgetransfer.search.trial import Candidate, run_trial

    notes = []

    def fine_tune(config, *, on_epoch=None, data_notes=True):
        notes.append((Path(config.data).name, data_notes))
        if not Path(config.data).name.startswith("early"):  # a trial that fails before reading the folder: none
            on_epoch(1, {"val_top1": 0.5})  # said, and the next trial says them
        raise RuntimeError("stop here")

    monkeypatch.setattr(finetune_module, "finetune", fine_tune)
    monkeypatch.setattr(trial, "_DATA_SAID", set())
    for data in ("early", "early", "a", "a", "b", "a"):
        config = SearchConfig(data=str(tmp_path / data), out=str(tmp_path / "s"))
        with pytest.raises(RuntimeError, match="stop here"):
            run_trial(config, Candidate("mobilenet_v2", 32, "static"), tmp_path / "s" / "t", None, on_epoch=print)
    assert notes == [("early", True), ("early", True), ("a", True), ("a", False), ("b", True), ("a", False)]


def test_a_moved_search_folder_reports_its_runs_where_they_are(tmp_path):
    """The study records each trial's run by its absolute path where the search was made: a search folder moved
    (as the refusal of a renamed one advises) reported its pick and every run at the old place, gone, and a copy's
    report pointed into the original (a new user's trial). A run under this --out's trials/ is named there; a trial of
    a worker on another machine (its own --out there) keeps its recorded path."""
    optuna = pytest.importorskip("optuna")
    name = "0000-mobilenet_v2-64px-static"
    moved = tmp_path / "moved" / "s1"
    (moved / "trials" / name).mkdir(parents=True)
    made_at = str(tmp_path / "s1" / "trials" / name)  # gone
    elsewhere = "/on/another/machine/s1/trials/0001-mobilenet_v2-96px-static"
    trials = [
        optuna.trial.create_trial(value=0.9, user_attrs={"run": run, "backbone": "mobilenet_v2", "size": 64})
        for run in (made_at, elsewhere)
    ]
    rows = rep.trial_rows(trials, out=moved)
    assert [r["run"] for r in rows] == [str((moved / "trials" / name).resolve()), elsewhere]
    assert rep.trial_rows(trials)[0]["run"] == made_at  # (no search folder given: as recorded)


def test_a_switch_not_used_on_resume_is_said_as_typed():
    """--resume --skip-bad said 'note: --skip-bad True not used' (a new user's trial)."""
    from edgetransfer.search.study import _flag

    assert [_flag("skip_bad", True), _flag("skip_bad", False), _flag("epochs", 3)] == [
        "--skip-bad",
        "--no-skip-bad",
        "--epochs 3",
    ]


def test_a_storage_password_is_never_printed():
    """The password goes from every storage URL the search prints: one holding '/' was printed whole after a change
    that stopped the redaction at the path (a review), one holding '@' in part before it (a new user's trial)."""
    from edgetransfer.search.storage import redact

    assert redact("postgresql://u:secret@127.0.0.1:1/db") == "postgresql://u:***@127.0.0.1:1/db"
    assert redact("postgresql://bob:p@ss@127.0.0.1:1/x") == "postgresql://bob:***@127.0.0.1:1/x"
    assert redact("postgresql://u:pa/ss@host/db") == "postgresql://u:***@host/db"
    assert redact("postgresql://u:pw@host?application_name=a@b") == "postgresql://u:***@host?application_name=a@b"
    assert redact("sqlite:////tmp/a@b/study.db") == "sqlite:////tmp/a@b/study.db"  # no password: as it is
