"""Quantization-aware training, two ways, on one fine-tuned run: NNCF's PyTorch QAT and PyTorch's pt2e
(``prepare_qat_pt2e`` with the x86 quantizer, from torchao since torch 2.10). Each: a short fine-tune with fake
quantization from the run's best checkpoint on its training split, exported as a QDQ ONNX model, then scored and
timed in ONNX Runtime and OpenVINO beside the fp32 model and the export's post-training int8 (ORT per-channel
min-max, no layer in float).

    .venv/bin/edgetransfer finetune --data digits --out /tmp/qat_run && \\
        .venv/bin/edgetransfer export /tmp/qat_run --no-int8 --no-openvino
    .venv/bin/python benchmarks/qat_trial.py /tmp/qat_run --out benchmarks/results/qat_trial.md

Both start the same way: BatchNorm folded into the convolutions (the model is in eval mode; the fine-tune only moves
weights), the same seeded image order and light augmentation, AdamW at a small constant learning rate, dropout off.
"int8 in the engine" is read from the engines themselves: ONNX Runtime's optimised graph (QLinearConv / fused int8
nodes against Conv left in float) and OpenVINO's executed graph (layers whose runtime precision is i8/u8).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from int8_methods import latency, load_batches  # noqa: E402

from edgetransfer.backends.base import LoadOptions  # noqa: E402
from edgetransfer.backends.openvino import compile_model  # noqa: E402
from edgetransfer.backends.ort import _OrtSession, ort_session  # noqa: E402
from edgetransfer.evaluation import decoded, top1  # noqa: E402
from edgetransfer.qat import fold_batchnorm  # noqa: E402
from edgetransfer.quantize import Int8Config, calibration_subset, prepare, quantize_static  # noqa: E402
from edgetransfer.rundir import RunDir  # noqa: E402


def train_batches(samples, pre, *, seed: int, epoch: int, batch_size: int, limit: int | None):
    """Seeded shuffled, lightly augmented training batches (float tensors, labels)."""
    import torch

    from edgetransfer.data import ImageDataset, train_transform

    torch.manual_seed(seed * 10_000 + epoch)
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    chosen = tuple(samples[i] for i in order[: limit or len(order)])
    dataset = ImageDataset(chosen, train_transform(pre, augment="light"))
    for start in range(0, len(chosen), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(chosen)))]
        yield torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def fine_tune(model, params, samples, pre, args, label: str) -> list[float]:
    import torch

    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    losses = []
    for epoch in range(args.epochs):
        total, count, started = 0.0, 0, time.perf_counter()
        for images, labels in train_batches(
            samples, pre, seed=args.seed, epoch=epoch, batch_size=args.batch_size, limit=args.train_images
        ):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, count = total + float(loss) * len(labels), count + len(labels)
        losses.append(total / count)
        took = time.perf_counter() - started
        print(f"{label}: epoch {epoch + 1}/{args.epochs} loss {losses[-1]:.4f} {took:.0f} s", flush=True)
    return losses


def nncf_qat(model, calibration, samples, pre, args, out: Path) -> dict:
    import torch

    from edgetransfer.qat import _use_reference_functions
    from edgetransfer.telemetry import import_nncf

    nncf = import_nncf()  # quiet, and no usage data sent without consent, as the product's own paths
    _use_reference_functions()
    example = torch.from_numpy(calibration.images[:1])
    items = [torch.from_numpy(calibration.images[i : i + 1]) for i in range(len(calibration))]
    t0 = time.perf_counter()
    quantized = nncf.quantize(fold_batchnorm(model), nncf.Dataset(items), subset_size=len(items))
    prepared_s = time.perf_counter() - t0
    print(f"nncf: fake quantization inserted in {prepared_s:.0f} s", flush=True)
    losses = fine_tune(quantized, quantized.parameters(), samples, pre, args, "nncf")
    quantized.eval()
    stripped = nncf.strip(quantized, example_input=example, strip_format=nncf.StripFormat.NATIVE)
    torch.onnx.export(
        stripped,
        (example,),
        str(out),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    return {"prepare_s": prepared_s, "losses": losses, "train_s": time.perf_counter() - t0 - prepared_s}


def pt2e_qat(model, calibration, samples, pre, args, out: Path) -> dict:
    import torch
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    example = torch.from_numpy(calibration.images[:2])
    batch = torch.export.Dim("batch", min=1, max=1024)
    t0 = time.perf_counter()
    graph = torch.export.export(fold_batchnorm(model), (example,), dynamic_shapes=({0: batch},)).module()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config(is_qat=True))
    prepared = prepare_qat_pt2e(graph, quantizer)
    with torch.no_grad():  # observers see the calibration images first, as NNCF's do
        for i in range(0, len(calibration), 32):
            prepared(torch.from_numpy(calibration.images[i : i + 32]))
    prepared_s = time.perf_counter() - t0
    print(f"pt2e: exported and prepared in {prepared_s:.0f} s", flush=True)
    losses = fine_tune(prepared, prepared.parameters(), samples, pre, args, "pt2e")
    move_exported_model_to_eval(prepared)
    converted = convert_pt2e(prepared)
    program = torch.export.export(converted, (example,), dynamic_shapes=({0: batch},))
    torch.onnx.export(program, (example,), str(out), dynamo=True, opset_version=18, external_data=False)
    import onnx

    proto = onnx.load(str(out))  # the dynamo exporter names the input after the argument; the runtime wants "input"
    return {
        "prepare_s": prepared_s,
        "losses": losses,
        "train_s": time.perf_counter() - t0 - prepared_s,
        "input": proto.graph.input[0].name,
    }


def ort_int8_nodes(path: Path, work: Path) -> dict:
    """Op types of ONNX Runtime's optimised graph: which convolutions run in int8."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(work / f"{path.stem}.ort-optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    return {op: ops.count(op) for op in sorted(set(ops)) if "Conv" in op or "QLinear" in op or "Quant" in op}


