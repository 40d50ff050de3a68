"""Would a low quantile steady a stored-baseline gate? Sessions of `edgetransfer bench RUN --save-baseline`, every
second one under one competing CPU-bound process; per round, a model's median / 25th / 10th percentile / fastest
run over the machine probe's same statistic; a session's figure the geometric mean over its rounds; the table gives
the spread (sd of the logarithms) of the session figures with and without the load, and the shift between them.
Results: benchmarks/results/probe_noise.md ("A low quantile instead of the median").

    .venv/bin/python benchmarks/probe_quantiles.py models/digits-mobilenet_v2 --sessions 16 --keep /tmp/pq

About 15 s per session (4 processes, 10 rounds, 1 s per model). Run it on a quiet machine, nothing else timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

LOAD = "import numpy as np\na = np.random.rand(384, 384)\nwhile True:\n    a @ a"
STATS = {
    "median": np.median,
    "p25": lambda a: np.percentile(a, 25),
    "p10": lambda a: np.percentile(a, 10),
    "min": np.min,
}


def by_round(latency: dict) -> list[np.ndarray]:
    samples, out, at = latency["samples_ms"], [], 0
    for count in latency["rounds"]:
        out.append(np.asarray(samples[at : at + count]))
        at += count
    return out


def figures(document: dict) -> dict[tuple[str, str], float]:
    """(variant, statistic) -> the geometric mean over rounds of the model's statistic over the probe's; and
    (variant or "probe", "absolute ms") -> its median over the session, for the spread without the probe."""
    probe = by_round(document["probe"]["latency"][0])
    out = {("probe", "absolute ms"): float(np.median(document["probe"]["latency"][0]["samples_ms"]))}
    for result in document["results"]:
        out[(result["variant"], "absolute ms")] = float(np.median(result["latency"][0]["samples_ms"]))
        model = by_round(result["latency"][0])
        for name, stat in STATS.items():
            logs = [np.log(stat(m) / stat(p)) for m, p in zip(model, probe, strict=True)]
            out[(result["variant"], name)] = float(np.exp(np.mean(logs)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="an exported run with model.onnx and model.int8.onnx")
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--keep", type=Path, help="keep each session's bench documents here")
    args = parser.parse_args()
    edgetransfer = str(Path(sys.executable).with_name("edgetransfer"))
    single = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    sessions: dict[int, list[dict]] = {0: [], 1: []}
    with tempfile.TemporaryDirectory(prefix="probe-quantiles-") as tmp:
        root = args.keep or Path(tmp)
        for index in range(args.sessions):
            load = index % 2
            hog = subprocess.Popen([sys.executable, "-c", LOAD], env=single) if load else None
            try:
                out = root / f"s{index:02d}_load{load}"
                out.mkdir(parents=True)
                command = [edgetransfer, "bench", str(args.run), "--backends", "ort-cpu", "--variants", "fp32,int8"]
                command += ["--threads", "1", "--min-time", "1", "--rounds", "10", "--processes", "4"]
                command += ["--no-accuracy", "--out", str(out), "--save-baseline", str(out / "base.json")]
                subprocess.run(command, check=True, capture_output=True)
            finally:
                if hog:
                    hog.kill()
                    hog.wait()
            sessions[load].append(figures(json.loads((out / "base.json").read_text())))
            print(f"session {index + 1}/{args.sessions} (load {load}) done", flush=True)
    for key in sorted(sessions[0][0]):
        quiet, busy = (np.log([s[key] for s in sessions[k]]) for k in (0, 1))
        print(
            f"{key[0]:5s} {key[1]:6s} quiet sd {100 * quiet.std(ddof=1):5.1f}%  load sd {100 * busy.std(ddof=1):5.1f}%"
            f"  load-quiet shift {100 * (np.exp(busy.mean() - quiet.mean()) - 1):+5.1f}%"
            f"  all sd {100 * np.concatenate([quiet, busy]).std(ddof=1):5.1f}%  n={len(quiet)}+{len(busy)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
