"""Where ``bench --on`` measures and what it sends: devices named by ``ssh://user@host[:port]`` or by a
``targets.toml``, the system OpenSSH client that reaches them (:class:`Ssh`), and the runtime wheel (and the
wheelhouse's fit to a device's architecture)."""

from __future__ import annotations

import base64
import difflib
import hashlib
import re
import shlex
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edgetransfer.errors import EdgeTransferError, UsageError
from edgetransfer.schemas import Target, load_targets, validate

CONNECT_TIMEOUT = 10  # seconds to set up a connection
ALIVE = ("-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3")  # a dead link is noticed in ~15 s


class DeviceError(EdgeTransferError):
    """One device cannot be measured (unreachable, refused, lacking something, full, gone); the others go on."""

    exit_code = 2


@dataclass(frozen=True)
class Device:
    """A target as ``bench --on`` uses it: its label in reports, its address, and whether its ``python`` was given
    (then it is used as it is; otherwise a venv is made on the device)."""

    label: str
    target: Target

    @property
    def address(self) -> str:
        t = self.target
        host = f"[{t.host}]" if ":" in t.host and not t.host.startswith("[") else t.host
        return f"ssh://{t.user + '@' if t.user else ''}{host}{'' if t.port == 22 else f':{t.port}'}"

    @property
    def python_given(self) -> bool:
        return "python" in self.target.model_fields_set


def parse_address(text: str) -> Target:
    """``ssh://user@host[:port]`` -> a :class:`Target` named after it; anything else is one :class:`UsageError`."""
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"--on {text}: the port is not a number from 1 to 65535") from None
    if port == 0:
        raise UsageError(f"--on {text}: the port is not a number from 1 to 65535")
    if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.password:
        raise UsageError(f"--on {text}: expected ssh://user@host[:port] or a name from the targets file")
    values = {"host": parts.hostname, "port": port or 22, "user": parts.username}
    values["name"] = re.sub(r"[^A-Za-z0-9_.-]", "_", parts.hostname + (f"_{port}" if port else ""))[:64]
    return validate(Target, {k: v for k, v in values.items() if v is not None}, f"--on {text}", error=UsageError)


