"""Why is my int8 slow or wrong: for each exported model of a run, where the time goes (ONNX Runtime's profiler,
OpenVINO's per-layer performance counters), which layers really execute in int8 and what the Quantize /
Dequantize / Reorder nodes cost, the CPU's instruction set and what it implies, and the per-layer int8 error
(SQNR against fp32). A short verdict in plain words; the detail in ``explain.json``.

Every figure is measured here, in one process, on the run's own validation images. The int8/fp32 latency ratio is
measured in alternating rounds of the two models (a burst of load hits both alike), and said to be noisy when its
rounds disagree. An engine that cannot profile a model is said, and the rest is still reported.
"""

from __future__ import annotations

import collections
import json
import math
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape

from edgetransfer import console
from edgetransfer.card import verify_artifact
from edgetransfer.errors import RunDirError, UsageError
from edgetransfer.rundir import EXPLAIN_JSON, ONNX_FP32, ONNX_INT8, OV_FP32, OV_INT8, RunDir, atomic_write_text

INT8_ORT_OPS = ("QLinearConv", "QGemm", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul")
QDQ_ORT_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")  # (dynamic: each activation at run time)
LAYOUT_ORT_OPS = ("Transpose", "ReorderInput", "ReorderOutput")
# FusedConv/FusedGemm/FusedMatMul: a float Conv+activation fused where ONNX Runtime does not use its NCHWc layout (ARM)
COMPUTE_ORT_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose", "FusedConv", "FusedGemm", "FusedMatMul")
COMPUTE_OV_TYPES = ("Convolution", "GroupConvolution", "FullyConnected", "MatMul")
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "amx_tile")
WORST_LAYERS = 5
LOW_SQNR_DB = 15.0  # below this an activation keeps less than ~5 bits of signal: a layer to suspect
ROUNDS = 10  # alternating rounds of fp32 and int8 for the latency ratio
NOISY_SPREAD = 1.25  # the ratio's rounds are noisy when their upper quartile over the lower is above this
# validation images, at most, for the whole-model checks (int8's outputs against fp32's, its kernels against its exact
# arithmetic): they read outputs only, so they run on many more than the per-layer error (--images) keeps in memory.
# On --images (8 by default) alone, "the same top-1 on 8 of 8" could not show a kernel overflow that flips 1 in 50
CHECK_IMAGES = 512


@dataclass(frozen=True)
class ExplainConfig:
    threads: int = 1  # one core: int8's gain is clearest and the timing steadiest
    runs: int = 30  # timed inferences per model after warm-up
    images: int = 8  # validation images for the per-layer error (the whole-model checks take check_images)
    check_images: int = CHECK_IMAGES  # validation images, at most, for the whole-model checks
    data: str | None = None  # where the run's data folder is now; default: the card's, else export's --data

    def validate(self) -> None:
        for name, value, top in (("--threads", self.threads, 1024), ("--runs", self.runs, 10_000)):
            if not 1 <= value <= top:
                raise UsageError(f"{name} must be 1..{top}, not {value}")
        if not 1 <= self.images <= 256:
            raise UsageError(f"--images must be 1..256, not {self.images}")
        if not 1 <= self.check_images <= 100_000:
            raise UsageError(f"--check-images must be 1..100000, not {self.check_images}")


def cpu_features() -> dict[str, Any]:
    """The CPU's model name and the instruction-set flags that decide int8 and bf16 speed (Linux /proc/cpuinfo)."""
    from edgetransfer.machine import cpuinfo

    model, flags = cpuinfo()
    if model is None and not flags:
        return {"model": None, "flags": {}, "note": "no /proc/cpuinfo here: instruction set unknown"}
    return {"model": model, "arch": platform.machine(), "flags": {flag: flag in flags for flag in CPU_FLAGS}}


def implications(cpu: dict[str, Any], weight_bits: int | None = None) -> list[str]:
    """What the CPU's instruction set means for int8 and fp32, in plain words (``weight_bits``: the run's int8 weights,
    None when it has no int8 model: only 8-bit weights are advised to change)."""
    flags = cpu.get("flags") or {}
    said = []
    if flags.get("amx_int8"):
        said.append("AMX int8 tiles: int8 matrix math can run several times faster than fp32")
    elif flags.get("avx512_vnni") or flags.get("avx_vnni"):
        said.append("VNNI: int8 dot products in one instruction, so int8 convolutions can run ~2-4x faster than fp32")
    elif flags.get("avx2"):
        overflow = "8-bit int8 weights can overflow here (pairs of products summed in 16 bits) and lose accuracy" + (
            "; this run's int8 weights have 7 bits, which do not"
            if weight_bits == 7
            else ": export with --int8-weights 7bit (auto does on such a CPU)"
            if weight_bits
            # no int8 model in the run: nothing to re-export (it advised the option export's default takes)
            else "; export's int8 takes 7-bit weights on such a CPU (--int8-weights auto, the default)"
        )
        said.append(
            f"no VNNI: int8 convolutions run on AVX2 (int8 gains less over fp32 here than on a CPU with VNNI, on some "
            f"models nothing), and {overflow}"
        )
    else:
        said.append("no AVX2: expect little or no int8 speed-up on this CPU")
    if flags.get("avx512_bf16") or flags.get("amx_bf16"):
        said.append(
            "bf16 in hardware: OpenVINO runs 'fp32' models in bf16 by default here, so its fp32 baseline is "
            "already fast and int8 gains less against it"
        )
    elif flags.get("avx2") or flags.get("avx512f"):  # an x86 CPU whose flags were read
        said.append(
            "no bf16 in hardware (no AVX-512 BF16 or AMX): OpenVINO runs 'fp32' models in fp32 here and training "
            "stays in float32"
            + (
                "; int8 is the way to a faster model on this CPU"
                if flags.get("avx512_vnni") or flags.get("avx_vnni") or flags.get("amx_int8")
                else ""
            )
        )
    return said


