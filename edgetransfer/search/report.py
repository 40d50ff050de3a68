"""What a search found: every trial as a row, the accuracy-vs-latency Pareto front, the recommended run (the most
accurate within the latency budget, with its margin; or, when none meets it, the closest), as terminal tables, a
JSON document and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import textwrap
from pathlib import Path
from typing import Any

from rich.table import Table

from edgetransfer.rundir import atomic_write_text
from edgetransfer.search.config import TIE_SE
from edgetransfer.search.storage import located_run

# what the study records of a re-measured trial besides its new figures (study._remeasure)
AGAIN_RECORD = ("first_ms", "first_beside", "first_noisy", "started", "ended", "by")
STATES = {"COMPLETE": "done", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "queued"}
REPORT_JSON, REPORT_HTML = "search.json", "search.html"


def trial_rows(
    trials: list, *, stopped: bool | str = False, remeasured: dict | None = None, out: Path | None = None
) -> list[dict[str, Any]]:
    """One row per Optuna trial (a ``FrozenTrial``): its candidate, state, figures and who ran it; ``stopped``: the
    search has stopped (why, where known), so a trial still queued will not run in it; ``remeasured``: the latency
    figures the search measured again after its trials (the study's record, see study._remeasure), which replace
    a trial's own (and a repeat's of it); ``out``: the search folder, where its trials' runs are now
    (:func:`located_run`)."""
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        attrs = dict(t.user_attrs)
        again = (remeasured or {}).get(str(attrs.get("same_as", t.number)))
        if t.state.name == "COMPLETE" and again and "error" not in again:
            attrs.update({k: v for k, v in again.items() if k not in AGAIN_RECORD})
        else:
            again = None
        steps = sorted(t.intermediate_values.items())
        state = "skipped" if "skipped" in attrs else STATES.get(t.state.name, t.state.name.lower())
        if t.state.name == "WAITING":  # queued (the default, its smallest size, a QAT sibling), not started yet
            fixed = (getattr(t, "system_attrs", None) or {}).get("fixed_params") or {}
            name = fixed.get("backbone")
            attrs.update(backbone=name, size=fixed.get(f"size_{name}"), int8=fixed.get("int8"))
            state = "queued"
            if stopped:  # what --resume needs to run it, for the reason the search stopped where it is known
                why = stopped if isinstance(stopped, str) else ""
                need = (
                    " (with a higher --trials)"
                    if why.startswith("--trials")
                    else " (give a --time-budget again: it is not carried over)"
                    if "time budget" in why
                    else ""
                    if why
                    else " (with a higher --trials if the search stopped at its --trials)"
                )
                attrs["interrupted"] = f"not started: the search stopped before it; --resume runs it first{need}"
        rows.append(
            {
                "number": t.number,
                "state": state,
                "backbone": attrs.get("backbone"),
                "size": attrs.get("size"),
                "int8": attrs.get("int8"),
                "val_top1": attrs.get("val_top1"),
                "latency_ms": attrs.get("latency_ms"),  # the budget's figure: the worst over the batch sizes
                "latency_key": attrs.get("latency_key"),
                "within_budget": attrs.get("within_budget"),
                "budget_failures": attrs.get("budget_failures"),  # the profile's other budgets it breaks
                "budget_checked": "budget_failures" in attrs,  # False: measured by an edgetransfer before 86a2d61
                "epochs": attrs.get("epochs_run", len(steps)),
                "last_val_top1": steps[-1][1] / 100 if steps else None,
                "worker": attrs.get("worker"),
                "run": _kept_run(t.state.name, located_run(attrs.get("run"), out)),
                "same_as": attrs.get("same_as"),
                "note": attrs.get("error")
                or attrs.get("pruned")
                or attrs.get("skipped")
                or attrs.get("interrupted")
                or (  # failed by Optuna for its heartbeat (nothing of ours recorded a cause): said, not left blank
                    f"no cause recorded: its worker ({attrs.get('worker') or '?'}) stopped mid-trial (a heartbeat "
                    "that stopped: stalled, killed or on a lost machine); marked failed"
                    if t.state.name == "FAIL"
                    else ""
                )
                or "; ".join(
                    note
                    for note in (
                        f"trial {attrs['fine_tune_of']}'s fine-tune, exported again" if "fine_tune_of" in attrs else "",
                        attrs.get("int8_note") or "",
                        over_profile([*_over_latency(attrs), *(attrs.get("budget_failures") or [])]),
                    )
                    if note
                ),
                "int8_note": attrs.get("int8_note"),  # int8 lost more than export's budget (the verdict says so)
                "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
                if t.datetime_complete and t.datetime_start
                else None,
                "test_top1": attrs.get("test_top1"),
                "p50_ms": attrs.get("p50_ms"),
                "p99_ms": attrs.get("p99_ms"),
                "p50_p99_batch": attrs.get("p50_p99_batch"),  # the batch size p50_ms and p99_ms were measured at
                "throughput_ips": attrs.get("throughput_ips"),  # the best over batch sizes and async
                "model_mb": attrs.get("model_mb"),
                "val_images": attrs.get("val_images"),
                "measured_on": attrs.get("measured_on"),
                "latency_noisy": attrs.get("latency_noisy"),  # bench's why its latency is too noisy, or None
                "beside": [],  # trials that ran at the same time on the same machine (filled below)
                # measured again after the search (its first reading was beside another trial, or noisy)
                "remeasured": {k: again[k] for k in AGAIN_RECORD if k in again} if again else None,
            }
        )
    _ran_beside(rows, {t.number: t for t in trials})
    for row in rows:  # an interrupted trial whose candidate ran again later says so, not "--resume tries it again"
        again = [
            r["number"]
            for r in rows
            if r["number"] > row["number"]
            and r["state"] not in ("queued", "skipped")
            and (r["backbone"], r["size"], r["int8"]) == (row["backbone"], row["size"], row["int8"])
        ]
        if row["note"].startswith("interrupted (") and again:
            row["note"] = f"{row['note'].split(';')[0]}; tried again as trial {again[0]}"
    return rows


def _kept_run(state: str, run: str | None) -> str | None:
    """A trial's run folder, where it is: a failed trial's is removed by its worker (or by the one that found the
    worker dead), and a stalled worker removes its own only after the trial was marked failed."""
    if state == "FAIL" and run and not Path(run).is_dir():
        return None
    return run


def _ran_beside(rows: list[dict], trials: dict) -> None:
    """Fill each measured trial's ``beside``: the trials that ran on the same machine while it was benched (workers
    of one search on one host), whose work slowed its bench; and say it, with bench's noise verdict, in its note.
    Latency read while another trial trained was 5x the quiet figure, and a '12.91x faster' verdict came of it."""
    import datetime

    now = datetime.datetime.now()
    from edgetransfer.search.storage import host_of

    hosts = {r["number"]: host_of(r["worker"]) for r in rows}
    rows_by = {r["number"]: r for r in rows}

    def span(number: int) -> tuple:
        t = trials[number]
        return t.datetime_start, t.datetime_complete or now

    def bench_window(number: int) -> tuple:
        """When the trial benched: its last ``bench_s`` seconds (the bench ends a trial), or after its fine-tune and
        export where it has not ended; else its whole span. (Counted from its start, a trial that copied another's
        fine-tune, whose ``finetune_s`` is that trial's for the cost model, 'benched' after it had ended, beside
        the next trial: a new user's one-process search said so.)"""
        start, end = span(number)
        attrs = trials[number].user_attrs
        again = rows_by[number].get("remeasured")
        if again and rows_by[number]["same_as"] is None:
            return datetime.datetime.fromisoformat(again["started"]), datetime.datetime.fromisoformat(again["ended"])
        if isinstance(attrs.get("bench_s"), (int, float)) and trials[number].datetime_complete is not None:
            return end - datetime.timedelta(seconds=attrs["bench_s"]), end
        if all(isinstance(attrs.get(k), (int, float)) for k in ("finetune_s", "export_s", "bench_s")):
            began = start + datetime.timedelta(seconds=attrs["finetune_s"] + attrs["export_s"])
            return began, began + datetime.timedelta(seconds=attrs["bench_s"])
        return start, end

    working = [  # trials that did work of their own (a repeat copies figures; a skipped one never started)
        r for r in rows if r["same_as"] is None and r["state"] not in ("skipped", "queued") and hosts[r["number"]]
    ]
    for row in working:
        if row["latency_ms"] is None or trials[row["number"]].datetime_start is None:
            continue
        if (row.get("measured_on") or "here") != "here":  # measured on a device (--on): this machine's load aside
            continue
        start, end = bench_window(row["number"])
        row["beside"] = [
            r["number"]
            for r in working
            if r["number"] != row["number"]
            and hosts[r["number"]] == hosts[row["number"]]
            and trials[r["number"]].datetime_start is not None
            and span(r["number"])[0] < end
            and start < span(r["number"])[1]
        ]
    for row in rows:
        said = "; ".join(x for x in (_again(row), _busy(row)) if x)
        if said:
            row["note"] = f"{row['note']}; {said}" if row["note"] else said


def _again(row: dict) -> str:
    """A trial measured again after the search: what its first reading was and why it was not kept."""
    again = row.get("remeasured")
    if not again:
        return ""
    why = f"beside trial(s) {', '.join(map(str, again['first_beside']))}" if again.get("first_beside") else "noisy"
    key = (row.get("latency_key") or "p50_ms").removesuffix("_ms")
    return f"{key} measured again after the search (first read {again['first_ms']:.3f} ms, {why})"


BESIDE_FACTOR = 5.0  # a latency read beside another trial on one machine: 8.70 ms for 1.73 ms alone (a user's trial)
NOISY_FACTOR = 1.5  # a noisy bench alone: its rounds' spread, at most this much (the same model moves +-30 % here)


def _busy(row: dict) -> str:
    """Why a trial's latency may be off: it ran beside other trials on its machine, its bench found it noisy."""
    parts = []
    if row.get("beside"):
        parts.append(f"ran beside trial(s) {', '.join(map(str, row['beside']))} on the same machine")
    if row.get("latency_noisy"):
        parts.append(f"latency noisy ({row['latency_noisy']})")
    return "; ".join(parts) + (": its latency may be inflated" if row.get("beside") else "")


def _busy_note(doubtful: list[dict], before: str) -> list[str]:
    """The verdict's line naming the trials whose latency may be off (none: no line)."""
    if not doubtful:
        return []
    said = "; ".join(f"trial {row['number']} {_busy(row)}" for row in doubtful)
    return [f"  note: {said}: measure again on a quiet machine {before}"]


def measured(rows: list[dict]) -> list[dict]:
    """The trials that made and measured a model of their own (done, not a repeat of an earlier candidate)."""
    return [r for r in rows if r["state"] == "done" and r["same_as"] is None and r["latency_ms"] is not None]


def pareto_front(rows: list[dict]) -> list[dict]:
    """The measured trials no other beats on both validation top-1 (higher) and latency (lower), fastest first."""
    done = measured(rows)
    front = [
        r
        for r in done
        if not any(
            o["val_top1"] >= r["val_top1"]
            and o["latency_ms"] <= r["latency_ms"]
            and (o["val_top1"] > r["val_top1"] or o["latency_ms"] < r["latency_ms"])
            for o in done
        )
    ]
    return sorted(front, key=lambda r: r["latency_ms"])


def noise(row: dict) -> float:
    """One standard error of a trial's validation top-1 (as a fraction), from its number of validation images: the
    binomial error with one success and one failure added, so a perfect score is not taken as certain; 0 when the
    count is unknown."""
    n = row.get("val_images") or 0
    if n <= 0 or row["val_top1"] is None:
        return 0.0
    p = (row["val_top1"] * n + 1) / (n + 2)
    return math.sqrt(p * (1 - p) / n)


def tie_band(best: dict, tie_se: float = TIE_SE) -> float:
    """How far below ``best``'s validation top-1 (a fraction) another trial is within its validation noise:
    ``tie_se`` standard errors of the best one's score, and never less than ``tie_se``² images. Two models scored on
    the same images that differ by d images disagree on at least d of them, so the paired (McNemar) standard error of
    their difference is at least sqrt(d)/n, and a difference of d <= tie_se² images can never reach ``tie_se``
    standard errors: with the default of 1, one image is never evidence."""
    n = best.get("val_images") or 0
    if n <= 0:
        return tie_se * noise(best)
    return max(tie_se * noise(best), tie_se**2 / n)


def _over_latency(attrs: dict) -> list[str]:
    """The latency budget a measured trial breaks, as its note says it (``p99 153.468 ms > 50 ms``): the note named
    only the other budgets, and an "over" row had an empty one."""
    over, latency, key = attrs.get("over_budget_ms"), attrs.get("latency_ms"), attrs.get("latency_key")
    if not over or over <= 0 or latency is None or not key:
        return []
    return [f"{key.removesuffix('_ms')} {latency:.3f} ms > {latency - over:.4g} ms"]


TIMED = ("p50 ", "p90 ", "p99 ", "throughput ")  # the budgets a quieter reading can change (failure_text's words)


def over_profile(failures: list[str] | None) -> str:
    """A trial's note for the profile's budgets other than latency that it breaks ("" for none)."""
    return "over the profile's " + "; ".join(failures) if failures else ""


def run_folder(row: dict, out: Path | None = None) -> Path:
    """A trial's run folder: where :func:`located_run` finds it, else ``out/trials/<its name>`` where the recorded
    path is not there either (one recorded relative to where the search was started)."""
    run = Path(located_run(row["run"], out) or "")
    if out is not None and not (row["run"] and run.is_dir()):
        run = out / "trials" / run.name
    return run


def check_old_trials(rows: list[dict], budget, out: Path | None = None) -> None:
    """Trials measured by an edgetransfer that checked latency alone (a search resumed across versions): checked
    now against the profile's other budgets from their run's bench.json, or counted over when it cannot be read,
    never taken as within unchecked."""
    from edgetransfer.bench.profiles import check_budgets
    from edgetransfer.search.trial import failure_text

    if not budget.others:
        return
    for r in rows:
        if r["state"] != "done" or r.get("budget_checked", True) or r["latency_ms"] is None:
            continue
        try:
            results = json.loads((run_folder(r, out) / "bench.json").read_text(encoding="utf-8"))["results"]
            failed = [c for c in check_budgets(results, dict(budget.others)) if not c["passed"]]
            r["budget_failures"] = [failure_text(c) for c in failed] or None
        except (OSError, ValueError, KeyError, TypeError):
            r["budget_failures"] = [
                "not checked: measured before the search checked them, and no readable bench.json in its run (a "
                "trial measured on a device keeps none)"
            ]
        r["budget_checked"] = True
        r["within_budget"] = bool(r["within_budget"]) and not r["budget_failures"]
        if r["budget_failures"]:
            over = over_profile(r["budget_failures"])
            r["note"] = f"{r['note']}; {over}" if r["note"] else over


def _within(row: dict, limit_ms: float) -> bool:
    """Within the latency budget and every other budget of the profile (model size, memory, throughput)."""
    return row["latency_ms"] <= limit_ms and not row.get("budget_failures")


def recommend(rows: list[dict], limit_ms: float, tie_se: float = TIE_SE) -> dict[str, Any]:
    """The recommended trial within ``limit_ms``: the most accurate on validation (of equal scores, the fastest).
    ``faster_within_noise`` is the fastest other trial within the budget whose validation top-1 is within ``tie_se``
    standard errors of it (a difference the validation split cannot tell apart), for the verdict to name: it is not
    recommended, because where an earlier rule recommended it (six searches, benchmarks/results/search_run9.md) its
    test top-1 was never higher and up to 17 points lower. When none is within the budget, ``row`` is None and
    ``closest`` the fastest one."""
    done = measured(rows)
    within = [r for r in done if _within(r, limit_ms)]
    if within:
        best = max(within, key=lambda r: (r["val_top1"], -r["latency_ms"]))
        band = tie_band(best, tie_se)
        tied = [r for r in within if r["val_top1"] >= best["val_top1"] - band - 1e-12]
        fastest = min(tied, key=lambda r: (r["latency_ms"], -r["val_top1"]))
        return {"row": best, "margin_ms": limit_ms - best["latency_ms"], "closest": None, "most_accurate": best,
                "faster_within_noise": fastest if fastest is not best else None, "tie_points": 100 * band}  # fmt: skip
    closest = min(done, key=lambda r: r["latency_ms"]) if done else None
    return {"row": None, "margin_ms": None, "closest": closest, "most_accurate": None, "faster_within_noise": None,
            "tie_points": None}  # fmt: skip


def document(rows: list[dict], *, budget, space: dict, profile: str, data: str) -> dict[str, Any]:
    """The search's results as one JSON-ready document."""
    rec = recommend(rows, budget.limit_ms)
    return {
        "kind": "edgetransfer.search",
        "profile": profile,
        "data": data,
        "budget": {
            "key": budget.key,
            "limit_ms": budget.limit_ms if math.isfinite(budget.limit_ms) else None,
            "others": dict(budget.others),
        },
        "space": space,
        "counts": {  # a repeat (a candidate sampled again: no model of its own) is counted apart, as the front does
            **{
                s: sum(r["state"] == s and r["same_as"] is None for r in rows)
                for s in ("done", "pruned", "skipped", "failed", "running", "queued")
            },
            "repeats": sum(r["same_as"] is not None for r in rows),
        },
        "pareto": [r["number"] for r in pareto_front(rows)],
        "recommended": rec["row"]["number"] if rec["row"] else None,
        "margin_ms": rec["margin_ms"] if rec["margin_ms"] is not None and math.isfinite(rec["margin_ms"]) else None,
        "most_accurate": rec["most_accurate"]["number"] if rec["most_accurate"] else None,
        "faster_within_noise": rec["faster_within_noise"]["number"] if rec["faster_within_noise"] else None,
        "tie_points": rec["tie_points"],
        "closest": rec["closest"]["number"] if rec["closest"] else None,
        "trials": rows,
    }


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}%"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _val(r: dict) -> str:
    """A trial's val top-1: its model's, or for one stopped before export (pruned, failed) its last epoch's."""
    return _pct(r["val_top1"]) if r["val_top1"] is not None else _pct(r["last_val_top1"])


