"""The regression gate: verdicts on made-up documents, exit codes, and the command line on a real run."""

import json
import shutil

import numpy as np
import pytest
from bench_fakes import document, result, samples
from typer.testing import CliRunner

from edgetransfer.bench.config import BenchConfig, parse_batches, parse_fraction
from edgetransfer.bench.gate import GateConfig, GateResult, Row, check, compare, merge_samples
from edgetransfer.bench.gate_text import gate_lines
from edgetransfer.bench.schema import load_document, validate_document
from edgetransfer.bench.stats import block_log_medians, blocks_per_round, log_ratio_interval
from edgetransfer.cli import app
from edgetransfer.errors import UsageError
from edgetransfer.rundir import sha256_file

GATE = GateConfig(max_regression=0.10)


def two_variants(fp32_ms=1.0, int8_ms=0.7, *, seed=0, **kw) -> dict:
    return document(
        [
            result("ort-cpu", "fp32", {1: samples(fp32_ms, seed=seed)}),
            result("ort-cpu", "int8", {1: samples(int8_ms, seed=seed + 1)}),
        ],
        **kw,
    )


def test_block_interval_covers_the_true_ratio():
    now, before = samples(1.2, seed=3), samples(1.0, seed=4)
    per_round = blocks_per_round([[200], [200]])
    assert per_round == 12
    ratio, low, high = log_ratio_interval(
        block_log_medians(now, [200], per_round), block_log_medians(before, [200], per_round)
    )
    assert low < 1.2 < high and ratio == pytest.approx(1.2, rel=0.02) and low > 1.1
    assert log_ratio_interval(np.zeros(5)) == (1.0, 1.0, 1.0)


def test_blocks_follow_the_rounds():
    values = [1.0] * 10 + [2.0] * 10
    assert np.exp(block_log_medians(values, [10, 10], 2)).tolist() == pytest.approx([1, 1, 2, 2])


def test_identical_runs_pass_and_a_slower_one_fails_with_a_readable_diff():
    baseline = two_variants(seed=0)
    same = compare(two_variants(seed=10), baseline, GATE, baseline_name="base.json")
    assert same.exit_code == 0 and [r.verdict for r in same.rows] == ["ok", "ok"]
    slower = compare(two_variants(int8_ms=0.7 * 1.25, seed=10), baseline, GATE, baseline_name="base.json")
    assert slower.exit_code == 1 and [r.variant for r in slower.slower] == ["int8"]
    text = "\n".join(gate_lines(slower))
    assert "SLOWER  ort-cpu int8 b1" in text and "+25" in text and "exit 1" in text and "base.json" in text


def test_models_measured_now_but_not_in_the_baseline_are_named_as_not_judged():
    """A baseline of ort-cpu int8 alone, a bench of fp32 and int8: fp32 was measured and silently not judged."""
    baseline = document([result("ort-cpu", "int8", {1: samples(0.7, seed=1)})])
    outcome = compare(two_variants(seed=10), baseline, GATE, baseline_name="base.json")
    assert outcome.exit_code == 0 and [r.variant for r in outcome.rows] == ["int8"]
    assert "not judged: ort-cpu fp32 batch 1 (not in the baseline); save a baseline that measures them" in " ".join(
        outcome.warnings
    )
    assert not any("not judged" in w for w in compare(two_variants(seed=10), two_variants(), GATE).warnings)
    # --relative-to's reference is the yardstick, never judged: not named as "not judged" (a reviewer's finding)
    relative = compare(two_variants(seed=10), baseline, GateConfig(max_regression=0.1, relative_to="ort-cpu:fp32"))
    assert not any("not judged" in w for w in relative.warnings), relative.warnings


