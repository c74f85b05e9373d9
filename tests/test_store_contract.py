"""The study file's contract, in the spirit of Optuna's ``StorageTestCase``: what every reader and writer
may rely on, checked through the Store's public methods only (the engine's own writer, no SQL rows).

Every test runs twice: on a fresh file, and on a file created by a schema-1 hpotui and migrated to
the current schema when it was opened. The schema-1 file is made by the Store itself, with its schema
version held at 1 while it creates the file (so only migration 1 runs, exactly as an old hpotui did)
and while it writes a study, an event and a command into it; the real Store then opens and migrates it.
Trials cannot be written at schema 1 by today's writer (its insert names the later ``clone_id``
column), so the old file brings studies, events and commands, not trials.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from hpotui.engine.database import store as store_module
from hpotui.engine.database.dbfile import DatabaseDamaged, DatabaseRefused
from hpotui.engine.database.store import HOSTNAME, SCHEMA_VERSION, EngineLocked, Store
from hpotui.engine.trials.liveness import process_create_time
from tests.store_rows import bare_study, bare_trial

OLDEST_SCHEMA = min(store_module.MIGRATIONS)


def _old_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file as the oldest supported hpotui left it: its schema, a study, an event and a command."""
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "SCHEMA_VERSION", OLDEST_SCHEMA)
        old = Store(path)
        assert old.schema_version() == OLDEST_SCHEMA
        study = bare_study(old, "from-schema-1")
        old.add_event(study.id, None, "note", "written at schema 1", data={"n": 1})
        old.send_command(study.id, "pause_launching")
        old.close()


