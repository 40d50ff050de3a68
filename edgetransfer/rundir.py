"""RunDir: the one artifact that flows between stages, and atomic file writes."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from edgetransfer.card import ModelCard
from edgetransfer.errors import RunDirError, WriteError

_HELD: set[str] = set()  # run locks this process holds
CARD = "card.json"
CHECKPOINT = "model.safetensors"
ONNX_FP32 = "model.onnx"
ONNX_INT8 = "model.int8.onnx"
ONNX_FP16 = "model.fp16.onnx"
OPENVINO_DIR = "openvino"
OV_FP32 = "openvino/model.xml"
OV_INT8 = "openvino/model.int8.xml"
OV_FP16 = "openvino/model.fp16.xml"
TENSORRT_DIR = "tensorrt"
BENCH_JSON = "bench.json"
SPLITS_FILE = "splits.json"  # the exact train/val/test files a run used, with their sha256
BENCH_REPORTS = (BENCH_JSON, "bench.csv", "bench.md", "bench.html")  # what a bench writes beside the models
EXPLAIN_JSON = "explain.json"  # what 'edgetransfer explain' writes
MEASURED = (*BENCH_REPORTS, EXPLAIN_JSON)  # reports of the models: stale once an export replaces them


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


WRITE_ERRORS = {
    errno.ENOSPC,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EDQUOT,
    errno.ENOTDIR,
    errno.EEXIST,
    errno.ENOENT,
}


@contextlib.contextmanager
def library_write_errors(path: Path) -> Iterator[None]:
    """A write by a library that reports a failed write in its own words as an :class:`OSError`, for
    :func:`write_errors_said`: safetensors' ``SafetensorError`` ("I/O error: No space left on device (os error 28)")
    and torch.save's ``RuntimeError`` ("[enforce fail at inline_container.cc] unexpected pos ..." on a full disk)."""
    import re

    try:
        yield
    except OSError:
        raise
    except Exception as exc:
        text = str(exc)
        code = re.search(r"\(os error (\d+)\)", text)
        if code:
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1)))) from None
        if type(exc).__name__ == "RuntimeError" and "inline_container" in text:  # torch's zip writer
            free = shutil.disk_usage(Path(path).parent).free
            if free < 64 * 2**20:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None
        raise