def test_gate_lines_show_the_medians_and_the_judged_change_with_one_sign():
    """Issue 20: "0.3428 -> 0.3288 x ref +3.8%" (the ratio down, the change up) and "+10.3% ... not slower beyond the
    threshold" at 5%. Every line now names the medians with their own change, then the change that is judged and
    why it got its verdict; + is slower everywhere."""
    result = GateResult("relative+baseline", 0.05, baseline="base.json")
    result.rows.append(Row("ort-cpu", "int8", 1, 0.3428, 0.3288, 1.038, 0.99, 1.09, "ok", "ort-cpu fp32"))
    result.rows.append(Row("ort-cpu", "fp32", 1, 3.893, 3.874, 1.161, 0.97, 1.39, "ok"))
    result.rows.append(Row("ort-cpu", "int8", 8, 1.2, 1.31, 1.09, 1.01, 1.18, "ok", None, (1.103, 1.02, 1.19), 1.012))
    lines = gate_lines(result)
    assert "+ is slower" in lines[1]
    assert "median 0.3428 -> 0.3288 x ref (-4.1%); change +3.8% (95% CI -1.0% to +9.0%): within +5.0%" in lines[2]
    assert (
        "median 3.893 -> 3.874 x ref (-0.5%); change +16.1% (95% CI -3.0% to +39.0%): above +5.0% but its CI "
        in (lines[3])
    )
    assert (
        "change +10.3% (95% CI +2.0% to +19.0%): above +5.0% with its CI above 0, but the re-measurement alone "
        in (lines[5])
    )
    assert "+1.2% (not above +2.5%): noise in the first, not slower" in lines[5]


@pytest.mark.parametrize("mode", ["baseline", "relative", "relative+baseline", "reference-run"])
def test_every_gate_mode_prints_the_median_change_and_the_judged_change_alike(mode):
    slower = two_variants(fp32_ms=1.0, int8_ms=1.3 if mode == "relative" else 0.7 * 1.3, seed=10)
    if mode == "reference-run":
        outcome = compare(side_by_side(0.7 * 1.3, 0.7), None, GATE)
    else:
        baseline = None if mode == "relative" else two_variants()
        reference = None if mode == "baseline" else "ort-cpu:fp32"
        outcome = compare(slower, baseline, GateConfig(max_regression=0.1, relative_to=reference))
    assert outcome.mode == mode and outcome.exit_code == 1
    row, line = outcome.rows[-1], [x for x in gate_lines(outcome) if "int8 b1" in x][0]
    assert f"change +{100 * (row.ratio - 1):.1f}% (95% CI +" in line and "above +10.0% with its CI above 0" in line
    if mode != "relative":
        assert f"median {row.before_ms:.4g} -> {row.now_ms:.4g}" in line and "(+" in line.split("median")[1][:40]
    assert line.lstrip().startswith("SLOWER")


def test_one_run_a_side_cannot_be_judged():
    """--rounds 1 --min-runs 1 --min-time 0 gave one block a side: its interval was zero wide, so one sample 25 %
    slower failed the gate (exit 1) and the measurement was not called noisy."""
    from edgetransfer.bench.stats import noise_problem

    fp32, int8 = result("ort-cpu", "fp32", {1: [2.0]}), result("ort-cpu", "int8", {1: [2.5]})
    outcome = compare(document([fp32, int8]), None, GateConfig(relative_to="ort-cpu:fp32"))
    assert outcome.exit_code == 2 and not outcome.rows
    assert outcome.problems == [
        "cannot compare ort-cpu int8 batch 1: too few runs to tell a change from noise (one block of runs a side; "
        "more --rounds or --min-runs)"
    ]
    assert "too few runs to estimate its spread" in noise_problem(int8["latency"][0])


def test_a_slowdown_below_the_threshold_passes():
    result_ = compare(two_variants(int8_ms=0.7 * 1.04, seed=10), two_variants(), GATE)
    assert result_.exit_code == 0


def test_another_model_or_settings_cannot_be_compared():
    other = two_variants(
        model={"backbone": "resnet18", "input": ["batch", 3, 224, 224], "num_classes": 3, "labels": []}
    )
    outcome = compare(two_variants(), other, GATE)
    assert outcome.exit_code == 2 and "another model" in outcome.problems[0]
    threads = two_variants()
    threads["settings"]["threads_resolved"] = 4
    assert "threads 4" in compare(two_variants(), threads, GATE).problems[0]
    # a baseline saved --in-process (every model in one process, sharing its thread pools) against an isolated
    # run was compared without a word; the baseline's way is taken when none is given, and another one is refused
    in_process = two_variants()
    in_process["settings"]["isolated"] = False
    said = compare(two_variants(), in_process, GATE).problems
    assert said == [
        "the baseline was measured with every model in one process, this run with each model in a process of its "
        "own (use --in-process)"
    ]
    from edgetransfer.bench.config import make_config

    assert make_config({}, baseline=in_process).isolate is False
    # a gate that cannot compare labels no row SLOWER (a new user read "SLOWER" beside "neither pass nor fail")
    outcome = compare(two_variants(int8_ms=1.4), in_process, GATE)
    assert outcome.exit_code == 2 and outcome.rows
    rows = [line for line in gate_lines(outcome) if " b1 " in line]
    assert rows and all(
        line.startswith("  n/a     ort-cpu") and line.endswith("(not judged: the comparison cannot be made, below)")
        for line in rows
    )
    assert make_config({"isolate": True}, baseline=in_process).isolate is True


