"""edgetransfer explain: where the time goes, which layers run in int8, each layer's int8 error."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgetransfer.cli import app
from edgetransfer.explain import ExplainConfig, check_images, explain, implications
from edgetransfer.rundir import RunDir

FAST = ExplainConfig(runs=3, images=4)


@pytest.fixture
def run_copy(trained_run, tmp_path):
    shutil.copytree(trained_run.path, tmp_path / "run")
    return RunDir.open(tmp_path / "run")


def test_explain_profiles_both_engines_and_measures_each_layers_error(run_copy):
    doc = explain(run_copy, FAST)
    ort = doc["engines"]["onnxruntime"]
    assert ort["int8"]["int8_layers"] > 0 and not ort["int8"]["float_layers"]  # every conv quantized
    assert ort["fp32"]["int8_layers"] == 0 and ort["fp32"]["float_layers"]
    assert "QLinearConv" in ort["int8"]["by_op"] and "Conv" in ort["fp32"]["by_op"]
    # the model's own node names (the card's), not ONNX Runtime's rewritten ones ("..._output_0_nchwc")
    import onnx

    names = {node.name for node in onnx.load(str(run_copy.file("model.onnx"))).graph.node}
    assert set(ort["fp32"]["float_layers"]) <= names, set(ort["fp32"]["float_layers"]) - names
    assert "/features/features.0/features.0.0/Conv" in ort["fp32"]["float_layers"]  # the first conv, fused with ReLU6
    assert not [name for name in doc["engines"]["openvino"]["fp32"]["float_layers"] if name.endswith("/WithoutBiases")]
    assert ort["int8_latency_ratio"] > 0 and math.isfinite(ort["int8_latency_ratio"])
    ov = doc["engines"]["openvino"]
    assert ov["int8"]["layers_by_precision"].get("i8", 0) > 0 and "i8" not in ov["fp32"]["layers_by_precision"]
    layers = doc["sqnr"]["layers"]
    local = [item["local_sqnr_db"] for item in layers]
    assert layers and local == sorted(local)  # the worst own rounding first
    # a ReLU6 folded into its quantizer's range is the activation, not an error: counted as one, those read 1-2 dB
    assert min(local) > 10, layers[:3]
    # the accumulated figure (against fp32) includes the layers before: never better than a layer's own by much
    assert any(item["sqnr_db"] is not None and item["sqnr_db"] < item["local_sqnr_db"] for item in layers)
    assert any(line.startswith("onnxruntime: int8 is ") for line in doc["verdict"])
    # the whole model's error, as deployed (ONNX Runtime's own kernels), and the kernels against exact int8
    # arithmetic: on every validation image (up to 512), not on the per-layer error's --images (8 by default), where
    # "the same top-1 on 8 of 8" could not show a flip in 50
    val = len(run_copy.load_splits(run_copy.load_card()).val)
    output = doc["sqnr"]["output"]
    assert val > 4 and output["images"] == val and doc["kernels"]["images"] == val
    assert 0 <= output["top1_same"] <= val and 5 < output["logits_sqnr_db"] < math.inf
    said = f"int8 error: ONNX int8's outputs against fp32 on {val} images"
    assert any(line.startswith(said) for line in doc["verdict"]), doc["verdict"]
    assert json.loads(run_copy.file("explain.json").read_text())["verdict"] == doc["verdict"]


def test_a_dynamic_int8_models_error_is_measured_on_its_outputs(trained_run, tmp_path):
    """A dynamic int8 model has no quantizers in its graph to measure layer by layer: a new user's lost 25 points
    and explain gave no error figure for it. Its outputs against fp32's are measured, and the verdict says why
    there is nothing per layer."""
    from edgetransfer.evaluation import Decoded
    from edgetransfer.explain import layer_sqnr, output_error, verdict
    from edgetransfer.quantize import quantize_dynamic

    card = trained_run.load_card()
    batch = next(Decoded(trained_run.load_splits(card).val[:4], card.preprocessing).batches(4))[0]
    fp32, dynamic = trained_run.file("model.onnx"), tmp_path / "dynamic.onnx"
    quantize_dynamic(fp32, dynamic)
    assert layer_sqnr(fp32, dynamic, batch) == []
    assert output_error(fp32, fp32, batch) == {"images": 4, "logits_sqnr_db": math.inf, "top1_same": 4}
    found = output_error(fp32, dynamic, batch)
    assert found["images"] == 4 and 0 <= found["top1_same"] <= 4 and found["logits_sqnr_db"] < math.inf
    base = {"engines": {}, "cpu": {"arch": "x86_64", "flags": {}, "implies": []}}
    [line] = verdict({**base, "sqnr": {"layers": [], "output": found, "activations": "dynamic"}})
    assert line.startswith("int8 error: ONNX int8's outputs against fp32 on 4 images: ") and "dynamic int8" in line
    [unknown] = verdict({**base, "sqnr": {"layers": [], "output": found, "activations": "uint8"}})  # not said dynamic
    assert unknown.endswith("(no QDQ pairs in its graph to measure layer by layer)"), unknown
    assert verdict({**base, "sqnr": {"layers": [], "output": {"error": "cannot run it"}}}) == [
        "int8 error on the outputs: cannot run it"
    ]
    # the layer by layer measure failed (an engine's error): said, not taken for a graph without QDQ pairs
    failed = verdict({**base, "sqnr": {"error": "cannot profile model.int8.onnx: Fail", "output": found}})
    assert failed[0] == "int8 error per layer: cannot profile model.int8.onnx: Fail" and len(failed) == 2
    assert "QDQ" not in failed[1] and failed[1].startswith("int8 error: ONNX int8's outputs"), failed
    # a QAT model's outputs differ from fp32's by what its training changed too: said, as per layer
    [qat] = verdict({**base, "sqnr": {"layers": [], "output": found, "retrained": True}})
    assert "quantization-aware training retrained the weights" in qat, qat


def test_the_images_of_the_checks_are_said_where_the_run_has_no_validation_split(trained_run):
    """explain used training images for its error figures on a run without validation images, without a word."""

    splits = trained_run.load_splits(trained_run.load_card())
    samples, note = check_images(splits, 4)
    # spread through the split, which is listed class by class (its first images were all of one class)
    assert len(samples) == 4 and set(samples) <= set(splits.val) and note is None
    assert len({s.label for s in samples}) == len({s.label for s in splits.val}) > 1
    samples, note = check_images(dataclasses.replace(splits, val=(), test=()), 4)
    assert set(samples) <= set(splits.train) and "no validation images" in note and "4 of its training images" in note


def record(run: RunDir, rel: str) -> None:
    """Record ``rel``'s present bytes in the run's card, as an export that made this file would have."""
    from edgetransfer.rundir import sha256_file

    card = json.loads(run.file("card.json").read_text())
    card["artifacts"][rel]["sha256"] = sha256_file(run.file(rel))
    run.file("card.json").write_text(json.dumps(card))


def test_an_engine_that_cannot_profile_a_model_is_said_and_the_rest_reported(run_copy):
    run_copy.file("openvino/model.int8.xml").write_text("<net>not an IR</net>")
    record(run_copy, "openvino/model.int8.xml")  # a file the export wrote (not one changed since: that is refused)
    run_copy.file("model.int8.onnx").unlink()
    doc = explain(run_copy, FAST)
    assert "cannot profile openvino/model.int8.xml" in doc["engines"]["openvino"]["int8"]["error"]
    # the export made it (card.json records it): removed since, not "its export did not make it" (a new user's
    # finding: explain blamed the export for a file they had deleted)
    assert doc["engines"]["onnxruntime"]["int8"]["error"] == (
        f"model.int8.onnx is recorded in card.json but missing from the run: restore it, or re-run "
        f"'edgetransfer export {run_copy.path}'"
    )
    assert doc["engines"]["openvino"]["fp32"]["median_ms"] > 0 and "sqnr" not in doc
    assert any("cannot profile openvino/model.int8.xml" in line for line in doc["verdict"])
    # onnxruntime's own errors (InvalidGraph, Fail...) derive from Exception alone: they were a traceback
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["input"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
    )
    onnx.save(helper.make_model(graph), str(run_copy.file("model.onnx")))
    record(run_copy, "model.onnx")
    broken = explain(run_copy, FAST)["engines"]["onnxruntime"]["fp32"]
    assert broken["error"].startswith("cannot profile model.onnx: "), broken
    card = json.loads(run_copy.file("card.json").read_text())
    del card["artifacts"]["model.int8.onnx"]  # as an export with --no-int8 leaves the card
    run_copy.file("card.json").write_text(json.dumps(card))
    doc = explain(run_copy, FAST)
    assert (
        "model.int8.onnx is not in the run (its export did not make it, e.g. --no-int8)"
        in doc["engines"]["onnxruntime"]["int8"]["skipped"]
    )
    # exported with --no-openvino: that is the flag named for its OpenVINO int8 model (it said --no-int8)
    shutil.rmtree(run_copy.file("openvino"))
    card["artifacts"] = {k: v for k, v in card["artifacts"].items() if not k.startswith("openvino/")}
    run_copy.file("card.json").write_text(json.dumps(card))
    doc = explain(run_copy, FAST)
    assert doc["engines"]["openvino"]["int8"]["skipped"] == (
        "openvino/model.int8.xml is not in the run (its export did not make it, e.g. --no-openvino)"
    )


def test_int8_kernels_agree_with_int8_arithmetic_with_the_default_weight_bits(trained_run):
    """ONNX Runtime's int8 kernels run the exported int8 model as its int8 arithmetic says (to rounding) on this CPU,
    whichever it is: the default --int8-weights picks 7 bits where 8 would overflow (x86 without VNNI; measured on
    such a CPU, benchmarks/results/int8_overflow.md: the digits' top-1 changed by the kernels on 12 of 269
    validation images with 8 bits, on none with 7)."""
    from edgetransfer.explain import KERNEL_GAP, kernel_check
    from edgetransfer.runtime import preprocess

    card = trained_run.load_card()
    images = preprocess(sorted(Path(card.dataset["path"]).rglob("*.png"))[:16], card.preprocessing)
    found = kernel_check(trained_run.file("model.int8.onnx"), images)
    assert found["images"] == 16 and found["kernels_vs_arithmetic_top1_disagree"] == 0, found
    assert found["kernels_vs_arithmetic_max_prob_diff"] < KERNEL_GAP, found


def test_the_verdict_names_overflowing_int8_kernels():
    from edgetransfer.explain import verdict

    def doc(flips, bits, flags):
        kernels = {"images": 30, "kernels_vs_arithmetic_top1_disagree": flips, "weight_bits": bits}
        kernels["kernels_vs_arithmetic_max_prob_diff"] = 0.2 if flips else 0.001
        return {"engines": {}, "cpu": {"arch": "x86_64", "flags": flags, "implies": []}, "kernels": kernels}

    avx2, vnni = {"avx2": True, "avx512_vnni": False}, {"avx2": True, "avx512_vnni": True}
    [line] = verdict(doc(8, 8, avx2))
    assert "top-1 differs on 8 of 30 images" in line and "re-export with --int8-weights 7bit" in line
    [line] = verdict(doc(8, 7, avx2))
    assert "may not hold on another CPU" in line and "7bit" not in line
    [line] = verdict(doc(0, 8, vnni))
    assert line.endswith("(rounding only)") and "on 0 of 30 images" in line


def test_the_accumulated_error_of_a_qat_model_says_its_weights_were_retrained():
    """A new user's QAT model: explain gave its accumulated error against fp32 (3.8 dB; post-training int8 6.9 dB)
    as if it were rounding, where QAT had retrained the weights it is compared through."""
    from edgetransfer.explain import verdict

    layers = [{"layer": "/a/Conv", "local_sqnr_db": 30.0, "sqnr_db": 3.8}]
    base = {"engines": {}, "cpu": {"arch": "x86_64", "flags": {}, "implies": []}}
    [plain] = verdict({**base, "sqnr": {"layers": layers}})
    [qat] = verdict({**base, "sqnr": {"layers": layers, "retrained": True}})
    assert plain.endswith("accumulated vs fp32, worst: /a/Conv (3.8 dB)"), plain
    assert qat == plain + " (quantization-aware training retrained the weights: this counts what it changed too)"


def test_what_the_instruction_set_implies():
    vnni = implications({"flags": {"avx2": True, "avx512_vnni": True}})
    # a VNNI CPU without bf16 (an Intel Xeon without AVX-512 BF16): that is said too (a new user saw only VNNI)
    assert "VNNI" in vnni[0] and len(vnni) == 2 and "no bf16 in hardware" in vnni[1] and "fp32 here" in vnni[1]
    old = implications({"flags": {"avx2": True}}, weight_bits=8)
    assert "no VNNI" in old[0] and "gains less over fp32" in old[0] and "export with --int8-weights 7bit" in old[0]
    # a run without int8 was told to export with the option export's default takes (a new user's trial)
    none = implications({"flags": {"avx2": True}})
    assert "--int8-weights 7bit" not in none[0] and "takes 7-bit weights on such a CPU (--int8-weights auto" in none[0]
    # int8 is called the way to a faster model only where int8 has its own instructions (it contradicted "gains less")
    assert "int8 is the way" in vnni[1] and "no bf16 in hardware" in old[1] and "int8 is the way" not in old[1]
    # a run whose int8 weights have 7 bits already (export's auto on such a CPU): no advice to do what is done
    seven = implications({"flags": {"avx2": True}}, weight_bits=7)
    assert "no VNNI" in seven[0] and "--int8-weights" not in seven[0] and "have 7 bits, which do not" in seven[0]
    bf16 = implications({"flags": {"avx512_vnni": True, "avx512_bf16": True}})
    assert "bf16 in hardware: OpenVINO runs 'fp32' models in bf16" in bf16[1] and len(bf16) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threads", "0"], "--threads must be 1..1024"),
        (["--images", "999"], "--images"),
        (["--check-images", "0"], "--check-images must be 1..100000"),
    ],
)
def test_bad_settings_are_one_line(run_copy, args, message):
    result = CliRunner().invoke(app, ["explain", str(run_copy.path), *args])
    assert result.exit_code == 2 and message in result.stderr
    assert not run_copy.file("explain.json").exists()


def test_check_images_caps_the_whole_model_checks_never_below_images(run_copy):
    doc = explain(run_copy, dataclasses.replace(FAST, images=4, check_images=6))
    assert doc["sqnr"]["output"]["images"] == 6 and doc["kernels"]["images"] == 6
    doc = explain(run_copy, dataclasses.replace(FAST, images=4, check_images=2))
    assert doc["sqnr"]["output"]["images"] == 4 and doc["settings"]["check_images"] == 2


def test_a_run_without_exported_models_is_told_to_export_first(run_copy):
    for name in ("model.onnx", "model.int8.onnx", "openvino/model.xml"):
        run_copy.file(name).unlink()
    result = CliRunner().invoke(app, ["explain", str(run_copy.path)])
    assert result.exit_code == 2 and "has no exported model to explain: run 'edgetransfer export" in result.stderr


def test_a_model_file_changed_since_the_export_is_not_explained(run_copy):
    """explain profiled any file it found: fp32 copied over int8 gave 'int8 is 0.99x ... 0 of 53 layers in int8'
    with exit 0, and another run's model a traceback; bench and predict refuse such files by their sha256."""
    shutil.copy(run_copy.file("model.onnx"), run_copy.file("model.int8.onnx"))
    doc = explain(run_copy, FAST)
    assert "model.int8.onnx does not match the sha256 recorded" in doc["engines"]["onnxruntime"]["int8"]["error"]
    assert (
        doc["engines"]["onnxruntime"]["fp32"]["median_ms"] > 0
        and "int8_latency_ratio" not in doc["engines"]["onnxruntime"]
    )