def _name(r: dict) -> str:
    return f"{r['backbone']} {r['size']}px {r['int8']}" if r["backbone"] else "(not sampled yet)"


NOTE_MIN = 30  # columns a note needs beside the others; with less, the notes go under the table


def trials_table(rows: list[dict], budget, *, title: str = "trials", width: int | None = None) -> Table:
    """Every trial with its state (done, pruned, failed, running), figures and who ran it; the best so far marked.
    Where the columns and a note of :data:`NOTE_MIN` characters do not fit in ``width`` (default: stderr's, where
    the live table goes; the final tables pass stdout's), the worker column is left out, the rules too, and each note
    is a line under the table: at 80 columns every column was cut, the candidate too (every EfficientNet-Lite read
    "effici… 32px static"), and each note wrapped a word per line (a new user's trial)."""
    from rich import box

    from edgetransfer import console

    rec = recommend(rows, budget.limit_ms)["row"]
    headers = ["#", "candidate", "state", "epochs", "val top-1", f"{budget.label} ms", "budget", "worker"]
    cells, notes = [], []
    for r in rows:
        within = "" if r["within_budget"] is None else ("within" if r["within_budget"] else "over")
        state = r["state"] + (f" (= #{r['same_as']})" if r["same_as"] is not None else "")
        best = rec is not None and r["number"] == rec["number"]
        cells.append(
            [str(r["number"]), _name(r), state + (" [best]" if best else ""), str(r["epochs"] or ""), _val(r)]
            + [_ms(r["latency_ms"]), within, r["worker"] or ""]
        )
        notes.append(textwrap.shorten(r["note"] or "", 120, placeholder=" ..."))
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    narrow = sum(w + 3 for w in widths) + 1 + NOTE_MIN > (width or console.err.width)
    table = Table(title=title, title_justify="left", caption_justify="left")
    if narrow:  # (no vertical rules, which took 24 of 80 columns, and short headings)
        table.box, table.pad_edge, table.collapse_padding = box.SIMPLE_HEAD, False, True
        headers = [{"epochs": "ep", "val top-1": "val"}.get(h, h) for h in headers[:-1]]
    for column in headers + ([] if narrow else ["note"]):
        table.add_column(
            column,
            justify="right" if column in ("#", "epochs", "ep", "val top-1", "val") else "left",
            no_wrap=column not in ("note", "worker"),
            ratio=1 if column == "note" else None,
        )
    for r, row, note in zip(rows, cells, notes, strict=True):
        best = rec is not None and r["number"] == rec["number"]
        table.add_row(*(row[:-1] if narrow else [*row, note]), style="bold green" if best else None)
    said = [f"#{r['number']}: {note}" for r, note in zip(rows, notes, strict=True) if note]
    if narrow and said:
        table.caption = "\n".join(said)
    return table


