"""The loop's signals and sleep (engine/loop/loop_signals.py) with real signals sent to this process.

A first Ctrl-C / SIGTERM is remembered for the loop's next turn; a second one means "now": the
loop is told to kill its trials without a grace period. Any signal ends the loop's sleep at once
(the self-pipe), which is what refills a finished trial's slot within milliseconds.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time

from hpotui.engine.loop.loop_signals import TICK_MAX_S, TICK_MIN_S, LoopSignals
from hpotui.engine.loop.storage_wait import storage_trouble


def test_a_second_stop_signal_hurries_and_the_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    hurried: list[bool] = []
    signals = LoopSignals(on_hangup=lambda: None, on_second_stop=lambda: hurried.append(True))
    signals.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        signals.wait_s(5.0)  # the handler has run by the time the pipe is read
        assert (signals.received, signals.hurried, hurried) == (signal.SIGTERM, False, [])
        assert signals.name() == "SIGTERM" and not signals.interrupted  # exit 143, not 130
        os.kill(os.getpid(), signal.SIGINT)
        signals.wait_s(5.0)
        assert (signals.received, signals.hurried, hurried) == (signal.SIGTERM, True, [True])
    finally:
        signals.restore()
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_child_that_exits_ends_the_sleep_at_once() -> None:
    signals = LoopSignals(on_hangup=lambda: None, on_second_stop=lambda: None)
    signals.install()
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        started = time.monotonic()
        signals.wait_s(30.0)  # SIGCHLD writes to the pipe
        os.waitpid(pid, 0)
        assert time.monotonic() - started < 25.0
        assert signals.received is None  # a trial ending is not a stop signal
    finally:
        signals.restore()


def test_the_sleep_is_short_while_trials_print_and_grows_while_they_are_quiet() -> None:
    signals = LoopSignals(on_hangup=lambda: None, on_second_stop=lambda: None)
    try:
        signals.pace(got_lines=False, behind=True)
        assert signals.tick == 0.0  # a batch was cut short: round again at once
        for _ in range(20):
            signals.pace(got_lines=False, behind=False)
        assert signals.tick == TICK_MAX_S
        signals.pace(got_lines=True, behind=False)
        assert signals.tick == TICK_MIN_S
    finally:
        signals.restore()


def test_a_full_disk_is_waited_out_but_a_bad_query_is_not() -> None:
    assert storage_trouble(sqlite3.OperationalError("database or disk is full"))
    assert storage_trouble(sqlite3.OperationalError("database is locked"))
    assert not storage_trouble(sqlite3.OperationalError("near \"SELEC\": syntax error"))
