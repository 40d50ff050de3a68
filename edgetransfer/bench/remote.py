"""``bench --on``: measure a run's models on devices reached over SSH, beside the local measurement.

For each device: probe it (architecture, Python, free space), copy what it lacks (a runtime-only wheel of this
edgetransfer, ``--wheelhouse`` wheels, the model files and the accuracy images, each checked by sha256 and skipped
when already there, each landing through a staging folder), install the runtime (a venv, or the target's own
``python`` used as it is), then run the same measuring code as a local bench there
(:mod:`~edgetransfer.bench.remote_worker`), each model in a fresh process, with the torch-free backends. A device
that fails is one line and exit 2; the others are still measured and reported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from edgetransfer import console
from edgetransfer.bench import remote_worker
from edgetransfer.bench.config import VARIANTS, BenchConfig
from edgetransfer.bench.gate import GateConfig, GateResult, check
from edgetransfer.bench.schema import validate_document
from edgetransfer.bench.targets import (
    CONNECT_TIMEOUT,
    Device,
    DeviceError,
    Ssh,
    check_wheelhouse,
    quote,
    runtime_wheel,
)
from edgetransfer.errors import EdgeTransferError
from edgetransfer.rundir import CARD, RunDir, sha256_file

RUNTIME_MODULES = ("numpy", "onnxruntime", "PIL", "pydantic", "typer", "rich")
MIN_PYTHON = (3, 10)
INSTALL_FACTOR = 4  # an installed venv takes about this many times its wheels' bytes (measured: 194 MB from 55)
PROBE = r"""
root={root}
mkdir -p "$root" 2>/dev/null
echo "arch=$(uname -m)"
echo "root=$(cd "$root" 2>/dev/null && pwd)"
echo "free_kb=$(df -Pk "$root" 2>/dev/null | awk 'NR==2 {{print $4}}')"
if command -v {python} >/dev/null 2>&1; then
  echo "python=$(command -v {python})"
  {python} -c 'import sys; print("version=%d.%d.%d" % sys.version_info[:3]); print("tag=cp%d%d" % sys.version_info[:2])'
  {python} -c 'import ensurepip, venv' >/dev/null 2>&1 && echo venv_module=ok
