"""Optional tracking in MLflow's convention: each trial a run with its parameters, metrics (the validation curve
too) and artifacts (the card and the bench report); a local store (``FOLDER/mlflow.db`` and ``FOLDER/artifacts``)
when a folder is given rather than a server's URI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.markup import escape

from edgetransfer import console
from edgetransfer.errors import UsageError

METRICS = ("val_top1", "torch_val_top1", "latency_ms", "p50_ms", "p99_ms", "model_mb", "seconds", "over_budget_ms")
METRICS += ("within_budget",)  # 1 within every budget of the profile, 0 over one (budget_failures, a tag, says which)


class Logger:
    """``log(study, trial)`` records a finished trial; ``log.remeasured(study, number, figures)`` a trial's latency
    measured again after the search."""

    def __init__(self, log: Callable, remeasured: Callable) -> None:
        self._log, self.remeasured = log, remeasured

    def __call__(self, study, trial) -> None:
        self._log(study, trial)


def _warn(number: int, exc: Exception, *, after: bool = False) -> None:
    """``after``: the search's trials are over (a re-measure after them): it does not "go on"."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    console.err.print(
        f"[yellow]warning: MLflow did not take trial {number} ({type(exc).__name__}: {escape(first)}); "
        + ("" if after else "the search goes on, ")
        + "its own records are complete[/]"
    )


def _metrics(figures: dict) -> dict[str, float]:
    return {k: float(figures[k]) for k in METRICS if isinstance(figures.get(k), (int, float))}


def mlflow_logger(uri: str, experiment: str) -> Logger:
    """A callback ``log(study, trial)`` that records a finished trial in MLflow at ``uri`` (a tracking server's URL
    or a local folder), in the experiment ``edgetransfer-search-<experiment>``. Raises a :class:`UsageError` when
    MLflow is not installed (checked before the search starts)."""
    try:
        import mlflow
    except ModuleNotFoundError:
        raise UsageError("--mlflow needs MLflow: pip install 'edgetransfer[mlflow]'") from None
    artifacts = None
    if "://" in uri:
        mlflow.set_tracking_uri(uri)
    else:  # a local store: MLflow 3 keeps runs in a SQLite file (its file store is refused), artifacts beside it
        folder = Path(uri).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
        artifacts = (folder / "artifacts").as_uri()
    name = f"edgetransfer-search-{experiment}"
    if mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=artifacts)
    mlflow.set_experiment(name)

    def log(study, trial) -> None:
        """One trial logged; a tracking server gone mid-search is a warning, not the search's end."""
        try:
            _log(study, trial)
        except Exception as exc:  # noqa: BLE001 - MLflow's and its HTTP client's errors, whatever they are
            _warn(trial.number, exc)

    def remeasured(study, number: int, figures: dict) -> None:
        """The latency figures of trial ``number`` measured again after the search (see the study's re-measure):
        logged to the trial's run as step 1 of the same metrics (MLflow keeps step 0, the first reading, in their
        history; the run shows the last), with a tag giving the first reading. A trial this logger did not log (a
        worker's, without --mlflow) is left alone."""
        try:
            runs = mlflow.search_runs(
                experiment_names=[name],
                filter_string=f"tags.study = '{study.study_name}' and attributes.run_name = 'trial-{number}'",
                output_format="list",
            )  # newest first
            if not runs:
                return
            with mlflow.start_run(run_id=runs[0].info.run_id):
                for key, value in _metrics(figures).items():
                    mlflow.log_metric(key, value, step=1)
                first = figures.get("first_ms")
                said = f"{first:.3f} ms" if isinstance(first, (int, float)) else "not recorded"
                mlflow.set_tag("latency_measured_again", f"after the search; first read {said}")
                # the profile's other budgets, checked again with it: the first reading's tag would contradict it
                if figures.get("budget_failures"):
                    mlflow.set_tag("budget_failures", "; ".join(figures["budget_failures"]))
                elif "budget_failures" in runs[0].data.tags:
                    mlflow.delete_tag("budget_failures")
        except Exception as exc:  # noqa: BLE001 - as in log()
            _warn(number, exc, after=True)

    def _log(study, trial) -> None:
        attrs = trial.user_attrs
        with mlflow.start_run(run_name=f"trial-{trial.number}"):
            mlflow.log_params({k: attrs[k] for k in ("backbone", "size", "int8") if k in attrs})
            mlflow.log_params({k: v for k, v in study.user_attrs.get("config", {}).items() if v is not None})
            metrics = _metrics(attrs)
            if metrics:
                mlflow.log_metrics(metrics)
            for step, value in sorted(trial.intermediate_values.items()):
                mlflow.log_metric("epoch_val_top1", value / 100, step=step)
            tags = {"state": trial.state.name.lower(), "worker": attrs.get("worker", ""), "study": study.study_name}
            if attrs.get("same_as") is not None:
                tags["same_as"] = str(attrs["same_as"])
            if attrs.get("budget_failures"):
                tags["budget_failures"] = "; ".join(attrs["budget_failures"])
            mlflow.set_tags(tags)
            run = attrs.get("run")
            for name in ("card.json", "bench.json"):
                if run and (Path(run) / name).is_file():
                    mlflow.log_artifact(str(Path(run) / name))

    return Logger(log, remeasured)
