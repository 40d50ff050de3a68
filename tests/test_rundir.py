import pytest

from edgetransfer.errors import RunDirError
from edgetransfer.rundir import RunDir, atomic_path, staging_dir


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_atomic_path_replaces_on_success(tmp_path):
    target = tmp_path / "f.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o044  # readable by others like any ordinary file, not mkstemp's 0600


def test_staging_dir_appears_only_when_complete(tmp_path):
    with pytest.raises(ValueError), staging_dir(tmp_path / "run") as stage:
        (stage / "a").write_text("x")
        raise ValueError
    assert list(tmp_path.iterdir()) == []
    with staging_dir(tmp_path / "run") as stage:
        (stage / "a").write_text("x")
    assert (tmp_path / "run" / "a").read_text() == "x"


def test_open_names_what_is_missing(tmp_path):
    with pytest.raises(RunDirError, match="not found"):
        RunDir.open(tmp_path / "nope")
    with pytest.raises(RunDirError, match="card.json"):
        RunDir.open(tmp_path)


def test_a_second_command_on_the_same_run_says_who_holds_it(tmp_path):
    import subprocess
    import sys

    run = RunDir(tmp_path / "run")
    second = (
        "import sys; from edgetransfer.rundir import RunDir; from edgetransfer.errors import RunDirError\n"
        "try:\n    with RunDir(sys.argv[1]).lock('export'): print('got it')\n"
        "except RunDirError as exc: print(exc)"
    )
    with run.lock("finetune"):
        held = subprocess.run([sys.executable, "-c", second, str(run.path)], capture_output=True, text=True)
    assert "in use by 'edgetransfer finetune' (pid" in held.stdout, held.stdout + held.stderr
    free = subprocess.run([sys.executable, "-c", second, str(run.path)], capture_output=True, text=True)
    assert free.stdout.strip() == "got it"
    # the same run named '.' from inside it: the same lock (it took './..lock', inside the run, and both went on)
    run.path.mkdir()
    with run.lock("finetune"):
        inside = subprocess.run([sys.executable, "-c", second, "."], capture_output=True, text=True, cwd=run.path)
    assert "in use by 'edgetransfer finetune' (pid" in inside.stdout, inside.stdout + inside.stderr
    assert not (run.path / "..lock").exists()


