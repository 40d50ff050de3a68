"""What a bench measures, checked before anything is loaded: the backends, the (backend, variant, file) plan, the
reference run (same model?), and each file against the sha256 its card records."""

from __future__ import annotations

from pathlib import Path

from edgetransfer import backends as backend_registry
from edgetransfer.backends.base import Backend
from edgetransfer.bench.config import DEFAULT_BACKENDS, VARIANTS, BenchConfig
from edgetransfer.card import ModelCard, verify_artifact
from edgetransfer.errors import RunDirError, UsageError
from edgetransfer.rundir import CARD, CHECKPOINT, RunDir


def resolve_backends(names: tuple[str, ...]) -> tuple[list[Backend], list[dict]]:
    """The backends to measure, and those ``all`` or the defaults left out (each with why and how to install it). A
    backend asked for by name that is missing here is a :class:`BackendUnavailableError`; of the defaults (not
    named: torch-cpu, ort-cpu, openvino-cpu), the ones here are measured and the rest said (a plain 'bench RUN'
    without OpenVINO installed stopped at 'openvino-cpu is not available here', measuring nothing: a review)."""
    default = tuple(names) == DEFAULT_BACKENDS
    if tuple(names) == ("all",) or default:
        chosen, missing = [], []
        pool = [backend_registry.get(n) for n in names] if default else backend_registry.all_backends()
        for backend in pool:
            if backend.is_available():
                chosen.append(backend)
            else:
                missing.append(
                    {
                        "backend": backend.name,
                        "reason": backend.unavailable_reason(),
                        "install": backend.install_hint,
                        "needs_gpu": backend.needs_gpu,
                    }
                )
        if default and not chosen:
            pool[0].require()  # none of them: the first one's error, with how to install it
        return chosen, missing
    chosen = [backend_registry.get(n) for n in dict.fromkeys(names)]
    for backend in chosen:
        backend.require()
    return chosen, []


def model_bytes(path: Path) -> int:
    """Size on disk; an OpenVINO IR counts its .xml and .bin."""
    extra = path.with_suffix(".bin") if path.suffix == ".xml" else None
    return path.stat().st_size + (extra.stat().st_size if extra and extra.is_file() else 0)


RUN, REFERENCE = "run", "reference"  # whose model a measurement is: the run's, or the reference run's


def _plan(
    run: RunDir, chosen: list[Backend], config: BenchConfig, reference: RunDir | None = None
) -> tuple[list[tuple[Backend, str, str, str]], list]:
    """(backend, variant, file, whose) to measure, and what was skipped with why. With a reference run, each of
    the run's models is followed by the reference run's model of the same backend and variant."""
    plan, skipped = [], []
    wanted = config.variants or VARIANTS
    only = {tuple(k.split(":", 1)) for k in config.only}
    # named on the command line: a backend with none of its files in the run is said (it was left out silently)
    named = set(config.backends) - {"all"} if tuple(config.backends) != DEFAULT_BACKENDS else set()
    recorded = set(run.load_card().artifacts)  # what the export made: one of them gone is said, not skipped silently
    for backend in chosen:
        missing = []
        for variant in wanted:
            rel = backend.variants.get(variant)
            if rel is None or (only and (backend.name, variant) not in only):
                continue
            if run.file(rel).is_file():
                plan.append((backend, variant, rel, RUN))
                if reference is not None and reference.file(rel).is_file():
                    plan.append((backend, variant, rel, REFERENCE))
                elif reference is not None:
                    reason = f"{rel} is not in the reference run {reference.path}"
                    skipped.append({"backend": backend.name, "variant": variant, "reason": reason})
            elif rel in recorded:
                reason = run.gone(rel)
                skipped.append({"backend": backend.name, "variant": variant, "reason": reason})
            elif config.variants:  # asked for by name: say why it is not measured
                reason = f"{rel} is not in the run (run 'edgetransfer export'{' --fp16' if variant == 'fp16' else ''})"
                skipped.append({"backend": backend.name, "variant": variant, "reason": reason})
            else:
                missing.append((variant, rel))
        if backend.name in named and missing and not any(item[0] is backend for item in plan):
            variant, rel = missing[0]
            hint = " (exported with --no-openvino?)" if rel.startswith("openvino/") else ""
            reason = f"{rel} is not in the run{hint}: none of {backend.name}'s models is"
            skipped.append({"backend": backend.name, "variant": variant, "reason": reason})
    return plan, skipped


def model_identity(card: ModelCard) -> dict:
    """What makes two measurements of a model comparable: backbone, input shape, number of classes."""
    return {"backbone": card.backbone, "input": card.preprocessing.input_shape, "num_classes": card.num_classes}


def identity_diff(here: dict, there: dict) -> str:
    """``key X there, Y here`` for each difference of two :func:`model_identity` dicts ("" when they agree)."""
    return ", ".join(f"{k} {there.get(k)} there, {v} here" for k, v in here.items() if there.get(k) != v)


def open_reference(run: RunDir, path: str | None) -> RunDir | None:
    """The reference run, checked to hold the same model (backbone, input, classes) before anything is measured."""
    if path is None:
        return None
    reference = RunDir.open(path)
    diff = identity_diff(model_identity(run.load_card()), model_identity(reference.load_card()))
    if diff:
        raise UsageError(
            f"the reference run {reference.path} is of another model ({diff}): --reference-run times the same model "
            "built elsewhere (the main branch's export); to weigh two models, bench each and compare their bench.md"
        )
    return reference


def verify_files(plan: list[tuple[Backend, str, str, str]], runs: dict[str, RunDir | None]) -> None:
    """Every model file to be measured matches the sha256 its run's card records (an exported file must have one:
    a file of another run, copied in, has none or another), before anything is loaded."""
    cards: dict[str, ModelCard] = {}
    for whose, rel in dict.fromkeys((whose, rel) for _, _, rel, whose in plan):
        owner = runs[whose]
        if whose not in cards:
            cards[whose] = owner.load_card()
        verify_artifact(owner.path, rel, cards[whose].artifacts, required=rel != CHECKPOINT)


def _check_outputs(info: dict, owner: RunDir, rel: str, card: ModelCard) -> None:
    """A model whose first run gives another number of classes than its card has labels, or NaN, is refused
    before anything is measured."""
    if info["outputs"] != card.num_classes:
        raise RunDirError(
            f"{owner.file(rel)} gives {info['outputs']} scores per image but {owner.file(CARD)} lists "
            f"{card.num_classes} labels: the card is not this model's; re-run 'edgetransfer export {owner.path}'"
        )
    if not info["finite"]:
        raise RunDirError(
            f"{owner.file(rel)} gives NaN or infinite scores: the model is broken; fine-tune and export it again"
        )
