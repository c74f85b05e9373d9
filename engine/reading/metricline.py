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
MAX_KEY_CHARS = 200  # a longer key is ignored (named in the event by its first 60 characters)


@dataclass(frozen=True)
class Report:
    step: float
    values: dict[str, float]
    resource: float | None = None  # the scheduler's resource key, when the line carries it
    ignored: tuple[str, ...] = field(default=())  # keys dropped because their value is not a number


_new_object = object.__new__


def new_report(step: float, values: dict[str, float], resource: float | None,
               ignored: tuple[str, ...] = ()) -> Report:
    """``Report(step, values, resource, ignored)``, made for the hot path (one per metric line).

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, which costs
    about a microsecond a report; filling the new instance's ``__dict__`` gives the very same
    object (equal, hashable, still frozen against later assignment) in a third of that.
    """
    report = _new_object(Report)
    fields = report.__dict__
    fields["step"] = step
    fields["values"] = values
    fields["resource"] = resource
    fields["ignored"] = ignored
    return report


@dataclass(frozen=True)
class Rejected:
    reason: str


def _constant(name: str) -> float:
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


# One decoder for every line: json.loads(..., parse_constant=) would build a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_constant)
_raw_decode = _DECODER.raw_decode


_WORDS = {"nan": math.nan, "+nan": math.nan, "-nan": math.nan, "inf": math.inf, "+inf": math.inf,
          "infinity": math.inf, "+infinity": math.inf, "-inf": -math.inf, "-infinity": -math.inf}
# Bare nan / inf tokens (any case) outside strings, which JSON lacks: `{"loss": nan}` from a hand-made line.
_BARE_WORD = re.compile(r'("(?:[^"\\]|\\.)*")|(?<![\w.])([-+]?(?i:nan|inf(?:inity)?))(?![\w.])')


def _bare_words_as_json(body: str) -> str:
    def swap(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1)
        word = match.group(2).lower().lstrip("+")
        return "NaN" if "nan" in word else ("-Infinity" if word.startswith("-") else "Infinity")

    return _BARE_WORD.sub(swap, body)


def _number(value: object) -> float | None:
    if isinstance(value, str):
        return _WORDS.get(value.strip().lower())  # "nan", "Inf", "-Infinity" as strings are numbers too
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
    payload = _payload(body)
    if isinstance(payload, Rejected):
        return payload
    values, ignored = _numbers(payload, long_keys=len(body) > MAX_KEY_CHARS)
    step_key, step = _take_step_key(values, ignored, reports_so_far)
    resource = values[resource_key] if resource_key in values and resource_key != step_key else step
    if not values and not ignored and step_key is None:
        return Rejected("metric line holds no metric")
    return new_report(step, values, resource, tuple(ignored) if ignored else ())


def _payload(body: str) -> dict | Rejected:
    """The line's JSON object (bare nan / inf tokens accepted), or why not.

    ``_DECODER.decode`` skips JSON whitespace around the value and calls anything after it extra
    data; the body is ``str.strip()``-ed (JSON whitespace is a subset of what that strips), so
    ``raw_decode`` from 0 with the value ending where the body does is the same test, without
    ``decode``'s two whitespace scans.
    """
    try:
        payload, end = _raw_decode(body)
    except (ValueError, RecursionError):
        end = -1
    if end != len(body):
        try:
            payload = _DECODER.decode(_bare_words_as_json(body))
        except (ValueError, RecursionError):
            return Rejected(f"metric line is not valid JSON: {_preview(body)}")
    if not isinstance(payload, dict):
        return Rejected(f"metric line must hold one JSON object, got {type(payload).__name__}: {_preview(body)}")
    if len(payload) > MAX_KEYS:
        return Rejected(f"metric line has {len(payload)} keys (limit {MAX_KEYS}); ignored")
    return payload


def _take_step_key(values: dict[str, float], ignored: list[str], reports_so_far: int) -> tuple[str | None, float]:
    """``epoch`` if present, else ``step``, else the count of reports so far (a non-finite one is ignored)."""
    step_key = "epoch" if "epoch" in values else ("step" if "step" in values else None)
    if step_key is not None and math.isfinite(values[step_key]):
        return step_key, values.pop(step_key)
    if step_key is not None:
        values.pop(step_key)
        ignored.append(step_key)
    return step_key, float(reports_so_far + 1)


