"""A clone's edited values: checked against the parameter, and noted when outside the searched range.

A clone is the user asking for one exact configuration. A value the search would never sample
(``lr: 5`` where the range is 1e-5 to 1) is a deliberate experiment, so it runs, but the note
travels with it: in the command's acknowledgement, on the trial's events and in the engine's
output. A value the command cannot take (text for a number, a choice that is not offered, a
fraction for an integer) is refused.
"""

from __future__ import annotations

import math
from typing import Any

from .conditions import active_only, is_active
from .space import Param, Space, format_value


class Refused(ValueError):
    """The value cannot run: the acknowledgement says why."""


def checked_value(param: Param, value: Any) -> tuple[Any, str | None]:
    """(the value as the trial gets it, a note when it lies outside the searched range)."""
    if param.type == "choice":
        if value not in param.values:
            raise Refused(f"{param.name} must be one of {list(param.values)}")
        return value, None
    value = _number(param, value)
    if param.low is not None and param.high is not None and not param.low <= value <= param.high:
        return value, (f"{param.name}={format_value(value)} is outside the searched range "
                       f"[{_bound(param, param.low)}, {_bound(param, param.high)}]; it runs as asked")
    return value, None


def _bound(param: Param, bound: float) -> str:
    """A range end as the space file means it: ``4`` for an int parameter, not the parsed ``4.0``."""
    return format_value(int(bound) if param.type == "int" and bound == int(bound) else bound)


def _number(param: Param, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Refused(f"{param.name} must be a finite number")
    if param.type != "int":
        return float(value)
    if value != int(value):
        raise Refused(f"{param.name} must be a whole number, got {format_value(value)}")
    return int(value)


def with_overrides(space: Space, params: dict[str, Any], overrides: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The source trial's params with the edited values, and the notes on them (None when all in range).

    With conditional parameters an edit can switch a branch: parameters the new choice turns off
    leave the clone (and its command), and one it turns on must be given a value in the same
    edit, since the source trial never had one.
    """
    params, notes = dict(params), []
    known = {p.name for p in space.params}
    for name, value in overrides.items():
        if name not in known:
            raise Refused(f"{name!r} is not a parameter of this study")
        params[name], note = checked_value(space.param(name), value)
        if note:
            notes.append(note)
    active = active_only(space.params, params)
    needed = [p.name for p in space.params if p.name not in active and is_active(p, active)]
    if needed:
        raise Refused(f"this edit switches on {', '.join(needed)}: give {'it' if len(needed) == 1 else 'them'} "
                      "a value in the same clone")
    for name in overrides:
        if name not in active:
            raise Refused(f"{name} is only used when {_condition_text(space.param(name))}")
    return active, "; ".join(notes) or None


def _condition_text(param: Param) -> str:
    """'optimizer is sgd' style: the condition under which a conditional parameter exists."""
    return " and ".join(f"{parent} is {' or '.join(format_value(v) for v in values)}" for parent, values in param.when)