@contextlib.contextmanager
def write_errors_said(target: Path) -> Iterator[None]:
    """A full disk or a read-only folder becomes one clear :class:`RunDirError` naming ``target``."""
    try:
        yield
    except OSError as exc:
        if exc.errno in WRITE_ERRORS:
            raise WriteError(
                f"cannot write {target}: {exc.strerror}; what was there before is unchanged", errno=exc.errno
            ) from None
        raise


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM during a short swap of a run's files are taken when it is done, not in its
    middle (new models beside the old card). The signal is then raised again, to whatever handled it before (the
    CLI's turns SIGTERM into an interruption too; a library caller's default still ends the process)."""
    import signal
    import threading

    from edgetransfer.signal_stack import on_thread_stack

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    caught: list[int] = []
    signals = (signal.SIGINT, signal.SIGTERM)
    before = {s: signal.getsignal(s) for s in signals}
    for s in signals:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    on_thread_stack(signals)  # the swap often follows OpenVINO's work: signal.signal set SA_ONSTACK again
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        on_thread_stack(
            signals
        )  # signal.signal runs handlers on the alternate stack again: edgetransfer/signal_stack.py
        if caught:
            signal.raise_signal(caught[0])


def _search_pick(folder: Path) -> str:
    """Where a search's recommended run is, from its search.json (or where its trials' runs are)."""
    try:
        document = json.loads((folder / "search.json").read_text(encoding="utf-8"))
        pick = next(t["run"] for t in document["trials"] if t["number"] == document["recommended"] and t.get("run"))
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return f"give one of its trials' runs, in {folder / 'trials'}"
    here = folder / "trials" / Path(pick).name  # the recorded path is relative to where the search was started
    return f"its recommended run is {here if here.is_dir() else pick}"


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success it is renamed onto ``final``, on failure removed."""
    final = Path(final)
    with write_errors_said(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
            os.replace(tmp_path, final)
        finally:
            tmp_path.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def staging_dir(final: Path, *, keep_existing: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """A hidden directory beside ``final`` that becomes ``final`` only if the block succeeds. With ``keep_existing``
    (content any writer makes alike: whether a ``final`` is complete), a complete ``final`` another process finished
    meanwhile is kept and this one's copy dropped: replacing it removed the files under that process as it read them
    (two processes of one torchrun job writing the built-in data set); an incomplete one is replaced."""
    final = Path(final)
    with write_errors_said(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if keep_existing is not None and keep_existing(final):
            return
        if final.exists():
            shutil.rmtree(final)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (keep_existing is not None and keep_existing(final)):  # made by another process meanwhile
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


RECORDED_BUT_GONE = "is recorded in card.json but missing from the run"


def _open_lock(path: Path, said: Path, made: list[Path]):
    """``path`` opened for the lock. Another command on the same run that failed removes the folders it made for its
    lock file as it lets go: they are made again (and ``made`` says so, for this command's own cleanup)."""
    for _ in range(20):
        try:
            return open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the lock's whole block
        except FileNotFoundError:
            made[:] = missing_folders(path.parent) or made
            with write_errors_said(said):
                path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            break
    with write_errors_said(said):  # a read-only or full filesystem: said in one line
        return open(path, "a+", encoding="utf-8")  # noqa: SIM115


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those above it that do not exist yet, deepest first: what making it would make."""
    return [f for f in (folder, *folder.parents) if not f.exists()]


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first, as :func:`missing_folders` lists them) while each is an empty folder: a
    failed command leaves none of the folders it made for its output behind."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (output in it), not there, or not a folder: it and those above it stay
            if folder.exists():
                break


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A run directory (``models/NAME``): checkpoint, card, exported models and bench results."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def file(self, name: str) -> Path:
        return self.path / name

    def gone(self, name: str) -> str:
        """What to say of a model file the card records that is no longer in the run (bench and explain alike)."""
        return f"{name} {RECORDED_BUT_GONE}: restore it, or re-run 'edgetransfer export {self.path}'"

    @classmethod
    def open(cls, path: Path | str) -> RunDir:
        """Open an existing, fine-tuned run; a missing folder, card or checkpoint is a :class:`RunDirError`."""
        run = cls(Path(path))
        if run.path.is_file():
            inside = run.path.parent / CARD
            hint = (  # a file of a run (its model.onnx, its card.json): the run is the folder that holds it
                f": give the folder that holds it, {run.path.parent}"
                if inside.is_file()
                else " (a folder 'edgetransfer finetune' made)"
            )
            if run.path.suffix in (".onnx", ".xml"):
                hint += "; 'edgetransfer predict MODEL IMAGES' classifies with a model file alone"
            raise RunDirError(f"{run.path} is a file, not a run directory{hint}")
        if not run.path.is_dir():
            raise RunDirError(f"run directory not found: {run.path}")
        if not run.file(CARD).is_file():
            if run.file("search.json").is_file():  # a search's folder: its runs are its trials
                raise RunDirError(f"{run.path} is a search's folder, not a run directory: {_search_pick(run.path)}")
            raise RunDirError(f"{run.path} is not a run directory: it has no {CARD} (run 'edgetransfer finetune')")
        card = run.load_card()
        if not card.complete.get("finetune"):
            holder = run.held_by()  # still training: "in use by 'edgetransfer finetune'", not "--resume it"
            if holder is not None:
                raise RunDirError(run.in_use(holder))
            world = int((card.training or {}).get("world_size") or 1)  # a torchrun run: resumed by torchrun
            raise RunDirError(
                f"training of {run.path} did not finish; continue it with: {resume_command(run.path, world)}"
            )
        if not run.file(CHECKPOINT).is_file():
            raise RunDirError(f"{run.path} has no checkpoint ({CHECKPOINT}); run 'edgetransfer finetune'")
        return run

    @staticmethod
    def is_run(path: Path | str) -> bool:
        """Whether ``path`` is a run directory this project made (it holds a card.json that reads as a card)."""
        try:
            data = json.loads((Path(path) / CARD).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return False
        return isinstance(data, dict) and {"schema_version", "labels", "backbone", "preprocessing"} <= set(data)

    def load_card(self) -> ModelCard:
        try:
            text = self.file(CARD).read_text(encoding="utf-8")
        except OSError as exc:
            raise RunDirError(f"cannot read {self.file(CARD)}: {exc.strerror}") from None
        return ModelCard.from_json(text, source=str(self.file(CARD)))

    def save_card(self, card: ModelCard) -> None:
        atomic_write_text(self.file(CARD), card.to_json() + "\n")

    def _lock_path(self) -> Path:
        # beside the run (it survives replacing the run), named after its absolute path: `export .` inside the run
        # and `export models/run` from above take the same lock (a link is not followed: --overwrite replaces it)
        real = Path(os.path.abspath(self.path))
        return real.parent / f".{real.name}.lock"

    def in_use(self, holder: dict) -> str:
        return (
            f"{self.path} is in use by 'edgetransfer {holder.get('command', '?')}' "
            f"(pid {holder.get('pid', '?')}, since {holder.get('since', '?')}); wait for it to finish"
        )

    def held_by(self) -> dict | None:
        """Who holds the run's lock now (what it wrote there), or None; a look that writes nothing (a run on a
        read-only mount is still read)."""
        import fcntl

        path = self._lock_path()
        if str(path.resolve()) in _HELD:
            return None
        try:
            handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError:
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    return json.loads(handle.read() or "{}")
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return {}
            fcntl.flock(handle, fcntl.LOCK_UN)
        return None

    def remove_unless_held(self) -> bool:
        """Remove the run folder and its lock file unless a process holds the lock (a dead process's run: nothing
        else cleans up after it); whether the folder is gone."""
        if self.held_by() is not None:
            return False
        shutil.rmtree(self.path, ignore_errors=True)
        self._lock_path().unlink(missing_ok=True)
        return not self.path.exists()

    @contextlib.contextmanager
    def lock(self, command: str, *, wait: float = 3.0) -> Iterator[None]:
        """Hold the run for ``command``; a second command on the same run waits up to ``wait`` seconds, then says
        who holds it and stops."""
        import fcntl

        path = self._lock_path()
        key = str(path.resolve())
        if key in _HELD:  # this process holds it already (a gate re-measuring inside a bench): re-enter
            yield
            return
        # named by the folder asked for, and where its lock goes ('cannot write /proc/.foo.lock' for --out /proc/foo
        # named a file the user never gave; the folder alone hid a read-only parent)
        said = Path(f"{self.path} (its lock file goes in {path.parent})")
        made = missing_folders(path.parent)
        with write_errors_said(said):
            path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait
        while True:  # wait a moment: a measuring process that just finished may still be closing it
            handle = _open_lock(path, said, made)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() < deadline:
                    handle.close()
                    time.sleep(0.05)
                    continue
                handle.seek(0)
                try:
                    holder = json.loads(handle.read() or "{}")
                except json.JSONDecodeError:
                    holder = {}
                handle.close()
                join = (  # a second machine's worth of work on a running search is welcome: as a worker
                    f", or join it: edgetransfer search --worker --out {self.path}"
                    if holder.get("command") == "search"
                    else ""
                )
                raise RunDirError(self.in_use(holder) + join) from None
            try:
                same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            handle.close()  # the holder before us removed the file after we opened it: lock the new one
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(
                json.dumps(
                    {
                        "command": command,
                        "pid": os.getpid(),
                        "argv": sys.argv,
                        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                    }
                )
            )
            handle.flush()
            _HELD.add(key)
            try:
                yield
            finally:
                _HELD.discard(key)
                path.unlink(missing_ok=True)  # removed while still held, so no lock file stays behind
                remove_empty(made)  # made for the lock, and left empty by a command that failed: not kept
        finally:
            handle.close()  # releases the lock

    def load_splits(self, card: ModelCard, data: Path | str | None = None, *, only: tuple[str, ...] | None = None):
        """The run's own train/val/test files (from ``splits.json``), read from ``data`` when the folder moved;
        a run made before that file existed rebuilds its split from the folder and its seed, checked against the
        card's fingerprint. Either way the images are the ones the run was trained and tested on, or an error.
        ``only``: the splits the caller reads (from ``splits.json`` the others are left empty and not checked: a
        bench reads the test split, and a changed training image does not stop it)."""
        from edgetransfer.data import load_splits, splits_from_record

        if data is not None and not Path(data).expanduser().is_dir():  # the folder given, not the run's, is missing
            raise RunDirError(f"--data {data}: folder not found")
        folder = str(Path(data).expanduser()) if data else card.dataset.get("path")  # '~/x' quoted reaches us as is
        if self.file(SPLITS_FILE).is_file():
            try:
                record = json.loads(self.file(SPLITS_FILE).read_text(encoding="utf-8"))
                splits = splits_from_record(record, folder, only=only)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise RunDirError(f"{self.file(SPLITS_FILE)} cannot be read: {exc}") from None
        else:
            if not folder or not Path(folder).is_dir():
                raise RunDirError(
                    f"the run's data folder {folder} is gone; pass --data DIR (the folder it was trained on)"
                )
            skip_bad = bool(card.dataset.get("skipped_bad_files"))
            splits = load_splits(folder, seed=card.dataset.get("seed", 0), skip_bad=skip_bad)
            if card.dataset.get("fingerprint") and splits.fingerprint() != card.dataset["fingerprint"]:
                raise RunDirError(
                    f"the images in {folder} changed since {self.path} was trained: its accuracy would be measured on "
                    "other images (training images among them, maybe); restore the folder or fine-tune again"
                )
        if tuple(splits.labels) != tuple(card.labels):
            raise RunDirError(f"{folder} has classes {list(splits.labels)}, the run was trained on {list(card.labels)}")
        return splits

    def data_root(self, card: ModelCard) -> str | None:
        """The folder :meth:`load_splits` reads without a ``data`` given: the card's, else ``splits.json``'s."""
        if card.dataset.get("path"):
            return card.dataset["path"]
        try:
            return str(json.loads(self.file(SPLITS_FILE).read_text(encoding="utf-8"))["root"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def data_gone(self, card: ModelCard) -> bool:
        """Whether the run names a data folder (:meth:`data_root`) that is not on this machine (trained elsewhere, or
        moved)."""
        root = self.data_root(card)
        return bool(root) and not Path(root).expanduser().is_dir()

    def recorded_digests(self, *names: str) -> set[str] | None:
        """The sha256 of every file of the recorded splits ``names`` (``splits.json``), to know the run's images by
        content under any name; None for a run from before that file, or a damaged one."""
        try:
            record = json.loads(self.file(SPLITS_FILE).read_text(encoding="utf-8"))
            return {entry[2] for name in names for entry in record["files"][name]}
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None

    def require(self, name: str, hint: str) -> Path:
        """The path of an artifact that must exist, or a one-line error with ``hint``."""
        path = self.file(name)
        if not path.is_file():
            raise RunDirError(f"{path} is missing; {hint}")
        return path


def resume_command(out: Path | str, world: int) -> str:
    """The command that continues the run in ``out``, trained in ``world`` processes (``--nproc-per-node``, where
    several: on one machine; on several, torchrun with the same processes, said where that matters)."""
    import shlex

    processes = f" --nproc-per-node {world}" if world > 1 else ""
    return f"edgetransfer finetune{processes} --resume --out {shlex.quote(str(out))}"
