"""Commands from the interface (the commands table): each is applied or refused, and acknowledged.

The answer is a CommandResult (ok: done; not ok: refused), written with the command's row and
recorded as a ``command`` event. A clone is queued through the store in the same transaction as
its acknowledgement (``QueueClone``), so one acknowledged "queued" runs exactly once.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..database.records import CommandResult, EventKind, StudyStatus, TrialStatus
from ..space_file.clones import Refused, with_overrides
from ..space_file.space import Space, format_value
from .effects import (Acknowledge, Effect, PauseTrial, QueueClone, RecordEvent, ResumeTrial, Say,
                      SetLaunchingPaused, SetMaxParallel)
from .events import Command, EarlierCommand
from .state import StudyState
from .trials import TrialTable

MAX_PARALLEL_LIMIT = 1024


def show_params(params: Mapping[str, Any]) -> str:
    """``lr=0.001 layers=3``: a trial's values as the engine prints them."""
    parts = []
    for name, value in params.items():
        text = f"{value:.4g}" if isinstance(value, float) else format_value(value)
        parts.append(f"{name}={text}")
    return " ".join(parts)


class CommandDesk:
    def __init__(self, space: Space, state: StudyState, trials: TrialTable) -> None:
        self.space, self.state, self.trials = space, state, trials

    def handle(self, command: Command) -> list[Effect]:
        effects: list[Effect] = []
        outcome = (CommandResult.refused(command.problem) if command.problem
                   else self._apply(command, effects))
        effects += [Acknowledge(command.id, outcome),
                    RecordEvent(None, EventKind.COMMAND, f"{command.action}: {outcome.message}",
                                data={"ok": outcome.ok}, buffered=True)]
        return effects

    def earlier(self, event: EarlierCommand) -> list[Effect]:
        """Stops sent to an engine that died before acting on them are not applied by a later resume.

        Resuming is the user's later decision; an old ``stop_study`` would end the resumed study at
        once, without a word. Each is acknowledged "not applied" (so the sender's screen says so),
        recorded as an event and printed; other waiting commands (pause, max_parallel, clones) still
        apply, and the engine says that they came from before it started.
        """
        command, sent = event.command, event.sent
        if command.problem and not command.action.startswith("stop_"):
            return []  # malformed rows: refused as usual
        effects: list[Effect] = []
        if command.action in ("stop_study", "stop_trial"):
            what = "study" if command.action == "stop_study" else f"trial {command.trial_number}"
            result = (f"not applied: this stop of the {what} was sent at {sent} to an engine that died before "
                      f"acting on it, and the study was resumed since; stop it again if you still mean it")
            effects.append(Acknowledge(command.id, CommandResult.refused(result)))
        else:
            result = f"sent at {sent} while no engine was running; applied now"
        return effects + [RecordEvent(None, EventKind.STALE_COMMAND, f"{command.action}: {result}", level="warning"),
                          Say(f"{command.action}: {result}")]

    def _apply(self, command: Command, effects: list[Effect]) -> CommandResult:
        """Apply one command; what it does goes into ``effects``, the answer is returned."""
        action = command.action
        if action == "stop_study":
            return self._stop_study(effects)
        if action in ("pause_launching", "resume_launching"):
            paused = action == "pause_launching"
            self.state.launching_paused = paused
            effects.append(SetLaunchingPaused(paused, "paused by the user" if paused else None))
            return CommandResult.done("launching paused" if paused else "launching resumed")
        if action == "set_max_parallel":
            return self._set_max_parallel(command.args.get("value"), effects)
        if action == "clone_trial":
            return self._clone(command, effects)
        return self._trial_command(action, command.trial_number, effects)

    def _stop_study(self, effects: list[Effect]) -> CommandResult:
        self.state.stop_reason = "stopped by the user"
        self.state.final_status = StudyStatus.STOPPED
        effects += self.trials.stop_all(TrialStatus.STOPPED, "study stopped by the user")
        effects.append(Say("study stop requested: stopping running trials"))
        return CommandResult.done(f"stopping {len(self.trials.live)} running trials; no new trials")

    def _set_max_parallel(self, value: Any, effects: list[Effect]) -> CommandResult:
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_PARALLEL_LIMIT:
            return CommandResult.refused(f"refused: max_parallel must be a whole number from 1 to "
                                         f"{MAX_PARALLEL_LIMIT}, got {value!r}")
        self.state.max_parallel = value
        effects.append(SetMaxParallel(value))
        return CommandResult.done(f"max_parallel is now {value}")

    def _trial_command(self, action: str, number: int | None, effects: list[Effect]) -> CommandResult:
        """stop / pause / resume one running trial (any other action on a running trial is refused)."""
        live = self.trials.live_by_number(number)
        if live is None:
            return CommandResult.refused(f"refused: trial {number} is not running")
        if action == "stop_trial":
            effects += [self.trials.stop(live.id, TrialStatus.STOPPED, "stopped by the user"),
                        Say(f"trial {number}: stop requested by the user")]
            return CommandResult.done(f"stopping trial {number}")
        if action == "pause_trial":
            effects.append(PauseTrial(live.id))
            return CommandResult.done(f"trial {number} paused")
        if action == "resume_trial":
            effects.append(ResumeTrial(live.id))
            return CommandResult.done(f"trial {number} resumed")
        return CommandResult.refused(f"refused: unknown action {action!r}")

    def _clone(self, command: Command, effects: list[Effect]) -> CommandResult:
        """Queue a copy of a trial with edited values; it runs in addition to max_trials (README: clones)."""
        number = command.trial_number
        source = self.trials.by_number(number) if number is not None else None
        if source is None:
            return CommandResult.refused(f"refused: no trial {number}")
        if self.state.stop_reason:
            return CommandResult.refused(f"refused: the study is ending ({self.state.stop_reason})")
        try:
            params, note = with_overrides(self.space, source.params, command.args.get("params") or {})
        except Refused as exc:
            return CommandResult.refused(f"refused: {exc}")
        result = f"clone of trial {number} queued: {show_params(params)}" + (f" (note: {note})" if note else "")
        effects.append(QueueClone(command.id, source.number, params, note, result))
        return CommandResult.done(result)
