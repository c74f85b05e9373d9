"""Reports and exits on hand-built sequences: a health check stops a blown-up trial, the scheduler prunes, a
trial being stopped is judged no more, and how each end is worded."""

from __future__ import annotations

from hpotui.engine.core.effects import FlagOom, RecordEnd, RecordEvent, Say, SetBracket, StopTrial
from hpotui.engine.core.events import Reported
from hpotui.engine.database.records import EventKind, TrialStatus

from .build import Study, make_core, make_space


def test_a_nan_objective_stops_the_trial_as_diverged() -> None:
    study = Study(make_core())
    trial = study.start()
    effects = study.feed(Reported(trial.id, 2, {"loss": float("nan")}, None, 1))
    flag, stop, said = effects
    assert isinstance(flag, RecordEvent) and flag.kind == EventKind.FLAG and flag.level == "error"
    assert stop == StopTrial(trial.id, TrialStatus.DIVERGED, flag.message)
    assert said == Say(f"trial 1 {flag.message}")
    assert study.feed(Reported(trial.id, 3, {"loss": 0.1}, None, 2)) == []
    ended = study.exit(trial, -15, asked_status=TrialStatus.DIVERGED, asked_reason=flag.message, reports=1)
    assert ended[0] == RecordEnd(trial.id, ended[0].end) and ended[0].end.status == TrialStatus.DIVERGED  # type: ignore[union-attr]


def test_hyperband_deals_a_bracket_and_asha_prunes_at_a_rung() -> None:
    space = make_space({"max_trials": 20, "max_parallel": 8},
                       scheduler={"type": "asha", "resource": "epoch", "min_resource": 1, "max_resource": 9,
                                  "reduction_factor": 3, "min_trials": 3})
    study = Study(make_core(space))
    trials = [study.start() for _ in range(4)]
    decisions = []
    for trial, value in zip(trials, (0.1, 0.2, 0.3, 0.9)):
        decisions += study.feed(Reported(trial.id, 1, {"loss": value, "epoch": 1}, 1, 1))
    stops = [e for e in decisions if isinstance(e, StopTrial)]
    assert stops and trials[0].id not in {s.trial_id for s in stops}  # the best at the rung goes on
    for stop in stops:
        assert stop.status == TrialStatus.PRUNED
        event = next(e for e in decisions if isinstance(e, RecordEvent) and e.trial_id == stop.trial_id)
        assert event.kind == EventKind.SCHEDULER and event.message == f"trial {stop.trial_id} {stop.reason}"
        assert event.data["action"] == "stop" and event.data["resource"] == 1  # type: ignore[index]
        assert study.feed(Reported(stop.trial_id, 2, {"loss": 0.01, "epoch": 2}, 2, 2)) == []  # judged no more
    hb = make_space({"max_trials": 20}, scheduler={"type": "hyperband", "resource": "epoch", "max_resource": 9,
                                                    "reduction_factor": 3})
    hb_study = Study(make_core(hb))
    hb_study.start()
    assert any(isinstance(e, SetBracket) for e in hb_study.effects)


def test_a_failed_trial_says_its_last_stderr_line_and_flags_cuda_oom() -> None:
    study = Study(make_core())
    tail = "Traceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory\n"
    effects = study.run(code=1, stderr_tail=tail, cuda_oom=True)
    assert isinstance(effects[0], RecordEnd) and effects[0].end.reason == "exit code 1: torch.OutOfMemoryError: CUDA out of memory"
    assert FlagOom(1, 1) in effects
    failed = next(e for e in effects if isinstance(e, RecordEvent) and e.kind == TrialStatus.FAILED)
    assert failed.level == "error" and failed.data["stderr_tail"] == tail  # type: ignore[index]
    assert "trial 1 failed — exit code 1: torch.OutOfMemoryError: CUDA out of memory" in study.said


def test_an_oom_retried_alone_is_not_a_result_and_runs_again() -> None:
    study = Study(make_core())
    trial = study.start()
    effects = study.exit(trial, 1, stderr_tail="CUDA out of memory\n", cuda_oom=True, retry_alone=True)
    assert [type(e) for e in effects] == [RecordEnd] and study.core.finished == 0
    assert study.offered().rerun_of == trial.id  # type: ignore[union-attr]


def test_a_completed_trial_is_worded_with_its_best_and_time() -> None:
    study = Study(make_core())
    study.run(best=0.125, best_step=4, ran_s=12.34)
    assert study.said == ["trial 1 completed after 12.3s: loss=0.125 (best at step 4)"]


def test_an_exit_whose_end_could_not_be_recorded_is_judged_again_and_counted_once() -> None:
    from hpotui.engine.core.events import GpuReleased, TrialExited

    study = Study(make_core())
    trial = study.start()
    first = study.feed(TrialExited(trial.id, 0, best=0.2, reports=3, problems=()))
    again = study.feed(TrialExited(trial.id, 0, best=0.2, reports=3, problems=()))  # the database was full
    assert first == again and isinstance(first[0], RecordEnd)
    study.feed(GpuReleased(trial.id))
    assert study.core.finished == 1 and study.said == ["trial 1 completed: loss=0.2 (best)"]