fi
test -x "$root/envs/{env}/bin/python" && echo venv=ready
test -f "$root/lib/{lib}/edgetransfer/__init__.py" && echo lib=ready
exit 0
"""


def _remote_path(path: str) -> str:
    """``path`` for the device's shell: quoted, with a leading ``~`` meaning the device's home (``--remote-dir=~/x``
    reaches us unexpanded, and quoting it made a folder named '~')."""
    if path == "~" or path.startswith("~/"):
        rest = path[2:]
        return '"$HOME"' + (f"/{quote(rest)}" if rest else "")
    return quote(path)


@dataclass
class DeviceOutcome:
    """What one device gave: its bench document (and gate result), or why it could not be measured."""

    device: Device
    document: dict | None = None
    gate: GateResult | None = None
    error: str | None = None

    @property
    def exit_code(self) -> int:
        if self.error or self.document is None or self.document["failed"]:
            return 2
        return self.gate.exit_code if self.gate else 0

    def entry(self) -> dict:
        """The device in ``bench.json["devices"]``."""
        document = dict(self.document) if self.document else None
        info = document.pop("device", None) if document else None
        return {
            "target": self.device.label,
            "address": self.device.address,
            "notes": self.device.target.notes,
            "device": info,
            "document": document,
            "error": self.error,
        }


class DeviceBench:
    """One device, prepared once (:meth:`prepare`), then measured as often as the gate asks (:meth:`measure`)."""

    def __init__(self, device: Device, ssh: Ssh, *, wheel: Path, wheelhouse: Path | None, remote_dir: str | None):
        self.device, self.ssh, self.wheel, self.wheelhouse = device, ssh, wheel, wheelhouse
        self.remote_dir = remote_dir
        self.python = device.target.python
        self.wheel_sha = sha256_file(wheel)
        self.env = hashlib.sha256(json.dumps([self.wheel_sha, self.python]).encode()).hexdigest()[:16]
        self.runs: dict[str, str] = {}  # local run path -> its copy on the device
        self.data: str | None = None
        self.backends: dict[str, str | None] = {}

    @property
    def label(self) -> str:
        return self.device.label

    def _probe(self) -> dict[str, str]:
        root = (
            _remote_path(self.remote_dir)
            if self.remote_dir
            else '"${XDG_CACHE_HOME:-$HOME/.cache}/edgetransfer/remote"'
        )
        script = PROBE.format(root=root, python=quote(self.python), env=self.env, lib=self.wheel_sha[:16])
        out = self.ssh.run(script, what="the probe", timeout=60)
        found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        if not found.get("root"):
            raise DeviceError(f"cannot make the folder {self.remote_dir or '~/.cache/edgetransfer/remote'} there")
        if not found.get("python"):
            raise DeviceError(f"no Python on the device: {self.python} not found (install Python 3.10 or later)")
        if not found.get("version"):  # it ran, and printed no version: /bin/true, a shell, a folder
            raise DeviceError(
                f"{found['python']} on the device is not a Python interpreter (it printed no version); give the path "
                "of Python 3.10 or later (python = ... in targets.toml, or --python)"
            )
        version = tuple(int(x) for x in found.get("version", "0.0.0").split("."))
        if version[:2] < MIN_PYTHON:
            raise DeviceError(f"{found['python']} on the device is Python {found.get('version')}; 3.10 or later needed")
        return found

    def _worker_command(self, op: str) -> str:
        """The device's shell command that runs the worker: exec'd, so that no shell waits on it. The worker ends
        its process group with SIGKILL (nothing it started runs on), itself included, and dash (Debian's /bin/sh,
        busybox's ash alike) then printed 'Killed' after every successful bench (a new user's trial; bash execs a
        last command itself)."""
        return f"cd {quote(self.root)} && exec {self._python_cmd()} -m edgetransfer.bench.remote_worker {op}"

    def _python_cmd(self) -> str:
        """The interpreter that runs edgetransfer there (with the unpacked wheel first on its path)."""
        if self.device.python_given:
            return f"env PYTHONPATH={quote(self.root + '/lib/' + self.wheel_sha[:16])} {quote(self.python)}"
        return quote(f"{self.root}/envs/{self.env}/bin/python")

    def _agent(self, *args: str, stdin=None, what: str) -> str:
        """Run an operation of remote_worker's standard-library part with the device's own python."""
        source = Path(remote_worker.__file__).read_text()
        return self.ssh.run(f"{quote(self.python)} -c {quote(source)} {quote(*args)}", stdin=stdin, what=what)

    def prepare(self, run: RunDir, config: BenchConfig, samples: tuple = ()) -> None:
        """Probe the device, install the runtime, copy the models and images it lacks: then :meth:`measure` runs."""
        found = self._probe()
        self.root = found["root"]
        venv = not self.device.python_given
        ready = found.get("venv" if venv else "lib")
        if venv and ready != "ready" and found.get("venv_module") != "ok":
            # Debian and Ubuntu ship ensurepip apart: 'python3 -m venv' failed there with its advice on stdout, and
            # the error said only "exit status 1" (a new user's trial)
            raise DeviceError(
                f"{found['python']} on the device cannot make a venv (no ensurepip module): on Debian or Ubuntu, "
                "apt install python3-venv there; or name a Python that has the runtime's modules (python = ... in "
                "targets.toml, or --python)"
            )
        if venv and self.wheelhouse and ready != "ready":
            check_wheelhouse(self.wheelhouse, found["arch"], found.get("tag", "cp3"))
        if not venv:
            self._check_modules()
        where = "a venv" if venv else f"a folder on {self.python}'s path"
        runtimes = f"{self.root}/envs" if venv else f"{self.root}/lib"
        runtime = f"{self.root}/envs/{self.env}" if venv else f"{self.root}/lib/{self.wheel_sha[:16]}"
        if ready == "ready":
            self._say(f"runtime: {where} made by an earlier bench of this edgetransfer (reused)")
            self.ssh.run(f"touch {quote(runtime)}", what="marking the runtime used")  # kept by the pruning below
        else:
            source = "the wheelhouse" if venv and self.wheelhouse else "the package index" if venv else "the wheel"
            self._say(f"runtime: installing this edgetransfer into {where} from {source} (kept for later benches)")
            wheels = [self.wheel] + (sorted(Path(self.wheelhouse).glob("*.whl")) if venv and self.wheelhouse else [])
            files = {f"{self.root}/wheels": {p.name: p for p in wheels}}
            factor = INSTALL_FACTOR if venv else 1
            self._send(files, int(found.get("free_kb") or 0) * 1024, sum(p.stat().st_size for p in wheels) * factor)
            if venv:
                self._make_venv()
            else:
                self._agent("unpack", f"{self.root}/wheels/{self.wheel.name}", runtime, what="unpacking the runtime")
            removed = self.ssh.run(prune_command(runtimes), what="removing old runtimes").strip()
            if removed not in ("", "0"):
                self._say(
                    f"removed {removed} runtime(s) of other edgetransfer builds or installs left unfinished (kept "
                    f"the {KEEP_RUNTIMES} most recently used)"
                )
        answer = self._worker("probe")
        self.info, self.backends = answer["device"], answer["backends"]
        chosen, _ = self._backends(config.backends)
        copies = self._copies(run, config, samples, chosen)
        self._send(copies, answer["free_bytes"], 0)
        # the models and images of earlier benches: a re-export is a new card, so a new folder each time; the most
        # recently used are kept (those of this bench just touched), the rest go, as old runtimes do
        try:
            removed = self.ssh.run(self._prune_script(copies), what="removing old copies").strip()
        except DeviceError as exc:  # the copy is done: measuring need not wait on housekeeping
            self._say(f"warning: {exc}; earlier benches' copies stay")
            removed = ""
        if removed not in ("", "0"):
            self._say(f"removed {removed} folder(s) of models or images of earlier benches")

    def _prune_script(self, copies: dict[str, dict[str, Path]]) -> str:
        """Shell code: mark this bench's folders used (``-c``: a folder another bench removed meanwhile is not made a
        file), remove all but the most recently used of each kind
        (:data:`KEEP_COPIES`), print how many went."""
        used = " ".join(quote(dest) for dest in copies)
        prune = "; ".join(f"( {prune_command(f'{self.root}/{kind}', keep)} )" for kind, keep in KEEP_COPIES.items())
        return f"touch -c {used}; {{ {prune}; }} | awk '{{n += $1}} END {{print n + 0}}'"

    def _send(self, copies: dict[str, dict[str, Path]], free: int, extra: int) -> None:
        """Copy to each folder on the device the files it lacks (by sha256), if they (and ``extra`` bytes) fit."""
        manifests = {dest: {rel: sha256_file(p) for rel, p in files.items()} for dest, files in copies.items()}
        with tempfile.TemporaryFile() as request:
            request.write(json.dumps(manifests).encode() + b"\n")
            request.seek(0)
            missing = json.loads(self._agent("have", stdin=request, what="checking what is there"))
        need = extra + sum(copies[dest][rel].stat().st_size for dest, rels in missing.items() for rel in rels)
        if free and free < need:
            raise DeviceError(
                f"the device's disk is full: {free / 1e6:.1f} MB free in {self.root}, about {need / 1e6:.0f} MB "
                "needed; free some space there or give --remote-dir on a larger disk"
            )
        count, held = sum(len(r) for r in missing.values()), sum(len(m) for m in manifests.values())
        self._say(
            f"copying {count} file(s) ({need - extra:,} bytes); {held - count} already there"
            if count
            else f"all {held} file(s) already there (checked by sha256)"
        )
        for dest, rels in missing.items():
            if rels:
                self._upload(dest, {r: manifests[dest][r] for r in rels}, copies[dest])

    def _say(self, line: str) -> None:
        console.err.print(f"[{self.label}] {line}", markup=False, highlight=False)

    def _check_modules(self) -> None:
        code = f"import importlib.util as u; print(','.join(m for m in {RUNTIME_MODULES!r} if not u.find_spec(m)))"
        lacking = self.ssh.run(f"{quote(self.python)} -c {quote(code)}", what="checking the python").strip()
        if lacking:
            names = lacking.replace("PIL", "pillow").replace(",", ", ")
            raise DeviceError(
                f"{self.python} on the device lacks {names}: install them there (pip install {names.replace(',', '')}"
                "), or give no python (in targets.toml or --python) so that a venv is made"
            )

    def _copies(self, run: RunDir, config: BenchConfig, samples: tuple, backends: list[str]) -> dict:
        """Per folder on the device, the local file of each relative path it must hold: each run's card and the
        files of the chosen backends (the reference run's too), and the accuracy images."""
        copies = {}
        runs = [run] + ([RunDir(Path(config.reference_run))] if config.reference_run else [])
        for one in runs:
            dest = f"{self.root}/runs/{sha256_file(one.file(CARD))[:16]}"
            self.runs[str(one.path)] = dest
            files = {CARD: one.file(CARD)}
            for rel in model_files(config, backends):
                if one.file(rel).is_file():
                    files[rel] = one.file(rel)
                    if rel.endswith(".xml") and one.file(rel).with_suffix(".bin").is_file():
                        files[rel[:-4] + ".bin"] = one.file(rel).with_suffix(".bin")
            copies[dest] = files
        if samples:
            labels = run.load_card().labels
            files = {f"{labels[s.label]}/{i:05d}-{Path(s.path).name}": Path(s.path) for i, s in enumerate(samples)}
            digest = hashlib.sha256(json.dumps(sorted((k, sha256_file(p)) for k, p in files.items())).encode())
            self.data = f"{self.root}/data/{digest.hexdigest()[:16]}"
            copies[self.data] = files
        return copies

    def _upload(self, dest: str, manifest: dict[str, str], files: dict[str, Path]) -> None:
        with tempfile.TemporaryFile() as buffer:
            buffer.write(json.dumps(manifest).encode() + b"\n")  # the manifest's line, then the tar
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                for rel in manifest:
                    tar.add(files[rel], arcname=rel)
            buffer.seek(0)
            self._agent("put", dest, stdin=buffer, what=f"copying {len(manifest)} file(s)")

    def _make_venv(self) -> None:
        final = f"{self.root}/envs/{self.env}"
        # quoted, the shell's pid after it: the folder was inside double quotes, so a --remote-dir holding $(...) ran
        # it on the device, and one holding '$' or '`' named other folders in different steps (a new user's trial)
        stage = quote(f"{final}.partial-") + "$$"
        index = f"--no-index --find-links {quote(self.root + '/wheels')}" if self.wheelhouse else ""
        script = (
            # (venv's own complaint, Debian's "apt install python3.X-venv" among it, goes to stdout: to stderr here)
            f"mkdir -p {quote(self.root + '/envs')} && {quote(self.python)} -m venv {stage} 1>&2 && "
            f"{stage}/bin/python -m pip install -q --no-compile --disable-pip-version-check {index} "
            f"{quote(self.root + '/wheels/' + self.wheel.name)} 1>&2 && mv {stage} {quote(final)} "
            f"|| {{ status=$?; rm -rf {stage}; exit $status; }}"
        )
        self.ssh.run(script, what="installing the runtime in a venv", timeout=1800)

    def _worker(self, op: str, request: dict | None = None) -> dict:
        """Run the installed worker; its answer (the line after MARK). Its stderr is shown as it comes."""
        command = self.ssh.command(self._worker_command(op))
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        tail: list[str] = []

        def relay() -> None:
            for raw in process.stderr:
                line = raw.decode(errors="replace").rstrip()
                if line.strip():
                    tail.append(line)
                    if op == "bench":
                        console.err.print(f"[{self.label}] {line}", markup=False, highlight=False)

        reader = threading.Thread(target=relay, daemon=True)
        reader.start()
        try:
            if request is not None:
                process.stdin.write((json.dumps(request) + "\n").encode())
                process.stdin.flush()
            out = process.stdout.read().decode(errors="replace")
            code = process.wait()
        except BrokenPipeError:
            out, code = "", process.wait()
        finally:
            reader.join(10)
            process.stdin.close()
        answer = next(
            (line[len(remote_worker.MARK) :] for line in out.splitlines() if line.startswith(remote_worker.MARK)), None
        )
        if answer is None:
            what = "the bench" if op == "bench" else "starting edgetransfer there"
            raise DeviceError(self.ssh.explain(code, "\n".join(tail[-5:]), what, started=op == "bench"))
        parsed = json.loads(answer)
        if parsed.get("error"):
            raise DeviceError(parsed["error"])
        return parsed

    def measure(self, run: RunDir, config: BenchConfig, *, write: bool = False) -> dict:
        """The device's bench document of ``run`` (the gate's ``measure``): the same settings, the device's
        torch-free backends, its copy of the models and images."""
        chosen, unavailable = self._backends(config.backends)
        settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "profile"}
        settings.update(backends=chosen, reference_run=None, data=self.data if config.accuracy else None)
        settings["threads"] = self.device.target.threads or config.threads
        request = {"run": self.runs[str(run.path)], "settings": settings}
        if config.reference_run:
            request["reference"] = self.runs[str(RunDir(Path(config.reference_run)).path)]
        document = self._worker("bench", request)["document"]
        document = validate_document(document, f"the bench document from {self.label}")
        if config.reference_run and document.get("reference"):  # named as the user gave it (the gate's "against the
            # reference run ..." named the device's copy, a folder under the remote directory); the copy kept beside
            device_copy = document["reference"]["run"]
            document["reference"] = {
                **document["reference"],
                "run": str(RunDir(Path(config.reference_run)).path),
                "device_run": device_copy,
            }
        document["unavailable"] = unavailable + document["unavailable"]
        return document

    def _backends(self, names: tuple[str, ...]) -> tuple[list[str], list[dict]]:
        wanted = [n for n, why in self.backends.items() if why is None] if tuple(names) == ("all",) else list(names)
        chosen, unavailable = [], []
        for name in dict.fromkeys(wanted):
            if name.startswith("torch-"):
                why = "a device runs the exported models; torch is not part of its runtime install"
            else:
                why = self.backends.get(name, "not a backend the device's edgetransfer knows")
            if why is None:
                chosen.append(name)
            else:
                unavailable.append(
                    {"backend": name, "reason": f"on {self.label}: {why}", "install": "", "needs_gpu": False}
                )
        if not chosen:
            asked = ", ".join(dict.fromkeys(wanted))
            raise DeviceError(f"none of the backends asked for ({asked}) runs there: {unavailable[0]['reason']}")
        return chosen, unavailable


