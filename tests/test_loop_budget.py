"""Budget rules of the real study loop, in this process: failure storms, patience, invalid trials.

Each test runs the real ``StudyLoop`` on a real SQLite file with scripted trials
(engine/executors/fake.py), and reads what a user would read: the loop's output and exit code,
and the records `hpotui export` / `hpotui status` print.
"""

from __future__ import annotations

from hpotui.engine.executors.fake import Exit, FakeTrial, Say, Step, report
from tests.inproc import launch


def test_failed_trials_record_stderr_and_a_failure_storm_pauses_launching(tmp_path) -> None:
    def script(trial: FakeTrial) -> list[Step]:  # what `raise SystemExit('ModuleNotFoundError: ...')` leaves
        return [Say("ModuleNotFoundError: No module named torchx", "stderr"), Exit(1)]

    run = launch(tmp_path, """
        name: storm
        command: python bad.py {lr}
        objective: {metric: val_acc, mode: max}
        budget: {max_trials: 20, max_parallel: 1, failure_streak: 3}
        space:
          lr: {type: uniform, low: 0, high: 1}
        """, script)
    assert run.code == 1
    assert "launching paused: 3 trials in a row failed" in run.out
    record = run.export()
    assert [t["status"] for t in record["trials"]] == ["failed"] * 3  # not the whole budget of 20
    assert all(t["exit_code"] == 1 for t in record["trials"])
    assert "No module named torchx" in run.messages("failed")[0]


def test_patience_stops_launching(tmp_path) -> None:
    run = launch(tmp_path, """
        name: flat
        command: python flat.py {x}
        objective: {metric: val_acc, mode: max}
        budget: {max_trials: 30, max_parallel: 1, patience: 3}
        space:
          x: {type: uniform, low: 0, high: 1}
        """, lambda trial: [report(val_acc=0.5)])
    assert run.code == 0 and "patience" in run.out
    assert len(run.export()["trials"]) == 4  # the first, then 3 without gain


def test_invalid_trials_are_recorded_and_do_not_use_the_budget(tmp_path) -> None:
    def script(trial: FakeTrial) -> list[Step]:  # the search-power toy with --invalid-above 0.5
        x = trial.params["x"]
        if x > 0.5:
            return [report(invalid=f"x={x:.3f} is too large for this model")]
        return [report(epoch=1, acc=x / 2, size=x ** 2), report(epoch=2, acc=x, size=x ** 2)]

    run = launch(tmp_path, """
        name: inv
        command: python toy.py --x {x} --invalid-above 0.5
        objective: {metric: acc, mode: max}
        search: {algorithm: random, seed: 0}
        budget: {max_trials: 6, max_parallel: 2, failure_streak: 2}
        space:
          x: {type: uniform, low: 0, high: 1}
        """, script)
    assert run.code == 0, run.out
    trials = run.export()["trials"]
    invalid = [t for t in trials if t["status"] == "invalid"]
    completed = [t for t in trials if t["status"] == "completed"]
    assert len(completed) == 6  # max_trials counts the valid ones only
    assert invalid and all(t["params"]["x"] > 0.5 for t in invalid)
    assert all(t["params"]["x"] <= 0.5 for t in completed)
    assert "launching paused" not in run.out  # more than 2 invalid in a row is not a failure storm
    assert "is too large for this model" in run.out
    assert f"{len(invalid)} invalid" in run.status()
