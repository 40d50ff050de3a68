"""edgetransfer predict: classify images with an exported model and nothing but its file (no torch)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgetransfer.cli._common import friendly_errors, split_list


@friendly_errors
def predict(
    model: Annotated[
        Path,
        typer.Argument(
            help="A .onnx, an OpenVINO .xml, or a run directory (its fp32 model.onnx, or openvino/model.xml with "
            "--backend openvino; name RUN/model.int8.onnx for int8)."
        ),
    ],
    images: Annotated[list[Path], typer.Argument(help="Image files, or folders searched recursively for images.")],
    top_k: Annotated[
        int | None,
        typer.Option(
            help="Classes printed per image, best first (all of them where the model has fewer).", show_default="5"
        ),
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="ort (ONNX Runtime) or openvino.", show_default="openvino for .xml, else ort")
    ] = None,
    json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document instead of one line per image. A file name that is not UTF-8 is written "
            "with a \\xNN for each such byte, and its exact bytes beside it as hex (image_bytes), so that any JSON "
            "parser reads it. (Without --json, a name holding a newline or another control character is written with "
            "backslash escapes.)",
        ),
    ] = False,
    mean: Annotated[
        str | None,
        typer.Option(help="Per-channel mean, R,G,B on the 0..1 scale: for a model without a card, or to override it."),
    ] = None,
    std: Annotated[str | None, typer.Option(help="Per-channel std, R,G,B (as --mean).")] = None,
    size: Annotated[
        int | None, typer.Option(help="Resize the shorter side to SIZE, then crop SIZE x SIZE (as --mean).")
    ] = None,
    resize: Annotated[
        int | None,
        typer.Option(
            help="Shorter side before the crop, instead of the card's (or --size's: --size 96 --resize 110 "
            "resizes to 110, then crops 96)."
        ),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(help="Class names: comma-separated, or a text file with one per line.", show_default="the card's"),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per inference call.")] = 16,
    threads: Annotated[int | None, typer.Option(help="Inference threads.", show_default="all cores")] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Classify the readable images; list the unreadable ones and go on.")
    ] = False,
    precision: Annotated[
        str | None,
        typer.Option(
            help="OpenVINO's math for an fp32 model: auto lets it run in bf16 where the CPU has AVX-512 BF16 or AMX "
            "(faster; scores differ slightly, a top-1 now and then), fp32 keeps fp32 math (as examples/python/"
            "standalone_app.py does, and the C++ app's --precision f32). ONNX Runtime computes fp32 models in fp32.",
            show_default="auto",
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="OpenVINO's device: CPU, GPU, NPU...", show_default="CPU")] = None,
) -> None:
    """Classify images with the labels and preprocessing embedded in the model file; print the top-k per image."""
    import json as json_module

    from edgetransfer.errors import UsageError
    from edgetransfer.runtime import Classifier

    asked_k, top_k = top_k, 5 if top_k is None else top_k
    if top_k < 1 or batch_size < 1:
        wrong = [
            f"--{name} must be at least 1, not {value}"
            for name, value in (("top-k", top_k), ("batch-size", batch_size))
            if value < 1
        ]
        raise UsageError("; ".join(wrong))
    if (precision or device) and (backend or ("openvino" if model.suffix == ".xml" else "ort")) != "openvino":
        given = " and ".join(f"--{n}" for n, v in (("precision", precision), ("device", device)) if v)
        raise UsageError(f"{given}: OpenVINO's (a .xml model, or --backend openvino); ONNX Runtime runs on the CPU")
    classifier = Classifier(
        model,
        backend=backend,
        labels=_labels(labels),
        mean=_floats("mean", mean),
        std=_floats("std", std),
        size=size,
        resize=resize,
        threads=threads,
        device=device or "CPU",
        precision=precision or "auto",
    )
    if model.is_dir():  # the run's fp32 model: a search measured (and export checked) its int8 one
        from edgetransfer.rundir import ONNX_FP32, ONNX_INT8, OV_FP32, OV_INT8

        int8 = model / {ONNX_FP32: ONNX_INT8, OV_FP32: OV_INT8}[classifier.path.relative_to(model).as_posix()]
        if int8.is_file():
            print(f"note: classifying with {classifier.path} (fp32); the int8 model is {int8}", file=sys.stderr)
    skipped: list[tuple[Path, str]] = []
    passed_over: list[tuple[Path, str]] = []  # not image files (a .heic, a .txt), symlinked folders: never classified
    results = _in_batches(
        classifier, images, top_k=top_k, batch_size=batch_size, skipped=skipped if skip_bad else None,
        passed_over=passed_over,
    )  # fmt: skip
    if not json:
        classified = 0
        for path, best in results:
            print(f"{one_line(path)}  " + "  ".join(f"{p.label} {p.score:.4f}" for p in best), flush=True)
            classified += 1
        _say_skipped(skipped)
        _fewer_classes(asked_k, classifier.labels)
        _none_classified(classified, skipped)
        return
    document = {
        "model": str(classifier.path),
        "backend": classifier.backend,
        "results": [
            {**_named(path), "top_k": [{"label": p.label, "index": p.index, "score": p.score} for p in best]}
            for path, best in results
        ],
    }
    # both keys always (a script tells "none" from "not there"); not_classified is said on stderr too
    document["skipped"] = [{**_named(path), "why": why} for path, why in skipped]
    document["not_classified"] = [{**_named(path), "why": why} for path, why in passed_over]
    print(json_module.dumps(_strict(document), indent=2))
    _say_skipped(skipped)
    _fewer_classes(asked_k, classifier.labels)
    _none_classified(len(document["results"]), skipped)


def _none_classified(classified: int, skipped: list) -> None:
    """Exit 1 when --skip-bad skipped every image: nothing was classified (it exited 0, as a success)."""
    if skipped and not classified:
        from edgetransfer import console

        console.err.print(f"error: no image could be classified ({len(skipped)} unreadable, skipped)")
        raise typer.Exit(1)


def _fewer_classes(asked: int | None, labels: tuple[str, ...] | None) -> None:
    """An explicit --top-k above the model's class count lists every class: say so (the default 5 goes unsaid)."""
    if asked is not None and labels and asked > len(labels):
        from edgetransfer import console

        console.err.print(f"note: --top-k {asked}: the model has {len(labels)} classes; each image lists all of them")


