"""The read side: what the screens get from a study file, and that it stays cheap and read-only."""

from __future__ import annotations

import math
import sqlite3

import pytest

from tests.tui.bigdb import FIXED_NOW, make_study_db
from tests.tui.conftest import fixed_clock
from hpotui.tui.data import StudyReader, downsample, parse_plan, study_eta, trial_eta


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
    # two running trials, 6 left to start, 2 at a time, 30 s per trial: first slot frees in 5 s, then 3 waves
    assert study_eta([5.0, 20.0], 6, 30.0, 2) == 5.0 + 3 * 30.0
    assert study_eta([5.0, None], 0, None, 2) is None
    assert study_eta([], 0, None, 2) == 0.0


def test_plan_reads_budget_scheduler_and_yaml_exponents():
    plan = parse_plan("budget: {max_trials: 9, max_parallel: 3}\nscheduler: {max_resource: 27}\n"
                      "space:\n  lr: {type: loguniform, low: 1e-4, high: 1}\n", None)
    assert (plan.max_trials, plan.max_parallel, plan.max_step, plan.params) == (9, 3, 27.0, ("lr",))
    assert plan.ranges["lr"]["low"] == pytest.approx(1e-4)


def test_study_list_counts_best_and_engine(demo_db):
    reader = StudyReader(str(demo_db), clock=fixed_clock)
    [s] = reader.studies()
    assert s.name == "demo" and s.status == "running"
    assert s.counts == {"completed": 3, "pruned": 4, "diverged": 1, "failed": 1, "stopped": 1, "running": 2,
                        "queued": 1}
    assert s.best == pytest.approx(0.7244, abs=1e-3)
    assert s.engine_alive is False  # no engine pid recorded


def test_study_view_filter_sort_flags_eta(demo_db):
    reader = StudyReader(str(demo_db), clock=fixed_clock)
    view = reader.study_view(1)
    assert [t.number for t in view.trials] == list(range(1, 14))
    diverged = next(t for t in view.trials if t.status == "diverged")
    assert diverged.flags == ("nan",) and math.isnan(diverged.last)
    running = [t for t in view.trials if t.status == "running"]
    assert all(t.eta_s is not None and t.eta_s > 0 for t in running)
    assert view.max_step == 8.0 and view.eta_s is not None
    failed = reader.study_view(1, status="failed")
    assert {t.status for t in failed.trials} == {"failed", "diverged"}
    best_first = reader.study_view(1, sort="best")
    assert best_first.trials[0].number == view.best.number


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


def test_generated_times_are_fixed(tmp_path):
    a = make_study_db(tmp_path / "a.db")
    b = make_study_db(tmp_path / "b.db")
    rows = [sqlite3.connect(p).execute("SELECT started_at, finished_at, best_value FROM trials").fetchall()
            for p in (a, b)]
    assert rows[0] == rows[1]
    assert max(r[0] or 0 for r in rows[0]) < FIXED_NOW
