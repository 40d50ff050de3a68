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


def mlflow_logger(uri: str, experiment: str) -> Callable:
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
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            console.err.print(
                f"[yellow]warning: MLflow did not take trial {trial.number} ({type(exc).__name__}: {escape(first)}); "
                "the search goes on, its own records are complete[/]"
            )

    def _log(study, trial) -> None:
        attrs = trial.user_attrs
        with mlflow.start_run(run_name=f"trial-{trial.number}"):
            mlflow.log_params({k: attrs[k] for k in ("backbone", "size", "int8") if k in attrs})
            mlflow.log_params({k: v for k, v in study.user_attrs.get("config", {}).items() if v is not None})
            metrics = {k: float(attrs[k]) for k in METRICS if isinstance(attrs.get(k), (int, float))}
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

    return log
