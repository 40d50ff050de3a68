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
