"""End-of-trial rules on hand-built values: no trial, no store, no clock (engine/trials/trial_end.py)."""

from __future__ import annotations

import signal

from hpotui.engine.executors.base import EXIT_UNKNOWN
from hpotui.engine.trials.trial_end import (TrialEnd, ended_data, ended_level, ended_lines, judge_exit, needs_stderr,
                                     objective_text, warnings_due)

TRACEBACK = "Traceback (most recent call last):\n  File \"train.py\", line 3\nValueError: lr too big\n"


def judge(code: int, *, asked: str | None = None, asked_reason: str | None = None, reports: int = 3,
          invalid: str | None = None, stderr: str = "") -> TrialEnd:
    return judge_exit(code, asked_status=asked, asked_reason=asked_reason, reports=reports, invalid=invalid,
                      stderr_tail=stderr)


def test_a_clean_exit_is_completed_with_nothing_to_say() -> None:
    assert judge(0) == TrialEnd("completed", "", 0)


def test_a_bad_exit_code_is_failed_with_the_code_and_stderrs_last_line() -> None:
    assert judge(3, stderr=TRACEBACK + "\n\n") == TrialEnd("failed", "exit code 3: ValueError: lr too big", 3)
    assert judge(1) == TrialEnd("failed", "exit code 1", 1)


def test_a_signal_exit_names_the_signal_and_what_it_usually_means() -> None:
    end = judge(128 + signal.SIGKILL)
    assert end.status == "failed"
    assert end.reason.startswith("exit code 137 (SIGKILL, killed from outside, often by the out-of-memory killer")


def test_what_the_engine_asked_for_wins_over_the_exit_code() -> None:
    assert judge(143, asked="pruned", asked_reason="below the rung median") == \
        TrialEnd("pruned", "below the rung median", 143)
    assert judge(0, asked="stopped") == TrialEnd("stopped", "", 0)


def test_a_lost_exit_code_is_judged_from_reports_and_stderr() -> None:
    reason = "exit code unknown: the trial ended while no engine was watching it"
    assert judge(EXIT_UNKNOWN, reports=5) == TrialEnd("completed", reason, None)
    assert judge(EXIT_UNKNOWN, reports=0) == TrialEnd("failed", reason, None)
    assert judge(EXIT_UNKNOWN, reports=5, stderr=TRACEBACK).status == "failed"
    assert judge(EXIT_UNKNOWN, reports=5, stderr="RuntimeError: CUDA error\n").status == "failed"


def test_a_trial_that_said_invalid_ends_invalid_unless_it_was_interrupted() -> None:
    assert judge(0, invalid="batch larger than the data") == TrialEnd("invalid", "batch larger than the data", 0)
    assert judge(1, invalid="no").status == "invalid"
    assert judge(143, asked="interrupted", asked_reason="engine received SIGTERM", invalid="no") == \
        TrialEnd("interrupted", "engine received SIGTERM", 143)


def test_stderr_is_read_only_for_a_trial_that_ended_badly_on_its_own() -> None:
    assert not needs_stderr(0, None)
    assert needs_stderr(1, None)
    assert needs_stderr(EXIT_UNKNOWN, None)
    assert not needs_stderr(143, "stopped")


def test_the_finished_lines_say_the_reason_where_a_user_needs_it() -> None:
    event, said = ended_lines(4, "failed", "exit code 1", ran_s=2.04, objective="loss=0.5 (best at step 3)")
    assert event == said == "trial 4 failed after 2.0s: loss=0.5 (best at step 3) — exit code 1"
    event, said = ended_lines(5, "pruned", "below the median", ran_s=None, objective="")
    assert (event, said) == ("trial 5 pruned — below the median", "trial 5 pruned")
    event, said = ended_lines(6, "completed", "exit code unknown", ran_s=1.0, objective="")
    assert event == said == "trial 6 completed after 1.0s"


def test_objective_text_names_the_best_and_its_step() -> None:
    assert objective_text("loss", 0.123456, 7.0) == "loss=0.1235 (best at step 7)"
    assert objective_text("acc", 0.9, None) == "acc=0.9 (best)"
    assert objective_text("loss", None, 3.0) == ""


def test_a_failed_trials_event_carries_the_end_of_its_stderr() -> None:
    assert ended_data("completed", 0, 0.5, 3, "ignored") == {"exit_code": 0, "best": 0.5, "reports": 3}
    data = ended_data("failed", 1, None, 0, "x" * 5000)
    assert data["stderr_tail"] == "x" * 2000 and data["exit_code"] == 1
    assert (ended_level("failed"), ended_level("diverged")) == ("error", "info")


def test_boundary_warnings_are_recomputed_often_at_first_then_thinning_out() -> None:
    due = [n for n in range(1, 201) if warnings_due(n, min_trials=8, every=20)]
    assert due[:3] == [8, 9, 10]  # nothing below the boundary check's minimum
    assert all(n in due for n in range(8, 40))  # every finish while n // 20 is 1
    assert [n for n in due if 40 <= n < 60] == list(range(40, 60, 2))  # then every 2nd, every 3rd ...
    assert [n for n in due if 180 <= n < 200] == [180, 189, 198]  # every 9th at 180
