"""How a trial's end is judged and worded: its final status, reason, exit code and the lines that say so.

Plain values in, plain values out: no store, no clock, no processes. The shell
(:meth:`engine.loop.trial_exits.TrialExits._finish_trial`) reads the trial's stderr and the clock; the study
core (engine/core/study_core.py) asks here what the end means, and the loop records it. Keeping
the rules here lets each one be tested on hand-built values in microseconds instead of through a
real trial.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any

from ..database.records import EXIT_UNKNOWN, FAILURE_STATUSES, TrialEnded, TrialStatus
from ..search.invalid import INVALID_STATUS

CRASH_MARK = "Traceback (most recent call last)"
UNWATCHED_REASON = "exit code unknown: the trial ended while no engine was watching it"
STDERR_TAIL_KEPT = 2000  # characters of a failed trial's stderr kept in its event


@dataclass(frozen=True)
class TrialEnd:
    """What is recorded on the trial's row when it exits."""

    status: str
    reason: str  # "" when there is nothing to say (a clean exit)
    exit_code: int | None  # None when it was lost (EXIT_UNKNOWN)


def needs_stderr(code: int, asked_status: str | None) -> bool:
    """Only a trial that ended on its own with a bad or unknown code needs its stderr read back."""
    return code != 0 and not asked_status


def judge_exit(code: int, *, asked_status: str | None, asked_reason: str | None, reports: int,
               invalid: str | None, stderr_tail: str) -> TrialEnd:
    """The trial's final status and reason from how it exited.

    ``asked_status``: what the engine asked it to end as (stopped, pruned, diverged, interrupted),
    which wins over its exit code. A lost exit code (``EXIT_UNKNOWN``) counts as completed when the
    trial reported and its stderr does not end in a crash. A trial that said its configuration is
    invalid ends ``invalid``, unless it was interrupted (then it runs again, as any interrupted one).
    """
    if asked_status:
        status, reason = asked_status, asked_reason or ""
    elif code == 0:
        status, reason = TrialStatus.COMPLETED, ""
    elif code == EXIT_UNKNOWN:
        crashed = CRASH_MARK in stderr_tail or "Error" in last_line(stderr_tail)
        status = TrialStatus.FAILED if crashed or reports == 0 else TrialStatus.COMPLETED
        reason = UNWATCHED_REASON
    else:
        status, reason = TrialStatus.FAILED, exit_reason(code, stderr_tail)
    if invalid is not None and status != TrialStatus.INTERRUPTED:
        status, reason = INVALID_STATUS, invalid
    return TrialEnd(status=status, reason=reason, exit_code=None if code == EXIT_UNKNOWN else code)


def exit_reason(code: int, stderr_tail: str) -> str:
    """``exit code 139 (SIGSEGV, segmentation fault: ...): <stderr's last line>``."""
    sig = signal_name(code)
    reason = f"exit code {code}" + (f" ({sig})" if sig else "")
    last = last_line(stderr_tail)
    return reason + (f": {last}" if last else "")


def last_line(text: str) -> str:
    """The last non-blank line, stripped and cut to 300 characters."""
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:300]
    return ""


def objective_text(metric: str, best: float | None, best_step: float | None) -> str:
    """``loss=0.1234 (best at step 7)``, or "" when the trial never reported the objective."""
    if best is None:
        return ""
    step = f" at step {best_step:g}" if best_step is not None else ""
    return f"{metric}={best:.4g} (best{step})"


def ended_lines(number: int, status: str, reason: str, *, ran_s: float | None, objective: str) -> tuple[str, str]:
    """(event text, printed line) of a trial that finished with a result (not interrupted, not invalid).

    The event names the reason of every end but a clean completion; the printed line only that of a
    failure or a divergence (a pruned or stopped trial's reason is in the event, the log stays short).
    """
    message = f"trial {number} {status}" + (f" after {ran_s:.1f}s" if ran_s is not None else "")
    message += f": {objective}" if objective else ""
    event = message + (f" — {reason}" if reason and status != TrialStatus.COMPLETED else "")
    said = message + (f" — {reason}" if reason and status in FAILURE_STATUSES else "")
    return event, said


def ended_level(status: str) -> str:
    return "error" if status == TrialStatus.FAILED else "info"


def ended_data(status: str, exit_code: int | None, best: float | None, reports: int,
               stderr_tail: str) -> dict[str, Any]:
    """The finished event's payload; a failed trial's carries the end of its stderr."""
    tail = stderr_tail[-STDERR_TAIL_KEPT:] if status == TrialStatus.FAILED else None
    return TrialEnded(exit_code, best, reports, tail).to_data()


def warnings_due(finished: int, min_trials: int, every: int) -> bool:
    """Whether boundary warnings are recomputed after this finish: each one at first, then thinning out.

    Nothing is said with fewer than ``min_trials`` finished; up to ``every`` finished, every finish
    recomputes; past that, every (finished // every)-th one does (they rank the whole study).
    """
    return finished >= min_trials and (finished <= every or finished % (finished // every) == 0)


# What a signal usually means for a training script, in the words a user searches for.
SIGNAL_MEANINGS = {
    signal.SIGSEGV: "segmentation fault: a crash in native code (CUDA, a C extension)",
    signal.SIGABRT: "aborted: a native library gave up (failed assertion, CUDA error)",
    signal.SIGKILL: "killed from outside, often by the out-of-memory killer (see `dmesg`)",
    signal.SIGBUS: "bus error: often shared memory (/dev/shm) too small for dataloader workers",
    signal.SIGFPE: "floating-point exception in native code",
    signal.SIGILL: "illegal instruction: a binary built for another CPU",
    signal.SIGTERM: "terminated from outside",
    signal.SIGINT: "interrupted (Ctrl-C)",
    signal.SIGHUP: "hang-up: its terminal went away",
    signal.SIGPIPE: "broken pipe",
    signal.SIGXCPU: "CPU time limit exceeded",
    signal.SIGXFSZ: "file size limit exceeded",
}


def signal_name(exit_code: int) -> str | None:
    """``SIGSEGV, segmentation fault: ...`` for an exit code of 128+N, so a failed trial's event says why."""
    if exit_code > 128:
        try:
            sig = signal.Signals(exit_code - 128)
        except ValueError:
            return None
        meaning = SIGNAL_MEANINGS.get(sig)
        return f"{sig.name}, {meaning}" if meaning else sig.name
    return None