def test_the_int8_ratio_is_timed_in_alternating_rounds_and_said_noisy_when_they_disagree():
    """explain timed fp32, then int8: a burst of load during one of them flipped the verdict between runs of the
    same models (0.47x, 0.52x, 1.42x on a busy machine). The two now alternate, round by round, and a ratio whose
    rounds disagree is flagged. A fake clock: each inference advances it by the model's cost times the load."""
    from edgetransfer.explain import paired_ratio, verdict

    clock = [0.0]
    load = iter([1.0] * 10_000)

    def model(cost):
        def run():
            clock[0] += cost * next(load)

        return run

    steady = paired_ratio(model(2.0), model(1.0), runs=30, timer=lambda: clock[0])
    assert steady["ratio"] == pytest.approx(0.5) and not steady["noisy"]

    # the machine three times as slow for a stretch (a neighbour's job) that began as int8's timing did
    def timed(run):
        started = clock[0]
        run()
        return clock[0] - started

    pattern = [1.0] * 66 + [3.0] * 66
    load = iter(pattern)
    sequential = []
    for run in (model(2.0), model(1.0)):  # the old way: 3 warm-up runs, then 60 timed, one model after the other
        for _ in range(3):
            run()
        sequential.append(np.median([timed(run) for _ in range(60)]))
    assert sequential[1] / sequential[0] == pytest.approx(1.5)  # int8 read "SLOWER than fp32"
    load = iter(pattern * 10)
    busy = paired_ratio(model(2.0), model(1.0), runs=60, timer=lambda: clock[0])
    assert 0.4 < busy["ratio"] < 0.7  # the rounds pair the two models under the same load
    load = iter([1.0, 3.0, 1.0, 1.0, 3.0, 3.0, 1.0] * 10_000)  # load that changes within a round
    noisy = paired_ratio(model(2.0), model(1.0), runs=30, timer=lambda: clock[0])
    assert noisy["noisy"] and noisy["high"] / noisy["low"] > 1.25
    found = {"fp32": {}, "int8": {"int8_layers": 5, "float_layers": [], "qdq_share": 0.1, "layout_share": 0.0}}
    doc = {"engines": {"onnxruntime": {**found, "int8_latency_ratio": noisy["ratio"],
                                       "int8_latency_ratio_rounds": noisy}},
           "settings": {"threads": 1}, "cpu": {}}  # fmt: skip
    assert noisy["low"] < 0.8 < noisy["high"]  # on both sides of "faster than fp32": the verdict itself in doubt
    assert "fp32, but noisy: its rounds ranged" in verdict(doc)[0]
    doc["engines"]["onnxruntime"]["int8_latency_ratio_rounds"] = steady
    assert "noisy" not in verdict(doc)[0]
    sure = {**noisy, "low": 0.5, "high": 0.7}  # noisy rounds, all of them faster: the verdict stands
    doc["engines"]["onnxruntime"]["int8_latency_ratio_rounds"] = sure
    assert "noisy" not in verdict(doc)[0]


