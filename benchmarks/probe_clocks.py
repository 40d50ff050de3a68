"""Would the stored-baseline gate survive load if it timed CPU time instead of wall time, or used a bigger probe?

Issue 17's gate judges a model's latency relative to the machine probe (edgetransfer/bench/probe.onnx) measured in
the same rounds. Under a competing load that ratio moves, and between quiet sessions it scatters by 5-10 %
(results/probe_noise.md). Two ideas, measured here with ONNX Runtime (one thread, batch 1) in one process per
session, models interleaved in rounds of 0.1 s each:

- **CPU time** (the measuring thread's, ``time.thread_time_ns``) next to wall time for every inference: preemption
  by other processes does not count in CPU time;
- **bigger probes** (seeded 1x1-convolution stacks written here: ``mid`` 1.8 MB, ``big`` 7 MB of weights, next to
  the shipped 0.5 MB probe): a model's round-to-round swings may follow a probe of its own memory footprint.

    .venv/bin/python benchmarks/probe_clocks.py --run RUN --sessions 5       # RUN: an exported run (fp32 + int8)

Per session and load (0, 1, 2 competing CPU-bound processes, as gate_benchmark.py --load starts them): each model's
median per round, the geometric mean over rounds of model / probe, by clock; then per load the mean and spread (sd
of the logarithms) over sessions, and within sessions the correlation of each model's per-round median with each
probe's and the spread of their ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def write_probe(path: Path, channels: int, side: int, layers: int = 13, seed: int = 7) -> None:
    """A stack of ``layers`` 1x1 convolutions + ReLU on a ``side`` x ``side`` input, seeded weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, last, c_in = [], [], "images", 3
    for i in range(layers):
        weight = (rng.standard_normal((channels, c_in, 1, 1)) / np.sqrt(c_in)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes += [helper.make_node("Conv", [last, f"w{i}"], [f"c{i}"]), helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        last, c_in = f"r{i}", channels
    graph = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info(last, TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def session(models: dict[str, str], rounds: int, seconds: float) -> dict:
    """One process's measurement: per model and clock, the median of each round (ms)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = {k: ort.InferenceSession(v, options, providers=["CPUExecutionProvider"]) for k, v in models.items()}
    feeds = {}
    for name, s in sessions.items():
        spec = s.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in spec.shape]
        feeds[name] = {spec.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    out = {k: {"wall": [], "cpu": []} for k in models}
    order = list(models)
    for r in range(rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            s, feed = sessions[name], feeds[name]
            for _ in range(2):
                s.run(None, feed)
            wall, cpu, started = [], [], time.perf_counter()
            while time.perf_counter() - started < seconds:
                w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                s.run(None, feed)
                cpu.append((time.thread_time_ns() - c0) / 1e6)
                wall.append((time.perf_counter_ns() - w0) / 1e6)
            out[name]["wall"].append(float(np.median(wall)))
            out[name]["cpu"].append(float(np.median(cpu)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="an exported run: model.onnx and model.int8.onnx")
    parser.add_argument("--sessions", type=int, default=5, help="sessions per load")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--round-time", type=float, default=0.1, help="seconds per model per round")
    parser.add_argument("--loads", default="0,1,2", help="competing CPU-bound processes, per condition")
    parser.add_argument("--out", type=Path, help="write every session as JSON")
    parser.add_argument("--session", help=argparse.SUPPRESS)  # internal: one session, models as JSON
    args = parser.parse_args()
    if args.session:
        print(json.dumps(session(json.loads(args.session), args.rounds, args.round_time)))
        return 0

    from gate_benchmark import competing_load

    from edgetransfer.bench.probe import check_probe

    with tempfile.TemporaryDirectory(prefix="probe-clocks-") as tmp:
        write_probe(Path(tmp) / "mid.onnx", 192, 8)
        write_probe(Path(tmp) / "big.onnx", 384, 4)
        models = {
            "probe": str(check_probe()),
            "mid": f"{tmp}/mid.onnx",
            "big": f"{tmp}/big.onnx",
            "fp32": str(args.run / "model.onnx"),
            "int8": str(args.run / "model.int8.onnx"),
        }
        command = [sys.executable, __file__, "--run", str(args.run), "--rounds", str(args.rounds)]
        command += ["--round-time", str(args.round_time), "--session", json.dumps(models)]
        results: dict[int, list] = {}
        for load in [int(x) for x in args.loads.split(",")]:
            for _ in range(args.sessions):
                stop = competing_load(load) if load else None
                try:
                    done = subprocess.run(command, capture_output=True, text=True, check=True)
                finally:
                    if stop:
                        stop()
                results.setdefault(load, []).append(json.loads(done.stdout))
                print(f"load {load}: session {len(results[load])}/{args.sessions}", flush=True)
    print("\n| load | clock | fp32 / probe: mean, spread over sessions | int8 / probe: mean, spread |")
    print("|---|---|---|---|")
    for load, sessions in results.items():
        for clock in ("wall", "cpu"):
            cells = []
            for model in ("fp32", "int8"):
                ratios = [
                    float(np.exp(np.mean(np.log(np.array(s[model][clock]) / np.array(s["probe"][clock])))))
                    for s in sessions
                ]
                cells.append(f"{np.mean(ratios):.3f}, {100 * np.std(np.log(ratios)):.1f} %")
            print(f"| {load} | {clock} | {cells[0]} | {cells[1]} |")
    print("\nWithin sessions, no load, wall clock: correlation of per-round medians / sd of the per-round ratio")
    print("| model | vs probe (0.5 MB) | vs mid (1.8 MB) | vs big (7 MB) | model's own round sd |")
    print("|---|---|---|---|---|")
    quiet = results.get(0, [])
    for model in ("fp32", "int8"):
        cells = []
        for probe in ("probe", "mid", "big"):
            corr = [np.corrcoef(np.log(s[model]["wall"]), np.log(s[probe]["wall"]))[0, 1] for s in quiet]
            sd = [np.std(np.log(s[model]["wall"]) - np.log(s[probe]["wall"])) for s in quiet]
            cells.append(f"{np.mean(corr):.2f} / {100 * np.mean(sd):.1f} %")
        own = np.mean([np.std(np.log(s[model]["wall"])) for s in quiet])
        print(f"| {model} | {' | '.join(cells)} | {100 * own:.1f} % |")
    if args.out:
        settings = {k: str(v) for k, v in vars(args).items()}
        args.out.write_text(json.dumps({"settings": settings, "sessions": results}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
