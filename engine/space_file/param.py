"""One searched hyperparameter, how a value of one is written into an argument, and the ``{name}`` placeholder.

Its own module because the space parser (:mod:`engine.space_file.space`), the conditions
(:mod:`engine.space_file.conditions`) and the metric-file paths (:mod:`engine.reading.metric_files`) all need it,
and the parser needs the other two: here none of them imports the parser back. The placeholder
syntax lives here for the same reason: the command, the conditions that drop its arguments and
the metric-file paths must agree on what ``{name}`` is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")  # {name} in a command, notify or metric-file argument
BUILTIN_PLACEHOLDERS = ("trial_id", "trial_dir", "max_resource")  # the engine fills these; no parameter takes the names


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter; ``log`` means sampled and refined in log space."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    values: tuple[Any, ...] = ()
    points: int = 3
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (choice parameter, values) that switch it on

    @property
    def is_numeric(self) -> bool:
        return self.type != "choice"


def format_value(value: Any) -> str:
    """How a parameter value is written into an argument: shortest exact text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as the same float; 'inf' / 'nan' too
    return str(value)
