"""The device's side of ``bench --on``: file operations before edgetransfer is installed there, and the bench.

Two ways in. Before the runtime wheel is installed, this file's source is sent as ``python3 -c SOURCE OP ...``
and only the standard library is used (:func:`have`, :func:`put`, :func:`unpack`). Once it is installed,
``python -m edgetransfer.bench.remote_worker probe|bench`` runs the same measuring code as a local bench
(:func:`edgetransfer.bench.runner._bench`, each model in a fresh process) with the torch-free backends, and prints
the bench document as one JSON line after :data:`MARK`. Nothing here imports torch, onnx or openvino-dev.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
import tarfile

MARK = "EDGETRANSFER-REMOTE "  # the line that carries the result on stdout (libraries may print too)
TORCH_FREE = ("ort-cpu", "ort-cuda", "ort-trt", "ort-openvino", "openvino-cpu", "openvino-gpu")
ISA = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "avx_vnni")  # x86 flags
ISA += ("asimd", "asimddp", "asimdhp", "sve", "sve2", "i8mm", "bf16", "neon", "vfpv4")  # ARM features


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _fail(exc: OSError, what: str) -> None:
    """A write error as one line on stderr (the caller maps ``ENOSPC`` to 'the disk is full'), exit 3."""
    name = errno.errorcode.get(exc.errno or 0, "EIO")
    sys.stderr.write(f"{name}: {exc.strerror or exc} ({what})\n")
    sys.exit(3)


def have(dest: str, manifest: dict[str, str]) -> list[str]:
    """The files of ``manifest`` (relative path -> sha256) that ``dest`` lacks or holds with another content."""
    missing = []
    for rel, digest in manifest.items():
        path = os.path.join(dest, rel)
        if not (os.path.isfile(path) and _sha256(path) == digest):
            missing.append(rel)
    return missing


def put(dest: str, manifest: dict[str, str], stream) -> None:
    """Unpack a tar of ``manifest``'s files from ``stream`` into a staging folder beside ``dest``, check every
    sha256, then rename each into ``dest``: a transfer cut short or a full disk leaves ``dest`` as it was."""
    parent = os.path.dirname(dest.rstrip("/")) or "."
    stage = f"{dest.rstrip('/')}.partial-{os.getpid()}"
    try:
        os.makedirs(parent, exist_ok=True)
        for name in os.listdir(parent):  # what an earlier, interrupted transfer left
            if name.startswith(os.path.basename(dest.rstrip("/")) + ".partial-"):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        os.makedirs(stage)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(stage, filter="data")
            else:  # pragma: no cover - Python before 3.10.12: our own tar, made by the host
                tar.extractall(stage)
        for rel, digest in manifest.items():
            if _sha256(os.path.join(stage, rel)) != digest:
                sys.stderr.write(f"EBADMSG: {rel} arrived with another sha256 (the transfer was corrupted)\n")
                sys.exit(3)
        for rel in manifest:
            target = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(os.path.join(stage, rel), target)
    except OSError as exc:
        _fail(exc, f"writing {dest}")
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def unpack(wheel: str, dest: str) -> None:
    """Unzip a pure-Python wheel into ``dest`` (via a staging folder): the runtime for an interpreter used as it
    is, put on its PYTHONPATH."""
    import zipfile

    stage = f"{dest}.partial-{os.getpid()}"
    try:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(stage)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(stage, dest)
    except OSError as exc:
        _fail(exc, f"unpacking into {dest}")
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# --------------------------------------------------------------------------- with edgetransfer installed


def device_info() -> dict:
    """What the device is: architecture, OS, kernel, CPU, instruction-set extensions, cores, Python."""
    import platform

    from edgetransfer.machine import machine_info

    info = machine_info()
    os_name, features = platform.system(), set()
    try:
        with open("/etc/os-release") as fh:
            fields = dict(line.rstrip("\n").split("=", 1) for line in fh if "=" in line)
        os_name = fields.get("PRETTY_NAME", os_name).strip('"')
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    features |= set(value.split())
    except OSError:
        pass
    return {
        "arch": platform.machine(),
        "os": os_name,
        "kernel": f"{platform.system()} {platform.release()}",
        "cpu": info["cpu"],
        "cores": info["cores"],
        "isa": [f for f in ISA if f in features],
        "python": platform.python_version(),
    }


def backends_here() -> dict:
    """The torch-free backends: which are available on this device, and why the others are not."""
    from edgetransfer import backends

    found = {}
    for name in TORCH_FREE:
        backend = backends.get(name)
        found[name] = None if backend.is_available() else f"{backend.unavailable_reason()}; {backend.install_hint}"
    return found


def _request() -> dict:
    """The request: the first line on stdin, read from the descriptor (no Python file object: a library that
    forks, such as OpenVINO's telemetry, would deadlock on the lock of one held by the watcher)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(0, 1)
        if not chunk:
            break
        data += chunk
    return json.loads(data)


def _watch_stdin() -> None:
    """The host keeps our stdin open; when it closes (the connection dropped), stop every process of this bench."""
    import threading

    def watch() -> None:
        while os.read(0, 1 << 16):
            pass
        _stop_group()

    threading.Thread(target=watch, daemon=True).start()


_TMP: str | None = None  # this bench's temporary folder on the device (see _own_tmp)


def _own_tmp() -> None:
    """Put every temporary file of this bench (its own and its measuring processes') in one folder, which
    :func:`_stop_group` removes: a dropped connection ends the bench with ``os._exit``, past the with-blocks that
    would have removed them, and a device would collect one folder of images and models per dropped bench."""
    global _TMP
    import tempfile

    _TMP = tempfile.mkdtemp(prefix=f"edgetransfer-device-{os.getpid()}-")
    tempfile.tempdir = os.environ["TMPDIR"] = _TMP
    _sweep(os.path.dirname(_TMP))


def _sweep(parent: str) -> None:
    """Remove the temporary folders of earlier benches here whose process is gone without removing them (killed
    with SIGKILL, out of memory, the device lost power): ours (same user), named with a pid no process has."""
    import glob

    for folder in glob.glob(os.path.join(parent, "edgetransfer-device-*-*")):
        try:
            pid = int(os.path.basename(folder).split("-")[2])
            if pid == os.getpid() or os.stat(folder).st_uid != os.getuid():
                continue
            os.kill(pid, 0)  # raises when no such process exists
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, IndexError, OSError):  # not one of ours, or a live process (maybe another user's)
            continue