@pytest.fixture(params=["fresh", "migrated"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    path = tmp_path / "hpotui.db"
    if request.param == "migrated":
        _old_file(path, monkeypatch)
    the_store = Store(path)
    try:
        yield the_store
    finally:
        the_store.close()


def _reader(store: Store) -> Store:
    """A second process's view: a read-only Store on the same file (the TUI, ``hpotui status``)."""
    return Store(store.path, readonly=True)


# -- schema and migrations ---------------------------------------------------------------------
def test_file_is_at_the_current_schema_and_reopening_changes_nothing(store: Store) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    before = [s.name for s in store.studies()]
    again = Store(store.path)
    assert again.schema_version() == SCHEMA_VERSION and [s.name for s in again.studies()] == before
    again.close()


def test_migration_keeps_what_the_old_hpotui_wrote_and_the_new_tables_work(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    _old_file(path, monkeypatch)
    store = Store(path)
    study = store.study("from-schema-1")
    assert study is not None and study.status == "queued"
    assert [(e.kind, e.message, e.data) for e in store.events(study.id)] == [("note", "written at schema 1", {"n": 1})]
    assert [c.action for c in store.pending_commands(study.id)] == ["pause_launching"]
    trial = bare_trial(store, study, tmp_path)  # the columns later migrations added are there and nullable
    assert trial.clone_id is None and trial.bracket is None
    store.set_trial_gpu_memory(trial.id, 1 << 30)
    assert store.queue_clone(study.id, command_id=None, source_number=trial.number, params={"lr": 0.2}, note=None,
                             result="queued") is not None


def test_reader_of_an_old_file_never_migrates_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    _old_file(path, monkeypatch)
    reader = Store(path, readonly=True)
    assert reader.schema_version() == OLDEST_SCHEMA
    assert [s.name for s in reader.studies()] == ["from-schema-1"]
    reader.close()
    assert Store(path, readonly=True).schema_version() == OLDEST_SCHEMA


# -- studies -----------------------------------------------------------------------------------
def test_study_written_is_read_back_by_name_id_and_list(store: Store) -> None:
    study = bare_study(store, "alpha", lr={"low": 0.1})
    assert store.study("alpha") == study == store.study_by_id(study.id)
    assert study.stage == 1 and study.status == "queued" and study.max_parallel == 2
    assert "alpha" in [s.name for s in store.studies()]
    assert store.space_json(study.id) == {"lr": {"low": 0.1}}
    store.set_space_json(study.id, {"moved": True})
    assert store.space_json(study.id) == {"moved": True}
    assert store.study("no-such") is None and store.study_by_id(10_000) is None


def test_study_status_times_pause_parallel_and_warnings(store: Store) -> None:
    study = bare_study(store)
    store.set_study_status(study.id, "running")
    running = store.study_by_id(study.id)
    assert running is not None and running.started_at is not None and running.finished_at is None
    store.set_study_status(study.id, "completed")
    done = store.study_by_id(study.id)
    assert done is not None and done.finished_at is not None and done.started_at == running.started_at
    store.set_launching_paused(study.id, True, "disk nearly full")
    paused = store.study_by_id(study.id)
    assert paused is not None and paused.launching_paused and paused.pause_reason == "disk nearly full"
    store.set_launching_paused(study.id, False, "ignored when resuming")
    resumed = store.study_by_id(study.id)
    assert resumed is not None and not resumed.launching_paused and resumed.pause_reason is None
    store.set_max_parallel(study.id, 5)
    store.set_warnings(study.id, ["one", "two"])
    final = store.study_by_id(study.id)
    assert final is not None and final.max_parallel == 5 and final.warnings == ("one", "two")


def test_child_studies_count_their_stage_and_names_never_collide(store: Store) -> None:
    parent = bare_study(store, "base")
    child = bare_study(store, store.unused_study_name("base"), parent_id=parent.id)
    assert child.name == "base-2" and child.stage == 2
    assert [c.id for c in store.children(parent.id)] == [child.id]
    assert store.unused_study_name("base") == "base-3"


# -- trials ------------------------------------------------------------------------------------
def test_trials_are_numbered_in_order_and_read_back(store: Store, tmp_path: Path) -> None:
    study = bare_study(store)
    first, second = bare_trial(store, study, tmp_path), bare_trial(store, study, tmp_path)
    assert (first.number, second.number) == (1, 2) and store.next_trial_number(study.id) == 3
    assert first.status == "queued" and first.params == {"lr": 0.1} and first.seed == 7
    assert store.trial(first.id) == first == store.trial_by_number(study.id, 1)
    assert [t.id for t in store.trials(study.id)] == [first.id, second.id]
    store.update_trial_argv(first.id, ["python", "t.py", "--lr", "0.1"])
    assert store.trial(first.id).argv == ["python", "t.py", "--lr", "0.1"]  # type: ignore[union-attr]


def test_trial_life_running_paused_bracket_finished(store: Store, tmp_path: Path) -> None:
    study = bare_study(store)
    trial = bare_trial(store, study, tmp_path)
    store.mark_running(trial.id, pid=os.getpid(), pgid=os.getpgid(0), proc_create_time=1.0, git_commit="abc")
    store.set_trial_bracket(trial.id, 2)
    store.set_trial_paused(trial.id, True)
    running = store.trial(trial.id)
    assert running is not None and running.status == "running" and running.pid == os.getpid()
    assert running.started_at is not None and running.git_commit == "abc" and running.host == HOSTNAME
    assert running.bracket == 2 and running.paused
    assert [t.id for t in store.trials(study.id, ("running",))] == [trial.id]
    store.finish_trial(trial.id, "pruned", exit_code=-15, reason="pruned at epoch 3")
    ended = store.trial(trial.id)
    assert ended is not None and ended.status == "pruned" and ended.exit_code == -15
    assert ended.status_reason == "pruned at epoch 3" and ended.finished_at is not None and not ended.paused
    assert ended.bracket == 2  # the bracket outlives the trial: resume reads it back
    assert store.status_counts(study.id) == {"pruned": 1}


def test_usage_and_gpu_memory_are_kept_per_trial(store: Store, tmp_path: Path) -> None:
    study = bare_study(store)
    trial = bare_trial(store, study, tmp_path)
    store.set_trial_usage(trial.id, 3 << 30, 87.5)
    store.set_trial_gpu_memory(trial.id, 2 << 30)
    store.finish_trial(trial.id, "completed", exit_code=0, reason=None)
    ended = store.trial(trial.id)
    assert ended is not None and ended.status == "completed"
    assert store.measured_gpu_memory(study.id) == [({"lr": 0.1}, 3 << 30)]


def test_ranked_results_skip_unfinished_and_non_finite_bests(store: Store, tmp_path: Path) -> None:
    study = bare_study(store)
    values = [0.5, float("nan"), 0.9, None]
    for value in values:
        trial = bare_trial(store, study, tmp_path)
        if value is not None:
            store.buffer_progress(trial.id, stdout_offset=0, stderr_offset=0, reports=1, last_step=1,
                                  best_value=value, best_step=1)
            store.flush()
            store.finish_trial(trial.id, "completed", exit_code=0, reason=None)
    assert [v for _, v in store.ranked_results(study.id, ("completed",))] == [0.5, 0.9]


# -- metrics and offsets: one transaction ----------------------------------------------------
def test_metrics_and_their_offsets_become_visible_together_at_flush(store: Store, tmp_path: Path) -> None:
    study = bare_study(store)
    trial = bare_trial(store, study, tmp_path)
    reader = _reader(store)
    store.buffer_metrics(trial.id, 1, {"val_acc": 0.5, "loss": float("nan")}, at=10.0)
    store.buffer_progress(trial.id, stdout_offset=120, stderr_offset=7, reports=1, last_step=1, best_value=0.5,
                          best_step=1)
    store.buffer_event(study.id, trial.id, "scheduler", "trial 1 promoted", data={"step": 1})
    assert store.pending_writes() == 4
    assert reader.metric_count(study.id) == 0 and reader.trial(trial.id).stdout_offset == 0  # type: ignore[union-attr]
    assert reader.events(study.id, trial_id=trial.id) == []
    assert store.flush() == 2 and store.pending_writes() == 0
    seen = reader.trial(trial.id)
    assert seen is not None and (seen.stdout_offset, seen.stderr_offset, seen.reports) == (120, 7, 1)
    assert reader.metric_count(study.id) == 2 and len(reader.events(study.id, trial_id=trial.id)) == 1
    assert math.isnan(reader.last_values(trial.id)["loss"])  # NaN comes back as NaN
    assert store.flush() == 0  # nothing buffered, nothing written
    reader.close()


def test_progress_without_a_new_best_keeps_the_recorded_best(store: Store, tmp_path: Path) -> None:
    study = bare_study(store)
    trial = bare_trial(store, study, tmp_path)
    store.buffer_progress(trial.id, stdout_offset=10, stderr_offset=0, reports=1, last_step=1, best_value=0.7,
                          best_step=1)
    store.flush()
    store.buffer_progress(trial.id, stdout_offset=20, stderr_offset=0, reports=2, last_step=None, best_value=None,
                          best_step=None)
    store.flush()
    row = store.trial(trial.id)
    assert row is not None and (row.stdout_offset, row.last_step, row.best_value, row.best_step) == (20, 1, 0.7, 1)


def test_finishing_a_trial_flushes_its_buffered_metrics_first(store: Store, tmp_path: Path) -> None:
    study = bare_study(store)
    trial = bare_trial(store, study, tmp_path)
    store.buffer_metrics(trial.id, 9, {"val_acc": 0.8}, at=1.0)
    store.finish_trial(trial.id, "completed", exit_code=0, reason=None)
    assert [(m.step, m.value) for m in _reader(store).metrics(trial.id)] == [(9, 0.8)]


def test_a_replaced_file_is_never_written_and_the_buffers_are_kept(store: Store, tmp_path: Path) -> None:
    study = bare_study(store)
    trial = bare_trial(store, study, tmp_path)
    store.buffer_metrics(trial.id, 1, {"val_acc": 0.5}, at=1.0)
    os.replace(store.path, tmp_path / "moved-away.db")
    store.path.write_bytes(b"")
    with pytest.raises(DatabaseDamaged):
        store.check_file(force=True)
    with pytest.raises(DatabaseDamaged):
        store.flush()
    assert store.pending_writes() == 1  # nothing lost: still buffered for whoever handles the outage


def test_metric_reads_history_first_values_counts(store: Store, tmp_path: Path) -> None:
    study = bare_study(store)
    a, b = bare_trial(store, study, tmp_path), bare_trial(store, study, tmp_path)
    store.buffer_metrics(a.id, 1, {"val_acc": 0.1, "epoch": 1}, at=1.0)
    store.buffer_metrics(b.id, 1, {"val_acc": 0.3}, at=2.0)
    store.buffer_metrics(a.id, 2, {"val_acc": 0.2, "epoch": 2}, at=3.0)
    store.flush()
    assert list(store.metric_history(study.id, "val_acc")) == [(a.id, 1, 0.1), (b.id, 1, 0.3), (a.id, 2, 0.2)]
    assert sorted(store.first_values(study.id, ["val_acc", "epoch"])) == [
        (a.id, "epoch", 1), (a.id, "val_acc", 0.1), (b.id, "val_acc", 0.3)]
    assert list(store.first_values(study.id, [])) == []
    assert [m.value for m in store.metrics(a.id, "val_acc")] == [0.1, 0.2]
    assert store.metric_counts(a.id) == {"val_acc": 2, "epoch": 2}
    assert store.last_values(a.id) == {"val_acc": 0.2, "epoch": 2}
    assert store.metric_count(study.id) == 5 and store.metric_count() >= 5


# -- claims: the engine lock and GPU claims --------------------------------------------------------
def _dead_pid() -> tuple[int, float]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    create_time = process_create_time(proc.pid) or 1.0
    proc.wait()
    return proc.pid, create_time


def test_a_live_engine_holds_its_study_and_a_dead_ones_claim_is_taken_over(store: Store) -> None:
    study = bare_study(store)
    pid, create_time = _dead_pid()
    store.acquire_engine_lock(study.id, pid, create_time)
    me = os.getpid()
    store.acquire_engine_lock(study.id, me, process_create_time(me) or 0.0)  # the dead engine's claim goes
    held = store.study_by_id(study.id)
    assert held is not None and held.engine_pid == me and held.engine_host == HOSTNAME
    with pytest.raises(EngineLocked, match="already run by engine pid"):
        store.acquire_engine_lock(study.id, pid, create_time)
    store.release_engine_lock(study.id, pid)  # not the holder: nothing changes
    assert store.study_by_id(study.id).engine_pid == me  # type: ignore[union-attr]
    store.release_engine_lock(study.id, me)
    assert store.study_by_id(study.id).engine_pid is None  # type: ignore[union-attr]


def test_gpu_claims_are_seen_by_the_picker_and_only_live_trials_hold_them(store: Store, tmp_path: Path) -> None:
    study = bare_study(store)
    seen: list[list[tuple[str, float]]] = []

    def picker(claims: list[tuple[str, float]]) -> tuple[str, float] | None:
        seen.append(claims)
        return None if ("0", 1.0) in claims else ("0", 1.0)

    queued = store.add_trial(study_id=study.id, params={}, argv=[], trial_dir=str(tmp_path), stdout_path="o",
                             stderr_path="e", sample_index=0, rerun_of=None, seed=None, gpu_picker=picker)
    assert queued is not None and queued.gpus == "0" and queued.gpu_fraction == 1.0
    refused = store.add_trial(study_id=study.id, params={}, argv=[], trial_dir=str(tmp_path), stdout_path="o",
                              stderr_path="e", sample_index=1, rerun_of=None, seed=None, gpu_picker=picker)
    assert refused is None and len(store.trials(study.id)) == 1  # no room: no row
    assert seen == [[], [("0", 1.0)]] and store.running_gpu_claims() == [("0", 1.0)]
    me = os.getpid()
    store.mark_running(queued.id, pid=me, pgid=os.getpgid(0), proc_create_time=process_create_time(me) or 0.0,
                       git_commit=None)
    assert store.running_gpu_claims() == [("0", 1.0)]  # a running trial whose process lives
    pid, create_time = _dead_pid()
    store.mark_running(queued.id, pid=pid, pgid=pid, proc_create_time=create_time, git_commit=None)
    assert store.running_gpu_claims() == []  # its process died with a crashed engine: the GPU is free
    assert store.running_gpu_claims(host="another-host") == []


# -- events ------------------------------------------------------------------------------------
def test_events_are_filtered_by_trial_kind_and_position(store: Store, tmp_path: Path) -> None:
    study = bare_study(store)
    trial = bare_trial(store, study, tmp_path)
    start = max([e.id for e in store.events(study.id)], default=0)
    store.add_event(study.id, None, "budget", "half the budget used", level="warning")
    store.buffer_event(study.id, trial.id, "scheduler", "trial 1 pruned", data={"action": "stop", "value": math.inf})
    store.buffer_event(study.id, trial.id, "flag", "trial 1 diverged", level="error")
    assert [e.kind for e in store.events(study.id, after_id=start)] == ["budget"]  # add_event writes at once
    store.flush()
    events = store.events(study.id, after_id=start)
    assert [(e.kind, e.level, e.trial_id) for e in events] == [
        ("budget", "warning", None), ("scheduler", "info", trial.id), ("flag", "error", trial.id)]
    assert events[1].data["action"] == "stop" and events[1].data["value"] == math.inf
    assert [e.kind for e in store.events(study.id, trial_id=trial.id)] == ["scheduler", "flag"]
    assert [e.kind for e in store.events(study.id, kinds=("flag", "budget"), after_id=start)] == ["budget", "flag"]
    assert store.events(study.id, after_id=events[-1].id) == []


# -- commands ----------------------------------------------------------------------------------
def test_commands_are_sent_seen_once_and_acknowledged(store: Store) -> None:
    study = bare_study(store)
    before = [c.id for c in store.pending_commands(study.id)]
    stop = store.send_command(study.id, "stop_trial", trial_number=3)
    wider = store.send_command(study.id, "set_max_parallel", args={"value": 4})
    pending = [c for c in store.pending_commands(study.id) if c.id not in before]
    assert [(c.action, c.trial_number, c.args, c.problem) for c in pending] == [
        ("stop_trial", 3, {}, None), ("set_max_parallel", None, {"value": 4}, None)]
    assert store.command_result(stop) == (None, None)
    store.acknowledge_command(stop, "trial 3 stopping")
    acknowledged_at, result = store.command_result(stop)
    assert acknowledged_at is not None and result == "trial 3 stopping"
    assert [c.id for c in store.pending_commands(study.id) if c.id not in before] == [wider]
    assert store.command_result(10_000) == (None, None)
    with pytest.raises(ValueError, match="unknown action"):
        store.send_command(study.id, "rm_rf")


def test_a_malformed_command_comes_back_refused_not_raised(store: Store) -> None:
    study = bare_study(store)
    bad = store.send_command(study.id, "set_max_parallel", args={"value": "lots"})
    orphan = store.send_command(study.id, "pause_trial")  # a trial action without a trial
    clone = store.send_command(study.id, "clone_trial", trial_number=1, args={"params": {"lr": [1, 2]}})
    problems = {c.id: c.problem for c in store.pending_commands(study.id)}
    assert problems[bad] is not None and problems[bad].startswith("refused: max_parallel must be a whole number")
    assert problems[orphan] == "refused: pause_trial needs a trial_number"
    assert problems[clone] is not None and problems[clone].startswith("refused: clone value for")


# -- the clones queue --------------------------------------------------------------------------
def test_clone_is_queued_with_its_acknowledgement_once_and_done_when_a_trial_runs_it(store: Store,
                                                                                     tmp_path: Path) -> None:
    study = bare_study(store)
    command = store.send_command(study.id, "clone_trial", trial_number=1, args={"params": {"lr": 0.3}})
    clone = store.queue_clone(study.id, command_id=command, source_number=1, params={"lr": 0.3}, note="lr 0.3",
                              result="clone of trial 1 queued")
    assert clone is not None
    assert store.command_result(command)[1] == "clone of trial 1 queued"
    assert command not in [c.id for c in store.pending_commands(study.id)]
    again = store.queue_clone(study.id, command_id=command, source_number=1, params={"lr": 0.3}, note=None,
                              result="again")
    assert again is None  # the same command never queues two clones (a resume re-reading it)
    assert store.pending_clones(study.id) == [(clone, 1, {"lr": 0.3}, "lr 0.3")]
    assert store.clone_note(clone) == "lr 0.3" and store.clone_note(10_000) is None
    running = bare_trial(store, study, tmp_path, clone_id=clone)
    assert running.clone_id == clone and store.pending_clones(study.id) == []


# -- read-only opening ---------------------------------------------------------------------------
def test_read_only_store_reads_everything_and_writes_nothing(store: Store, tmp_path: Path) -> None:
    study = bare_study(store)
    trial = bare_trial(store, study, tmp_path)
    store.add_event(study.id, trial.id, "started", "trial 1 started")
    reader = _reader(store)
    assert reader.study(study.name) == store.study(study.name)
    assert reader.trials(study.id) == store.trials(study.id)
    assert [e.message for e in reader.events(study.id, trial_id=trial.id)] == ["trial 1 started"]
    with pytest.raises(Exception, match="readonly|read-only"):
        reader.set_study_status(study.id, "stopped")
    assert store.study_by_id(study.id).status == "queued"  # type: ignore[union-attr]
    reader.close()


def test_a_missing_file_is_refused_when_it_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    with pytest.raises(DatabaseRefused, match="no study database here"):
        Store(missing, readonly=True)
    with pytest.raises(DatabaseRefused, match="no study database here"):
        Store(missing, create=False)
    assert not missing.exists()
