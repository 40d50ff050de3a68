"""Search backbone x input size x int8 method for the most accurate model within a device's latency budget, on
Optuna: :mod:`.config` (the options and the candidates), :mod:`.trial` (one trial: finetune -> export -> bench),
:mod:`.storage` (the study's storage, dead workers), :mod:`.study` (:func:`search`), :mod:`.live` (progress),
:mod:`.report` (Pareto front, recommendation, tables, HTML) and :mod:`.tracking` (MLflow)."""

from edgetransfer.durations import parse_duration
from edgetransfer.search.config import SearchConfig, Space, build_space
from edgetransfer.search.study import SearchResult, search

__all__ = ["SearchConfig", "SearchResult", "Space", "build_space", "parse_duration", "search"]
