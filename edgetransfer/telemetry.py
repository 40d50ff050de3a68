"""No usage data leaves the machine without the user's consent.

NNCF and OpenVINO's model converter report usage to Google Analytics through ``openvino_telemetry`` (a client id
under ~/intel, events sent from forked processes) unless a consent file declines it: where none was ever written,
they send. edgetransfer runs them on machines that may be air-gapped and on users' data, so here a missing consent
file counts as "no". A user who opted in (``opt_in_out --opt_in``) is still honoured, as is one who opted out."""

from __future__ import annotations

_DONE = False


def decline_without_consent() -> None:
    """Make openvino_telemetry treat "no consent file" as declined, in this process (and its forks)."""
    global _DONE
    if _DONE:
        return
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:  # the runtime-only install: no NNCF, no converter, nothing that reports
        _DONE = True
        return
    asked = OptInChecker.check

    def check(self, *args, **kwargs):
        result = asked(self, *args, **kwargs)
        return ConsentCheckResult.DECLINED if result == ConsentCheckResult.NO_FILE else result

    OptInChecker.check = check
    _DONE = True