def test_a_missing_or_failed_backend_is_exit_2_not_slower():
    baseline = two_variants()
    current = document([result("ort-cpu", "fp32", {1: samples(1.0)})])
    outcome = compare(current, baseline, GATE)
    assert outcome.exit_code == 2 and "ort-cpu int8 batch 1 is in the baseline but was not measured" in outcome.problems
    current["failed"] = [{"backend": "ort-cpu", "variant": "int8", "error": "the process crashed (SIGSEGV)"}]
    assert any("SIGSEGV" in p for p in compare(current, baseline, GATE).problems)


def test_another_machine_or_library_version_warns():
    baseline = two_variants()
    current = two_variants(seed=5)
    current["machine"]["cpu"] = "Other CPU"
    current["versions"]["onnxruntime"] = "1.21.0"
    current["model"]["labels"] = ["a", "b", "x"]  # a baseline of other data with the same network: said (silent)
    outcome = compare(current, baseline, GATE)
    assert outcome.exit_code == 0
    assert any(
        w.startswith("the baseline's model has other class names ('c' there, 'x' here)") for w in outcome.warnings
    )
    assert any("another machine" in w and "--relative-to" in w for w in outcome.warnings)
    assert any("onnxruntime 1.20.0 -> 1.21.0" in w for w in outcome.warnings)


def test_the_same_model_read_faster_than_its_baseline_is_said_to_be_the_machine():
    """Against a stored baseline each model is judged relative to the machine probe, which drifts: an unchanged
    model read 'FASTER' by 10 % (a new user's trial). Where the file and the library versions are the baseline's,
    the gate says that it is the machine; a model file of its own, or other versions, may truly be faster."""

    def with_probe(doc, probe_ms, seed):
        doc["probe"] = {"latency": [{"batch": 1, "samples_ms": samples(probe_ms, seed=seed), "rounds": [100, 100]}]}
        return doc

    baseline = with_probe(two_variants(seed=0), 1.0, 50)
    for r in baseline["results"]:
        r["latency"][0]["rounds"] = [100, 100]
    current = with_probe(two_variants(fp32_ms=0.8, int8_ms=0.56, seed=10), 1.0, 51)
    for r in current["results"]:
        r["latency"][0]["rounds"] = [100, 100]
    outcome = compare(current, baseline, GATE)
    assert outcome.exit_code == 0 and [r.verdict for r in outcome.rows] == ["faster", "faster"]
    said = [w for w in outcome.warnings if "drift against its probe" in w]
    ratios = [f"{row.ratio:.2f}x" for row in outcome.rows]
    assert said == [
        f"ort-cpu fp32 batch 1 ({ratios[0]}), ort-cpu int8 batch 1 ({ratios[1]}): read faster, but the model file, the "
        "library versions and the machine are the baseline's: the machine's drift against its probe, not the model"
    ]
    assert 0.75 < outcome.rows[0].ratio < 0.85
    current["results"][1]["model_sha256"] = "1" * 64  # a new int8 model: it may truly be faster
    assert [w for w in compare(current, baseline, GATE).warnings if "drift" in w][0].startswith(
        f"ort-cpu fp32 batch 1 ({ratios[0]}): read faster"
    )
    other_cpu = json.loads(json.dumps(current))
    other_cpu["machine"]["cpu"] = "Other CPU"  # another machine (with VNNI, say) may truly run int8 faster
    assert not [w for w in compare(other_cpu, baseline, GATE).warnings if "drift" in w]
    current["versions"]["onnxruntime"] = "1.21.0"  # another engine may truly be faster
    assert not [w for w in compare(current, baseline, GATE).warnings if "drift" in w]


