"""Median stopping rule (Golovin et al., 2017, Google Vizier).

At step ``t`` past the grace period, a trial is stopped when its best objective so far is
worse than the median of the other trials' running averages at ``t`` (the mean of each other
trial's values reported up to ``t``). Running averages rather than last values, because the
rule asks "is this trial already behind where a typical trial had got to on average", which
is robust to one lucky epoch. An "other trial" counts at step ``t`` only once it has reported
at ``t`` or later (finished and stopped trials included): a trial that never got that far
says nothing about step ``t``. Until ``min_trials`` other trials qualify, every trial goes on.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from ..space_file.space import SchedulerSpec
from .base import Action, Decision, RecordedTrial, Scheduler
from .rungs import EPS, fmt


class MedianStoppingScheduler(Scheduler):
    def __init__(self, spec: SchedulerSpec, metric: str, mode: str) -> None:
        super().__init__(spec, metric, mode)
        self._history: dict[int, list[tuple[float, float]]] = {}
        self._stopped: dict[int, Decision] = {}

    def on_result(self, trial_id: int, resource: float, value: float) -> Decision:
        if trial_id in self._stopped:
            return self._stopped[trial_id]
        if math.isnan(value):
            return Decision.go_on()  # NaN is the health detectors' business
        history = self._history.setdefault(trial_id, [])
        _note(history, resource, value)
        if resource < self.spec.grace_period * (1 - EPS):
            return Decision.go_on()
        averages = [avg for other, points in self._history.items()
                    if other != trial_id and (avg := _running_average(points, resource)) is not None]
        if len(averages) < self.spec.min_trials:
            return Decision.go_on()
        median = statistics.median(averages)
        best = self.best([v for _, v in history])
        if not self.worse(best, median):
            return Decision.go_on()
        decision = Decision(Action.STOP, (
            f"pruned at {self.spec.resource} {fmt(resource)}: best {self.metric} {fmt(best)} {self.worse_word} "
            f"median running average {fmt(median)} of {len(averages)} other trials"))
        self._stopped[trial_id] = decision
        return decision

    def restore(self, trials: Sequence[RecordedTrial]) -> None:
        """Each trial's results up to its recorded stop, and the stops themselves, as they were live."""
        for trial in trials:
            stop = trial.stop
            history = self._history.setdefault(trial.trial_id, [])
            for resource, value in trial.results:
                history.append((resource, value))
                if stop is not None and resource >= stop.resource * (1 - EPS) and value == stop.value:
                    break
            if stop is not None:
                self._stopped[trial.trial_id] = Decision(Action.STOP, stop.reason)

    def median_at(self, resource: float) -> tuple[float | None, int]:
        """(median of all trials' running averages at ``resource``, how many) — for the TUI."""
        averages = [avg for points in self._history.values()
                    if (avg := _running_average(points, resource)) is not None]
        return (statistics.median(averages) if averages else None), len(averages)


def _note(history: list[tuple[float, float]], resource: float, value: float) -> None:
    """Add one result; the same resource again replaces it (a resume judges an adopted trial's last
    recorded step once more, and live the loop never judges one step twice)."""
    if history and abs(history[-1][0] - resource) <= EPS * max(1.0, abs(resource)):
        history[-1] = (resource, value)
    else:
        history.append((resource, value))


def _running_average(points: list[tuple[float, float]], step: float) -> float | None:
    """Mean of the values reported up to ``step``; None when the trial has not reached ``step``."""
    if not points or max(r for r, _ in points) < step * (1 - EPS):
        return None
    values = [v for r, v in points if r <= step * (1 + EPS)]
    return sum(values) / len(values) if values else None
