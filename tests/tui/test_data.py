"""The read side: what the screens get from a study file, and that it stays cheap and read-only."""

from __future__ import annotations

import math
import shutil
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import cli_env
from tests.tui.bigdb import FIXED_NOW, make_study_db
from tests.tui.readonly import as_reader, readonly_copy
from tests.tui.conftest import fixed_clock
from hpotui.tui.data import RunningPace, StudyReader, current_flags, downsample, parse_plan, study_eta, trial_eta
from hpotui.tui.dbopen import NotAStudyDatabase, open_readonly, readonly_uri
from hpotui.tui.eta import expected_trial_seconds
from hpotui.tui.ordering import pin_row


def test_downsample_keeps_ends_and_spikes_and_fits_the_width():
    steps = list(range(10_000))
    values = [1.0] * 10_000
    values[5_000] = 50.0  # a spike the user must still see
    xs, ys = downsample(steps, values, 200)
    assert len(xs) <= 202
    assert xs[0] == 0 and xs[-1] == 9_999
    assert 50.0 in ys


def test_small_curves_are_untouched():
    assert downsample([1, 2, 3], [3.0, 2.0, 1.0], 100) == ([1, 2, 3], [3.0, 2.0, 1.0])


def test_eta_from_measured_pace():
    assert trial_eta(4, 10, 2.0) == 12.0
    assert trial_eta(4, None, 2.0) is None  # no plan, no promise
    running = [RunningPace(25.0, 5.0), RunningPace(10.0, 20.0)]
    # 30 s per trial, 6 left to start on 2 slots: (5 + 20 + 6 * 30) / 2
    assert study_eta(running, 6, 30.0, 2) == pytest.approx((5 + 20 + 180) / 2)
    assert study_eta([RunningPace(3.0, None)], 0, None, 2) is None  # no pace yet, nothing to borrow
    assert study_eta([], 0, None, 2) == 0.0


def test_early_eta_uses_the_running_trials_not_the_quickly_pruned_ones():
    """Before any full trial ended, the only finished ones were pruned at the first rung (10 s each);
    the running trials at a tenth of 100 s each say a trial takes 100 s."""
    running = [RunningPace(10.0, 90.0), RunningPace(10.0, 90.0)]
    mean = expected_trial_seconds(10.0, 2, running)
    assert mean == pytest.approx((10 * 2 + 100 * 2) / 4)
    eta = study_eta(running, 16, mean, 2)
    naive = 90.0 + 8 * 10.0  # the old model: finished mean only
    assert eta is not None and eta > 2.5 * naive


def test_plan_reads_budget_scheduler_objectives_and_yaml_exponents():
    plan = parse_plan("budget: {max_trials: 9, max_parallel: 3}\nscheduler: {max_resource: 27}\n"
                      "objective: [{metric: acc, mode: max}, {metric: latency, mode: min}]\n"
                      "space:\n  lr: {type: loguniform, low: 1e-4, high: 1}\n", None)
    assert (plan.max_trials, plan.max_parallel, plan.max_step, plan.params) == (9, 3, 27.0, ("lr",))
    assert plan.ranges["lr"]["low"] == pytest.approx(1e-4)
    assert plan.objectives == (("acc", "max"), ("latency", "min")) and plan.is_log("lr")


def test_a_flat_flag_goes_once_the_trial_learned_again():
    assert current_flags([("not_learning", 5.0)], best_step=4.0) == ("not_learning",)
    assert current_flags([("not_learning", 5.0)], best_step=9.0) == ()
    assert current_flags([("nan", 5.0)], best_step=9.0) == ("nan",)  # a NaN stays a NaN


def test_pinning_keeps_the_looked_at_trial_on_its_row():
    assert pin_row([3, 1, 2], 2, 0) == [2, 3, 1]
    assert pin_row([3, 1, 2], 9, 0) == [3, 1, 2]


def test_study_list_counts_best_and_engine(demo_db):
    reader = StudyReader(str(demo_db), clock=fixed_clock)
    [s] = reader.studies()
    assert s.name == "demo" and s.status == "running"
    assert s.counts == {"completed": 3, "pruned": 4, "diverged": 1, "failed": 1, "stopped": 1, "running": 2,
                        "queued": 1}
    assert s.best == pytest.approx(0.7244, abs=1e-3)
    assert s.engine_alive is True and not s.engine_died  # this test process holds the study