def _numbers(payload: dict, long_keys: bool = True) -> tuple[dict[str, float], list[str]]:
    """The payload's numeric values, and the keys dropped because they are not numbers.

    The common line holds plain floats and ints under short keys: then the payload itself (a
    fresh dict from the decoder) is the values, its ints made floats in place, in key order.
    ``long_keys`` False: the line is too short to hold a key over the limit (a decoded key is
    never longer than its text in the line), so the keys need no measuring.
    """
    for key, raw in payload.items():
        if type(raw) is float:
            continue
        if type(raw) is not int:  # a string, bool, null, list...: each value judged on its own
            return _numbers_one_by_one(payload)
        try:
            payload[key] = float(raw)  # an existing key: the dict does not change size while iterated
        except OverflowError:  # an int beyond float range: the general loop says inf
            return _numbers_one_by_one(payload)
    if long_keys and payload and max(map(len, payload)) > MAX_KEY_CHARS:
        return _numbers_one_by_one(payload)
    return payload, []


def _numbers_one_by_one(payload: dict) -> tuple[dict[str, float], list[str]]:
    """:func:`_numbers` for a line holding strings, bools, nulls, huge ints or over-long keys."""
    values: dict[str, float] = {}
    ignored: list[str] = []
    for key, raw in payload.items():
        number = raw if type(raw) is float else _number(raw)  # most values are floats: skip the checks
        if number is None or len(key) > MAX_KEY_CHARS:
            ignored.append(str(key)[:60])
        else:
            values[key] = number
    return values, ignored


# A number as trainers print it, NaN and the infinities included (any case): what ``{number}`` means.
NUMBER = r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|(?i:nan|inf(?:inity)?)(?![A-Za-z]))"
NUMBER_PLACEHOLDER = "{number}"
# ANSI escapes: CSI (colours, cursor moves), OSC (titles, links) and the two-byte ones.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
REVISE_S = 1.0  # a progress bar's running value at an open step is re-recorded at most this often


def expand_number(pattern: str) -> str:
    """``{number}`` in a metric pattern: the first becomes the captured value, later ones only match."""
    if NUMBER_PLACEHOLDER not in pattern:
        return pattern
    head, _, rest = pattern.partition(NUMBER_PLACEHOLDER)
    return f"{head}(?P<number>{NUMBER})" + rest.replace(NUMBER_PLACEHOLDER, f"(?:{NUMBER})")


def plain_text(text: str) -> str:
    """The text without ANSI colour and cursor codes or backspaces (a coloured bar matches like a plain one)."""
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    return text.replace("\b", "") if "\b" in text else text  # Keras' bar backspaces over itself


def _same(a: float, b: float | None) -> bool:
    return b is not None and (a == b or (a != a and b != b))


