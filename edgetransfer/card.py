"""ModelCard: everything needed to feed a model and to know how it was made, in one JSON document.

The same card is written as ``card.json`` in a run directory, into ``model.onnx`` as a
``metadata_props`` entry and into an OpenVINO IR's ``rt_info``, so any single file says how to use it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from edgetransfer.errors import RunDirError

SCHEMA_VERSION = 1
ONNX_METADATA_KEY = "edgetransfer.card"
OPENVINO_RT_INFO_PATH = ("edgetransfer", "card")
ONNX_DECODE_KEY = "edgetransfer.decode"  # how an image file becomes the 8-bit RGB image the card's preprocessing
OPENVINO_DECODE_PATH = ("edgetransfer", "decode")  # starts from (an app that skipped it read 16-bit PNGs as white)
# In the order applied; each as edgetransfer.images (to_rgb, open_image) does it and training did it.
DECODE = {
    "orientation": "apply the EXIF orientation tag (274) first, as Pillow's ImageOps.exif_transpose",
    "modes": "grey, palette, CMYK and the like to RGB as Pillow's convert('RGB'); alpha dropped (not blended)",
    "16_bit": "16-bit grey (I;16): value / 257, rounded (not clipped); 32-bit integer or float grey: as 8-bit values "
    "where all fit 0..255, else / 257; a float image whose values all lie in 0..1: times 255",
    "jpeg_scale": "a JPEG whose sides are both at least 4x preprocessing.resize is decoded at 1/2, 1/4 or 1/8 scale, "
    "the smallest keeping both sides at least 2x resize (Pillow's draft('RGB', (2 * resize, 2 * resize)))",
    "strips": "an image whose longer side is over 50x its shorter is not classified (resized, a 1x40000 strip "
    "would take gigabytes)",
    "resize": "shorter side to preprocessing.resize (interpolation, antialiased; width first, then height; the "
    "longer side int(resize * long / short)), then the centre crop (offsets round((h - crop) / 2), round((w - crop) "
    "/ 2), half to even; zero padding where smaller), then scale, mean, std",
}
MAX_SIZE = 4096  # pixels: the largest resize or crop a card may ask for
MAX_LABEL_CHARS = 200
MAX_LABELS = 100_000  # classes a card may list
MAX_CARD_BYTES = 1_000_000  # a card is a few kB; a larger one is refused before it is parsed


def finite(value: Any) -> bool:
    """Whether ``value`` is a JSON number (not a bool) that is neither NaN nor infinite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def size_problem(name: str, value: Any) -> str | None:
    """``name is X (expected ...)`` unless ``value`` is a whole number of pixels from 1 to :data:`MAX_SIZE`."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SIZE:
        return None
    return f"{name} is {value!r} (expected a whole number of pixels from 1 to {MAX_SIZE})"


def channels_problem(name: str, values: Any, *, positive: bool = False) -> str | None:
    """``name is X (expected ...)`` unless ``values`` are 3 finite numbers (above 0 with ``positive``)."""
    values = list(values) if isinstance(values, (list, tuple)) else values
    if isinstance(values, list) and len(values) == 3 and all(finite(v) and (v > 0 or not positive) for v in values):
        return None
    return f"{name} is {values!r} (expected 3 finite numbers{' above 0' if positive else ''}, R,G,B)"


def label_problems(labels: Sequence[Any], name: str = "labels") -> list[str]:
    """What is wrong with a list of class names: empty, a name that is not a short non-empty string, duplicates."""
    if not labels:
        return [f"{name} is empty (expected one name per class)"]
    found = []
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL_CHARS:
            shown = repr(label) if not isinstance(label, str) or len(label) <= 40 else f"{len(label)} characters"
            found.append(f"{name}[{i}] is {shown} (expected a name of 1 to {MAX_LABEL_CHARS} characters)")
    twice = sorted(k for k, n in Counter(x for x in labels if isinstance(x, str)).items() if n > 1)
    if twice:
        found.append(f"{name} name {', '.join(map(repr, twice[:3]))} more than once (expected distinct names)")
    return found


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
    export: dict[str, Any] = field(default_factory=dict)  # the resolved export config and the passes that ran
    versions: dict[str, str] = field(default_factory=dict)
    complete: dict[str, bool] = field(default_factory=dict)  # stage -> finished
    schema_version: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The card as strict JSON (what a device app's parser reads): a NaN or infinite figure is written as null."""
        return json.dumps(_finite(self.to_dict()), indent=2, sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "model card") -> ModelCard:
        """Build a card from its JSON form, checked against :func:`card_schema`: an unknown schema version, a
        missing or unknown field, labels or preprocessing no model can be fed with are one :class:`RunDirError`
        line that starts with ``source`` and names the key."""
        if not isinstance(data, dict):
            raise RunDirError(f"{source} is not a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION and not {"labels", "backbone", "preprocessing"} & data.keys():
            # another JSON document (a bench.json renamed, {}): not "a card of another version" (a new user's)
            raise RunDirError(f"{source} is not a model card (no labels, backbone or preprocessing)")
        if version != SCHEMA_VERSION:
            raise RunDirError(
                f"{source} has schema_version {version!r}; this edgetransfer reads version {SCHEMA_VERSION}"
            )
        size = len(json.dumps(data, default=repr))  # a card from a model file arrives parsed: measured again
        if size > MAX_CARD_BYTES:
            raise RunDirError(f"{source} is {size:,} characters (expected a card of at most {MAX_CARD_BYTES:,})")
        from edgetransfer.schemas import validate

        values = validate(card_schema(), data, source, error=RunDirError).model_dump()
        return cls(**{**values, "preprocessing": Preprocessing(**values["preprocessing"])})

    @classmethod
    def from_json(cls, text: str, *, source: str = "model card") -> ModelCard:
        """A card from JSON text of at most :data:`MAX_CARD_BYTES` (a card is a few kB; more is not a card)."""
        if len(text) > MAX_CARD_BYTES:
            raise RunDirError(f"{source} is {len(text):,} characters (expected a card of at most {MAX_CARD_BYTES:,})")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{source} is not valid JSON: {exc}") from None
        except RecursionError:
            raise RunDirError(f"{source} is nested too deeply (not a model card)") from None
        return cls.from_dict(data, source=source)

    def with_metrics(self, variant: str, **values: float) -> ModelCard:
        """A copy with ``values`` merged into ``metrics[variant]``."""
        metrics = {**self.metrics, variant: {**self.metrics.get(variant, {}), **values}}
        return dataclasses.replace(self, metrics=metrics)


@functools.cache
def card_schema():
    """The card's schema, DERIVED from the :class:`ModelCard` and :class:`Preprocessing` dataclasses (a field added
    there is checked at once): labels 1 to :data:`MAX_LABEL_CHARS` characters each and distinct, sizes of 1 to
    :data:`MAX_SIZE` pixels, 3 finite means, 3 finite stds above 0, a scale above 0, names of bounded length."""
    from pydantic import AfterValidator, Field, Strict, StringConstraints

    from edgetransfer.schemas import Name, dataclass_schema

    pixels = Field(ge=1, le=MAX_SIZE)
    channel = Annotated[float, Strict(), Field(ge=-1e3, le=1e3, allow_inf_nan=False)]
    spread = Annotated[float, Strict(), Field(gt=0, le=1e3, allow_inf_nan=False)]
    pre = dataclass_schema(
        Preprocessing,
        "PreprocessingSchema",
        constraints={
            "resize": pixels,
            "crop": pixels,
            "mean": Annotated[tuple[channel, channel, channel], Strict(False)],
            "std": Annotated[tuple[spread, spread, spread], Strict(False)],
            "scale": Field(gt=0, le=1),
            **{k: Name for k in ("interpolation", "color", "layout")},
        },
    )
    label = Annotated[
        str, Strict(), StringConstraints(min_length=1, max_length=MAX_LABEL_CHARS), AfterValidator(_not_blank)
    ]
    labels = Annotated[
        tuple[label, ...], Strict(False), Field(min_length=1, max_length=MAX_LABELS), AfterValidator(_distinct)
    ]
    return dataclass_schema(
        ModelCard,
        "CardSchema",
        constraints={
            "labels": labels,
            "preprocessing": pre,
            "backbone": Name,
            "schema_version": Literal[SCHEMA_VERSION],
        },
    )


def _not_blank(label: str) -> str:
    if not label.strip():
        raise ValueError(f"expected a name, not blank: {label!r}")
    return label


def _distinct(labels: tuple[str, ...]) -> tuple[str, ...]:
    twice = sorted(k for k, n in Counter(labels).items() if n > 1)
    if twice:
        raise ValueError(f"expected distinct names; {', '.join(map(repr, twice[:3]))} more than once")
    return labels


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (not valid JSON) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# the card's entries that hold a path on the training machine: (section, keys inside it)
LOCAL_PATHS = (
    ("dataset", ("path",)),
    ("weights", ("source",)),
    ("training", ("config", "data")),
    ("training", ("config", "out")),
    ("training", ("config", "weights")),
    ("training", ("config", "adapt_bn")),
    ("training", ("config", "unlabeled")),
    ("training", ("config", "target_val")),
    ("training", ("copied_from",)),  # a search trial's fine-tune, exported again
    ("export", ("config", "data")),
    ("export", ("config", "int8", "calibration_dir")),
)
# in each artifact's quantization record: where its calibration images came from (a --calib folder)
ARTIFACT_PATHS = ("calibration_source", "ort_calibration_source")


def for_model_files(card: ModelCard) -> ModelCard:
    """The card as the model files carry it: each path on the training machine (the data folder, the output folder,
    a weights file) reduced to its last component. A model file travels to devices and to other people, and
    ``/home/alice/clients/acme/faces`` says more than the model needs to; the run's card.json keeps the full paths
    (resume and export read them there)."""
    import copy
    from pathlib import PurePosixPath, PureWindowsPath

    def named(value: Any) -> Any:
        if not isinstance(value, str) or not value or "://" in value:  # a URL is where anyone can look
            return value
        pure = PureWindowsPath(value) if PureWindowsPath(value).drive else PurePosixPath(value)
        return pure.name or value

    def absolute(value: Any) -> bool:
        return isinstance(value, str) and (value.startswith(("/", "~", "\\")) or bool(PureWindowsPath(value).drive))

    def sweep(value: Any) -> Any:  # any other absolute path, in a record added later: its name too
        if isinstance(value, dict):  # not inside a quantization record: ONNX node names start with "/" too
            # (kept_in_float's "/features/features.0/features.0.0/Conv" became "Conv"); its paths are listed
            return {k: v if k == "quantization" else sweep(v) for k, v in value.items()}
        if isinstance(value, list):
            return [sweep(v) for v in value]
        return named(value) if absolute(value) else value

    names = {section for section, _ in LOCAL_PATHS} | {"artifacts"}
    sections = {name: copy.deepcopy(getattr(card, name)) for name in names}
    for section, keys in LOCAL_PATHS:
        holder = sections[section]
        for key in keys[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and keys[-1] in holder:
            holder[keys[-1]] = named(holder[keys[-1]])
    for record in sections["artifacts"].values():
        quantization = record.get("quantization") if isinstance(record, dict) else None
        for key in ARTIFACT_PATHS if isinstance(quantization, dict) else ():
            if key in quantization:
                quantization[key] = named(quantization[key])
    return dataclasses.replace(card, **{name: sweep(value) for name, value in sections.items()})


def embed_in_onnx(model: Any, card: ModelCard) -> None:
    """Write the card into an ``onnx.ModelProto``'s ``metadata_props`` (replacing an older one)."""
    for prop in list(model.metadata_props):
        if prop.key == ONNX_METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key = ONNX_METADATA_KEY
    entry.value = card.to_json()
    for prop in list(model.metadata_props):
        if prop.key == ONNX_DECODE_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_DECODE_KEY, decode_json()


def decode_json() -> str:
    """:data:`DECODE` as the model files carry it (beside the card)."""
    return json.dumps(DECODE, indent=2)


def read_from_onnx_metadata(metadata: dict[str, str], *, source: str = "model card") -> ModelCard:
    """Read a card from ONNX metadata as a dict (``onnx`` proto props or onnxruntime's custom_metadata_map)."""
    if ONNX_METADATA_KEY not in metadata:
        raise RunDirError(f"the ONNX model carries no '{ONNX_METADATA_KEY}' metadata (not exported by edgetransfer)")
    return ModelCard.from_json(metadata[ONNX_METADATA_KEY], source=source)


def verify_artifact(root: Path, rel: str, artifacts: Any, *, required: bool = False) -> None:
    """Raise a :class:`RunDirError` unless the file ``rel`` of the run ``root`` matches the sha256 that its card
    records in ``artifacts``; a file with no sha256 recorded passes unless ``required``."""
    from edgetransfer.rundir import CARD, sha256_file
    from edgetransfer.safety import check_ir_weights

    entry = artifacts.get(rel) if isinstance(artifacts, dict) else None
    recorded = entry.get("sha256") if isinstance(entry, dict) else None
    fix = "fine-tune the run again" if rel.endswith(".safetensors") else f"re-run 'edgetransfer export {root}'"
    check_ir_weights(root / rel, fix=fix, error=RunDirError)
    if not isinstance(recorded, str):
        if required:
            raise RunDirError(
                f"{root / rel} has no sha256 recorded in {root / CARD}, so it may be another run's; {fix}"
            )
        return
    if sha256_file(root / rel) != recorded:
        raise RunDirError(f"{root / rel} does not match the sha256 recorded in {root / CARD}; {fix}")
    weights = entry.get("bin_sha256")  # an OpenVINO IR's .bin beside its .xml
    if isinstance(weights, str) and sha256_file((root / rel).with_suffix(".bin")) != weights:
        raise RunDirError(
            f"{(root / rel).with_suffix('.bin')} does not match the sha256 recorded in {root / CARD}; {fix}"
        )
