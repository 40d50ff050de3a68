"""bench --on, for real: OpenSSH servers on 127.0.0.1 (throwaway host and user keys, their own config) stand in for
devices; "the device" gets only the runtime install (a venv made by bench --on from a wheelhouse, no torch).

Failures the same way: unreachable, authentication refused, no Python, no onnxruntime, another architecture (a
``uname`` shim in the device's PATH), a full disk (the device's folder a 256 KiB tmpfs in the server's own mount
namespace: a real ENOSPC-sized disk), and the connection dropped mid-bench (the server and its sessions killed).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").is_file() else None)
QUICK = ["--backends", "ort-cpu", "--min-time", "0.1", "--rounds", "2", "--min-runs", "3"]
QUICK += ["--warmup", "1", "--warmup-time", "0", "--async-time", "0", "--no-confirm"]
pytestmark = pytest.mark.skipif(
    SSHD is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None,
    reason="needs OpenSSH (apt-get install openssh-server openssh-client; .ci/run installs them)",
)


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    cache: Path  # the device's XDG_CACHE_HOME: bench --on keeps its files there

    def kill(self) -> None:
        """Kill the server and every session it started (the connection drops as when a device goes away)."""
        for pid in [*_descendants(self.process.pid), self.process.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(10)


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first, then the parent's pid), or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(entry.name)
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Servers:
    """Starts sshd servers as the current user (root: PermitRootLogin with the key only), stops them at the end."""

    def __init__(self, base: Path) -> None:
        self.base, self.started = base, []
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host")], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "user")], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "stranger")], check=True)
        shutil.copy(base / "user.pub", base / "authorized_keys")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder, as at boot

    def start(self, name: str, *, path: str = "/usr/bin:/bin", tmpfs_kb: int | None = None) -> Server:
        port, folder = _free_port(), self.base / name
        cache = folder / "cache"
        cache.mkdir(parents=True)
        # the device's temporary files in the test's folder: a device bench killed with SIGKILL (the dropped
        # connection below) cannot remove its own (a plain drop does: test_bench)
        (folder / "tmp").mkdir()
        config = folder / "sshd_config"
        config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {self.base / 'host'}\nPidFile {folder / 'pid'}\n"
            f"AuthorizedKeysFile {self.base / 'authorized_keys'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
            f"SetEnv XDG_CACHE_HOME={cache} PATH={path} TMPDIR={folder / 'tmp'}\n"
        )
        command = [SSHD, "-D", "-e", "-f", str(config)]
        if tmpfs_kb is not None:  # the device's folder on a tiny disk of its own, seen only by this server
            mount = f"mount -t tmpfs -o size={tmpfs_kb}k tmpfs {cache} && exec {' '.join(command)}"
            command = ["unshare", "-m", "sh", "-c", mount]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(folder / "log", "w"))
        self.started.append(process)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"sshd {name} did not start: {(folder / 'log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return Server(port, process, cache)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd {name} did not listen on {port}")

    def stop(self) -> None:
        for process in self.started:
            if process.poll() is None:
                for pid in [*_descendants(process.pid), process.pid]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                process.wait(10)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    found = Servers(tmp_path_factory.mktemp("sshd"))
    yield found
    found.stop()


@pytest.fixture(scope="module")
def main_server(servers):
    try:
        return servers.start("main")
    except RuntimeError as exc:  # e.g. not root and this sshd insists on its privilege separation folder
        pytest.skip(f"cannot start an OpenSSH server here: {exc}")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory, main_server, servers):
    """The runtime's dependencies as wheels for the device's python3 (from the package index, through pip's cache),
    at the versions installed here."""
    from importlib import metadata

    asked = ssh(servers, main_server, "python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'")
    version = asked.stdout.strip()
    folder = tmp_path_factory.mktemp("wheelhouse")
    pins = [f"{name}=={metadata.version(name)}" for name in ("numpy", "pillow", "onnxruntime", "typer", "rich")]
    pins.append(f"pydantic=={metadata.version('pydantic')}")
    command = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", version]
    try:
        done = subprocess.run([*command, "-d", str(folder), *pins], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip(f"cannot make a wheelhouse for Python {version}: the package index did not answer in 600 s")
    if done.returncode:
        pytest.skip(f"cannot make a wheelhouse for Python {version} from the package index: {done.stderr[-300:]}")
    return folder


def ssh(servers: Servers, server: Server, command: str) -> subprocess.CompletedProcess:
    options = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    options += ["-o", "LogLevel=ERROR", "-i", str(servers.base / "user"), "-p", str(server.port)]
    return subprocess.run(["ssh", *options, "127.0.0.1", command], capture_output=True, text=True, timeout=60)


def targets_file(folder: Path, servers: Servers, **devices: dict) -> Path:
    """A targets.toml with one [[target]] per keyword (name = {port, python, key, ...})."""
    lines = []
    for name, values in devices.items():
        values = {"host": "127.0.0.1", "key": str(servers.base / "user"), **values}
        lines += ["[[target]]", f'name = "{name}"'] + [f"{k} = {json.dumps(v)}" for k, v in values.items()] + [""]
    path = folder / "targets.toml"
    path.write_text("\n".join(lines))
    return path


def bench(run, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "edgetransfer", "bench", str(run), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def copy_run(run, folder: Path) -> Path:
    """A copy of the shared run (this test writes its reports and known_hosts there)."""
    target = folder / "run"
    shutil.copytree(run.path, target, ignore=shutil.ignore_patterns("*.lock", "bench.*"))
    return target


@pytest.fixture(scope="module")
def device(tmp_path_factory, trained_run, servers, main_server, wheelhouse):
    """The end-to-end bench on the device, made as a user would: a venv on it from --wheelhouse, the models and the
    test images copied, accuracy measured there. Returns the run, the outcome and the device's runtime python."""
    folder = tmp_path_factory.mktemp("device-run")
    run = copy_run(trained_run, folder)
    targets = targets_file(folder, servers, dev={"port": main_server.port, "notes": "power mode: max"})
    args = ["--on", "dev", "--targets", str(targets), "--wheelhouse", str(wheelhouse), "--backends", "ort-cpu"]
    args += ["--min-time", "0.2", "--rounds", "2", "--min-runs", "3", "--warmup", "1", "--async-time", "0"]
    done = bench(run, *args, "--save-baseline", str(folder / "base.json"), timeout=1500)  # a venv is built there
    envs = sorted((main_server.cache / "edgetransfer/remote/envs").glob("*/bin/python"))
    return run, done, envs[0] if envs else None, folder


def test_bench_on_a_device_end_to_end(device, main_server):
    run, done, python, _ = device
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads((run / "bench.json").read_text())
    entry = document["devices"][0]
    assert entry["target"] == "dev" and entry["error"] is None and entry["notes"] == "power mode: max"
    mine = {(r["backend"], r["variant"]) for r in entry["document"]["results"]}
    assert mine == {("ort-cpu", "fp32"), ("ort-cpu", "int8")}
    assert {r["processes"] for r in entry["document"]["results"]} == {1}  # each model in a fresh process there
    info = entry["device"]
    assert info["arch"] == platform.machine() and info["cores"] >= 1 and info["os"] and info["python"]
    versions = entry["document"]["versions"]
    assert "onnxruntime" in versions and "torch" not in versions and "onnx" not in versions  # runtime only there
    accuracy = entry["document"]["results"][0]["accuracy"]
    assert accuracy["images"] == document["accuracy_data"]["images"] > 0  # the same test images, copied once
    assert entry["document"]["run"].startswith(str(main_server.cache))  # measured on the device's copy
    assert python is not None and not (python.parent / "torch").exists()
    check = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True)
    assert check.returncode != 0  # the device has no torch
    table = done.stdout
    assert " dev " in table and " here " in table and "device dev (ssh://" in table, table
    assert "device dev" in (run / "bench.md").read_text() and "Devices (bench --on)" in (run / "bench.html").read_text()
    assert (run / "known_hosts").read_text().strip()  # the device's host key, recorded on first contact
    assert "[dev] runtime: installing this edgetransfer into a venv from the wheelhouse" in done.stderr
    assert "[dev] copying " in done.stderr and "; 0 already there" in done.stderr


