"""How long a candidate's trial will take, predicted from the trials this search has measured, so that a search with
a time budget starts only trials that can end within it.

A trial is finetune + export + bench. Fine-tuning and export (calibration, validation passes) scale with the
network's work per image, taken as its forward FLOPs at the candidate's input size (counted once per backbone and
size by PyTorch's ``FlopCounterMode`` on an untrained copy); the bench takes about the same time for any model (its
``min_time``). Quantization-aware training adds its own epochs to export (and may to export's ``auto``, which
escalates to it: its prediction is the longer of the two). The prediction scales the measured trial
nearest in work (of the same int8 method where there is one). It is an estimate: networks of equal FLOPs train at
different speeds on a CPU (depthwise convolutions), so a search can still end a little past its budget."""

from __future__ import annotations

import functools
import math
from typing import Any

QAT_EPOCH_COST = 3.0  # one QAT epoch (fake quantization, observers) in plain training epochs, as measured here


@functools.lru_cache(maxsize=64)
def gflops(backbone: str, size: int) -> float:
    """Forward GFLOPs of ``backbone`` (with a 10-class head) for one ``size`` x ``size`` image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from edgetransfer import backbones

    model, _ = backbones.build(backbone, 10, pretrained=False)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size))
    return max(counter.get_total_flops() / 1e9, 1e-6)


def _nearest(rows: list[dict], work: float) -> dict:
    return min(rows, key=lambda r: abs(math.log(work / gflops(r["backbone"], r["size"]))))


def predict(
    candidate,
    measured: list[dict[str, Any]],
    *,
    max_epochs: int | None = None,
    qat_epochs: int = 1,
    fine_tuned: bool = False,
) -> float | None:
    """Seconds the trial of ``candidate`` (backbone, size, int8) will take, from ``measured`` trials (rows with
    backbone, size, int8, epochs_run, finetune_s, export_s, bench_s); None before any trial was measured. Early
    stopping ends trials after different numbers of epochs, so fine-tuning is scaled per epoch to ``max_epochs``
    (the most a trial may run; the prediction is then an upper bound of that part). ``fine_tuned``: the trial reuses
    a finished fine-tune of its backbone and size (export and bench only)."""
    usable = [r for r in measured if all(r.get(k) is not None for k in ("finetune_s", "export_s", "bench_s"))]
    if not usable:
        return None
    work = gflops(candidate.backbone, candidate.size)
    ref = _nearest(usable, work)
    finetune = ref["finetune_s"] * work / gflops(ref["backbone"], ref["size"])
    per_epoch = finetune / max(ref.get("epochs_run") or 1, 1)  # one plain epoch of this candidate
    if max_epochs and ref.get("epochs_run"):
        finetune *= max(max_epochs / ref["epochs_run"], 1.0)
    qat = QAT_EPOCH_COST * qat_epochs * per_epoch  # what QAT's epochs add to an export without them

    def export_as(method: str) -> float:
        same = [r for r in usable if r["int8"] == method]
        near = _nearest(same, work) if same else ref
        return near["export_s"] * work / gflops(near["backbone"], near["size"]) + (
            qat if method == "qat" and near["int8"] != "qat" else 0.0  # (an auto trial may have kept static)
        )

    export = export_as(candidate.int8)
    if candidate.int8 == "auto":  # export's auto runs QAT where static fails: a trial may take as long as QAT's
        export = max(export, export_as("qat"))
    # the bench takes about the same time for any model; the smallest measured, since the first trial's may include
    # a one-time setup (with --on: the device's runtime venv)
    return (0.0 if fine_tuned else finetune) + export + min(r["bench_s"] for r in usable)
