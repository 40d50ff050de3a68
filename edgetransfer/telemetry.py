"""No usage data leaves the machine without the user's consent.

NNCF and OpenVINO's model converter report usage to Google Analytics through ``openvino_telemetry`` (a client id
under ~/intel, events sent from forked processes) unless a consent file declines it: where none was ever written,
they send. edgetransfer runs them on machines that may be air-gapped and on users' data, so here a missing consent
file counts as "no". A user who opted in (``opt_in_out --opt_in``) is still honoured, as is one who opted out.
:func:`decline_without_consent` runs before edgetransfer imports NNCF or converts a model (export, QAT, the
quantizers); in a process that imported NNCF before, the telemetry object NNCF made is declined too."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import Any

_DONE = False


def decline_without_consent() -> None:
    """Make openvino_telemetry treat "no consent file" as declined, in this process."""
    global _DONE
    if _DONE:
        return
    _DONE = True
    try:
        from openvino_telemetry.main import Telemetry
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:  # the runtime-only install: no NNCF, no converter, nothing that reports
        return
    no_file, declined = getattr(ConsentCheckResult, "NO_FILE", None), getattr(ConsentCheckResult, "DECLINED", None)
    if no_file is None or declined is None:  # another openvino_telemetry than the one this was written for: said
        warnings.warn("edgetransfer could not turn off openvino_telemetry (its API changed)", stacklevel=2)
        return
    asked = OptInChecker.check

    def check(self, *args, **kwargs):
        try:
            result = asked(self, *args, **kwargs)
        except Exception:  # noqa: BLE001 - whatever went wrong, nothing is sent
            return declined
        return declined if result == no_file else result

    OptInChecker.check = check
    made = getattr(Telemetry, "_SingletonMetaClass__single_instance", None)  # NNCF's, made when it was imported
    if made is not None and getattr(made, "consent", False):
        try:
            if OptInChecker().check(enable_opt_in_dialog=False, disable_in_ci=True) != ConsentCheckResult.ACCEPTED:
                made.consent = False
        except Exception:  # noqa: BLE001
            made.consent = False


def import_nncf() -> Any:
    """``nncf``, imported quietly (its log at ERROR; torch's cpp_extension warns of no CUDA, which is fine here)
    and without its telemetry (:func:`decline_without_consent`)."""
    decline_without_consent()
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import nncf

    nncf.set_log_level(logging.ERROR)
    return nncf


class _WithoutBars(io.TextIOBase):
    """A stream that passes whole lines on to ``sink`` but those holding a drawn progress bar (rich's ``━``)."""

    def __init__(self, sink) -> None:
        self.sink, self.pending = sink, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            if "\u2501" not in line:
                self.sink.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.sink.flush()

    def close_pending(self) -> None:
        if self.pending and "\u2501" not in self.pending:
            self.sink.write(self.pending)
        self.pending = ""


@contextlib.contextmanager
def nncf_progress() -> Iterator[None]:
    """Where NNCF's progress bars go while it runs: stderr on a terminal (stdout is a command's result, such as
    export's list of files); where stderr is a file or a pipe, nowhere, as rich draws a bar there once, finished, as
    a line of 200 characters among the command's own messages. Anything else NNCF prints still reaches stderr."""
    if sys.stderr.isatty():
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    stream = _WithoutBars(sys.stderr)
    try:
        with contextlib.redirect_stdout(stream):
            yield
    finally:
        stream.close_pending()
