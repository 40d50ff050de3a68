"""What ``edgetransfer bench`` does, as one function: measure (and gate), write the reports, pick an exit code."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgetransfer.bench.config import BenchConfig
from edgetransfer.bench.gate import GateConfig, GateResult, check
from edgetransfer.bench.plan import identity_diff, model_identity
from edgetransfer.bench.report import to_csv, to_markdown
from edgetransfer.bench.runner import bench, document_text, save_document
from edgetransfer.errors import UsageError
from edgetransfer.rundir import BENCH_JSON, BENCH_REPORTS, CARD, RunDir, atomic_path, missing_folders, remove_empty
from edgetransfer.schemas import MAX_JSON_FILE_BYTES


@dataclass
class Outcome:
    """A finished bench command: the document, the gate's result, the files written and the exit code."""

    document: dict
    gate: GateResult | None = None
    written: list[Path] = field(default_factory=list)
    devices: list = field(default_factory=list)  # bench --on: a remote.DeviceOutcome per device

    @property
    def exit_code(self) -> int:
        codes = [0]
        if self.gate is not None:
            codes.append(self.gate.exit_code)
        if self.document["failed"]:
            codes.append(2)
        codes += [device.exit_code for device in self.devices]
        if self.document.get("profile") and not _any_passes(self.document):
            codes.append(1)
        return 2 if 2 in codes else max(codes)

    def reasons(self) -> list[str]:
        """Why the exit code is not the gate's own: each device's, a model not measured, the profile's budgets."""
        why = [
            f"on {d.device.label}: {'slower (its gate)' if d.exit_code == 1 else 'not measured or not judged'}"
            for d in self.devices
            if d.exit_code
        ]
        why += ["a model could not be measured"] if self.document["failed"] else []
        if self.document.get("profile") and not _any_passes(self.document):
            why.append("no model passes the profile's budgets")
        return why


def _any_passes(document: dict) -> bool:
    failed = {(c["backend"], c["variant"]) for c in document["budget_checks"] if not c["passed"]}
    return any((r["backend"], r["variant"]) not in failed for r in document["results"])


def check_baseline_model(run: RunDir, baseline: dict, name: str, config: BenchConfig) -> None:
    """Fail before measuring when the baseline is of another model (backbone, input size, classes), or was measured
    with other threads or precision than given now (the gate would refuse the comparison after measuring)."""
    diff = identity_diff(model_identity(run.load_card()), baseline["model"])
    if diff:
        raise UsageError(  # not "save a baseline of this one" alone: that accepts whatever latency the change brought
            f"the baseline {name} is of another model ({diff}): the gate compares one model's latency over time, "
            "not two models; if the change is meant, compare the two first (bench each; their bench.md), then "
            "--save-baseline makes this model's latency the reference"
        )
    settings = baseline.get("settings", {})
    for key, what, now in (
        ("threads_resolved", "threads", config.threads),
        ("precision", "precision", config.precision),
    ):
        then = settings.get(key)
        if then is not None and now is not None and then != now:
            raise UsageError(
                f"the baseline {name} was measured with {what} {then}, this bench would use {now}: the times do not "
                f"compare; use --{what} {then} (or save a new baseline)"
            )


def write_reports(document: dict, folder: Path, gate: GateResult | None = None) -> list[Path]:
    """Every file of :data:`~edgetransfer.rundir.BENCH_REPORTS` in ``folder``: bench.json, .csv, .md and .html, all
    or none. Each is written to a temporary file beside its place first, and only when every one was written are
    they renamed into place: a disk that fills up on the third leaves the earlier reports as they were, not a new
    bench.json beside an old bench.html."""
    import contextlib

    from edgetransfer.bench.html import to_html

    folder = Path(folder)
    render: dict[str, Callable[[dict], str]] = {
        ".json": document_text,
        ".csv": to_csv,
        ".md": lambda d: to_markdown(d, gate),
        ".html": lambda d: to_html(d, gate),
    }
    texts = {folder / name: render[Path(name).suffix](document) for name in BENCH_REPORTS}
    with contextlib.ExitStack() as renames:  # each renames its file on exit, or removes it after a failure
        for path, text in texts.items():
            renames.enter_context(atomic_path(path)).write_text(text, encoding="utf-8")
    return list(texts)


