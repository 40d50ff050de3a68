"""How far does a model's latency relative to the machine probe move between two benches of the same build on the
same quiet machine? That movement is the noise a stored-baseline gate (`bench --baseline`) has to live with.

Each session is one `edgetransfer bench RUN --save-baseline` (ort-cpu fp32 and int8, one thread, the probe in the
same rounds), run back to back. Per round, the model's median over the probe's median in that round; a session's
figure is the geometric mean over its rounds. The table gives each session's figure, their spread (the standard
deviation of their logarithms) and the mean round-to-round standard deviation within a session.

    .venv/bin/python benchmarks/probe_noise.py --sessions 6 --processes 8
    .venv/bin/python benchmarks/probe_noise.py --sessions 4 --processes 8 --pin 0   # every process on CPU 0

Takes about 25 s per session with 8 processes (60 s with 20). Run it on a quiet machine, nothing else timing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def by_round(latency: dict) -> list[float]:
    """The median of each round's timed runs."""
    samples, out, at = latency["samples_ms"], [], 0
    for count in latency["rounds"]:
        out.append(float(np.median(samples[at : at + count])))
        at += count
    return out


def session_figures(document: dict) -> dict[str, tuple[float, float]]:
    """variant -> (geometric mean over rounds of model/probe, standard deviation of the log ratio over rounds)."""
    probe = by_round(document["probe"]["latency"][0])
    out = {}
    for result in document["results"]:
        ratios = np.log(np.array(by_round(result["latency"][0])) / np.array(probe))
        out[result["variant"]] = (float(np.exp(ratios.mean())), float(ratios.std(ddof=1)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="an exported run (default: build .ci/self_gate.py's, ~15 s)")
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--pin", help="run every session under `taskset -c PIN` (Linux)")
    args = parser.parse_args()
    edgetransfer = str(Path(sys.executable).with_name("edgetransfer"))
    with tempfile.TemporaryDirectory(prefix="probe-noise-") as tmp:
        run = args.run
        if run is None:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / ".ci"))
            from self_gate import make_run

            run = make_run(Path(tmp)).path
        sessions = []
        for index in range(args.sessions):
            out = Path(tmp) / f"session{index}"
            out.mkdir()
            command = ["taskset", "-c", args.pin] if args.pin else []
            command += [edgetransfer, "bench", str(run), "--backends", "ort-cpu", "--variants", "fp32,int8"]
            command += ["--threads", "1", "--min-time", str(args.min_time), "--rounds", str(args.rounds)]
            command += ["--processes", str(args.processes), "--no-accuracy", "--out", str(out)]
            command += ["--save-baseline", str(out / "base.json")]
            subprocess.run(command, check=True, capture_output=True)
            sessions.append(session_figures(json.loads((out / "base.json").read_text())))
            print(
                f"session {index + 1}/{args.sessions}: "
                + ", ".join(f"{v} {r:.3f}" for v, (r, _) in sessions[-1].items())
            )
    pin = f", taskset -c {args.pin}" if args.pin else ", not pinned"
    print(f"\n{args.processes} processes, {args.rounds} rounds, {args.min_time:g} s per model{pin}")
    for variant in sessions[0]:
        figures = [s[variant][0] for s in sessions]
        spread = 100 * float(np.std(np.log(figures), ddof=1))
        within = 100 * float(np.mean([s[variant][1] for s in sessions]))
        print(
            f"{variant}/probe: {', '.join(f'{f:.2f}' for f in figures)}; "
            f"spread sd {spread:.1f} %, round sd {within:.0f} %"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
