"""Benchmark a run's models on the chosen backends and write the ``bench.json`` document."""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.markup import escape

from edgetransfer import console
from edgetransfer.backends.base import LoadOptions
from edgetransfer.bench.config import DEFAULT_BACKENDS, BenchConfig, processes_per_batch, restart_every_rounds
from edgetransfer.bench.measure import ROUND_WARMUP, InProcessMeasurer, Job, MeasureError, ProcessMeasurer
from edgetransfer.bench.plan import (
    REFERENCE,
    RUN,
    _check_outputs,
    _plan,
    model_bytes,
    model_identity,
    open_reference,
    resolve_backends,
    verify_files,
)
from edgetransfer.bench.probe import PROBE_KEY, probe_entry, probe_job
from edgetransfer.bench.profiles import check_budgets, exported_drops, recommend
from edgetransfer.bench.schema import BENCH_SCHEMA_VERSION, values
from edgetransfer.bench.stats import latency_stats
from edgetransfer.card import ModelCard, finite
from edgetransfer.data import Sample, batches, list_images, load_splits, split_folders
from edgetransfer.errors import DataError, MeasurementError, RunDirError
from edgetransfer.evaluation import points
from edgetransfer.images import ignored_folder
from edgetransfer.machine import machine_info, usable_cores
from edgetransfer.rundir import BENCH_JSON, RECORDED_BUT_GONE, RunDir, atomic_write_text, sha256_file
from edgetransfer.versions import package_versions


def _labelled(run: RunDir, card: ModelCard, config: BenchConfig) -> tuple[tuple[Sample, ...], str]:
    """The accuracy images: ``--data DIR`` (another labelled folder: its test split if it has one, else every image
    under DIR/<class>/), or the run's own test split (the files it was tested on, from its splits.json)."""
    if config.data:
        root = Path(config.data).expanduser()  # '~/x' quoted reaches us as is
        if root.is_dir() and _holds_the_runs_images(run, root):
            # its own folder, moved: every image of it was scored, training images included (a new user's 100 %)
            test = run.load_splits(card, root, only=("test",)).test
            _say_added(run, root, card)
            return test, f"{root} (the run's own data folder: its test split)"
        folders = split_folders(root) if root.is_dir() else {}
        if "train" in folders:  # its own split's test images, numbered by its classes: mapped to the model's by name
            splits = load_splits(root, seed=card.dataset.get("seed", 0))
            unknown = sorted(set(splits.labels) - set(card.labels))
            if unknown:
                raise DataError(
                    f"{root}'s classes must be classes of the model ({', '.join(card.labels)}); it has "
                    f"{', '.join(unknown)} besides"
                )
            # the classes its test split has: a class with training images alone is not measured either
            _say_missing_classes(root, {splits.labels[s.label] for s in splits.test}, card.labels)
            names = [card.labels.index(name) for name in splits.labels]
            test = tuple(Sample(s.path, names[s.label]) for s in splits.test)
            return test, f"{root} (test split{_seen_by_the_run(run, root, test)})"
        if "test" in folders:  # DIR/test/<class>/ alone: every image of it
            root = folders["test"]
        if root.is_file():
            raise DataError(f"--data {root} is a file; give a folder of labelled images (DIR/<class>/...)")
        if not root.is_dir():
            raise DataError(f"data folder not found: {root}")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not ignored_folder(p.name))
        unknown = set(classes) - set(card.labels)
        if unknown or not classes:
            raise DataError(
                f"{root} must hold one folder per class of the model ({', '.join(card.labels)}); "
                f"it has {', '.join(classes) or 'none'}"
            )
        _say_missing_classes(root, classes, card.labels)
        samples = tuple(Sample(s.path, card.labels.index(name)) for name in classes for s in list_images(root / name))
        return samples, f"{root} (every image{_seen_by_the_run(run, root, samples)})"
    folder = card.dataset.get("path")
    if not folder or not Path(folder).is_dir():
        console.err.print(f"[yellow]note: data folder {folder} not found; accuracy not measured (--data DIR)[/]")
        return (), ""
    adaptation = (card.training or {}).get("adaptation") or {}
    if adaptation.get("adapt_bn_images") and not adaptation.get("rolled_back_to_source"):
        console.err.print(
            "[yellow]note: this run's model was adapted to a target domain: its top-1 here is on the source test "
            "split, where an adapted model can score far lower; --data DIR (labelled target images) measures it "
            "where it will run[/]"
        )
    return run.load_splits(card, only=("test",)).test, f"{folder} (the run's test split)"