def test_files_already_on_the_device_are_not_copied_again_and_the_baseline_gate_runs_there(device, servers):
    run, first, python, folder = device
    assert first.returncode == 0, first.stderr[-2000:]
    copies = sorted((servers.base / "main/cache/edgetransfer/remote/runs").rglob("*.onnx"))
    before = {p: p.stat().st_ino for p in copies}
    targets = folder / "targets.toml"
    done = bench(run, *QUICK, "--on", "dev", "--targets", str(targets), "--baseline", str(folder / "base.json"))
    # 1: noise judged slower; 2 only when the busy machine read its probe past 2x: the point is where it ran
    busy = done.returncode == 2 and "no verdict is trustworthy" in done.stdout
    assert done.returncode in (0, 1) or busy, done.stderr[-2000:]
    assert {p: p.stat().st_ino for p in copies} == before  # same files, not sent again
    assert "[dev] runtime: a venv made by an earlier bench of this edgetransfer (reused)" in done.stderr
    assert "file(s) already there (checked by sha256)" in done.stderr, done.stderr[-2000:]
    gate = json.loads((run / "bench.json").read_text())["devices"][0]["document"]["gate"]
    assert gate["mode"] == "baseline" and gate["rows"] and gate["rows"][0]["backend"] == "ort-cpu"
    assert "on dev:" in done.stdout and "regression gate against the baseline" in done.stdout


