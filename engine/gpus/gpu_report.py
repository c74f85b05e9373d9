"""What ``hpotui status`` says about GPU sharing: where running trials sit, OOM reruns, paused packing.

Read back from the events the engine recorded (the placement reason on each ``started`` event,
``oom_retry``, ``packing_paused``, ``gpu_claims``), so a finished study tells the same story.
"""

from __future__ import annotations

from typing import Any

from ..database.records import EventKind, TrialStarted, TrialStatus
from ..database.store import Store


def gpu_status_lines(store: Store, study_id: int, trials: list[dict[str, Any]]) -> list[str]:
    """Lines for one study's ``status``; ``trials`` are :func:`engine.outputs.export.study_record`'s trials."""
    placement, lines = _read_events(store, study_id)
    by_number = {t["id"]: t for t in trials}
    for t in trials:
        if t["status"] == TrialStatus.RUNNING:
            lines += _running_line(store, study_id, t, placement)
        first = by_number.get(t["rerun_of"]) if t["rerun_of"] is not None else None
        if first is not None and "oom" in first.get("flags", []):
            lines.append(f"  oom rerun: trial {t['id']} reruns trial {first['id']} alone on a whole GPU "
                         f"(out of GPU memory while sharing GPU {first['gpus']}): {t['status']}")
    return lines


def _read_events(store: Store, study_id: int) -> tuple[dict[int, str], list[str]]:
    """(trial id -> its placement reason, study-level lines: packing paused, claims fallback)."""
    placement: dict[int, str] = {}
    lines: list[str] = []
    for event in store.events(study_id, kinds=[EventKind.STARTED, EventKind.PACKING_PAUSED, EventKind.GPU_CLAIMS]):
        if event.kind != EventKind.STARTED:
            lines.append(("warning: " if event.kind == EventKind.GPU_CLAIMS else "") + event.message)
            continue
        where = TrialStarted.from_data(event.data).placement
        if event.trial_id is not None and where:
            placement[event.trial_id] = where
    return placement, lines


def _running_line(store: Store, study_id: int, t: dict[str, Any], placement: dict[int, str]) -> list[str]:
    trial = store.trial_by_number(study_id, t["id"])
    if trial is None or trial.id not in placement:
        return []
    return [f"  gpu: trial {t['id']} on GPU {t['gpus']} ({placement[trial.id]} when placed)"]