def test_relative_to_compares_within_one_run():
    ok = compare(two_variants(fp32_ms=1.0, int8_ms=0.7), None, GateConfig(relative_to="ort-cpu:fp32"))
    assert ok.exit_code == 0 and ok.mode == "relative" and len(ok.rows) == 1
    bad = compare(two_variants(fp32_ms=1.0, int8_ms=1.3), None, GateConfig(relative_to="ort-cpu:fp32"))
    assert bad.exit_code == 1 and bad.rows[0].reference == "ort-cpu fp32"
    missing = compare(two_variants(), None, GateConfig(relative_to="torch-cpu"))
    assert missing.exit_code == 2 and "no torch-cpu fp32 batch 1" in missing.problems[0]
    # the docs' "int8 no slower than fp32" step on a run without model.int8.onnx compared nothing and passed
    fp32_only = document([result("ort-cpu", "fp32", {1: samples(1.0)})])
    nothing = compare(fp32_only, None, GateConfig(relative_to="ort-cpu:fp32"))
    assert nothing.exit_code == 2 and not nothing.rows
    assert nothing.problems == [
        "nothing to compare with ort-cpu fp32: no model was measured beside it (e.g. --relative-to ort-cpu:fp32 "
        "with --variants fp32 alone, or a run without the int8 model); a gate that judges nothing cannot pass"
    ]
    # --relative-to with a backend alone: no Python None in the message (a new user saw "with ort-cpu None")
    alone = compare(fp32_only, None, GateConfig(relative_to="ort-cpu"))
    assert alone.exit_code == 2 and alone.problems[0].startswith("nothing to compare with ort-cpu: ")


def test_relative_to_a_baseline_holds_on_a_machine_twice_as_slow():
    baseline = two_variants(seed=0)
    slow_machine = two_variants(fp32_ms=2.0, int8_ms=1.4, seed=7)
    assert compare(slow_machine, baseline, GATE).exit_code == 1  # absolute times: "slower"
    relative = compare(slow_machine, baseline, GateConfig(relative_to="ort-cpu:fp32"))
    assert relative.exit_code == 0 and relative.mode == "relative+baseline"
    int8_regressed = two_variants(fp32_ms=2.0, int8_ms=1.4 * 1.3, seed=7)
    assert compare(int8_regressed, baseline, GateConfig(relative_to="ort-cpu:fp32")).exit_code == 1
    # --relative-to ort-cpu alone: its int8 was its own reference (ratio 1, never judged, unsaid) and passed 30 %
    # slower (a reviewer's finding); the backend's own models are judged against its fp32
    alone = compare(int8_regressed, baseline, GateConfig(relative_to="ort-cpu"))
    assert alone.exit_code == 1 and alone.rows[0].reference == "ort-cpu fp32", alone
    assert compare(two_variants(int8_ms=1.3), None, GateConfig(relative_to="ort-cpu")).exit_code == 1


def test_a_slowdown_is_measured_again_before_failing():
    baseline = two_variants()
    only_int8 = document([result("ort-cpu", "int8", {1: samples(0.68, seed=2)})])  # what a re-measurement holds
    runs = iter([two_variants(int8_ms=0.9, seed=1), only_int8])
    asked = []

    def measure(run, config, write):
        asked.append(config.only)
        return next(runs)

    doc, outcome = check(None, BenchConfig(), GATE, baseline, measure=measure)
    assert asked == [(), ("ort-cpu:int8",)] and outcome.exit_code == 0
    assert doc["gate"]["exit_code"] == 0 and "noise in the first, not slower" in "\n".join(gate_lines(outcome))
    runs = iter([two_variants(int8_ms=0.9, seed=1), two_variants(int8_ms=0.9, seed=2)])
    assert check(None, BenchConfig(), GATE, baseline, measure=measure)[1].exit_code == 1


def test_a_slowdown_near_the_threshold_is_decided_on_both_measurements():
    """One measurement reads a 12% slowdown as +7% (not enough to fail at 10%); the re-measurement reads +17%;
    together they show what it is. A first reading that stays below half the threshold is not measured again."""
    baseline = two_variants()
    runs = iter(
        [
            two_variants(int8_ms=0.7 * 1.07, seed=1),
            document([result("ort-cpu", "int8", {1: samples(0.7 * 1.17, seed=2)})]),
        ]
    )
    asked = []

    def measure(run, config, write):
        asked.append(config.only)
        return next(runs)

    outcome = check(None, BenchConfig(), GATE, baseline, measure=measure)[1]
    assert asked == [(), ("ort-cpu:int8",)] and outcome.exit_code == 1
    row = outcome.slower[0]
    assert row.ratio < 1.10 < row.confirm[0] and row.confirm[1] > 1
    asked.clear()
    runs = iter([two_variants(int8_ms=0.7 * 1.03, seed=1)])
    assert check(None, BenchConfig(), GATE, baseline, measure=measure)[1].exit_code == 0 and asked == [()]