def test_the_verdict_opens_with_exports_accuracy_check_and_its_causes():
    """explain's own figures are on 8 images: a QAT model that had lost 12.5 validation points read 'the same top-1
    on 8 of 8', and a model calibrated on 8 dark images (-62.5 points) was told to try --calib-method entropy (a new
    user's trial; neither helped). The verdict opens with what export measured and, over the budget, the causes its
    card records; a slow dynamic int8 model is told why and what to export instead."""
    from edgetransfer.explain import verdict

    base = {"engines": {}, "cpu": {}, "settings": {"threads": 1}}
    dark = {"val_drop_points": 62.5, "test_drop_points": 56.25, "val_images": 16, "max_drop": 100.0, "mode": "static",
            "calibration_dir": "/data/dark", "calibration_images": 8, "per_channel": False}  # fmt: skip
    first = verdict({**base, "int8_exports": [dark]})[0]
    assert first.startswith("int8 accuracy (export's check): ONNX int8 loses 62.50 points of validation top-1")
    # (export refuses a model over its budget: one is kept where none held it, --max-drop 100 as a search's trials)
    assert "(loses 56.25 on test) on 16 images (one image is 6.25 points): held to no budget by its export" in first
    assert "calibrated on --calib /data/dark (8 images), not its training images" in first
    assert "per tensor (--no-per-channel)" in first and "--int8-method qat" in first
    fine = verdict(
        {**base, "int8_exports": [{**dark, "val_drop_points": 0.5, "test_drop_points": 0.5, "max_drop": 1.0}]}
    )[0]
    assert fine.endswith("within its 1-point budget"), fine  # no cause for what holds
    # validation held it, test lost 6.25 points (one image of 16): said, with why (it said nothing; a new user's)
    held = {**dark, "val_drop_points": 0.0, "test_drop_points": 6.25, "max_drop": 1.0, "test_images": 16}
    said = verdict({**base, "int8_exports": [held]})[0]
    assert (
        "(loses 6.25 on test) on 16 images (one image is 6.25 points): within its 1-point budget, but not on "
        "test; 16 validation" in said
    ), said
    assert "16 validation images cannot see a drop under 6.25 points (one image)" in said
    assert "on 16 test images that is 1 image;" in said and "calibrated on --calib /data/dark" in said
    # held to no budget (a search's trials): no budget named; one image of 6, whose drop is rounded up, is counted
    free = {**held, "max_drop": 100.0, "test_drop_points": 16.666667, "test_images": 6}
    said = verdict({**base, "int8_exports": [free]})[0]
    assert "budget" not in said.split("(one image is 6.25 points)")[1].split(";")[0], said
    assert (
        ", but it loses more than 1 on test" in said and "cannot see a drop under 6.25 points (one image): more" in said
    )
    assert "on 6 test images that is 1 image;" in said, said
    held = {**held, "val_images": 400, "test_images": 400, "calibration_dir": None, "calibration_images": 300,
            "per_channel": True}  # fmt: skip
    said = verdict({**base, "int8_exports": [held]})[0]  # many images: no coarse-check cause, still said
    assert (
        "budget, but not on test; try quantization-aware" in said
        and "cannot see" not in said
        and "image(s)" not in said
    ), said
    gain = verdict({**base, "int8_exports": [{**dark, "val_drop_points": -0.5, "test_drop_points": -1.0}]})[0]
    assert "ONNX int8 gains 0.50 points of validation top-1 against fp32 (gains 1.00 on test)" in gain, gain
    few = {**dark, "calibration_dir": None, "calibration_images": 40, "calibration_size": 200, "per_channel": True}
    assert "calibrated on 40 images (all its training images)" in verdict({**base, "int8_exports": [few]})[0]
    # a model adapted to a target domain: its int8 was calibrated and checked on source images; QAT on those was the
    # advice (a new user's trial): --calib with target images, and bench on labelled ones, is
    said = verdict({**base, "int8_exports": [{**few, "adapted": True}]})[0]
    assert "the model was adapted to a target domain, but int8 was calibrated and checked on source images" in said
    assert "re-export with --calib TARGET_DIR" in said and "--int8-method qat" not in said, said
    qat = {**few, "mode": "qat", "max_drop": 100.0, "tool": "nncf QAT (PyTorch), weights quantized by ONNX Runtime"}
    said = verdict({**base, "int8_exports": [qat]})[0]
    assert said.endswith("held to no budget by its export"), said  # QAT learns its ranges: no calibration cause
    # QAT with --calib: ONNX Runtime's ranges come from the --calib images, not its set-up's 20 (a new user's trial)
    calib = {**qat, "calibration_dir": "/data/one", "calibration_images": 20, "ort_calibration_images": 1}
    assert "calibrated on --calib /data/one (1 image), not" in verdict({**base, "int8_exports": [calib]})[0]
    # an IR converted from that model: its images named (it said "(None images)"), and known as QAT (review)
    ir = {**calib, "model": "OpenVINO int8", "tool": "openvino.convert_model", "from_tool": qat["tool"], "mode": "auto"}
    said = verdict({**base, "int8_exports": [ir]})[0]
    assert "--calib /data/one (1 image), not" in said and "--int8-method qat" not in said, said
    bare = {**ir, "calibration_images": None, "ort_calibration_images": None}
    assert "calibrated on --calib /data/one, not" in verdict({**base, "int8_exports": [bare]})[0]
    assert verdict(base) == [] and verdict({**base, "int8_exports": []}) == []
    # every int8 model export kept: an OpenVINO IR that lost 75 points went unsaid beside ONNX's 0 (a new user's)
    ov = {**dark, "model": "OpenVINO int8", "val_drop_points": 75.0, "test_drop_points": 75.0}
    onnx = {**dark, "model": "ONNX int8", "val_drop_points": 0.0, "test_drop_points": 0.0, "per_channel": True}
    lines = verdict({**base, "int8_exports": [onnx, ov]})
    assert lines[0].startswith("int8 accuracy (export's check): ONNX int8 loses 0.00 points") and len(lines) == 2
    assert lines[1].startswith("int8 accuracy (export's check): OpenVINO int8 loses 75.00 points"), lines
    assert "calibrated on --calib /data/dark" in lines[1] and "per tensor" not in lines[1]  # ONNX Runtime's option
    int8 = {"int8_layers": 53, "float_layers": [], "qdq_share": 0.04, "layout_share": 0.0,
            "by_op": {"ConvInteger": {"share": 0.84}, "Mul": {"share": 0.04}}}  # fmt: skip
    slow = {**base, "engines": {"onnxruntime": {"fp32": {}, "int8": int8, "int8_latency_ratio": 7.8}}}
    [line] = verdict({**slow, "sqnr": {"activations": "dynamic"}})
    assert "SLOWER than fp32" in line and "ConvInteger takes 84% of its time" in line
    assert line.endswith("export --int8-method static"), line
    ov = {**base, "engines": {"openvino": {"fp32": {}, "int8": int8, "int8_latency_ratio": 7.8}}}
    [line] = verdict({**ov, "sqnr": {"activations": "dynamic"}})  # its IR is NNCF's static int8: no such advice
    assert "ConvInteger takes 84%" in line and "--int8-method static" not in line, line
    alone = {"engines": {"onnxruntime": {"fp32": {"error": "model.onnx is recorded in card.json but missing"},
                                         "int8": int8}}}  # fmt: skip
    lines = verdict({**base, **alone})  # its own profile was taken and not said (a new user's trial)
    assert (
        lines[1] == "onnxruntime: int8 alone (no fp32 model to compare): 53 of 53 compute layers run in int8; "
        "quantize/dequantize nodes take 4% of its time"
    ), lines
    int8["by_op"] = {"Conv": {"share": 0.9}}  # slow, but not dynamic: the op type said, no advice to change method
    [line] = verdict({**slow, "sqnr": {"activations": "uint8"}})
    assert line.endswith("Conv takes 90% of its time"), line


