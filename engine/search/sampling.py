"""Turn a space into configurations: random and grid (TPE lives in tpe.py, same interface).

A configuration is drawn from a generator seeded by ``(seed, index)``, not from one running
generator, so the n-th configuration of a study is the same after a crash and resume, and
re-running an interrupted trial never shifts the configurations that follow.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from typing import Any, Iterator

from ..space_file.conditions import active_only, dependency_order, fits, is_active, is_conditional
from ..space_file.space import Param, Space
from .sampler_base import Sampler, quantise  # noqa: F401  # re-exported: the interface every sampler has
from .tpe import TpeSampler


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
        drawn = {p.name: sample_param(p, rng) for p in self.params}  # every one drawn: same stream per index
        return active_only(self.params, drawn) if self.conditional else drawn

    @property
    def conditional(self) -> bool:
        return is_conditional(self.params)


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
    values = [int(round(x)) if param.type == "int" else quantise(param, float(f"{x:.12g}")) for x in raw]
    return list(dict.fromkeys(values))  # distinct, first-seen order, linear time


class _Branch:
    """One assignment of the choices that switch parameters on, and the axes active under it."""

    def __init__(self, fixed: dict[str, Any], names: list[str], axes: list[list[Any]]) -> None:
        self.fixed, self.names, self.axes = fixed, names, axes
        self.size = math.prod(len(axis) for axis in axes)

    def config(self, index: int, order: list[str]) -> dict[str, Any]:
        combo = []
        for axis in reversed(self.axes):  # mixed-radix digits: the last parameter varies fastest
            index, digit = divmod(index, len(axis))
            combo.append(axis[digit])
        values = dict(self.fixed, **dict(zip(self.names, reversed(combo))))
        return {name: values[name] for name in order if name in values}


class GridSampler(Sampler):
    """Every combination of the axes, computed from its index (nothing enumerated up front).

    A conditional space is a list of branches, one per assignment of the controlling choices
    (parameters other parameters' ``when`` names), so the grid holds only real combinations:
    ``momentum`` is crossed with ``optimizer: sgd`` only, and ``adam`` runs once per beta2.
    """

    def __init__(self, space: Space) -> None:
        self.params = space.params
        self.names = [p.name for p in space.params]
        self.axes = [grid_values(p) for p in space.params]
        self.branches = _grid_branches(space.params, self.names, self.axes)
        self._starts = list(itertools.accumulate((b.size for b in self.branches), initial=0))

    def size(self) -> int:
        return self._starts[-1]

    def suggest(self, index: int) -> dict[str, Any] | None:
        if index >= self.size():
            return None
        b = bisect.bisect_right(self._starts, index) - 1
        return self.branches[b].config(index - self._starts[b], self.names)

    def contains(self, config: dict[str, Any]) -> bool:
        """Whether ``config`` is one of this grid's points (a warm start skips those already run)."""
        if not fits(self.params, config):
            return False
        return all(config[n] in axis for n, axis in zip(self.names, self.axes) if n in config)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index in range(self.size()):
            yield self.suggest(index)  # type: ignore[misc]


def _grid_branches(params: tuple[Param, ...], names: list[str], axes: list[list[Any]]) -> list[_Branch]:
    by_name = dict(zip(names, axes))
    controlling = {parent for p in params for parent, _ in p.when}
    return [_Branch(fixed, [n for n in names if n in free], [by_name[n] for n in names if n in free])
            for fixed, free in _branches(params, controlling)]


def _branches(params: tuple[Param, ...], controlling: set[str]) -> list[tuple[dict[str, Any], set[str]]]:
    """(fixed controlling values, names of the other active parameters) for every distinct branch."""
    ordered = dependency_order(params)
    result: list[tuple[dict[str, Any], set[str]]] = []

    def walk(i: int, fixed: dict[str, Any]) -> None:
        while i < len(ordered) and (ordered[i].name not in controlling or not is_active(ordered[i], fixed)):
            i += 1
        if i == len(ordered):
            free = {p.name for p in params if p.name not in controlling and is_active(p, fixed)}
            result.append((dict(fixed), free))
            return
        for value in ordered[i].values:
            walk(i + 1, {**fixed, ordered[i].name: value})

    walk(0, {})
    return result


def make_sampler(space: Space) -> Sampler:
    if space.search.algorithm == "grid":
        return GridSampler(space)
    if space.search.algorithm == "tpe":
        return TpeSampler(space)
    return RandomSampler(space)
