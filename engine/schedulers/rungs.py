"""Rung and bracket arithmetic shared by the ASHA / Hyperband schedulers and ``hpotui plan``.

Kept apart from the schedulers so that the plan printed before a study starts is computed by
the very same functions that later judge the trials: what ``plan`` shows is what happens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Resources such as 81 · 3^-4 come out of floating point as 0.9999999999999999; every rung
# resource is rounded to 12 significant digits and every floor/ceil gets this much slack so
# that the paper's exact integers (15 = 5/3 · 9) stay exact.
EPS = 1e-9


def clean(x: float) -> float:
    """``x`` rounded to 12 significant digits, so rung resources compare and print exactly."""
    return float(f"{x:.12g}")


def floor_(x: float) -> int:
    return math.floor(x + EPS)


def ceil_(x: float) -> int:
    return math.ceil(x - EPS)


def judged_rungs(min_resource: float, max_resource: float, eta: float) -> tuple[float, ...]:
    """Resources ``min · η^k`` strictly below ``max_resource``: where trials are judged.

    There is no judgement at ``max_resource`` itself: a trial that got there has spent its
    whole budget, so stopping it would save nothing and would wrongly mark it pruned.
    """
    rungs: list[float] = []
    k = 0
    while (r := clean(min_resource * eta**k)) < max_resource * (1 - EPS):
        rungs.append(r)
        k += 1
    return tuple(rungs)


def ladder(min_resource: float, max_resource: float, eta: float) -> tuple[float, ...]:
    """The judged rungs followed by ``max_resource``, the rung the survivors finish at."""
    return judged_rungs(min_resource, max_resource, eta) + (clean(max_resource),)


def survivors(n: int, eta: float, rung_index: int) -> int:
    """Trials expected at rung ``i`` of a ladder started by ``n``: ``floor(n · η^-i)``, at least 1.

    The floor is the paper's; the "at least 1" is ours: the first trial to reach a rung
    always goes on (see AshaScheduler), so a rung is never empty once its ladder has a trial.
    """
    if n <= 0:
        return 0
    return max(1, floor_(n * eta**-rung_index))


def s_max(min_resource: float, max_resource: float, eta: float) -> int:
    """``floor(log_η(R / r))``: the index of Hyperband's most exploratory bracket."""
    return floor_(math.log(max_resource / min_resource) / math.log(eta))


@dataclass(frozen=True)
class Bracket:
    """Hyperband bracket ``s``: ``n`` trials started at ``resources[0]``, judged up to ``R``."""

    s: int
    n: int
    resources: tuple[float, ...]  # R·η^-s, R·η^(1-s), ..., R


def hyperband_brackets(min_resource: float, max_resource: float, eta: float) -> tuple[Bracket, ...]:
    """Brackets ``s = s_max .. 0`` of Li et al. (2018), most exploratory first.

    Bracket ``s`` starts ``n_s = ceil((s_max+1)/(s+1) · η^s)`` trials at ``R · η^-s``.
    """
    top = s_max(min_resource, max_resource, eta)
    brackets = []
    for s in range(top, -1, -1):
        n = ceil_((top + 1) / (s + 1) * eta**s)
        resources = tuple(clean(max_resource * eta ** (i - s)) for i in range(s + 1))
        brackets.append(Bracket(s=s, n=n, resources=resources))
    return tuple(brackets)


class Dealer:
    """Smooth weighted round-robin (nginx's): deals items to slots in proportion to weights.

    Deterministic and evenly interleaved: over any run of ``sum(weights)`` deals, slot ``i``
    gets exactly ``weights[i]`` items, and early on every slot gets its share as soon as it
    is due, so a study cut short by ``max_trials`` still samples every bracket.
    Ties go to the earlier slot.
    """

    def __init__(self, weights: tuple[int, ...]) -> None:
        if not weights or min(weights) <= 0:
            raise ValueError(f"weights must be positive, got {weights}")
        self.weights = weights
        self.total = sum(weights)
        self.current = [0] * len(weights)

    def deal(self) -> int:
        for i, w in enumerate(self.weights):
            self.current[i] += w
        chosen = max(range(len(self.weights)), key=lambda i: (self.current[i], -i))
        self.current[chosen] -= self.total
        return chosen


def deal_counts(weights: tuple[int, ...], count: int) -> list[int]:
    """How many of the first ``count`` deals each slot receives."""
    dealer = Dealer(weights)
    counts = [0] * len(weights)
    for _ in range(count):
        counts[dealer.deal()] += 1
    return counts


def fmt(x: float) -> str:
    """Numbers in decisions and tables: whole numbers exact (``3``, ``10000``), others to 4 digits."""
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}"
