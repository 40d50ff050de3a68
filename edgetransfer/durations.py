"""Durations as a person writes them on a command line or in a recipe: ``2h``, ``30m``, ``90s``, ``1h30m``."""

from __future__ import annotations

import math
import re

from edgetransfer.errors import UsageError

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_SPELLED = re.compile(rf"(?:{_NUMBER}h)?(?:{_NUMBER}m)?(?:{_NUMBER}s)?")  # hours, minutes, seconds, in that order
_EXPECTED = "expected a duration like 2h, 30m, 90s or 1h30m, or seconds"


def parse_duration(text: str) -> float:
    """``"2h"``, ``"30m"``, ``"90s"``, ``"1.5h"``, ``"1h30m"`` or plain seconds (``"90"``, ``"1e3"``) -> seconds."""
    spelled = text.strip().lower().replace(" ", "")
    if spelled[:1] in ("-", "+") or "_" in spelled:  # float() takes "-5" and "1_000"; a duration is neither
        raise UsageError(f"--time-budget {text!r}: {_EXPECTED}")
    try:
        seconds = float(spelled)
    except ValueError:
        match = _SPELLED.fullmatch(spelled)
        if not spelled or match is None:
            raise UsageError(f"--time-budget {text!r}: {_EXPECTED}") from None
        hours, minutes, secs = (float(part) if part else 0.0 for part in match.groups())
        return hours * 3600 + minutes * 60 + secs
    if not math.isfinite(seconds):
        raise UsageError(f"--time-budget {text!r}: {_EXPECTED}")
    return seconds