def _median_ms(run, feed, runs: int) -> float:
    for _ in range(3):
        run(feed)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run(feed)
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def paired_ratio(first, second, runs: int, rounds: int = ROUNDS, timer=time.perf_counter) -> dict[str, Any]:
    """``second``'s latency over ``first``'s (each a callable that runs one inference), measured in ``rounds``
    alternating rounds of about ``runs / rounds`` inferences each, the order swapped every round: a change in the
    machine's load hits both alike. The ratio is the median of the rounds' ratios of medians; ``low``/``high`` are
    their quartiles, and ``noisy`` says that the rounds disagree (high / low above NOISY_SPREAD)."""
    for run in (first, second):
        for _ in range(3):
            run()
    per_round = max(3, runs // rounds)
    ratios = []
    for index in range(rounds):
        medians = {}
        for which, run in ((0, first), (1, second))[:: 1 if index % 2 == 0 else -1]:
            times = []
            for _ in range(per_round):
                started = timer()
                run()
                times.append(timer() - started)
            medians[which] = float(np.median(times))
        ratios.append(medians[1] / max(medians[0], 1e-12))
    low, mid, high = (float(q) for q in np.quantile(ratios, [0.25, 0.5, 0.75]))
    return {"ratio": mid, "low": low, "high": high, "rounds": rounds, "noisy": high / max(low, 1e-12) > NOISY_SPREAD}


def _ort_session(path: Path, threads: int, profile_prefix: str | None = None):
    """An ONNX Runtime session of ``path`` on the CPU (profiling into ``profile_prefix`` when given)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    if profile_prefix is not None:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ort_runner(path: Path, image: np.ndarray, threads: int):
    session = _ort_session(path, threads)
    feed = {session.get_inputs()[0].name: image}
    return lambda: session.run(None, feed)


def _openvino_runner(path: Path, image: np.ndarray, threads: int):
    import openvino as ov

    core = ov.Core()
    settings = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    request = core.compile_model(core.read_model(str(path)), "CPU", settings).create_infer_request()
    return lambda: request.infer({0: image})


def ort_profile(path: Path, image: np.ndarray, config: ExplainConfig) -> dict[str, Any]:
    """Median latency and kernel time per op type of one model in ONNX Runtime on the CPU (its profiler)."""
    with tempfile.TemporaryDirectory() as tmp:
        plain = _ort_runner(path, image, config.threads)
        latency = _median_ms(lambda _: plain(), None, config.runs)
        session = _ort_session(path, config.threads, profile_prefix=str(Path(tmp) / "ort"))
        feed = {session.get_inputs()[0].name: image}
        for _ in range(config.runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    by_op: collections.Counter[str] = collections.Counter()
    nodes: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event["args"]["op_name"]
            by_op[op] += event["dur"]
            nodes[event["name"][: -len("_kernel_time")]] = op
    named = _model_names(path)
    return {
        "median_ms": latency,
        **_shares(by_op, config.runs),
        "int8_layers": sum(1 for op in nodes.values() if op in INT8_ORT_OPS),
        "float_layers": sorted({named(node) for node, op in nodes.items() if op in COMPUTE_ORT_OPS}),
        "qdq_share": _share(by_op, QDQ_ORT_OPS),
        "layout_share": _share(by_op, LAYOUT_ORT_OPS),
    }


def _model_names(path: Path):
    """A function from ONNX Runtime's profiled node names to the model's own: its optimiser renames the nodes it
    rewrites after their output tensor (``/features/features.0/features.0.0/Conv_output_0_nchwc``), a name in
    neither the model nor the card (which says ``/features/features.0/features.0.0/Conv``)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    nodes = {node.name for node in graph.node}
    producers = {out: node for node in graph.node for out in node.output if node.name}

    def named(profiled: str) -> str:
        name = profiled
        while name.endswith("_nchwc"):
            name = name[: -len("_nchwc")]
        if name in nodes or name not in producers:
            return name if name in nodes else profiled
        node = producers[name]
        # a convolution fused with its ReLU/ReLU6 is named after the activation's output: the layer is the conv
        before = producers.get(node.input[0]) if node.op_type in ("Relu", "Clip") and node.input else None
        return before.name if before is not None and before.op_type in ("Conv", "Gemm", "MatMul") else node.name

    return named


def openvino_profile(path: Path, image: np.ndarray, config: ExplainConfig) -> dict[str, Any]:
    """Median latency, time per layer type and the precision each layer really executes in (OpenVINO's
    per-layer performance counters, CPU plugin, its default precision)."""
    import openvino as ov

    core = ov.Core()
    settings = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": config.threads}
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {**settings, "PERF_COUNT": True})
    request = compiled.create_infer_request()
    latency = _median_ms(lambda feed: request.infer(feed), {0: image}, config.runs)
    by_type: collections.Counter[str] = collections.Counter()
    precision: dict[str, str] = {}
    for _ in range(config.runs):
        request.infer({0: image})
        for layer in request.profiling_info:
            if layer.status == layer.Status.EXECUTED:
                by_type[layer.node_type] += layer.real_time.total_seconds() * 1e6
                if layer.node_type.startswith(COMPUTE_OV_TYPES):
                    precision[layer.node_name] = layer.exec_type.rsplit("_", 1)[-1].lower()
    counts = collections.Counter(precision.values())
    return {
        "median_ms": latency,
        **_shares(by_type, config.runs),
        "layers_by_precision": dict(counts),
        # OpenVINO splits a conv's bias off as "<node>/WithoutBiases": the model's (and the card's) name is <node>
        "float_layers": sorted({name.removesuffix("/WithoutBiases") for name, p in precision.items() if p != "i8"}),
        "int8_layers": counts.get("i8", 0),
        "qdq_share": _share(by_type, ("FakeQuantize",)),
        "layout_share": _share(by_type, ("Reorder", "Transpose")),
    }


