"""Torch-free inference for device apps: read the model card inside the model file, preprocess images exactly as
at evaluation time, run ONNX Runtime or OpenVINO, and return the top-k labels with softmax scores.

Only numpy, Pillow and the standard library are imported here; onnxruntime or openvino when a model is loaded
with it, through the same backends (edgetransfer/backends/) that export and bench use. Never torch or onnx:
``import edgetransfer.runtime`` must work where they are not installed (tests/test_runtime_only.py).

    classifier = Classifier("models/digits/model.onnx")
    for prediction in classifier.predict("a.png", top_k=3):  # a list of images gives a list of these
        print(prediction.label, prediction.score)
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
from PIL import Image

from edgetransfer.backends.openvino import open_ir
from edgetransfer.backends.ort import open_onnx
from edgetransfer.card import (
    ModelCard,
    Preprocessing,
    channels_problem,
    label_problems,
    size_problem,
    verify_artifact,
)
from edgetransfer.errors import DataError, UsageError
from edgetransfer.images import (  # the runtime's image functions, also importable from here
    IMAGE_SUFFIXES,
    RESAMPLING,
    ImageInput,
    find_images,
    open_image,
    preprocess,
    preprocess_image,
    to_rgb,
)
from edgetransfer.rundir import CARD

__all__ = [
    "BACKENDS",
    "IMAGE_SUFFIXES",
    "Classifier",
    "Prediction",
    "find_images",
    "open_image",
    "preprocess",
    "preprocess_image",
    "softmax",
    "as_probabilities",
    "to_rgb",
    "top_classes",
]

BACKENDS = ("ort", "openvino")


@dataclass(frozen=True)
class Prediction:
    """One of an image's top-k classes."""

    label: str
    index: int
    score: float  # softmax probability


# --------------------------------------------------------------------------- scores


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, classes) logits."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def as_probabilities(outputs: np.ndarray) -> np.ndarray:
    """A model's (N, classes) outputs as probabilities: softmax of logits, or the rows as they are where every row
    already is a distribution (non-negative, summing to 1: a model that ends in its own Softmax, as models from other
    tools often do; a second softmax squashed its 0.9999 to 0.58)."""
    rows = outputs.astype(np.float64)
    if outputs.size and (rows >= 0).all() and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3):
        return outputs
    return softmax(outputs)


def top_classes(scores: np.ndarray, labels: Sequence[str], k: int) -> list[list[Prediction]]:
    """The ``k`` best classes of each row of ``scores``, best first."""
    k = max(1, min(k, scores.shape[1]))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [
        [Prediction(labels[i], int(i), float(row[i])) for i in best] for row, best in zip(scores, order, strict=True)
    ]


# --------------------------------------------------------------------------- backends


# --------------------------------------------------------------------------- the classifier