def pareto_table(rows: list[dict], budget) -> Table:
    table = Table(title=f"accuracy vs latency: the Pareto front ({budget.describe()})", title_justify="left")
    for column in ("#", "candidate", "val top-1", f"{budget.label} ms", "budget", "run"):
        table.add_column(column)
    for r in pareto_front(rows):
        within = "within" if _within(r, budget.limit_ms) else "over"
        table.add_row(str(r["number"]), _name(r), _pct(r["val_top1"]), _ms(r["latency_ms"]), within, r["run"] or "")
    return table


def verdict(rows: list[dict], budget) -> list[str]:
    """The recommendation in a line or two: the run, its figures and margin; or that no candidate meets the budget
    and the closest one."""
    rec = recommend(rows, budget.limit_ms)
    if rec["row"] is not None:
        r = rec["row"]
        margin = (
            f", {rec['margin_ms']:.3f} ms ({100 * rec['margin_ms'] / budget.limit_ms:.0f}%) under the budget"
            if math.isfinite(budget.limit_ms)
            else " (its worst over the profile's batch sizes; the profile sets no latency budget)"
        ) + ("; within the profile's other budgets" if budget.others else "")
        minimum = dict(budget.others).get("min_throughput")
        if minimum and r.get("throughput_ips"):  # the server profile's deciding budget (it was not shown)
            spare = r["throughput_ips"] / minimum - 1
            margin += f" (throughput {r['throughput_ips']:.0f} img/s >= {minimum:g}, {spare:+.0%})"
        test = f"; test top-1 {_pct(r['test_top1'])} (no choice of the search read the test split)"
        lines = [
            f"recommended: trial {r['number']}, {_name(r)}: val top-1 {_pct(r['val_top1'])}, "
            f"{budget.label} {r['latency_ms']:.3f} ms{margin}{test if r['test_top1'] is not None else ''}",
        ]
        if r.get("int8_note"):  # kept by the search, though export's budget would refuse it
            lines.append(
                f"  note: {r['int8_note']}; it is still the most accurate trial within the budget"
                + (f" ({_qat(r, rows)})" if r["int8"] == "static" else "")
            )
        fast = rec["faster_within_noise"]
        if fast is not None:
            lines.append(
                f"  trial {fast['number']} ({_name(fast)}) is {r['latency_ms'] / fast['latency_ms']:.2f}x faster and "
                f"scored {100 * (r['val_top1'] - fast['val_top1']):.2f} points less on validation, within the pick's "
                f"validation noise ({rec['tie_points']:.2f} points on {r['val_images']} images): the split cannot tell "
                "them apart, though on held-out sets such a faster trial was more often less accurate on test; "
                "take it if speed matters more" + (f"; note: its {fast['int8_note']}" if fast.get("int8_note") else "")
            )
        # the margins and the "x faster" above rest on these latencies; a more accurate trial read too slow may
        # have lost the pick to this one
        better = [x for x in measured(rows) if x["val_top1"] is not None and x["val_top1"] > r["val_top1"]]
        doubtful = [row for row in (r, fast, *better) if row is not None and _busy(row)]
        lines += _busy_note(
            doubtful,
            "before trusting the figures above (edgetransfer bench RUN --profile ...), and run one worker per "
            "machine where latency decides",
        )
        return [*lines, f"run: {r['run']}"]
    if rec["closest"] is None:
        return ["no trial finished with a measured model yet; nothing to recommend"]
    c = rec["closest"]
    over = [f"{c['latency_ms'] - budget.limit_ms:.3f} ms over"] if c["latency_ms"] > budget.limit_ms else []
    over += [over_profile(c.get("budget_failures"))] if c.get("budget_failures") else []
    # only where a quiet reading could meet the budget: a trial read beside another at up to 5x its quiet figure
    # (measured here), a noisy one by its noise (a trial 34x over it was named: a new user's trial)
    # (and not one that breaks a budget no reading changes, model size or top-1: "measure again" was said of a
    # trial over the profile's model size alone; a new user's trial)
    could = [
        row
        for row in measured(rows)
        if _busy(row)
        and row["latency_ms"] <= budget.limit_ms * (BESIDE_FACTOR if row.get("beside") else NOISY_FACTOR)
        and not any(not f.startswith(TIMED) for f in row.get("budget_failures") or ())
    ]
    busy = _busy_note(could, "before concluding that nothing meets the budget")
    return [
        f"no candidate meets the budget {budget.describe()}: the closest is trial {c['number']}, {_name(c)}, "
        f"{budget.label} {c['latency_ms']:.3f} ms ({'; '.join(over)}), "
        f"val top-1 {_pct(c['val_top1'])}; run: {c['run']}",
        *busy,
    ]