KEEP_RUNTIMES = 3  # runtimes (a venv is ~200 MB) of edgetransfer builds kept on a device, the most recently used
KEEP_COPIES = {"runs": 8, "data": 4}  # models of runs, accuracy image sets: the most recently used kept on a device


STALE_PARTIAL_MINUTES = 180  # a staging folder (NAME.partial-PID) untouched this long was left by a dropped
# connection or a killed install (an install's ssh command times out after 30 minutes): ~200 MB each, never swept


def prune_command(folder: str, keep: int = KEEP_RUNTIMES) -> str:
    """Shell code that removes all but the ``keep`` most recently used entries of ``folder`` on the device (the
    runtimes of other edgetransfer builds: each build is a new one), and the staging folders (``.partial-PID``) of
    installs and transfers cut off more than :data:`STALE_PARTIAL_MINUTES` ago, never one under way, and prints how
    many it removed. Only the entries edgetransfer names (16 hexadecimal digits) are looked at: with ``--remote-dir
    ~`` a user's own ~/data/photos1 and ~/envs/myenv went as "earlier benches" (a new user's trial)."""
    hex16 = "[0-9a-f]" * 16
    return (
        f"cd {quote(folder)} 2>/dev/null || {{ echo 0; exit 0; }}; "
        f"{{ ls -1t | grep -xE '[0-9a-f]{{16}}' | tail -n +{keep + 1}; "
        f"find . -maxdepth 1 -name '{hex16}.partial-*' -mmin +{STALE_PARTIAL_MINUTES} | sed 's|^[.]/||'; }} | "
        'while IFS= read -r old; do rm -rf -- "$old" && echo "$old"; done | wc -l'
    )


