"""Progress a person can follow: on a terminal a live table of every trial (running, pruned, done, the best so far)
redrawn after each epoch and trial; in a log a line per finished trial."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from edgetransfer import console
from edgetransfer.search import report


class Progress:
    """Redraws the trial table from the study (every worker's trials) when :meth:`refresh` is called."""

    def __init__(self, study, budget, out=None) -> None:
        self.study, self.budget, self.out = study, budget, out
        self.live = None
        self.said: set[int] = set()

    @contextlib.contextmanager
    def shown(self) -> Iterator[Progress]:
        if not console.err.is_terminal:
            yield self
            return
        from rich.live import Live

        with Live(self._table(), console=console.err, refresh_per_second=2, transient=True) as live:
            self.live = live
            try:
                yield self
            finally:
                self.live = None

    def _rows(self) -> list[dict]:
        return report.trial_rows(self.study.get_trials(deepcopy=False), out=self.out)

    def _table(self):
        rows = self._rows()
        states = ("running", "done", "pruned", "skipped", "failed")
        counts = ", ".join(f"{sum(r['state'] == s for r in rows)} {s}" for s in states)
        return report.trials_table(rows, self.budget, title=f"search: {counts}")

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._table())

    def finished(self, trial) -> None:
        """A trial of this worker ended: redraw, and in a log say it in one line."""
        self.refresh()
        if self.live is not None or trial.number in self.said:
            return
        self.said.add(trial.number)
        row = next((r for r in self._rows() if r["number"] == trial.number), None)
        if row is None:
            return
        figures = ""
        if row["val_top1"] is not None and row["latency_ms"] is not None:
            within = "within" if row["within_budget"] else "over"
            said = within == "over" and "over the profile's" in (row["note"] or "")  # it printed "(over) (over the"
            figures = f": val top-1 {100 * row['val_top1']:.2f}%, {self.budget.label} {row['latency_ms']:.3f} ms" + (
                "" if said else f" ({within})"
            )
        note = f" ({row['note']})" if row["note"] else ""
        same = f" (= trial {row['same_as']})" if row["same_as"] is not None else ""
        console.err.print(
            f"trial {row['number']} {row['state']}{same}: {report._name(row)}{figures}{note}", markup=False
        )
