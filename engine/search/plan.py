"""``hpotui plan``: what a search will run and what it can cost, computed without running it.

The contract (``hpotui plan SPACE --format json``)::

    {"scheduler": TYPE,
     "brackets": [{"s": int, "rungs": [{"n": int, "resource": number}]}],
     "total_trials": int,
     "max_total_resource": number}

Each rung says how many trials are expected to reach that resource; ``max_total_resource`` is
``sum(n · resource)`` over all rungs, the paper's budget accounting for a synchronous run (it
counts every trial at a rung as if it trained that far from scratch). It is a guide, not a
guarantee: asynchronous halving lets the first arrivals at a rung through before the field is
known, so a real run can spend more (81 trials, 4 workers, rungs 1..27: 201 to 573 epochs
over 5 simulated seeds against a planned 324; fifo would spend 2187). Counts at later rungs follow the
paper, ``floor(n · η^-i)``, but never drop below 1 because the first trial to reach a rung
always goes on (see ``engine/schedulers/asha.py``).

How each scheduler is drawn:

- fifo: one bracket (s = 0), one rung of ``max_trials`` at ``max_resource`` (``None`` when no
  ``max_resource`` is set: the command alone decides how long a trial runs, and the cost is
  then unknown, so ``max_total_resource`` is ``None`` too).
- median: the same single rung; the median rule stops trials at no fixed resource, so there
  is no honest count to print for intermediate resources.
- asha: one bracket whose rungs are the judged rungs plus ``max_resource``; s = rungs - 1.
- hyperband: the paper's brackets. With ``max_trials=None`` it is one full Hyperband
  iteration, ``n_s`` trials per bracket (min 1, max 81, η 3: 143 trials, the paper's table).
  With ``max_trials`` given, the trials are dealt to brackets by the very round-robin the
  scheduler uses, so the plan shows what this study will really start: 143 reproduces the
  paper, 286 two iterations, 20 the first 20 deals; brackets dealt no trial are left out.
  ``total_trials`` is always the sum of the brackets' ``n``; planning 10^12 trials takes no longer
  than planning one Hyperband iteration (see :func:`dealt_counts`).
"""

from __future__ import annotations

from typing import Any

from ..schedulers.rungs import clean, deal_counts, fmt, hyperband_brackets, ladder, survivors
from ..space_file.space import SCHEDULERS, SchedulerSpec


def plan(spec: SchedulerSpec, max_trials: int | None) -> dict[str, Any]:
    """The contract dict for ``spec`` with the study's ``budget.max_trials``.

    ``max_trials`` may be None only for hyperband (one full iteration of the paper).
    """
    _check_type_and_trials(spec, max_trials)
    if spec.type == "hyperband":
        brackets = _hyperband(spec, _max_resource(spec), max_trials)
    elif max_trials is None:
        raise ValueError(f"{spec.type} needs max_trials to plan")
    elif spec.type == "asha":
        resources = ladder(spec.min_resource, _max_resource(spec), spec.reduction_factor)
        brackets = [_bracket(len(resources) - 1, int(max_trials), resources, spec.reduction_factor)]
    else:  # fifo, median: every trial may run to the end
        resource = None if spec.max_resource is None else _number(spec.max_resource)
        brackets = [{"s": 0, "rungs": [{"n": int(max_trials), "resource": resource}]}]

    total = sum(b["rungs"][0]["n"] for b in brackets)
    return {"scheduler": spec.type, "brackets": brackets, "total_trials": total,
            "max_total_resource": _total_cost(brackets)}


def _check_type_and_trials(spec: SchedulerSpec, max_trials: int | None) -> None:
    """Refuse an unknown scheduler or a ``max_trials`` that is not a whole count before any
    arithmetic, so the user reads what to fix instead of a traceback from deep in the rungs."""
    if spec.type not in SCHEDULERS:
        raise ValueError(f"unknown scheduler type {spec.type!r}; use one of {', '.join(SCHEDULERS)}")
    if max_trials is not None and (isinstance(max_trials, bool) or int(max_trials) != max_trials or max_trials < 1):
        raise ValueError(f"max_trials must be a whole number >= 1, got {max_trials!r}")


def _max_resource(spec: SchedulerSpec) -> float:
    """``max_resource`` for the schedulers whose rungs are drawn from it (asha, hyperband):
    without it there is no top rung, so there is nothing to plan."""
    if spec.max_resource is None:
        raise ValueError(f"{spec.type} needs max_resource to plan")
    return spec.max_resource


def _total_cost(brackets: list[dict[str, Any]]) -> int | float | None:
    """``max_total_resource``: ``sum(n · resource)`` over every rung, None when any rung runs
    to an unknown end (no ``max_resource``), since a partial sum would understate the cost."""
    if any(r["resource"] is None for b in brackets for r in b["rungs"]):
        return None
    return _number(clean(sum(r["n"] * r["resource"] for b in brackets for r in b["rungs"])))