def model_files(config: BenchConfig, names: list[str]) -> list[str]:
    """The files of the variants of backends ``names`` that this bench may measure."""
    from edgetransfer import backends

    wanted = config.variants or VARIANTS
    files = []
    for name in names:
        files += [rel for variant, rel in backends.get(name).variants.items() if variant in wanted]
    return list(dict.fromkeys(files))


def baseline_of(baseline: dict | None, label: str, name: str) -> dict | None:
    """The device's document inside a baseline saved with ``--on``."""
    if baseline is None:
        return None
    for entry in baseline.get("devices") or []:
        if entry.get("target") == label and entry.get("document"):
            return validate_document({**entry["document"], "device": None}, f"{name} ({label})")
    raise DeviceError(
        f"the baseline {name} holds no measurement on {label}: save one with --on {label} --save-baseline"
    )


def preflight(
    devices: list[tuple[Device, Ssh]], baseline: dict | None = None, baseline_name: str | None = None
) -> dict[str, str]:
    """Each device's error found in seconds, before this machine measures for minutes: a baseline that holds no
    measurement on it, or a device that cannot be reached or refuses the key (one ``ssh`` command each). By label;
    the others are measured after this machine, as before."""
    errors = {}
    for device, ssh in devices:
        try:
            baseline_of(baseline, device.label, baseline_name or "baseline")
            ssh.run("true", timeout=CONNECT_TIMEOUT + 30, what="connecting")
        except EdgeTransferError as exc:
            errors[device.label] = str(exc)
            console.err.print(f"[{device.label}] {exc} (this machine is still measured)", markup=False)
    return errors


