"""Why a trial is where it is, in the words the engine recorded, for the line above its charts.

The engine keeps every reason in the file: a failed trial's exit code or signal and the tail of
its stderr (the ``failed`` event), a pruned trial's rung, value and cut-off (its status reason,
the scheduler's own sentence), a stopped or diverged trial's cause, and for a trial whose engine
died, whether its process is still there, an invalid trial's own sentence about its configuration,
and what hpotui could not read from a trial (its ``not_read`` events: a pattern that never matched,
an objective never reported). This module only turns them into two or three lines.
"""

from __future__ import annotations

import signal

from typing import Sequence

from rich.text import Text

from ..engine.database.records import INVALID_STATUSES, TrialStatus

from . import format as fmt
from .data import FailureDetail, TrialInfo

STDERR_LINES = 2


def exit_words(code: int | None) -> str:
    """``exit code 1``, or ``killed by SIGKILL`` for the 128+N codes the engine records for signal N."""
    if code is None:
        return "exit code unknown"
    if code > 128:
        try:
            return f"killed by {signal.Signals(code - 128).name} (exit code {code})"
        except ValueError:
            pass
    return f"exit code {code}"


def last_lines(text: str, count: int = STDERR_LINES) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return lines[-count:]


def trial_reason(trial: TrialInfo, failure: FailureDetail | None, study_name: str, width: int,
                 not_read: Sequence[str] = ()) -> Text:
    """Up to three lines cut to ``width``: the status and why, what was not read, then (failed) stderr."""
    head = Text()
    label = "clone" if trial.pending else f"trial {trial.number}"
    head.append(f"{label} ", style="bold")
    head.append_text(fmt.status(trial.shown_status))
    if trial.clone_of is not None:
        head.append(f" · clone of #{trial.clone_of}", style="cyan")
    why = _why(trial, failure, study_name)
    if why:
        head.append(" · " + why)
    lines = [head]
    if not_read:
        line = Text("  not read│ ", style="dim")
        line.append("; ".join(not_read), style="yellow")
        lines.append(line)
    if trial.status == TrialStatus.FAILED and failure is not None and failure.stderr_tail:
        for text in last_lines(failure.stderr_tail, STDERR_LINES + 1 - len(lines)):
            line = Text("  stderr│ ", style="dim")
            line.append(text, style="red")
            lines.append(line)
    room = max(20, width - 2)
    for line in lines:
        line.truncate(room, overflow="ellipsis")
    return Text("\n").join(lines)


def _why(trial: TrialInfo, failure: FailureDetail | None, study_name: str) -> str:
    shown = trial.shown_status
    if shown == "gone":
        return (f"its process is gone and no engine recorded how it ended; `hpotui resume {study_name}` "
                "reads its output and records it")
    if shown == "unwatched":
        return f"still running with no engine watching it; `hpotui resume {study_name}` adopts it"
    if trial.status == TrialStatus.FAILED:
        return _failed_why(trial, failure)
    if trial.status in INVALID_STATUSES:
        return f"{trial.reason or 'the trial said its configuration is invalid'} · not counted toward max_trials"
    if trial.status == TrialStatus.COMPLETED:
        return f"best {fmt.number(trial.best)}" + (f" · last {fmt.number(trial.last)}" if trial.last is not None else "")
    return trial.reason


def _failed_why(trial: TrialInfo, failure: FailureDetail | None) -> str:
    """The exit (code or signal, from the ``failed`` event when there is one), then the engine's reason."""
    code = failure.exit_code if failure is not None and failure.exit_code is not None else trial.exit_code
    head = exit_words(code)
    reason = trial.reason
    if not reason:
        return head
    return reason if reason.startswith("exit code") else f"{head} — {reason}"
