"""How much of the suite's time is in-process: one line in the terminal summary of every run.

Issue 15 asks that at least half of the test time be spent in tests that run the engine in this
process. Rather than a one-off figure, every run measures it: a test counts as "subprocess" when
anything during its setup, call or teardown created a process (``subprocess`` / ``asyncio``
children, ``os.fork`` / ``forkpty`` / ``posix_spawn`` / ``os.spawn*``, a ``multiprocessing``
process start, Ray's own processes, all of which go through these), or when a child of this
process is still alive at the end of one of its phases (a module-scoped engine or Ray cluster made
by an earlier test and used by this one). Everything else is "in-process". Durations are pytest's
own per-phase durations, so module fixtures count towards the test whose setup built them.

The subprocess tests are told apart once more: "end-to-end" when one of the processes was hpotui
itself (the CLI or a detached engine: ``hpotui.engine`` / the ``hpotui`` script in its command
line) or tmux; otherwise the engine ran in this process and only the trials (or git, Ray, a
framework's trainer) were real processes. The strict in-process share is the issue's figure; the
split of the rest says how much of it is the slow, whole-product kind.

The wrappers only note that a process was made and then call the original, so no outcome changes.
With ``HPOTUI_TIMING_SPLIT_JSON=FILE`` set, each test's class and seconds are also written to FILE.
"""

from __future__ import annotations

import functools
import json
import multiprocessing.process
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

import psutil
import pytest

_PROCESS_MAKERS_OS = ("fork", "forkpty", "posix_spawn", "posix_spawnp")


@dataclass
class SplitTotals:
    """Seconds and test counts per class, and the test now running with whether it made a process."""

    seconds: dict[str, float] = field(default_factory=lambda: {"in-process": 0.0, "subprocess": 0.0})
    tests: dict[str, int] = field(default_factory=lambda: {"in-process": 0, "subprocess": 0})
    durations: dict[str, float] = field(default_factory=dict)
    per_test: dict[str, tuple[str, float]] = field(default_factory=dict)
    spawning: set[str] = field(default_factory=set)
    end_to_end: set[str] = field(default_factory=set)
    end_to_end_seconds: float = 0.0
    current: str | None = None

    def note_spawn(self, argv: Any = None) -> None:
        if self.current is not None:
            self.spawning.add(self.current)
            if is_hpotui_or_tmux(argv):
                self.end_to_end.add(self.current)

    def line(self) -> str:
        total = sum(self.seconds.values()) or 1.0
        inner, sub = self.seconds["in-process"], self.seconds["subprocess"]
        e2e = self.end_to_end_seconds
        return (f"test time: {inner:.1f} s in-process ({100 * inner / total:.0f} %), {sub:.1f} s with subprocesses "
                f"({100 * sub / total:.0f} %: {e2e:.1f} s end-to-end through hpotui's CLI or tmux, "
                f"{sub - e2e:.1f} s with the engine here and real trial processes); "
                f"{self.tests['in-process']} in-process tests, {self.tests['subprocess']} subprocess tests")


def is_hpotui_or_tmux(argv: Any) -> bool:
    """Whether a command line starts hpotui itself (CLI, detached engine) or tmux."""
    if argv is None:
        return False
    words = [os.fsdecode(a) for a in ([argv] if isinstance(argv, (str, bytes, os.PathLike)) else argv)]
    text = " ".join(words)
    first = os.path.basename(words[0]) if words else ""
    return "hpotui.engine" in text or first in ("hpotui", "tmux")


class TimingSplit:
    """The pytest plugin: wraps the process makers at configure time, sums durations per class."""

    def __init__(self) -> None:
        self.totals = SplitTotals()
        self._undo: list[Callable[[], None]] = []
        self._me = psutil.Process()

    def _wrap(self, owner: Any, name: str) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return
        totals = self.totals

        @functools.wraps(original)
        def noting(*args: Any, **kwargs: Any) -> Any:
            totals.note_spawn(_argv_of(name, args, kwargs))
            return original(*args, **kwargs)

        setattr(owner, name, noting)
        self._undo.append(lambda: setattr(owner, name, original))

    def pytest_configure(self, config: pytest.Config) -> None:
        self._wrap(subprocess.Popen, "_execute_child")  # subprocess.run/Popen, asyncio subprocesses, Ray's raylet
        for name in _PROCESS_MAKERS_OS:  # os.spawn*, pty.fork and multiprocessing's fork go through these
            self._wrap(os, name)
        self._wrap(multiprocessing.process.BaseProcess, "start")  # its spawn/forkserver start call fork_exec directly

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        self.totals.current = item.nodeid
        yield
        self.totals.current = None

    def _children_alive(self) -> tuple[bool, bool]:
        """(a child of this process is alive, one of them is hpotui or tmux)."""
        alive = e2e = False
        try:
            for child in self._me.children(recursive=True):
                if child.status() == psutil.STATUS_ZOMBIE:
                    continue
                alive = True
                e2e = e2e or is_hpotui_or_tmux(child.cmdline())
        except psutil.Error:
            return True, e2e  # one that vanished while being read was there
        return alive, e2e

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        totals = self.totals
        totals.durations[report.nodeid] = totals.durations.get(report.nodeid, 0.0) + report.duration
        alive, e2e = self._children_alive()
        if alive:
            totals.spawning.add(report.nodeid)
        if e2e:
            totals.end_to_end.add(report.nodeid)
        if report.when == "teardown":
            kind = "subprocess" if report.nodeid in totals.spawning else "in-process"
            seconds = totals.durations.pop(report.nodeid)
            totals.seconds[kind] += seconds
            totals.tests[kind] += 1
            if report.nodeid in totals.end_to_end:
                totals.end_to_end_seconds += seconds
            totals.per_test[report.nodeid] = ("end-to-end" if report.nodeid in totals.end_to_end else kind,
                                              round(seconds, 3))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.totals.tests["in-process"] + self.totals.tests["subprocess"]:
            terminalreporter.write_line(self.totals.line())
        path = os.environ.get("HPOTUI_TIMING_SPLIT_JSON")
        if path:
            with open(path, "w", encoding="utf-8") as f:
                json.dump(self.totals.per_test, f, indent=1)


def _argv_of(maker: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The command line a process maker was called with (None where it has none: fork, a Process start)."""
    if maker == "_execute_child":  # (self, args, executable, ...)
        return args[1] if len(args) > 1 else kwargs.get("args")
    if maker in ("posix_spawn", "posix_spawnp"):  # (path, argv, env, ...)
        return args[1] if len(args) > 1 else kwargs.get("argv")
    return None