class Classifier:
    """A model file with its labels and preprocessing, read from the card embedded in it.

    Args:
        model: a ``.onnx``, an OpenVINO ``.xml`` or a run directory (its ``model.onnx`` / ``openvino/model.xml``).
        backend: ``ort`` or ``openvino``; by default ``openvino`` for ``.xml`` files, else ``ort``.
        labels, mean, std: override the card's, or give them for a model without a card (labels default to the
            class indices).
        size: resize the shorter side to ``size`` and crop ``size`` x ``size`` (``resize`` sets the shorter side
            apart). Needed for a model without a card unless its input size is fixed.
        threads: intra-op threads (the backend's default: every core).
        device, precision: OpenVINO's device (``CPU``, ``GPU``...) and ``auto`` or ``fp32`` math.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        backend: str | None = None,
        labels: Sequence[str] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        size: int | None = None,
        resize: int | None = None,
        threads: int | None = None,
        device: str = "CPU",
        precision: str = "auto",
    ) -> None:
        path = Path(model)
        if backend is None:
            backend = "openvino" if path.suffix == ".xml" else "ort"
        if backend not in BACKENDS:
            raise UsageError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
        if threads is not None and threads < 1:
            raise UsageError(f"--threads must be at least 1, not {threads}")
        changes = _preprocessing_changes(mean=mean, std=std, size=size, resize=resize)
        if labels is not None:
            labels = tuple(labels)
            found = label_problems(labels, "labels (--labels)")
            if found:
                raise UsageError("; ".join(found[:3]))
        self.path, self.backend = _model_file(path, backend), backend
        _check_against_run(self.path)
        if backend == "ort":  # the same backends as export and bench, loaded the device's way
            self._model: Any = open_onnx(self.path, threads=threads)
        else:
            self._model = open_ir(self.path, threads=threads, device=device, precision=precision)
        card_json = self._model.card_json
        self.card = _read_card(card_json, self.path, labels=labels, changes=changes) if card_json else None
        self.preprocessing = _resolve_preprocessing(
            self.card, self._model.input_shape, self.path, mean=mean, std=std, size=size, resize=resize
        )
        self._labels = labels if labels is not None else (self.card.labels if self.card else None)
        self._labels_from = "given" if labels is not None else "in its card"
        if self._model.classes is not None:
            self._check_classes(self._model.classes)

    def _check_classes(self, classes: int) -> None:
        """The model's scores per image and the labels must agree (a card of another model is not read as true)."""
        if self._labels is not None and len(self._labels) != classes:
            raise UsageError(f"{self.path} has {classes} outputs but {len(self._labels)} labels {self._labels_from}")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """The engine's answer; its own error (an input it refuses: another dtype, layout or size) in one line (it
        was the engine's traceback)."""
        try:
            return self._model.run(batch)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors derive from Exception alone
            said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UsageError(
                f"{self.path} cannot run on {batch.shape} float32 input ({self.backend}): {said}"
            ) from None

    @property
    def labels(self) -> tuple[str, ...] | None:
        """Class names, or None for a model without a card or labels until its first run shows the class count."""
        return self._labels

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Run a preprocessed (N, 3, crop, crop) batch; a model with a fixed batch size gets it in chunks."""
        fixed = self._model.input_shape[0] if self._model.input_shape else None
        if not fixed or fixed == len(batch):
            out = self._run(batch)
        else:
            chunks = []
            for start in range(0, len(batch), fixed):
                chunk = batch[start : start + fixed]
                padded = np.concatenate([chunk, np.zeros((fixed - len(chunk), *chunk.shape[1:]), chunk.dtype)])
                chunks.append(self._run(padded)[: len(chunk)])
            out = np.concatenate(chunks)
        out = np.asarray(out, dtype=np.float32).reshape(len(batch), -1)
        if self._labels is None:
            self._labels = tuple(str(i) for i in range(out.shape[1]))
        self._check_classes(out.shape[1])
        if not np.isfinite(out).all():
            raise UsageError(
                f"{self.path} gives NaN or infinite scores: the model is broken (or fed with a broken preprocessing)"
            )
        return out

    def _probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Ours output logits (their card says how they were made); a model of another tool may end in a Softmax."""
        return softmax(outputs) if self.card is not None else as_probabilities(outputs)

    @overload
    def scores(self, images: ImageInput) -> np.ndarray: ...
    @overload
    def scores(self, images: Sequence[ImageInput]) -> np.ndarray: ...
    def scores(self, images):
        """Softmax probabilities: (classes,) for one image, (N, classes) for a list (see :meth:`predict`)."""
        batch, one = _images(images)
        if not batch:
            return np.zeros((0, len(self._labels or ())), np.float32)
        out = self._probabilities(self.logits(preprocess(batch, self.preprocessing)))
        return out[0] if one else out

    @overload
    def predict(self, images: ImageInput, *, top_k: int = 5) -> list[Prediction]: ...
    @overload
    def predict(self, images: Sequence[ImageInput], *, top_k: int = 5) -> list[list[Prediction]]: ...
    def predict(self, images, *, top_k=5):
        """The ``top_k`` classes, best first, of one image (a path as str or Path, a PIL image, or an HxWx3 uint8
        RGB array), or of each image of a list (or tuple) of those: one image gives one list of predictions, a list
        gives a list of them."""
        batch, one = _images(images)
        if not batch:
            return []
        scores = self._probabilities(self.logits(preprocess(batch, self.preprocessing)))
        found = top_classes(scores, self._labels or (), top_k)
        return found[0] if one else found

    def predict_files(
        self, paths: Iterable[str | Path], *, top_k: int = 5, batch_size: int = 16
    ) -> Iterator[tuple[Path, list[Prediction]]]:
        """(file, top-k) for every image named or found below the folders named, ``batch_size`` at a time."""
        files = find_images(paths)
        batch_size = max(1, batch_size)
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            yield from zip(chunk, self.predict(chunk, top_k=top_k), strict=True)