def _stop_group(code: int = 0) -> None:
    """End this process and every process it started (measuring processes, anything a library forked), so that
    none keeps the connection open or runs on after the bench; its temporary folder goes first."""
    import signal

    if _TMP:
        if "multiprocessing" in sys.modules:  # the measuring processes first: one could still create a file there
            for child in sys.modules["multiprocessing"].active_children():
                child.kill()
                child.join(1)
        shutil.rmtree(_TMP, ignore_errors=True)
    sys.stderr.flush()
    if os.getpgrp() == os.getpid():
        os.killpg(0, signal.SIGKILL)
    os._exit(code)


def bench(request: dict) -> dict:
    """Measure the device's copy of a run as ``request`` says: the bench document, with ``device`` added."""
    from pathlib import Path

    from edgetransfer.bench.config import BenchConfig
    from edgetransfer.bench.runner import _bench
    from edgetransfer.rundir import RunDir

    config = BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in request["settings"].items()})
    run = RunDir(Path(request["run"]))  # the device's copy holds the files measured, not the checkpoint
    reference = RunDir(Path(request["reference"])) if request.get("reference") else None
    with run.lock("bench"):
        document = _bench(run, config, reference, write=False)
    document["device"] = device_info()
    return document


def main(argv: list[str]) -> int:
    op = argv[0] if argv else ""
    # the manifests come on stdin, not as arguments: one argument of a command run over ssh is limited to 128 KiB
    # (Linux's MAX_ARG_STRLEN), which the names and sha256 of about 1,200 accuracy images passed
    if op == "have":
        manifests = json.loads(sys.stdin.buffer.readline())
        print(json.dumps({dest: have(dest, manifest) for dest, manifest in manifests.items()}))
    elif op == "put":  # stdin: the manifest as one JSON line, then the tar
        put(argv[1], json.loads(sys.stdin.buffer.readline()), sys.stdin.buffer)
    elif op == "unpack":
        unpack(argv[1], argv[2])
    elif op in ("probe", "bench"):
        from edgetransfer.errors import EdgeTransferError

        try:
            os.setpgrp()  # this process and what it starts: one group, stopped together (see _stop_group)
        except OSError:  # already a session leader: leads its group
            pass
        try:
            if op == "probe":
                free = shutil.disk_usage(".").free  # run in the device's folder for bench --on
                answer = {"device": device_info(), "backends": backends_here(), "free_bytes": free}
            else:
                _own_tmp()
                request = _request()
                _watch_stdin()
                answer = {"document": bench(request)}
        except EdgeTransferError as exc:
            answer = {"error": str(exc)}
        except BaseException:  # noqa: BLE001 - a bug: its traceback on stderr, and nothing left running
            import traceback

            traceback.print_exc()
            _stop_group(1)
        try:  # the host may be gone by now (a broken pipe): this bench's files and processes go all the same
            sys.stdout.flush()
            data = (MARK + json.dumps(answer) + "\n").encode()
            while data:
                data = data[os.write(1, data) :]
        finally:
            _stop_group()
    else:
        sys.stderr.write(f"unknown operation {op!r}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
