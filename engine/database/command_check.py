"""Every row of the commands table is checked before the engine acts on it.

The table is written by other processes (the TUI, ``hpotui stop``, a ``sqlite3`` shell, an
older or newer hpotui), so a row may hold anything SQLite lets a column hold: ``args`` that is
not JSON, a JSON list or string, clone parameters that are not an object, a trial number that
is text. Such a row is refused with an acknowledgement that says why; it never reaches the
loop's logic and never stops the loop, now or on a later ``resume``.
"""

from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass
from typing import Any

TRIAL_ACTIONS = ("stop_trial", "pause_trial", "resume_trial", "clone_trial")
MAX_ARGS_CHARS = 1 << 20  # a clone of a 4,000-parameter trial is ~100 KB
MAX_PARALLEL = 1024


@dataclass(frozen=True)
class CheckedCommand:
    """A command row as the loop may use it: ``problem`` is the refusal when it must not be applied."""

    args: dict[str, Any]
    problem: str | None = None


def _refuse(why: str) -> CheckedCommand:
    return CheckedCommand(args={}, problem=f"refused: {why}")


def check_command(action: Any, trial_number: Any, args_text: Any, actions: tuple[str, ...]) -> CheckedCommand:
    """``args`` parsed and every field the action uses checked; a refusal instead of an exception.

    ``actions`` is the store's fixed set (store.COMMAND_ACTIONS, which the table's CHECK holds too).
    """
    if not isinstance(action, str) or action not in actions:
        return _refuse(f"unknown action {_brief(action)}")
    problem = _trial_number_problem(action, trial_number)
    args = _parse_args(args_text)
    if problem is None and isinstance(args, str):
        problem = args
    if problem is None and isinstance(args, dict):
        problem = _action_args_problem(action, args)
    if problem is not None or not isinstance(args, dict):
        return _refuse(problem or "args could not be read")
    if action == "clone_trial" and args.get("params") is None:
        args = dict(args, params={})
    return CheckedCommand(args=args)


def _trial_number_problem(action: str, trial_number: Any) -> str | None:
    if trial_number is not None and (isinstance(trial_number, bool) or not isinstance(trial_number, int)):
        return f"trial_number must be a whole number, got {_brief(trial_number)}"
    if action in TRIAL_ACTIONS and trial_number is None:
        return f"{action} needs a trial_number"
    return None


def _action_args_problem(action: str, args: dict[str, Any]) -> str | None:
    """What is wrong with the arguments the action uses (set_max_parallel's value, clone_trial's params)."""
    if action == "set_max_parallel":
        value = args.get("value")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARALLEL:
            return f"max_parallel must be a whole number from 1 to {MAX_PARALLEL}, got {_brief(value)}"
    if action == "clone_trial":
        params = args.get("params")
        if params is not None and not isinstance(params, dict):
            return f"clone params must be an object of name: value, got {_brief(params)}"
        if isinstance(params, dict):
            return _clone_values_problem(params)
    return None


def _clone_values_problem(params: dict[str, Any]) -> str | None:
    """Clone values are what a parameter can hold: a number (within a float's range), a string or a boolean."""
    for name, value in params.items():
        if len(name) > 200:
            return f"clone parameter name {_brief(name)} is too long"
        if value is None or isinstance(value, (list, dict)):
            return f"clone value for {_brief(name)} must be a number, a string or true/false, got {_brief(value)}"
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**1023:
            return f"clone value for {_brief(name)} is too large for a number ({_brief(value)})"
    return None


def _parse_args(text: Any) -> dict[str, Any] | str:
    """The args object, or why there is none."""
    if text is None or text == "":
        return {}
    if isinstance(text, bytes):
        return "args must be JSON text, got bytes"
    if not isinstance(text, str):
        return f"args must be a JSON object, got {_brief(text)}"
    if len(text) > MAX_ARGS_CHARS:
        return f"args is {len(text):,} characters long (at most {MAX_ARGS_CHARS:,})"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return f"args is not JSON: {_brief(text)}"
    if not isinstance(value, dict):
        return f"args must be a JSON object, got {_brief(value)}"
    return value


def _brief(value: Any, limit: int = 60) -> str:
    """A value as an acknowledgement shows it: one line, bounded."""
    text = reprlib.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