def test_option_spellings():
    assert parse_fraction("10%") == pytest.approx(0.1) == parse_fraction("10") == parse_fraction(" 10 ")
    # a bare 1 was 100% while 2 was 2%: a gate written for 1% passed a 70% slowdown
    assert parse_fraction("1") == pytest.approx(0.01) == parse_fraction("1%") and parse_fraction("1.5") == 0.015
    with pytest.raises(UsageError, match=r"'0.5': a percentage or a fraction\? write 50% or 0.5%"):
        parse_fraction("0.5")
    assert parse_fraction("0.5%") == pytest.approx(0.005)
    assert parse_batches("1,8") == (1, 8) and parse_batches("1..8") == (1, 2, 4, 8)
    with pytest.raises(UsageError, match="--max-regression"):
        parse_fraction("fast")


# --------------------------------------------------------------------------- the command on a real run

runner = CliRunner()
FAST = ["--backends", "ort-cpu", "--in-process", "--warmup", "1", "--warmup-time", "0", "--rounds", "2"]
FAST += ["--min-runs", "10", "--min-time", "0", "--no-accuracy", "--no-confirm"]


def invoke(*args):
    return runner.invoke(app, ["bench", *[str(a) for a in args]])


def scaled(path, factor, out):
    doc = json.loads(path.read_text())
    for r in doc["results"]:
        for lat in r["latency"]:
            lat["samples_ms"] = [t * factor for t in lat["samples_ms"]]
    out.write_text(json.dumps(doc))
    return out


def gate_against(run_path, factor, tmp_path, tries=3):
    """Save a baseline, scale its model times by ``factor`` (the probe's are kept) and bench against it. The gate
    judges the models relative to the machine probe, and this short, in-process measurement can read the probe past
    the 2x the gate trusts when the machine is busy (a CI run read 2.63x three times against one baseline whose probe
    had been read in a quiet moment); the gate then honestly answers 'cannot compare' (exit 2). Only that answer is
    tried again, baseline and measurement both, at most `tries` times in all."""
    for attempt in range(tries):
        base = tmp_path / f"base{attempt}.json"
        first = invoke(run_path, *FAST, "--save-baseline", base, "--out", tmp_path)
        assert first.exit_code == 0, first.output
        assert load_document(base)["results"][0]["latency"][0]["samples_ms"]
        scaled_base = scaled(base, factor, tmp_path / f"scaled{attempt}.json")
        outcome = invoke(run_path, *FAST, "--baseline", scaled_base, "--out", tmp_path)
        if not (outcome.exit_code == 2 and "no verdict is trustworthy" in outcome.stdout):
            break
    return outcome


def test_cli_gate_exit_codes(trained_run, tmp_path):
    slower = gate_against(trained_run.path, 0.1, tmp_path)  # the baseline was 10x faster: now "slower"
    assert slower.exit_code == 1, slower.output
    assert "SLOWER  ort-cpu" in slower.stdout and "gate: FAIL" in slower.stdout
    assert json.loads((tmp_path / "bench.json").read_text())["gate"]["exit_code"] == 1
    passed = gate_against(trained_run.path, 10, tmp_path)  # the baseline was 10x slower: now a pass
    assert passed.exit_code == 0 and "gate: pass" in passed.stdout, passed.output


