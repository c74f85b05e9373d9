"""The local executor with real processes: process-group kill, exit codes, adoption."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil

from hpotui.engine.executors.local import EXIT_UNKNOWN, LocalExecutor


def wait_exit(executor: LocalExecutor, proc, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        executor.enforce_deadline(proc)
        code = executor.poll(proc)
        if code is not None:
            return code
        time.sleep(0.02)
    raise AssertionError("trial did not exit")


def start(executor: LocalExecutor, tmp_path: Path, code: str):
    return executor.start(1, [sys.executable, "-c", code], cwd=tmp_path, env=dict(os.environ),
                          stdout_path=tmp_path / "out.log", stderr_path=tmp_path / "err.log")


def test_stop_kills_the_whole_group_including_term_ignoring_workers(tmp_path: Path) -> None:
    code = """
import os, signal, time, sys
for _ in range(2):
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a stubborn dataloader worker
        while True: time.sleep(1)
print("ready", flush=True)
time.sleep(60)
"""
    executor = LocalExecutor(grace_period_s=0.5)
    proc = start(executor, tmp_path, code)
    deadline = time.monotonic() + 10
    while "ready" not in (tmp_path / "out.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) == 2
    executor.request_stop(proc, "stopped", "test")
    code_ = wait_exit(executor, proc)
    assert code_ == 128 + signal.SIGTERM
    executor.reap_group(proc)
    time.sleep(0.2)
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    assert proc.final_status == "stopped"


def test_failed_trial_exit_code_and_stderr_in_file(tmp_path: Path) -> None:
    executor = LocalExecutor()
    proc = start(executor, tmp_path, "import sys; print('boom: bad config', file=sys.stderr); sys.exit(3)")
    assert wait_exit(executor, proc) == 3
    assert "boom: bad config" in (tmp_path / "err.log").read_text()


def test_signal_death_is_128_plus_signal(tmp_path: Path) -> None:
    executor = LocalExecutor()
    proc = start(executor, tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert wait_exit(executor, proc) == 128 + signal.SIGSEGV


def test_missing_command_raises_oserror(tmp_path: Path) -> None:
    executor = LocalExecutor()
    try:
        executor.start(1, ["definitely-not-a-command-xyz"], cwd=tmp_path, env=dict(os.environ),
                       stdout_path=tmp_path / "o", stderr_path=tmp_path / "e")
    except OSError:
        return
    raise AssertionError("expected OSError")


def test_adopted_trial_is_watched_by_pid_and_start_time(tmp_path: Path) -> None:
    first = LocalExecutor()
    proc = start(first, tmp_path, "import time; time.sleep(0.5)")
    adopter = LocalExecutor()
    adopted = adopter.adopt(1, proc.pid, proc.pgid, proc.create_time, proc.stdout_path, proc.stderr_path)
    assert adopted is not None and adopter.poll(adopted) is None
    wait_exit(first, proc)  # the real parent reaps it
    assert adopter.poll(adopted) == EXIT_UNKNOWN
    assert adopter.adopt(1, proc.pid, proc.pgid, proc.create_time, proc.stdout_path, proc.stderr_path) is None
    # a recycled pid with another start time is not our trial
    assert adopter.adopt(1, os.getpid(), os.getpid(), 12345.0, proc.stdout_path, proc.stderr_path) is None


def test_files_are_owner_only(tmp_path: Path) -> None:
    executor = LocalExecutor()
    proc = executor.start(1, [sys.executable, "-c", "print(1)"], cwd=tmp_path, env=dict(os.environ),
                          stdout_path=tmp_path / "run" / "out.log", stderr_path=tmp_path / "run" / "err.log")
    wait_exit(executor, proc)
    assert (tmp_path / "run" / "out.log").stat().st_mode & 0o077 == 0