def _shares(times: collections.Counter[str], runs: int) -> dict[str, Any]:
    total = sum(times.values()) or 1.0
    ops = {op: {"us_per_run": t / runs, "share": t / total} for op, t in times.most_common()}
    return {"kernel_ms_per_run": total / runs / 1000, "by_op": ops}


def _share(times: collections.Counter[str], prefixes: tuple[str, ...]) -> float:
    total = sum(times.values()) or 1.0
    return sum(t for op, t in times.items() if op.startswith(prefixes)) / total


def layer_sqnr(fp32: Path, int8: Path, images: np.ndarray) -> list[dict[str, Any]]:
    """Signal-to-quantization-noise ratios (dB) of every activation the int8 QDQ model quantizes, on ``images``, the
    worst own rounding first. ``local_sqnr_db``: the quantizer's own error (its input in the int8 model against its
    dequantized output): what keeping that layer in float would save. ``sqnr_db``: against the same tensor in the
    fp32 model, the errors of every layer before it included (None where the fp32 model has no tensor of that
    name). The verdict's advice went by the accumulated figure alone, and named layers whose own rounding cost
    36-40 dB (a reviewer's measure on the digits run)."""
    import onnx
    import onnxruntime as ort

    reference, quantized = onnx.load(str(fp32)), onnx.load(str(int8))
    made_by = {out: node for node in reference.graph.node for out in node.output}
    q_made_by = {out: node for node in quantized.graph.node for out in node.output}
    pairs = []
    for node in quantized.graph.node:
        source = q_made_by.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if source is not None and source.op_type == "QuantizeLinear":
            tensor = source.input[0]
            maker = made_by.get(tensor) or q_made_by.get(tensor)
            name = maker.name if maker is not None else tensor
            op = maker.op_type if maker is not None else "input"
            # a ReLU or ReLU6 the quantizer folded into its range: the int8 model feeds it the convolution's output
            # and the range does the clipping, which is the activation, not an error
            q_maker = q_made_by.get(tensor)
            folded = op if op in ("Relu", "Clip") and (q_maker is None or q_maker.op_type != op) else None
            pairs.append((name, op, tensor, node.output[0], tensor in made_by, folded, maker))
    if not pairs:
        return []
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # QDQ simulated exactly

    def outputs(model, names: list[str]) -> dict[str, np.ndarray]:
        have = {o.name for o in model.graph.output}
        model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in dict.fromkeys(names) if n not in have)
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: images}
        return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))

    a = outputs(reference, [p[2] for p in pairs if p[4]])
    b = outputs(quantized, [p[2] for p in pairs] + [p[3] for p in pairs])
    constants = _constants(reference)
    found = []
    for name, op, tensor, dequantized, in_fp32, folded, maker in pairs:
        entering = b[tensor]
        if folded == "Relu":
            entering = np.maximum(entering, 0)
        elif folded == "Clip":
            low, high = (constants.get(x) if x else None for x in (list(maker.input[1:3]) + ["", ""])[:2])
            entering = np.clip(entering, -np.inf if low is None else low, np.inf if high is None else high)
        found.append(
            {
                "layer": name,
                "op": op,
                "local_sqnr_db": _sqnr(entering, b[dequantized]),
                "sqnr_db": _sqnr(a[tensor], b[dequantized]) if in_fp32 else None,
            }
        )
    return sorted(found, key=lambda item: item["local_sqnr_db"])