def resolve(spec: str, targets_file: Path | None = None, *, python: str | None = None) -> list[Device]:
    """The devices of ``--on a,b`` (``ssh://`` addresses, or names from ``targets_file``, by default
    ``./targets.toml``); ``python`` (``--python``) replaces every target's interpreter."""
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise UsageError("--on is empty; give ssh://user@host[:port] or names from a targets file")
    known: dict[str, Target] | None = None
    devices: list[Device] = []
    for item in items:
        if "://" in item:
            target, label = parse_address(item), item
        else:
            if known is None:
                path = Path(targets_file) if targets_file else Path("targets.toml")
                if targets_file is None and not path.is_file():
                    raise UsageError(f"--on {item}: not an ssh:// address, and there is no targets.toml here")
                known = {name: _keyed(t, path) for name, t in load_targets(path).items()}
            if item not in known:
                close = difflib.get_close_matches(item, list(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
                raise UsageError(f"--on {item}: no target of that name in the targets file{hint}")
            target, label = known[item], item
        if python:
            target = target.model_copy(update={"python": python})
            target.model_fields_set.add("python")
        devices.append(Device(label, target))
    labels = [d.label for d in devices]
    if len(set(labels)) != len(labels):
        raise UsageError(f"--on names a device twice: {', '.join(sorted({x for x in labels if labels.count(x) > 1}))}")
    return devices


def _keyed(target: Target, source: Path) -> Target:
    """A target whose ``key`` is a path made absolute (relative to the targets file) and checked to exist."""
    if target.key is None:
        return target
    key = Path(target.key).expanduser()
    key = key if key.is_absolute() else source.parent / key
    if not key.is_file():
        raise UsageError(f"{source}: target {target.name}: key file not found: {key}")
    return target.model_copy(update={"key": str(key)})


class Ssh:
    """The system ``ssh`` client in batch mode (never a password prompt): the user's own ssh config, agent and
    jump hosts work as they do for ``ssh`` itself. A host key seen for the first time is recorded in
    ``known_hosts`` (``accept-new``); with ``strict`` only keys already there are accepted."""

    def __init__(self, device: Device, known_hosts: Path, *, strict: bool = False) -> None:
        if shutil.which("ssh") is None:
            raise UsageError("bench --on needs the OpenSSH client (ssh): apt install openssh-client")
        t, self.device = device.target, device
        # strict (--known-hosts FILE): that file's keys alone; else the user's own known_hosts is consulted too
        trusted = (known_hosts,) if strict else (known_hosts, Path("~/.ssh/known_hosts").expanduser())
        files = " ".join(f'"{p}"' for p in trusted)
        self.options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}", *ALIVE]
        self.options += ["-o", f"UserKnownHostsFile={files}"]
        self.options += ["-o", "GlobalKnownHostsFile=/dev/null"] if strict else []  # not /etc/ssh's either
        self.options += ["-o", f"StrictHostKeyChecking={'yes' if strict else 'accept-new'}", "-o", "LogLevel=ERROR"]
        self.options += ["-p", str(t.port)] + (["-i", t.key, "-o", "IdentitiesOnly=yes"] if t.key else [])
        self.options += ["-l", t.user] if t.user else []
        self.known_hosts, self.strict = known_hosts, strict

    def command(self, remote: str) -> list[str]:
        """The ``ssh`` command line that runs the shell command ``remote`` on the device."""
        return ["ssh", *self.options, self.device.target.host, "--", remote]

    def run(self, remote: str, *, stdin=None, timeout: float = 600, what: str = "") -> str:
        """Run ``remote``; its stdout, or a :class:`DeviceError` that says what went wrong in one line."""
        try:
            done = subprocess.run(self.command(remote), stdin=stdin, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{what or 'a command'} did not finish in {timeout:.0f} s") from None
        if done.returncode:
            raise DeviceError(self.explain(done.returncode, done.stderr.decode(errors="replace"), what))
        return done.stdout.decode(errors="replace")

    def explain(self, code: int, stderr: str, what: str = "", *, started: bool = False) -> str:
        """One line for a failed ssh command: unreachable, refused, another host key, the link lost, or what the
        command itself said."""
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {code}"
        if code == 255:
            unusable = next((line for line in lines if line.startswith("Load key")), None)
            refused = "Permission denied" in stderr
            if unusable is not None and refused and ("bad permissions" in unusable or "invalid format" in unusable):
                # ssh skipped the key file (a public key, or one others may read) and then was refused
                return (
                    f"authentication refused: {unusable} (the key must be the private key, readable by you alone: "
                    "chmod 600 KEY)"
                )
            if "Permission denied" in stderr or "Too many authentication failures" in stderr:
                return f"authentication refused ({last}); check the user and the key"
            t = self.device.target
            entry = t.host if t.port == 22 else f"[{t.host}]:{t.port}"
            if "host key is known for" in stderr:  # strict checking, and no key for it in the file at all
                return (
                    f"no host key for {entry} in {self.known_hosts} (--known-hosts accepts only the keys in that "
                    f"file): add the device's, e.g. ssh-keyscan -p {t.port} {t.host} >> '{self.known_hosts}' (check "
                    "its fingerprint first)"
                )
            if "Host key verification failed" in stderr or "IDENTIFICATION HAS CHANGED" in stderr:
                also = "" if self.strict else " (or ~/.ssh/known_hosts)"
                forget = " (and, if it is there, ssh-keygen -R with no -f for ~/.ssh/known_hosts)"
                forget = "" if self.strict else forget
                return (
                    f"its host key is not the one recorded in {self.known_hosts}{also}; if the device was replaced, "
                    f"remove the old key: ssh-keygen -R '{entry}' -f '{self.known_hosts}'{forget}"
                )
            unreachable = ("Connection refused", "timed out", "No route to host", "Could not resolve", "unreachable")
            if not started and any(s in stderr for s in unreachable):
                return f"unreachable: {last}"
            return f"the connection was lost{' during ' + what if what else ''}: {last}"
        if "ENOSPC" in stderr or "No space left on device" in stderr:
            return f"the device's disk is full: {last}"
        return f"{what + ' failed' if what else 'the device said'}: {last}"


def quote(*words: str) -> str:
    return " ".join(shlex.quote(w) for w in words)


def runtime_wheel(folder: Path) -> Path:
    """A wheel of the edgetransfer installed here, zipped from its files (no build backend, no network): its
    dependencies are the base install's, the torch-free runtime. The same code gives the same bytes (fixed file
    times), so a device that has it already is not sent it again."""
    from importlib import metadata

    import edgetransfer

    package = Path(edgetransfer.__file__).parent
    found = list(metadata.distributions(name="edgetransfer"))
    dist = next((d for d in found if d.read_text("METADATA")), found[0])  # a dist-info before a stale egg-info
    info = f"edgetransfer-{edgetransfer.__version__}.dist-info"
    head = ["Metadata-Version: 2.1", "Name: edgetransfer", f"Version: {edgetransfer.__version__}"]
    head += [f"Requires-Python: {dist.metadata['Requires-Python']}"] if dist.metadata["Requires-Python"] else []
    base = _requirements(package) or [r for r in dist.requires or [] if "extra ==" not in r]  # runtime only
    head += [f"Requires-Dist: {requirement}" for requirement in base]
    texts = {
        f"{info}/METADATA": "\n".join(head) + "\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: edgetransfer\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": dist.read_text("entry_points.txt") or "",
    }
    files = {
        f"edgetransfer/{p.relative_to(package).as_posix()}": p.read_bytes()
        for p in sorted(package.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    files |= {name: text.encode() for name, text in texts.items()}
    record = [f"{n},sha256={_b64(b)},{len(b)}" for n, b in files.items()] + [f"{info}/RECORD,,"]
    path = Path(folder) / f"edgetransfer-{edgetransfer.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in [*files.items(), (f"{info}/RECORD", ("\n".join(record) + "\n").encode())]:
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, data, zipfile.ZIP_DEFLATED)
    return path


def _requirements(package: Path) -> list[str]:
    """The base install's dependencies from pyproject.toml, when edgetransfer runs from its source tree (installed
    metadata lags behind an edited pyproject.toml until the next install); [] elsewhere."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    pyproject = package.parent / "pyproject.toml"
    if not pyproject.is_file():
        return []
    project = tomllib.loads(pyproject.read_text()).get("project", {})
    return list(project.get("dependencies", [])) if project.get("name") == "edgetransfer" else []


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_fits(name: str, arch: str, tag: str) -> bool:
    """Whether a wheel file (by its name's tags) installs on a Linux device of ``arch`` with CPython ``tag``."""
    parts = name[:-4].split("-")
    python, abi, platform = parts[-3], parts[-2], parts[-1]
    pythons = python.split(".")
    if platform != "any" and not any(p.endswith(f"_{arch}") for p in platform.split(".")):
        return False
    if "abi3" in abi.split("."):
        return any(p.startswith("cp3") and int(p[3:] or 0) <= int(tag[3:]) for p in pythons)
    return any(p in ("py3", "py2.py3", tag) or p.startswith("py3") for p in pythons) or tag in pythons


def runtime_requirements(python: str | None = None) -> list[str]:
    """The runtime install's requirements (``numpy>=1.26`` ...), from where :func:`runtime_wheel` takes them:
    pyproject.toml when edgetransfer runs from its source tree, else the installed metadata. With ``python``
    (``"3.10"``), those whose environment marker holds for that Python, without the marker."""
    from importlib.metadata import PackageNotFoundError, requires

    import edgetransfer

    found = _requirements(Path(edgetransfer.__file__).parent)
    if not found:
        try:
            found = [r for r in requires("edgetransfer") or [] if "extra ==" not in r]
        except PackageNotFoundError:  # run from a source tree that was never installed
            return []
    if python is not None and re.fullmatch(r"\d+\.\d+", python):
        from packaging.markers import Marker  # onnxruntime's dependency

        env = {"python_version": python, "python_full_version": f"{python}.0"}
        found = [r for r in found if ";" not in r or Marker(r.split(";", 1)[1]).evaluate(env)]
    return [r.split(";")[0].replace(" ", "") for r in found]


def _project(requirement: str) -> str:
    """A requirement's or a wheel file's project name, normalised as PEP 503 says (``Zope.Interface`` ->
    ``zope-interface``)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0]).lower()


MANYLINUX2014 = ("x86_64", "i686", "aarch64", "armv7l", "ppc64le", "ppc64", "s390x")  # PEP 599's architectures


def check_wheelhouse(wheelhouse: Path, arch: str, tag: str) -> None:
    """Refuse a device for which some project of the wheelhouse has no wheel that fits (another architecture or
    Python), or that lacks one of edgetransfer's own runtime requirements: pip there would fail after the copy,
    with no internet to fall back on. (Their own dependencies are pip's to resolve on the device.)"""
    projects: dict[str, bool] = {}
    for wheel in sorted(Path(wheelhouse).glob("*.whl")):
        project = _project(wheel.name.split("-")[0])
        projects[project] = projects.get(project, False) or wheel_fits(wheel.name, arch, tag)
    version = f"{tag[2]}.{tag[3:]}"
    needed = runtime_requirements(version)
    lacking = sorted({p for p, fits in projects.items() if not fits} | {_project(r) for r in needed} - set(projects))
    if lacking:
        wanted = " ".join(f'"{r}"' for r in needed) or "numpy pillow onnxruntime typer rich pydantic"
        older = f"--platform manylinux2014_{arch} " if arch in MANYLINUX2014 else ""
        raise DeviceError(
            f"the device is {arch} with CPython {version}: no wheel in {wheelhouse} fits it for "
            f"{', '.join(lacking)}; add them (with their dependencies) on a machine with internet: pip download "
            # (both tags: pydantic-core's wheels are manylinux2014 only, onnxruntime's since 1.25 manylinux_2_28;
            # pip does not widen one --platform to older tags, and the command with one failed: a new user's trial)
            f"--only-binary=:all: --platform manylinux_2_28_{arch} {older}--python-version {version} -d {wheelhouse} "
            f"{wanted}"
        )
