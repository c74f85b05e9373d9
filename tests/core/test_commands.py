"""Commands on hand-built event sequences: what is applied, what is refused and in which words, and that every
command is acknowledged (ok or not) and recorded as a ``command`` event."""

from __future__ import annotations

from typing import Any

from hpotui.engine.core.effects import (Acknowledge, PauseTrial, QueueClone, RecordEvent, ResumeTrial, Say,
                                        SetLaunchingPaused, SetMaxParallel, StopTrial)
from hpotui.engine.core.events import Command
from hpotui.engine.database.records import CommandResult, EventKind, StudyStatus, TrialStatus

from .build import Study, make_core


def _answer(study: Study, action: str, number: int | None = None, args: dict[str, Any] | None = None,
            problem: str | None = None) -> tuple[CommandResult, list[Any]]:
    effects = study.feed(Command(99, action, number, args or {}, problem))
    ack = [e for e in effects if isinstance(e, Acknowledge)]
    assert len(ack) == 1 and ack[0].command_id == 99
    event = effects[-1]
    assert isinstance(event, RecordEvent) and event.kind == EventKind.COMMAND and event.buffered
    assert event.message == f"{action}: {ack[0].result.message}" and event.data == {"ok": ack[0].result.ok}
    return ack[0].result, effects[:-2]


def test_max_parallel_must_be_a_whole_number_from_1_to_1024() -> None:
    study = Study(make_core())
    for bad in (0, 1025, "3", True, 2.5, None):
        result, effects = _answer(study, "set_max_parallel", args={"value": bad})
        assert result == CommandResult.refused(f"refused: max_parallel must be a whole number from 1 to 1024, "
                                               f"got {bad!r}")
        assert effects == []
    result, effects = _answer(study, "set_max_parallel", args={"value": 6})
    assert result == CommandResult.done("max_parallel is now 6") and effects == [SetMaxParallel(6)]
    assert study.core.state.max_parallel == 6


def test_trial_commands_need_a_running_trial() -> None:
    study = Study(make_core())
    finished = study.start()
    study.exit(finished, best=0.2)
    running = study.start()
    assert _answer(study, "stop_trial", finished.number)[0] == CommandResult.refused("refused: trial 1 is not running")
    assert _answer(study, "pause_trial", 7)[0] == CommandResult.refused("refused: trial 7 is not running")
    assert _answer(study, "explode", running.number)[0] == CommandResult.refused("refused: unknown action 'explode'")
    assert _answer(study, "pause_trial", 2) == (CommandResult.done("trial 2 paused"), [PauseTrial(running.id)])
    assert _answer(study, "resume_trial", 2) == (CommandResult.done("trial 2 resumed"), [ResumeTrial(running.id)])
    assert _answer(study, "stop_trial", 2) == (CommandResult.done("stopping trial 2"), [
        StopTrial(running.id, TrialStatus.STOPPED, "stopped by the user"), Say("trial 2: stop requested by the user")])


def test_a_malformed_row_is_refused_with_its_problem_and_changes_nothing() -> None:
    study = Study(make_core())
    result, effects = _answer(study, "stop_study", problem="refused: args is not a JSON object")
    assert result == CommandResult.refused("refused: args is not a JSON object") and effects == []
    assert study.core.state.stop_reason is None


def test_stop_study_stops_every_running_trial_and_launches_no_more() -> None:
    study = Study(make_core())
    a, b = study.start(), study.start()
    result, effects = _answer(study, "stop_study")
    assert result == CommandResult.done("stopping 2 running trials; no new trials")
    assert effects == [StopTrial(a.id, TrialStatus.STOPPED, "study stopped by the user"),
                       StopTrial(b.id, TrialStatus.STOPPED, "study stopped by the user"),
                       Say("study stop requested: stopping running trials")]
    assert study.core.state.final_status == StudyStatus.STOPPED and study.offered() is None


def test_pause_and_resume_launching() -> None:
    study = Study(make_core())
    assert _answer(study, "pause_launching") == (CommandResult.done("launching paused"),
                                                 [SetLaunchingPaused(True, "paused by the user")])
    assert study.offered() is None
    assert _answer(study, "resume_launching") == (CommandResult.done("launching resumed"),
                                                  [SetLaunchingPaused(False, None)])
    assert study.offered() is not None


def test_clone_validation() -> None:
    study = Study(make_core())
    source = study.start()
    assert _answer(study, "clone_trial", 9, {"params": {}})[0] == CommandResult.refused("refused: no trial 9")
    assert _answer(study, "clone_trial", 1, {"params": {"depth": 3}})[0] == CommandResult.refused(
        "refused: 'depth' is not a parameter of this study")
    result, effects = _answer(study, "clone_trial", 1, {"params": {"layers": 9}})
    note = "layers=9 is outside the searched range [1, 4]; it runs as asked"  # int bounds as written
    assert result.ok and result.message.endswith(f" (note: {note})")
    assert result.message.startswith("clone of trial 1 queued: lr=")
    assert effects == [QueueClone(99, 1, dict(source.params, layers=9), note, result.message)]
    _answer(study, "stop_study")
    assert _answer(study, "clone_trial", 1, {"params": {}})[0] == CommandResult.refused(
        "refused: the study is ending (stopped by the user)")


def test_a_stop_sent_to_an_engine_that_died_is_not_applied_on_resume_and_other_commands_say_they_are_late() -> None:
    from hpotui.engine.core.events import EarlierCommand

    study = Study(make_core())
    stop = study.feed(EarlierCommand(Command(3, "stop_study"), "2026-12-01 09:00:00"))
    result = ("not applied: this stop of the study was sent at 2026-12-01 09:00:00 to an engine that died before "
              "acting on it, and the study was resumed since; stop it again if you still mean it")
    assert stop == [Acknowledge(3, CommandResult.refused(result)),
                    RecordEvent(None, EventKind.STALE_COMMAND, f"stop_study: {result}", level="warning"),
                    Say(f"stop_study: {result}")]
    late = study.feed(EarlierCommand(Command(4, "pause_launching"), "2026-12-01 09:01:00"))
    assert late[-1] == Say("pause_launching: sent at 2026-12-01 09:01:00 while no engine was running; applied now")
    assert not any(isinstance(e, Acknowledge) for e in late)  # it is applied (and acknowledged) as usual
    malformed = Command(5, "set_max_parallel", problem="refused: value is not a number")
    assert study.feed(EarlierCommand(malformed, "2026-12-01 09:02:00")) == []  # refused as usual, not as stale
    assert study.core.state.stop_reason is None
