"""The "launching paused" notice comes from the engine's failure_storm record, never from the reason's words.

Files are written by the engine's own Store; the interface reads them with its read-only StudyReader
and the notices are what its Watcher would ring the bell for.
"""

from __future__ import annotations

from pathlib import Path

from hpotui.engine.database.records import EventKind
from hpotui.engine.database.store import Store
from hpotui.tui.data import StudyReader, StudySummary
from hpotui.tui.notices import Notice, StudyState, Watcher
from tests.store_rows import bare_study

STORM = ("launching paused: 3 trials in a row failed with the same error (exit code 1); "
         "fix the command, then `hpotui resume s`")


def _state(s: StudySummary) -> StudyState:
    return StudyState(name=s.name, status=s.status, engine_alive=s.engine_alive, launching_paused=s.launching_paused,
                      pause_reason=s.pause_reason, best=None, mode=s.mode, storm_paused=s.storm_paused)


def _notices(watcher: Watcher, reader: StudyReader) -> list[Notice]:
    (summary,) = reader.studies()
    return watcher.observe(summary.id, _state(summary))


def _study(path: Path) -> tuple[Store, int]:
    store = Store(path)
    study = bare_study(store, headless=False)
    return store, study.id


def test_a_failure_storm_pause_is_noticed_once_even_when_its_event_follows_the_pause(tmp_path: Path) -> None:
    store, study_id = _study(tmp_path / "hpotui.db")
    reader, watcher = StudyReader(str(tmp_path / "hpotui.db")), Watcher()
    assert _notices(watcher, reader) == []  # first sight: nothing is news
    store.set_launching_paused(study_id, True, STORM)  # the engine pauses, then records why (two writes)
    assert _notices(watcher, reader) == []  # not yet known to be the engine's
    store.add_event(study_id, None, EventKind.FAILURE_STORM, STORM, level="error")
    news = _notices(watcher, reader)
    assert [(n.event, n.severity, n.message) for n in news] == [("paused", "warning", f"s: {STORM}")]
    assert _notices(watcher, reader) == []  # said once
    store.set_launching_paused(study_id, False)
    assert _notices(watcher, reader) == []
    store.set_launching_paused(study_id, True, STORM + " (again)")  # a second storm, its record written with it
    store.add_event(study_id, None, EventKind.FAILURE_STORM, STORM + " (again)", level="error")
    assert [n.event for n in _notices(watcher, reader)] == ["paused"]
    reader.close()
    store.close()


def test_a_users_pause_is_no_storm_whatever_its_words(tmp_path: Path) -> None:
    store, study_id = _study(tmp_path / "hpotui.db")
    reader, watcher = StudyReader(str(tmp_path / "hpotui.db")), Watcher()
    store.add_event(study_id, None, EventKind.FAILURE_STORM, STORM, level="error")  # an old storm, since resumed
    assert _notices(watcher, reader) == []
    store.set_launching_paused(study_id, True, "launching paused: by me, for lunch")
    assert _notices(watcher, reader) == []
    (summary,) = reader.studies()
    assert summary.launching_paused and not summary.storm_paused
    reader.close()
    store.close()
