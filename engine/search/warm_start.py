"""Warm starts: ``search: {warm_start: [STUDY, ...]}`` learns from earlier studies in the same database.

Before it asks for anything, a model-based sampler (TPE) is told the named studies' ended trials
(completed, pruned, stopped, diverged, invalid; failures carry nothing) whose parameters fit the
current space: the same active parameters, each value inside the new range or among the new
choices. A refined stage (``hpotui refine``) names its parent, so it starts from what the parent
learned instead of from scratch. Random and grid search have no model: for them a warm start
only skips configurations that were already run.

It is recorded once, as a ``warm_start`` event on the study (``hpotui status`` shows it).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..database.records import LEARNED_STATUSES, EventKind
from ..errors import UserError
from ..space_file.conditions import fits
from ..space_file.space import Space
from .sampling import GridSampler, RandomSampler, Sampler

MAX_SKIPS_IN_A_ROW = 1000  # a random space of few choices may be used up: then repeats are allowed


def check_warm_start(store: Any, space: Space) -> None:
    """Every named study exists in this database (one line, exit 2, before a study is created)."""
    for i, name in enumerate(space.search.warm_start):
        if store.study(name) is None:
            raise UserError(f"{space.source_file}: search.warm_start[{i}]: no study named {name!r} in {store.path}; "
                            "remove it or launch with the database that holds it (--db)")


@dataclass(frozen=True)
class Told:
    study: str
    fitting: int
    ended: int


def _key(config: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, type(v).__name__, repr(v)) for k, v in config.items()))


class SkipSeen(Sampler):
    """Random or grid search that passes over configurations an earlier study already ran."""

    def __init__(self, inner: Sampler, seen: Sequence[Mapping[str, Any]]) -> None:
        self.inner = inner
        self.seen = {_key(c) for c in seen}
        self._inner_index: list[int] = []  # our index -> the inner sampler's
        self._scanned = 0
        self._skipped_in_grid = sum(1 for c in seen if isinstance(inner, GridSampler) and inner.contains(dict(c)))

    def suggest(self, index: int) -> dict[str, Any] | None:
        skips = 0
        while len(self._inner_index) <= index:
            config = self.inner.suggest(self._scanned)
            if config is None:
                return None
            if _key(config) not in self.seen or skips >= MAX_SKIPS_IN_A_ROW:
                self._inner_index.append(self._scanned)
                skips = 0
            else:
                skips += 1
            self._scanned += 1
        return self.inner.suggest(self._inner_index[index])

    def size(self) -> int | None:
        size = self.inner.size()
        return None if size is None else max(0, size - self._skipped_in_grid)

    def observe(self, index: int, params: dict[str, Any], value: float | None, **kwargs: Any) -> None:
        self.inner.observe(index, params, value, **kwargs)


def _curves(store: Any, study_id: int, metric: str) -> dict[int, list[tuple[float, float]]]:
    curves: dict[int, list[tuple[float, float]]] = {}
    for trial_id, step, value in store.metric_history(study_id, metric):
        if math.isfinite(value):
            curves.setdefault(trial_id, []).append((step, value))
    return curves


def apply_warm_start(store: Any, space: Space, sampler: Sampler) -> tuple[Sampler, list[Told]]:
    """The sampler to use (wrapped for random / grid), and what each named study contributed."""
    if not space.search.warm_start:
        return sampler, []
    model_based = not isinstance(sampler, (RandomSampler, GridSampler))
    told: list[Told] = []
    seen: list[dict[str, Any]] = []
    for name in space.search.warm_start:
        other = store.study(name)
        if other is None:
            told.append(Told(name, 0, 0))
            continue
        ended = store.trials(other.id, statuses=LEARNED_STATUSES)
        fitting = [t for t in ended if fits(space.params, t.params)]
        seen.extend(t.params for t in fitting)
        if model_based:
            _tell(store, space, sampler, other.id, fitting, own=False)
        told.append(Told(name, len(fitting), len(ended)))
    return (sampler if model_based else SkipSeen(sampler, seen)), told


def _tell(store: Any, space: Space, sampler: Sampler, study_id: int, trials: Sequence[Any], *, own: bool = True) -> None:
    """Ended trials to a model-based sampler, with their curves (the rung model) and last values.

    Another study's sample indices mean nothing here: its trials are told as never asked (-1).
    """
    curves = _curves(store, study_id, space.objective.metric)
    for t in trials:
        last = store.last_values(t.id) if space.multi_objective else None
        index = t.sample_index if own and t.sample_index is not None else -1
        sampler.observe(index, t.params, t.best_value,
                        status=t.status, step=t.best_step, curve=curves.get(t.id, ()), last=last)


def describe(told: Sequence[Told], model_based: bool) -> str:
    """``warm start from digits (12 of 14 ended trials fit this space)``: the event text and status line."""
    parts = []
    for t in told:
        parts.append(f"{t.study} ({t.fitting} of {t.ended} ended trials fit this space)" if t.ended or t.fitting
                     else f"{t.study} (not in this database)")
    how = "told to the sampler first" if model_based else "configurations already run are skipped"
    return "warm start from " + ", ".join(parts) + f"; {how}"


def replay_history(store: Any, space: Space, sampler: Sampler, study_id: int, trials: Sequence[Any],
                   statuses: Collection[str]) -> None:
    """The study's own ended trials, told again to a fresh sampler on resume (TPE relearns its model)."""
    if isinstance(sampler, (RandomSampler, GridSampler)) or isinstance(getattr(sampler, "inner", None),
                                                                      (RandomSampler, GridSampler)):
        return  # nothing to learn: skip the metric read
    ended = [t for t in trials if t.status in statuses]
    if ended:
        _tell(store, space, sampler, study_id, ended)


def record_warm_start(store: Any, study_id: int, sampler: Sampler, told: Sequence[Told]) -> str | None:
    """The warm-start line, written as an event the first time this study starts (not on resume)."""
    if not told:
        return None
    text = describe(told, not isinstance(sampler, SkipSeen))
    if not store.events(study_id, kinds=("warm_start",)):
        store.add_event(study_id, None, EventKind.WARM_START, text,
                        data={"studies": [{"study": t.study, "told": t.fitting, "ended": t.ended} for t in told]})
    return text
