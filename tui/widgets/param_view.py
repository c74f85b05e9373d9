"""The parameter view (``a``): the objective against each parameter, the top trials marked.

One scatter per parameter (log x where the space file searched it in log, choices as their
values), the top tenth of the trials (at least three) drawn over the rest in their own mark.
Above them, the parameters ranked by importance with Optuna's own evaluator (fANOVA) when Optuna
is installed: an in-memory Optuna study is built from the finished trials with
``optuna.trial.create_trial``, nothing is written anywhere. With two objectives (``objective:``
as a list) the Pareto front of the first two comes first.

Everything here runs in the refresh worker; plotext's global figure is guarded by the chart lock.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from rich.text import Text
from textual.widgets import Static

from ..data import StudyPlan
from .curve_chart import Series, render_chart

CHART_WIDTH, CHART_HEIGHT = 40, 10
TOP_SHARE = 0.1
_IMPORTANCE_CACHE: dict[tuple[int, int], tuple[str, ...] | str] = {}
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Scored:
    number: int
    params: Mapping[str, Any]
    value: float


def top_count(n: int) -> int:
    return min(n, max(3, math.ceil(n * TOP_SHARE)))


def ranked(scored: Sequence[Scored], mode: str) -> list[Scored]:
    return sorted(scored, key=lambda s: s.value, reverse=mode == "max")


def side_by_side(charts: Sequence[Text], width: int) -> Text:
    """Charts of ``width`` cells laid out left to right, one space apart."""
    split = [c.split("\n") for c in charts]
    rows = max(len(s) for s in split)
    out = []
    for i in range(rows):
        line = Text(no_wrap=True)
        for j, lines in enumerate(split):
            piece = lines[i].copy() if i < len(lines) else Text()
            piece.truncate(width, pad=True)
            if j:
                line.append(" ")
            line.append_text(piece)
        out.append(line)
    return Text("\n").join(out)


def param_axis(name: str, plan: StudyPlan, scored: Sequence[Scored]
               ) -> tuple[Callable[[Scored], float | None], tuple[list[float], list[str]] | None]:
    """How a trial's value of ``name`` becomes an x position: numbers as they are, choices by index."""
    spec = plan.ranges.get(name, {})
    values = [s.params.get(name) for s in scored]
    if spec.get("type") != "choice" and not any(isinstance(v, str) for v in values):
        return (lambda s: _number(s.params.get(name))), None
    choices = [str(c) for c in spec.get("values", [])] or sorted({str(v) for v in values})
    index = {c: float(i) for i, c in enumerate(choices)}
    return (lambda s: index.get(str(s.params.get(name)))), (list(index.values()), choices)


def param_chart(name: str, plan: StudyPlan, scored: Sequence[Scored], top: Sequence[Scored], metric: str,
                width: int, color: bool) -> Text:
    pick, ticks = param_axis(name, plan, scored)
    series = [_points("trials", pick, scored), _points(f"top {len(top)}", pick, top)]
    log_x = plan.is_log(name) and ticks is None
    return render_chart(series, width, CHART_HEIGHT, title=f"{metric} vs {name}" + (" (log x)" if log_x else ""),
                        lines=False, log_x=log_x, color=color, xticks=ticks, empty="no finished trial with it")