def _sqnr(signal: np.ndarray, other: np.ndarray) -> float:
    power, noise = float(np.sum(signal.astype(np.float64) ** 2)), float(np.sum((signal - other) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(max(power, 1e-30) / noise)


def output_error(fp32: Path, int8: Path, images: np.ndarray) -> dict[str, Any]:
    """The int8 model's outputs (ONNX Runtime's own kernels, as deployed) against fp32's on ``images``: their SQNR
    (dB) and on how many images the top-1 class is the same. Any int8 model, a dynamic one too, whose quantizers
    are not in the graph to be measured layer by layer (a new user's dynamic export lost 25 points and explain
    said nothing of its error)."""
    import onnxruntime as ort

    sessions: dict[Path, Any] = {}

    def run(path: Path, batch: np.ndarray) -> np.ndarray:
        if path not in sessions:
            sessions[path] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sessions[path].run(None, {sessions[path].get_inputs()[0].name: batch})[0]

    batches = [images] if isinstance(images, np.ndarray) else images  # (one array, or batches of one set)
    pairs = [(run(fp32, batch), run(int8, batch)) for batch in batches]
    a, b = np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs])
    return {
        "images": int(len(a)),
        "logits_sqnr_db": _sqnr(a, b),
        "top1_same": int(np.sum(a.argmax(axis=1) == b.argmax(axis=1))),
    }


def _constants(model) -> dict[str, float]:
    """The model's scalar constants by tensor name (initializers and Constant nodes): a Clip's bounds."""
    import onnx
    from onnx import numpy_helper

    values = {}
    for init in model.graph.initializer:
        if int(np.prod(init.dims)) == 1:
            values[init.name] = float(numpy_helper.to_array(init).reshape(-1)[0])
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == onnx.AttributeProto.TENSOR:
            array = numpy_helper.to_array(node.attribute[0].t)
            if array.size == 1:
                values[node.output[0]] = float(array.reshape(-1)[0])
    return values


def kernel_check(int8: Path, images: np.ndarray) -> dict[str, Any]:
    """The int8 model run by ONNX Runtime's int8 kernels against its exact int8 arithmetic on ``images``
    (:func:`edgetransfer.quantize.kernel_gap`): they agree to rounding unless the kernels overflow (8-bit weights on
    an x86 CPU without VNNI: pairs of uint8 x int8 products summed in 16 bits)."""
    import onnx

    from edgetransfer.quantize import kernel_gap

    if not any(node.op_type == "DequantizeLinear" for node in onnx.load(str(int8)).graph.node):
        return {
            "skipped": "not a QDQ model (dynamic int8 runs integer kernels either way): no exact arithmetic to compare"
        }
    gap = kernel_gap(int8, [images] if isinstance(images, np.ndarray) else images)  # (one array, or batches)
    return {
        "images": gap["images"],
        "kernels_vs_arithmetic_top1_disagree": gap["top1_changed"],
        "kernels_vs_arithmetic_max_prob_diff": gap["max_prob_diff"],
    }


# kernels that move a probability by more than this from the exact int8 arithmetic overflow: measured on an AVX2 CPU
# (benchmarks/results/int8_overflow.md), 7-bit weights (no overflow possible) moved at most 0.044 by rounding (and
# changed one top-1 of 60 so), 8-bit weights 0.23 and 0.88
KERNEL_GAP = 0.1


def explain(run: RunDir, config: ExplainConfig = ExplainConfig()) -> dict[str, Any]:
    """Profile the run's fp32 and int8 models in ONNX Runtime and OpenVINO; write and return ``explain.json``."""
    config.validate()
    if not any(run.file(name).is_file() for name in (ONNX_FP32, OV_FP32)):
        raise UsageError(f"{run.path} has no exported model to explain: run 'edgetransfer export {run.path}' first")
    with run.lock("explain"):
        return _explain(run, config)


def check_images(splits, count: int) -> tuple[tuple, str | None]:
    """Up to ``count`` images for the int8 error and kernel checks, evenly spread through the validation split (it is
    listed class by class: its first 8 were all of one class), else the test split, else the training split, said
    (the docs say validation)."""
    from edgetransfer.evaluation import spaced

    split = splits.val or splits.test or splits.train
    samples = tuple(split[i] for i in spaced(len(split), count))
    if splits.val:
        return samples, None
    source = "test" if splits.test else "training"
    return (
        samples,
        f"the run has no validation images: the int8 error and kernel checks use {len(samples)} of its {source} images",
    )


