"""What ``hpotui status`` says about GPU sharing: where running trials sit, OOM reruns, paused packing.

Read back from the events the engine recorded (the placement reason on each ``started`` event,
``oom_retry``, ``packing_paused``, ``gpu_claims``), so a finished study tells the same story.
"""

from __future__ import annotations

from typing import Any


def gpu_status_lines(store: Any, study_id: int, trials: list[dict[str, Any]]) -> list[str]:
    """Lines for one study's ``status``; ``trials`` are :func:`engine.export.study_record`'s trials."""
    kinds = ["started", "oom_retry", "packing_paused", "gpu_claims"]
    events = store.events(study_id, kinds=kinds)
    placement: dict[int, str] = {}
    lines: list[str] = []
    by_number = {t["id"]: t for t in trials}
    for event in events:
        if event.kind == "started" and event.trial_id is not None and event.data.get("placement"):
            placement[event.trial_id] = str(event.data["placement"])
        elif event.kind in ("packing_paused", "gpu_claims"):
            lines.append(f"{'warning: ' if event.kind == 'gpu_claims' else ''}{event.message}")
    for t in trials:
        trial = store.trial_by_number(study_id, t["id"]) if t["status"] == "running" or t["rerun_of"] else None
        if trial is None:
            continue
        if t["status"] == "running" and trial.id in placement:
            lines.append(f"  gpu: trial {t['id']} on GPU {t['gpus']} ({placement[trial.id]} when placed)")
        first = by_number.get(t["rerun_of"]) if t["rerun_of"] is not None else None
        if first is not None and "oom" in first.get("flags", []):
            lines.append(f"  oom rerun: trial {t['id']} reruns trial {first['id']} alone on a whole GPU "
                         f"(out of GPU memory while sharing GPU {first['gpus']}): {t['status']}")
    return lines