def bench_devices(
    run: RunDir,
    config: BenchConfig,
    devices: list[tuple[Device, Ssh]],
    *,
    known_errors: dict[str, str] | None = None,
    gate: GateConfig | None = None,
    baseline: dict | None = None,
    baseline_name: str | None = None,
    wheelhouse: Path | None = None,
    remote_dir: str | None = None,
) -> list[DeviceOutcome]:
    """Measure ``run`` on each device in turn (with the gate when ``gate`` is given); a device that fails is an
    outcome with its error, and the next one is measured."""
    from edgetransfer.bench.runner import _labelled

    outcomes = []
    with tempfile.TemporaryDirectory(prefix="edgetransfer-wheel-") as folder:
        wheel = runtime_wheel(Path(folder))
        images = _labelled(run, run.load_card(), config)[0] if config.accuracy else ()
        for device, ssh in devices:
            outcome = DeviceOutcome(device)
            if device.label in (known_errors or {}):  # found by preflight: not contacted again
                outcome.error = known_errors[device.label]
                outcomes.append(outcome)
                continue
            try:
                console.err.print(f"[{device.label}] preparing {device.address}...", markup=False)
                session = DeviceBench(device, ssh, wheel=wheel, wheelhouse=wheelhouse, remote_dir=remote_dir)
                session.prepare(run, config, images)
                console.err.print(
                    f"[{device.label}] measuring on {session.info['cpu']} ({session.info['arch']})", markup=False
                )
                if gate is not None:
                    base = baseline_of(baseline, device.label, baseline_name or "baseline")
                    name = f"{baseline_name} ({device.label})" if baseline_name else None
                    outcome.document, outcome.gate = check(
                        run, config, gate, base, baseline_name=name, measure=session.measure
                    )
                else:
                    outcome.document = session.measure(run, config)
            except EdgeTransferError as exc:
                outcome.error = str(exc)
            outcomes.append(outcome)
    return outcomes


