"""What every export pass shares: the :class:`Pass` (its own frozen config in, :class:`Artifact` records out), the
registry that names the passes, and the :class:`ExportContext` a pass reads from (the run, its split decoded once,
the PyTorch reference, the artifacts of the passes before it).

A pass is about a hundred lines with one :meth:`Pass.run`, as Olive's passes are: adding one (another int8
method) means a new module that registers itself, and nothing else changes.
"""

from __future__ import annotations

import dataclasses
import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgetransfer import console
from edgetransfer.errors import DataError, ExportError
from edgetransfer.evaluation import Decoded, evaluate, measured, parity, spaced, top1_text
from edgetransfer.registry import Registry

if TYPE_CHECKING:
    from edgetransfer.backends.base import Session
    from edgetransfer.card import ModelCard
    from edgetransfer.data import Splits
    from edgetransfer.rundir import RunDir

PARITY_IMAGES = 64
FEW_CALIBRATION = 32  # fewer --calib images than this is said (a --calib folder of one image was not)


@dataclass
class Artifact:
    """One file a pass made in the staging folder: its name in the run (``file``), what the card records about it
    (``record``), and for an OpenVINO IR the in-memory model that is saved, with the final card, at commit."""

    file: str
    record: dict[str, Any] = field(default_factory=dict)
    ov_model: Any = None
    compress_to_fp16: bool = False


class Pass(ABC):
    """One export step: ``config`` (a frozen dataclass, or None) in, artifacts out. ``needs`` names the artifacts
    (files) of earlier passes it reads; the driver checks they were made."""

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    calibrates: ClassVar[bool] = False  # reads ctx.calibration (resolved, and checked, before any pass runs)

    def __init__(self, config: Any = None) -> None:
        self.config = config

    @abstractmethod
    def run(self, ctx: ExportContext) -> list[Artifact]:
        """Make, check and score this pass's files in ``ctx.stage``; raise an :class:`EdgeTransferError` to stop
        the export (nothing reaches the run)."""

    def describe(self) -> dict[str, Any]:
        """The pass and its resolved config, as the card records them."""
        config = dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else None
        return {"pass": self.name, "config": config}


