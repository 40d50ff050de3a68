"""ModelCard: everything needed to feed a model and to know how it was made, in one JSON document.

The same card is written as ``card.json`` in a run directory, into ``model.onnx`` as a
``metadata_props`` entry and into an OpenVINO IR's ``rt_info``, so any single file says how to use it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from edgetransfer.errors import RunDirError

SCHEMA_VERSION = 1
ONNX_METADATA_KEY = "edgetransfer.card"
OPENVINO_RT_INFO_PATH = ("edgetransfer", "card")


@dataclass(frozen=True)
class Preprocessing:
    """How raw pixels become the model's input tensor."""

    resize: int  # shorter side is resized to this many pixels
    crop: int  # then a centre square of this size is cut out
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    color: str = "RGB"  # channel order of the tensor
    layout: str = "NCHW"
    scale: float = 1.0 / 255.0  # uint8 pixel -> [0, 1] before mean/std

    @property
    def input_shape(self) -> list[Any]:
        """The model's input shape with a dynamic batch axis."""
        return ["batch", 3, self.crop, self.crop]


@dataclass(frozen=True)
class ModelCard:
    """What a run produced and how to feed it. Update it with :func:`dataclasses.replace`."""

    labels: tuple[str, ...]
    preprocessing: Preprocessing
    backbone: str
    weights: dict[str, Any]  # source, sha256
    dataset: dict[str, Any]  # path, fingerprint, split sizes, seed
    training: dict[str, Any] = field(default_factory=dict)  # resolved config and outcome
    metrics: dict[str, Any] = field(default_factory=dict)  # variant -> {split_top1: value, ...}
    artifacts: dict[str, Any] = field(default_factory=dict)  # name -> {file, sha256, bytes, ...}
    versions: dict[str, str] = field(default_factory=dict)
    complete: dict[str, bool] = field(default_factory=dict)  # stage -> finished
    schema_version: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Build a card from its JSON form; unknown schemas and missing fields are a :class:`RunDirError`."""
        if not isinstance(data, dict):
            raise RunDirError("model card is not a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise RunDirError(
                f"model card has schema_version {version!r}; this edgetransfer reads version {SCHEMA_VERSION}"
            )
        try:
            pre = data["preprocessing"]
            pre = Preprocessing(
                **{**pre, "mean": tuple(pre["mean"]), "std": tuple(pre["std"])}  # JSON has lists
            )
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = set(data) - names
            if unknown:
                raise RunDirError(f"model card has unknown fields: {', '.join(sorted(unknown))}")
            return cls(**{**data, "preprocessing": pre, "labels": tuple(data["labels"])})
        except (KeyError, TypeError) as exc:
            raise RunDirError(f"model card is incomplete or malformed: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RunDirError(f"model card is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def with_metrics(self, variant: str, **values: float) -> ModelCard:
        """A copy with ``values`` merged into ``metrics[variant]``."""
        metrics = {**self.metrics, variant: {**self.metrics.get(variant, {}), **values}}
        return dataclasses.replace(self, metrics=metrics)


def embed_in_onnx(model: Any, card: ModelCard) -> None:
    """Write the card into an ``onnx.ModelProto``'s ``metadata_props`` (replacing an older one)."""
    for prop in list(model.metadata_props):
        if prop.key == ONNX_METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key = ONNX_METADATA_KEY
    entry.value = card.to_json()


def read_from_onnx_metadata(metadata: dict[str, str]) -> ModelCard:
    """Read a card from ONNX metadata as a dict (``onnx`` proto props or onnxruntime's custom_metadata_map)."""
    if ONNX_METADATA_KEY not in metadata:
        raise RunDirError(f"the ONNX model carries no '{ONNX_METADATA_KEY}' metadata (not exported by edgetransfer)")
    return ModelCard.from_json(metadata[ONNX_METADATA_KEY])
