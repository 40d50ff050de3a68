"""edgetransfer export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgetransfer.cli._common import friendly_errors
from edgetransfer.export import DEFAULT_OPSET


@friendly_errors
def export(
    run: Annotated[Path, typer.Argument(help="Run directory made by 'edgetransfer finetune'.")],
    int8: Annotated[bool, typer.Option(help="Also write model.int8.onnx (static QDQ, per-channel).")] = True,
    calib_method: Annotated[str, typer.Option(help="int8 calibration: minmax, entropy or percentile.")] = "minmax",
    calib_size: Annotated[int, typer.Option(help="Training images used to calibrate int8.")] = 200,
    openvino: Annotated[bool, typer.Option(help="Also write an OpenVINO IR (openvino/model*.xml).")] = True,
    opset: Annotated[int, typer.Option(help="ONNX opset to write.")] = DEFAULT_OPSET,
    atol: Annotated[float, typer.Option(help="Max |logit difference| to PyTorch before the export fails.")] = 1e-3,
    data: Annotated[
        Path | None, typer.Option(help="Labelled image folder for checks and calibration.", show_default="the run's")
    ] = None,
) -> None:
    """Convert a run to ONNX (and int8 ONNX, OpenVINO IR), check each against PyTorch, embed the model card."""
    from edgetransfer import console
    from edgetransfer.export import ExportConfig
    from edgetransfer.export import export as run_export
    from edgetransfer.quantize import Int8Config
    from edgetransfer.rundir import RunDir

    config = ExportConfig(
        opset=opset,
        atol=atol,
        int8=int8,
        openvino=openvino,
        data=str(data) if data else None,
        int8_config=Int8Config(method=calib_method, calibration_size=calib_size),
    )
    done = run_export(RunDir.open(run), config)
    for name, item in done.load_card().artifacts.items():
        if "bytes" in item:
            console.out.print(f"{done.path / name}  ({item['bytes'] / 1e6:.1f} MB)")
