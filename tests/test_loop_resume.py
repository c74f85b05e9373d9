"""What `resume` decides about the time no engine ran, with the real study loop in this process.

The first engine leaves on SIGTERM with ``--keep-trials`` (raised at it from inside a scripted
trial, so it lands while trials run); its trials live on in the FakeExecutor as real trials
outlive their engine. What happens to them meanwhile (run to their end, killed) is done to the
fake, then a second loop over the same database resumes the study, as `hpotui resume` does.
Real kill -9 / orphan / resume cycles stay in tests/faults/ and tests/test_engine_e2e.py.
"""

from __future__ import annotations

import signal
from pathlib import Path

from hpotui.engine.executors.fake import FakeExecutor
from tests.inproc import InProcessRun, launch, resume
from tests.test_loop_commands import counting, counting_space, exactly_once

EXIT_TERMINATED = 143


def _engine_leaves(tmp_path: Path, space: str, at: tuple[int, int], *, epochs: int) -> InProcessRun:
    """Launch; SIGTERM the engine right after trial ``at[0]`` printed epoch ``at[1]``; trials kept running."""
    fake = FakeExecutor(counting(epochs, {at: lambda: signal.raise_signal(signal.SIGTERM)}))
    first = launch(tmp_path, space, executor=fake, keep_trials_on_exit=True)
    assert first.code == EXIT_TERMINATED, first.out
    assert "trials keep running" in first.out
    return first


def test_trials_that_finished_while_the_engine_was_away_are_results_not_reruns(tmp_path: Path) -> None:
    first = _engine_leaves(tmp_path, counting_space("night", max_trials=2, max_parallel=2), (2, 3), epochs=30)
    assert [t.status for t in first.trials()] == ["running", "running"]
    assert [first.executor.run_to_end(n) for n in (1, 2)] == [0, 0]  # ran to their end, unwatched

    resumed = resume(first)
    assert resumed.code == 0, resumed.out
    trials = resumed.trials()
    assert [t.status for t in trials] == ["completed", "completed"]  # not interrupted, not run again
    assert all(t.best_value is not None for t in trials)
    assert [len([m for m in resumed.store.metrics(t.id) if m.name == "uid"]) for t in trials] == [30, 30]
    assert resumed.out.count("while no engine was running") == 2
    assert "judged from its output: 30 reports" in (trials[0].status_reason or "")
    checked, missing, extra = exactly_once(resumed)
    assert checked == 60 and not missing and not extra


def test_a_trial_still_running_is_adopted_and_read_on_from_its_offsets(tmp_path: Path) -> None:
    first = _engine_leaves(tmp_path, counting_space("kept", max_trials=2, max_parallel=2), (1, 4), epochs=20)
    resumed = resume(first)
    assert resumed.code == 0, resumed.out
    assert resumed.out.count("re-adopted") == 2
    assert [t.status for t in resumed.trials()] == ["completed", "completed"]
    checked, missing, extra = exactly_once(resumed)
    assert checked == 40 and not missing and not extra  # nothing lost or read twice across the two engines


def test_a_trial_cut_short_before_max_resource_runs_again(tmp_path: Path) -> None:
    space = counting_space("short", max_trials=1, max_parallel=1).rstrip() + \
        "\n        scheduler: {type: fifo, resource: epoch, max_resource: 200}\n"
    first = _engine_leaves(tmp_path, space, (1, 5), epochs=200)
    first.executor.kill(1)  # died with the box, say: it reported, but not up to max_resource
    assert 0 < len([m for m in first.store.metrics(first.trials()[0].id) if m.name == "uid"]) < 200

    resumed = resume(first)
    assert resumed.code == 0, resumed.out
    assert [t.status for t in resumed.trials()] == ["interrupted", "completed"]


def test_an_old_stop_that_no_engine_acted_on_is_not_applied_by_a_later_resume(tmp_path: Path) -> None:
    first = _engine_leaves(tmp_path, counting_space("stale", max_trials=2, max_parallel=2), (1, 2), epochs=30)
    for number in (1, 2):
        first.executor.kill(number)  # nothing of the old engine's trials runs on
    # what the TUI's `S` does when it still believed the engine alive
    command_id = first.store.send_command(first.study.id, "stop_study")

    resumed = resume(first, FakeExecutor(counting(30)))
    assert resumed.code == 0, resumed.out
    assert resumed.study_row().status == "completed"  # the resume runs the study to its end
    assert [t.status for t in resumed.trials()].count("completed") == 2
    outcome = resumed.store.command_outcome(command_id)
    assert outcome is not None and outcome.message.startswith("not applied: this stop of the study was sent at")
    assert "stop_study: not applied" in resumed.out
    assert [e.kind for e in resumed.events("stale_command")] == ["stale_command"]
