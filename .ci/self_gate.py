"""The project's own latency gate, run by `make gate` and CI: a small model made here, its int8 ONNX measured
against its fp32 ONNX in the same run (interleaved rounds, one process per model). A ratio taken side by side holds
on any machine, loaded or not; the gate fails (exit 1) only when int8 is significantly more than 10% slower than
fp32, which means the int8 export has regressed (on a CPU without fast int8 it may also simply be the truth).

    .venv/bin/python .ci/self_gate.py            # ~20 s: builds the run, then `edgetransfer bench ... --relative-to`
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GATE = ["--backends", "ort-cpu", "--variants", "fp32,int8", "--relative-to", "ort-cpu:fp32", "--max-regression", "10%"]
GATE += ["--threads", "1", "--min-time", "2", "--rounds", "8", "--no-accuracy"]


def make_run(work: Path, *, size: int = 96):
    """Fine-tune MobileNetV2 for one epoch on generated images and export fp32 + int8 ONNX (no OpenVINO)."""
    from edgetransfer.builtin_data import write_pattern_folder
    from edgetransfer.export import ExportConfig, export
    from edgetransfer.finetune import FinetuneConfig, finetune
    from edgetransfer.quantize import Int8Config

    os.environ.setdefault("EDGETRANSFER_OFFLINE", "1")
    data = write_pattern_folder(work / "images", per_class=10, size=size)
    run = finetune(FinetuneConfig(data=str(data), out=str(work / "run"), size=size, epochs=1, batch_size=8))
    return export(run, ExportConfig(openvino=False, int8=Int8Config(calibration_size=16)))


def machine_line() -> str:
    """The CPU and its int8 instructions, and the load: a CPU without VNNI (or AMX) may run int8 no faster than fp32."""
    from edgetransfer.machine import VNNI_FLAGS, machine_info

    info = machine_info()
    int8 = [flag for flag in info["flags"] if flag in VNNI_FLAGS]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"machine: {info['cpu']}; int8 instructions: {', '.join(int8) or 'no VNNI or AMX'}; load average {load}"


def main() -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgetransfer-gate-") as tmp:
        run = make_run(Path(tmp))
        built = time.perf_counter() - started
        command = [str(Path(sys.executable).with_name("edgetransfer")), "bench", str(run.path), *GATE, "--out", tmp]
        print(machine_line(), flush=True)  # so that a failure shows whether the CPU or the load made it
        print("$ edgetransfer bench RUN " + " ".join(GATE), flush=True)
        code = subprocess.run(command, check=False).returncode
    print(f"self gate: exit {code}; run built in {built:.0f} s, {time.perf_counter() - started:.0f} s in all")
    return code


if __name__ == "__main__":
    sys.exit(main())
