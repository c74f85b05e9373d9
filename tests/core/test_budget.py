"""Budget decisions of the pure study core on hand-built event sequences: patience, max_time (time passed
in), max_trials with clones outside it, the order reruns / clones / new samples run in, and the end reason."""

from __future__ import annotations

from hpotui.engine.core.effects import Acknowledge, Launch, Notify, QueueClone, StopTrial
from hpotui.engine.core.events import CloneQueued, Command, Recovered, Reported, RerunQueued, SlotsFree, Tick
from hpotui.engine.database.records import EventKind, StudyStatus, TrialStatus

from .build import Study, facts, make_core, make_space


def test_patience_ends_the_study_after_that_many_trials_without_improvement() -> None:
    study = Study(make_core(make_space({"patience": 3})))
    first = study.run(best=0.5)
    assert Notify("best", "new best loss=0.5: trial 1") in first
    for value in (0.7, 0.5, 0.9):  # equal is not better
        study.run(best=value)
    reason = "patience: 3 finished trials brought no improvement; no new trials"
    assert study.core.state.stop_reason == reason
    assert study.kinds().count(EventKind.PATIENCE) == 1 and reason in study.said
    assert study.offered() is None  # no new trial
    assert study.core.ending(StudyStatus.COMPLETED)[0] == f"study ended: {reason}"
    assert study.core.state.exit_code == 0


def test_an_improvement_resets_patience() -> None:
    study = Study(make_core(make_space({"patience": 2})))
    for value in (0.5, 0.6, 0.4, 0.45):
        study.run(best=value)
    assert study.core.state.stop_reason is None
    assert study.core.counters.global_best == 0.4 and study.core.counters.global_best_trial == 3


def test_max_time_stops_the_running_trials_at_the_time_passed_in() -> None:
    study = Study(make_core(make_space({"max_time": "10s"}), now=100.0))
    a, b = study.start(), study.start()
    assert study.feed(Tick(109.9)) == []
    effects = study.feed(Tick(110.0))
    reason = "max_time 10s reached: running trials stopped"
    assert study.core.state.stop_reason == reason and reason in study.said
    assert [e for e in effects if isinstance(e, StopTrial)] == [
        StopTrial(a.id, TrialStatus.STOPPED, "max_time reached"), StopTrial(b.id, TrialStatus.STOPPED, "max_time reached")]
    assert study.feed(Reported(a.id, 3, {"loss": 0.1}, None, 4)) == []  # being stopped: nothing more decided
    assert study.feed(Tick(200.0)) == []  # said once
    assert study.offered() is None


def test_clones_run_outside_max_trials_even_once_the_budget_is_spent() -> None:
    study = Study(make_core(make_space({"max_trials": 2})))
    study.run(best=0.5)
    study.run(best=0.4)
    assert study.offered() is None and not study.core.can_launch_more()
    effects = study.feed(Command(7, "clone_trial", 2, {"params": {"layers": 3}}))
    queued = next(e for e in effects if isinstance(e, QueueClone))
    assert next(e for e in effects if isinstance(e, Acknowledge)).result.ok
    study.feed(CloneQueued(41, queued.source_number, queued.params))  # the store wrote the row with the ack
    launch = study.offered()
    assert launch == Launch(queued.params, None, clone_id=41, clone_of=2)
    clone = study.start()
    study.exit(clone, best=0.3)
    assert study.core.finished == 3 and study.core.queue.budget_used(0) == 2
    assert study.offered() is None  # the clone ran; the budget is still spent
    assert study.core.ending(StudyStatus.COMPLETED)[2] == "budget: 2 trials finished"


def test_running_trials_count_towards_max_trials_until_they_end() -> None:
    study = Study(make_core(make_space({"max_trials": 2})))
    study.start()
    study.start()
    assert study.feed(SlotsFree(4)) == []


def test_reruns_go_first_then_clones_then_the_samplers_next_index() -> None:
    study = Study(make_core())
    interrupted = facts(2, TrialStatus.INTERRUPTED, params={"lr": 0.02, "layers": 1}, sample_index=1)
    study.feed(Recovered((facts(1, TrialStatus.COMPLETED, best=0.3), interrupted)))
    study.feed(RerunQueued(interrupted))
    study.feed(CloneQueued(5, 1, {"lr": 0.05, "layers": 4}))
    study.next_id = 3
    order = []
    for _ in range(3):
        launch = study.offered()
        assert launch is not None
        order.append((launch.rerun_of, launch.clone_of, launch.sample_index))
        study.start()
    assert order == [(2, None, 1), (None, 1, None), (None, None, 2)]  # the next index follows the highest recorded


def test_a_configuration_that_could_not_be_placed_is_offered_again() -> None:
    study = Study(make_core())
    first = study.offered()
    assert first is not None and study.offered() == first  # no GPU free: not consumed
    study.start()
    after = study.offered()
    assert after is not None and after.sample_index == 1


def test_a_used_up_grid_ends_the_study_with_every_configuration_run() -> None:
    space = make_space({"max_trials": 10}, search={"algorithm": "grid"}, command="python train.py {layers}",
                       space={"layers": {"type": "choice", "values": [1, 2]}})
    study = Study(make_core(space))
    study.run(best=0.2)
    study.run(best=0.3)
    assert study.offered() is None and not study.core.can_launch_more()
    assert study.core.ending(StudyStatus.COMPLETED) == (
        "study completed", {"status": "completed", "reason": "every configuration of the search ran"},
        "every configuration of the search ran")
