"""The machine probe: a small fixed ONNX model that ships with the package, measured in the same interleaved rounds
as the user's models whenever a baseline is saved or checked.

It depends on nothing of the user's (not their model, not their code), so its latency then and now says how much
faster or slower the *machine* is (the machine factor); the gate judges each model's latency relative to it. Five
convolutions on a 96x96 image (about 60 MFLOP, 0.5 MB), run by ONNX Runtime on the CPU with the threads the models
get: the same engine, the same thread pool and the same kind of work, so load on the machine slows it as it slows
the models. ``python -m edgetransfer.bench.probe`` rebuilds the file (needs the onnx package); its sha256 is
checked before every use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetransfer.backends.ort import OrtCpuBackend
from edgetransfer.errors import MeasurementError

PROBE_FILE = Path(__file__).with_name("probe.onnx")
PROBE_SHA256 = "6423856d1ff2c2fd0a115c37908f88c7be19b04927b8168728cd02a6e0ed7fee"  # of the file build() writes
PROBE_NAME = "machine-probe"
PROBE_KEY = (PROBE_NAME, "fp32", "probe")  # its key among the bench's measurers
INPUT = (1, 3, 96, 96)


class ProbeBackend(OrtCpuBackend):
    """ONNX Runtime on the CPU, for the probe (not in the backend registry: never a model's backend)."""

    name = PROBE_NAME
    variants = {"fp32": str(PROBE_FILE)}


def probe_sample() -> np.ndarray:
    """The probe's fixed input."""
    return np.random.default_rng(0).standard_normal(INPUT).astype(np.float32)


def check_probe() -> Path:
    """The probe file, checked against its sha256 (a changed probe would change every machine factor)."""
    from edgetransfer.rundir import sha256_file

    if not PROBE_FILE.is_file() or sha256_file(PROBE_FILE) != PROBE_SHA256:
        raise MeasurementError(f"{PROBE_FILE} is missing or changed: reinstall edgetransfer")
    return PROBE_FILE


def probe_job(card, options):
    """The probe as a measurement job (the run's card rides along only because a job carries one)."""
    from edgetransfer.bench.measure import Job

    return Job(ProbeBackend(), "fp32", str(check_probe()), card, options, probe_sample())


def probe_entry(latency: dict[int, list[list[float]]], batches: tuple[int, ...]) -> dict:
    """``document["probe"]``: the probe's timed runs per batch size, by round, as a result's ``latency`` holds."""
    from edgetransfer.bench.stats import latency_stats

    entries = []
    for batch in batches:
        times = [t for part in latency[batch] for t in part]
        if times:
            stats = latency_stats(times, batch)
            rounds = [len(part) for part in latency[batch]]
            entries.append({"batch": batch, **stats, "rounds": rounds, "samples_ms": [round(t, 4) for t in times]})
    model = "probe.onnx (ships with edgetransfer)"
    return {"backend": PROBE_NAME, "variant": "fp32", "model": model, "latency": entries}


def build(path: Path = PROBE_FILE) -> None:
    """Write the probe model (seeded weights: the same bytes every time)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1234)
    nodes, inits, last, channels = [], [], "images", 3
    for i, (out, kernel, stride) in enumerate([(32, 3, 2), (64, 3, 2), (128, 3, 2), (128, 1, 1), (128, 1, 1)]):
        scale = 1 / np.sqrt(channels * kernel**2)
        weight = (rng.standard_normal((out, channels, kernel, kernel)) * scale).astype(np.float32)
        inits += [numpy_helper.from_array(weight, f"w{i}"), numpy_helper.from_array(np.zeros(out, np.float32), f"b{i}")]
        pad = [kernel // 2] * 4
        nodes.append(helper.make_node("Conv", [last, f"w{i}", f"b{i}"], [f"c{i}"], strides=[stride] * 2, pads=pad))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        last, channels = f"r{i}", out
    nodes.append(helper.make_node("GlobalAveragePool", [last], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["scores"]))
    graph = helper.make_graph(
        nodes,
        "edgetransfer-machine-probe",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 96, 96])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 128])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgetransfer")
    model.ir_version = 8
    onnx.checker.check_model(model)
    Path(path).write_bytes(model.SerializeToString())


if __name__ == "__main__":
    build()
    from edgetransfer.rundir import sha256_file

    print(PROBE_FILE, sha256_file(PROBE_FILE))


MACHINE_FACTOR_LIMIT = 2.0  # past 2x slower (or faster) than when the baseline was taken, no verdict is trusted
MACHINE_FACTOR_WARN = 1.3  # past 1.3x (the spread of one model's median between runs here), a verdict is said shaky


def machine_probe(current: dict, baseline: dict, now: dict, before: dict, result) -> bool:
    """Set the gate up to judge each model relative to the probe: the probe's samples join ``now`` and ``before``
    (as model ``machine-probe fp32``), ``result.machine_factor`` is how much slower this machine is than when the
    baseline was taken (the ratio of the probe's medians), and a factor past :data:`MACHINE_FACTOR_LIMIT` is a
    problem (exit 2: no verdict). False, with a warning, when either document has no probe."""
    if baseline.get("probe") and not current.get("probe"):  # the probe failed to measure here: no verdict at all
        result.problems.append(  # (the models were judged by absolute times before the exit 2: a reviewer's)
            "this measurement has no machine probe (it could not be measured: see above), so the models cannot be "
            "judged against the stored baseline; run the gate again"
        )
        return False
    if not (current.get("probe") and baseline.get("probe")):
        missing = "the baseline" if current.get("probe") else "this measurement"
        result.warnings.append(
            f"{missing} has no machine probe (saved without --save-baseline, or by an older edgetransfer): absolute "
            "times are compared, and a busier machine looks like a slower model; save the baseline again with "
            "--save-baseline"
        )
        return False
    ratios = []
    for side, samples in ((current, now), (baseline, before)):
        for lat in side["probe"]["latency"]:
            samples[(PROBE_NAME, "fp32", lat["batch"])] = (lat["samples_ms"], lat["rounds"])
    for lat in current["probe"]["latency"]:
        then = before.get((PROBE_NAME, "fp32", lat["batch"]))
        if then:
            ratios.append(float(np.median(lat["samples_ms"]) / np.median(then[0])))
    factor = float(np.exp(np.mean(np.log(ratios)))) if ratios else 1.0
    result.machine_factor = factor
    if not 1 / MACHINE_FACTOR_LIMIT <= factor <= MACHINE_FACTOR_LIMIT:
        how = f"{factor:.2f}x slower" if factor > 1 else f"{1 / factor:.2f}x faster"
        result.problems.append(
            f"this machine is {how} than when the baseline was taken (the machine probe's median): past "
            f"{MACHINE_FACTOR_LIMIT:g}x no verdict is trustworthy; measure on a quieter machine, or use --reference-run"
        )
    elif not 1 / MACHINE_FACTOR_WARN <= factor <= MACHINE_FACTOR_WARN:  # load on one side moves a model's ratio
        # to the probe too: an unchanged model read +59 % at 0.52x (a baseline saved on a busy machine; a review)
        how = f"{factor:.2f}x slower" if factor > 1 else f"{1 / factor:.2f}x faster"
        result.warnings.append(
            f"this machine is {how} than when the baseline was taken: load on either side moves a model's time "
            "relative to the probe too, so a SLOWER verdict may be noise; measure again on a quiet machine, or "
            "side by side with --reference-run"
        )
    return True


def merge_probe(first: dict | None, second: dict | None) -> dict | None:
    """The probe's samples of two measurements together (the gate's re-measurement is pooled with the first)."""
    if not first or not second:
        return first
    more = {lat["batch"]: lat for lat in second["latency"]}
    latency = [
        {**lat, "samples_ms": lat["samples_ms"] + more[lat["batch"]]["samples_ms"],
         "rounds": lat["rounds"] + more[lat["batch"]]["rounds"]} if lat["batch"] in more else lat
        for lat in first["latency"]
    ]  # fmt: skip
    return {**first, "latency": latency}
