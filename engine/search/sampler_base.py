"""The interface every sampler has (random, grid, TPE), and the step rounding they share.

Its own module so that :mod:`engine.search.sampling` (random, grid and the factory that picks one) can
import :mod:`engine.search.tpe`, and TPE can subclass the base, without either importing the other.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Mapping, Sequence

from ..space_file.param import Param


class Sampler(ABC):
    """``suggest(index)`` returns the index-th configuration, or None when the search is exhausted."""

    @abstractmethod
    def suggest(self, index: int) -> dict[str, Any] | None:
        """The configuration for the ``index``-th fresh trial (reruns reuse theirs)."""

    def observe(self, index: int, params: dict[str, Any], value: float | None, *, status: str | None = None,
                step: float | None = None, curve: Sequence[tuple[float, float]] = (),
                last: Mapping[str, float] | None = None) -> None:
        """A trial finished (``status``) with best objective ``value`` at ``step``; model-based samplers learn.

        ``curve`` is the first objective as (resource, value) per report (the rung model fits on
        it) and ``last`` every metric's last reported value (several objectives are told those).
        """

    def size(self) -> int | None:
        """How many configurations exist (grid), None when unbounded."""
        return None


def quantise(param: Param, value: float) -> float:
    if param.step is None:
        return value
    low = param.low or 0.0
    snapped = low + math.floor((value - low) / param.step + 0.5) * param.step  # half up, not banker's
    snapped = min(max(snapped, float(param.low or 0.0)), float(param.high if param.high is not None else snapped))
    return float(round(snapped, 12))