def test_a_run_whose_images_moved_is_explained_from_data_or_its_exports(run_copy, tmp_path, capsys):
    """A run whose data folder moved could not be explained: the error named a --data explain did not have (a new
    user's trial). --data reads them; without it, the folder its export was given with --data."""
    import dataclasses

    from typer.testing import CliRunner

    from edgetransfer.cli import app
    from edgetransfer.errors import DataError
    from edgetransfer.explain import ExplainConfig, _data

    card = run_copy.load_card()
    moved = tmp_path / "moved"
    shutil.copytree(card.dataset["path"], moved)
    gone = dataclasses.replace(card, dataset={**card.dataset, "path": str(tmp_path / "gone")})
    with pytest.raises(DataError, match="pass --data DIR"):
        run_copy.load_splits(gone, _data(run_copy, gone, ExplainConfig())[0])
    given, said = _data(run_copy, gone, ExplainConfig(data=str(moved)))
    assert given == str(moved) and not said and run_copy.load_splits(gone, given).val
    exported = dataclasses.replace(
        gone, export={**gone.export, "config": {**gone.export["config"], "data": str(moved)}}
    )
    given, said = _data(run_copy, exported, ExplainConfig())  # (the note is said once the images are read)
    assert given == str(moved) and "its images are read from" in said
    assert _data(run_copy, card, ExplainConfig()) == (None, "")  # the card's folder is there: as before
    assert "--data" in CliRunner().invoke(app, ["explain", "--help"]).output


