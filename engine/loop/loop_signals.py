"""Stop signals and the loop's sleep: one self-pipe that SIGCHLD, SIGINT, SIGTERM and SIGHUP write to.

Why its own module: the loop sleeps on a pipe that every signal wakes (``signal.set_wakeup_fd``),
so a trial that ends is seen within milliseconds and a Ctrl-C on the next turn, and it sleeps
longer while no trial prints. The pipe, the handlers, the selector and that pace live here, so the
loop (engine/study.py) only asks "was a stop signal sent?" and "wait".
"""

from __future__ import annotations

import os
import selectors
import signal
from typing import Any, Callable

TICK_MIN_S = 0.02
TICK_MAX_S = 0.1
IDLE_WAIT_S = 0.5  # no trial running: nothing to read, only commands and signals


class LoopSignals:
    """The stop signals a study has received, and the wake-up pipe the loop sleeps on."""

    def __init__(self, on_hangup: Callable[[], None], on_second_stop: Callable[[], None]) -> None:
        self.received: int | None = None  # the first SIGINT / SIGTERM
        self.hurried = False  # a second stop signal arrived: SIGKILL instead of waiting out the grace period
        self.tick = TICK_MIN_S  # how long the loop sleeps between looks at the trial logs
        self._on_hangup, self._on_second_stop = on_hangup, on_second_stop
        self._wake_r, self._wake_w = os.pipe()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._handlers: dict[int, Any] = {}
        self._old_wakeup = -1

    @property
    def interrupted(self) -> bool:
        """Ctrl-C (exit 130), as opposed to SIGTERM (exit 143)."""
        return self.received == signal.SIGINT

    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else "signal"

    def install(self) -> None:
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._old_wakeup = signal.set_wakeup_fd(self._wake_w)
        for sig, handler in ((signal.SIGCHLD, lambda *_: None), (signal.SIGINT, self._on_stop),
                             (signal.SIGTERM, self._on_stop), (signal.SIGHUP, lambda *_: self._on_hangup())):
            self._handlers[sig] = signal.signal(sig, handler)

    def restore(self) -> None:
        """The handlers and wake-up fd from before (when installed), then the pipe closed."""
        if self._handlers:
            for sig, handler in self._handlers.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(self._old_wakeup)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _on_stop(self, signum: int, _frame: Any) -> None:
        if self.received is None:
            self.received = signum
            return
        # A second Ctrl-C / SIGTERM: the user insists. No more grace period (see StudyLoop._hurry).
        self.hurried = True
        self._on_second_stop()

    # -- waiting ----------------------------------------------------------------------------------------
    def wait(self, busy: bool) -> None:
        """One turn's sleep: the current tick while trials run, longer when none does; a signal ends it."""
        self.wait_s(self.tick if busy else IDLE_WAIT_S)

    def wait_s(self, seconds: float) -> None:
        """Sleep, but wake at once on a signal (the wake-up pipe)."""
        if self._selector.select(seconds):
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass

    def wake_soon(self) -> None:
        """Something is about to happen (a stop was sent): look again after the shortest tick."""
        self.tick = TICK_MIN_S

    def pace(self, got_lines: bool, behind: bool) -> None:
        """Read again at once when a batch was cut short, soon after new lines, slower while all is quiet."""
        if behind:  # more is waiting: go round the loop (and flush) at once
            self.tick = 0.0
        else:
            self.tick = TICK_MIN_S if got_lines else min(TICK_MAX_S, max(TICK_MIN_S, self.tick * 1.5))
