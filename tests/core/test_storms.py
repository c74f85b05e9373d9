"""Storms on hand-built event sequences: the same failure again and again, invalid configurations, trials that
never report the objective. Headless, a storm ends the study; interactive, launching pauses until resumed."""

from __future__ import annotations

from hpotui.engine.core.effects import Notify, SetLaunchingPaused
from hpotui.engine.core.events import Command, StartFailed
from hpotui.engine.database.records import EventKind, StudyStatus, TrialStatus
from hpotui.engine.reading.trial_reading import Problem
from hpotui.engine.search.invalid import INVALID_STREAK_LIMIT

from .build import Study, make_core, make_space

MISSING = "Traceback (most recent call last):\nModuleNotFoundError: No module named 'torch'\n"
HINT = " (note: `python` on PATH is /usr/bin/python, not the interpreter hpotui runs under)"


def _storm_message(study: str = "core-test") -> str:
    return ("launching paused: 3 trials in a row failed with the same error (exit code 1: ModuleNotFoundError: "
            f"No module named 'torch'); fix the command, then `hpotui resume {study}`" + HINT)


def test_a_failure_storm_ends_a_headless_study_with_exit_1() -> None:
    study = Study(make_core(make_space({"failure_streak": 3}), interpreter_hint=HINT))
    for _ in range(2):
        study.run(code=1, stderr_tail=MISSING)
        assert not study.core.state.launching_paused
    effects = study.run(code=1, stderr_tail=MISSING)
    message = _storm_message()
    assert SetLaunchingPaused(True, message) in effects and Notify("paused", message) in effects
    assert study.kinds().count(EventKind.FAILURE_STORM) == 1 and message in study.said
    state = study.core.state
    assert (state.stop_reason, state.final_status, state.exit_code) == (message, StudyStatus.FAILED, 1)
    assert study.offered() is None


def test_an_interactive_study_only_pauses_and_resumes_when_asked() -> None:
    study = Study(make_core(make_space({"failure_streak": 3}), headless=False, interpreter_hint=HINT))
    for _ in range(3):
        study.run(code=1, stderr_tail=MISSING)
    assert study.core.state.launching_paused and study.core.state.stop_reason is None
    assert study.offered() is None
    study.feed(Command(1, "resume_launching"))
    assert study.offered() is not None


def test_failures_differing_only_in_numbers_are_one_streak_and_another_error_breaks_it() -> None:
    study = Study(make_core(make_space({"failure_streak": 3})))
    study.run(code=1, stderr_tail="RuntimeError: bad shape 12\n")
    study.run(code=1, stderr_tail="RuntimeError: bad shape 7\n")
    study.run(code=1, stderr_tail="ValueError: other\n")
    study.run(code=0, best=0.3)  # a success ends the streak too
    study.run(code=1, stderr_tail="ValueError: other\n")
    study.run(code=1, stderr_tail="ValueError: other\n")
    assert not study.core.state.launching_paused
    study.run(code=1, stderr_tail="ValueError: other\n")
    assert study.core.state.launching_paused


def test_trials_that_cannot_start_count_as_failures_and_storm_too() -> None:
    study = Study(make_core(make_space({"failure_streak": 2})))
    for _ in range(2):
        trial = study.start()
        study.feed(StartFailed(trial.id, "could not start 'python': No such file or directory"))
    assert study.said[:2] == ["trial 1 failed to start: could not start 'python': No such file or directory",
                              "trial 2 failed to start: could not start 'python': No such file or directory"]
    assert study.core.finished == 2 and study.core.state.final_status == StudyStatus.FAILED


def test_an_invalid_storm_stops_launching_and_invalid_trials_do_not_spend_the_budget() -> None:
    study = Study(make_core(make_space({"max_trials": 3})))
    for _ in range(INVALID_STREAK_LIMIT - 1):
        study.run(code=0, invalid="layers > width")
    assert study.core.finished == 0 and study.core.state.stop_reason is None
    assert study.said[0] == "trial 1 invalid: layers > width"
    study.run(code=0, invalid="layers > width")
    reason = (f"{INVALID_STREAK_LIMIT} trials in a row said their configuration is invalid; no new trials: check "
              "the space (or what the trial calls invalid)")
    assert study.core.state.stop_reason == reason and study.kinds().count(EventKind.INVALID_STORM) == 1
    assert study.core.state.final_status == StudyStatus.COMPLETED  # it ends, it did not fail
    assert study.offered() is None


def test_ten_silent_trials_pause_launching_and_each_says_what_was_not_read() -> None:
    study = Study(make_core(make_space({"max_trials": 20}), headless=False))
    silent = (Problem("no_objective", "loss", "never reported the objective loss"),)
    for _ in range(9):
        study.run(code=0, problems=silent)
    assert not study.core.state.launching_paused
    assert "warning: trial 1 completed: never reported the objective loss" in study.said
    effects = study.run(code=0, problems=silent)
    message = ("launching paused: 10 trials in a row finished without reporting the objective loss (no `@hpotui` "
               "line (or metric source) carried loss); fix it, then `hpotui resume core-test`")
    assert SetLaunchingPaused(True, message) in effects and message in study.said
    assert study.core.state.stop_reason is None  # interactive: the user resumes it
    assert study.core.policy.not_read.lines()[0].startswith("10 trials (1, 2, 3, 4, 5, 6, 7, 8, ...) finished")


def test_a_stopped_trial_that_did_not_report_says_nothing_about_the_readers() -> None:
    study = Study(make_core())
    silent = (Problem("no_objective", "loss", "never reported the objective loss"),)
    study.run(code=-15, asked_status=TrialStatus.STOPPED, asked_reason="stopped by the user", problems=silent)
    assert not [s for s in study.said if s.startswith("warning:")]
    assert study.core.policy.not_read.silent_streak == 0