def test_reference_run_on_a_device(device, tmp_path):
    run, first, python, folder = device
    assert python is not None, first.stderr[-2000:]
    reference = tmp_path / "main-build"
    shutil.copytree(run, reference, ignore=shutil.ignore_patterns("bench.*", "known_hosts"))
    args = ["--on", "dev", "--targets", str(folder / "targets.toml"), "--python", str(python), "--in-process"]
    quick = [*QUICK]
    quick[1] = "ort-cpu,openvino-cpu"  # the device's runtime install has no OpenVINO: said, not hidden
    done = bench(run, *quick, "--variants", "int8", *args, "--reference-run", str(reference))
    assert done.returncode in (0, 1), done.stderr[-2000:]
    assert "unavailable openvino-cpu on dev: openvino is not installed" in done.stderr, done.stderr[-2000:]
    theirs = json.loads((run / "bench.json").read_text())["devices"][0]["document"]
    assert theirs["reference"]["results"][0]["variant"] == "int8"
    # no fp32 measured there (--variants int8): its rows are compared with this machine's reference (same images)
    assert theirs["results"][0]["accuracy"]["top1_delta_points"] is not None
    assert theirs["gate"]["mode"] == "reference-run" and theirs["gate"]["rows"]
    # the reference run named as given here, not as the device's copy under the remote folder
    from edgetransfer.rundir import RunDir

    assert theirs["reference"]["run"] == theirs["gate"]["baseline"] == str(RunDir.open(reference).path)
    assert len(Path(theirs["reference"]["device_run"]).name) == 16  # the device's copy, kept beside


