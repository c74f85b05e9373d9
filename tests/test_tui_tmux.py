"""The real terminal path: `hpotui launch` in tmux opens the interface on a live study, `s` then `y`
stops the highlighted trial, `q` leaves the study running — checked in the database.

A private tmux server (``-L``) keeps the test away from the user's own sessions.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

TRAINER = """
import json, sys, time
lr = float(sys.argv[1])
for epoch in range(1, 600):
    time.sleep(0.05)
    loss = 2.0 / (1 + epoch * lr)
    print("@hpotui " + json.dumps({"epoch": epoch, "train_loss": loss, "val_loss": loss * 1.1,
                                   "train_acc": 1 - loss / 2, "val_acc": 0.95 * (1 - loss / 2)}), flush=True)
"""
SPACE = """
name: tmuxed
command: python trainer.py {lr}
objective: {metric: val_acc, mode: max}
search: {algorithm: random, seed: 0}
budget: {max_trials: 6, max_parallel: 2}
space:
  lr: {type: loguniform, low: 1e-3, high: 1}
"""


def one(db: Path, sql: str, *args):
    try:
        conn = sqlite3.connect(db, timeout=30)
        try:
            row = conn.execute(sql, args).fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return None  # the engine is still creating the file
    return row[0] if row else None


def wait(condition, timeout: float, what: str, pane) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; the terminal showed:\n{pane()}")


def test_launch_in_tmux_stop_a_trial_by_key_and_quit(tmp_path: Path):
    (tmp_path / "trainer.py").write_text(textwrap.dedent(TRAINER))
    (tmp_path / "tmuxed.yaml").write_text(textwrap.dedent(SPACE))
    db = tmp_path / "study.db"
    env = cli_env()
    sock = f"hpotui-test-{os.getpid()}"
    tmux = ["tmux", "-L", sock]
    script = Path(sys.executable).parent / "hpotui"  # the installed console script, as a user types it
    hpotui = str(script) if script.exists() else f"{sys.executable} -m hpotui.engine.cli"
    command = (f"cd {tmp_path} && env PATH='{env['PATH']}' PYTHONPATH='{env['PYTHONPATH']}' TERM=xterm-256color "
               f"{hpotui} launch tmuxed.yaml --db {db}; echo HPOTUI-EXITED; sleep 30")

    def pane() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True).stdout

    subprocess.run([*tmux, "new-session", "-d", "-s", "t", "-x", "120", "-y", "40", command], check=True)
    try:
        wait(lambda: (one(db, "SELECT COUNT(*) FROM trials WHERE status = 'running' AND reports > 0") or 0) >= 2,
             60, "two running trials", pane)
        wait(lambda: "running" in pane() and "tmuxed" in pane(), 30, "the study screen", pane)
        assert one(db, "SELECT status FROM trials WHERE number = 1") == "running"
        subprocess.run([*tmux, "send-keys", "-t", "t", "s"], check=True)
        wait(lambda: "Stop trial 1?" in pane(), 15, "the confirmation", pane)
        subprocess.run([*tmux, "send-keys", "-t", "t", "y"], check=True)
        wait(lambda: one(db, "SELECT status FROM trials WHERE number = 1") == "stopped", 30, "trial 1 to stop", pane)
        wait(lambda: "stopping trial 1" in pane(), 15, "the acknowledgement on screen", pane)
        subprocess.run([*tmux, "send-keys", "-t", "t", "q"], check=True)
        wait(lambda: "HPOTUI-EXITED" in pane(), 15, "the interface to exit", pane)
        assert "keep running" in pane().replace("\n", " ")
        assert one(db, "SELECT status FROM studies") == "running"  # quitting never stops the study
    finally:
        subprocess.run([sys.executable, "-m", "hpotui.engine.cli", "stop", "tmuxed", "--db", str(db)], env=env,
                       capture_output=True, timeout=60)
        subprocess.run([*tmux, "kill-server"], capture_output=True)