def _can_write(folder: Path) -> bool:
    """Whether the reports can be written in ``folder`` as :func:`~edgetransfer.rundir.atomic_path` writes them (a
    file made, renamed, removed): tried, as root's os.access says yes to /sys and read-only mounts, and an
    append-only folder lets a file be made but not renamed."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        handle, name = tempfile.mkstemp(dir=folder, prefix=".edgetransfer-write-check-")
    except OSError:
        return False
    os.close(handle)
    renamed = f"{name}.renamed"
    try:
        os.replace(name, renamed)
        os.unlink(renamed)
    except OSError:
        for left in (name, renamed):  # where it can be removed (it cannot in an append-only folder)
            with contextlib.suppress(OSError):
                os.unlink(left)
        return False
    return True


def _writable_folder(folder: Path, what: str) -> None:
    """Raise a :class:`UsageError` unless files can be made in ``folder`` (or, where it is missing, in the nearest
    folder above it, where it would be made)."""
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{what}: {existing} is a file, not a folder")
    if not _can_write(existing):
        raise UsageError(f"{what}: cannot write in {existing}")
    if existing != folder:  # the folders to make: try now, so that a place where none can be made fails first
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{what}: cannot make {folder} ({exc.strerror})") from None


def check_outputs(run: RunDir, out_dir: Path | None, save_baseline: Path | None) -> None:
    """Fail before measuring when a report or the baseline could not be written where asked."""
    folder = Path(out_dir) if out_dir else run.path
    what = f"--out {folder}" if out_dir else f"the run folder {folder}"
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{what} is a file; give a folder for the reports")
    where = folder.expanduser().resolve()
    if out_dir and where == Path(where.anchor):  # four report files at the top of the filesystem (run as root)
        said = "" if str(out_dir) == str(where) else f" ({where})"
        raise UsageError(
            f"--out {out_dir}{said} is the filesystem's root; name a folder for the reports, e.g. RUN/bench"
        )
    if out_dir and (folder / CARD).is_file() and where != run.path.expanduser().resolve():
        raise UsageError(  # its bench.json/.md/.html replaced by this run's figures, said nowhere
            f"--out {out_dir} is another run (it holds a {CARD}): its bench reports would become {run.path}'s; give "
            "a folder of its own for the reports"
        )
    _writable_folder(folder, what)
    for name in BENCH_REPORTS:
        if (folder / name).is_dir():
            raise UsageError(f"{folder / name} is a folder; bench writes a file of that name")
    found = [name for name in BENCH_REPORTS if (folder / name).is_file()]
    own_run = where == run.path.expanduser().resolve()  # a run's folder: those names are bench's (an export that
    # could not remove an earlier bench.html leaves it alone there)
    if out_dir and not own_run and found and not _bench_document(folder / BENCH_JSON):  # files of those names bench
        # did not write (its reports are written all or none, bench.json among them): a user's bench.md went unsaid
        raise UsageError(
            f"{what} holds {', '.join(found)} that bench did not write (no bench.json of bench's beside them) and "
            "would be replaced; give a folder of its own for the reports, or move them"
        )
    if save_baseline is not None:
        target = Path(save_baseline)
        if target.is_dir():
            raise UsageError(f"--save-baseline {target} is a folder; give a file name, e.g. {target / 'baseline.json'}")
        reports = {(folder / n).expanduser().resolve() for n in BENCH_REPORTS}
        own = target.expanduser().resolve() in reports or (
            target.name in BENCH_REPORTS and (target.parent / CARD).is_file()
        )
        # another bench's --out folder: its bench.json beside the reports made from it (replaced, the reports then
        # told of another measurement; a read-only review of the docs)
        own = own or (target.name == BENCH_JSON and any((target.parent / n).is_file() for n in BENCH_REPORTS[1:]))
        if own:  # this bench's reports, or another run's: bench writes them
            raise UsageError(
                f"--save-baseline {target} is a run's own {target.name} or a bench's with its reports beside it, "
                "written by bench: give the baseline a file "
                f"of its own, e.g. {target.parent / 'baseline.json'}"
            )
        if target.exists() and not _bench_document(target):  # replaced only by a newer baseline (a new user's
            # --save-baseline RUN/model.onnx replaced the model with JSON, and so a card or an image)
            raise UsageError(
                f"--save-baseline {target}: the file there is not a bench baseline and would be replaced; give a new "
                "file name, or remove it first"
            )
        _writable_folder(target.parent, f"--save-baseline {target}")


def _bench_document(path: Path) -> bool:
    """Whether ``path`` holds a bench document (a baseline, of any schema version: one of an older version is
    measured again and replaced, as its error says), not a model, a card, an image or another JSON file."""
    import json

    try:
        if path.stat().st_size > MAX_JSON_FILE_BYTES:
            return False
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    if not isinstance(document, dict) or "schema_version" not in document:
        return False
    card = "labels" in document and "preprocessing" in document
    return document.get("kind") in (None, "edgetransfer.bench") and not card


def check_relative_to(run: RunDir, config: BenchConfig, spec: str) -> None:
    """``--relative-to BACKEND[:VARIANT]`` must name a model this bench measures: checked before measuring."""
    from edgetransfer.bench.plan import _plan, resolve_backends

    backend, _, variant = spec.partition(":")
    chosen, _ = resolve_backends(config.backends)
    plan, _ = _plan(run, chosen, config)
    measured = sorted({f"{b.name}:{v}" for b, v, _, _ in plan})
    if not any(b.name == backend and (not variant or v == variant) for b, v, _, _ in plan):
        raise UsageError(
            f"--relative-to {spec} names no model this bench measures; measured here: {', '.join(measured) or 'none'}"
        )


def check_reference_run(run: RunDir, config: BenchConfig) -> None:
    """``--reference-run`` must be another run: this run itself would be measured against itself, a gate that judges
    nothing. Checked before measuring. (A reference run whose files are byte-identical to this run's is another
    matter: a pull request that changed nothing the model depends on exports the same files, and its gate should
    pass; it does, with a warning that any difference is noise.)"""
    from edgetransfer.bench.plan import open_reference

    reference = open_reference(run, config.reference_run)
    if reference.path.resolve() == run.path.resolve():
        raise UsageError(
            f"--reference-run {config.reference_run} is this run itself: its models would be measured against "
            "themselves, and a gate that judges nothing cannot pass; give another run (e.g. the main branch's build)"
        )


def check_gate_plan(run: RunDir, config: BenchConfig, gate, baseline: dict | None, name: str) -> None:
    """The comparisons the gate would find it cannot make, found before measuring (they were found after minutes
    of it): a stored baseline without the machine probe (absolute times: never compared), a batch or a model in
    it (judged alone, against the machine probe) that this bench would not measure, and one of the run's models
    that the reference run lacks."""
    from edgetransfer.bench.plan import REFERENCE, RUN, _plan, open_reference, resolve_backends

    chosen, _ = resolve_backends(config.backends)
    reference = open_reference(run, config.reference_run) if config.reference_run else None
    plan, _ = _plan(run, chosen, config, reference)
    ours = {(b.name, v): rel for b, v, rel, whose in plan if whose == RUN}
    if reference is not None:
        theirs = {(b.name, v) for b, v, _, whose in plan if whose == REFERENCE}
        lacking = [key for key in ours if key not in theirs]
        if lacking:
            backend, variant = lacking[0]
            raise UsageError(
                f"--reference-run {config.reference_run} has no {ours[lacking[0]]}: this run's {backend} {variant} "
                f"could not be compared; export it there too, or leave it out (--variants, --backends)"
            )
    if baseline is not None and gate.reference() is None and not baseline.get("probe"):
        raise UsageError(  # the gate then compared absolute times, with a warning (a reviewer's finding)
            f"the baseline {name} has no machine probe (a bench.json, or a baseline of an older edgetransfer): its "
            "times would be compared as they are, and a busier or faster machine read as a slower or faster model; "
            "save the baseline with --save-baseline (it measures the probe beside the models), or gate within one "
            "run: --reference-run RUN2, or --relative-to BACKEND:VARIANT"
        )
    if baseline is not None:
        batches = {lat.get("batch") for r in baseline.get("results", []) for lat in r.get("latency", [])}
        missing = sorted(b for b in batches - set(config.batches) if isinstance(b, int))
        if missing:  # found after measuring before (a profile's batches=[1] against a baseline of 1 and 8)
            raise UsageError(
                f"the baseline {name} was measured at batch {', '.join(map(str, missing))}, which this bench would "
                f"not measure (batches {', '.join(map(str, config.batches))}): measure the same batches (--batch), "
                "or save a new baseline"
            )
    if baseline is not None and gate.reference() is None:
        stored = sorted({(r["backend"], r["variant"]) for r in baseline.get("results", [])} - set(ours))
        if stored:
            named = ", ".join(f"{b} {v}" for b, v in stored)
            raise UsageError(
                f"the baseline {name} holds {named}, which this bench would not measure (left out by --backends or "
                "--variants, not in the run, or unavailable here): measure the same models, or save a new baseline"
            )


def fill_deltas(device_document: dict, reference: dict | None) -> None:
    """A device's accuracy deltas where it measured no fp32 of its own (``--variants int8``, say): against this
    machine's accuracy reference, which was measured on the same images (the device gets a copy of them)."""
    from edgetransfer.evaluation import points

    if not reference or reference.get("top1") is None:
        return
    for result in device_document.get("results", []):
        accuracy = result.get("accuracy")
        if accuracy and accuracy.get("top1") is not None and accuracy.get("top1_delta_points") is None:
            accuracy["top1_delta_points"] = points(accuracy["top1"], reference["top1"])
            if reference.get("top5") is not None and accuracy.get("top5") is not None:
                accuracy["top5_delta_points"] = points(accuracy["top5"], reference["top5"])


