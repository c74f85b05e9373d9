"""FIFO: the reference scheduler; every trial runs to its end."""

from __future__ import annotations

from .base import Decision, Scheduler


class FifoScheduler(Scheduler):
    def on_result(self, trial_id: int, resource: float, value: float) -> Decision:
        return Decision.go_on()
