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
                       f"[{format_value(param.low)}, {format_value(param.high)}]; it runs as asked")
    return value, None


def _number(param: Param, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Refused(f"{param.name} must be a finite number")
    if param.type != "int":
        return float(value)
    if value != int(value):
        raise Refused(f"{param.name} must be a whole number, got {format_value(value)}")
    return int(value)


def with_overrides(space: Space, params: dict[str, Any], overrides: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The source trial's params with the edited values, and the notes on them (None when all in range)."""
    params, notes = dict(params), []
    for name, value in overrides.items():
        if name not in params:
            raise Refused(f"{name!r} is not a parameter of this study")
        params[name], note = checked_value(space.param(name), value)
        if note:
            notes.append(note)
    return params, "; ".join(notes) or None
