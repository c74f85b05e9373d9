"""Turn a trial's output lines into reports.

The contract: a line starting with ``@hpotui `` followed by one JSON object of numbers
(``NaN``, ``Infinity`` and ``-Infinity`` allowed, as Python's json writes them). The step is
``epoch`` if present, else ``step``, else the count of reports so far. Every other line only
goes to the trial's log. For scripts that cannot be changed, per-metric regular expressions read
numbers out of ordinary lines instead.

Parsing never raises: a malformed line becomes a :class:`Rejected` with a reason the engine
records as an event, so a hostile or buggy trial cannot crash the engine.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

PREFIX = "@hpotui "
MAX_KEYS = 256


@dataclass(frozen=True)
class Report:
    step: float
    values: dict[str, float]
    resource: float | None = None  # the scheduler's resource key, when the line carries it
    ignored: tuple[str, ...] = field(default=())  # keys dropped because their value is not a number


@dataclass(frozen=True)
class Rejected:
    reason: str


def _constant(name: str) -> float:
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


# One decoder for every line: json.loads(..., parse_constant=) would build a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_constant)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # ints beyond float range
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]


def parse_metric_line(line: str, reports_so_far: int, resource_key: str = "epoch",
                      max_bytes: int = 64 * 1024) -> Report | Rejected | None:
    """None for an ordinary log line; a Report or a Rejected for an ``@hpotui`` line."""
    if not line.startswith(PREFIX):
        return None
    body = line[len(PREFIX):].strip()
    if len(body) > max_bytes:
        return Rejected(f"metric line of {len(body)} bytes is over the {max_bytes}-byte limit; ignored")
    try:
        payload = _DECODER.decode(body)
    except (ValueError, RecursionError):
        return Rejected(f"metric line is not valid JSON: {_preview(body)}")
    if not isinstance(payload, dict):
        return Rejected(f"metric line must hold one JSON object, got {type(payload).__name__}: {_preview(body)}")
    if len(payload) > MAX_KEYS:
        return Rejected(f"metric line has {len(payload)} keys (limit {MAX_KEYS}); ignored")
    values: dict[str, float] = {}
    ignored: list[str] = []
    for key, raw in payload.items():
        number = raw if type(raw) is float else _number(raw)  # most values are floats: skip the checks
        if number is None or len(key) > 200:
            ignored.append(str(key)[:60])
        else:
            values[key] = number
    step_key = "epoch" if "epoch" in values else ("step" if "step" in values else None)
    if step_key is not None and math.isfinite(values[step_key]):
        step = values.pop(step_key)
    else:
        step = float(reports_so_far + 1)
        if step_key is not None:
            values.pop(step_key)
            ignored.append(step_key)
    resource = values[resource_key] if resource_key in values and resource_key != step_key else step
    if not values and not ignored and step_key is None:
        return Rejected("metric line holds no metric")
    return Report(step=step, values=values, resource=resource, ignored=tuple(ignored))


class RegexMetrics:
    """Reads metrics from ordinary lines of a script that cannot print ``@hpotui`` lines.

    An ``epoch`` or ``step`` pattern, if given, sets the step of the metrics that follow it;
    otherwise each metric's step is how many values of it were seen.
    """

    def __init__(self, patterns: tuple[tuple[str, str], ...]) -> None:
        self.step_name = next((n for n, _ in patterns if n in ("epoch", "step")), None)
        # The step pattern goes first so that a line holding both sets the step of its own metrics,
        # whatever order the space file lists them in.
        self.patterns = sorted(((name, re.compile(pattern)) for name, pattern in patterns),
                               key=lambda item: item[0] != self.step_name)
        self.current_step: float | None = None
        self.counts: dict[str, int] = {}

    def resume(self, counts: dict[str, int], last_step: float | None) -> None:
        """Continue a re-adopted trial: per-metric counts and the step as already recorded."""
        self.counts = dict(counts)
        if self.step_name is not None:
            self.current_step = last_step

    def parse(self, line: str) -> list[Report]:
        reports: list[Report] = []
        for name, pattern in self.patterns:
            match = pattern.search(line)
            if not match:
                continue
            try:
                value = float(match.group(1))
            except (ValueError, IndexError):
                continue
            if name == self.step_name:
                self.current_step = value
                continue
            self.counts[name] = self.counts.get(name, 0) + 1
            step = self.current_step if self.current_step is not None else float(self.counts[name])
            reports.append(Report(step=step, values={name: value}, resource=step))
        return reports


def _preview(text: str) -> str:
    """The start of a bad line for an event: one line, control characters shown escaped."""
    head = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text[:80])
    return head + ("..." if len(text) > 80 else "")
