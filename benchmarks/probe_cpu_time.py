"""Which short measure of "int8 over fp32 latency" holds when other processes share the CPU?

Export's accuracy-aware int8 step keeps layers in float only while the model stays measurably faster than fp32,
judged by a short measure (0.5-1 s) taken while export runs, perhaps beside other work. This times a run's
``model.int8.onnx`` against its ``model.onnx`` with four measures, each repeated, first on the quiet machine and
then under two kinds of load started by this script on every core (pure-Python busy loops; a PyTorch matrix product
at as many threads as cores, like a training job):

- ``wall, default threads``: wall-clock median ratio, ONNX Runtime at its default threads (export's measure before);
- ``wall, 2 threads`` and ``wall, 1 thread``: the same at a fixed thread count;
- ``CPU time, 1 thread``: :func:`edgetransfer.evaluation.latency_ratio` as it is now (process CPU time per
  inference, ONNX Runtime at 1 thread: the inference runs on the calling thread);
- and where the run has OpenVINO IRs, the int8 IR against the fp32 IR by wall time at the default threads (export's
  measure before) and in CPU time at 1 thread (export's measure now).

    .venv/bin/python benchmarks/probe_cpu_time.py models/digits-mobilenet_v2 --repeats 5 \
        --out benchmarks/results/probe_cpu_time.md

Run it with nothing else running: the quiet rows assume a quiet machine. About 2.5 min with 5 repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgetransfer.backends.ort import _OrtSession, ort_session  # noqa: E402
from edgetransfer.evaluation import latency_ratio, session_latency_ratio  # noqa: E402

LOADS = {
    "python busy loops": "while True: pass",
    "PyTorch matmul": (
        "import os, torch; torch.set_num_threads(os.cpu_count()); a = torch.randn(1024, 1024)\nwhile True: a @ a"
    ),
}


def measures(run: Path, size: int) -> dict:
    fp32, int8 = run / "model.onnx", run / "model.int8.onnx"

    def wall(threads: int | None):
        def measure() -> float:
            sessions = [_OrtSession(ort_session(path, threads=threads), "fp32") for path in (fp32, int8)]
            return session_latency_ratio(*sessions, size, seconds=1.0)

        return measure

    found = {
        "wall, default threads": wall(None),
        "wall, 2 threads": wall(2),
        "wall, 1 thread": wall(1),
        "CPU time, 1 thread": lambda: latency_ratio(fp32, int8, size, seconds=1.0),
    }
    irs = run / "openvino" / "model.xml", run / "openvino" / "model.int8.xml"
    if all(ir.is_file() for ir in irs):  # export's OpenVINO measure: the int8 IR against the fp32 IR

        def openvino(threads: int | None, clock=None):
            from edgetransfer.backends.base import LoadOptions
            from edgetransfer.backends.openvino import compile_model

            def measure() -> float:
                a = compile_model(irs[0], LoadOptions(threads=threads))
                b = compile_model(irs[1], LoadOptions(threads=threads), int8=True)
                return session_latency_ratio(a, b, size, seconds=1.0, clock=clock)

            return measure

        found["OpenVINO wall, default threads"] = openvino(None)
        found["OpenVINO CPU time, 1 thread"] = openvino(1, time.process_time)
    return found


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a run folder with model.onnx and model.int8.onnx")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    card = json.loads((args.run / "card.json").read_text())
    size = card["preprocessing"]["crop"]
    rows = []
    for load in ("quiet", *LOADS):
        workers = []
        if load != "quiet":
            workers = [subprocess.Popen([sys.executable, "-c", LOADS[load]]) for _ in range(os.cpu_count() or 1)]
            time.sleep(3)
        try:
            for name, measure in measures(args.run, size).items():
                ratios = [measure() for _ in range(args.repeats)]
                rows.append((load, name, ratios))
                print(f"{load:18s} {name:22s} " + " ".join(f"{r:.3f}" for r in ratios), flush=True)
        finally:
            for worker in workers:
                worker.kill()
                worker.wait()
    lines = [
        "# int8 / fp32 latency ratio: short measures, quiet and under load",
        "",
        f"Run `{args.run}` ({card.get('backbone', '?')}, {size} px), ONNX Runtime (and OpenVINO where marked), "
        f"{args.repeats} measures of 1 s each per row. Machine: {cpu_name()}, {os.cpu_count()} cores. The load: "
        f"one process per core. Command: `{' '.join(sys.argv)}`.",
        "",
        "| load | measure | ratios | min-max |",
        "|---|---|---|---|",
    ]
    for load, name, ratios in rows:
        lines.append(
            f"| {load} | {name} | {', '.join(f'{r:.2f}' for r in ratios)} | {min(ratios):.2f}-{max(ratios):.2f} |"
        )
    quiet = {name: np.median(r) for load, name, r in rows if load == "quiet"}
    lines += ["", "Median of the quiet measures: " + ", ".join(f"{k} {v:.2f}" for k, v in quiet.items()) + "."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