def _data(run: RunDir, card: Any, config: ExplainConfig) -> tuple[str | None, str]:
    """The run's data folder: ``--data``; else the card's; where that is gone, the one its export was given with
    --data (a run copied to another machine and exported there could not be explained: the error named a --data
    explain did not have; a new user's trial), with a note to say once its images are read from there."""
    if config.data is not None:
        return config.data, ""
    given = ((card.export or {}).get("config") or {}).get("data")
    if run.data_gone(card) and given and Path(given).expanduser().is_dir():
        return (
            given,
            f"the run's data folder {run.data_root(card)} is not here: its images are read from {given}, where its "
            "export read them (--data)",
        )
    return None, ""


def _explain(run: RunDir, config: ExplainConfig) -> dict[str, Any]:
    from edgetransfer.evaluation import Decoded

    card = run.load_card()
    data, said = _data(run, card, config)
    splits = run.load_splits(card, data)
    if said:  # (once they are read: the folder is the run's)
        console.err.print(f"[yellow]note: {escape(said)}[/]")
    samples, note = check_images(splits, max(config.check_images, config.images))
    if note:
        console.err.print(f"[yellow]note: {note}[/]")
    checked = Decoded(samples, card.preprocessing)  # decoded once: the whole-model checks run it in batches of 32
    images = checked.spread(config.images)  # the per-layer error's, spread through the classes as the rest
    batch = next(images.batches(len(images)))[0]

    def check_batches():
        return (pixels for pixels, _ in checked.batches(32))

    one = batch[:1]
    doc: dict[str, Any] = {"cpu": cpu_features(), "settings": {**config.__dict__}, "engines": {}}
    quantization = card.artifacts.get(ONNX_INT8, {}).get("quantization", {})
    bits = quantization.get("weight_bits", 8) if run.file(ONNX_INT8).is_file() else None
    doc["cpu"]["implies"] = implications(doc["cpu"], bits)
    doc["int8_exports"] = []  # what export measured of each int8 model: the figures explain answers for
    settings = ((card.export or {}).get("config") or {}).get("int8") or {}
    for label, name in (("ONNX int8", ONNX_INT8), ("OpenVINO int8", OV_INT8)):
        record = card.artifacts.get(name, {}).get("quantization", {})
        if not run.file(name).is_file():
            continue
        try:  # export's figures are of the file it made: not of one changed or copied in since (a new user's trial)
            verify_artifact(run.path, name, card.artifacts, required=True)
        except RunDirError:
            continue  # (its profile's line says why)
        if record.get("val_drop_points") is None:  # no validation images: kept unchecked (it went unsaid)
            if record.get("accuracy_not_checked"):
                doc["int8_exports"].append({"model": label, "not_checked": record["accuracy_not_checked"]})
            continue
        keys = ("val_drop_points", "test_drop_points", "calibration_images", "weight_bits", "activations", "tool")
        keys += ("ort_calibration_images", "from_tool")  # (a QAT model's ranges: calibration_images is its set-up's)
        found = {"model": label, **{key: record.get(key) for key in keys}, "val_images": len(splits.val)}
        found["test_images"] = len(splits.test)
        keys = ("mode", "max_drop", "calibration_dir", "calibration_size", "per_channel")
        adaptation = (card.training or {}).get("adaptation") or {}
        # an adapted model's int8 was checked on source images (export says so; explain advised QAT on them)
        found["adapted"] = bool(adaptation.get("adapt_bn_images") and not adaptation.get("rolled_back_to_source"))
        doc["int8_exports"].append({**found, **{key: settings.get(key) for key in keys}})
    engines = (
        ("onnxruntime", ort_profile, _ort_runner, ONNX_FP32, ONNX_INT8),
        ("openvino", openvino_profile, _openvino_runner, OV_FP32, OV_INT8),
    )
    with console.err.status("profiling the models...") as status:
        for engine, profile, runner, fp32_name, int8_name in engines:
            found: dict[str, Any] = {}
            for variant, name in (("fp32", fp32_name), ("int8", int8_name)):
                status.update(f"profiling {name} in {engine}...")
                found[variant] = _profiled(run, card, name, lambda path, fn=profile: fn(path, one, config))
            if "median_ms" in found["fp32"] and "median_ms" in found["int8"]:
                status.update(f"timing int8 against fp32 in {engine}, alternately...")
                pair = paired_ratio(
                    runner(run.file(fp32_name), one, config.threads),
                    runner(run.file(int8_name), one, config.threads),
                    config.runs,
                )
                found["int8_latency_ratio"], found["int8_latency_ratio_rounds"] = pair["ratio"], pair
            doc["engines"][engine] = found
        if run.file(ONNX_FP32).is_file() and run.file(ONNX_INT8).is_file():
            status.update("measuring the int8 error of each layer...")
            doc["sqnr"] = _profiled(
                run, card, ONNX_INT8, lambda path: {"layers": layer_sqnr(run.file(ONNX_FP32), path, batch)}
            )
            # apart: one failing leaves the other
            doc["sqnr"]["output"] = _profiled(
                run, card, ONNX_INT8, lambda path: output_error(run.file(ONNX_FP32), path, check_batches())
            )
            doc["sqnr"]["activations"] = quantization.get("activations")  # "dynamic": quantized inside its kernels
            status.update("comparing ONNX Runtime's int8 kernels with int8 arithmetic...")
            doc["kernels"] = _profiled(run, card, ONNX_INT8, lambda path: kernel_check(path, check_batches()))
            record = card.artifacts.get(ONNX_INT8, {}).get("quantization", {})
            doc["kernels"]["weight_bits"] = record.get("weight_bits", 8)
            if str(record.get("tool", "")).startswith("nncf QAT"):  # its weights are not the fp32 model's
                doc["sqnr"]["retrained"] = True
    doc["verdict"] = verdict(doc)
    atomic_write_text(run.file(EXPLAIN_JSON), json.dumps(doc, indent=2, default=str) + "\n")
    return doc