def plan_devices(
    spec: str,
    run: RunDir,
    *,
    targets: Path | None = None,
    python: str | None = None,
    known_hosts: Path | None = None,
    wheelhouse: Path | None = None,
) -> list[tuple[Device, Ssh]]:
    """The devices of ``--on`` with their SSH clients, checked before anything is measured. Host keys: those in
    ``known_hosts`` only (strict), else first seen ones recorded in the run's own ``known_hosts``."""
    from edgetransfer.bench.targets import resolve
    from edgetransfer.errors import UsageError

    if wheelhouse is not None and not Path(wheelhouse).is_dir():
        raise UsageError(f"--wheelhouse {wheelhouse}: no such folder; make it with pip download -d DIR ...")
    if wheelhouse is not None and not any(Path(wheelhouse).glob("*.whl")):
        raise UsageError(f"--wheelhouse {wheelhouse}: no wheels (*.whl) there; make it with pip download -d DIR ...")
    if known_hosts is not None and not Path(known_hosts).is_file():
        raise UsageError(f"--known-hosts {known_hosts}: file not found")
    hosts = Path(known_hosts) if known_hosts else run.file("known_hosts")
    return [(d, Ssh(d, hosts, strict=known_hosts is not None)) for d in resolve(spec, targets, python=python)]