def test_failures_are_one_line_each_and_the_other_devices_are_still_reported(device, servers, main_server, tmp_path):
    run, first, python, _ = device
    assert python is not None, first.stderr[-2000:]
    shim = tmp_path / "shim"
    shim.mkdir()
    other = "riscv64" if platform.machine() != "riscv64" else "aarch64"  # an architecture with no wheel here
    (shim / "uname").write_text(f'#!/bin/sh\n[ "$1" = "-m" ] && echo {other} && exit 0\nexec /usr/bin/uname "$@"\n')
    (shim / "uname").chmod(0o755)
    arm = servers.start("arm", path=f"{shim}:/usr/bin:/bin")
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    devices = {
        "good": {"port": main_server.port, "python": str(python)},
        "down": {"port": _free_port()},
        "refused": {"port": main_server.port, "key": str(servers.base / "stranger")},
        "nopython": {"port": main_server.port, "python": "/nonexistent/python3"},
        "notpython": {"port": main_server.port, "python": "/bin/true"},  # runs, prints no version
        "noort": {"port": main_server.port, "python": str(bare / "bin" / "python")},
        "arm": {"port": arm.port},
    }
    expected = {
        "down": "unreachable: ssh: connect to host 127.0.0.1 port",
        "refused": "authentication refused",
        "nopython": "no Python on the device: /nonexistent/python3 not found",
        "notpython": "/bin/true on the device is not a Python interpreter",
        "noort": "lacks numpy, onnxruntime",
        "arm": f"the device is {other} with CPython",
    }
    full = None
    if shutil.which("unshare") and subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0:
        full = servers.start("full", tmpfs_kb=256)
        devices["full"] = {"port": full.port}
        expected["full"] = "the device's disk is full"
    targets = targets_file(tmp_path, servers, **devices)
    wheelhouse = tmp_path / "wheelhouse"  # a wheel for this machine only: nothing fits the "arm" device
    wheelhouse.mkdir()
    (wheelhouse / f"numpy-2.0.0-py3-none-manylinux_2_17_{platform.machine()}.whl").write_bytes(b"")
    for project in ("pillow", "onnxruntime", "typer", "rich", "pydantic"):  # the other runtime requirements
        (wheelhouse / f"{project}-99.0-py3-none-any.whl").write_bytes(b"")
    before = sorted(p.name for p in run.iterdir())
    args = ["--on", ",".join(devices), "--targets", str(targets), "--wheelhouse", str(wheelhouse)]
    done = bench(run, *QUICK, "--variants", "int8", "--in-process", *args)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    local = done.stderr.index("measured ort-cpu")  # an unreachable or refusing device is said before this machine
    assert -1 < done.stderr.find("[down] unreachable") < local and -1 < done.stderr.find("[refused] auth") < local
    errors = error_lines(done.stderr)
    print("\n".join(errors))  # what each case says (docs/remote.md lists them)
    assert len(errors) == len(expected), errors
    for name, phrase in expected.items():
        mine = [line for line in errors if line.startswith(f"error: {name} (ssh://")]
        assert len(mine) == 1 and phrase in mine[0], (name, errors)
    document = json.loads((run / "bench.json").read_text())
    entries = {d["target"]: d for d in document["devices"]}
    assert entries["good"]["error"] is None and entries["good"]["document"]["results"]  # still measured, reported
    assert all(entries[name]["error"] and entries[name]["document"] is None for name in expected)
    assert sorted(p.name for p in run.iterdir()) == before  # nothing half-written (reports replaced whole)
    if full is not None:  # nothing was copied onto the full disk, no staging folder left
        assert subprocess.run(["nsenter", "-t", str(full.process.pid), "-m", "ls", "-R", str(full.cache)],
                              capture_output=True, text=True).stdout.count(".partial") == 0  # fmt: skip