def test_a_replaced_int8_model_gets_neither_exports_figures_nor_four_errors(run_copy):
    """model.int8.onnx replaced by another file: the verdict opened with export's accuracy of the file it had made,
    and its checksum error came four times (a new user's trial). An int8 model export kept unchecked (no validation
    images) is said so."""
    from edgetransfer.explain import verdict

    shutil.copy(run_copy.file("model.onnx"), run_copy.file("model.int8.onnx"))
    said = explain(run_copy, FAST)["verdict"]
    assert not [line for line in said if line.startswith("int8 accuracy (export's check): ONNX int8")], said
    assert len([line for line in said if "model.int8.onnx" in line and "sha256" in line]) == 1, said
    unchecked = {"model": "OpenVINO int8", "not_checked": "no validation images"}
    [line] = verdict({"engines": {}, "cpu": {}, "settings": {"threads": 1}, "int8_exports": [unchecked]})
    assert line.startswith("int8 accuracy (export's check): OpenVINO int8 was not checked (no validation images)")


def test_a_dynamic_int8_runs_missing_ir_is_said_why(run_copy):
    """explain on a --int8-method dynamic run said its OpenVINO int8 IR was missing 'e.g. --no-int8' (a new user's
    trial): dynamic int8 makes none."""
    from types import SimpleNamespace

    from edgetransfer.explain import _profiled

    run_copy.file("openvino/model.int8.xml").unlink()
    card = SimpleNamespace(artifacts={}, export={"config": {"int8": {"mode": "dynamic"}}})
    said = _profiled(run_copy, card, "openvino/model.int8.xml", lambda path: {})
    assert said == {
        "skipped": "openvino/model.int8.xml is not in the run: dynamic int8 makes none (--int8-method static does)"
    }
    card.export["config"]["int8"]["mode"] = "static"
    assert "e.g. --no-int8" in _profiled(run_copy, card, "openvino/model.int8.xml", lambda path: {})["skipped"]
    # model.onnx removed from a run whose card records it: said so (it said "export it first"; a new user's trial)
    run_copy.file("model.onnx").unlink()
    said = _profiled(run_copy, run_copy.load_card(), "model.onnx", lambda path: {})
    assert "error" in said and "missing" in said["error"] and "export it first" not in said["error"], said
