"""Where a study's trials start: each trial's first value of each metric the health checks watch.

Without ``num_classes`` the health checks cannot know an untrained loss (ln C) or chance accuracy
(1/C), but the study can: a first loss far above where the other trials start is a run that blew
up before its first report, and an accuracy that stays far below where the others start is a run
that is not learning while they do. The engine hands over the first reports of trials recorded
before it started (a resumed study); the monitor adds the first report of every trial it sees.

The reference must survive a study where many trials blow up (four of eight in one real study):
it is the *low* median of the other trials' first values, and a loss's "where they start" is the
highest first value that is not itself far above that median. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

MIN_OTHER_TRIALS = 3  # fewer other trials than this are no reference at all


class StudyStarts:
    """First values by metric and trial, with cheap "the others" summaries (O(log n) per query
    once a metric's sorted list is built; rebuilt only after a new trial's first value arrived)."""

    def __init__(self, far: float) -> None:
        self.far = far  # a start this many times the low median is itself a blow-up, not a reference
        self._first: dict[str, dict[int, float]] = {}
        self._sorted: dict[str, list[float]] = {}

    def add(self, trial_id: int, name: str, value: float) -> None:
        """The trial's first value of ``name``; later calls for the same pair change nothing."""
        if not math.isfinite(value):
            return
        firsts = self._first.setdefault(name, {})
        if trial_id not in firsts:
            firsts[trial_id] = value
            self._sorted.pop(name, None)

    def __contains__(self, key: tuple[int, str]) -> bool:
        trial_id, name = key
        return trial_id in self._first.get(name, {})

    def _others(self, name: str, trial_id: int) -> tuple[list[float], int | None, int] | None:
        """(all sorted values, index of this trial's own value or None, how many others)."""
        firsts = self._first.get(name)
        if not firsts:
            return None
        values = self._sorted.get(name)
        if values is None:
            values = self._sorted[name] = sorted(firsts.values())
        own = firsts.get(trial_id)
        index = None if own is None else bisect_left(values, own)
        others = len(values) - (index is not None)
        return (values, index, others) if others >= MIN_OTHER_TRIALS else None

    def quantile(self, name: str, trial_id: int, q: float) -> float | None:
        """The other trials' first value at fraction ``q`` of the way up, rounded down (None with
        fewer than 3 others); ``q = 0.5`` is the low median."""
        found = self._others(name, trial_id)
        if found is None:
            return None
        values, index, others = found
        return _other_at(values, index, int(q * (others - 1)))

    def low_median(self, name: str, trial_id: int) -> float | None:
        return self.quantile(name, trial_id, 0.5)

    def ceiling(self, name: str, trial_id: int) -> float | None:
        """The highest of the other trials' first values that is not far above their low median."""
        median = self.low_median(name, trial_id)
        found = self._others(name, trial_id)
        if median is None or found is None or median <= 0:
            return None
        values, index, _ = found
        limit = self.far * median
        count = bisect_right(values, limit) - (1 if index is not None and values[index] <= limit else 0)
        return _other_at(values, index, count - 1)


def _other_at(values: list[float], own: int | None, k: int) -> float:
    """The k-th smallest value once this trial's own (at index ``own``) is left out."""
    return values[k] if own is None or k < own else values[k + 1]
