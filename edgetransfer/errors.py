"""One small tree of errors. Library code raises these; the CLI turns them into one line and an exit code."""

from __future__ import annotations


class EdgeTransferError(Exception):
    """Base of every error a user can cause or fix. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(EdgeTransferError):
    """Bad input from the user: a missing folder, an unknown name, an option that makes no sense."""

    exit_code = 2


class DataError(UsageError):
    """The data folder cannot be used as it is (empty, one class, unreadable images...)."""


class RunDirError(UsageError):
    """A run directory is missing, incomplete or of an unknown schema."""


class WriteError(RunDirError):
    """A file could not be written (a full disk, a read-only folder); what was there before is unchanged.
    ``errno``: the operating system's reason."""

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class WeightsError(EdgeTransferError):
    """Pretrained weights cannot be found, or a file does not match its recorded sha256."""

    exit_code = 2


class BackendUnavailableError(EdgeTransferError):
    """A backend was asked for that is not installed or has no device here."""

    exit_code = 2


class MeasurementError(EdgeTransferError):
    """A measurement gave numbers that cannot be right, or cannot be made (the probe's file changed): exit 2, as a
    failed measurement, never the gate's 1 ("slower"), which a CI job reads as a regression."""

    exit_code = 2


class ExportError(EdgeTransferError):
    """Conversion to ONNX / OpenVINO failed, or the converted model disagrees with PyTorch."""


class QuantizationError(EdgeTransferError):
    """int8 quantization failed."""


class BudgetError(QuantizationError):
    """int8 that works but loses more validation accuracy than the budget allows (what ``--int8-method auto``
    escalates on; other quantization failures are not escalated). ``drop_points``: the validation points it lost,
    where known (what a caller that keeps another model says of this one)."""

    def __init__(self, message: str, *, drop_points: float | None = None) -> None:
        super().__init__(message)
        self.drop_points = drop_points


class TrainingDiverged(EdgeTransferError):
    """The loss, the weights or the BatchNorm statistics became NaN or infinite."""
