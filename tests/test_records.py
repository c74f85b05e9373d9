"""The record vocabulary: what the engine writes is what the TUI reads, with the same classes.

Each payload goes through the real Store writer into a real file and comes back through the
TUI's own reader (StudyReader), so a field renamed on one side fails here. The command result
test drives a real engine: a refused command reaches the TUI's commander with ``ok`` False,
decided by the engine, not by matching words.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Iterator

import pytest

import hpotui.engine
from hpotui.engine.database import records
from hpotui.engine.database.records import (CommandResult, EventKind, HealthFlag, NotRead, SchedulerDecision, StudyEnd,
                                   StudyStatus, TrialEnded, TrialStarted, TrialStatus)
from hpotui.engine.database.store import SCHEMA_VERSION, Store
from hpotui.tui.actions import Commander
from hpotui.tui.data import StudyReader
from tests.faults.conftest import Lab, counting_study, wait_for
from tests.store_rows import bare_study, bare_trial


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "r.db")
    yield s
    s.close()


def _study_and_trial(store: Store) -> tuple[int, int]:
    study = bare_study(store, "rec")
    return study.id, bare_trial(store, study, Path("/nonexistent/1")).id


def test_statuses_are_the_stored_strings(store: Store) -> None:
    """Enum members bind, compare, format and serialise as the words existing study files hold."""
    study_id, trial_id = _study_and_trial(store)
    store.finish_trial(trial_id, TrialStatus.PRUNED, exit_code=None, reason="cut")
    raw = store.conn.execute("SELECT status, typeof(status) FROM trials WHERE id = ?", (trial_id,)).fetchone()
    assert tuple(raw) == ("pruned", "text")
    assert TrialStatus.PRUNED == "pruned" and f"{TrialStatus.PRUNED}" == "pruned"
    assert store.trials(study_id, statuses=records.EARLY_STOPPED_STATUSES)[0].id == trial_id
    assert {s.value for s in TrialStatus} >= set(records.ENDED_STATUSES | records.UNFINISHED_STATUSES)
    assert records.ENDED_STATUSES.isdisjoint(records.UNFINISHED_STATUSES - records.INVALID_STATUSES)
    assert TrialStatus.INTERRUPTED not in records.TERMINAL_STATUSES  # it runs again on resume
    assert set(StudyStatus) >= records.STUDY_ENDED_STATUSES


def test_every_event_kind_the_engine_writes_is_in_the_vocabulary() -> None:
    """Every write site names its kind as an EventKind member (or a string the readers know)."""
    spelled, named = set(), set()
    site = r'(?:add_event|buffer_event)\(\s*[^,()]+,\s*[^,()]+,\s*(?:"([a-z_]+)"|EventKind\.([A-Z_]+))'
    for source in Path(hpotui.engine.__file__).parent.rglob("*.py"):
        for text, member in re.findall(site, source.read_text()):
            if text:
                spelled.add(text)
            else:
                named.add(member)
    assert len(named) > 20  # the scan found the write sites
    assert named <= set(EventKind.__members__), named - set(EventKind.__members__)
    assert spelled <= {k.value for k in EventKind}, spelled - {k.value for k in EventKind}


def test_trial_end_and_failure_round_trip(store: Store, tmp_path: Path) -> None:
    study_id, trial_id = _study_and_trial(store)
    ended = TrialEnded(exit_code=3, best=0.5, reports=7, stderr_tail="Traceback ...\nValueError: bad width\n")
    store.finish_trial(trial_id, TrialStatus.FAILED, exit_code=3, reason="exit code 3")
    store.add_event(study_id, trial_id, EventKind.FAILED, "trial 1 failed", level="error", data=ended.to_data())
    [event] = store.events(study_id, kinds=(EventKind.FAILED,))
    assert TrialEnded.from_data(event.data) == ended  # the engine's own read side
    failure = StudyReader(str(tmp_path / "r.db")).failure(trial_id)  # the TUI's
    assert failure is not None and (failure.exit_code, failure.stderr_tail) == (3, ended.stderr_tail)


def test_scheduler_decision_and_flag_round_trip(store: Store, tmp_path: Path) -> None:
    study_id, trial_id = _study_and_trial(store)
    stop = SchedulerDecision("stop", step=9.0, value=0.25, resource=3.0, rung=3.0)
    go_on = SchedulerDecision("continue", step=3.0, value=0.4, resource=1.0)
    flag = HealthFlag("nan", step=4.0, value=None, hint="lower the learning rate")
    store.buffer_event(study_id, trial_id, EventKind.SCHEDULER, "trial 1 kept", data=go_on.to_data())
    store.buffer_event(study_id, trial_id, EventKind.SCHEDULER, "trial 1 pruned", data=stop.to_data())
    store.buffer_event(study_id, trial_id, EventKind.FLAG, "nan: loss", level="error", data=flag.to_data())
    store.flush()
    decisions = [SchedulerDecision.from_data(e.data) for e in store.events(study_id, kinds=(EventKind.SCHEDULER,))]
    assert decisions == [go_on, stop]
    reader = StudyReader(str(tmp_path / "r.db"))
    assert reader.cutoffs(trial_id) == [9.0]  # only the stop, at the step the engine wrote
    [line] = reader.flags(study_id)
    assert (line.flag, line.hint, line.level, line.trial_number) == ("nan", "lower the learning rate", "error", 1)
    assert HealthFlag.from_data(store.events(study_id, kinds=(EventKind.FLAG,))[0].data) == flag


def test_study_end_started_and_not_read_round_trip(store: Store, tmp_path: Path) -> None:
    study_id, trial_id = _study_and_trial(store)
    started = TrialStarted(pid=4242, gpus="0", clone_of=3, placement="packed")
    missing = NotRead(problem="no_objective", what="val_acc")
    store.buffer_event(study_id, trial_id, EventKind.STARTED, "trial 1 started", data=started.to_data())
    store.buffer_event(study_id, trial_id, EventKind.NOT_READ, "trial 1 completed: val_acc never reported",
                       data=missing.to_data())
    store.set_study_status(study_id, StudyStatus.STOPPED)
    end = StudyEnd(StudyStatus.STOPPED, "stopped by the user")
    store.add_event(study_id, None, EventKind.STUDY_END, "study stopped", data=end.to_data())
    assert TrialStarted.from_data(store.events(study_id, kinds=(EventKind.STARTED,))[0].data) == started
    assert NotRead.from_data(store.events(study_id, kinds=(EventKind.NOT_READ,))[0].data) == missing
    reader = StudyReader(str(tmp_path / "r.db"))
    assert reader.study_view(study_id).end_reason == "stopped by the user"
    assert reader.not_read(trial_id) == ["val_acc never reported"]


def test_payloads_read_leniently() -> None:
    """A row written by an older engine or a sqlite3 shell reads as missing fields, never an exception."""
    assert SchedulerDecision.from_data({"action": "stop", "step": "9", "rung": True}) == \
        SchedulerDecision("stop", None, None, None, None)
    assert TrialEnded.from_data({}) == TrialEnded(None, None, 0, None)
    assert TrialStarted.from_data({"clone_of": "3", "gpus": 0}) == TrialStarted(None, None, None, None)
    assert StudyEnd.from_data({"reason": None}).reason == ""


def test_schema_4_migrates_an_older_file_idempotently(tmp_path: Path) -> None:
    """A schema-3 file (no ``commands.ok``) gains the column; its old acknowledgements read as ok unknown."""
    path = tmp_path / "old.db"
    store = Store(path)
    study_id, _ = _study_and_trial(store)
    command = store.send_command(study_id, "pause_launching")
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE commands DROP COLUMN ok")
    conn.execute("UPDATE commands SET acknowledged_at = 1.0, result = 'launching paused'")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION == 4
    assert store.command_outcome(command) == CommandResult(None, "launching paused")
    store.acknowledge_command(command, CommandResult.refused("refused: nope"))
    assert store.command_outcome(command) == CommandResult(False, "refused: nope")
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 3")  # as if the migration's version bump had been lost
    conn.commit()
    conn.close()
    store = Store(path)  # re-runs migration 4 on a file that already has the column
    assert store.schema_version() == 4 and store.command_outcome(command) == CommandResult(False, "refused: nope")
    store.close()


def test_refused_command_reaches_the_tui_with_ok_false(tmp_path: Path) -> None:
    lab = Lab(root=tmp_path, db=tmp_path / "hpotui.db")
    try:
        space = counting_study(lab, "acks", max_trials=2, max_parallel=1, epochs=200, delay=0.05)
        lab.start("launch", str(space), "--headless")
        wait_for(lambda: lab.trials("acks") and lab.trials("acks")[0]["status"] == "running", what="a running trial")
        study_id = lab.study_row("acks")["id"]
        commander = Commander(str(lab.db), wait_s=20)
        try:
            bad = commander.send(study_id, "set_max_parallel", args={"value": 0})
            absent = commander.send(study_id, "pause_trial", trial_number=99)
            good = commander.send(study_id, "set_max_parallel", args={"value": 2})
            stopped = commander.send(study_id, "stop_study")
        finally:
            commander.close()
        assert bad.ok is False and "max_parallel" in bad.message
        assert absent.ok is False and "99" in absent.message
        assert good == CommandResult(True, "max_parallel is now 2")
        assert stopped.ok is True
        stored = {r["result"]: r["ok"] for r in lab.query("SELECT result, ok FROM commands")}
        assert stored[bad.message] == 0 and stored[good.message] == 1  # what `hpotui` and a shell see too
        for engine in lab.engines:
            engine.wait(60)
        late = Commander(str(lab.db))
        after = late.send(study_id, "stop_study")  # the study has ended: nothing to stop
        late.close()
        assert after.ok is False and "nothing to stop" in after.message
    finally:
        lab.cleanup()


def test_refine_refusal_and_success_carry_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refine dialog stays open on ``ok`` False (it shows why) instead of guessing from the words."""
    from tests.tui.bigdb import make_study_db

    monkeypatch.chdir(tmp_path)
    db = make_study_db(tmp_path / "done.db", name="done", finished=True)
    commander = Commander(str(db))
    try:
        reading = Store(db, readonly=True)
        study = reading.study("done")
        reading.close()
        assert study is not None
        refused = commander.refine(study, top=3, resource_scale=-1.0, output=None, edits={}, budget={}, launch=False)
        written = commander.refine(study, top=3, resource_scale=1.0, output=str(tmp_path / "next.yaml"), edits={},
                                   budget={}, launch=False)
    finally:
        commander.close()
    assert refused.ok is False and refused.message.startswith("refine refused: resource scale must be positive")
    assert written.ok is True and (tmp_path / "next.yaml").is_file()