def _hyperband(spec: SchedulerSpec, max_resource: float, max_trials: int | None) -> list[dict[str, Any]]:
    """The paper's brackets, with ``max_trials`` dealt to them as the scheduler deals them."""
    paper = hyperband_brackets(spec.min_resource, max_resource, spec.reduction_factor)
    if max_trials is None:
        counts = [b.n for b in paper]
    else:
        counts = dealt_counts(tuple(b.n for b in paper), int(max_trials))
    return [_bracket(b.s, n, b.resources, spec.reduction_factor) for b, n in zip(paper, counts) if n > 0]


EXACT_DEALS = 1_000_000


def dealt_counts(weights: tuple[int, ...], count: int) -> list[int]:
    """``deal_counts(weights, count)`` without dealing ``count`` times (``max_trials`` may be 10^12).

    The smooth round-robin comes back to its starting state every ``sum(weights)`` deals, each
    slot having had exactly its weight, so whole periods are multiplied out and only the rest is
    dealt. A rest beyond EXACT_DEALS (one Hyperband iteration of over a million trials) is shared
    in proportion, largest remainders first: the dealer never strays a whole trial from the
    proportional share, so this is within one trial per bracket of the engine's own deal.
    """
    total = sum(weights)
    periods, rest = divmod(count, total)
    if rest <= EXACT_DEALS:
        tail = deal_counts(weights, rest)
    else:
        tail = [rest * w // total for w in weights]
        by_remainder = sorted(range(len(weights)), key=lambda i: (-(rest * weights[i] % total), i))
        for i in by_remainder[:rest - sum(tail)]:
            tail[i] += 1
    return [periods * w + extra for w, extra in zip(weights, tail)]


def _bracket(s: int, n: int, resources: tuple[float, ...], eta: float) -> dict[str, Any]:
    return {"s": s, "rungs": [{"n": survivors(n, eta, i), "resource": _number(r)} for i, r in enumerate(resources)]}


def _number(x: float) -> int | float:
    """Whole numbers as ints so the JSON reads ``81``, not ``81.0``."""
    return int(x) if x == int(x) else x


def _spent(bracket: dict[str, Any]) -> float | None:
    """Resource actually trained when each trial stops where the plan stops it.

    Trials continue from where they are (the stopping variant), so a trial stopped at rung i
    has trained ``resource_i`` in all: this is below ``max_total_resource``, which counts each
    rung in full.
    """
    rungs = bracket["rungs"]
    if any(r["resource"] is None for r in rungs):
        return None
    total = 0.0
    for i, rung in enumerate(rungs):
        going_on = rungs[i + 1]["n"] if i + 1 < len(rungs) else 0
        total += (rung["n"] - going_on) * rung["resource"]
    return total


def format_plan(plan_dict: dict[str, Any], resource: str = "epoch") -> str:
    """The plan as a text table for ``hpotui plan SPACE``; ``resource`` names the unit (epoch)."""
    brackets = plan_dict["brackets"]
    lines = [f"scheduler: {plan_dict['scheduler']}   trials: {plan_dict['total_trials']}   "
             f"brackets: {len(brackets)}"]
    lines += _bracket_table(brackets, resource)
    lines += _cost_lines(plan_dict, resource)
    return "\n".join(lines)


def _bracket_table(brackets: list[dict[str, Any]], resource: str) -> list[str]:
    """One aligned row per bracket: its trials, its rungs as ``n@resource``, and its cost."""
    unit = resource + "s"
    rows = [("bracket", "trials", f"rungs (trials @ {resource})", f"max {unit}")]
    rows += [_bracket_row(b) for b in brackets]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]:>{widths[3]}}"
            for row in rows]


def _bracket_row(bracket: dict[str, Any]) -> tuple[str, str, str, str]:
    """``s=N``, its starting trials, ``n@resource`` per rung (``end`` with no max_resource), cost."""
    rungs = "  ".join(f"{r['n']}@{'end' if r['resource'] is None else fmt(r['resource'])}" for r in bracket["rungs"])
    cost = None if any(r["resource"] is None for r in bracket["rungs"]) else \
        sum(r["n"] * r["resource"] for r in bracket["rungs"])
    return (f"s={bracket['s']}", str(bracket["rungs"][0]["n"]), rungs, "unknown" if cost is None else fmt(cost))


def _cost_lines(plan_dict: dict[str, Any], resource: str) -> list[str]:
    """The total cost (or why it is unknown), what stopping saves under halving, and the caveat
    that median stopping has no fixed rungs to count."""
    brackets = plan_dict["brackets"]
    cost = plan_dict["max_total_resource"]
    unit = resource + "s"
    lines = []
    if cost is None:
        lines.append("total: unknown: no max_resource, each trial runs until its command ends")
    else:
        spent = [_spent(b) for b in brackets]
        lines.append(f"max total {unit}: {fmt(cost)} (every trial at a rung counted at that rung's {resource})")
        if plan_dict["scheduler"] in ("asha", "hyperband"):
            lines.append(f"{unit} if each trial stops where this plan stops it: {fmt(sum(s for s in spent if s is not None))}")
    if plan_dict["scheduler"] == "median":
        lines.append(f"median stopping may stop trials early at any {resource} past the grace period")
    return lines