def _profiled(run: RunDir, card: Any, name: str, measure) -> dict[str, Any]:
    """``measure(path)``, or why it could not be: the file is missing, or the engine cannot read or run it."""
    path = run.file(name)
    if not path.is_file():
        if name in (card.artifacts or {}):  # the export made it: it was removed since (model.onnx too: it said
            return {"error": run.gone(name)}  # "export it first" of a run whose card records it; a new user's)
        if name != "model.onnx" and run.file("model.onnx").is_file():  # exported, without this variant
            no_openvino = name.startswith("openvino/") and not run.file("openvino/model.xml").is_file()
            flag = "--no-openvino" if no_openvino else "--no-int8"
            mode = (((card.export or {}).get("config") or {}).get("int8") or {}).get("mode")
            if name == "openvino/model.int8.xml" and mode == "dynamic" and not no_openvino:
                return {"skipped": f"{name} is not in the run: dynamic int8 makes none (--int8-method static does)"}
            return {"skipped": f"{name} is not in the run (its export did not make it, e.g. {flag})"}
        return {"skipped": f"{name} is not in the run (export it first)"}
    try:  # a file changed or copied in since the export would be explained with confidence, and wrongly
        verify_artifact(run.path, name, card.artifacts, required=True)
    except RunDirError as exc:
        return {"error": str(exc)}
    try:
        return measure(path)
    except ImportError as exc:
        return {"skipped": f"{exc.name or 'the engine'} is not installed"}
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors (Fail, InvalidArgument...) derive from Exception
        # alone: they ended explain in a traceback, against "an engine that cannot profile a model is said"
        said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"error": f"cannot profile {name}: {said}"}