def _say_missing_classes(root: Path, have, labels) -> None:
    """A --data folder without some of the model's classes is measured on the others, said (it went unsaid, where a
    validation or test folder without some classes is said in finetune and export)."""
    missing = [name for name in labels if name not in set(have)]
    if missing:
        console.err.print(
            f"[yellow]note: {escape(str(root))} has no images of {len(missing)} of the model's {len(labels)} "
            f"classes ({escape(', '.join(missing[:5]))}{' ...' if len(missing) > 5 else ''}): top-1 is measured on "
            "the others[/]"
        )


def _say_added(run: RunDir, root: Path, card: ModelCard) -> None:
    """Images in the run's own class folders that none of its splits holds (added since it trained) are not scored:
    said (17 fresh photos added to a class went unscored and unsaid; a new user's trial). The files its training
    skipped as bad (--skip-bad), and files outside its class folders, are none of them."""
    from edgetransfer.data import files_below
    from edgetransfer.images import IMAGE_SUFFIXES
    from edgetransfer.rundir import SPLITS_FILE

    try:
        record = json.loads(run.file(SPLITS_FILE).read_text())
        recorded = {entry[0] for files in record["files"].values() for entry in files}
    except (OSError, ValueError, KeyError, TypeError, IndexError):  # said where the splits are read
        return
    folders = {name.rsplit("/", 1)[0] for name in recorded if "/" in name}  # its class folders (train/cat, cat)
    known = recorded | set(card.dataset.get("skipped_bad_files") or ())
    added = [
        path
        for path in files_below(root)
        if path.suffix.lower() in IMAGE_SUFFIXES
        and (name := path.relative_to(root).as_posix()) not in known
        and name.rsplit("/", 1)[0] in folders
    ]
    if added:
        console.err.print(
            f"[yellow]note: {len(added)} image(s) in {escape(str(root))} are in none of the run's splits (added "
            f"since it trained?), e.g. {escape(added[0].relative_to(root).as_posix())}: not scored; --data a folder "
            "of them alone (DIR/<class>/...) scores them[/]"
        )


def _holds_the_runs_images(run: RunDir, root: Path) -> bool:
    """Whether ``root`` is the run's own data folder, perhaps moved: one of the first recorded test files there, by
    content."""
    from edgetransfer.data import holds_recorded
    from edgetransfer.rundir import SPLITS_FILE

    try:
        record = json.loads(run.file(SPLITS_FILE).read_text())
        return bool(record["files"]["test"]) and holds_recorded(record, root, "test", 20)
    except (OSError, ValueError, KeyError, TypeError):  # a run before splits.json, or a damaged one
        return False


def _seen_by_the_run(run: RunDir, root: Path, samples: tuple[Sample, ...]) -> str:
    """How many of ``samples`` the run trained or chose its epoch on (the same content as a file of its training or
    validation split, under any name), or adapted on (:func:`_adaptation_note`), said as notes and returned for the
    source's description ("" when none, or the run recorded no splits)."""
    from edgetransfer.data import file_sha256

    digests = []
    for sample in samples:
        try:
            digests.append(file_sha256(sample.path))
        except OSError:  # unreadable: said where it is decoded
            continue
    adapted = _adaptation_note(run, root, len(samples), digests)
    seen = {name: run.recorded_digests(name) for name in ("train", "val")}
    if None in seen.values():  # a run before splits.json, or a damaged one
        return adapted
    counts = {  # each image once: trained on, else validated on
        "train": sum(digest in seen["train"] for digest in digests),
        "val": sum(digest in seen["val"] and digest not in seen["train"] for digest in digests),
    }
    if not any(counts.values()):
        return adapted
    which = ", ".join(
        f"{n} {what}" for what, n in (("trained on", counts["train"]), ("validated on", counts["val"])) if n
    )
    own = f"{sum(counts.values())} of them the run's own: {which}"
    verb = "is" if sum(counts.values()) == 1 else "are"
    console.err.print(
        f"[yellow]note: {escape(str(root))}: {sum(counts.values())} of its {len(samples)} images {verb} the run's own "
        f"training or validation images ({which}; the same content under any name): its top-1 there is not a "
        "held-out figure[/]"
    )
    return f"; {own}{adapted}"