def openvino_int8_layers(path: Path) -> dict:
    """Executed-graph layers of OpenVINO by runtime precision (convolutions and matmuls)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else ""  # OVAny values: str() is not the value
        if "Convolution" in layer or "FullyConnected" in layer or "MatMul" in layer:
            key = f"{layer} {info['runtimePrecision'].astype(str)}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--methods", default="nncf,pt2e")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-images", type=int, default=None, help="at most this many training images per epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calib-size", type=int, default=200, help="images for the initial ranges and for PTQ")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/qat_trial.json"))
    args = parser.parse_args()

    from edgetransfer.checkpoint import load_model

    run = RunDir(args.run)
    card = run.load_card()
    pre, splits = card.preprocessing, run.load_splits(card)
    calibration = decoded(calibration_subset(splits.train, Int8Config(calibration_size=args.calib_size)), pre)
    val, test = decoded(splits.val, pre), decoded(splits.test, pre)
    record: dict = {"run": str(args.run), "args": {k: str(v) for k, v in vars(args).items()}, "methods": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = {"fp32": run.file("model.onnx"), "PTQ (ORT per-channel min-max)": work / "ptq.onnx"}
        prepare(files["fp32"], work / "prepared.onnx")
        t0 = time.perf_counter()
        quantize_static(work / "prepared.onnx", files["PTQ (ORT per-channel min-max)"], calibration, pre, Int8Config())
        record["methods"]["PTQ (ORT per-channel min-max)"] = {"seconds": time.perf_counter() - t0}
        print(f"PTQ in {time.perf_counter() - t0:.0f} s", flush=True)
        for method in args.methods.split(","):
            label = {"nncf": "QAT NNCF (PyTorch)", "pt2e": "QAT pt2e (torchao, X86InductorQuantizer)"}[method]
            out = work / f"{method}.onnx"
            t0 = time.perf_counter()
            try:
                info = (nncf_qat if method == "nncf" else pt2e_qat)(
                    load_model(run, card), calibration, splits.train, pre, args, out
                )
                files[label] = out
            except Exception as exc:  # noqa: BLE001 - a trial: the failure is the result
                info = {"failed": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
                print(f"{label}: {info['failed']}")
            info["seconds"] = time.perf_counter() - t0
            record["methods"][label] = info
            print(f"{label}: {info['seconds']:.0f} s", flush=True)
        for label, path in files.items():
            entry = record["methods"].setdefault(label, {})
            try:
                ort_s = _OrtSession(ort_session(path), "int8")
                entry |= {"ort_val": top1(ort_s, val), "ort_test": top1(ort_s, test)}
                entry["ort_nodes"] = ort_int8_nodes(path, work)
            except Exception as exc:  # noqa: BLE001
                entry["ort_failed"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            try:
                ov_s = compile_model(path, LoadOptions(precision="fp32"), int8=True)
                entry["ov_test"] = top1(ov_s, test)
                entry["ov_layers"] = openvino_int8_layers(path)
            except Exception as exc:  # noqa: BLE001
                entry["ov_failed"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            entry["bytes"] = path.stat().st_size
        sample = next(iter(load_batches(splits.test, pre)))
        for engine in ("ORT", "OpenVINO"):
            sessions = {}
            for label, path in files.items():
                key = "ort_failed" if engine == "ORT" else "ov_failed"
                if key in record["methods"][label]:
                    continue
                if engine == "ORT":
                    sessions[label] = _OrtSession(ort_session(path, threads=1), "int8")
                else:
                    sessions[label] = compile_model(path, LoadOptions(threads=1, batch=1, precision="fp32"), int8=True)
            medians = latency(sessions, sample, args.rounds, args.runs)
            for label, ms in medians.items():
                record["methods"][label][f"{engine}_ratio_1t"] = ms / medians["fp32"]
    record["val_images"], record["test_images"] = len(val), len(test)
    args.out.write_text(json.dumps(record, indent=2, default=float) + "\n")
    print(json.dumps(record, indent=2, default=float))


if __name__ == "__main__":
    main()
