"""Which scheduler a space file names: the one module that knows every implementation.

Apart from ``base.py`` because the implementations import the base class; the factory imports
them, so nothing imports back.
"""

from __future__ import annotations

from ..space_file.space import SchedulerSpec
from .asha import AshaScheduler
from .base import Scheduler
from .fifo import FifoScheduler
from .hyperband import HyperbandScheduler
from .median import MedianStoppingScheduler


def make_scheduler(spec: SchedulerSpec, metric: str, mode: str) -> Scheduler:
    """The scheduler named by ``spec.type`` (fifo, asha, hyperband, median)."""
    kinds: dict[str, type[Scheduler]] = {
        "fifo": FifoScheduler,
        "asha": AshaScheduler,
        "hyperband": HyperbandScheduler,
        "median": MedianStoppingScheduler,
    }
    if spec.type not in kinds:
        raise ValueError(f"unknown scheduler type {spec.type!r}; use one of {', '.join(kinds)}")
    return kinds[spec.type](spec, metric, mode)