def _images(images: Any) -> tuple[list, bool]:
    """The images to run and whether one was given alone (a path, a PIL image, an array) rather than a list."""
    if isinstance(images, (str, Path, Image.Image, np.ndarray)):
        return [images], True
    if isinstance(images, (list, tuple)):
        return list(images), False
    raise DataError(
        f"cannot classify a {type(images).__name__}: pass a path, a PIL image, an HxWx3 uint8 array, or a list of those"
    )


def _fine_tuned(card: Path) -> bool:
    """Whether the run's card says its training finished (read as plain JSON: no torch, no pydantic here)."""
    try:
        complete = json.loads(card.read_text(encoding="utf-8")).get("complete")
        return complete is None or bool(complete.get("finetune"))  # no record of it at all: not known unfinished
    except (OSError, ValueError, AttributeError):
        return True  # unreadable: the export's own error will say what is wrong


def _processes(card: Path) -> int:
    """How many processes the run trains in (its card's world_size; 1 where unreadable)."""
    try:
        return int((json.loads(card.read_text(encoding="utf-8")).get("training") or {}).get("world_size") or 1)
    except (OSError, ValueError, AttributeError, TypeError):
        return 1


def _model_file(path: Path, backend: str) -> Path:
    run = path if path.is_dir() else None
    if run is not None:
        path = path / ("openvino/model.xml" if backend == "openvino" else "model.onnx")
    if not path.is_file():
        if run is not None and (run / "model.onnx").is_file():  # exported with --no-openvino
            raise UsageError(f"model file not found: {path}; the run has no OpenVINO IR: use the ort backend")
        if run is not None and (run / "card.json").is_file():  # a run directory that was never exported
            if not _fine_tuned(run / "card.json"):
                from edgetransfer.rundir import resume_command

                raise UsageError(
                    f"model file not found: {path}; training of {run} did not finish: continue it with "
                    f"'{resume_command(run, _processes(run / 'card.json'))}', then 'edgetransfer export "
                    f"{shlex.quote(str(run))}'"
                )
            raise UsageError(f"model file not found: {path}; export the run first: edgetransfer export {run}")
        if run is not None and (run / "model.xml").is_file():  # a run's openvino/ folder
            raise UsageError(f"model file not found: {path}; {run} holds an OpenVINO IR: pass {run / 'model.xml'}")
        if run is not None:  # an image folder given first (predict DATA IMAGE): not "model.onnx not found" alone
            raise UsageError(
                f"{run} is not a run folder (no card.json, no model.onnx): give a run folder or a model file first, "
                "then the images"
            )
        raise UsageError(f"model file not found: {path}")
    if path.suffix == ".bin" and path.with_suffix(".xml").is_file():
        raise UsageError(
            f"{path.name} holds an IR's weights: pass {path.with_suffix('.xml')} (with --backend openvino)"
        )
    if path.suffix not in (".onnx", ".xml"):
        raise UsageError(
            f"{path.name} is not a model file: pass a .onnx file, an OpenVINO IR's .xml (with --backend openvino) "
            "or the run folder"
        )
    if backend == "ort" and path.suffix != ".onnx":
        raise UsageError(f"backend 'ort' reads .onnx files, not {path.name}; use --backend openvino for IR")
    if path.suffix == ".onnx":
        from edgetransfer.safety import check_onnx_external_data

        check_onnx_external_data(path)  # without the onnx package (a runtime-only install), onnxruntime's own check
    return path


def _check_against_run(path: Path) -> None:
    """A model file of a run folder must be the one its card.json records (by sha256): a file copied in from another
    run is refused. A file alone (on a device, say) is read with the card embedded in it."""
    for root in (path.parent, path.parent.parent):
        if (root / CARD).is_file():
            try:
                data = json.loads((root / CARD).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError):
                return
            artifacts = data.get("artifacts") if isinstance(data, dict) else None
            verify_artifact(root, path.relative_to(root).as_posix(), artifacts)
            return