def test_study_view_filter_sort_search_flags_eta(demo_db):
    reader = StudyReader(str(demo_db), clock=fixed_clock)
    view = reader.study_view(1)
    assert [t.number for t in view.trials] == [*range(1, 14), 0]  # the waiting clone comes last
    diverged = next(t for t in view.trials if t.status == "diverged")
    assert diverged.flags == ("nan",) and math.isnan(diverged.last)
    running = [t for t in view.trials if t.status == "running"]
    assert all(t.eta_s is not None and t.eta_s > 0 for t in running)
    assert view.max_step == 8.0 and view.eta_s is not None
    failed = reader.study_view(1, status="failed")
    assert {t.status for t in failed.trials} == {"failed", "diverged"}
    best_first = reader.study_view(1, sort="best")
    assert best_first.trials[0].number == view.best.number
    by_lr = reader.study_view(1, sort="param:lr", descending=True)
    lrs = [t.params["lr"] for t in by_lr.trials]
    assert lrs[:-2] == sorted(lrs[:-2], reverse=True)
    assert [t.number for t in reader.study_view(1, text="#7").trials] == [7]
    assert {t.status for t in reader.study_view(1, text="pruned").trials} == {"pruned"}
    assert all(t.params["optimizer"] == "adam" for t in reader.study_view(1, text="adam").trials)


def test_clones_show_their_source_even_before_they_start(demo_db):
    reader = StudyReader(str(demo_db), clock=fixed_clock)
    view = reader.study_view(1)
    started = next(t for t in view.trials if t.number == 12)
    assert started.clone_of == 6
    [waiting] = [t for t in view.trials if t.pending]
    assert waiting.clone_of == 6 and waiting.params["lr"] == 2.5 and view.clones_waiting == 1


def test_reasons_are_read_from_what_the_engine_recorded(demo_db):
    reader = StudyReader(str(demo_db), clock=fixed_clock)
    trials = {t.status: t for t in reader.study_view(1).trials}
    assert "rung cut-off" in trials["pruned"].reason and "epoch 2" in trials["pruned"].reason
    failure = reader.failure(trials["failed"].id)
    assert failure.exit_code == 1 and "ValueError" in failure.stderr_tail
    assert trials["stopped"].reason == "stopped by the user"


def test_finished_study_says_why_it_ended(finished_db):
    reader = StudyReader(str(finished_db), clock=fixed_clock)
    view = reader.study_view(1)
    assert view.end_reason == "budget: 12 trials finished" and not view.engine_died and view.eta_s is None


def test_dead_engine_and_gone_trials(tmp_path):
    make_study_db(tmp_path / "dead.db", name="dead", engine="dead")
    reader = StudyReader(str(tmp_path / "dead.db"), clock=fixed_clock)
    [summary] = reader.studies()
    assert summary.engine_died
    view = reader.study_view(1)
    assert view.engine_died and view.eta_s is None
    running = [t for t in view.trials if t.status == "running"]
    assert running and all(t.shown_status == "gone" and t.eta_s is None for t in running)
    assert all(t.run_s is not None and t.run_s < 60 for t in running)  # frozen, not growing with the clock
    assert "running" not in view.counts and view.counts["gone"] == 2  # the header counts them as gone
    [waiting] = [t for t in view.trials if t.pending]  # the clone queue is a table: resume runs it
    assert "outside the searched range" in waiting.reason


def test_best_is_never_below_last(tmp_path):
    """A pruned trial whose reports kept coming after the decision: best is the best recorded."""
    db = make_study_db(tmp_path / "b.db")
    conn = sqlite3.connect(db)
    tid, last = conn.execute("SELECT id, best_value FROM trials WHERE status = 'pruned' LIMIT 1").fetchone()
    conn.execute("INSERT INTO metrics (trial_id, step, name, value, time) VALUES (?, 99, 'val_acc', ?, ?)",
                 (tid, last + 0.2, FIXED_NOW))
    conn.execute("UPDATE trials SET reports = reports + 1 WHERE id = ?", (tid,))
    conn.commit()
    trial = next(t for t in StudyReader(str(db)).study_view(1).trials if t.id == tid)
    assert trial.best >= trial.last == pytest.approx(last + 0.2)