ADAPTATION_FOLDERS = (("target_val", "--target-val", "chose by"), ("adapt_bn", "--adapt-bn", "adapted on"))
ADAPTATION_FOLDERS += (("unlabeled", "--unlabeled", "self-trained on"),)


def _adaptation_note(run: RunDir, root: Path, count: int, digests: list[str]) -> str:
    """How many of a --data folder's ``count`` images (their ``digests``) are images of the run's domain adaptation
    that shaped the model it keeps: its --target-val, which chose what was kept, and the --adapt-bn and --unlabeled
    images it adapted on, unless the adaptation was rolled back (the fine-tuned model kept: --target-val chose that),
    or failed or was interrupted (nothing of it kept). Said as a note: the run's own --target-val folder given to
    bench --data read 100 % with no word (a new user's trial). The folders are listed, not decoded."""
    from edgetransfer.data import file_sha256, files_below

    card = run.load_card()
    adaptation = (card.training or {}).get("adaptation")
    options = (card.training or {}).get("config") or {}
    if not adaptation or adaptation.get("failed") or adaptation.get("interrupted"):
        return ""
    kept = ("target_val",) if adaptation.get("rolled_back_to_source") else ("target_val", "adapt_bn", "unlabeled")
    found = []
    for key, option, what in ADAPTATION_FOLDERS:
        folder = Path(str(options.get(key) or "")).expanduser()
        if key not in kept or not options.get(key) or not folder.is_dir():
            continue
        theirs = set()
        for path in files_below(folder):
            try:
                theirs.add(file_sha256(path))
            except OSError:
                continue
        shared = sum(digest in theirs for digest in digests)
        if shared:
            found.append(f"{shared} the adaptation {what} ({option} {folder})")
    if not found:
        return ""
    which = ", ".join(found)
    console.err.print(
        f"[yellow]note: {escape(str(root))}: of its {count} images, {escape(which)} (the same content): its "
        "top-1 there is not a held-out figure[/]"
    )
    return f"; {which}"


def _accuracy_arrays(samples: tuple[Sample, ...], card: ModelCard) -> tuple[np.ndarray, np.ndarray] | None:
    if not samples:
        return None
    parts = list(batches(samples, card.preprocessing, 64))
    return np.concatenate([p[0] for p in parts]).astype(np.float32), np.concatenate([p[1] for p in parts])


def _schedule(measurers: dict, failed: dict, config: BenchConfig, reopen=None, tick=None) -> dict:
    """Latency samples per (key, batch): warm-up, then ``rounds`` rounds that visit every model in turn (in
    alternating order), each round adding its share of the runs and seconds. With ``config.processes`` > 1 the
    rounds are shared among that many fresh processes per model (``reopen(key)`` starts the next one).
    ``tick(key, batch, round)`` is called after each model's turn in a round (progress)."""
    samples: dict = {key: {b: [] for b in config.batches} for key in measurers}
    per_round_runs = math.ceil(config.min_runs / config.rounds)
    per_round_time = config.min_time / config.rounds
    restart_every = restart_every_rounds(config.rounds, config.processes) if reopen else 0
    for batch in config.batches:
        for key in list(measurers):
            _step(measurers, failed, key, "warmup", batch, config.warmup, config.warmup_time)
        for index in range(config.rounds):
            if restart_every and index and index % restart_every == 0:
                for key in list(measurers):
                    if reopen(key, batch) is not False:
                        _step(measurers, failed, key, "warmup", batch, config.warmup, config.warmup_time)
            order = list(measurers) if index % 2 == 0 else list(reversed(measurers))
            for key in order:
                if _step(measurers, failed, key, "warmup", batch, ROUND_WARMUP, 0) is not False:
                    times = _step(measurers, failed, key, "time", batch, per_round_runs, per_round_time)
                    if times is not False:
                        samples[key][batch].append(times)
                if tick:
                    tick(key, batch, index)
    return samples


def _step(measurers: dict, failed: dict, key, method: str, *args):
    """Call one step; on failure the model is closed, recorded as failed, and False returned."""
    if key not in measurers:
        return False
    try:
        return getattr(measurers[key], method)(*args)
    except MeasureError as exc:
        failed[key] = f"{method}: {exc}"
        measurers.pop(key).close()
        return False


