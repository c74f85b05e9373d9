"""The lines a study ends with: how many trials finished, the top five, the best command, the Pareto front.

Why its own module: the end-of-study print is what a headless user reads last, and it is built
from the store alone (export.py's records), not from the loop's state. Keeping it apart from the
loop lets its wording change without touching the shell, and keeps the export imports out of it.
"""

from __future__ import annotations

import shlex
from typing import Callable

from ..core.commands import show_params
from ..database.store import Store, StudyRow
from ..outputs.export import study_record, top_trials
from ..search.pareto import front_lines
from ..space_file.space import Space

TOP_N = 5


def print_final(store: Store, space: Space, study: StudyRow, status: str, finished: int,
                say: Callable[[str], None]) -> None:
    """Say how the study ended and its best trials (with several objectives, its front as well)."""
    rows = top_trials(store, study.id, TOP_N)
    say(f"study {study.name} {status}: {finished} trials finished")
    metric = space.objective.metric
    if not rows:
        say("no trial reported the objective " + metric)
        return
    say(f"top {len(rows)} by {metric} ({space.objective.mode}):")
    for rank, t in enumerate(rows, 1):
        say(f"  {rank}. trial {t.number:<4} {metric}={t.best_value:<10.4g} {t.status:<10} {show_params(t.params)}")
    best = rows[0]
    say(f"best trial {best.number}: {shlex.join(best.argv)}")
    if space.multi_objective:  # several objectives: the front is the answer, not one best trial
        record = study_record(store, store.study_by_id(study.id) or study)
        for line in front_lines(record["trials"], record["study"]["objective"]):
            say(line)