def label_lifts(points: list[tuple[float, float]], near: float = 0.04) -> list[int]:
    """For each point's label, how many label lines to lift it so that it does not overwrite the label of an
    earlier point close to it (within ``near`` of each axis's range): trials of equal score and similar latency
    printed their labels on top of each other in search.html."""
    if not points:
        return []
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    dx, dy = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    lifts: list[int] = []
    for i, (x, y) in enumerate(points):
        taken = {
            lifts[j] for j in range(i) if abs(points[j][0] - x) <= near * dx and abs(points[j][1] - y) <= near * dy
        }
        lifts.append(next(k for k in range(len(points)) if k not in taken))
    return lifts


def _qat(row: dict, rows: list[dict]) -> str:
    """What became of a static trial's quantization-aware sibling (the same backbone and size), for the verdict."""
    sibling = next(
        (x for x in rows if (x["backbone"], x["size"], x["int8"]) == (row["backbone"], row["size"], "qat")), None
    )
    if sibling is None:
        return "its QAT sibling was not tried"
    if sibling["state"] == "done" and sibling["val_top1"] is not None:
        return f"its QAT sibling, trial {sibling['number']}, scored {_pct(sibling['val_top1'])}"
    return f"its QAT sibling, trial {sibling['number']}, is {sibling['state']}"