def test_cli_baseline_of_another_schema_or_model_is_exit_2(trained_run, tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema_version": 1, "results": []}))
    result_ = invoke(trained_run.path, *FAST, "--baseline", old)
    assert result_.exit_code == 2 and "schema version 1" in result_.stderr and "--save-baseline" in result_.stderr
    other = tmp_path / "other.json"
    doc = two_variants()
    doc["model"]["backbone"] = "resnet18"
    other.write_text(json.dumps(doc))
    result_ = invoke(trained_run.path, *FAST, "--baseline", other)
    assert result_.exit_code == 2 and "another model" in result_.stderr
    assert invoke(trained_run.path, *FAST, "--baseline", tmp_path / "none.json").exit_code == 2
    cut = tmp_path / "cut.json"
    cut.write_text('{"schema_version": 3, "results": [{"backend": "ort')
    result_ = invoke(trained_run.path, *FAST, "--baseline", cut)  # was "Unterminated string starting at at line 1"
    assert result_.exit_code == 2 and "is not JSON: Unterminated string starting at (line 1, column" in result_.stderr


# --------------------------------------------------------------------------- a reference run, side by side


def side_by_side(run_ms: float, reference_ms: float, *, seed: int = 0, reference_variants=("int8",)) -> dict:
    """A document whose int8 model was measured in the same rounds as a reference run's models."""
    doc = document([result("ort-cpu", "int8", {1: samples(run_ms, seed=seed)}, model_sha256="1" * 64)])
    side = [result("ort-cpu", v, {1: samples(reference_ms, seed=seed + 50)}) for v in reference_variants]
    doc["reference"] = {"run": "models/main", "results": side}
    return validate_document(doc, "fake document")


def test_a_reference_run_is_compared_side_by_side():
    same = compare(side_by_side(0.7, 0.7), None, GATE)
    assert same.mode == "reference-run" and same.exit_code == 0 and same.rows[0].verdict == "ok"
    slower = compare(side_by_side(0.7 * 1.25, 0.7), None, GATE)
    assert slower.exit_code == 1 and slower.rows[0].before_ms == pytest.approx(0.7, rel=0.05)
    text = "\n".join(gate_lines(slower))
    assert "against the reference run models/main" in text and "SLOWER  ort-cpu int8 b1" in text and "ms" in text
    faster = compare(side_by_side(0.7 / 1.25, 0.7), None, GATE)
    assert faster.exit_code == 0 and faster.rows[0].verdict == "faster"
    missing = compare(side_by_side(0.7, 0.7, reference_variants=("fp32",)), None, GATE)
    assert missing.exit_code == 2 and "not measured in the reference run" in missing.problems[0]
    assert not same.warnings  # other model files: nothing to warn of


def test_a_reference_run_with_the_same_files_or_a_failed_model_says_so():
    doc = side_by_side(0.7, 0.7)
    doc["results"][0]["model_sha256"] = doc["reference"]["results"][0]["model_sha256"]
    assert "any difference is noise" in compare(doc, None, GATE).warnings[0]
    doc["failed"] = [{"backend": "ort-cpu", "variant": "int8", "error": "load: bad file", "run": "reference"}]
    outcome = compare(doc, None, GATE)
    assert outcome.exit_code == 2 and "int8 of the reference run could not be measured" in outcome.problems[0]


def test_a_reference_run_does_not_combine_with_a_baseline_or_a_reference_backend():
    with pytest.raises(UsageError, match="does not combine"):
        compare(side_by_side(0.7, 0.7), two_variants(), GATE)
    with pytest.raises(UsageError, match="does not combine"):
        compare(side_by_side(0.7, 0.7), None, GateConfig(relative_to="ort-cpu:fp32"))


def test_a_reference_run_slowdown_is_measured_again_with_the_reference():
    runs = iter([side_by_side(0.9, 0.7, seed=1), side_by_side(0.7, 0.7, seed=2)])
    asked = []

    def measure(run, config, write):
        asked.append(config.only)
        return next(runs)

    doc, outcome = check(None, BenchConfig(), GATE, None, measure=measure)
    assert asked == [(), ("ort-cpu:int8",)] and outcome.exit_code == 0
    pooled = merge_samples(side_by_side(0.9, 0.7, seed=1), side_by_side(0.7, 0.7, seed=2), {("ort-cpu", "int8")})
    assert len(pooled["reference"]["results"][0]["latency"][0]["samples_ms"]) == 400


def test_a_broken_reference_block_is_named():
    doc = side_by_side(0.7, 0.7)
    del doc["reference"]["results"][0]["model_sha256"]
    with pytest.raises(UsageError, match=r"fake document: reference.results\[0\].model_sha256: missing"):
        validate_document(doc, "fake document")


def tiny_onnx(path, num_classes: int, size: int) -> None:
    """A classifier far cheaper than any backbone (mean colour, then one matrix) in place of a run's model, its sha256
    recorded in the run's card: a reference run that is faster."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((3, num_classes), dtype=np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["mean", "w"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes])],
        [weights],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    card = json.loads((path.parent / "card.json").read_text())  # as an export of this model would record it
    card["artifacts"][path.name]["sha256"] = sha256_file(path)
    (path.parent / "card.json").write_text(json.dumps(card))


def test_cli_reference_run(trained_run, tmp_path):
    card = trained_run.load_card()
    cheap = tmp_path / "cheap"
    shutil.copytree(trained_run.path, cheap)
    tiny_onnx(cheap / "model.onnx", card.num_classes, card.preprocessing.crop)
    fast = [*FAST, "--variants", "fp32"]
    slower = invoke(trained_run.path, *fast, "--reference-run", cheap, "--out", tmp_path)
    assert slower.exit_code == 1, slower.output
    assert "SLOWER  ort-cpu fp32 b1" in slower.stdout and f"against the reference run {cheap}" in slower.stdout
    written = load_document(tmp_path / "bench.json")
    assert written["reference"]["run"] == str(cheap) and written["gate"]["mode"] == "reference-run"
    assert written["reference"]["results"][0]["model_sha256"] != written["results"][0]["model_sha256"]
    faster = invoke(cheap, *fast, "--reference-run", trained_run.path, "--out", tmp_path)
    assert faster.exit_code == 0 and "FASTER  ort-cpu fp32 b1" in faster.stdout, faster.output
    same = [*FAST, "--variants", "int8", "--max-regression", "500%"]  # the same file: noise only, never 6x
    same_int8 = invoke(trained_run.path, *same, "--reference-run", cheap, "--out", tmp_path)
    assert same_int8.exit_code == 0 and "any difference is noise" in same_int8.stdout, same_int8.output
    (cheap / "model.int8.onnx").unlink()
    no_int8 = invoke(trained_run.path, *FAST, "--variants", "int8", "--reference-run", cheap, "--out", tmp_path)
    assert no_int8.exit_code == 2 and "has no model.int8.onnx" in no_int8.stderr, no_int8.output  # before measuring
    both = invoke(trained_run.path, *fast, "--reference-run", cheap, "--relative-to", "ort-cpu")
    assert both.exit_code == 2 and "does not combine" in both.stderr


def test_cli_reference_run_that_is_the_run_itself_is_exit_2(trained_run, tmp_path, monkeypatch):
    """--reference-run naming the run itself (under any spelling) measured its models against themselves and
    passed with a warning: a gate that judges nothing. It is one line, exit 2, before anything is measured."""
    monkeypatch.setattr("edgetransfer.bench.runner.InProcessMeasurer", None)  # a measurement would fail
    (tmp_path / "link").symlink_to(trained_run.path)
    for spelling in (trained_run.path, trained_run.path.parent / ".." / trained_run.path.parent.name / "run"):
        for reference in (spelling, tmp_path / "link"):
            outcome = invoke(trained_run.path, *FAST, "--reference-run", reference, "--out", tmp_path / "out")
            assert outcome.exit_code == 2 and not outcome.stdout, outcome.output
            assert outcome.stderr.strip() == (
                f"error: --reference-run {reference} is this run itself: its models would be measured against "
                "themselves, and a gate that judges nothing cannot pass; give another run (e.g. the main branch's "
                "build)"
            )
    assert not (tmp_path / "out").exists()


def test_a_baseline_of_other_threads_or_precision_is_refused_before_measuring(trained_run, tmp_path, monkeypatch):
    """The gate refused such a comparison only after measuring every model (minutes on a real bench); the settings
    are known before: one line, exit 2, nothing measured."""
    base = tmp_path / "base.json"
    assert invoke(trained_run.path, *FAST, "--threads", "1", "--save-baseline", base, "--out", tmp_path).exit_code == 0
    monkeypatch.setattr("edgetransfer.bench.runner.InProcessMeasurer", None)  # a measurement would fail
    for option, given, expected in (("--threads", "2", "threads 1, this bench would use 2"),
                                    ("--precision", "fp32", "precision auto, this bench would use fp32")):  # fmt: skip
        outcome = invoke(trained_run.path, *FAST, option, given, "--baseline", base, "--out", tmp_path / "o")
        assert outcome.exit_code == 2 and not outcome.stdout, outcome.output
        assert outcome.stderr.startswith(f"error: the baseline {base} was measured with {expected}"), outcome.stderr
        assert len(outcome.stderr.strip().splitlines()) == 1
    # a profile that sets no threads takes the baseline's: its budgets are judged at 1 thread where its description
    # says 'all cores' (a new user's trial): said
    server = invoke(trained_run.path, *FAST, "--profile", "server", "--baseline", base, "--out", tmp_path / "s").stderr
    server = " ".join(server.split())
    assert (
        "note: 1 thread(s), as the baseline was measured (the gate compares like with like): the profile server's"
        in (server)
        and "(all cores, batch 1..32" in server
    ), server
    # a baseline model this bench would not measure, and a reference run without one of the run's models: found
    # after measuring before (as "in the baseline but was not measured" / "not measured in the reference run")
    fp32_only = invoke(trained_run.path, *FAST, "--threads", "1", "--variants", "fp32", "--baseline", base, "--out",
                       tmp_path / "o")  # fmt: skip
    assert fp32_only.exit_code == 2 and not fp32_only.stdout, fp32_only.output
    assert fp32_only.stderr.startswith(f"error: the baseline {base} holds ort-cpu int8, which this bench would not")
    no_int8 = tmp_path / "no-int8"
    shutil.copytree(trained_run.path, no_int8)
    (no_int8 / "model.int8.onnx").unlink()
    lacking = invoke(trained_run.path, *FAST, "--reference-run", no_int8, "--out", tmp_path / "o")
    assert lacking.exit_code == 2 and not lacking.stdout, lacking.output
    assert lacking.stderr.startswith(f"error: --reference-run {no_int8} has no model.int8.onnx: this run's ort-cpu")
    assert not (tmp_path / "o").exists()


def test_cli_reference_run_of_another_model_is_exit_2(trained_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(trained_run.path, other)
    card = json.loads((other / "card.json").read_text())
    card["labels"] = [*card["labels"], "extra"]
    (other / "card.json").write_text(json.dumps(card))
    outcome = invoke(trained_run.path, *FAST, "--reference-run", other)
    assert outcome.exit_code == 2 and "is of another model" in outcome.stderr, outcome.output
    assert "to weigh two models, bench each and compare their bench.md" in " ".join(outcome.stderr.split())


def test_a_baseline_of_another_model_does_not_just_say_save_a_new_one(trained_run):
    """A change of input size (96 -> 64 px) was refused with 'save a baseline of this one': the advice that makes a
    slower model the new reference unseen (a new user's trial)."""
    from edgetransfer.bench.command import check_baseline_model
    from edgetransfer.bench.plan import model_identity
    from edgetransfer.errors import UsageError

    model = model_identity(trained_run.load_card())
    other = {**model, "input": [1, 3, 2 * model["input"][2], 2 * model["input"][3]]}
    with pytest.raises(UsageError, match="is of another model") as refused:
        check_baseline_model(trained_run, {"model": other, "settings": {}}, "base.json", BenchConfig())
    assert str(refused.value).endswith(
        "the gate compares one model's latency over time, not two models; if the change is meant, compare the two "
        "first (bench each; their bench.md), then --save-baseline makes this model's latency the reference"
    )


def test_a_pass_too_noisy_to_rule_out_a_slowdown_says_so():
    """A pass whose interval still reaches above the threshold could not have seen a slowdown of that size."""

    def noisy(spread, seed):  # 40 runs: a short measurement
        return document([result("ort-cpu", "int8", {1: samples(0.7, 40, spread=spread, seed=seed)})])

    loose = compare(noisy(0.6, 1), noisy(0.6, 2), GATE)
    assert loose.exit_code == 0 and loose.rows[0].high > 1.10
    text = "\n".join(gate_lines(loose))
    assert "note: a pass, but the CI of ort-cpu int8 b1 (to +" in text and "not ruled out" in text
    tight = compare(noisy(0.02, 1), noisy(0.02, 2), GATE)
    assert tight.exit_code == 0 and tight.rows[0].high < 1.10 and "note: a pass" not in "\n".join(gate_lines(tight))


def test_a_gate_without_scipy_is_said_before_measuring(trained_run, monkeypatch):
    """With the runtime-only install (the CI recipe once said 'pip install edgetransfer') bench measured every model,
    then failed on the gate's statistics: scipy is asked for before any measuring."""
    import sys

    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # import scipy.stats fails as where it is not installed
    for gate in (["--relative-to", "ort-cpu:fp32"], []):  # a plain bench too: its report's noise check needs it
        result = invoke(trained_run.path, *FAST, *gate)
        assert result.exit_code == 2 and "needs scipy" in result.stderr and "edgetransfer[train]" in result.stderr
        assert "measured" not in result.stderr, result.stderr
