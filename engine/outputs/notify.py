"""The space file's optional ``notify:`` section: a command the engine runs when something happens.

Why in the engine: the engine runs whether or not anyone has the interface open, so it is the
one that can tell a user on another tmux window (or their phone, through a script) that the
study ended, that launching paused on a storm of identical failures, or that the best so far
changed. The shape::

    notify:
      command: [notify-send, "hpotui {study}", "{message}"]   # an argv list, never a shell
      on: [ended, paused, best]                                 # default: [ended, paused]

``{study}``, ``{event}`` and ``{message}`` are replaced inside each argument (other braces pass
through untouched). The command runs detached from the engine's terminal with no input; the
engine never waits for it beyond a short reap at the end. A command that cannot start, exits
non-zero or hangs is recorded as a ``notify`` warning event and said in the engine's log, never
fatal. An engine killed with -9 cannot announce its own death: the interface notices that one
(bell and notice) and ``hpotui status`` shows it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..space_file.param import PLACEHOLDER

EVENTS = ("ended", "paused", "best")
DEFAULT_EVENTS = ("ended", "paused")
PLACEHOLDERS = ("study", "event", "message")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
REAP_WAIT_S = 5.0
MESSAGE_MAX = 500


@dataclass(frozen=True)
class NotifySpec:
    command: tuple[str, ...]
    on: tuple[str, ...] = DEFAULT_EVENTS


EXAMPLE = 'notify: {command: [notify-send, "hpotui {study}", "{message}"]}'


def parse_notify(raw: Any, fail: Callable[..., Exception]) -> NotifySpec | None:
    """Validate ``notify:``; ``fail(key, problem, fix)`` builds the space file's one-line error."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise fail("notify", "expected a mapping", f"write {EXAMPLE}")
    for key in raw:
        if key not in ("command", "on"):
            raise fail(f"notify.{key}", "unknown key", "allowed keys: command, on")
    return NotifySpec(command=_command(raw.get("command"), fail), on=_events(raw.get("on", list(DEFAULT_EVENTS)), fail))


def _command(command: Any, fail: Callable[..., Exception]) -> tuple[str, ...]:
    if not isinstance(command, list) or not command or not all(isinstance(a, (str, int, float)) for a in command):
        raise fail("notify.command", "expected a non-empty list of arguments (it never runs through a shell)",
                   f"write {EXAMPLE}")
    argv = tuple(str(a) for a in command)
    unknown = [name for arg in argv for name in PLACEHOLDER.findall(arg) if name not in PLACEHOLDERS]
    if unknown:
        raise fail("notify.command", f"unknown placeholder {{{unknown[0]}}}", "use {study}, {event} or {message}")
    return argv


def _events(on: Any, fail: Callable[..., Exception]) -> tuple[str, ...]:
    events = [on] if isinstance(on, str) else on
    if not isinstance(events, list) or not events:
        raise fail("notify.on", "expected a list of events", f"write on: [{', '.join(EVENTS)}]")
    for event in events:
        if event not in EVENTS:
            raise fail("notify.on", f"unknown event {event!r}", f"use any of {', '.join(EVENTS)}")
    return tuple(dict.fromkeys(events))


def render(command: tuple[str, ...], study: str, event: str, message: str) -> list[str]:
    values = {"study": study, "event": event, "message": message[:MESSAGE_MAX]}
    return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in command]


class Notifier:
    """Runs the ``notify:`` command for the events it names; problems go to ``log``, never up."""

    def __init__(self, spec: NotifySpec | None, study: str, log: Callable[[str], None]) -> None:
        self.spec, self.study, self.log = spec, study, log
        self._running: list[tuple[subprocess.Popen[bytes], str, float, str]] = []

    def send(self, event: str, message: str) -> None:
        if self.spec is None or event not in self.spec.on:
            return
        self._reap(wait_s=0.0)
        argv = render(self.spec.command, self.study, event, message)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        except (OSError, ValueError) as exc:
            self.log(f"notify: could not run {argv[0]!r} for {event}: {getattr(exc, 'strerror', None) or exc}; "
                     "fix notify.command in the space file")
            return
        self._running.append((proc, event, time.monotonic(), argv[0]))

    def close(self) -> None:
        """At the engine's end: give the commands a few seconds, then end the ones that hang."""
        self._reap(wait_s=REAP_WAIT_S)

    def _reap(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        still: list[tuple[subprocess.Popen[bytes], str, float, str]] = []
        for proc, event, started, name in self._running:
            try:
                code = proc.wait(timeout=max(0.0, deadline - time.monotonic())) if wait_s else proc.poll()
            except subprocess.TimeoutExpired:
                code = None
            if code is None and wait_s:
                _kill(proc)
                self.log(f"notify: {name!r} for {event} still ran after {time.monotonic() - started:.0f}s; "
                         "ended it")
                continue
            if code is None:
                still.append((proc, event, started, name))
            elif code != 0:
                self.log(f"notify: {name!r} for {event} exited with code {code}")
        self._running = still


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        pass