def run_command(
    run: RunDir,
    config: BenchConfig,
    *,
    gate: GateConfig | None = None,
    baseline: dict | None = None,
    baseline_name: str | None = None,
    save_baseline: Path | None = None,
    out_dir: Path | None = None,
    devices: Callable[[], list] | None = None,
    preflight: Callable[[], None] | None = None,
) -> Outcome:
    """Measure ``run`` (comparing with ``baseline`` and/or a reference backend when ``gate`` is given), write
    bench.json and the CSV/Markdown/HTML reports into ``out_dir`` (default: the run), and save a baseline. Where the
    files would go is checked first, before anything is measured. ``devices`` (``bench --on``) measures on the
    devices after this machine; their outcomes land in ``document["devices"]``; ``preflight`` runs after the checks,
    before this machine measures (bench --on: a device that cannot be reached is said in seconds)."""
    config.validate()
    wanted = (Path(out_dir) if out_dir else None, Path(save_baseline).parent if save_baseline else None)
    made = [missing_folders(folder) for folder in wanted if folder]
    try:
        return _measured(run, config, gate, baseline, baseline_name, save_baseline, out_dir, devices, preflight)
    except BaseException:
        for folders in made:  # a failed bench leaves no empty folder it made for its reports, nor those above
            remove_empty(folders)
        raise


