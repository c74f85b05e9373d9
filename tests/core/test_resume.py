"""Resume decisions on hand-built trial rows: what counts as finished, where the best and the sample index
start from, what runs again, and how trials that ended while no engine watched are counted."""

from __future__ import annotations

from hpotui.engine.core.effects import RecordEvent, Say, StopTrial
from hpotui.engine.core.events import (EndedUnwatched, JudgeUnwatched, Recovered, Reported, RerunQueued, StopSignal,
                                      TrialAdopted)
from hpotui.engine.database.records import EventKind, StudyStatus, TrialStatus

from .build import Study, facts, make_core, make_space


def test_finished_trials_seed_the_count_the_best_and_the_next_index() -> None:
    study = Study(make_core(make_space({"max_trials": 5})))
    study.feed(Recovered((facts(1, TrialStatus.COMPLETED, best=0.5), facts(2, TrialStatus.PRUNED, best=0.2),
                          facts(3, TrialStatus.FAILED), facts(4, TrialStatus.INTERRUPTED),
                          facts(5, TrialStatus.INVALID), facts(6, TrialStatus.COMPLETED, best=float("nan")))))
    counters = study.core.counters
    assert (counters.global_best, counters.global_best_trial) == (0.2, 2)
    assert study.core.finished == 4  # interrupted runs again, invalid is not counted
    launch = study.offered()
    assert launch is not None and launch.sample_index == 6
    study.next_id = 7
    study.start()
    assert study.offered() is None  # 4 finished + 1 running = max_trials


def test_an_oom_first_attempt_rerun_alone_is_not_counted_and_clones_stay_outside_the_budget() -> None:
    study = Study(make_core(make_space({"max_trials": 3})))
    study.feed(Recovered((facts(1, TrialStatus.FAILED), facts(2, TrialStatus.COMPLETED, best=0.1, clone_id=8),
                          facts(3, TrialStatus.COMPLETED, best=0.3)), oom_alone=frozenset({1})))
    assert study.core.finished == 2 and study.core.queue.budget_used(0) == 1


def test_interrupted_trials_run_again_first_with_their_own_values() -> None:
    study = Study(make_core())
    lost = facts(2, TrialStatus.INTERRUPTED, params={"lr": 0.003, "layers": 3})
    study.feed(Recovered((facts(1, TrialStatus.COMPLETED, best=0.4), lost)))
    study.feed(RerunQueued(lost))
    launch = study.offered()
    assert launch is not None and (launch.params, launch.sample_index, launch.rerun_of) == (lost.params, 1, 2)


def test_an_adopted_trial_runs_on_and_counts_while_it_runs() -> None:
    study = Study(make_core(make_space({"max_trials": 2})))
    running = facts(1, TrialStatus.RUNNING)
    study.feed(Recovered((running,)))
    study.feed(TrialAdopted(running))
    study.next_id = 2
    study.start()
    assert study.offered() is None
    study.exit(running, best=0.1)
    assert study.core.finished == 1 and study.core.counters.global_best == 0.1


def test_a_trial_that_ended_while_no_engine_ran_is_counted_and_can_beat_the_best() -> None:
    study = Study(make_core())
    study.feed(Recovered((facts(1, TrialStatus.COMPLETED, best=0.5), facts(2, TrialStatus.RUNNING))))
    study.feed(EndedUnwatched(facts(2, TrialStatus.COMPLETED, best=0.25)))
    assert study.core.finished == 2 and study.core.counters.global_best_trial == 2


def test_an_interrupted_exit_runs_again_unless_the_engine_is_stopping() -> None:
    study = Study(make_core())
    lost = study.start()
    effects = study.exit(lost, -15, asked_status=TrialStatus.INTERRUPTED, asked_reason="its node was lost")
    assert effects[1:] == [RecordEvent(lost.id, EventKind.INTERRUPTED, "trial 1 interrupted — its node was lost; its "
                                       "configuration runs again", level="warning"),
                           Say("trial 1 interrupted — its node was lost")]
    assert study.offered().rerun_of == lost.id  # type: ignore[union-attr]
    again = study.start()
    study.feed(StopSignal(interrupt=True))
    study.exit(again, -15, asked_status=TrialStatus.INTERRUPTED, asked_reason="engine received SIGINT")
    assert study.core.queue.reruns == [] and study.core.finished == 0
    state = study.core.state
    assert (state.final_status, state.exit_code) == (StudyStatus.INTERRUPTED, 130)
    assert study.core.ending(StudyStatus.INTERRUPTED)[2] == "the engine was stopped by a signal"


def test_a_trial_that_ended_unwatched_is_judged_on_the_steps_no_engine_judged_and_then_runs_no_more() -> None:
    space = make_space({"max_trials": 4, "max_parallel": 1},
                       scheduler={"type": "asha", "resource": "epoch", "min_resource": 1, "max_resource": 9,
                                  "reduction_factor": 3})
    study = Study(make_core(space))
    leader = study.start()
    for epoch, loss in ((1, 0.5), (3, 0.2)):
        study.feed(Reported(leader.id, epoch, {"loss": loss, "epoch": epoch}, epoch, epoch))
    study.exit(leader, best=0.2)
    left = facts(2, TrialStatus.RUNNING)
    reports = tuple(Reported(left.id, e, {"loss": v, "epoch": e}, e, e) for e, v in ((2, 0.45), (3, 0.4), (4, 0.3)))
    effects = study.feed(JudgeUnwatched(left, ((1.0, {"loss": 0.45, "epoch": 1}),), reports))
    stop = next(e for e in effects if isinstance(e, StopTrial))
    assert stop.status == TrialStatus.PRUNED and stop.reason.startswith("pruned at epoch 3")  # 0.4 is worse than 0.2
    decided = [e.data["step"] for e in effects if isinstance(e, RecordEvent) and e.kind == EventKind.SCHEDULER]
    # the history only teaches the health checks; rung 1 (no decision recorded for it) is judged at epoch 2, the
    # prune at 3, and epoch 4 comes after the stop
    assert decided == [2, 3]
    assert study.core.trials.live == {}  # it runs no more: it holds no slot of max_parallel
    assert study.offered() is not None
