"""One trial of a search: an ordinary run directory made by the functions the commands use, finetune -> export ->
bench (as ``edgetransfer pipeline`` chains them), and the figures the search decides by.

The search decides on the validation split (the exported model's val top-1, as export measures it) and on the
latency the bench measures with the profile's settings, without accuracy (``accuracy=False``: the bench would score
the test split). The test top-1 that finetune and export record in the card is kept for the final report only."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetransfer.errors import EdgeTransferError
from edgetransfer.search.config import LATENCY_KEYS, SearchConfig


@dataclass(frozen=True)
class Candidate:
    """One point of the space."""

    backbone: str
    size: int
    int8: str  # an Int8Config mode: static, dynamic, or none (fp32)

    @property
    def variant(self) -> str:
        return "fp32" if self.int8 == "none" else "int8"

    @property
    def key(self) -> str:
        return f"{self.backbone}/{self.size}/{self.int8}"

    def folder(self, number: int) -> str:
        return f"{number:04d}-{self.backbone}-{self.size}px-{self.int8}"


@dataclass(frozen=True)
class Budget:
    """The latency the profile allows: which figure (p50/p90/p99 at the profile's batch sizes) and how many ms; and
    its other budgets a trial's model must meet too (model size, peak memory, throughput), as bench checks them."""

    key: str  # a bench budget key: p50_ms, p90_ms or p99_ms
    limit_ms: float  # math.inf when the profile sets no latency budget
    others: tuple[tuple[str, float], ...] = ()  # (bench budget key, limit): max_model_mb, max_peak_rss_mb, ...

    @classmethod
    def of(cls, profile) -> Budget:
        # the top-1 drop is bench's check of int8 against fp32 on the test split: the search ranks trials by their
        # int8 model's own validation top-1 instead (it counts what int8 lost), and reads no test image to choose
        others = tuple(
            (k, float(v)) for k, v in profile.budget.items() if k not in LATENCY_KEYS and k != "max_top1_drop_points"
        )
        key = next((k for k in LATENCY_KEYS if k in profile.budget), None)
        if key is None:
            fallback = f"{profile.objective or 'p50'}_ms" if profile.objective != "throughput" else "p50_ms"
            return cls(fallback, math.inf, others)
        return cls(key, profile.budget[key], others)

    @property
    def label(self) -> str:
        return self.key.removesuffix("_ms")

    def describe(self) -> str:
        from edgetransfer.bench.profiles import BUDGETS

        finite = math.isfinite(self.limit_ms)
        latency = f"{self.label} <= {self.limit_ms:g} ms" if finite else f"{self.label} (no latency budget)"
        rest = [
            f"{BUDGETS[k][0]} {'>=' if BUDGETS[k][2] else '<='} {limit:g} {BUDGETS[k][1]}" for k, limit in self.others
        ]
        return ", ".join([latency, *rest])


def failure_text(check: dict) -> str:
    """A failed bench budget check in a few words: ``model size 2.602 MB > 1 MB``."""
    from edgetransfer.bench.profiles import BUDGETS

    value = "not measured" if check["value"] is None else f"{check['value']:.4g} {check['unit']}"
    return f"{check['what']} {value} {'<' if BUDGETS[check['budget']][2] else '>'} {check['limit']:g} {check['unit']}"


class TrialError(EdgeTransferError):
    """A candidate could not be made or measured (its trial is marked failed; the search goes on)."""


def export_metric(config: SearchConfig, candidate: Candidate) -> str:
    """The card metric of the model the bench measures: onnx_int8, onnx_fp32, openvino_int8, openvino_fp32."""
    engine = "openvino" if config.backend.startswith("openvino") else "onnx"
    return f"{engine}_{candidate.variant}"


def int8_drop(metrics: dict, config: SearchConfig, candidate: Candidate) -> float | None:
    """The measured int8 model's validation top-1 below fp32 math's (see fp32_reference), in points as export's
    budget counts them (one image of 100 is exactly 1.0, not 1.0000000000000009); None for an fp32 candidate or a
    figure missing."""
    from edgetransfer.evaluation import fp32_reference, points

    if candidate.variant != "int8":
        return None
    fp32 = fp32_reference(metrics)[1]  # fp32 math, as export judges every int8 model
    return points(fp32.get("val_top1"), metrics.get(export_metric(config, candidate), {}).get("val_top1"))


# (--out, --data) of the searches whose data notes (bad files, near copies...) a trial of this process said: the next
# trials read the same folder, and each said them again between its progress lines
_DATA_SAID: set[tuple[str, str]] = set()


def run_trial(
    config: SearchConfig,
    candidate: Candidate,
    out: Path,
    profile,
    *,
    on_epoch: Callable[[int, dict], None] | None = None,
    devices: list | None = None,
    trained: Path | None = None,
) -> dict[str, Any]:
    """Fine-tune, export and bench ``candidate`` into the run directory ``out``; its figures as a flat dict. With
    ``devices`` (``--on``: (Device, Ssh) pairs) the latency is measured on each device instead of here, and the
    budget's figure is the worst of them. With ``trained`` (a finished trial of the same backbone and size, whose
    fine-tune is the one this candidate's would repeat: same data, options and seed) its fine-tuned run is copied
    and only exported and benched here: a QAT candidate is export's QAT on the fine-tuned model, as ``export
    --int8-method qat`` on a run."""
    from edgetransfer.export import ExportConfig, export
    from edgetransfer.finetune import FinetuneConfig, finetune
    from edgetransfer.quantize import Int8Config

    timings: dict[str, float] = {}
    started = time.perf_counter()
    given = {k: getattr(config, k) for k in ("epochs", "batch_size") if getattr(config, k) is not None}
    said = (config.out, config.data) in _DATA_SAID

    def trained_an_epoch(epoch: int, record: dict) -> None:  # the notes were said by then (not before: a trial
        _DATA_SAID.add((config.out, config.data))  # failing before reading the folder said none)
        if on_epoch is not None:
            on_epoch(epoch, record)

    if trained is not None:
        run = copy_fine_tuned(trained, out)
    else:
        run = finetune(
            FinetuneConfig(
                data=config.data,
                out=str(out),
                backbone=candidate.backbone,
                size=candidate.size,
                seed=config.seed,
                device=config.device,
                skip_bad=config.skip_bad,
                **given,  # else FinetuneConfig's defaults, as 'edgetransfer finetune'
            ),
            on_epoch=trained_an_epoch,
            data_notes=not said,
        )
    timings["finetune_s"] = time.perf_counter() - started
    openvino = config.backend.startswith("openvino")
    # every layer int8, no accuracy-aware escalation: export's ranking of layers by sensitivity re-quantizes the model
    # once per layer (66 s against a 6 s fine-tune on a 30-image split in search run 8, which then ended after that
    # one trial). No accuracy budget either (max_drop 100): the search ranks trials by their int8 model's own
    # validation top-1, which counts what int8 lost; a trial failed for its drop was a trial measured and thrown
    # away. A static one that loses more than export's budget has its QAT sibling queued (study._escalate).
    # --int8-methods auto, asked for by name, is export's own auto (its budget and steps)
    plain = {} if candidate.int8 == "auto" else {"accuracy_aware": False, "max_drop": 100.0}
    int8 = Int8Config(mode=candidate.int8, weights=config.int8_weights, weights_why=config.int8_weights_why, **plain)
    export(run, ExportConfig(openvino=openvino, int8=int8), by_search=True)  # (its own trial: no note to the user)
    timings["export_s"] = time.perf_counter() - started - timings["finetune_s"]
    latency = measure_latency(run, config, candidate, profile, devices=devices)
    timings["bench_s"] = time.perf_counter() - started - timings["finetune_s"] - timings["export_s"]
    card = run.load_card()
    metric = card.metrics.get(export_metric(config, candidate), {})
    drop = int8_drop(card.metrics, config, candidate)
    history = card.training.get("history", [])
    return {
        "run": str(out),
        "val_top1": metric.get("val_top1"),  # the exported model's, on the validation split: what the search ranks
        "torch_val_top1": card.metrics.get("torch", {}).get("val_top1"),
        "int8_drop_points": drop,  # validation top-1 below fp32 math's (the fp32 ONNX model), in points
        "test_top1": metric.get("test_top1"),  # for the final report only
        **latency,
        "epochs_run": len(history),
        "val_images": card.dataset.get("sizes", {}).get("val"),  # for the noise of val top-1
        "seconds": time.perf_counter() - started,
        **timings,
    }


def measure_latency(run, config: SearchConfig, candidate: Candidate, profile, *, devices: list | None = None) -> dict:
    """Bench the candidate's model in ``run`` with the profile's settings (here, or on each device of ``--on``) and
    check the profile's budgets: a trial's latency figures. A trial measures with it, and
    the search measures with it again a trial whose first reading was taken beside another trial (study._remeasure)."""
    from edgetransfer.bench import make_config
    from edgetransfer.bench.command import run_command
    from edgetransfer.bench.profiles import best_throughput, check_budgets
    from edgetransfer.bench.stats import noise_problem

    explicit = {
        "backends": (config.backend,),
        "variants": (candidate.variant,),
        "accuracy": False,  # the bench scores the test split; the search decides on validation
        "min_time": config.min_time,
    }
    bench_config = make_config(explicit, profile=profile)
    if devices:
        measured = _on_devices(run, bench_config, devices, config)
    else:
        measured = [("here", run_command(run, bench_config).document)]
    budget = Budget.of(profile)
    limit = {budget.key: budget.limit_ms if math.isfinite(budget.limit_ms) else 1e300}
    checked = []
    for where, document in measured:
        result = next(
            (r for r in document["results"] if (r["backend"], r["variant"]) == (config.backend, candidate.variant)),
            None,
        )
        if result is None:
            failed = "; ".join(f"{f['backend']} {f['variant']}: {f['error']}" for f in document["failed"])
            raise TrialError(
                f"the bench measured no {config.backend} {candidate.variant} model{' on ' + where if devices else ''} "
                f"({failed or 'skipped'})"
            )
        check = check_budgets([result], limit)[0]
        if check.get("value") is None:
            raise TrialError(
                f"the bench measured no {budget.key} for the {config.backend} model{' on ' + where if devices else ''}"
            )
        failures = [c for c in check_budgets([result], dict(budget.others)) if not c["passed"]]
        checked.append((check, result, where, failures))
    check, result, where, _ = max(checked, key=lambda c: c[0]["value"])  # the slowest device holds the budget
    over = [  # the profile's other budgets, on every device measured
        failure_text(c) + (f" on {w}" if devices else "") for _, _, w, failed in checked for c in failed
    ]
    smallest = min(result["latency"], key=lambda lat: lat["batch"])
    return {
        "latency_ms": check["value"],  # the budget's figure (worst over the profile's batch sizes)
        "latency_key": budget.key,
        "p50_ms": smallest["p50_ms"],  # at the profile's smallest batch size (latency_ms is the worst of them)
        "p99_ms": smallest["p99_ms"],
        "p50_p99_batch": smallest["batch"],
        "throughput_ips": best_throughput(result)[0],  # as the profile's min_throughput checks it
        "cv_percent": smallest.get("cv_percent"),
        # why its latency is too noisy to trust (bench's rule; a machine busy with another worker's trial), or None
        "latency_noisy": next((why for lat in result["latency"] if (why := noise_problem(lat))), None),
        "model_mb": result["model_bytes"] / 1e6,
        "precision": result["precision"],
        "budget_failures": over or None,  # the profile's budgets other than latency that the model breaks
        "measured_on": ", ".join(w for _, _, w, _ in checked) if devices else "here",
        "slowest_on": where,
    }


def copy_fine_tuned(trained: Path, out: Path):
    """A copy of the fine-tuned run ``trained`` in ``out`` (checkpoint, card, splits, plots), without what its export
    and bench made, so that the export here makes the only models in it."""
    import dataclasses
    import shutil

    from edgetransfer.export import EXPORT_METRICS, EXPORTED
    from edgetransfer.rundir import MEASURED, RunDir

    out.mkdir(parents=True)
    skip = {*EXPORTED, *MEASURED}
    for item in Path(trained).iterdir():
        if item.is_file() and item.name not in skip and not item.name.startswith("."):
            shutil.copy2(item, out / item.name)
    run = RunDir(out)
    card = run.load_card()
    # the recipe stays as it trained; its --out and a note of the source say where this copy is and came from
    training = {**card.training, "config": {**card.training.get("config", {}), "out": str(out)}}
    training["copied_from"] = str(trained)
    run.save_card(
        dataclasses.replace(
            card,
            training=training,
            metrics={k: v for k, v in card.metrics.items() if k not in EXPORT_METRICS},
            artifacts={k: v for k, v in card.artifacts.items() if k not in EXPORTED},
            export={},
            complete={k: v for k, v in card.complete.items() if k != "export"},
        )
    )
    return run


def _on_devices(run, bench_config, devices: list, config: SearchConfig) -> list[tuple[str, dict]]:
    """The trial's bench documents from each device of ``--on`` (a device that fails fails the trial)."""
    from edgetransfer.bench.remote import bench_devices

    wheelhouse = Path(config.wheelhouse) if config.wheelhouse else None
    outcomes = bench_devices(run, bench_config, devices, wheelhouse=wheelhouse)
    broken = [f"{o.device.label}: {o.error}" for o in outcomes if o.error or o.document is None]
    if broken:
        raise TrialError("cannot measure on the device: " + "; ".join(broken))
    return [(o.device.label, o.document) for o in outcomes]
