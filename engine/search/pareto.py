"""Several objectives: which completed trials are on the Pareto front, read from the stored space.

A study whose ``objective:`` is a list is multi-objective. Its first objective drives early
stopping, patience and "best"; the front is what the user actually chooses from: the
completed trials no other completed trial dominates (at least as good on every objective and
better on one), judged on each trial's *last* reported value of each metric, the model it
ends with. A trial missing an objective (or with NaN) is never on the front.

:func:`stored_objectives` reads the list back from the space YAML stored with the study, so the
export, ``status`` and the TUI all see the same objectives without re-validating the file.
The front is computed here rather than with Optuna's private ``_is_pareto_front``: a sort on the
first objective and one pass against the front so far (O(n · front size)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import yaml

from ..database.records import TrialStatus

FRONT_STATUSES = frozenset({TrialStatus.COMPLETED})  # a stopped trial's values are partial


@lru_cache(maxsize=64)
def _objective_list(space_yaml: str) -> tuple[tuple[str, str], ...]:
    try:
        data = yaml.safe_load(space_yaml)
    except yaml.YAMLError:
        return ()
    raw = data.get("objective") if isinstance(data, dict) else None
    if not isinstance(raw, list) or len(raw) < 2:
        return ()
    result = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("metric"), str):
            return ()
        result.append((item["metric"], "min" if item.get("mode") == "min" else "max"))
    return tuple(result)


def stored_objectives(space_yaml: str | None) -> list[dict[str, str]] | None:
    """``[{"metric", "mode"}, ...]`` of a multi-objective study's stored space; None for one objective."""
    found = _objective_list(space_yaml or "")
    return [{"metric": m, "mode": mode} for m, mode in found] if found else None


def _point(last: Mapping[str, Any], objectives: Sequence[Mapping[str, str]]) -> tuple[float, ...] | None:
    """The trial's objectives as values to minimise, or None when one is missing or not finite."""
    point = []
    for o in objectives:
        value = last.get(o["metric"])
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return None
        point.append(-float(value) if o["mode"] == "max" else float(value))
    return tuple(point)


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(trials: Sequence[Mapping[str, Any]], objectives: Sequence[Mapping[str, str]]) -> set[Any]:
    """The ids of the non-dominated completed trials; each trial is ``{"id", "status", "last"}``."""
    points = []
    for t in trials:
        if t.get("status") in FRONT_STATUSES:
            point = _point(t.get("last") or {}, objectives)
            if point is not None:
                points.append((point, t["id"]))
    points.sort()  # lexicographic: no later point can dominate an earlier one
    front: list[tuple[tuple[float, ...], Any]] = []
    for point, trial_id in points:
        if not any(_dominates(kept, point) for kept, _ in front):
            front.append((point, trial_id))
    return {trial_id for _, trial_id in front}


def front_lines(trials: Sequence[Mapping[str, Any]], objectives: Sequence[Mapping[str, str]]) -> list[str]:
    """What ``status`` and the headless summary print: the front, sorted on the first objective."""
    on_front = [t for t in trials if t.get("pareto")]
    completed = sum(1 for t in trials if t.get("status") in FRONT_STATUSES)
    names = ", ".join(f"{o['metric']} ({o['mode']})" for o in objectives)
    if not on_front:
        return [f"pareto front of {names}: no completed trial reported every objective yet"]
    first = objectives[0]
    on_front.sort(key=lambda t: t["last"][first["metric"]], reverse=first["mode"] == "max")
    lines = [f"pareto front of {names}: {len(on_front)} of {completed} completed trials"]
    for t in on_front:
        values = " ".join(f"{o['metric']}={t['last'][o['metric']]:.4g}" for o in objectives)
        params = " ".join(f"{k}={_short(v)}" for k, v in t.get("params", {}).items())
        lines.append(f"  trial {t['id']:<4} {values}  {params}")
    return lines


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:.4g}" if isinstance(value, float) else str(value)
