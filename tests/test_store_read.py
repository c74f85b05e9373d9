"""The store's read side answers in the record vocabulary, on a read-only connection to a file the Store wrote.

What the TUI (and export) learn about events and clones comes back as the payload dataclasses the
engine wrote, so a field the engine never writes cannot be read (the ``step`` once read from
``pruned`` events); a damaged payload reads as an empty one instead of failing the reader.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

from hpotui.engine.database import store_read
from hpotui.engine.database.records import (EventKind, HealthFlag, NotRead, SchedulerDecision, StudyEnd, TrialEnded,
                                   TrialStarted)
from hpotui.engine.database.store import Store
from tests.store_rows import bare_study, bare_trial


def _readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def test_events_come_back_as_their_payloads(tmp_path: Path) -> None:
    path = tmp_path / "hpotui.db"
    store = Store(path)
    study = bare_study(store)
    first, second = bare_trial(store, study, tmp_path, index=0).id, bare_trial(store, study, tmp_path, index=1).id
    store.add_event(study.id, first, EventKind.FLAG, "nan_loss: trial 1", level="error",
                    data=HealthFlag("nan_loss", step=3.0, value=float("nan"), hint="lower the lr").to_data())
    store.add_event(study.id, second, EventKind.STARTED, "trial 2 started",
                    data=TrialStarted(pid=42, clone_of=1).to_data())
    store.add_event(study.id, None, EventKind.FLAG, "study-level", data=HealthFlag("oom").to_data())
    store.add_event(study.id, first, EventKind.SCHEDULER, "stop",
                    data=SchedulerDecision("stop", 9.0, 0.5, 9.0, 9.0).to_data())
    store.add_event(study.id, first, EventKind.FAILED, "trial 1 failed",
                    data=TrialEnded(exit_code=1, best=None, reports=2, stderr_tail="Traceback ...").to_data())
    store.add_event(study.id, first, EventKind.NOT_READ, "trial 1 failed: acc never matched",
                    data=NotRead("never_matched", "regex acc").to_data())
    store.add_event(study.id, None, EventKind.STUDY_END, "study s completed",
                    data=StudyEnd("completed", "max_trials reached").to_data())
    queued = store.queue_clone(study.id, command_id=None, source_number=1, params={"lr": 0.5}, note="wider",
                               result="clone of trial 1 queued")
    store.close()

    conn = _readonly(path)
    marks = store_read.trial_marks_since(conn, study.id, 0, clone_starts=True)
    ((flagged, flag),) = marks.flags
    assert (flagged, flag.flag, flag.step, flag.hint) == (first, "nan_loss", 3.0, "lower the lr")
    assert flag.value is not None and math.isnan(flag.value)  # written as NaN, read back as NaN
    assert marks.starts == ((second, TrialStarted(pid=42, clone_of=1)),)  # the study-level flag has no trial
    again = store_read.trial_marks_since(conn, study.id, marks.last_id, clone_starts=True)
    assert again.flags == () and again.starts == () and again.last_id == marks.last_id
    assert store_read.scheduler_decisions(conn, first)[0].stopped
    assert store_read.trial_failure(conn, first) == TrialEnded(1, None, 2, "Traceback ...")
    assert store_read.trial_failure(conn, second) is None
    (not_read,) = store_read.trial_not_read(conn, first)
    assert not_read.problem == NotRead("never_matched", "regex acc") and not_read.message.endswith("never matched")
    ended = store_read.latest_study_end(conn, study.id)
    assert ended is not None and ended.end == StudyEnd("completed", "max_trials reached")
    assert [f.flag.flag for f in store_read.recent_flags(conn, study.id, 10)] == ["oom", "nan_loss"]
    assert [f.trial_number for f in store_read.recent_flags(conn, study.id, 10)] == [None, 1]
    assert store_read.has_clone_queue(conn)
    assert store_read.queued_clones(conn, study.id) == [store_read.QueuedClone(queued, 1, {"lr": 0.5}, "wider")]
    conn.close()


def test_a_damaged_payload_reads_as_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "hpotui.db"
    store = Store(path)
    study = bare_study(store)
    store.add_event(study.id, None, EventKind.STUDY_END, "study s failed", data={})
    store.close()
    hand = sqlite3.connect(path)  # a hand-edited file: the payload is no longer JSON
    hand.execute("UPDATE events SET data = '{not json'")
    hand.commit()
    hand.close()
    conn = _readonly(path)
    ended = store_read.latest_study_end(conn, study.id)
    assert ended is not None and ended.message == "study s failed" and ended.end == StudyEnd("", "")
    conn.close()