def _reference(results: list[dict], card: ModelCard, own_split: bool) -> dict | None:
    """The fp32 accuracy each variant is compared with, in fp32 math: PyTorch fp32 measured here, else the first
    fp32 model measured here that ran in fp32, else the card's PyTorch test top-1 (when the images are the run's
    test split), else an fp32 model that ran in bf16 (OpenVINO's IR on a CPU with AVX-512 BF16 or AMX), said so."""
    fp32 = [r for r in results if r["variant"] == "fp32" and r.get("accuracy")]
    fp32.sort(key=lambda r: (r.get("precision", "fp32") != "fp32", r["backend"] != "torch-cpu"))

    def of(r: dict) -> dict:
        acc, ran = r["accuracy"], r.get("precision", "fp32")
        source = f"{r['backend']} fp32" + ("" if ran == "fp32" else f" (runs in {ran})")
        return {"source": source, "top1": acc["top1"], "top5": acc["top5"], "k": acc["k"]}

    if fp32 and fp32[0].get("precision", "fp32") == "fp32":
        return of(fp32[0])
    card_top1 = card.metrics.get("torch", {}).get("test_top1")
    if finite(card_top1) and 0 <= card_top1 <= 1 and own_split:
        return {"source": "card: PyTorch test top-1", "top1": card_top1, "top5": None, "k": None}
    return of(fp32[0]) if fp32 else None


def bench(run: RunDir, config: BenchConfig | None = None, *, write: bool = True) -> dict:
    """Measure every (backend, variant) present in ``run``; return (and with ``write``, save) the ``bench.json``
    document. A model that fails or crashes is recorded under ``failed``; the others are still measured."""
    config = config or BenchConfig()
    reference = open_reference(run, config.reference_run)
    with run.lock("bench"), reference.lock("bench") if reference else contextlib.nullcontext():
        return _bench(run, config, reference, write=write)