FAR_BUDGET = 3.0  # a budget past this many times the slowest trial is named in the legend, not drawn on the axis


def _figure(rows: list[dict], budget, recommended: int | None = None):
    """The accuracy-vs-latency scatter with the Pareto front, the budget and the recommended trial (a ring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done, front = measured(rows), pareto_front(rows)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for backbone in sorted({r["backbone"] for r in done}):
        mine = [r for r in done if r["backbone"] == backbone]
        ax.scatter([r["latency_ms"] for r in mine], [100 * r["val_top1"] for r in mine], label=backbone, alpha=0.8)
    latencies = [r["latency_ms"] for r in done]
    spread = bool(latencies) and min(latencies) > 0 and max(latencies) / min(latencies) > 10
    if spread:
        ax.set_xscale("log")  # 0.2 ms and 75 ms on one axis: linear would stack the fast ones in one corner
    points = [(math.log10(r["latency_ms"]) if spread else r["latency_ms"], 100 * r["val_top1"]) for r in done]
    for r, lift in zip(done, label_lifts(points), strict=True):
        ax.annotate(
            f"#{r['number']} {r['size']} {r['int8']}",
            (r["latency_ms"], 100 * r["val_top1"]),
            xytext=(4, 2 + 9 * lift),
            textcoords="offset points",
            fontsize=7,
        )
    if len({(r["latency_ms"], r["val_top1"]) for r in front}) > 1:  # one point is no front to draw: its row says it
        ax.plot([r["latency_ms"] for r in front], [100 * r["val_top1"] for r in front], "k--", lw=1, label="Pareto")
    pick = next((r for r in done if r["number"] == recommended), None)
    if pick is not None:
        ax.scatter([pick["latency_ms"]], [100 * pick["val_top1"]], s=160, facecolors="none", edgecolors="green",
                   linewidths=2, label=f"recommended (#{pick['number']})")  # fmt: skip
    if math.isfinite(budget.limit_ms):
        if latencies and budget.limit_ms > FAR_BUDGET * max(latencies):  # drawn to scale, it squeezed every point
            ax.plot([], [], color="red", lw=1, label=f"budget {budget.limit_ms:g} ms (off the axis, right)")
        else:  # into the left of the axis and piled their labels up (a new user's search: 33 ms, points under 4)
            ax.axvline(budget.limit_ms, color="red", lw=1, label=f"budget {budget.limit_ms:g} ms")
    low, high = ax.get_ylim()
    ax.set_ylim(low, min(high, 101.0))  # no axis up to 104 % top-1
    ax.set_xlabel(f"{budget.label} latency (ms)")
    ax.set_ylabel("validation top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plot_png(rows: list[dict], budget, recommended: int | None = None) -> str:
    """:func:`_figure` as base64 PNG."""
    import matplotlib.pyplot as plt

    fig = _figure(rows, budget, recommended)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def to_html(doc: dict, budget) -> str:
    rows = doc["trials"]
    esc = html.escape
    head = ["#", "candidate", "state", "epochs", "val top-1", f"{budget.label} ms", "budget", "worker", "run", "note"]
    body = []
    for r in rows:
        within = "" if r["within_budget"] is None else ("within" if r["within_budget"] else "over")
        cells = [r["number"], _name(r), r["state"] + (f" (= #{r['same_as']})" if r["same_as"] is not None else "")]
        cells += [r["epochs"] or "", _val(r), _ms(r["latency_ms"]), within, r["worker"] or ""]
        cells += [r["run"] or "", r["note"]]
        mark = ' class="best"' if r["number"] == doc["recommended"] else ""
        body.append(f"<tr{mark}>" + "".join(f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>")
    front = "".join(
        f"<tr><td>{r['number']}</td><td>{esc(_name(r))}</td><td>{_pct(r['val_top1'])}</td>"
        f"<td>{_ms(r['latency_ms'])}</td></tr>"
        for r in pareto_front(rows)
    )
    png = _plot_png(rows, budget, doc["recommended"]) if measured(rows) else None
    plot = f'<img alt="accuracy vs latency" src="data:image/png;base64,{png}">' if png else ""
    lines = "".join(f"<p>{esc(line)}</p>" for line in verdict(rows, budget))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>edgetransfer search</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:3px 8px}tr.best{background:#dfd;font-weight:bold}</style></head><body>"
        f"<h1>edgetransfer search</h1><p>data {esc(doc['data'])}; profile {esc(doc['profile'])}; "
        f"budget {esc(budget.describe())}; trials: "
        + ", ".join(f"{v} {k}" for k, v in doc["counts"].items())
        + f"</p>{lines}{plot}<h2>Pareto front</h2><table><tr><th>#</th><th>candidate</th><th>val top-1</th>"
        f"<th>{budget.label} ms</th></tr>{front}</table><h2>Every trial</h2><table><tr>"
        + "".join(f"<th>{esc(h)}</th>" for h in head)
        + "</tr>"
        + "".join(body)
        + "</table></body></html>\n"
    )


def write(folder: Path, doc: dict, budget) -> list[Path]:
    """search.json and search.html in ``folder`` (each written atomically)."""
    paths = [Path(folder) / REPORT_JSON, Path(folder) / REPORT_HTML]
    atomic_write_text(paths[0], json.dumps(doc, indent=1, default=str) + "\n")
    atomic_write_text(paths[1], to_html(doc, budget))
    return paths
