"""Boundary warnings: the best trials crowd one end of a numeric range, so the range was wrong.

When the optimum lies outside the searched range, every later stage that narrows around the
best trials stays pinned against that wall. No popular tool says so; this module does, from the
finished trials alone (pure functions, plus one store read for the study loop).

The rule, in the parameter's own scale (log space for log parameters, so ``[1e-5, 1]`` has five
equal decades), with ``u`` the position of a value in the range (0 = low, 1 = high):

* at least ``min_trials`` finished trials with a finite objective;
* the top ``K`` trials, ``K = top`` if given, else ``max(3, ceil(20 % of them))``;
* *upper edge*: the single best trial lies in the outer tenth (``u >= 0.9``) **and** the top
  ``K`` lie, on average, in the outer quarter (mean ``u >= 0.75``); *lower edge*: the mirror
  image (``u <= 0.1``, mean ``u <= 0.25``).

No warning is given on a side that is the parameter's own limit and cannot be widened: 0 below a
linear range that starts at 0 (dropout, weight decay: "none is best" is an answer, not a wrong
range), 1 above a range inside [0, 1] that ends at 1 (momentum).

The second condition tells "the objective keeps improving toward the wall" from "one lucky trial
landed near it". Measured on a uniform [0, 1] parameter (4000 simulated studies each): under a
flat objective a parameter is flagged (either side) in 5 % of studies at 10 trials, 3 % at 20 and
0.3 % at 40; with the objective rising to the edge (noise 5 % of its range) it is flagged in 55 %,
79 % and 92 %.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..database.records import RANKED_STATUSES
from ..space_file.space import Param, Space

EDGE = 0.1
TOP_MEAN_EDGE = 0.25  # how close to the edge the top group's mean position must be
TOP_FRACTION = 0.2
MIN_TOP = 3
MIN_TRIALS = 10

Result = tuple[Mapping[str, Any], float]  # (params, objective value) of one finished trial


@dataclass(frozen=True)
class BoundaryWarning:
    param: str
    side: str  # "upper" | "lower"
    text: str  # what status, export and refine print


def position(param: Param, value: Any) -> float | None:
    """Where ``value`` sits in the parameter's range, 0 at low and 1 at high (log space where log)."""
    if not param.is_numeric or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    low, high, x = float(param.low), float(param.high), float(value)  # type: ignore[arg-type]
    if param.log:
        if x <= 0:
            return None
        low, high, x = math.log(low), math.log(high), math.log(x)
    if high <= low:
        return None
    return (x - low) / (high - low)


def at_limit(param: Param, side: str) -> bool:
    """True when ``side`` of the range is a limit the parameter cannot go past (see module docstring)."""
    if param.log or param.low is None or param.high is None or param.low < 0:
        return False
    return param.low == 0 if side == "lower" else param.high == 1


def rank(results: Sequence[Result], mode: str) -> list[Result]:
    """Finite results, best first (ties keep their recording order)."""
    finite = [r for r in results if isinstance(r[1], (int, float)) and math.isfinite(r[1])]
    return sorted(finite, key=lambda r: -r[1] if mode == "max" else r[1])


def top_count(n: int, top: int | None = None) -> int:
    """How many of ``n`` finished trials count as "the best trials"."""
    k = top if top is not None else max(MIN_TOP, math.ceil(TOP_FRACTION * n))
    return max(1, min(k, n))


def format_bound(x: float) -> str:
    """Short, exact-enough text for a bound: ``1e-5``, ``0.5``, ``512``."""
    text = f"{x:.4g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def boundary_warnings(params: Sequence[Param], results: Sequence[Result], mode: str, *,
                      min_trials: int = MIN_TRIALS, top: int | None = None) -> list[BoundaryWarning]:
    """Warnings for numeric parameters whose best trials sit in an outer tenth of the range.

    A conditional parameter (``when:``) is judged on the trials where it was active only: the
    best SGD trials say where momentum belongs, the Adam trials say nothing about it.
    """
    ranked = rank(results, mode)
    warnings = []
    for param in params:
        if not param.is_numeric:
            continue
        best = _best_where_active(param, ranked, min_trials, top)
        if not best:
            continue
        where = [position(param, r[0].get(param.name)) for r in best]
        known = [u for u in where if u is not None]
        if where[0] is None:
            continue
        mean = sum(known) / len(known)
        for side, at_edge in (("upper", where[0] >= 1 - EDGE and mean >= 1 - TOP_MEAN_EDGE),
                              ("lower", where[0] <= EDGE and mean <= TOP_MEAN_EDGE)):
            if at_edge and not at_limit(param, side):
                direction = "upward" if side == "upper" else "downward"
                text = (f"{param.name}: best trials at the {side} edge of [{format_bound(param.low)}, "  # type: ignore[arg-type]
                        f"{format_bound(param.high)}]: widen the range {direction}")  # type: ignore[arg-type]
                warnings.append(BoundaryWarning(param.name, side, text))
    return warnings


def _best_where_active(param: Param, ranked: Sequence[Result], min_trials: int, top: int | None) -> list[Result]:
    """The top trials among those where ``param`` was active; none when fewer than ``min_trials`` had it."""
    active = [r for r in ranked if param.name in r[0]] if param.when else list(ranked)
    if len(active) < max(1, min_trials):
        return []
    return active[:top_count(len(active), top)]


def finished_results(store: Any, study_id: int) -> list[Result]:
    """(params, best objective value) of the study's trials that finished with a finite value."""
    return [(t.params, t.best_value) for t in store.trials(study_id, statuses=RANKED_STATUSES)
            if t.best_value is not None and math.isfinite(t.best_value)]


def study_warnings(space: Space, store: Any, study_id: int) -> list[str]:
    """The warning lines for a study as it stands; the loop stores them with ``store.set_warnings``."""
    results = finished_results(store, study_id)
    return [w.text for w in boundary_warnings(space.params, results, space.objective.mode)]