def _bench(run: RunDir, config: BenchConfig, reference: RunDir | None, *, write: bool) -> dict:
    config.validate()
    card = run.load_card()
    chosen, unavailable = resolve_backends(config.backends)
    plan, skipped = _plan(run, chosen, config, reference)
    runs = {RUN: run, REFERENCE: reference}
    if not plan:
        names = ", ".join(b.name for b in chosen) or "none available"
        why = f"no exported model there; run 'edgetransfer export {run.path}' first"
        gone = [item["reason"] for item in skipped if RECORDED_BUT_GONE in item["reason"]]
        if gone:
            why = gone[0]
        elif (
            run.file("model.onnx").is_file()
            and all(b.name.startswith("openvino") for b in chosen)
            and not run.file("openvino/model.xml").is_file()
        ):
            why = "the run has no OpenVINO IR (exported with --no-openvino?); export it again without it"
        elif run.file("model.onnx").is_file():  # exported, but not what was asked for
            flags = {"int8": "--int8", "fp16": "--fp16"}
            hint = " or ".join(flags[v] for v in config.variants or () if v in flags)
            why = (
                f"the run has no {'/'.join(config.variants or ('asked',))} model for them (its export made other "
                f"variants); export it again{f' with {hint}' if hint else ' with them'}, or choose --variants from "
                "what it has"
            )
        raise RunDirError(f"nothing to benchmark in {run.path} for backends {names}: {why}")
    verify_files(plan, runs)
    # a fine-tuned run never exported, benched with the default backends: its PyTorch model alone is measured
    if (
        tuple(config.backends) == DEFAULT_BACKENDS
        and all(b.name.startswith("torch") for b, *_ in plan)
        and "model.onnx" not in card.artifacts
    ):
        console.err.print(
            f"[yellow]note: {run.path} is not exported: only its PyTorch model is measured; 'edgetransfer export "
            f"{run.path}' makes the ONNX and OpenVINO models the other backends measure[/]"
        )
    threads = config.threads or usable_cores()
    if threads > usable_cores():  # a profile for a bigger device (vehicle: 4) on a smaller machine
        console.err.print(
            f"[yellow]note: {threads} threads on the {usable_cores()} cores this process may use: the threads "
            "take turns and latencies come out erratic (OpenVINO runs at most one per core, so engines are not "
            "measured alike); --threads to measure with fewer (search: a profile of your "
            "own with threads = N under \\[settings])[/]"  # escaped: rich took [settings] for a tag and dropped it
        )
    samples_set, data_source = _labelled(run, card, config) if config.accuracy else ((), "")
    if config.accuracy and data_source and not samples_set:
        console.err.print(f"[yellow]note: no images in {data_source}; accuracy not measured[/]")
    arrays = _accuracy_arrays(samples_set, card)
    crop = card.preprocessing.crop
    sample = arrays[0][:1] if arrays else np.random.default_rng(0).standard_normal((1, 3, crop, crop))
    options = LoadOptions(threads=threads, precision=config.precision)
    measurers, failed, started = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="edgetransfer-bench-") as tmp:
        data_file = None
        if arrays:
            data_file = str(Path(tmp) / "accuracy.npz")
            np.savez(data_file, images=arrays[0], labels=arrays[1])
        jobs, pids = {}, {}

        def open_measurer(key, batch: int):
            """A fresh measurer for ``key`` (closing the one it replaces), started: its start info, or False."""
            if key in measurers:
                measurers.pop(key).close()
            job = jobs[key]
            measurer = ProcessMeasurer(job, Path(tmp), timeout=config.timeout) if config.isolate else None
            measurers[key] = measurer or InProcessMeasurer(job)
            info = _step(measurers, failed, key, "start", batch)
            if info is not False:
                pids.setdefault(key, []).append(info["pid"])
            return info

        try:
            for backend, variant, rel, whose in plan:
                key = (backend.name, variant, whose)
                labelled = data_file if whose == RUN else None  # the reference run is measured for speed only
                path = str(runs[whose].file(rel))
                jobs[key] = Job(backend, variant, path, card, options, sample.astype(np.float32), labelled)
                with console.err.status(f"loading {_label(key)}..."):
                    info = open_measurer(key, config.batches[0])
                if info is not False:
                    _check_outputs(info, runs[whose], rel, card)
                    started[key] = info
            if config.probe:  # the machine probe, in the same rounds (see bench/probe.py)
                jobs[PROBE_KEY] = probe_job(card, options)
                open_measurer(PROBE_KEY, config.batches[0])
            steps = len(config.batches) * config.rounds * len(measurers)
            with console.progress() as bar:
                task = bar.add_task(f"measuring {len(measurers)} model(s)", total=steps, status="")

                def tick(key, batch: int, index: int) -> None:
                    status = f"{_label(key)}, batch {batch}, round {index + 1}/{config.rounds}"
                    bar.update(task, advance=1, status=status)

                latency = _schedule(measurers, failed, config, open_measurer if config.isolate else None, tick)
            extras = {}
            for key in list(measurers):
                with console.err.status(f"memory, throughput and accuracy of {_label(key)}..."):
                    peak = _step(measurers, failed, key, "peak_rss_mb")
                    sizes = [] if config.async_time <= 0 or key[2] == REFERENCE else config.batches
                    tput = [_step(measurers, failed, key, "run_async", b, config.async_time) for b in sizes]
                    acc = _step(measurers, failed, key, "accuracy")
                    if key in measurers:
                        extras[key] = (peak, [t for t in tput if t], acc)
                        console.err.print(_finished(key, latency[key], acc), markup=False)
        finally:
            for measurer in measurers.values():
                measurer.close()
    results, reference_results = [], []
    for backend, variant, rel, whose in plan:
        key = (backend.name, variant, whose)
        if key not in extras:
            continue
        info, (peak, tput, acc) = started[key], extras[key]
        path = runs[whose].file(rel)
        (results if whose == RUN else reference_results).append(
            {
                "backend": backend.name,
                "variant": variant,
                "precision": info["precision"],
                "threads": info["threads"],
                "model": rel,
                "model_bytes": model_bytes(path),
                "model_sha256": sha256_file(path),
                "load_s": info["load_s"],
                "first_run_ms": info["first_run_ms"],
                "rss_start_mb": info["rss_start_mb"] if config.isolate else None,
                # the fresh processes each batch size's rounds were shared among (a process carries on into the next
                # size, so the count of distinct ones read N + sizes - 1: a review)
                "processes": min(
                    processes_per_batch(config.rounds, config.processes if config.isolate else 1),
                    len(set(pids.get(key, []))),
                ),
                "peak_rss_mb": peak,
                "latency": [
                    {
                        "batch": b,
                        **latency_stats([t for part in latency[key][b] for t in part], b),
                        "rounds": [len(part) for part in latency[key][b]],
                        "samples_ms": [round(t, 4) for part in latency[key][b] for t in part],
                    }
                    for b in config.batches
                ],
                "async": tput,
                "accuracy": acc or None,
            }
        )
    accuracy_reference = _reference(results, card, own_split=bool(samples_set) and not config.data)
    for r in results:
        if r["accuracy"] and accuracy_reference:
            r["accuracy"]["top1_delta_points"] = points(r["accuracy"]["top1"], accuracy_reference["top1"])
            top5 = accuracy_reference.get("top5")
            r["accuracy"]["top5_delta_points"] = None if top5 is None else points(r["accuracy"]["top5"], top5)
        elif r["accuracy"]:
            r["accuracy"].update(top1_delta_points=None, top5_delta_points=None)
    for item in skipped:
        console.err.print(f"[yellow]skipped {item['backend']} {item['variant']}: {item['reason']}[/]")
    failures = [
        {"backend": k[0], "variant": k[1], "error": v, **({"run": REFERENCE} if k[2] == REFERENCE else {})}
        for k, v in failed.items()
    ]
    for (backend, variant, whose), error in failed.items():
        console.err.print(f"[red]failed {_label((backend, variant, whose))}: {error}[/]")
    budget = config.profile.budget if config.profile else {}
    checks = check_budgets(results, budget, exported_drops(card.metrics))
    settings = {**config.settings(), "threads_resolved": threads, "isolated": config.isolate}
    document = {
        "schema_version": BENCH_SCHEMA_VERSION,
        "kind": "edgetransfer.bench",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": str(run.path),
        "model": {**model_identity(card), "labels": list(card.labels)},
        "settings": settings,
        "profile": config.profile.to_dict() if config.profile else None,
        "machine": machine_info(),
        "versions": {**package_versions(), **_runtime_versions()},
        "accuracy_data": {"source": data_source or None, "images": len(samples_set)},
        "accuracy_reference": accuracy_reference,
        "results": results,
        "skipped": skipped,
        "failed": failures,
        "unavailable": unavailable,
        "budget_checks": checks,
        "recommendation": recommend(
            results,
            checks,
            objective=config.objective,
            max_drop=config.max_accuracy_drop,
            exported=exported_drops(card.metrics),
        )
        if config.recommend
        else None,
        "gate": None,
        "reference": None if reference is None else {"run": str(reference.path), "results": reference_results},
        "probe": probe_entry(latency[PROBE_KEY], config.batches) if PROBE_KEY in extras else None,
    }
    found = values(document)
    if found:  # a backend or a bug gave a number no measurement can: never report it as one
        raise MeasurementError(f"bench of {run.path} measured numbers that cannot be right: {'; '.join(found[:3])}")
    if write:
        save_document(document, run.file(BENCH_JSON))
    return document


