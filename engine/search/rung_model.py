"""The BOHB rule: with early stopping, fit the model on one rung, the highest with enough results.

A model that learns from every trial's last value compares a trial stopped after 1 epoch with
one that ran 27: on learning curves that cross (fast learners plateau low), the model chases
what looks good early, which is what ASHA already rewards. BOHB (Falkner, Klein & Hutter,
"BOHB: Robust and Efficient Hyperparameter Optimization at Scale", ICML 2018, section 4 and
Algorithm 2) instead fits its model on the observations made at a single budget: the largest
budget ``b`` with ``|D_b| >= N_min + 2`` observations, ``N_min = d + 1`` for ``d`` parameters.

Here a trial's observation at rung ``r`` is the objective it reported at the last report with
resource ``<= r``, counted only when the trial got to ``r`` (a trial stopped at 3 epochs says
nothing about epoch 9). Rungs are the scheduler's ladder (``min_resource · η^k`` up to
``max_resource``); before any rung has ``d + 3`` results, the lowest rung is used (the model
then samples at random anyway: Optuna's TPE has 10 start-up trials).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..schedulers.rungs import ladder
from ..space_file.space import SchedulerSpec

Curve = Sequence[tuple[float, float]]  # (resource, objective) per report, in order


def rungs_for(spec: SchedulerSpec, seen_max: float | None = None) -> tuple[float, ...]:
    """The ladder the scheduler judges on (median: the same geometric ladder from its grace period)."""
    top = spec.max_resource or seen_max
    low = spec.min_resource if spec.type in ("asha", "hyperband") else max(spec.grace_period, spec.min_resource)
    if top is None or top <= low:
        return (low,)
    return ladder(low, top, spec.reduction_factor)


def value_at(curve: Curve, rung: float) -> float | None:
    """The objective at ``rung``: the last report at or below it, if the trial got that far."""
    if not curve or max(r for r, _ in curve) < rung * (1 - 1e-9):
        return None
    value = None
    for resource, v in curve:
        if resource <= rung * (1 + 1e-9) and math.isfinite(v):
            value = v
    return value


@dataclass
class RungObservations:
    """Finished trials' curves, and which rung the model should be fit on (the BOHB rule)."""

    rungs: tuple[float, ...]
    dims: int
    trials: list[tuple[dict[str, Any], Curve]] = field(default_factory=list)

    @property
    def needed(self) -> int:
        return self.dims + 3  # N_min + 2, N_min = d + 1

    def add(self, params: Mapping[str, Any], curve: Curve) -> None:
        if curve:
            self.trials.append((dict(params), tuple(curve)))

    def at(self, rung: float) -> list[tuple[dict[str, Any], float]]:
        result = []
        for params, curve in self.trials:
            value = value_at(curve, rung)
            if value is not None:
                result.append((params, value))
        return result

    def rung_to_fit(self) -> float:
        """The highest rung with ``d + 3`` observations, else the lowest rung."""
        for rung in reversed(self.rungs):
            if len(self.at(rung)) >= self.needed:
                return rung
        return self.rungs[0]