PASSES: Registry[type[Pass]] = Registry("export pass")


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: add a pass under its ``name`` (a name registered twice is an error)."""
    PASSES.register(cls.name, cls)
    return cls


INT8_METHODS: Registry[type[Pass]] = Registry("int8 method")


def int8_method(method: str):
    """Class decorator: the pass that makes ``model.int8.onnx`` for ``--int8-method method``."""

    def add(cls: type[Pass]) -> type[Pass]:
        INT8_METHODS.register(method, cls)
        return cls

    return add


def random_inputs(pre, count: int, seed: int = 0) -> Decoded:
    """``count`` inputs drawn from a standard normal distribution, the scale of normalised images: what parity is
    checked on where no image of the run is at hand."""
    import numpy as np

    from edgetransfer.data import Sample

    images = np.random.default_rng(seed).standard_normal((count, 3, pre.crop, pre.crop)).astype(np.float32)
    return Decoded([Sample(Path(f"<random input {i}>"), 0) for i in range(count)], pre, images=images)


class ExportContext:
    """What the passes of one export read and add to. Images are decoded once here and shared by every pass."""

    def __init__(self, run: RunDir, card: ModelCard, splits: Splits, stage: Path, config: Any) -> None:
        self.run, self.card, self.splits, self.stage, self.config = run, card, splits, stage, config
        self.pre = card.preprocessing
        self.val = Decoded(splits.val, self.pre)
        self.test = Decoded(splits.test, self.pre)
        self.checked_on = "images"
        if len(self.val):
            self.check_set = self.val.spread(PARITY_IMAGES)
        elif splits.train:
            self.check_set = Decoded([splits.train[i] for i in spaced(len(splits.train), PARITY_IMAGES)], self.pre)
        else:  # the run's images are not here (export --no-int8 of a run trained on another machine)
            self.check_set, self.checked_on = random_inputs(self.pre, PARITY_IMAGES), "random inputs"
        self.metrics: dict[str, dict] = {}
        self.artifacts: dict[str, Artifact] = {}
        self._said_unchecked = False
        self.calibration_skipped: tuple[str, ...] = ()  # a --calib folder's bad files passed over (--skip-bad)

    @functools.cached_property
    def reference(self) -> Session:
        """The fine-tuned PyTorch model every export is checked against."""
        from edgetransfer.backends.torch_backend import _TorchSession
        from edgetransfer.checkpoint import load_model

        return _TorchSession(load_model(self.run, self.card), "cpu")

    @functools.cached_property
    def calibration(self) -> tuple[Decoded, str]:
        """The int8 calibration images, decoded once, and where they came from."""
        from edgetransfer.data import list_images
        from edgetransfer.quantize import calibration_subset

        config = self.config.int8
        if not config.calibration_dir:
            return Decoded(calibration_subset(self.splits.train, config), self.pre), "train split"
        found = list_images(
            config.calibration_dir, skip_bad=config.skip_bad, offer="--skip-bad to calibrate on the rest"
        )
        self.calibration_skipped = found.skipped
        chosen, skipped = self._not_test_images(
            calibration_subset(found, dataclasses.replace(config, calibration_size=10**9))
        )
        if skipped:
            console.err.print(
                f"[yellow]note: --calib {config.calibration_dir} holds images of {self.run.path}'s validation or test "
                f"split: {skipped} of them left out of calibration (those splits judge the int8 model: ranges set on "
                "them would flatter it)[/]"
            )
        if not chosen:
            raise DataError(
                f"--calib {config.calibration_dir}: every image there is in the run's validation or test split; "
                "calibrate on other images of the target domain (or leave --calib out: the training split)"
            )
        if len(chosen) < min(FEW_CALIBRATION, config.calibration_size):  # a --calib of one image went unsaid
            console.err.print(
                f"[yellow]note: int8 is calibrated on {len(chosen)} image{'s' * (len(chosen) != 1)} from "
                f"{config.calibration_dir} (--calib-size {config.calibration_size}): activation ranges from so few "
                "may not hold on other images; the accuracy checks below say how int8 does[/]"
            )
        return Decoded(chosen, self.pre), str(config.calibration_dir)

    def _not_test_images(self, ordered: tuple) -> tuple[tuple, int]:
        """The first ``calibration_size`` of ``ordered`` that are not validation or test images of the run (by
        content: a copy or the labelled folder itself counts), and how many of those were passed over on the way."""
        from edgetransfer.rundir import sha256_file

        test = self.run.recorded_digests("val", "test")
        if test is None:  # a run from before splits.json
            test = {sha256_file(sample.path) for sample in (*self.splits.val, *self.splits.test)}
        chosen, skipped = [], 0
        for sample in ordered:
            if len(chosen) == self.config.int8.calibration_size:
                break
            if sha256_file(sample.path) in test:
                skipped += 1
            else:
                chosen.append(sample)
        return tuple(chosen), skipped

    def path(self, name: str) -> Path:
        return self.stage / name

    def measure(self, name: str, session: Session, *, shown: str = "") -> dict:
        """Validation and test top-1 of ``session``, kept as the card's metrics ``name`` (said as ``shown``); None
        for a split without images, as fine-tuning records it."""
        result = {
            "val_top1": measured(evaluate(session, self.val)),
            "test_top1": measured(evaluate(session, self.test)),
            "precision": session.precision,
        }
        self.metrics[name] = result
        said = (  # the run has test images, not here (it read "no test images"; a new user's trial)
            "test top-1 not measured (the run's data folder is not here)"
            if self.splits.layout == "gone"
            else top1_text(result["test_top1"])
        )
        console.err.print(f"{shown or name}: {said} (runs in {session.precision})")
        return result

    def check(self, name: str, session: Session, atol: float, *, fail: bool = True, rtol: float = 0.0) -> dict:
        """Parity with PyTorch on validation images; past ``atol`` an :class:`ExportError` (or, without ``fail``,
        the figures, for the caller to judge; ``rtol``: see :func:`parity`)."""
        figures = parity(self.reference, session, self.check_set, rtol=rtol)
        console.err.print(
            f"{name}: max |logit diff| {figures['max_abs_diff']:.2e} vs PyTorch, "
            f"top-1 agreement {figures['top1_agreement']:.2%} on {figures['images']} {self.checked_on}"
        )
        if self.checked_on != "images":
            figures["inputs"] = self.checked_on
        if figures["max_abs_diff"] > atol and fail:
            raise ExportError(
                f"{name} disagrees with PyTorch: max |logit diff| {figures['max_abs_diff']:.3g} > tolerance {atol:g}"
            )
        return figures

    def say_drop(self, name: str, drop: float | None) -> None:
        """The test split decides nothing (validation does), but a larger loss there than the budget is said."""
        if drop is not None and drop > self.config.int8.max_drop:
            console.err.print(f"[yellow]note: {name} loses {drop:.2f} points of test top-1 against fp32[/]")

    def say_val_drop(self, name: str, record: dict[str, Any]) -> None:
        """An int8 model's validation figure, the decisive one (a QAT model's was in the card only, an OpenVINO
        IR's always: one that lost 50 points said only its test top-1; a new user's trial), or why there is none."""
        if record["val_drop_points"] is None:
            self.unchecked(record)
            return
        budget = self.config.int8.max_drop  # 100 points: no budget (a search's trials rank their int8 top-1)
        within = "not held to a budget" if budget >= 100 else f"within the {budget:g}-point budget"
        console.err.print(
            f"{name}: validation top-1 {0.0 - record['val_drop_points']:+.2f} points against fp32 ({within})"
        )

    def unchecked(self, record: dict[str, Any]) -> None:
        """Without validation images no int8 model can be held to the budget (finetune kept its last epoch for the
        same reason): it is exported all the same, its card entry says it was not checked, and the console once."""
        record["accuracy_not_checked"] = "no validation images"
        if not self._said_unchecked:
            self._said_unchecked = True
            budget = self.config.int8.max_drop
            against = "" if budget >= 100 else f" against the {budget:g}-point budget"  # 100: none (a search's trials)
            console.err.print(
                f"[yellow]note: no validation images: int8 accuracy was not checked{against}; the int8 models are "
                "exported unchecked (the card says so). Add images, or give DIR/train, DIR/val and DIR/test[/]"
            )