def _finished(key: tuple[str, str, str], latency: dict, accuracy: dict | None) -> str:
    """A line for a model whose measurements are done: its p50 per batch size (and top-1)."""
    times = ", ".join(
        f"p50 {np.median([t for part in parts for t in part]):.3g} ms at batch {b}"
        for b, parts in latency.items()
        if parts
    )
    top1 = f", top-1 {100 * accuracy['top1']:.2f}%" if accuracy else ""
    return f"measured {_label(key)}: {times or 'no runs'}{top1}"


def _label(key: tuple[str, str, str]) -> str:
    """``backend variant``, and whose when it is the reference run's."""
    return f"{key[0]} {key[1]}" + (" (reference run)" if key[2] == REFERENCE else "")


def _runtime_versions() -> dict[str, str]:
    """Versions that decide speed beyond the Python packages: onnxruntime's providers, OpenVINO's build."""
    found: dict[str, str] = {}
    from edgetransfer.backends.ort import ort_providers

    providers = ort_providers()
    if providers:
        found["onnxruntime_providers"] = ",".join(providers)
    try:
        import openvino as ov

        found["openvino_build"] = ov.get_version()
    except ImportError:
        pass
    return found


def document_text(document: dict) -> str:
    """A bench document as it is written to disk."""
    return json.dumps(document, indent=1) + "\n"


def save_document(document: dict, path: Path) -> None:
    """Write a bench document (atomically)."""
    atomic_write_text(Path(path), document_text(document))