def _measured(run, config, gate, baseline, baseline_name, save_baseline, out_dir, devices, preflight) -> Outcome:
    check_outputs(run, out_dir, save_baseline)
    if gate is not None and gate.reference() is not None:
        check_relative_to(run, config, gate.relative_to)
    if gate is not None and config.reference_run is not None:
        check_reference_run(run, config)
    if gate is not None and baseline is not None:
        check_baseline_model(run, baseline, baseline_name or "baseline", config)
    if gate is not None:
        check_gate_plan(run, config, gate, baseline, baseline_name or "baseline")
    if preflight is not None:
        preflight()
    if gate is not None:
        document, result = check(run, config, gate, baseline, baseline_name=baseline_name)
    else:
        document, result = bench(run, config, write=False), None
    found = devices() if devices is not None else []
    if found:
        for device in found:
            if device.document is not None:
                fill_deltas(device.document, document.get("accuracy_reference"))
        document["devices"] = [device.entry() for device in found]
    written = write_reports(document, Path(out_dir) if out_dir else run.path, result)
    outcome = Outcome(document, result, written, devices=found)
    if save_baseline is not None:
        baseline_doc = {**document, "gate": None}
        save_document(baseline_doc, Path(save_baseline))
        outcome.written.append(Path(save_baseline))
    return outcome
