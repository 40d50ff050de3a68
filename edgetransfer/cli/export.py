"""edgetransfer export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgetransfer.cli._common import friendly_errors
from edgetransfer.export import ExportConfig  # the defaults below are the library's own
from edgetransfer.quantize import Int8Config


@friendly_errors
def export(
    run: Annotated[Path, typer.Argument(help="Run directory made by 'edgetransfer finetune'.")],
    int8: Annotated[bool, typer.Option("--int8/--no-int8", help="Also write int8 models.")] = True,
    int8_method: Annotated[
        str,
        typer.Option(
            help="auto: static, then qat when static cannot hold --max-drop while staying faster than fp32, holds "
            "it only with layers in float, or loses over half of it (the one that loses less on validation is kept); "
            "static: calibrated QDQ int8 (ONNX Runtime) + NNCF int8 IR, sensitive layers in float while still faster; "
            "dynamic: int8 weights, activations quantized at run time (ONNX only); qat: a short quantization-aware "
            "fine-tune (NNCF) on the training images, quantized by ONNX Runtime as QDQ ONNX (all int8 in ONNX "
            "Runtime and OpenVINO) and its IR; "
            "none: no int8 model (as --no-int8)."
        ),
    ] = Int8Config.mode,
    calib: Annotated[
        Path | None,
        typer.Option(
            help="Folder of target-domain images to calibrate int8 on (with --int8-method qat: ONNX Runtime's "
            "ranges of the exported model; the quantization-aware fine-tune itself trains on the training split).",
            show_default="the training split",
        ),
    ] = None,
    skip_bad: Annotated[
        bool,
        typer.Option(
            help="Calibrate on the readable images of a --calib folder with bad files (each skipped one named); "
            "without it such a folder is refused, naming them."
        ),
    ] = Int8Config.skip_bad,
    calib_method: Annotated[
        str,
        typer.Option(
            help="How ONNX Runtime's static int8 (model.int8.onnx) sets activation ranges: minmax, entropy or "
            "percentile. NNCF's OpenVINO IR uses NNCF's own range estimation, the TensorRT table min-max."
        ),
    ] = Int8Config.method,
    calib_size: Annotated[
        int,
        typer.Option(help="Images used to calibrate int8 (with qat: also the training images NNCF's set-up reads)."),
    ] = Int8Config.calibration_size,
    per_channel: Annotated[
        bool,
        typer.Option(
            help="One int8 weight scale per output channel, else one per tensor (model.int8.onnx, static or "
            "dynamic; NNCF's OpenVINO IR is always per channel)."
        ),
    ] = Int8Config.per_channel,
    accuracy_aware: Annotated[
        bool, typer.Option(help="Keep the most sensitive layers in float until --max-drop holds (needs val images).")
    ] = Int8Config.accuracy_aware,
    max_drop: Annotated[
        float,
        typer.Option(
            help="Largest int8 top-1 loss on validation, in points (0..100): past it, export tries what "
            "--int8-method allows (layers back to float, QAT) and else fails, saying so; 100: not held to a budget."
        ),
    ] = Int8Config.max_drop,
    int8_weights: Annotated[
        str,
        typer.Option(
            help="Bits of the int8 weights: 7bit, 8bit or auto (7 where this CPU is x86 without VNNI, else 8). "
            "On such CPUs (AVX2 only) 8-bit weights can overflow in ONNX Runtime's and OpenVINO's int8 kernels and "
            "lose accuracy there; 7bit avoids it on every CPU at a little precision. If this CPU has VNNI but the "
            "model will run on an x86 device without it, pass 7bit.",
        ),
    ] = Int8Config.weights,
    openvino_int8: Annotated[
        str,
        typer.Option(
            help="OpenVINO int8 IR from: nncf (quantize the IR; with --int8-method auto, model.int8.onnx converted "
            "where NNCF's IR cannot hold --max-drop, or holds it not measurably faster than fp32 where the converted "
            "one is) or qdq (convert model.int8.onnx). With --int8-method qat the IR is always model.int8.onnx "
            "converted.",
        ),
    ] = Int8Config.openvino,
    fp16: Annotated[
        bool,
        typer.Option(
            help="Also write model.fp16.onnx and openvino/model.fp16.xml, each checked against PyTorch and scored."
        ),
    ] = ExportConfig.fp16,
    openvino: Annotated[bool, typer.Option(help="Also write OpenVINO IR (openvino/*.xml).")] = ExportConfig.openvino,
    tensorrt: Annotated[
        bool, typer.Option(help="Write the TensorRT EP's int8 calibration table and options (needs a GPU).")
    ] = ExportConfig.tensorrt,
    simplify: Annotated[
        bool, typer.Option(help="Simplify the ONNX graph with onnxslim (kept only if parity holds).")
    ] = ExportConfig.simplify,
    opset: Annotated[
        int, typer.Option(help="ONNX opset to write (13 up to the newest torch's exporter writes: 20 with torch 2.14).")
    ] = ExportConfig.opset,
    atol: Annotated[
        float,
        typer.Option(
            help="Max |logit difference| to PyTorch before export fails (fp16: at least 0.05, plus 5% of each "
            "image's largest |logit|)."
        ),
    ] = ExportConfig.atol,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Where the run's own data folder is now, if it moved (its images are checked against the run's "
            "record); other labelled images are measured by 'edgetransfer bench --data'.",
            show_default="the run's data folder",
        ),
    ] = None,
) -> None:
    """Convert a run to ONNX (fp32, int8, fp16) and OpenVINO IR; check each against PyTorch; embed the card."""
    from rich.markup import escape

    from edgetransfer import console
    from edgetransfer.adapt import say_not_adapted
    from edgetransfer.evaluation import top1_text
    from edgetransfer.export import ExportConfig
    from edgetransfer.export import export as run_export
    from edgetransfer.quantize import Int8Config
    from edgetransfer.rundir import RunDir

    # recorded in the card, never read (the TensorRT table, though, is calibrated on --calib whatever the int8)
    if calib is not None and not tensorrt and (not int8 or int8_method in ("dynamic", "none")):
        dynamic = int8 and int8_method == "dynamic"
        why = "dynamic int8 calibrates nothing (activations are quantized at run time)" if dynamic else "no int8 model"
        console.err.print(f"[yellow]note: --calib {escape(str(calib))} not used: {why}[/]")
        calib = None
    if skip_bad and calib is None:  # it applies to --calib's files only: not recorded as if it had been used
        console.err.print("[yellow]note: --skip-bad not used: it passes over unreadable files of --calib DIR[/]")
        skip_bad = False
    if not int8 and int8_method not in (Int8Config.mode, "none"):  # accepted without a word, and no int8 made
        console.err.print(f"[yellow]note: --int8-method {int8_method} not used: --no-int8 makes no int8 model[/]")
    no_int8 = not int8 or int8_method == "none"
    if no_int8 or int8_method == "dynamic":  # int8 options that change nothing: said, and not recorded as used
        unused = {
            "--calib-method": calib_method != Int8Config.method,
            "--calib-size": calib_size != Int8Config.calibration_size and not tensorrt,  # (the table reads it)
        }
        if no_int8:
            unused |= {
                "--no-per-channel": per_channel != Int8Config.per_channel,
                "--no-accuracy-aware": accuracy_aware != Int8Config.accuracy_aware,
                "--max-drop": max_drop != Int8Config.max_drop,
                "--int8-weights": int8_weights != Int8Config.weights,
            }
        named = [name for name, given in unused.items() if given]
        if named:
            why = "no int8 model" if no_int8 else "dynamic int8 calibrates nothing (activations quantized at run time)"
            console.err.print(f"[yellow]note: {', '.join(named)} not used: {why}[/]")
            calib_method = Int8Config.method
            calib_size = calib_size if tensorrt else Int8Config.calibration_size
            if no_int8:
                per_channel, accuracy_aware = Int8Config.per_channel, Int8Config.accuracy_aware
                max_drop, int8_weights = Int8Config.max_drop, Int8Config.weights
    if int8 and openvino and int8_method == "qat":  # its IR is always model.int8.onnx converted: recorded so
        openvino_int8 = "qdq"
    if openvino_int8 == "qdq" and (not openvino or not int8 or int8_method in ("dynamic", "none")):  # not "nncf"
        why = "no OpenVINO IR (--no-openvino)" if not openvino else "no int8 model"
        why = "dynamic int8 makes no OpenVINO int8 IR" if openvino and int8 and int8_method == "dynamic" else why
        console.err.print(f"[yellow]note: --openvino-int8 qdq not used: {why}[/]")
        openvino_int8 = Int8Config.openvino  # not recorded in the card as if it had been used
    config = ExportConfig(
        opset=opset,
        atol=atol,
        simplify=simplify,
        fp16=fp16,
        openvino=openvino,
        tensorrt=tensorrt,
        # a full path, as the card's data (explain falls back to it from any folder it is run in)
        data=str(Path(data).expanduser().resolve()) if data else None,
        int8=Int8Config(
            mode=int8_method if int8 else "none",
            method=calib_method,
            calibration_size=calib_size,
            per_channel=per_channel,
            calibration_dir=str(calib.expanduser().resolve()) if calib else None,  # a full path, as the card's data
            skip_bad=skip_bad,
            accuracy_aware=accuracy_aware,
            max_drop=max_drop,
            openvino=openvino_int8,
            weights=int8_weights,
        ),
    )
    target = RunDir.open(run)
    say_not_adapted(target)
    done = run_export(target, config)
    card = done.load_card()
    for name, item in card.artifacts.items():
        if "bytes" in item:
            console.out.print(f"{done.path / name}  ({item['bytes'] / 1e6:.1f} MB)")
    gone = data is None and done.data_gone(card)  # it has test images, not here
    for key, item in card.metrics.items():
        top1 = item.get("test_top1")
        said = "test top-1 not measured (the run's data folder is not here)" if gone and top1 is None else None
        console.out.print(f"{key:<14} {said or top1_text(top1)}")
