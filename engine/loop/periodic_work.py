"""What the loop does on a clock rather than on an event: flushes, usage samples, heartbeats, a summary line.

Why its own module: the store batches writes (hundreds of rows a transaction) and the loop must
flush them often enough that the interface stays live; the engine proves it is alive with a
heartbeat, samples CPU / GPU usage, sweeps stray processes, re-reads max_parallel (the interface
can change it) and prints a progress line. Each runs on its own period; the timers live here.
"""

from __future__ import annotations

import time

from ..core.events import MaxParallelRead
from ..database.records import TrialStatus
from ..machine.usage import UsageSampler
from .loop_parts import LoopParts

FLUSH_ROWS = 500
FLUSH_INTERVAL_S = 0.2
HEARTBEAT_S = 5.0
SUMMARY_S = 30.0
RESOURCE_SAMPLE_S = 5.0


class PeriodicWork:
    """The loop's timed chores (see the module docstring)."""

    def __init__(self, parts: LoopParts, usage: UsageSampler) -> None:
        self.parts, self.usage = parts, usage
        self._last_flush = self._last_heartbeat = self._last_summary = time.monotonic()
        self._last_sample = 0.0

    def maybe_flush(self) -> None:
        """Write the store's buffered rows once there are many, or once they have waited FLUSH_INTERVAL_S."""
        store = self.parts.store
        now = time.monotonic()
        if store.pending_writes() >= FLUSH_ROWS or (store.pending_writes()
                                                     and now - self._last_flush >= FLUSH_INTERVAL_S):
            store.flush()
            self._last_flush = now
            for live in self.parts.live.values():  # now recorded: older log output may leave the disk (logs.max_mb)
                live.stdout.trim()
                live.stderr.trim()

    def run_due(self) -> None:
        """Each chore whose period has passed: usage sample and sweep, heartbeat, summary line."""
        now = time.monotonic()
        if now - self._last_sample >= RESOURCE_SAMPLE_S:
            self._last_sample = now
            self.usage.sample({tid: (lt.row.number, lt.proc.pid, lt.row.gpus)
                               for tid, lt in self.parts.live.items() if lt.proc is not None})
            self.parts.executor.sweep()  # descendants that left their trial's group
        if now - self._last_heartbeat >= HEARTBEAT_S:
            self.parts.store.heartbeat(self.parts.study.id)  # the engine is alive (the interface and `status` read it)
            self._last_heartbeat = now
            self._reread_max_parallel()
        if now - self._last_summary >= SUMMARY_S:
            self._last_summary = now
            self.parts.say(self.summary())

    def _reread_max_parallel(self) -> None:
        """max_parallel as the interface may have set it since the last look."""
        row = self.parts.store.study_by_id(self.parts.study.id)
        if row and row.max_parallel:
            self.parts.core.handle(MaxParallelRead(row.max_parallel))

    def summary(self) -> str:
        """``12/50 finished: 2 running, 10 completed; best loss=0.1234 (trial 7)``."""
        space, core = self.parts.space, self.parts.core
        counts = self.parts.store.status_counts(self.parts.study.id)
        parts = [f"{counts.get(s, 0)} {s}" for s in TrialStatus if s != TrialStatus.QUEUED and counts.get(s)]
        best, counters = "", core.counters
        if counters.global_best is not None:
            best = f"; best {space.objective.metric}={counters.global_best:.4g} " \
                   f"(trial {counters.global_best_trial})"
        return f"{core.finished}/{space.budget.max_trials} finished: " + ", ".join(parts) + best
