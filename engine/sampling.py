"""Turn a space into configurations: random and grid (TPE lives in tpe.py, same interface).

A configuration is drawn from a generator seeded by ``(seed, index)``, not from one running
generator, so the n-th configuration of a study is the same after a crash and resume, and
re-running an interrupted trial never shifts the configurations that follow.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
import math
import random
from typing import Any, Iterator

from .space import Param, Space


class Sampler(ABC):
    """``suggest(index)`` returns the index-th configuration, or None when the search is exhausted."""

    @abstractmethod
    def suggest(self, index: int) -> dict[str, Any] | None:
        """The configuration for the ``index``-th fresh trial (reruns reuse theirs)."""

    def observe(self, index: int, params: dict[str, Any], value: float | None, *, status: str | None = None,
                step: float | None = None) -> None:
        """A trial finished (``status``) with best objective ``value`` at ``step``; model-based samplers learn."""

    def size(self) -> int | None:
        """How many configurations exist (grid), None when unbounded."""
        return None


def quantise(param: Param, value: float) -> float:
    if param.step is None:
        return value
    low = param.low or 0.0
    snapped = low + math.floor((value - low) / param.step + 0.5) * param.step  # half up, not banker's
    snapped = min(max(snapped, param.low), param.high)  # type: ignore[type-var]
    return float(round(snapped, 12))


def sample_param(param: Param, rng: random.Random) -> Any:
    if param.type == "choice":
        return param.values[rng.randrange(len(param.values))]
    low, high = float(param.low), float(param.high)  # type: ignore[arg-type]
    if param.type == "int":
        if param.log:
            # Uniform in log space over [low - 0.5, high + 0.5] rounded: each integer gets its log-width share.
            value = math.exp(rng.uniform(math.log(max(low - 0.5, 0.5)), math.log(high + 0.5)))
        else:
            value = rng.uniform(low - 0.5, high + 0.5)
        return int(min(max(round(value), low), high))
    if param.log:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    return quantise(param, value)


class RandomSampler(Sampler):
    def __init__(self, space: Space) -> None:
        self.params = space.params
        self.seed = space.search.seed

    def suggest(self, index: int) -> dict[str, Any]:
        rng = random.Random(f"{self.seed}:{index}") if self.seed is not None else random.Random()
        return {p.name: sample_param(p, rng) for p in self.params}


def grid_values(param: Param) -> list[Any]:
    """Choice values, or ``points`` values spread evenly (log-spaced where log) over the range."""
    if param.type == "choice":
        return list(param.values)
    low, high, n = float(param.low), float(param.high), param.points  # type: ignore[arg-type]
    if n == 1:
        raw = [math.exp((math.log(low) + math.log(high)) / 2) if param.log else (low + high) / 2]
    elif param.log:
        raw = [math.exp(math.log(low) + i * (math.log(high) - math.log(low)) / (n - 1)) for i in range(n)]
    else:
        raw = [low + i * (high - low) / (n - 1) for i in range(n)]
    values: list[Any] = []
    for x in raw:
        v: Any = int(round(x)) if param.type == "int" else quantise(param, float(f"{x:.12g}"))
        if v not in values:
            values.append(v)
    return values


class GridSampler(Sampler):
    def __init__(self, space: Space) -> None:
        self.names = [p.name for p in space.params]
        self.axes = [grid_values(p) for p in space.params]

    def size(self) -> int:
        return math.prod(len(axis) for axis in self.axes)

    def suggest(self, index: int) -> dict[str, Any] | None:
        if index >= self.size():
            return None
        combo = []
        for axis in reversed(self.axes):  # mixed-radix digits: the last parameter varies fastest
            index, digit = divmod(index, len(axis))
            combo.append(axis[digit])
        return dict(zip(self.names, reversed(combo)))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for combo in itertools.product(*self.axes):
            yield dict(zip(self.names, combo))


def make_sampler(space: Space) -> Sampler:
    if space.search.algorithm == "grid":
        return GridSampler(space)
    if space.search.algorithm == "tpe":
        from .tpe import TpeSampler

        return TpeSampler(space)
    return RandomSampler(space)
