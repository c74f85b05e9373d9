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
from typing import Callable

from hpotui.engine.executors.fake import Call, FakeExecutor, FakeTrial, Step, report
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


def _rung_trainer(leave_at: tuple[int, int] | None) -> Callable[[FakeTrial], list[Step]]:
    """val_acc = q (1 - s^epoch) over 9 epochs (``curve: "q/s"``); the engine leaves right after ``leave_at``'s line."""
    def script(trial: FakeTrial) -> list[Step]:
        q, s = (float(part) for part in trial.params["curve"].split("/"))
        steps: list[Step] = []
        for epoch in range(1, 10):
            steps.append(report(epoch=epoch, val_acc=round(q * (1 - s ** epoch), 4)))
            if (trial.number, epoch) == leave_at:
                steps.append(Call(lambda: signal.raise_signal(signal.SIGTERM)))
        return steps
    return script


# Trial 2 starts fast (promoted at epoch 1) and stalls: it falls below trial 1 at the rung at epoch 3.
RUNG_SPACE = """
    name: rungs
    command: python train.py {curve}
    objective: {metric: val_acc, mode: max}
    search: {algorithm: grid}
    budget: {max_trials: 4, max_parallel: 1}
    scheduler: {type: asha, resource: epoch, min_resource: 1, max_resource: 9, reduction_factor: 3}
    space:
      curve: {type: choice, values: ["0.9/0.5", "0.62/0.1", "0.95/0.5", "0.1/0.5"]}
    """


def _decided(run: InProcessRun) -> tuple[list[str], list[tuple[int, str, float]]]:
    number = {t.id: t.number for t in run.trials()}
    return ([t.status for t in run.trials()],
            sorted((number[e.trial_id], e.data["action"], e.data["step"]) for e in run.events("scheduler")))


def test_a_trial_that_ended_unwatched_is_judged_on_its_unjudged_rungs_as_the_live_engine_would(tmp_path: Path) -> None:
    for folder in ("straight", "left"):
        (tmp_path / folder).mkdir()
    straight = launch(tmp_path / "straight", RUNG_SPACE, _rung_trainer(None))
    assert straight.code == 0, straight.out
    expected = _decided(straight)
    assert expected[0][1] == "pruned" and (2, "stop", 3.0) in expected[1], expected

    first = launch(tmp_path / "left", RUNG_SPACE, _rung_trainer((2, 1)), keep_trials_on_exit=True)
    assert first.code == EXIT_TERMINATED, first.out
    assert first.executor.run_to_end(2) == 0  # epochs 2-9 printed while no engine watched; it exited 0
    assert (2, "stop", 3.0) not in _decided(first)[1]

    resumed = resume(first)
    assert resumed.code == 0, resumed.out
    assert _decided(resumed) == expected  # the same prune at the same rung, the same statuses after it
    pruned = resumed.trials()[1]
    assert pruned.status_reason is not None and pruned.status_reason.startswith("pruned at epoch 3")
    assert "trial 2 pruned while no engine was running" in resumed.out


def test_a_stop_decided_before_the_engine_left_is_how_a_trial_that_ran_on_unwatched_ended(tmp_path: Path) -> None:
    """The engine decided the prune, then left (keeping trials) before it could stop the trial."""
    first = launch(tmp_path, RUNG_SPACE.replace('"0.62/0.1"', '"0.2/0.5"'), _rung_trainer((2, 1)),
                   keep_trials_on_exit=True)
    assert first.code == EXIT_TERMINATED, first.out
    assert (2, "stop", 1.0) in _decided(first)[1]  # pruned at epoch 1, still running when the engine left
    first.executor.run_to_end(2)  # it ended on the stop it was sent, with no engine to record it
    resumed = resume(first)
    assert resumed.code == 0, resumed.out
    statuses, decisions = _decided(resumed)
    assert len(statuses) == 4 and statuses[1] == "pruned"  # the decision stands: not rerun, not completed
    assert decisions.count((2, "stop", 1.0)) == 1  # and it is not recorded twice