def test_curves_cutoffs_resources_flags(demo_db):
    reader = StudyReader(str(demo_db), clock=fixed_clock)
    view = reader.study_view(1)
    pruned = next(t for t in view.trials if t.status == "pruned")
    assert reader.cutoffs(pruned.id) == [2.0]
    curve = reader.curve(pruned.id, "val_loss", 100)
    assert curve.steps == (1.0, 2.0)
    diverged = next(t for t in view.trials if t.status == "diverged")
    assert len(reader.curve(diverged.id, "val_loss", 100).steps) == 1  # the NaN point is left out
    res = reader.resources()
    assert [g.trials for g in res.gpus] == [("demo#11",), ("demo#12",)]
    assert res.hosts[0].cpu_percent == 23.5
    [flag] = reader.flags(1)
    assert flag.trial_number == diverged.number and "learning rate" in flag.hint


def test_reader_connection_cannot_write(demo_db):
    reader = StudyReader(str(demo_db))
    with pytest.raises(sqlite3.OperationalError):
        reader.conn.execute("DELETE FROM trials")


def test_data_version_moves_only_when_someone_writes(demo_db):
    reader = StudyReader(str(demo_db))
    before = reader.data_version()
    assert reader.data_version() == before
    other = sqlite3.connect(demo_db)
    other.execute("UPDATE studies SET status = 'stopped'")
    other.commit()
    assert reader.data_version() != before


def test_finished_study_in_a_folder_we_cannot_write(finished_db):
    """A colleague's finished study: -wal and -shm are gone and the folder is not writable for the reader."""
    code = ("import sys; from hpotui.tui.data import StudyReader; r = StudyReader(sys.argv[1]); "
            "print(r.immutable, [s.name for s in r.studies()], r.study_view(1).total)")
    with readonly_copy(finished_db, "theirs #1 ?x=%41") as db:
        out = subprocess.run(as_reader([sys.executable, "-c", code, str(db)]), capture_output=True, text=True,
                             timeout=60, env=cli_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1:] == ["['done']", "12"]  # plain mode=ro, or the immutable snapshot if needed


def test_uri_escapes_hash_question_mark_and_percent(tmp_path, finished_db):
    folder = tmp_path / "a#b?c%20d"
    folder.mkdir()
    shutil.copy(finished_db, folder / "x.db")
    assert "%23" in readonly_uri(folder / "x.db") and "%3F" in readonly_uri(folder / "x.db")
    opened = open_readonly(folder / "x.db")
    assert opened.conn.execute("SELECT name FROM studies").fetchone()[0] == "done"


def test_a_yaml_file_is_not_a_study_database(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("name: x\ncommand: python t.py\n" * 40)
    with pytest.raises(NotAStudyDatabase, match="space.yaml: not a readable hpotui study database"):
        open_readonly(path)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("CREATE TABLE t (x)")
    with pytest.raises(NotAStudyDatabase, match="without hpotui's tables"):
        open_readonly(empty)


def test_generated_times_are_fixed(tmp_path):
    a = make_study_db(tmp_path / "a.db")
    b = make_study_db(tmp_path / "b.db")
    rows = [sqlite3.connect(p).execute("SELECT started_at, finished_at, best_value FROM trials").fetchall()
            for p in (a, b)]
    assert rows[0] == rows[1]
    assert max(r[0] or 0 for r in rows[0]) < FIXED_NOW


def test_eta_says_paused_when_launching_and_every_live_trial_are_paused(demo_db):
    conn = sqlite3.connect(demo_db)
    conn.execute("UPDATE studies SET launching_paused = 1, pause_reason = 'paused by the user'")
    conn.execute("UPDATE trials SET paused = 1 WHERE status = 'running'")
    conn.commit()
    view = StudyReader(str(demo_db), clock=fixed_clock).study_view(1)
    assert view.eta_paused and view.eta_s is None


def test_hpotui_study_is_the_interface_on_that_study():
    from hpotui.engine.cli import study_shortcut

    commands = ["launch", "status", "resume"]
    assert study_shortcut(["demo", "--db", "x.db"], commands) == (["--db", "x.db"], "demo")
    assert study_shortcut(["--db", "x.db", "demo"], commands) == (["--db", "x.db"], "demo")
    assert study_shortcut(["--db", "x.db", "status", "demo"], commands) == (["--db", "x.db", "status", "demo"], None)
    assert study_shortcut([], commands) == ([], None)