def test_a_read_only_folder_is_one_clear_error(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes to read-only folders; the error path is covered by the ENOSPC test below")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(RunDirError, match="cannot write"):
        with atomic_path(folder / "f.txt") as tmp:
            tmp.write_text("x")


def test_a_full_disk_is_one_clear_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno

    target = tmp_path / "card.json"
    target.write_text("old")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_text", full)
    with pytest.raises(RunDirError, match="cannot write .*card.json: No space left on device"):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
    monkeypatch.undo()
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["card.json"]


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.lock("bench"), run.lock("bench"):  # a gate re-measuring inside a bench
        pass
    with run.lock("export"):
        pass


def test_no_lock_file_stays_behind(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.lock("export"):
        assert (tmp_path / ".run.lock").is_file()
    assert not (tmp_path / ".run.lock").exists()
    # the folders the lock made above the run: gone where the command made nothing in them, kept where it did
    with RunDir(tmp_path / "a" / "b" / "run").lock("search"):
        assert (tmp_path / "a" / "b" / ".run.lock").is_file()
    assert not (tmp_path / "a").exists()
    with RunDir(tmp_path / "a" / "b" / "run").lock("search"):
        (tmp_path / "a" / "b" / "run").mkdir()
    assert (tmp_path / "a" / "b" / "run").is_dir()


def test_a_command_waiting_on_a_lock_gets_it_when_the_holder_removes_the_folders_it_made(tmp_path):
    """A failed command removes the empty folders it made for its lock file: a second command waiting on the same
    run failed with 'No such file or directory' as it let go (a review's finding); it takes the lock now."""
    import subprocess
    import sys
    import textwrap

    run = tmp_path / "x" / "y" / "run"
    holder = textwrap.dedent(f"""
        import sys, time
        from edgetransfer.rundir import RunDir
        with RunDir({str(run)!r}).lock("export"):
            print("held", flush=True)
            time.sleep(1.0)
    """)
    first = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    assert first.stdout.readline().strip() == "held"
    with RunDir(run).lock("bench", wait=10.0):
        run.mkdir()
    assert first.wait(timeout=30) == 0 and run.is_dir() and not (run.parent / ".run.lock").exists()
    from edgetransfer.rundir import _open_lock

    gone = tmp_path / "gone" / ".run.lock"  # the folder removed between making it and opening the file
    made: list = []
    _open_lock(gone, gone.parent, made).close()
    assert gone.is_file() and made == [tmp_path / "gone"]


def test_a_lock_file_removed_between_open_and_lock_is_not_held(tmp_path, monkeypatch):
    """The last holder removes the lock file on release. A command that opened the file just before that must not
    hold the removed file (a third command would create and lock a new one: two holders); it locks the file that
    is there."""
    import fcntl
    import subprocess
    import sys

    real, calls = fcntl.flock, []

    def flock_after_the_holder_left(handle, flags):
        if not calls:  # the first attempt: the holder releases and removes the file just before it
            (tmp_path / ".run.lock").unlink()
        calls.append(flags)
        return real(handle, flags)

    monkeypatch.setattr(fcntl, "flock", flock_after_the_holder_left)
    probe = (
        "import fcntl, sys\nh = open(sys.argv[1], 'a')\n"
        "try:\n    fcntl.flock(h, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
        "except BlockingIOError:\n    print('held')"
    )
    with RunDir(tmp_path / "run").lock("export"):
        assert (tmp_path / ".run.lock").is_file()
        other = subprocess.run(
            [sys.executable, "-c", probe, str(tmp_path / ".run.lock")], capture_output=True, text=True
        )
        assert other.stdout.strip() == "held", "another command could take the run at the same time"
    assert len(calls) == 2


def test_a_search_folder_given_for_a_run_names_the_search_s_pick(tmp_path):
    """export/bench/explain of a search's folder said 'it has no card.json (run edgetransfer finetune)'."""
    import json

    search = tmp_path / "cam"
    search.mkdir()
    (search / "search.json").write_text(
        json.dumps({"recommended": 1, "trials": [{"number": 0, "run": "a"}, {"number": 1, "run": "cam/trials/1"}]})
    )
    with pytest.raises(
        RunDirError, match="is a search's folder, not a run directory: its recommended run is cam/trials/1$"
    ):
        RunDir.open(search)
    (search / "trials" / "1").mkdir(parents=True)  # the recorded path is relative to another folder: found here
    with pytest.raises(RunDirError, match=f"its recommended run is {search / 'trials' / '1'}$"):
        RunDir.open(search)
    (search / "search.json").write_text(json.dumps({"recommended": None, "trials": []}))  # nothing recommended
    with pytest.raises(RunDirError, match="give one of its trials' runs, in .*cam/trials$"):
        RunDir.open(search)


def test_a_full_disk_in_a_library_save_is_one_clear_error(tmp_path, monkeypatch):
    """safetensors and torch.save say a full disk in their own words (SafetensorError "... (os error 28)", torch's
    RuntimeError "[enforce fail at inline_container.cc] unexpected pos"): finetune ended in a traceback."""
    import collections
    import shutil

    import safetensors.torch
    import torch

    from edgetransfer.checkpoint import save_checkpoint
    from edgetransfer.rundir import library_write_errors

    safetensor_error = type("SafetensorError", (Exception,), {})

    def full(*args, **kwargs):
        raise safetensor_error("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(RunDirError, match=r"cannot write .*last.safetensors: No space left on device"):
        save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "last.safetensors", {})
    assert list(tmp_path.iterdir()) == []  # no temporary file left
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4096, 4096))
    with pytest.raises(OSError, match="No space left on device"):
        with library_write_errors(tmp_path / "resume.pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    with pytest.raises(ValueError, match="not a write"):  # anything else goes on as it was
        with library_write_errors(tmp_path / "resume.pt"):
            raise ValueError("not a write")


def test_a_folder_that_cannot_be_written_is_named_not_its_lock():
    """--out /proc/foo said 'cannot write /proc/.foo.lock: ...': a file the user never named (a new user's trial)."""
    from edgetransfer.errors import RunDirError

    run = RunDir("/proc/edgetransfer-no-such-run")
    said = "^cannot write /proc/edgetransfer-no-such-run \\(its lock file goes in /proc\\): "
    with pytest.raises(RunDirError, match=said) as caught:
        with run.lock("finetune"):
            pass
    assert ".lock" not in str(caught.value)