def _named(path: Path) -> dict[str, str]:
    """``{"image": name}`` for the JSON document; a name that is not UTF-8 with ``\\xNN`` for each such byte and
    ``image_bytes``, its bytes as hex: Python's ``\\udcXX`` escapes were lone surrogates, which strict JSON parsers
    (Rust's serde_json, a device app's) refuse (a new user's trial)."""
    text = _strict(str(path))
    return {"image": text} if text == str(path) else {"image": text, "image_bytes": os.fsencode(path).hex()}


def _strict(value):
    """``value`` with every text that holds Python's ``\\udcXX`` escapes (a non-UTF-8 name inside an error's "why",
    the model's path) written with ``\\xNN`` instead: lone surrogates, which strict JSON parsers refuse."""
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strict(item) for item in value]
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def one_line(path: Path) -> str:
    """``path`` as one line's first field: a name holding a newline, tab or other control character is written with
    Python's backslash escapes (a file named "a\\nb.png" split its line in two, its scores read as another image's);
    any other name as it is."""
    text = str(path)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return text.encode("unicode_escape").decode("ascii")
    return text


def _say_skipped(skipped: list[tuple[Path, str]]) -> None:
    if skipped:
        from edgetransfer import console

        console.err.print(f"[yellow]skipped {len(skipped)} unreadable image(s) (--skip-bad)[/]")


def _in_batches(
    classifier,
    paths: list[Path],
    *,
    top_k: int,
    batch_size: int,
    skipped: list | None = None,
    passed_over: list | None = None,
):
    """(file, top-k) per image, ``batch_size`` images decoded at a time (memory stays bounded on a folder of
    thousands), with a progress bar on a terminal; Ctrl-C stops it (exit 130: nothing is written). An unreadable
    image stops it, unless ``skipped`` is a list: then it is said, added there, and the others are classified.
    Files passed over (not images) are said and added to ``passed_over``."""
    from rich.markup import escape

    from edgetransfer import console
    from edgetransfer.errors import DataError
    from edgetransfer.images import find_images

    passed_over = [] if passed_over is None else passed_over
    files = find_images(paths, passed_over=passed_over)
    if passed_over:  # an iPhone's .heic photos or a symlinked folder are not classified: said, not silently
        listed = "; ".join(f"{path} ({why})" for path, why in passed_over[:3])
        more = f"; and {len(passed_over) - 3} more" if len(passed_over) > 3 else ""
        console.err.print(f"[yellow]note: {len(passed_over)} not classified: {escape(listed + more)}[/]")
    with console.progress() as bar:
        task = bar.add_task("classifying", total=len(files), status="")
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            try:
                yield from zip(chunk, classifier.predict(chunk, top_k=top_k), strict=True)
            except DataError as exc:
                if skipped is None:
                    hint = " (--skip-bad classifies the other images)" if len(files) > 1 else ""
                    raise DataError(f"{exc}{hint}") from None
                for path in chunk:  # one at a time: which of them cannot be read
                    try:
                        best = classifier.predict([path], top_k=top_k)[0]
                    except DataError as why:
                        skipped.append((path, str(why)))
                        console.err.print(f"[yellow]skipped: {escape(str(why))}[/]")
                        continue
                    yield path, best
            bar.update(task, advance=len(chunk), status=str(chunk[-1].name))


def _floats(name: str, value: str | None) -> tuple[float, ...] | None:
    from edgetransfer.errors import UsageError

    if value is None:
        return None
    try:
        return tuple(float(part) for part in split_list(value))
    except ValueError:
        raise UsageError(f"--{name} takes comma-separated numbers, not {value!r}") from None


def _labels(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    from edgetransfer.errors import UsageError
    from edgetransfer.schemas import read_text

    path = Path(value)
    if path.exists():  # a text file with one name per line (at most 1 MB; a FIFO or device is refused)
        text = read_text(path, what="--labels file", error=UsageError)
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    if "," not in value and (path.suffix.lower() in (".txt", ".csv", ".names", ".labels") or len(path.parts) > 1):
        raise UsageError(f"--labels file not found: {value} (or give the names comma-separated)")
    return split_list(value)
