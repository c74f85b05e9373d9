"""How long a trial and a study still need, from what the running trials show.

Why not the mean duration of finished trials alone: early in a study the only finished trials
are the ones a scheduler pruned at the first rung (or that crashed at once), so that mean is a
fraction of a full trial and the ETA came out about five times too low. Every running trial
already tells how long a full trial takes: its time per step times the steps it must reach. The
study's expected trial length therefore mixes finished durations with the running trials'
projected totals, and the ETA is the work left spread over the parallel slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

ETA_UNKNOWN = None


def trial_eta(last_step: float | None, max_step: float | None, step_seconds: float | None) -> float | None:
    """Seconds left for a running trial: the measured time per step times the steps still to go."""
    if last_step is None or max_step is None or step_seconds is None:
        return ETA_UNKNOWN
    return max(0.0, (max_step - last_step) * step_seconds)


@dataclass(frozen=True)
class RunningPace:
    """One running trial for the study ETA: how long it has run, and how long it still needs (if known)."""

    elapsed_s: float
    left_s: float | None


def expected_trial_seconds(finished_mean: float | None, finished_count: int,
                           running: Sequence[RunningPace]) -> float | None:
    """Mean length of a trial: finished ones as they ran, running ones as projected to their end."""
    total = (finished_mean or 0.0) * finished_count if finished_mean is not None else 0.0
    count = finished_count if finished_mean is not None else 0
    for r in running:
        if r.left_s is not None:
            total += r.elapsed_s + r.left_s
            count += 1
    return total / count if count else None


def study_eta(running: Sequence[RunningPace], left_to_start: int, trial_seconds: float | None,
              parallel: int) -> float | None:
    """Seconds until the study ends at its pace: the work left spread over ``parallel`` slots.

    Never less than the longest running trial still needs. Unknown while a trial has neither a
    pace of its own nor a study mean to borrow.
    """
    lefts = []
    for r in running:
        if r.left_s is not None:
            lefts.append(r.left_s)
        elif trial_seconds is not None:
            lefts.append(max(0.0, trial_seconds - r.elapsed_s))
        else:
            return ETA_UNKNOWN
    if left_to_start > 0 and trial_seconds is None:
        return ETA_UNKNOWN
    work = sum(lefts) + max(0, left_to_start) * (trial_seconds or 0.0)
    slots = max(1, parallel)
    longest = max(lefts, default=0.0)
    if left_to_start > 0:  # at least one more whole trial after the first slot frees
        longest = max(longest, min(lefts, default=0.0) + (trial_seconds or 0.0))
    return max(longest, work / slots)