class RegexMetrics:
    """Reads metrics from the ordinary output of a script that cannot print ``@hpotui`` lines.

    Output comes in pieces: a line, or one carriage-return segment of a progress bar that
    rewrites itself. In each piece the *last* match of a pattern counts (a bar's postfix
    holds the newest value). An ``epoch`` or ``step`` pattern sets the step of what follows;
    without one, each metric's step is how many lines held it.

    At one step the last value is the step's value. A plain line (no carriage return) is
    recorded at once. A bar is recorded as it is written, but only what it says *new* at the
    step: a bar's postfix goes on showing the previous epoch's values until the new ones
    exist (Lightning's val metrics), so a value that only repeats the previous step's final
    value waits until the step closes (the step pattern moves on, or the trial ends on its own)
    and is dropped if the trial is stopped first. Running values (a loss averaged over the batches so far) are re-recorded at
    most every ``REVISE_S`` seconds and once more, final, when the step closes.
    """

    def __init__(self, patterns: tuple[tuple[str, str], ...], revise_s: float = REVISE_S) -> None:
        self.step_name = next((n for n, _ in patterns if n in ("epoch", "step")), None)
        # The step pattern goes first so that a piece holding both sets the step of its own metrics,
        # whatever order the space file lists them in.
        self.patterns = sorted(((name, re.compile(expand_number(pattern))) for name, pattern in patterns),
                               key=lambda item: item[0] != self.step_name)
        self.revise_s = revise_s
        self.current_step: float | None = None
        self.counts: dict[str, int] = {}
        self.matched: set[str] = set()  # names that matched at least once (the others are warned about)
        self._open: dict[str, float] = {}  # values at the open step (or in the open line), last wins
        self._emitted: dict[str, float] = {}  # what was recorded at the open step
        self._emitted_at: dict[str, float] = {}
        self._live: set[str] = set()  # metrics that said something new at the open step
        self._previous: dict[str, float] = {}  # the final values of the step before
        self._in_bar: dict[str, bool] = {}  # per stream: the current line has carriage-return segments

    def resume(self, counts: dict[str, int], last_step: float | None, preceding: tuple[str, ...] = ()) -> None:
        """Continue a re-adopted trial: per-metric counts, and the step its output last announced
        before the committed offsets (``preceding``, per stream), else the last recorded step."""
        self.counts = dict(counts)
        self.matched |= set(counts)
        if self.step_name is None:
            return
        self.current_step = last_step
        pattern = self.patterns[0][1]
        announced = []
        for text in preceding:
            for piece in reversed(re.split(r"[\r\n]", text)):
                value = self._last_value(pattern, plain_text(piece))
                if value is not None:
                    announced.append(value)
                    break
        if announced:
            self.current_step = max(announced)

    def parse(self, line: str) -> list[Report]:
        """One complete plain line (the whole story for line-based output)."""
        return self.feed(line, ends_line=True)

    def feed(self, text: str, *, ends_line: bool, partial: bool = False, stream: str = "",
             now: float = 0.0) -> list[Report]:
        """One piece of output: ``ends_line`` when a newline ended it (else a carriage return did);
        ``partial`` for a bar's unterminated last segment, seen as written and seen again once it ends."""
        found = self._matches(plain_text(text))
        reports = self._take_step(found)
        plain = ends_line and not partial and not self._in_bar.get(stream, False)
        self._hold(found, plain)
        if self.current_step is None:
            if ends_line and not partial:
                reports += self._close_line()
        elif plain:
            reports += self._emit(now, revise=True)
        if not partial:
            self._in_bar[stream] = not ends_line
        return reports

    def _hold(self, found: dict[str, float], plain: bool) -> None:
        """Values at the open step, last wins; what a plain line or a change says is news (live)."""
        for name, value in found.items():
            self._open[name] = value
            if plain or name in self._live or not _same(value, self._previous.get(name)):
                self._live.add(name)

    def _take_step(self, found: dict[str, float]) -> list[Report]:
        """A step pattern's match moves the step on, closing the open one."""
        if self.step_name is None or self.step_name not in found:
            return []
        step = found.pop(self.step_name)
        if _same(step, self.current_step):
            return []
        reports = self._close_step()
        self.current_step = step
        return reports

    def flush(self, now: float) -> list[Report]:
        """After each read: what a bar said new at the open step, as soon as it was written."""
        if self.current_step is None:
            return []
        return self._emit(now, revise=False)

    def finish(self, complete: bool = True) -> list[Report]:
        """The trial ended. ``complete`` (it ended on its own): the open step is over, its last values
        final. Stopped or killed mid-step: only what the step said new counts; a bar still showing
        the previous step's values at the moment of the stop adds no row."""
        if self.current_step is None:
            return self._close_line()
        if complete:
            self._live |= set(self._open)
        return self._emit(0.0, revise=True)

    # -- internals ----------------------------------------------------------------------------
    @staticmethod
    def _last_value(pattern: re.Pattern[str], text: str) -> float | None:
        value = None
        for match in pattern.finditer(text):
            try:
                value = float(match.group("number") if "number" in pattern.groupindex else match.group(1))
            except (ValueError, IndexError, TypeError):
                continue
        return value

    def _matches(self, text: str) -> dict[str, float]:
        found: dict[str, float] = {}
        for name, pattern in self.patterns:
            value = self._last_value(pattern, text)
            if value is not None:
                found[name] = value
                self.matched.add(name)
        return found

    def _emit(self, now: float, *, revise: bool) -> list[Report]:
        values: dict[str, float] = {}
        for name in self._live:
            value = self._open[name]
            if name not in self._emitted:
                values[name] = value
            elif not _same(value, self._emitted[name]) and (revise or now - self._emitted_at[name] >= self.revise_s):
                values[name] = value
        if not values:
            return []
        self._emitted.update(values)
        self._emitted_at.update(dict.fromkeys(values, now))
        step = self.current_step
        assert step is not None
        return [Report(step=step, values=values, resource=step)]

    def _close_step(self) -> list[Report]:
        """The step pattern moved on: the open step's last values are final, repeats included."""
        self._live |= set(self._open)
        reports = self._emit(0.0, revise=True) if self.current_step is not None else self._close_line()
        self._previous = dict(self._open)
        self._open, self._emitted, self._emitted_at, self._live = {}, {}, {}, set()
        return reports

    def _close_line(self) -> list[Report]:
        """Without a step pattern a line is a step of each metric it held (its last value)."""
        reports = []
        for name, value in self._open.items():
            self.counts[name] = self.counts.get(name, 0) + 1
            step = float(self.counts[name])
            reports.append(Report(step=step, values={name: value}, resource=step))
        self._open, self._live = {}, set()
        return reports


def _preview(text: str) -> str:
    """The start of a bad line for an event: one line, control characters shown escaped."""
    head = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text[:80])
    return head + ("..." if len(text) > 80 else "")
