"""How good is the regression gate on this machine? Over paired trials, how often it flags an injected slowdown
(caught) and how often it flags an identical run (false alarm), and how long one gate takes.

A trial: measure a baseline, then (in alternating order) an identical run and a run whose int8 model does
``--slowdown`` extra work (a busy wait of that fraction of each inference's own time, inside a wrapped ort-cpu
backend, "probe"), and gate each against the baseline exactly as `edgetransfer bench --baseline` does (interval
of the ratio over blocks of runs; what might be slower is measured again and judged on both measurements). The
baseline is measured longer (``--baseline-time``): it is saved once, and its noise enters every comparison.
Modes:

- ``relative``: `--relative-to probe:fp32` with the baseline: int8/fp32 now against int8/fp32 then (what CI on a
  shared or changing machine should use);
- ``baseline``: absolute medians against the baseline's (same machine, quiet);
- ``side-by-side``: no stored baseline: the slowed int8 model against the same file on plain ort-cpu, measured in
  the same rounds (`--relative-to ort-cpu`);
- ``reference-run``: no stored baseline: `--reference-run` with a copy of the run (what CI gets by comparing the
  branch's build with main's build): the run's int8 model, slowed, against the copy's, unslowed, in the same rounds;
- ``probe``: a stored baseline as `edgetransfer bench --baseline` judges it: each model relative to the machine
  probe measured in the same rounds (then and now), with the machine factor; past 2x no verdict (exit 2).

``--load N`` starts N competing CPU-bound processes (numpy matrix products, one thread each) after the baseline is
measured and stops them after the checks: the machine a CI job finds two minutes later, busier than when the
baseline was taken.

Targets: >= 95% caught, <= 2% false alarms, <= 30 s per gate. The gate's threshold is the slowdown it tolerates,
so it catches reliably only slowdowns clearly above it: a 10% injected slowdown is gated at 5% by default.
Run it on a quiet machine (about 80 s per trial and mode with 8 processes):

    .venv/bin/python benchmarks/gate_benchmark.py --trials 20 --mode relative \
        --out benchmarks/results/gate_benchmark_relative_p8.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from edgetransfer.backends.base import LoadOptions, register
from edgetransfer.backends.ort import OrtCpuBackend
from edgetransfer.bench.config import BenchConfig, parse_fraction
from edgetransfer.bench.gate import GateConfig, check
from edgetransfer.bench.runner import bench
from edgetransfer.machine import machine_info
from edgetransfer.rundir import RunDir

SLOWDOWN_ENV, SLOW_VARIANT_ENV, SLOW_RUN_ENV = "GATE_BENCH_SLOWDOWN", "GATE_BENCH_SLOW_VARIANT", "GATE_BENCH_SLOW_RUN"
SIDE_BY_SIDE_REFERENCE = "ort-cpu"  # side-by-side mode: the probe's int8 against the same file on plain ort-cpu


class _Slowed:
    """A session that, after each real inference, spins for ``fraction`` of the time that inference took."""

    def __init__(self, inner, fraction: float) -> None:
        self.inner, self.fraction = inner, fraction
        self.precision, self.threads = inner.precision, inner.threads

    def run(self, images):
        started = time.perf_counter()
        out = self.inner.run(images)
        until = time.perf_counter() + self.fraction * (time.perf_counter() - started)
        while time.perf_counter() < until:
            pass
        return out


class ProbeBackend(OrtCpuBackend):
    """ort-cpu, with the variant named in $GATE_BENCH_SLOW_VARIANT slowed by $GATE_BENCH_SLOWDOWN (read when a
    model is loaded, in the measuring process: the parent sets them before each measurement); with
    $GATE_BENCH_SLOW_RUN set, only that run's model is slowed (not a reference run's)."""

    name = "probe"
    install_hint = "benchmarks/gate_benchmark.py registers it"

    def load(self, path: Path, card, options: LoadOptions):
        session = super().load(path, card, options)
        fraction = float(os.environ.get(SLOWDOWN_ENV, "0"))
        slow_run = os.environ.get(SLOW_RUN_ENV)
        in_run = not slow_run or Path(slow_run).resolve() in Path(path).resolve().parents
        if fraction and in_run and options.variant == os.environ.get(SLOW_VARIANT_ENV, "int8"):
            return _Slowed(session, fraction)
        return session


def measure_with(slowdown: float):
    """bench(), with the probe's slowdown set for the processes it starts."""

    def measure(run, config, write=False):
        os.environ[SLOWDOWN_ENV] = str(slowdown)
        try:
            return bench(run, config, write=write)
        finally:
            os.environ[SLOWDOWN_ENV] = "0"

    return measure


