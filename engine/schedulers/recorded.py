"""Read back what the study database recorded about the scheduler, so that resume can restore it.

The schedulers themselves do no I/O; this module is the one place that turns rows into their
``RecordedTrial`` values: each started trial's bracket (``trials.bracket``), its objective
results with their resource, and its ``scheduler`` events (promotions and stops, written in the
same transaction as the metrics they judged). Trials come in start order, which is the order
in which the live study dealt them to brackets.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .base import Action, RecordedDecision, RecordedTrial, Scheduler

if TYPE_CHECKING:
    from ..database.store import EventRow, Store, TrialRow


def recorded_trials(store: "Store", study_id: int, metric: str, resource_key: str) -> list[RecordedTrial]:
    """The study's started trials as the scheduler saw them live, in start order."""
    started = sorted((t for t in store.trials(study_id) if t.started_at is not None),
                     key=lambda t: (t.started_at, t.number))
    resources = _resources(store, study_id, resource_key)
    results: dict[int, list[tuple[float, float]]] = {}
    for trial_id, step, value in store.metric_history(study_id, metric):
        if math.isfinite(value):
            results.setdefault(trial_id, []).append((resources.get((trial_id, step), step), value))
    decisions: dict[int, list[RecordedDecision]] = {}
    numbers = {t.id: t.number for t in started}
    for event in store.events(study_id, kinds=("scheduler",)):
        if event.trial_id in numbers:
            decision = _decision(event, numbers[event.trial_id], resources)
            if decision is not None:
                decisions.setdefault(event.trial_id, []).append(decision)
    return [_trial(t, results, decisions) for t in started]


def restore_scheduler(scheduler: Scheduler, store: "Store", study_id: int, metric: str, resource_key: str) -> None:
    """Restore ``scheduler`` from the database, then tell it which trials have already ended."""
    trials = recorded_trials(store, study_id, metric, resource_key)
    scheduler.restore(trials)
    for trial in trials:
        if not trial.running:
            scheduler.on_trial_end(trial.trial_id)


def _trial(row: "TrialRow", results: dict[int, list[tuple[float, float]]],
           decisions: dict[int, list[RecordedDecision]]) -> RecordedTrial:
    return RecordedTrial(trial_id=row.id, bracket=row.bracket, results=tuple(results.get(row.id, ())),
                         decisions=tuple(decisions.get(row.id, ())), running=row.status == "running")


def _resources(store: "Store", study_id: int, resource_key: str) -> dict[tuple[int, float], float]:
    """(trial id, step) -> the resource reported at that step, where the line carried the resource key."""
    if resource_key == "step":
        return {}
    return {(trial_id, step): value for trial_id, step, value in store.metric_history(study_id, resource_key)
            if math.isfinite(value)}


def _decision(event: "EventRow", number: int, resources: dict[tuple[int, float], float]) -> RecordedDecision | None:
    """The decision one ``scheduler`` event records; None for an event without the result it judged."""
    data: dict[str, Any] = event.data
    action = data.get("action")
    if action not in (Action.STOP.value, Action.CONTINUE.value) or not _number(data.get("step")) \
            or not _number(data.get("value")):
        return None
    step = float(data["step"])
    resource = float(data["resource"]) if _number(data.get("resource")) else \
        resources.get((event.trial_id or 0, step), step)  # older events: the metric of that step says it
    rung = float(data["rung"]) if _number(data.get("rung")) else None
    prefix = f"trial {number} "
    reason = event.message[len(prefix):] if event.message.startswith(prefix) else event.message
    return RecordedDecision(action=Action(action), resource=resource, value=float(data["value"]), rung=rung,
                            reason=reason)


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