def _points(label: str, pick: Callable[[Scored], float | None], trials: Sequence[Scored]) -> Series:
    pairs = [(x, s.value) for s in trials if (x := pick(s)) is not None]
    return Series(label, [x for x, _ in pairs], [y for _, y in pairs])


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def importances(study_id: int, plan: StudyPlan, scored: Sequence[Scored], mode: str) -> tuple[str, ...] | str:
    """Parameter importances by Optuna's fANOVA evaluator, best first; a sentence when not possible."""
    key = (study_id, len(scored))
    with _CACHE_LOCK:
        if key in _IMPORTANCE_CACHE:
            return _IMPORTANCE_CACHE[key]
    try:
        import optuna  # optional (the tpe extra): without it the pane says how to get importances
    except ImportError:
        return "parameter importances need Optuna (pip install optuna)"
    if len(scored) < 4:
        return "parameter importances once four trials have finished"
    result: tuple[str, ...] | str
    try:
        found = optuna.importance.get_param_importances(
            optuna_study(optuna, plan, scored, mode), evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        result = tuple(f"{name} {share:.2f}" for name, share in found.items())
    except Exception as exc:  # too few distinct trials, one-valued parameters: say it, never crash the view
        result = f"parameter importances unavailable ({exc})"
    with _CACHE_LOCK:
        _IMPORTANCE_CACHE[key] = result
    return result


def optuna_study(optuna: Any, plan: StudyPlan, scored: Sequence[Scored], mode: str) -> Any:
    """An in-memory Optuna study holding the finished trials (nothing is written anywhere)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    distributions = _distributions(optuna, plan)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for s in scored:
        params = {k: v for k, v in s.params.items() if k in distributions}
        if len(params) != len(distributions):
            continue
        try:
            study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=s.value))
        except ValueError:
            continue  # a clone outside the searched range: not part of the space Optuna ranks
    return study


def _distributions(optuna: Any, plan: StudyPlan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    dist = optuna.distributions
    for name in plan.params:
        spec = plan.ranges.get(name, {})
        kind = spec.get("type")
        if kind == "choice":
            out[name] = dist.CategoricalDistribution(list(spec.get("values", [])))
        elif kind == "int":
            out[name] = dist.IntDistribution(int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
        elif kind in ("uniform", "loguniform"):
            out[name] = dist.FloatDistribution(float(spec["low"]), float(spec["high"]), log=kind == "loguniform")
    return out


def pareto_front(points: Sequence[tuple[int, tuple[float, float]]], modes: tuple[str, str]) -> set[int]:
    """Trial numbers no other trial beats on both objectives (at least as good on both, better on one)."""
    sign = tuple(1.0 if m == "max" else -1.0 for m in modes)
    front = set()
    for number, (a, b) in points:
        dominated = any(sign[0] * c >= sign[0] * a and sign[1] * d >= sign[1] * b
                        and (sign[0] * c > sign[0] * a or sign[1] * d > sign[1] * b)
                        for other, (c, d) in points if other != number)
        if not dominated:
            front.add(number)
    return front


def pareto_chart(points: Sequence[tuple[int, tuple[float, float]]], objectives: Sequence[tuple[str, str]],
                 width: int, color: bool) -> Text:
    (m1, d1), (m2, d2) = objectives[0], objectives[1]
    front = pareto_front(points, (d1, d2))
    rest = [p for n, p in points if n not in front]
    best = sorted((p for n, p in points if n in front))
    label = f"Pareto front ({len(front)}: " + ", ".join(f"#{n}" for n in sorted(front)[:8]) + ")"
    series = [Series("trials", [a for a, _ in rest], [b for _, b in rest]),
              Series(label, [a for a, _ in best], [b for _, b in best])]
    return render_chart(series, width, CHART_HEIGHT + 2, title=f"{m2} ({d2}) vs {m1} ({d1})", lines=False,
                        color=color, empty="no finished trial reports both objectives")


def render_param_view(study_id: int, plan: StudyPlan, metric: str, mode: str, scored: Sequence[Scored],
                      width: int, color: bool, pareto: Sequence[tuple[int, tuple[float, float]]] = ()) -> Text:
    """The whole view as one text: importances, then the Pareto front (two objectives), then one chart per parameter."""
    if not scored:
        return Text("no finished trial reported the objective yet: the parameter view fills in as trials end",
                    style="dim")
    top = ranked(scored, mode)[:top_count(len(scored))]
    found = importances(study_id, plan, scored, mode)
    head = Text("importance (Optuna fANOVA): ", style="bold")
    head.append(" · ".join(found) if isinstance(found, tuple) else found, style="" if isinstance(found, tuple)
                else "dim")
    head.append(f"\ntop {len(top)} of {len(scored)} finished trials marked: " + ", ".join(f"#{s.number}" for s in top[:10]))
    parts = [head]
    per_row = max(1, width // CHART_WIDTH)
    chart_width = max(24, (width - per_row + 1) // per_row)
    if len(plan.objectives) >= 2:
        parts.append(pareto_chart(pareto, plan.objectives, min(width, 2 * chart_width), color))
    charts = [param_chart(name, plan, scored, top, metric, chart_width, color) for name in plan.params]
    for i in range(0, len(charts), per_row):
        parts.append(side_by_side(charts[i:i + per_row], chart_width))
    out = Text("\n").join(parts)
    out.no_wrap = True
    return out


class ParamPanel(Static):
    DEFAULT_CSS = "ParamPanel { height: auto; }"