def competing_load(processes: int):
    """Start ``processes`` CPU-bound processes (numpy matrix products, one BLAS thread each); returns a stop
    function."""
    code = "import os\nimport numpy as np\na = np.random.default_rng(0).random((384, 384))\n"
    code += f"while os.getppid() == {os.getpid()}:\n    a @ a\n"  # ends with this script, however it ends
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    everywhere = range(os.cpu_count() or 1)  # not pinned with the benchmark (--cpus): the OS places them

    def unpinned() -> None:
        os.sched_setaffinity(0, everywhere)

    started = [subprocess.Popen([sys.executable, "-c", code], env=env, preexec_fn=unpinned) for _ in range(processes)]

    def stop() -> None:
        for process in started:
            process.kill()
            process.wait()

    return stop


def trial(
    run: RunDir, config: BenchConfig, gate: GateConfig, slowdown: float, order: int, base_time: float, load: int = 0
) -> dict:
    side_by_side = gate.relative_to == SIDE_BY_SIDE_REFERENCE
    if side_by_side:  # the unwrapped int8 model is the reference, measured in the same rounds: no stored baseline
        config = replace(config, backends=("probe", "ort-cpu"), variants=("int8",))
    if config.reference_run:  # the copy's int8 model is the reference, measured in the same rounds
        config = replace(config, variants=("int8",))
    stored = not side_by_side and not config.reference_run
    baseline = measure_with(0.0)(run, replace(config, min_time=base_time)) if stored else None
    outcome = {}
    stop = competing_load(load) if load else None  # the machine got busier since the baseline
    try:
        for label, fraction in [("same", 0.0), ("slow", slowdown)][:: 1 if order % 2 == 0 else -1]:
            started = time.perf_counter()
            measure = measure_with(fraction)
            _, result = check(run, config, gate, baseline, baseline_name="trial baseline", measure=measure)
            seconds = time.perf_counter() - started
            rows = {f"{r.backend}:{r.variant}": round(r.ratio, 4) for r in result.rows}
            outcome[label] = {"exit": result.exit_code, "seconds": round(seconds, 2), "ratios": rows}
            outcome[label]["slower"] = [f"{r.backend}:{r.variant}" for r in result.slower]
            if result.machine_factor is not None:
                outcome[label]["machine_factor"] = round(result.machine_factor, 3)
            if result.problems:
                outcome[label]["problems"] = result.problems
    finally:
        if stop:
            stop()
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="an exported run (default: build a small one, ~10 s)")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument(
        "--mode", choices=("relative", "baseline", "both", "side-by-side", "reference-run", "probe"), default="both"
    )
    parser.add_argument("--load", type=int, default=0, help="competing CPU-bound processes during the checks")
    parser.add_argument("--slowdown", type=float, default=0.10, help="injected extra work, a fraction (0.10: 10%%)")
    parser.add_argument("--max-regression", default="5%", help="the gate's threshold")
    parser.add_argument("--min-time", type=float, default=2.0, help="timed seconds per model (as --min-time)")
    parser.add_argument(
        "--baseline-time",
        type=float,
        default=None,
        help="timed seconds per model of the baseline (saved once, so it can afford to be measured longer; "
        "default 6, but in probe mode --min-time: `bench --baseline` measures with the baseline's settings, and "
        "the ratio to the probe moved with the length of the rounds in a first try)",
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--processes", type=int, default=8, help="fresh processes per model (as --processes)")
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads (1: the measuring process on one core)"
    )
    parser.add_argument(
        "--cpus", default="", help="pin the measuring processes to these CPUs (e.g. 0; the load stays unpinned)"
    )
    parser.add_argument("--out", type=Path, help="write the figures and every trial as JSON")
    args = parser.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})  # bench's processes inherit it

    register(ProbeBackend())
    config = BenchConfig(
        backends=("probe",),
        variants=("fp32", "int8"),
        min_time=args.min_time,
        rounds=args.rounds,
        processes=args.processes,
        threads=args.threads,
        accuracy=False,
        async_time=0.0,
    )
    if args.baseline_time is None:
        args.baseline_time = args.min_time if args.mode == "probe" else 6.0
    threshold = parse_fraction(args.max_regression)
    modes = ["relative", "baseline"] if args.mode == "both" else [args.mode]
    references = {"relative": "probe:fp32", "baseline": None, "side-by-side": SIDE_BY_SIDE_REFERENCE}
    references["reference-run"] = references["probe"] = None
    gates = {m: GateConfig(max_regression=threshold, relative_to=references[m]) for m in modes}
    with tempfile.TemporaryDirectory(prefix="gate-benchmark-") as tmp:
        if args.run:
            run = RunDir.open(args.run)
        else:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / ".ci"))
            from self_gate import make_run

            run = make_run(Path(tmp))
        copy = Path(tmp) / "reference-run"  # the same files in another run folder: the reference run
        shutil.copytree(run.path, copy)
        os.environ[SLOW_RUN_ENV] = str(run.path)
        configs = {m: replace(config, reference_run=str(copy) if m == "reference-run" else None) for m in modes}
        configs = {m: replace(c, probe=m == "probe") for m, c in configs.items()}
        trials: dict[str, list] = {m: [] for m in modes}
        try:
            for i in range(args.trials):
                for mode in modes:
                    result = trial(run, configs[mode], gates[mode], args.slowdown, i, args.baseline_time, args.load)
                    trials[mode].append(result)
                    same, slow = result["same"], result["slow"]
                    print(
                        f"trial {i + 1:2d}/{args.trials} {mode:8s} same: exit {same['exit']} {same['ratios']} "
                        f"({same['seconds']} s); slowed: exit {slow['exit']} {slow['ratios']} ({slow['seconds']} s) "
                        + (f"machine factor {same['machine_factor']}x " if "machine_factor" in same else "")
                        + " ".join(same.get("problems", []) + slow.get("problems", [])),
                        flush=True,
                    )
        except KeyboardInterrupt:  # Ctrl-C: the trials done so far are still summarised and written
            done = min(len(t) for t in trials.values())
            if not done:
                raise
            trials = {m: t[:done] for m, t in trials.items()}
            print(f"stopped after {done} of {args.trials} trials", flush=True)
    summary = {}
    for mode, items in trials.items():
        gate_times = [t[k]["seconds"] for t in items for k in ("same", "slow")]
        summary[mode] = {
            "trials": len(items),
            "caught_percent": 100 * sum(t["slow"]["exit"] == 1 for t in items) / len(items),
            "false_alarm_percent": 100 * sum(t["same"]["exit"] == 1 for t in items) / len(items),
            "cannot_compare": sum(t[k]["exit"] == 2 for t in items for k in ("same", "slow")),
            # stricter, where the trials say which models were judged slower: caught only when the slowed variant
            # (int8) was, and a false alarm whenever an unslowed model was (in either run of the trial)
            **(
                {
                    "slowed_model_caught_percent": 100
                    * sum(any(k.endswith(":int8") for k in t["slow"]["slower"]) for t in items)
                    / len(items),
                    "any_unslowed_model_flagged_percent": 100
                    * sum(
                        bool(t["same"]["slower"]) or any(not k.endswith(":int8") for k in t["slow"]["slower"])
                        for t in items
                    )
                    / len(items),
                }
                if all("slower" in t["same"] for t in items)
                else {}
            ),
            "max_gate_seconds": max(gate_times),
            "median_gate_seconds": sorted(gate_times)[len(gate_times) // 2],
        }
    load = f", {args.load} competing CPU-bound processes during the checks" if args.load else ""
    print(f"\ninjected slowdown {100 * args.slowdown:g}% on int8, gate threshold {100 * threshold:g}%{load}")
    print("targets: >= 95% caught, <= 2% false alarms, <= 30 s per gate")
    for mode, s in summary.items():
        print(
            f"{mode:8s}: caught {s['caught_percent']:.0f}%, false alarms {s['false_alarm_percent']:.0f}% "
            f"over {s['trials']} trials; gate {s['median_gate_seconds']:.1f} s median, "
            f"{s['max_gate_seconds']:.1f} s max"
            + (f"; {s['cannot_compare']} could not compare" if s["cannot_compare"] else "")
        )
        if "slowed_model_caught_percent" in s:
            print(
                f"{'':8s}  strictly: the slowed int8 model flagged in {s['slowed_model_caught_percent']:.0f}% of "
                f"trials; an unslowed model flagged (in either run) in {s['any_unslowed_model_flagged_percent']:.0f}%"
            )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        report = {"settings": settings, "machine": machine_info(), "summary": summary, "trials": trials}
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