def export_check(found: dict[str, Any]) -> list[str]:
    """The int8 model's accuracy as export measured it (validation and test top-1 against fp32), first: explain's
    own figures compare outputs, not labels (on 8 images, as they once were, they read 'the same top-1 on 8 of 8'
    for a model that had lost 12.5 validation points); and, where it lost more than its budget, the causes its card
    records. (Export refuses an int8 model over its budget: one is kept only where no budget held it, ``--max-drop
    100`` as in the search's trials or ``--no-accuracy-aware``; over a point, the causes are said then.) A model that
    held its budget (or a point, where none held it) on validation and lost more on test is said too, with why where
    the images were few."""
    drop = found.get("val_drop_points")
    if found.get("not_checked"):
        return [
            f"int8 accuracy (export's check): {found.get('model', 'ONNX int8')} was not checked ("
            f"{found['not_checked']}): the figures below compare its outputs with fp32's and say nothing of its top-1"
        ]
    if drop is None:
        return []
    images = found.get("val_images") or 0
    test = found.get("test_drop_points")
    budget = found.get("max_drop")
    budget = budget if budget is not None and budget < 100 else None  # 100: not held to one
    moved = f"loses {drop:.2f}" if drop >= 0 else f"gains {-drop:.2f}"
    model = found.get("model", "ONNX int8")
    line = f"int8 accuracy (export's check): {model} {moved} points of validation top-1 against fp32"
    if test is not None:
        line += f" ({'loses' if test >= 0 else 'gains'} {abs(test):.2f} on test)"
    line += f" on {images} images (one image is {100 / images:.2f} points)" if images else ""
    allowed = budget if budget is not None else 1.0
    poor = drop > allowed
    if budget is not None:
        line += f": {'OVER' if poor else 'within'} its {budget:g}-point budget"
    elif poor:
        line += ": held to no budget by its export"
    causes = []
    test_lost = not poor and test is not None and test > allowed
    if test_lost:  # validation held it, test did not: said, with why
        tested = found.get("test_images") or 0
        line += ", but not on test" if budget is not None else f", but it loses more than {allowed:g} on test"
        if images and 100 / images > allowed:
            causes.append(
                f"{images} validation images cannot see a drop under {100 / images:.2f} points (one image)"
                + (f", so they hold a {budget:g}-point budget only coarsely" if budget is not None else "")
                + ": more validation images steady the check"
            )
        lost = round(test * tested / 100)  # (the drop is rounded: one image of 6 is 16.666667 points)
        if tested and 1 <= lost <= 3:
            causes.append(f"on {tested} test images that is {lost} image{'s' * (lost != 1)}")
    if not poor and not test_lost:
        return [line]
    # (an IR converted from a QAT model.int8.onnx is QAT's too: from_tool)
    retrained = any(str(found.get(key) or "").startswith("nncf QAT") for key in ("tool", "from_tool"))
    calibrated = found.get("ort_calibration_images") or found.get("calibration_images")
    if found.get("calibration_dir"):
        causes.append(
            f"it was calibrated on --calib {found['calibration_dir']}"
            + (f" ({calibrated} image{'s' * (calibrated != 1)})" if calibrated else "")
            + ", "
            "not its training images: images unlike those it is scored on give wrong ranges (a low SQNR at the "
            "input is the sign); re-export with --calib on images like the deployment's, or without --calib"
        )
    elif (found.get("calibration_images") or 1000) < 100 and not retrained:  # (QAT learns its ranges)
        count = found["calibration_images"]
        more = count >= (found.get("calibration_size") or 0)  # fewer than asked: all the training split had
        causes.append(
            f"it was calibrated on {count} images"
            + (": a larger --calib-size steadies the ranges" if more else " (all its training images)")
        )
    if found.get("per_channel") is False and model == "ONNX int8":  # (ONNX Runtime's option; NNCF's IR per channel)
        causes.append("its weights are quantized per tensor (--no-per-channel): per channel, the default, holds more")
    if found.get("adapted") and not found.get("calibration_dir"):  # source images: neither the deployment's nor
        causes.append(  # what QAT would learn on (a new user's trial: the advice was QAT on the training images)
            "the model was adapted to a target domain, but int8 was calibrated and checked on source images (its "
            "training and validation splits): re-export with --calib TARGET_DIR (target images), and measure on "
            "labelled target images with 'edgetransfer bench RUN --data DIR'"
        )
    elif found.get("mode") in ("static", "dynamic", "auto") and not retrained:
        causes.append(
            "try quantization-aware training (--int8-method qat): it learns the ranges on the training images"
        )
    if causes:
        line += "; " + "; ".join(causes)
    return [line]


