"""Measuring one (backend, variant): in this process, or in a fresh process of its own.

:class:`LocalMeasurer` does the work; :class:`ProcessMeasurer` runs a LocalMeasurer in a spawned process and
forwards each call through a pipe, so that every model gets its own peak RSS, no library state leaks from one
backend to the next, and a backend that crashes (even with a signal) takes only its own measurement down.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgetransfer.backends.base import Backend, LoadOptions
from edgetransfer.card import ModelCard
from edgetransfer.signal_stack import on_thread_stack

ROUND_WARMUP = 2  # untimed runs at the start of every round: caches are cold after another model ran
ACCURACY_BATCH = 32
TOP_K = 5


class MeasureError(Exception):
    """A model could not be measured: it failed to load, raised, crashed or hung. The message says which."""


@dataclass(frozen=True)
class Job:
    """Everything a measurement needs; picklable, so that a fresh process can do it."""

    backend: Backend
    variant: str
    path: str
    card: ModelCard
    options: LoadOptions  # threads and precision; batch, variant and hint are set per session
    sample: np.ndarray  # one preprocessed image (1, 3, H, W), repeated to each batch size
    data_file: str | None = None  # .npz with the accuracy images and labels


def _rss_mb(peak: bool) -> float | None:
    """This process's resident set (or its peak) in MB (10^6 bytes, as the model sizes and the profiles' budgets
    beside it; it was MiB under the same "MB" label, 4.9 % less). On Linux from /proc (VmHWM belongs to the
    process's own address space: getrusage's ru_maxrss would carry over the parent's peak through fork and exec)."""
    try:
        with open("/proc/self/status") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
        return int(fields["VmHWM" if peak else "VmRSS"].split()[0]) * 1024 / 1e6  # kB there means KiB
    except (OSError, KeyError, ValueError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    if not peak:
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1e6 if sys.platform == "darwin" else kib * 1024 / 1e6  # bytes on macOS, KiB elsewhere


class LocalMeasurer:
    """One model loaded in this process. :meth:`start` loads it; the other methods are the benchmark's steps."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.sessions: dict[int | None, Any] = {}

    def _session(self, batch: int | None, hint: str = "latency"):
        backend = self.job.backend
        key = batch if backend.static_batch else None
        if hint != "latency":
            return backend.load(Path(self.job.path), self.job.card, self._options(batch, hint))
        if key not in self.sessions:
            if backend.static_batch:
                # one compiled model per batch size, and the sizes are measured in turn: the earlier ones are done
                # with. Kept, they added up in the peak RSS (OpenVINO, MobileNetV2 at 64 px: 137 MB at batch 1,
                # 162 at 64, 308 for 1..64: a review), which a profile's max_peak_rss_mb judges
                self.sessions.clear()
            self.sessions[key] = backend.load(Path(self.job.path), self.job.card, self._options(key, hint))
        return self.sessions[key]

    def _options(self, batch: int | None, hint: str) -> LoadOptions:
        return replace(self.job.options, batch=batch, variant=self.job.variant, hint=hint)

    def _images(self, batch: int) -> np.ndarray:
        return np.ascontiguousarray(np.repeat(self.job.sample[:1], batch, axis=0), dtype=np.float32)

    def start(self, batch: int) -> dict:
        """Load for ``batch`` and run once: load time (its library imported first), first-run time, what it runs in,
        RSS before loading (the library imported)."""
        preload = getattr(self.job.backend, "preload", None)  # (a test's stand-in backend may have none)
        if preload:
            preload()
        rss_start = _rss_mb(peak=False)
        started = time.perf_counter()
        session = self._session(batch)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        scores = np.asarray(session.run(self._images(batch)))
        first_ms = 1000 * (time.perf_counter() - started)
        return {
            "precision": session.precision,
            "threads": getattr(session, "threads", None),
            "load_s": load_s,
            "first_run_ms": first_ms,
            "rss_start_mb": rss_start,
            "pid": os.getpid(),
            "outputs": int(scores.shape[-1]) if scores.ndim else 0,  # scores per image: one per class
            "finite": bool(np.isfinite(scores).all()),
        }

    def warmup(self, batch: int, runs: int, seconds: float) -> None:
        session, images = self._session(batch), self._images(batch)
        started, done = time.perf_counter(), 0
        while done < runs or time.perf_counter() - started < seconds:
            session.run(images)
            done += 1

    def time(self, batch: int, runs: int, seconds: float) -> list[float]:
        """Per-run times in ms, until both ``runs`` and ``seconds`` are reached."""
        session, images = self._session(batch), self._images(batch)
        times: list[float] = []
        started = time.perf_counter()
        while len(times) < runs or time.perf_counter() - started < seconds:
            t0 = time.perf_counter_ns()
            session.run(images)
            times.append((time.perf_counter_ns() - t0) / 1e6)
        return times

    def run_async(self, batch: int, seconds: float) -> dict | None:
        """Images/s with several requests in flight (backends that support it), else None."""
        if not self.job.backend.supports_async:
            return None
        session = self._session(batch, hint="throughput")
        return {"batch": batch, **session.run_async(self._images(batch), seconds)}

    def peak_rss_mb(self) -> float | None:
        return _rss_mb(peak=True)

    def accuracy(self, k: int = TOP_K) -> dict | None:
        """Top-1 and top-k (k at most the number of classes) on the job's labelled images."""
        if not self.job.data_file:
            return None
        with np.load(self.job.data_file) as data:
            images, labels = data["images"], data["labels"]
        session = self._session(None)  # any batch size
        k = min(k, self.job.card.num_classes)
        top1 = topk = 0
        for start in range(0, len(images), ACCURACY_BATCH):
            logits = session.run(np.ascontiguousarray(images[start : start + ACCURACY_BATCH]))
            if not np.isfinite(logits).all():
                raise ValueError("NaN or infinite scores on an accuracy image: the model is broken")
            hits = top_hits(logits, labels[start : start + ACCURACY_BATCH], k)
            top1, topk = top1 + hits[0], topk + hits[1]
        return {"top1": top1 / len(images), "top5": topk / len(images), "k": k, "images": int(len(images))}

    def close(self) -> None:
        self.sessions.clear()


# --------------------------------------------------------------------------- in this process or a fresh one


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class _Forwarding:
    """The benchmark's steps, each forwarded to ``_call``; a failure is a :class:`MeasureError`."""

    def _call(self, method: str, *args): ...

    def start(self, batch: int) -> dict:
        return self._call("start", batch)

    def warmup(self, batch: int, runs: int, seconds: float) -> None:
        return self._call("warmup", batch, runs, seconds)

    def time(self, batch: int, runs: int, seconds: float) -> list[float]:
        return self._call("time", batch, runs, seconds)

    def run_async(self, batch: int, seconds: float) -> dict | None:
        return self._call("run_async", batch, seconds)

    def peak_rss_mb(self) -> float | None:
        return self._call("peak_rss_mb")

    def accuracy(self) -> dict | None:
        return self._call("accuracy")


class InProcessMeasurer(_Forwarding):
    """A :class:`LocalMeasurer` in this process: quicker to start, but with no per-model peak RSS (the process
    holds every model) and no protection from a backend that crashes the interpreter."""

    def __init__(self, job: Job) -> None:
        self.local = LocalMeasurer(job)

    def _call(self, method: str, *args):
        try:
            return getattr(self.local, method)(*args)
        except Exception as exc:  # noqa: BLE001 - a failing backend is reported, the others go on
            raise MeasureError(describe(exc)) from exc

    def peak_rss_mb(self) -> float | None:
        return None

    def close(self) -> None:
        self.local.close()


@contextlib.contextmanager
def _sigint_blocked():
    """SIGINT blocked while a child is spawned, so the child starts with it blocked (the mask stays through exec)
    until its output goes to its log: a Ctrl-C printed a child's KeyboardInterrupt traceback from the middle of its
    imports. Blocked, not ignored: a Ctrl-C in this window still reaches this process (when the mask is restored)
    and the child (when :func:`_worker` unblocks it). multiprocessing's resource tracker is started first: starting
    it unblocks SIGINT itself (the first child of a process would start unprotected)."""
    try:
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except (AttributeError, ValueError, OSError, ImportError):  # no pthread_sigmask (or tracker) here
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _worker(conn, job: Job, log_path: str) -> None:
    """The spawned process: the library's own output goes to a log file (the pipe carries results only)."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    if hasattr(signal, "pthread_sigmask"):  # started with SIGINT blocked: a Ctrl-C now ends it quietly (in its log)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    on_thread_stack()  # a Ctrl-C after OpenVINO's models went: a crash, not an interruption (signal_stack.py)
    measurer = LocalMeasurer(job)
    while True:
        try:
            method, args = conn.recv()
        except EOFError:  # the parent went away
            return
        if method == "close":
            conn.send(("ok", None))
            return
        try:
            conn.send(("ok", getattr(measurer, method)(*args)))
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent as a message
            traceback.print_exc()
            conn.send(("error", describe(exc)))


class ProcessMeasurer(_Forwarding):
    """A :class:`LocalMeasurer` in a freshly spawned Python process, each step forwarded through a pipe."""

    def __init__(self, job: Job, log_dir: Path, *, timeout: float = 600.0) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing inherited, honest RSS
        self.timeout = timeout
        whose = hashlib.sha1(job.path.encode()).hexdigest()[:8]  # a run's model and a reference run's apart
        self.log = log_dir / f"{job.backend.name}-{job.variant}-{whose}.log"
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, job, str(self.log)), daemon=True)
        with _sigint_blocked():  # Ctrl-C reaches every process of the terminal: this one stops the children
            self.process.start()
        child.close()

    def _call(self, method: str, *args, timeout: float | None = None):
        limit = timeout or self.timeout
        try:
            self.conn.send((method, args))
            if not self.conn.poll(limit):
                self.kill()
                raise MeasureError(f"{method} did not finish in {limit:.0f} s (the process was killed)")
            status, value = self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise MeasureError(self._death()) from None
        if status == "error":
            raise MeasureError(value)
        return value

    def _death(self) -> str:
        self.process.join(5)
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                how = f"the process crashed ({signal.Signals(-code).name})"
            except ValueError:
                how = f"the process crashed (signal {-code})"
        else:
            how = f"the process exited with code {code}"
        try:
            tail = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()][-3:]
        except OSError:
            tail = []
        return how + (f"; its last output: {' | '.join(tail)}" if tail else "")

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self._call("close", timeout=30)
            except MeasureError:
                pass
            self.process.join(10)
        self.kill()
        self.conn.close()


def top_hits(logits: np.ndarray, truth: np.ndarray, k: int) -> tuple[int, int]:
    """How many rows of ``logits`` have ``truth`` first, and within the first ``k``. Equal scores rank by class
    index (a stable sort), as ``argmax`` does in export and predict: an int8 model's scores tie often, and an
    unstable sort made bench report another top-1 than export for the same model and images."""
    best = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return int((best[:, 0] == truth).sum()), int((best == truth[:, None]).any(axis=1).sum())
