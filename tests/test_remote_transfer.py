"""bench --on's file transfer without an ssh server: a stand-in runs each remote command as sshd does (``sh -c
COMMAND``, one argument), so the limits of a real command line apply."""

from __future__ import annotations

import subprocess
from pathlib import Path

from edgetransfer.bench.config import BenchConfig
from edgetransfer.bench.remote import DeviceBench
from edgetransfer.bench.targets import Device, DeviceError
from edgetransfer.data import Sample
from edgetransfer.schemas import Target


class ShellSsh:
    """What sshd does with a command: execve of the user's shell with ["sh", "-c", COMMAND]."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def run(self, remote: str, *, stdin=None, timeout: float = 600, what: str = "") -> str:
        self.said.append(what)
        done = subprocess.run(["sh", "-c", remote], stdin=stdin, capture_output=True, timeout=timeout)
        if done.returncode:
            raise DeviceError(f"{what} failed: {done.stderr.decode()[-300:]}")
        return done.stdout.decode()


def test_thousands_of_accuracy_images_reach_the_device(trained_run, tmp_path):
    # the names and sha256 of every accuracy image went as one argument of the remote command: past 128 KiB (about
    # 1,200 images) Linux refused it ("Argument list too long") and bench --on failed on every device
    images = tmp_path / "images"
    images.mkdir()
    samples = []
    for i in range(1500):
        path = images / f"IMG_2024_camera_front_{i:05d}.jpg"
        path.write_bytes(i.to_bytes(4, "little") * 8)
        samples.append(Sample(path, i % 2))
    ssh = ShellSsh()
    card = trained_run.file("card.json")
    bench = DeviceBench(
        Device("cam", Target(name="cam", host="cam")), ssh, wheel=card, wheelhouse=None, remote_dir=None
    )
    bench.root = str(tmp_path / "device")
    copies = bench._copies(trained_run, BenchConfig(), tuple(samples), ["ort-cpu"])
    bench._send(copies, 0, 0)
    arrived = sorted(Path(bench.data).rglob("*.jpg"))
    assert len(arrived) == 1500
    assert {p.read_bytes() for p in arrived} == {p.read_bytes() for p in images.iterdir()}
    ssh.said.clear()
    bench._send(copies, 0, 0)  # the second time: all there (checked by sha256), nothing copied
    assert ssh.said == ["checking what is there"]


def test_a_remote_dir_under_home_is_the_devices_home(tmp_path):
    # --remote-dir=~/bench reaches bench unexpanded; quoted whole, it made a folder named '~' in the login folder
    from edgetransfer.bench.remote import _remote_path

    home = tmp_path / "home with space"
    home.mkdir()
    for given, expected in (("~/bench dir", home / "bench dir"), ("~", home), ("/opt/b c", Path("/opt/b c"))):
        out = subprocess.run(
            ["sh", "-c", f"root={_remote_path(given)}; echo \"$root\""],
            capture_output=True, text=True, env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, cwd=tmp_path,
        ).stdout  # fmt: skip
        assert out.strip() == str(expected)


def test_the_copies_of_earlier_benches_are_pruned_the_latest_kept(trained_run, tmp_path):
    # each re-export is a new card, so a new runs/ folder on the device: they piled up until the disk was full
    import os

    from edgetransfer.bench.remote import KEEP_COPIES

    device = tmp_path / "device"
    for i in range(KEEP_COPIES["runs"] + 3):
        old = device / "runs" / f"{i:016x}"  # as edgetransfer names them (a user's own folder there is not pruned)
        old.mkdir(parents=True)
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    ssh = ShellSsh()
    bench = DeviceBench(
        Device("cam", Target(name="cam", host="cam")), ssh, wheel=trained_run.file("card.json"), wheelhouse=None,
        remote_dir=None,
    )  # fmt: skip
    bench.root = str(device)
    copies = bench._copies(trained_run, BenchConfig(), (), ["ort-cpu"])
    bench._send(copies, 0, 0)
    script = bench._prune_script(copies)
    assert ssh.run(script).strip() == "4"
    kept = sorted(p.name for p in (device / "runs").iterdir())
    assert len(kept) == KEEP_COPIES["runs"] and Path(next(iter(copies))).name in kept  # this bench's, and the newest
    assert f"{0:016x}" not in kept and f"{KEEP_COPIES['runs'] + 2:016x}" in kept
    # a folder another bench removed meanwhile is not made a plain file (the run could never be copied there again)
    import shutil

    shutil.rmtree(next(iter(copies)))
    ssh.run(script)
    assert not Path(next(iter(copies))).exists()