def test_the_connection_drops_mid_bench(device, servers, tmp_path):
    run, first, python, _ = device
    assert python is not None, first.stderr[-2000:]
    flaky = servers.start("flaky")
    targets = targets_file(tmp_path, servers, flaky={"port": flaky.port, "python": str(python)})
    slow = [a if a != "0.1" else "4" for a in QUICK]  # 4 s of measuring here, then there: time to cut it off
    command = [sys.executable, "-m", "edgetransfer", "bench", str(run), *slow, "--variants", "int8", "--in-process"]
    command += ["--on", "flaky", "--targets", str(targets)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("[flaky] measuring on"):
            # the line comes before the ssh session starts the worker: on a busy machine that took more than the
            # fixed 1.5 s this test once slept, so look until it is there (it then measures for at least 4 s)
            end = time.monotonic() + 60
            while time.monotonic() < end:
                workers = [p for p in _descendants(flaky.process.pid) if b"remote_worker" in _cmdline(p)]
                if workers:
                    break
                time.sleep(0.1)
            time.sleep(0.5)  # well inside its measuring
            flaky.kill()
            break
    rest = process.communicate(timeout=120)
    stderr = "".join(seen) + rest[1]
    assert workers, stderr  # the bench was running there when the server went away
    assert process.returncode == 2, stderr[-2000:]
    errors = error_lines(stderr)
    print("\n".join(errors))
    assert len(errors) == 1 and "the connection was lost during the bench" in errors[0], errors
    entry = json.loads((run / "bench.json").read_text())["devices"][0]
    assert entry["error"] and entry["document"] is None
    deadline = time.monotonic() + 20  # the worker gets SIGHUP when its session dies; give it time to exit
    while [p for p in workers if _running(p)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in workers if _running(p)]  # nothing left running on the device


def test_search_measures_each_trial_on_the_device(device, servers, main_server, wheelhouse, tmp_path):
    """search --on: the trial's latency comes from the device (its copy of the model there, nothing benched here);
    a device that does not answer is refused before the first trial trains, and nothing is left behind."""
    pytest.importorskip("optuna", reason="edgetransfer[search] is not installed")
    import hashlib

    from conftest import make_folder

    data = make_folder(tmp_path / "img", per_class=6)
    targets = targets_file(tmp_path, servers, dev={"port": main_server.port})
    out = tmp_path / "search"
    command = [sys.executable, "-m", "edgetransfer", "search", "--data", str(data), "--trials", "1"]
    command += ["--backbones", "mobilenet_v2", "--sizes", "32", "--int8-methods", "static", "--epochs", "1"]
    command += ["--batch-size", "8", "--min-time", "0.1", "--targets", str(targets), "--wheelhouse", str(wheelhouse)]
    done = subprocess.run([*command, "--out", str(out), "--on", "dev"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    trial = json.loads((out / "search.json").read_text())["trials"][0]
    assert trial["state"] == "done" and trial["measured_on"] == "dev" and trial["latency_ms"] > 0
    run = Path(trial["run"])
    assert not (run / "bench.json").exists()  # not measured here
    sha = hashlib.sha256((run / "model.int8.onnx").read_bytes()).hexdigest()
    there = [p for p in main_server.cache.rglob("*.onnx") if hashlib.sha256(p.read_bytes()).hexdigest() == sha]
    assert there, "the trial's int8 model is not on the device"
    assert (out / "known_hosts").read_text().strip()  # the device's host key, pinned at the first contact
    gone = tmp_path / "gone"
    refused = subprocess.run(
        [*command, "--out", str(gone), "--on", f"ssh://root@127.0.0.1:{_free_port()}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and error_lines(refused.stderr) == [refused.stderr.strip()], refused.stderr
    assert "unreachable" in refused.stderr and not gone.exists()


def _running(pid: int) -> bool:
    """Alive and not a zombie (a dead process whose parent has not reaped it yet still has a /proc entry)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_addresses_and_target_names_are_checked_before_measuring(tmp_path):
    from edgetransfer.bench.targets import parse_address, resolve, wheel_fits
    from edgetransfer.errors import UsageError

    target = parse_address("ssh://pi@cam-1.local:2222")
    assert (target.user, target.host, target.port) == ("pi", "cam-1.local", 2222)
    for bad in ("ssh://host:99999", "ssh://host:0", "http://host", "ssh://", "ssh://u:pw@host"):
        with pytest.raises(UsageError):
            parse_address(bad)
    (tmp_path / "t.toml").write_text('[[target]]\nname = "cam1"\nhost = "10.0.0.5"\n')
    with pytest.raises(UsageError, match="did you mean 'cam1'"):
        resolve("cam2", tmp_path / "t.toml")
    with pytest.raises(UsageError, match="twice"):
        resolve("cam1,cam1", tmp_path / "t.toml")
    assert resolve("cam1", tmp_path / "t.toml")[0].python_given is False
    assert resolve("cam1", tmp_path / "t.toml", python="/opt/py/bin/python3")[0].python_given is True
    assert wheel_fits("numpy-2.0.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", "aarch64", "cp311")
    assert not wheel_fits("numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl", "aarch64", "cp311")
    assert not wheel_fits("numpy-2.0.0-cp312-cp312-manylinux_2_17_aarch64.whl", "aarch64", "cp311")
    assert wheel_fits("protobuf-5.0-cp38-abi3-manylinux2014_aarch64.whl", "aarch64", "cp311")
    assert wheel_fits("rich-13.0-py3-none-any.whl", "armv7l", "cp310")


def test_a_wheelhouse_folder_that_is_missing_or_holds_no_wheels_is_one_line_each(tmp_path):
    """A mistyped --wheelhouse is told as missing, not as a folder without wheels; both before any device is asked."""
    from edgetransfer.bench.remote import plan_devices
    from edgetransfer.errors import UsageError

    with pytest.raises(UsageError, match=r"--wheelhouse .*wheelz: no such folder"):
        plan_devices("ssh://me@127.0.0.1", None, wheelhouse=tmp_path / "wheelz")
    with pytest.raises(UsageError, match=r"--wheelhouse .*: no wheels \(\*\.whl\) there"):
        plan_devices("ssh://me@127.0.0.1", None, wheelhouse=tmp_path)


def test_a_wheelhouse_without_a_runtime_requirement_is_refused_with_a_command_that_fetches_them(tmp_path):
    """A wheelhouse that lacks one of edgetransfer's runtime requirements is refused before the copy (pip on the
    device would fail with no internet), and the suggested command names every requirement with its version floor
    and a platform tag recent onnxruntime wheels have (manylinux2014 would find none since 1.25)."""
    from edgetransfer.bench.targets import DeviceError, check_wheelhouse, runtime_requirements

    (tmp_path / "rich-13.0-py3-none-any.whl").write_bytes(b"")
    with pytest.raises(DeviceError) as caught:
        check_wheelhouse(tmp_path, "x86_64", "cp311")
    message = str(caught.value)
    assert "for numpy, onnxruntime, pillow, pydantic, typer;" in message and "rich," not in message
    for name in (
        "numpy-2.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        "Pillow-11.3-cp311-cp311-manylinux_2_28_x86_64.whl",
    ):
        (tmp_path / name).write_bytes(b"")
    for name in ("onnxruntime-1.25-cp311-cp311-manylinux_2_28_x86_64.whl", "typer-0.12-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "pydantic-2.6-py3-none-any.whl").write_bytes(b"")
    check_wheelhouse(tmp_path, "x86_64", "cp311")  # every requirement there (Pillow's capital too): accepted
    # both tags: with manylinux_2_28 alone pip found no pydantic-core (manylinux2014 only): a new user's trial
    assert "--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --python-version 3.11" in message
    assert '"onnxruntime>=1.25"' in message and all(f'"{r}"' in message for r in runtime_requirements("3.11"))
    assert '"onnx>=' not in message  # Python 3.10's own requirements are not asked of a 3.11 device
    # a Python 3.10 device (Ubuntu 22.04, JetPack 6): onnxruntime 1.23 is its last, and onnx checks the paths
    older = runtime_requirements("3.10")
    assert "onnxruntime>=1.20" in older and "onnx>=1.21" in older and "onnxruntime>=1.25" not in older
    with pytest.raises(DeviceError, match="fits it for numpy, onnx, onnxruntime, pillow;") as caught:  # cp311 wheels
        check_wheelhouse(tmp_path, "x86_64", "cp310")
    assert "--python-version 3.10" in str(caught.value) and '"onnxruntime>=1.20"' in str(caught.value)


def test_a_changed_host_key_names_the_file_and_the_command_that_forgets_it(tmp_path):
    from edgetransfer.bench.targets import Ssh, parse_address, resolve

    device = resolve("ssh://pi@10.0.0.7:2222")[0]
    assert device.target == parse_address("ssh://pi@10.0.0.7:2222")
    line = Ssh(device, tmp_path / "known_hosts").explain(255, "Host key verification failed.\n")
    assert f"recorded in {tmp_path / 'known_hosts'}" in line
    assert f"ssh-keygen -R '[10.0.0.7]:2222' -f '{tmp_path / 'known_hosts'}'" in line
    # --known-hosts FILE without the device's key: not "changed", and no ssh-keygen -R that would do nothing
    strict = Ssh(device, tmp_path / "pinned", strict=True)
    said = (
        "No ED25519 host key is known for [10.0.0.7]:2222 and you have requested strict checking.\n"
        "Host key verification failed.\n"
    )
    line = strict.explain(255, said)
    assert (
        line.startswith(f"no host key for [10.0.0.7]:2222 in {tmp_path / 'pinned'}") and "ssh-keyscan -p 2222" in line
    )
    assert "~/.ssh/known_hosts" not in strict.explain(255, "Host key verification failed.\n")
    # a key file ssh will not use (too open, or the .pub given): its reason, not "check the user and the key"
    too_open = 'Load key "/k/user": bad permissions\nroot@10.0.0.7: Permission denied (publickey).\n'
    assert (
        Ssh(device, tmp_path / "kh")
        .explain(255, too_open)
        .startswith('authentication refused: Load key "/k/user": bad permissions (the key must be the private key')
    )


def test_known_hosts_given_trusts_that_file_alone(tmp_path):
    """--known-hosts FILE is documented to accept only the keys in that file; ~/.ssh/known_hosts was consulted too."""
    from edgetransfer.bench.targets import Ssh, resolve

    device = resolve("ssh://pi@10.0.0.7:2222")[0]
    strict = Ssh(device, tmp_path / "pinned", strict=True).options
    assert f'UserKnownHostsFile="{tmp_path / "pinned"}"' in strict and "StrictHostKeyChecking=yes" in strict
    relaxed = " ".join(Ssh(device, tmp_path / "known_hosts").options)
    assert ".ssh/known_hosts" in relaxed and "StrictHostKeyChecking=accept-new" in relaxed


def test_a_device_without_vnni_is_warned_about_eight_bit_int8_weights():
    """An x86 device without VNNI sums uint8 x int8 products in 16 bits: the run's 8-bit int8 weights can overflow
    there, so bench --on says so for such a device (not for one with VNNI, an ARM board, or 7-bit weights)."""
    from edgetransfer.bench.report import overflow_lines

    def device(name, arch, isa, variant="int8"):
        return {"target": name, "device": {"arch": arch, "isa": isa}, "document": {"results": [{"variant": variant}]}}

    document = {
        "devices": [
            device("old", "x86_64", ["avx2"]),
            device("new", "x86_64", ["avx2", "avx512_vnni"]),
            device("pi", "aarch64", []),
            device("fp32only", "x86_64", ["avx2"], variant="fp32"),
            {"target": "down", "error": "unreachable"},
        ]
    }
    lines = overflow_lines(document, 8)
    assert len(lines) == 1 and lines[0].startswith("warning: old is x86 without VNNI")
    assert "--int8-weights 7bit" in lines[0]
    assert overflow_lines(document, None) == lines  # a card from before the option: its weights had 8 bits
    assert overflow_lines(document, 7) == []


def test_a_device_without_its_own_fp32_gets_accuracy_deltas_against_this_machines_reference():
    """With --variants int8 a device measures no fp32 of its own: its int8 rows are compared with this machine's
    reference, measured on the same images (the device gets a copy); a device that has its own deltas keeps them."""
    from edgetransfer.bench.command import fill_deltas

    reference = {"source": "ort-cpu fp32", "top1": 0.9926, "top5": 1.0, "k": 5}
    lone = {"results": [{"variant": "int8", "accuracy": {"top1": 0.9889, "top5": 1.0, "top1_delta_points": None}}]}
    fill_deltas(lone, reference)
    assert lone["results"][0]["accuracy"]["top1_delta_points"] == pytest.approx(-0.37)
    assert lone["results"][0]["accuracy"]["top5_delta_points"] == 0
    own = {"results": [{"variant": "int8", "accuracy": {"top1": 0.9, "top5": 1.0, "top1_delta_points": 0.5}}]}
    fill_deltas(own, reference)
    assert own["results"][0]["accuracy"]["top1_delta_points"] == 0.5
    fill_deltas(lone, None)  # nothing measured here to compare with: nothing invented


def test_old_runtimes_on_a_device_are_pruned_to_the_most_recently_used(tmp_path):
    """Each edgetransfer build installs a new runtime (~200 MB venv) on the device: after an install, all but the
    three most recently used are removed, and installs left unfinished hours ago, never one still being made; the
    command runs in the device's POSIX sh."""
    import os
    import time

    from edgetransfer.bench.remote import prune_command

    envs = tmp_path / "envs"
    names = [f"{n:016x}" for n in (5, 4, 3, 2, 1)]  # edgetransfer's names: 16 hexadecimal digits; the first newest
    for age, name in enumerate(names):
        (envs / name / "bin").mkdir(parents=True)
        os.utime(envs / name, (1_000_000 - age * 100, 1_000_000 - age * 100))
    partial = f"{9:016x}.partial-123"
    (envs / partial).mkdir()  # another bench's install under way (made a minute ago): never touched
    os.utime(envs / partial, (time.time() - 60, time.time() - 60))
    left = f"{8:016x}.partial-77"  # an install a dropped connection left (~200 MB), hours old: it was never swept
    (envs / left / "bin").mkdir(parents=True)
    os.utime(envs / left, (1, 1))
    # a user's own folders where --remote-dir pointed (~): 'removed 3 folder(s) of earlier benches' took them
    for mine in ("myenv1", "photos", "deadbeef", "myenv.partial-1"):
        (envs / mine).mkdir()
        os.utime(envs / mine, (1, 1))
    done = subprocess.run(["sh", "-c", prune_command(str(envs))], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "3"
    assert sorted(p.name for p in envs.iterdir()) == sorted(
        [*names[:3], partial, "myenv1", "photos", "deadbeef", "myenv.partial-1"]
    )
    missing = subprocess.run(["sh", "-c", prune_command(str(tmp_path / "none"))], capture_output=True, text=True)
    assert missing.returncode == 0 and missing.stdout.strip() == "0"


def test_a_python_without_ensurepip_is_said_before_anything_is_copied(tmp_path, monkeypatch):
    """Debian's and Ubuntu's Python without python3-venv: 'python3 -m venv' failed on the device with its advice on
    stdout, and the error read 'installing the runtime in a venv failed: exit status 1' (a new user's trial)."""
    from types import SimpleNamespace

    from edgetransfer.bench.remote import DeviceBench
    from edgetransfer.bench.targets import DeviceError

    wheel = tmp_path / "edgetransfer-0-py3-none-any.whl"
    wheel.write_bytes(b"wheel")
    device = SimpleNamespace(target=SimpleNamespace(python="python3"), python_given=False, label="cam1")
    ran = []
    session = DeviceBench(
        device, SimpleNamespace(run=lambda *a, **k: ran.append(a)), wheel=wheel, wheelhouse=None, remote_dir=None
    )
    probe = {"root": "/r", "arch": "x86_64", "python": "/usr/bin/python3", "version": "3.11.2", "tag": "cp311"}
    monkeypatch.setattr(session, "_probe", lambda: probe)
    with pytest.raises(DeviceError, match=r"cannot make a venv \(no ensurepip module\): on Debian or Ubuntu, apt inst"):
        session.prepare(None, None)
    assert ran == []  # nothing run or copied after the probe


def test_the_venv_is_made_in_a_remote_folder_whose_name_the_shell_would_read(tmp_path):
    """The venv's staging folder was inside double quotes: a --remote-dir holding $(...) ran it on the device (a new
    user's trial). Made with the device's sh, the folder with a quote, a space, $(...) and a backtick is made as
    named, nothing runs, and a failed step removes the staging folder."""
    from types import SimpleNamespace

    from edgetransfer.bench.remote import DeviceBench

    wheel = tmp_path / "edgetransfer-0-py3-none-any.whl"
    wheel.write_bytes(b"wheel")
    root = tmp_path / "it's a $(touch PWNED) `touch PWNED2`"
    scripts = []
    ssh = SimpleNamespace(run=lambda script, **k: scripts.append(script))
    device = SimpleNamespace(target=SimpleNamespace(python="python3"), python_given=False, label="cam1")
    session = DeviceBench(device, ssh, wheel=wheel, wheelhouse=None, remote_dir=None)
    python = tmp_path / "python3"  # makes the venv's folder, then fails: the staging folder must go
    python.write_text('#!/bin/sh\nmkdir -p "$3" && echo "made $3" >&2\nexit 1\n')
    python.chmod(0o755)
    session.root, session.python = str(root), str(python)
    session._make_venv()
    done = subprocess.run(["sh", "-c", scripts[0]], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode != 0 and f"made {root}/envs/{session.env}.partial-" in done.stderr, done.stderr
    assert not list(tmp_path.glob("PWNED*")) and (root / "envs").is_dir() and list((root / "envs").iterdir()) == []