def _read_card(text: str, path: Path, *, labels: tuple[str, ...] | None, changes: dict[str, Any]) -> ModelCard:
    """The card embedded in a model file, with the labels and preprocessing given in place of its own (so that a
    card with bad values can be overridden), checked as every card is."""
    source = f"the card in {path}"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and labels is not None:
        data = {**data, "labels": list(labels)}
    if isinstance(data, dict) and isinstance(data.get("preprocessing"), dict):
        data = {**data, "preprocessing": {**data["preprocessing"], **changes}}
    return ModelCard.from_dict(data, source=source)


def _preprocessing_changes(
    *,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    size: int | None,
    resize: int | None,
) -> dict[str, Any]:
    """The preprocessing values given, checked: 3 finite means, 3 finite stds above 0, sizes of 1 to 4096 pixels."""
    changes: dict[str, Any] = {}
    if mean is not None:
        changes["mean"] = _triple("mean", mean)
    if std is not None:
        changes["std"] = _triple("std", std, positive=True)
    for name, value in (("size", size), ("resize", resize)):
        if value is not None and size_problem(name, value):
            raise UsageError(f"{size_problem(f'{name} (--{name})', value)}")
    if size is not None:
        changes.update(crop=size, resize=size)
    if resize is not None:
        changes["resize"] = resize
    return changes


def _resolve_preprocessing(
    card: ModelCard | None,
    input_shape: list[int | None],
    path: Path,
    *,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    size: int | None,
    resize: int | None,
) -> Preprocessing:
    """The card's preprocessing with the values given replacing its own; without a card, the values given."""
    if len(input_shape) != 4 or input_shape[1] not in (3, None):
        shown = ", ".join("?" if d is None else str(d) for d in input_shape)
        raise UsageError(f"{path} takes input of shape ({shown}); only (N, 3, H, W) RGB image models are supported")
    if input_shape[2] and input_shape[3] and input_shape[2] != input_shape[3]:  # the engine refused it at run time
        raise UsageError(
            f"{path} takes {input_shape[3]}x{input_shape[2]} (width x height) images; only square inputs are supported"
        )
    fixed = input_shape[2] if len(input_shape) == 4 and input_shape[2] and input_shape[2] == input_shape[3] else None
    if card is None:
        missing = [name for name, value in (("mean", mean), ("std", std)) if value is None]
        if size is None and fixed is None:
            missing.append("size")
        if missing:
            raise UsageError(
                f"{path} carries no edgetransfer model card, so its preprocessing is unknown: pass "
                f"{', '.join(missing)} (--{', --'.join(missing)} on the command line)"
            )
        size = size or fixed
    pre = card.preprocessing if card else Preprocessing(resize=size, crop=size)  # type: ignore[arg-type]
    pre = dataclasses.replace(pre, **_preprocessing_changes(mean=mean, std=std, size=size, resize=resize))
    if pre.interpolation not in RESAMPLING:
        raise UsageError(f"interpolation {pre.interpolation!r} is not supported; known: {', '.join(RESAMPLING)}")
    if pre.color != "RGB" or pre.layout != "NCHW":
        raise UsageError(f"only RGB NCHW input is supported, not {pre.color} {pre.layout}")
    if fixed and fixed != pre.crop:
        raise UsageError(f"{path} takes {fixed}x{fixed} images but the preprocessing crops {pre.crop}x{pre.crop}")
    if resize is not None and pre.resize < pre.crop:  # the crop would reach past the image: a zero-padded border
        raise UsageError(
            f"resize (--resize) {pre.resize} is smaller than the {pre.crop}x{pre.crop} crop; give {pre.crop} or more"
        )
    return pre


def _triple(name: str, values: Sequence[float], *, positive: bool = False) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise UsageError(f"{name} (--{name}) takes 3 numbers, not {values!r}") from None
    problem = channels_problem(f"{name} (--{name})", values, positive=positive)
    if problem:
        raise UsageError(problem)
    return values  # type: ignore[return-value]
