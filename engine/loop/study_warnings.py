"""The study's warning lines: boundary warnings ("best trials at the upper edge of lr"), then what trials did not report.

Why its own module: the warnings are stored on the study row (``studies.warnings``), which
`status`, export and the interface show. Two sources write that one list: the boundary check,
run after every trial, and the core's ledger of what trials did not report. Each new boundary
warning is also recorded as an event and said once. Holding the list here keeps both writers
consistent and the loop out of it.
"""

from __future__ import annotations

from typing import Callable

from ..database.records import EventKind
from ..database.store import Store, StudyRow
from ..reading import trial_reading as reading
from ..reading.trial_reading import ReadingLedger
from ..search.boundary import RANKED_STATUSES, boundary_warnings
from ..space_file.space import Space


class StudyWarnings:
    """The boundary warnings said so far, and the ledger of what trials did not report."""

    def __init__(self, store: Store, space: Space, study: StudyRow, not_read: ReadingLedger,
                 say: Callable[[str], None]) -> None:
        self.store, self.space, self.study_id, self.not_read, self.say = store, space, study.id, not_read, say
        not_read.rebuild(store.events(study.id, kinds=(reading.NOT_READ_EVENT,)),
                         {t.id: t.number for t in store.trials(study.id)})
        self.boundary = [w for w in study.warnings if w not in not_read.lines()]  # boundary ones only

    def store_reading_lines(self, reading_lines: tuple[str, ...]) -> None:
        """The core's not-read lines changed: stored after the boundary warnings."""
        self.store.set_warnings(self.study_id, self.boundary + list(reading_lines))

    def update(self) -> None:
        """Boundary warnings, stored on the study when they change; each new one recorded and said."""
        # boundary.study_warnings, from the store's light per-trial read (this runs after every trial)
        results = self.store.ranked_results(self.study_id, RANKED_STATUSES)
        warnings = [w.text for w in boundary_warnings(self.space.params, results, self.space.objective.mode)]
        if warnings == self.boundary:
            return
        self.store.set_warnings(self.study_id, warnings + self.not_read.lines())
        for warning in warnings:
            if warning not in self.boundary:
                self.store.add_event(self.study_id, None, EventKind.BOUNDARY, warning, level="warning")
                self.say(f"warning: {warning}")
        self.boundary = warnings
