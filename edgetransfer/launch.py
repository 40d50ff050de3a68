"""Several training processes on one machine, started by ``edgetransfer finetune --nproc-per-node N``: torchrun's
own launcher (``torch.distributed.run``, standalone), with its failures said as the command's.

Run as ``torchrun``, a mistake in the command line ended in torchrun's traceback and failure report after the
process's own one-line error, and a Ctrl-C in torchrun's ``SignalException`` traceback. Here the processes' own
lines are all that is said (rank 0 speaks for the job) and the exit code is the failed process's."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

SAID = "EDGETRANSFER_JOB_SAID"  # where the processes of a job keep the error lines they print


def threads_per_process(nproc: int) -> int:
    """Intra-op threads for each of ``nproc`` processes: the cores this process may use, shared out (torchrun sets
    1 for any machine, with a warning)."""
    from edgetransfer.machine import usable_cores

    return max(1, usable_cores() // nproc)


def launch(nproc: int, argv: list[str], *, device: str = "auto") -> int:
    """Run ``edgetransfer ARGV`` in ``nproc`` processes on this machine (gloo on the CPU, NCCL on GPUs, as the
    command's ``device`` says: one GPU each) and return the exit code: 0, the first failed process's, or 128 + the
    signal that stopped the launcher (130 for Ctrl-C)."""
    import torch

    from edgetransfer.devices import resolve_device
    from edgetransfer.errors import UsageError

    gpus = torch.cuda.device_count()
    if resolve_device(device) == "cuda" and gpus < nproc:
        raise UsageError(
            f"--nproc-per-node {nproc} trains one process per GPU and this machine has {gpus}: "
            f"--nproc-per-node {gpus}, or --device cpu"
        )
    from edgetransfer.machine import usable_cores

    cores = usable_cores()
    if resolve_device(device) == "cpu" and nproc > cores:  # each still takes one thread: they take turns
        from edgetransfer import console

        console.err.print(
            f"[yellow]note: {nproc} processes on the {cores} cores this command may use: they take turns on them, "
            f"slower than --nproc-per-node {cores}[/]"
        )
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    for name in list(logging.root.manager.loggerDict):  # torchrun's log lines (its rendezvous, its warnings, its
        if name.startswith("torch.distributed"):  # failure report): the processes say what matters themselves
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    if not os.environ.get("OMP_NUM_THREADS"):
        from edgetransfer.training import ALONE_THREADS

        os.environ["OMP_NUM_THREADS"] = str(threads_per_process(nproc))
        if resolve_device(device) == "cpu":  # process 0's work the others wait for takes them all (on GPUs it runs
            os.environ[ALONE_THREADS] = str(cores)  # there)
    with tempfile.TemporaryDirectory(prefix="edgetransfer-ranks-") as logs:
        # rank 0 speaks for the job on the terminal; the others' output goes to files, read back when they fail
        os.environ[SAID] = logs
        quiet = ",".join(f"{rank}:3" for rank in range(1, nproc))  # 3: stdout and stderr
        args = get_args_parser().parse_args(
            ["--standalone", "--nproc_per_node", str(nproc), "--log-dir", logs, "--redirects", quiet]
            + ["-m", "edgetransfer", *argv]
        )
        try:
            run(args)
        except ChildFailedError as exc:
            return _failed(exc.failures, Path(logs))
        except SignalException as exc:  # Ctrl-C or SIGTERM: the launcher passed it on; they said what they keep
            return 128 + int(exc.sigval)
    return 0


def _failed(failures: dict, logs: Path) -> int:
    """The exit code of a job whose processes failed, and what process 0 did not say of it: the first failure is
    the cause (the launcher stops the others after it, with SIGTERM); process 0 says its own, another's is read back
    from what it said (its output goes to a file), and a process killed by a signal is named."""
    first = min(failures, key=lambda rank: failures[rank].timestamp)
    zero = failures.get(0)
    if first != 0 and zero is not None and zero.exitcode > 0 and zero.exitcode not in (130, 143):
        if (logs / "said-0").is_file():
            # process 0 failed of its own too (every process at one step: a NaN loss, a disk full), and it said so:
            # its error is the one to go by, as it alone knows what the run kept (another's read 'OUT is as it was'
            # of a run process 0 had kept epochs of: a review)
            first = 0
    code = failures[first].exitcode
    if code < 0:  # killed (the kernel's OOM killer, kill -9): it said nothing itself
        print(f"error: training process {first} of the job was killed by {signal.Signals(-code).name}", file=sys.stderr)
        return 128 - code
    if first != 0:
        already = set(_said(logs, 0))
        for line in _said(logs, first):
            if line not in already:
                print(f"{line} (process {first})", file=sys.stderr)
    return code


def record_said(line: str) -> None:
    """Keep an error line a process of a job printed, for the launcher (:func:`_failed`); nothing outside a job."""
    folder = os.environ.get(SAID)
    if folder:
        try:
            with open(Path(folder) / f"said-{os.environ.get('RANK', '0')}", "a", encoding="utf-8") as file:
                file.write(line + "\n")
        except OSError:  # the launcher's folder gone: nothing to keep it for
            pass


def _said(logs: Path, rank: int) -> list[str]:
    """What process ``rank`` said of its failure: its error lines, else the last lines of its output (a bug's
    traceback)."""
    said = logs / f"said-{rank}"
    if said.is_file():
        return said.read_text(encoding="utf-8", errors="replace").splitlines()
    lines = []
    for path in logs.glob(f"**/{rank}/stderr.log"):
        lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
    return lines[-20:]
