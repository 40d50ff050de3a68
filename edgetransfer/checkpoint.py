"""A run's model in and out: score it on a split, save and load checkpoints (checked: sha256, shape, NaN)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgetransfer import backbones
from edgetransfer.card import ModelCard, Preprocessing, verify_artifact
from edgetransfer.data import Sample
from edgetransfer.errors import RunDirError
from edgetransfer.rundir import CHECKPOINT, RunDir, atomic_path, library_write_errors, write_errors_said

if TYPE_CHECKING:
    import torch


def evaluate(
    model: torch.nn.Module, samples: tuple[Sample, ...], pre: Preprocessing, device: str, batch_size: int = 64
) -> float:
    """Top-1 accuracy (0..1) of ``model`` on ``samples`` with the evaluation transform."""
    return score(model, samples, pre, device, batch_size)[0]


def score(model, samples, pre, device, batch_size: int = 64) -> tuple[float, list[int], float]:
    """Top-1 accuracy, the predicted classes and the mean cross-entropy loss of ``model`` on ``samples``, each
    image decoded and resized once, as the device runtime does (:mod:`edgetransfer.decoded`)."""
    from edgetransfer.decoded import Decoded
    from edgetransfer.decoded import score as score_decoded

    return score_decoded(model, Decoded(samples, pre), device, batch_size=batch_size)


def save_checkpoint(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    with write_errors_said(path), atomic_path(path) as tmp, library_write_errors(tmp):  # a full disk: one line
        save_file(state, str(tmp), metadata=metadata)


def non_finite(model: torch.nn.Module) -> str | None:
    """The name of the first weight or BatchNorm statistic holding NaN or infinity, or None."""
    import torch

    for name, tensor in unwrap(model).state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def unwrap(model):
    return getattr(model, "module", model)


def load_model(run: RunDir, card: ModelCard, checkpoint: str = CHECKPOINT) -> torch.nn.Module:
    """The fine-tuned model of a run, in eval mode on the CPU."""
    path = run.file(checkpoint)
    if checkpoint == CHECKPOINT:
        verify_artifact(run.path, checkpoint, card.artifacts)
    model, _ = backbones.build(card.backbone, card.num_classes, pretrained=False)
    try:
        model.load_state_dict(backbones.read_safetensors(path))
    except RuntimeError as exc:
        raise RunDirError(f"{path} does not fit a {card.backbone} with {card.num_classes} classes: {exc}") from None
    broken = non_finite(model)
    if broken:
        raise RunDirError(f"{path} holds NaN or infinite weights ({broken}); fine-tune the run again")
    return model.eval()


def confusion(samples: tuple[Sample, ...], predictions: list[int], labels: tuple[str, ...]) -> dict:
    """The test confusion matrix (rows: true class, columns: predicted) and per-class accuracy (None for a class the
    test split has no images of)."""
    n = len(labels)
    matrix = [[0] * n for _ in range(n)]
    for sample, predicted in zip(samples, predictions, strict=True):
        matrix[sample.label][predicted] += 1
    per_class = {labels[i]: (matrix[i][i] / sum(matrix[i]) if sum(matrix[i]) else None) for i in range(n)}
    return {"test_confusion": matrix, "test_per_class_top1": per_class}
