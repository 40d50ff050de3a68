"""Checks on files that come from elsewhere before anything reads them."""

from __future__ import annotations

from pathlib import Path

from edgetransfer.errors import EdgeTransferError, UsageError


def check_onnx_external_data(path: Path | str) -> None:
    """Refuse an ONNX model whose external-data tensors point outside the model's own folder.

    Reads only the graph (no tensor data) to find every ``location``; an absolute path, a ``..`` escape or a
    symlink leading out of the folder is a :class:`UsageError`. (onnx >= 1.21 also refuses these on load; this
    check covers the runtimes that read external data themselves. Without the onnx package, as on a device, it
    leaves the check to onnxruntime, which refuses them itself from 1.25 on; an older onnxruntime without onnx
    is refused: :func:`onnxruntime_refuses_escapes`.)
    """
    try:
        import onnx
        from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors
    except ImportError:  # a runtime-only install: onnxruntime >= 1.25 refuses these paths itself (tested)
        onnxruntime_refuses_escapes()
        return

    path = Path(path)
    folder = path.parent.resolve()
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - a corrupt file is the user's, said in one line
        raise UsageError(f"{path} is not a readable ONNX model: {str(exc).splitlines()[0][:120]}") from None
    for tensor in _get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = ExternalDataInfo(tensor).location
        target = (folder / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise UsageError(
                f"{path} refers to external data outside its folder ({location!r} for tensor {tensor.name!r}); "
                "refusing to load it"
            )


def check_ir_weights(
    path: Path | str,
    *,
    fix: str = "copy it beside the .xml, or export the model again",
    error: type[EdgeTransferError] = UsageError,
) -> None:
    """Refuse an OpenVINO IR's ``.xml`` whose ``.bin`` (its weights) is not beside it, naming the missing file:
    OpenVINO's own error stops at the line of its source that raised it."""
    path = Path(path)
    weights = path.with_suffix(".bin")
    if path.suffix == ".xml" and not weights.is_file():
        raise error(f"{weights} is missing: the OpenVINO IR {path.name} needs its weights (.bin) beside it; {fix}")


ORT_REFUSES_ESCAPES = (1, 25)  # onnxruntime refuses external data outside the model's folder from this version on


def onnxruntime_refuses_escapes() -> None:
    """Without the onnx package nothing of ours reads an ONNX file's external-data paths: refuse an onnxruntime
    that loads them wherever they point (before 1.25: seen with 1.20 and 1.23 loading ``../secret.bin``; 1.23 is
    the last for Python 3.10, where the runtime install brings onnx for this check)."""
    import re

    import onnxruntime

    release = tuple(int(n) for n in re.findall(r"\d+", onnxruntime.__version__)[:2])
    if len(release) == 2 and release < ORT_REFUSES_ESCAPES:
        raise UsageError(
            f"onnxruntime {onnxruntime.__version__} loads a model's external data from outside its folder, and the "
            "onnx package that would check the paths is not installed: pip install onnx, or onnxruntime>=1.25"
        )
