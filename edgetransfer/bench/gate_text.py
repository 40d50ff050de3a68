"""The gate's verdict in words: one line per compared key (two when it was measured again), then the outcome."""

from __future__ import annotations

from edgetransfer.bench.gate import FASTER, SLOWER, GateResult, Row, _verdict


def _pct(x: float) -> str:
    return f"{100 * (x - 1):+.1f}%"


def _judged(ratio: float, low: float, high: float, level: float) -> str:
    return f"change {_pct(ratio)} ({100 * level:.0f}% CI {_pct(low)} to {_pct(high)})"


def _why(ratio: float, low: float, high: float, max_regression: float) -> str:
    """Why a change got its verdict, in the words of the rule."""
    limit = _pct(1 + max_regression)
    verdict = _verdict(ratio, low, high, max_regression)
    if verdict == SLOWER:
        return f"above {limit} with its CI above 0"
    if verdict == FASTER:
        return "faster, its CI below 0"
    if ratio > 1 + max_regression:
        return f"above {limit} but its CI reaches 0: not shown to be slower"
    return f"within {limit}"


def row_lines(row: Row, mode: str, max_regression: float, level: float = 0.95) -> list[str]:
    """One compared key: the medians (what the table shows) and the change the gate judges, both with + for slower;
    with a re-measurement, a second line with both measurements together and the re-measurement alone."""
    label = f"{row.backend} {row.variant} b{row.batch}" + (f" vs {row.reference}" if row.reference else "")
    if mode == "relative":
        medians = f"median {row.now_ms:.4g} x ref"
    else:
        unit = "ms" if mode in ("baseline", "reference-run") else "x ref"
        medians = f"median {row.before_ms:.4g} -> {row.now_ms:.4g} {unit} ({_pct(row.now_ms / row.before_ms)})"
    judged = _judged(row.ratio, row.low, row.high, level)
    lines = [f"  {row.verdict.upper():7s} {label:32s} {medians}; {judged}"]
    if row.confirm is None:
        lines[0] += f": {_why(row.ratio, row.low, row.high, max_regression)}"
        return lines
    lines[0] += f": {_why(row.ratio, row.low, row.high, max_regression)}; measured again"
    together = f"{_judged(*row.confirm, level)}: {_why(*row.confirm, max_regression)}"
    line = f"          both measurements together: {together}"
    if _verdict(*row.confirm, max_regression) == SLOWER:
        alone = _pct(row.again) if row.again is not None else "?"
        half = _pct(1 + max_regression / 2)
        line += (
            f", and the re-measurement alone {alone} (above {half}): slower"
            if row.verdict == SLOWER
            else f", but the re-measurement alone {alone} (not above {half}): noise in the first, not slower"
        )
    lines.append(line)
    return lines


def _upper(row: Row) -> float:
    """The upper end of the interval the verdict rests on (both measurements together when measured again)."""
    return row.confirm[2] if row.confirm is not None else row.high


def unresolved(result: GateResult) -> list[Row]:
    """Rows not judged slower whose interval still reaches above the threshold: the measurement was too noisy to
    rule out a slowdown of the size the gate is there to catch."""
    limit = 1 + result.max_regression
    return [r for r in result.rows if r.verdict != SLOWER and _upper(r) > limit]


def gate_lines(result: GateResult) -> list[str]:
    """A readable diff: one line per compared key (two when it was measured again), then the outcome and its exit
    code."""
    what = {
        "baseline": f"against the baseline {result.baseline}",
        "relative": "against a reference measured in the same run",
        "relative+baseline": f"ratios to a reference, against the same ratios in the baseline {result.baseline}",
        "reference-run": f"against the reference run {result.baseline}, measured side by side in the same rounds",
    }[result.mode]
    lines = [
        f"regression gate {what}; max regression {100 * result.max_regression:g}%",
        f"  + is slower; 'change' is what is judged: the geometric mean of the ratios of block medians, "
        f"{100 * result.level:.0f}% CI; slower: above the threshold with the CI above 0",
    ]
    if result.machine_factor is not None:  # a stored baseline, judged relative to the machine probe
        lines.append(
            f"  machine factor {result.machine_factor:.2f}x: the machine probe takes {result.machine_factor:.2f}x the "
            "time it took when the baseline was taken; each 'change' is the model's relative to the probe, measured "
            "in the same rounds"
        )
    lines += [f"  warning: {w}" for w in result.warnings]
    for r in result.rows:
        said = row_lines(r, result.mode, result.max_regression, result.level)
        if result.problems:  # no verdict (exit 2): a row read "SLOWER" beside "neither pass nor fail"
            said[0] = f"  {'n/a':7s} {said[0][10:]} (not judged: the comparison cannot be made, below)"
        lines += said
    lines += [f"  cannot compare: {p}" for p in result.problems]
    blind = unresolved(result)
    if result.exit_code == 0 and blind:
        names = ", ".join(f"{r.backend} {r.variant} b{r.batch} (to {_pct(_upper(r))})" for r in blind)
        lines.append(
            f"  note: a pass, but the CI of {names} reaches above {_pct(1 + result.max_regression)}: a slowdown that "
            "large is not ruled out by this measurement; measure longer (--min-time, --rounds, --processes) or "
            "on a quieter machine to narrow it"
        )
    outcome = {
        0: "pass: nothing slower beyond the threshold",
        1: f"FAIL: {len(result.slower)} slower beyond {100 * result.max_regression:g}%",
        2: "cannot compare (see above): neither pass nor fail",
    }[result.exit_code]
    lines.append(f"gate: {outcome} (exit {result.exit_code})")
    return lines