def verdict(doc: dict[str, Any]) -> list[str]:
    """A few sentences a person can act on."""
    said = [line for found in doc.get("int8_exports") or [] for line in export_check(found)]
    for engine, found in doc["engines"].items():
        int8 = found.get("int8", {})
        for variant in ("fp32", "int8"):
            problem = found.get(variant, {}).get("error") or found.get(variant, {}).get("skipped")
            if problem:
                said.append(f"{engine} {variant}: {problem}")
        ratio = found.get("int8_latency_ratio")
        if ratio is None:
            if "int8_layers" in int8:  # profiled, with no fp32 model to time it against: what it is, still said
                said.append(f"{engine}: int8 alone (no fp32 model to compare): {_in_int8(int8)}")
            continue
        speed = "faster than" if ratio < 0.8 else "no real gain over" if ratio <= 1.05 else "SLOWER than"
        threads = doc["settings"]["threads"]
        rounds = found.get("int8_latency_ratio_rounds") or {}
        unsure = ""
        if rounds.get("noisy") and any(rounds["low"] < edge < rounds["high"] for edge in (0.8, 1.05)):
            unsure = (  # the rounds fall on both sides of a verdict's edge: the verdict itself is in doubt
                f", but noisy: its rounds ranged {rounds['low']:.2f}-{rounds['high']:.2f}x; run again when the "
                "machine is quiet, or with more --runs"
            )
        line = (
            f"{engine}: int8 is {ratio:.2f}x fp32's median latency ({speed} fp32{unsure}) at {threads} "
            f"thread{'s' if threads > 1 else ''}; {_in_int8(int8)}, layout reorders {int8['layout_share']:.0%}"
        )
        if int8["float_layers"]:
            shown = ", ".join(int8["float_layers"][:3])
            line += f"; in float: {shown}{' ...' if len(int8['float_layers']) > 3 else ''}"
        top = max((int8.get("by_op") or {}).items(), key=lambda item: item[1].get("share", 0), default=None)
        if ratio > 1.05 and top is not None:  # the op type its time goes to: what makes it slow
            line += f"; {top[0]} takes {top[1]['share']:.0%} of its time"
            # (ONNX Runtime's model alone: OpenVINO's int8 IR is NNCF's static quantization whatever the method)
            if engine == "onnxruntime" and (
                (doc.get("sqnr") or {}).get("activations") == "dynamic" or top[0] == "ConvInteger"
            ):
                line += (
                    " (dynamic int8: activations quantized at run time, and ConvInteger is not ONNX Runtime's fast "
                    "int8 convolution; its docs recommend static quantization for CNNs): export --int8-method static"
                )
        said.append(line)
    said.extend(f"this CPU: {text}" for text in doc["cpu"].get("implies", []))
    kernels = doc.get("kernels") or {}
    if "images" in kernels:
        gap, flips = kernels["kernels_vs_arithmetic_max_prob_diff"], kernels["kernels_vs_arithmetic_top1_disagree"]
        figures = (
            f"ONNX Runtime's int8 kernels vs the same int8 model computed exactly: top-1 differs on {flips} of "
            f"{kernels['images']} images, probabilities by up to {gap:.3f}"
        )
        if gap > KERNEL_GAP:
            from edgetransfer.machine import int8_overflows

            flags = {flag for flag, present in doc["cpu"]["flags"].items() if present}
            overflows = (
                kernels.get("weight_bits", 8) == 8 and bool(flags) and int8_overflows(flags, doc["cpu"].get("arch"))
            )
            why = (
                "the kernels overflow: this CPU has no VNNI and the model's int8 weights have 8 bits; re-export with "
                "--int8-weights 7bit"
                if overflows
                else "more than rounding: int8 accuracy measured here may not hold on another CPU"
            )
            said.append(f"int8 kernels: {figures}: {why}")
        else:
            said.append(f"int8 kernels: {figures}: they compute this int8 model faithfully (rounding only)")
    elif kernels.get("error") or kernels.get("skipped"):
        said.append(f"int8 kernels: {kernels.get('error') or kernels.get('skipped')}")
    layers = (doc.get("sqnr") or {}).get("layers") or []
    low = [item for item in layers if item["local_sqnr_db"] < LOW_SQNR_DB]
    if layers:
        worst = ", ".join(f"{item['layer']} ({item['local_sqnr_db']:.1f} dB)" for item in layers[:3])
        advice = (
            f"{len(low)} activation(s) whose own rounding is under {LOW_SQNR_DB:.0f} dB: if int8 loses accuracy, keep "
            "these in float or try --calib-method entropy"
            if low
            else f"every activation's own rounding keeps at least {LOW_SQNR_DB:.0f} dB: no single layer stands out"
        )
        ends = [item for item in layers if item["sqnr_db"] is not None]
        end = min(ends, key=lambda item: item["sqnr_db"]) if ends else None
        so_far = f"; accumulated vs fp32, worst: {end['layer']} ({end['sqnr_db']:.1f} dB)" if end else ""
        if so_far and doc["sqnr"].get("retrained"):  # a low figure there is no rounding error to mend
            so_far += " (quantization-aware training retrained the weights: this counts what it changed too)"
        said.append(f"int8 error (SQNR of each quantizer's own rounding, worst first): {worst}; {advice}{so_far}")
    sqnr = doc.get("sqnr") or {}
    per_layer = sqnr.get("error") or sqnr.get("skipped")  # the layer by layer measure could not be taken
    if per_layer:
        said.append(f"int8 error per layer: {per_layer}")
    output = sqnr.get("output") or {}
    if "images" in output:
        figures = (
            f"ONNX int8's outputs against fp32 on {output['images']} images: {output['logits_sqnr_db']:.1f} dB, the "
            f"same top-1 on {output['top1_same']} of {output['images']}"
        )
        if sqnr.get("retrained"):
            figures += " (quantization-aware training retrained the weights: this counts what it changed too)"
        if not layers and not per_layer:  # measured, and nothing there to measure
            dynamic = sqnr.get("activations") == "dynamic"
            figures += " (no QDQ pairs in its graph to measure layer by layer" + (
                ": dynamic int8 quantizes its activations inside its kernels)" if dynamic else ")"
            )
        said.append(f"int8 error: {figures}")
    elif output.get("error") or output.get("skipped"):
        said.append(f"int8 error on the outputs: {output.get('error') or output.get('skipped')}")
    return _once(said)


def _in_int8(int8: dict[str, Any]) -> str:
    """How much of a profiled int8 model runs in int8, and what its quantize/dequantize nodes cost."""
    layers = int8["int8_layers"] + len(int8["float_layers"])
    return (
        f"{int8['int8_layers']} of {layers} compute layers run in int8; quantize/dequantize nodes take "
        f"{int8['qdq_share']:.0%} of its time"
    )


def _once(said: list[str]) -> list[str]:
    """``said`` without a line whose cause (after its "label: ") an earlier line said: a replaced model.int8.onnx's
    checksum error came four times, once per measure that could not read it (a new user's trial)."""
    kept, causes = [], set()
    for line in said:
        cause = line.split(": ", 1)[-1]
        if cause in causes and ": " in line:
            continue
        causes.add(cause)
        kept.append(line)
    return kept
